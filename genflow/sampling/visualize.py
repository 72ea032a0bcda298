"""Pictures of samples: scatter plots for 2-D data, labelled image grids for images."""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402


def to_uint8_images(x: Tensor) -> np.ndarray:
    """``(N, C, H, W)`` in [-1, 1] -> ``(N, H, W, 3)`` uint8 (grey channels repeated)."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return x[:, :3].permute(0, 2, 3, 1).numpy()


def image_grid(x: Tensor, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile images ``(N, C, H, W)`` in [-1, 1] into one ``(H', W', 3)`` uint8 array."""
    images = to_uint8_images(x)
    n, h, w, _ = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images[i]
    return grid


def plot_samples(samples: Mapping[int, Tensor], out: pathlib.Path, *, reference: Tensor | None = None,
                 title: str = "") -> None:
    """One panel per step count: a scatter for 2-D samples, an image grid for images."""
    n = len(samples)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    for ax, (steps, x) in zip(axes[0], samples.items(), strict=True):
        if x.dim() == 2:
            if reference is not None:
                ax.scatter(*reference[:, :2].T.cpu().numpy(), s=1, c="0.8", label="data")
            ax.scatter(*x[:, :2].T.float().cpu().numpy(), s=1, c="tab:blue")
            ax.set_xlim(-3.5, 3.5)
            ax.set_ylim(-3.5, 3.5)
            ax.set_aspect("equal")
        else:
            ax.imshow(image_grid(x))
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(f"{steps} step{'s' if steps != 1 else ''}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_prompt_grid(samples: Mapping[int, Tensor], prompts: list[str], out: pathlib.Path, *, per_prompt: int,
                     title: str = "", max_chars: int = 48) -> None:
    """Prompts (rows) vs samples: one panel per step count, each row ``per_prompt`` images of one
    prompt (rows ``i * per_prompt ... (i + 1) * per_prompt - 1`` of every ``samples[k]``)."""
    n, rows = len(samples), len(prompts)
    first = next(iter(samples.values()))
    aspect = first.shape[-1] / first.shape[-2]
    fig, axes = plt.subplots(1, n, figsize=(1.0 + 0.75 * per_prompt * aspect * n + 2.2, 0.9 + 0.75 * rows),
                             squeeze=False)
    for col, (ax, (steps, x)) in enumerate(zip(axes[0], samples.items(), strict=True)):
        grid = image_grid(x[: rows * per_prompt], ncols=per_prompt)
        ax.imshow(grid)
        ax.set_xticks([])
        cell = grid.shape[0] / rows
        ax.set_yticks([cell * (i + 0.5) for i in range(rows)] if col == 0 else [])
        if col == 0:
            shown = [p if len(p) <= max_chars else p[: max_chars - 3] + "..." for p in prompts]
            ax.set_yticklabels([repr(p) if not p.strip() else p for p in shown], fontsize=8)
        ax.set_title(f"{steps} step{'s' if steps != 1 else ''}")
    if title:
        fig.suptitle(title, fontsize=9)
    with warnings.catch_warnings():  # prompts in scripts the default font lacks: boxes, not warnings
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.97 if title else 1.0))  # room for the title
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    plt.close(fig)
