"""Which metrics ``genflow eval`` runs: ``--metrics`` names, ``--metric-option`` settings, defaults."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from genflow.config.convert import structure
from genflow.data.prepare import parse_options
from genflow.errors import GenflowError, allowed
from genflow.interfaces import Dataset, EvalContext, Metric
from genflow.plugins import PluginManager


@attrs.frozen(kw_only=True)
class MetricSet:
    """Built metrics by name, with the config each was built from."""

    metrics: dict[str, Metric]
    configs: dict[str, Any]


def parse_names(text: str | None, manager: PluginManager) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]`` (registered names only); ``None`` when not given."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise GenflowError(f"--metrics '{text}': expected metric names separated by commas; "
                           f"registered: {allowed(manager.names('metric'))}")
    unknown = [n for n in names if n not in manager.components["metric"]]
    if unknown:
        raise GenflowError(f"--metrics: unknown metric {', '.join(repr(n) for n in unknown)}; "
                           f"registered: {allowed(manager.names('metric'))}")
    return list(dict.fromkeys(names))


def parse_metric_options(items: Sequence[str], manager: PluginManager) -> dict[str, dict[str, Any]]:
    """``["fid_inception.weights=x.pt"]`` -> ``{"fid_inception": {"weights": "x.pt"}}``."""
    options: dict[str, dict[str, Any]] = {}
    for key, value in parse_options(items).items():
        metric, dot, field = key.partition(".")
        if not dot or not field:
            raise GenflowError(f"--metric-option '{key}': expected METRIC.FIELD=VALUE, e.g. fid_inception.weights=PATH")
        if metric not in manager.components["metric"]:
            raise GenflowError(f"--metric-option '{key}': unknown metric '{metric}'; "
                               f"registered: {allowed(manager.names('metric'))}")
        options.setdefault(metric, {})[field] = value
    return options


def build_metrics(names: Sequence[str], options: dict[str, dict[str, Any]], manager: PluginManager) -> MetricSet:
    """Build ``names`` with their options (unknown fields and bad values are one-line errors)."""
    metrics, configs = {}, {}
    for name in names:
        component = manager.get("metric", name)
        configs[name] = structure(options.get(name, {}), component.config, name)
        metric = component.build(configs[name])
        if not isinstance(metric, Metric):
            raise GenflowError(f"metric '{name}' did not build a genflow.interfaces.Metric")
        metrics[name] = metric
    return MetricSet(metrics=metrics, configs=configs)


def select(names: list[str] | None, options: dict[str, dict[str, Any]], manager: PluginManager,
           dataset: Dataset, dataset_name: str) -> MetricSet:
    """The metrics to run: ``names`` (each must fit ``dataset``) or every registered one that fits."""
    if names is not None:
        stray = sorted(set(options) - set(names))
        if stray:
            raise GenflowError(f"--metric-option for {', '.join(stray)}, which --metrics does not name")
        return build_metrics(names, options, manager)
    every = build_metrics(list(manager.components["metric"]), options, manager)  # registration order
    chosen = [n for n, m in every.metrics.items() if m.applies_to(dataset)]
    if not chosen:
        raise GenflowError(f"no registered metric applies to dataset '{dataset_name}' (registered: "
                           f"{allowed(manager.names('metric'))}); image data can use --metrics fid_inception "
                           "--metric-option fid_inception.weights=PATH")
    return MetricSet(metrics={n: every.metrics[n] for n in chosen}, configs={n: every.configs[n] for n in chosen})


def check_applicable(metrics: MetricSet, context: EvalContext, dataset_name: str) -> None:
    """A metric that does not fit the data fails here, before sampling: its own ``prepare`` usually
    names what is missing (weights, labels); otherwise a generic line does."""
    for name, metric in metrics.metrics.items():
        if not metric.applies_to(context.dataset):
            metric.prepare(context)
            raise GenflowError(f"metric '{name}' does not apply to dataset '{dataset_name}'")
