"""Hook implementations of the ``meanflow`` plugin (registrations only).

genflow loads this module through the entry point ``meanflow = "genflow_meanflow.plugin"`` in the
group ``genflow`` (see ``pyproject.toml``); the derivative providers (``dde``, ``jvp``, ...), paths,
backbones and datasets come from whatever other plugins are installed.
"""

from __future__ import annotations

from genflow import hookimpl
from genflow.registry import Component

from genflow_meanflow import objective, sampler


@hookimpl
def genflow_objectives() -> list[Component]:
    return [
        Component(
            name="meanflow",
            config=objective.MeanFlowConfig,
            build=objective.build,
            description="MeanFlow: regress u(x_t, r, t) on v_t - (t - r) du/dt (average velocity)",
            defaults={"sampler": "meanflow", "derivative": "dde"},
        )
    ]


@hookimpl
def genflow_samplers() -> list[Component]:
    return [
        Component(name="meanflow", build=sampler.build,
                  description="average-velocity jumps x_r = x_t - (t - r) u(x_t, r, t), 1 step and up"),
    ]
