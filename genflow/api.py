"""genflow's public API: every module and name a plugin may import, and their signatures.

Semantic versioning applies to exactly these names (docs/plugins.md, section 5): a release that removes
one or changes its signature incompatibly raises the major version (the minor one while genflow is
0.x) and says so in CHANGELOG.md. Everything else, including ``genflow.train``, ``genflow.config``
internals and the built-in plugins ``genflow_fm`` and ``genflow_tim``, may change without notice.

``python -m genflow.api`` prints the signature snapshot that ``tests/unit/core/test_api.py`` compares
against ``tests/unit/core/api_snapshot.json``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from typing import Any

#: Public module -> its public names.
PUBLIC: dict[str, tuple[str, ...]] = {
    "genflow": ("hookimpl", "__version__"),
    "genflow.interfaces": (
        "Backbone", "Batch", "BatchLoader", "Condition", "DataSpec", "Dataset", "Derivative", "DerivativeOutput",
        "EvalContext", "EvalSamples", "Metric", "Objective", "ObjectiveOutput", "ProbabilityPath", "Sampler",
        "TextEncoder", "TextFn", "TimeFunction", "bind", "expand_like", "interval_rows",
    ),
    "genflow.objectives": (
        "WEIGHTINGS", "Weighting", "adaptive_weight", "interval_target", "interval_weight", "ordered_times",
        "row_mean", "rows_finite", "split_rows", "transition_coefficients_dt", "transition_target",
    ),
    "genflow.rng": ("preserved_rng", "replayed_rng", "rng_snapshot"),
    "genflow.registry": ("BackboneFactory", "Component", "DatasetFactory", "DerivativeFactory", "EmptyConfig", "KINDS",
                         "ObjectiveFactory", "PathFactory", "SamplerFactory", "TextEncoderFactory"),
    "genflow.errors": ("ConfigError", "GenflowError"),
    "genflow.timesteps": ("logit_normal", "resolution_shift", "shift_factor", "time_grid"),
    "genflow.losses": ("finite_mean",),
    "genflow.guidance": ("drop_labels", "empty_text", "guidance_active", "guided_forward", "guided_velocity",
                         "has_condition", "null_condition"),
    "genflow.plugins": ("ENTRY_POINT_GROUP", "PluginManager"),
    "genflow.testing": (
        "CHECKS", "DERIVATIVE_TOLERANCE", "build_backbone_for_tests", "build_derivative", "check_backbone",
        "check_dataset", "check_derivative", "check_objective", "check_path", "check_sampler", "check_text_encoder",
    ),
    "genflow.hookspecs": (
        "genflow_autoencoders", "genflow_backbones", "genflow_checkpoint_saved", "genflow_configure",
        "genflow_datasets", "genflow_derivatives", "genflow_metrics", "genflow_objectives", "genflow_paths",
        "genflow_samplers", "genflow_text_encoders", "genflow_train_end", "genflow_train_start",
        "genflow_train_step_end",
    ),
}


def is_public(module: str, name: str | None = None) -> bool:
    """Whether ``module`` (and ``name`` in it) belongs to the public API."""
    return module in PUBLIC and (name is None or name in PUBLIC[module])


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return type(obj).__name__


def _members(cls: type) -> dict[str, str]:
    """Public members a class defines itself: methods by signature, other attributes by kind."""
    out: dict[str, str] = {}
    annotations = vars(cls).get("__annotations__", {})
    for name, value in list(vars(cls).items()):
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(value, property):
            out[name] = "property"
        elif isinstance(value, (staticmethod, classmethod)):
            out[name] = _signature(value.__func__)
        elif inspect.isfunction(value):
            out[name] = _signature(value)
        else:
            out[name] = f"attribute: {annotations.get(name, type(value).__name__)}"
    return out


def describe(obj: Any) -> dict[str, str]:
    """``{"": what obj is, member: signature}`` for one public name."""
    if inspect.isclass(obj):
        bases = ", ".join(b.__name__ for b in obj.__bases__)
        return {"": f"class({bases})", **_members(obj)}
    if callable(obj) and not hasattr(obj, "__origin__"):
        return {"": _signature(obj)}
    return {"": f"value: {obj!r}" if isinstance(obj, (str, int, float, tuple)) else f"value: {type(obj).__name__}"}


def snapshot() -> dict[str, str]:
    """``{"module.Name[.member]": signature}`` over the whole public API, sorted."""
    out: dict[str, str] = {}
    for module_name, names in PUBLIC.items():
        module = importlib.import_module(module_name)
        for name in names:
            if name == "__version__":  # the version itself changes with every release
                out[f"{module_name}.{name}"] = "value: str"
                continue
            for member, text in describe(getattr(module, name)).items():
                out[f"{module_name}.{name}" + (f".{member}" if member else "")] = text
    return dict(sorted(out.items()))


def main() -> None:
    """Print the snapshot as JSON (redirect it into tests/unit/core/api_snapshot.json)."""
    json.dump(snapshot(), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
