"""Hook implementations of the ``genflow_fm`` plugin (registrations only)."""

from __future__ import annotations

from genflow.plugins import hookimpl
from genflow.registry import Component
from genflow_fm.mlp import MLPBackbone, MLPConfig
from genflow_fm.objective import FlowMatching, FlowMatchingConfig
from genflow_fm.path import LinearPath
from genflow_fm.samplers import EulerSampler, HeunSampler, ODESamplerConfig


@hookimpl
def genflow_paths() -> list[Component]:
    return [Component(name="linear", build=lambda config: LinearPath(),
                      description="x_t = (1 - t) x + t z (optimal transport)")]


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


@hookimpl
def genflow_backbones() -> list[Component]:
    return [
        Component(name="mlp", config=MLPConfig, description="residual MLP for low-dimensional data",
                  build=lambda config, *, spec: MLPBackbone(config, spec=spec)),
    ]
