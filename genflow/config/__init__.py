"""Configs: attrs schema, strict cattrs converter, TOML files, selectors and dotted overrides."""

from genflow.config.load import load, read_config_file, resolve, to_dict, to_toml
from genflow.config.schema import SLOTS, RunConfig, SampleConfig, Selection, TrainConfig

__all__ = [
    "SLOTS",
    "RunConfig",
    "SampleConfig",
    "Selection",
    "TrainConfig",
    "load",
    "read_config_file",
    "resolve",
    "to_dict",
    "to_toml",
]
