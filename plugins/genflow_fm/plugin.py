"""Hook implementations of the ``genflow_fm`` plugin (registrations only)."""

from __future__ import annotations

from genflow.plugins import hookimpl
from genflow.registry import Component
from genflow_fm.objective import FlowMatching, FlowMatchingConfig
from genflow_fm.samplers import EulerSampler, HeunSampler, ODESamplerConfig


@hookimpl
def genflow_objectives() -> list[Component]:
    return [
        Component(
            name="fm",
            config=FlowMatchingConfig,
            build=lambda config, *, path, derivative, spec: FlowMatching(config, path=path, spec=spec),
            description="flow matching: regress F(x_t, t, t) on v_t",
            defaults={"sampler": "euler"},
        )
    ]


@hookimpl
def genflow_samplers() -> list[Component]:
    return [
        Component(name="euler", config=ODESamplerConfig, description="probability-flow ODE, Euler",
                  build=lambda config, *, path, spec: EulerSampler(config, path=path, spec=spec)),
        Component(name="heun", config=ODESamplerConfig, description="probability-flow ODE, Heun (2nd order)",
                  build=lambda config, *, path, spec: HeunSampler(config, path=path, spec=spec)),
    ]

