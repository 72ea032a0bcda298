"""Plots of metrics against the number of sampling steps (log axis)."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

#: ``{run label: [(steps, value), ...]}``
Series = Mapping[str, Sequence[tuple[int, float]]]


def plot_metric(series: Series, out: pathlib.Path, *, metric: str, higher_is_better: bool, title: str = "") -> None:
    """One line per run: ``metric`` against steps on a log2 axis, ticks at the evaluated counts."""
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ticks: set[int] = set()
    for label, points in series.items():
        xs = [s for s, _ in points]
        ys = [v for _, v in points]
        ticks.update(xs)
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log", base=2)
    values = [v for points in series.values() for _, v in points if v == v]  # NaN-free
    if values and min(values) > 0 and max(values) / min(values) > 50:  # decades apart: log y too
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sorted(ticks)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(t) for t in sorted(ticks)])
    ax.set_xlabel("sampling steps")
    ax.set_ylabel(f"{metric} ({'higher' if higher_is_better else 'lower'} is better)")
    ax.grid(True, alpha=0.3)
    if len(series) > 1:
        ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
