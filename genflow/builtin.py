"""genflow's own built-in plugin: datasets, autoencoders and metrics that need no extra package."""

from __future__ import annotations

from genflow.data.toy2d import Toy2D, Toy2DConfig
from genflow.plugins import hookimpl
from genflow.registry import Component


@hookimpl
def genflow_datasets() -> list[Component]:
    return [
        Component(
            name="toy2d",
            config=Toy2DConfig,
            build=lambda config, **_: Toy2D(config),
            description="2-D Gaussian mixtures, checkerboard, rings (seeded, exact)",
            defaults={"backbone": "mlp"},
        ),
    ]
