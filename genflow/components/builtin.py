"""genflow's own built-in plugin: the linear path, the MLP backbone, datasets, autoencoders, metrics and a text
encoder, everything the core needs to train and test without another plugin."""

from __future__ import annotations

import pathlib

from genflow.components.mlp import MLPBackbone, MLPConfig
from genflow.components.paths import LinearPath
from genflow.data import autoencoders
from genflow.data.dataset_config import ShapesDatasetConfig, StoreConfig
from genflow.data.toy2d import Toy2D, Toy2DConfig
from genflow.eval import metrics
from genflow.interfaces import Dataset
from genflow.plugins import hookimpl
from genflow.registry import Component


def build_shapes(config: ShapesDatasetConfig, *, cache_dir: pathlib.Path) -> Dataset:
    """The ``shapes`` dataset (:func:`genflow.data.dataset.build_shapes`; imported when built: zarr
    is slow to import and most commands never open a store)."""
    from genflow.data import dataset

    return dataset.build_shapes(config, cache_dir=cache_dir)


def build_store(config: StoreConfig, *, cache_dir: pathlib.Path) -> Dataset:
    """The ``store`` dataset (:func:`genflow.data.dataset.build_store`), imported when built."""
    from genflow.data import dataset

    return dataset.build_store(config, cache_dir=cache_dir)


@hookimpl
def genflow_paths() -> list[Component]:
    return [Component(name="linear", build=lambda config: LinearPath(),
                      description="x_t = (1 - t) x + t z (optimal transport)")]


@hookimpl
def genflow_backbones() -> list[Component]:
    return [
        Component(name="mlp", config=MLPConfig, description="residual MLP for low-dimensional data",
                  build=lambda config, *, spec: MLPBackbone(config, spec=spec)),
    ]


@hookimpl
def genflow_datasets() -> list[Component]:
    return [
        Component(
            name="toy2d",
            config=Toy2DConfig,
            build=lambda config, *, cache_dir: Toy2D(config),
            description="2-D Gaussian mixtures, checkerboard, rings (seeded, exact)",
            defaults={"backbone": "mlp"},
        ),
        Component(
            name="shapes",
            config=ShapesDatasetConfig,
            build=build_shapes,
            description="procedural coloured shapes with exact labels and captions (prepared on first use)",
            defaults={"backbone": "unet"},
        ),
        Component(
            name="store",
            config=StoreConfig,
            build=build_store,
            description="a latent store written by genflow prepare (path, memory://, zip::, s3://)",
            defaults={"backbone": "tim-dit"},
        ),
    ]


@hookimpl
def genflow_autoencoders() -> list[Component]:
    return autoencoders.components()


@hookimpl
def genflow_metrics() -> list[Component]:
    return metrics.components()


@hookimpl
def genflow_text_encoders() -> list[Component]:
    from genflow.text import encoder

    return [
        Component(
            name="transformer",
            config=encoder.TransformerTextConfig,
            build=encoder.build_transformer,
            description="small transformer over a sentencepiece tokenizer, trained with the generator",
        )
    ]
