"""The official TiM network code against genflow's imported ``tim-dit``, on the same random weights.

    python benchmarks/official_parity.py --tim-repo PATH [--kind c2i t2i]

PATH is a checkout of github.com/WZDTHU/TiM; its model code needs ``timm`` and ``einops``
(``pip install timm einops``; ``flash_attn``, imported at the top of the official files but not
used on the ``fused_attn`` path, is replaced by a module that refuses to run if it is missing).
For each kind a tiny model of the official layout (hidden 64, depth 2) gets random tensors; they
load strictly into the official module (so genflow's manifest is its state dict) and, through
``genflow_tim.official.convert_*``, into ``tim-dit``; both run in float64 on the same inputs
(with captions: the official null caption for the rows without a real token). The official code
computes its timestep sinusoid and RoPE frequencies in float32; the figure ``float64`` recomputes
those two in float64 so that it measures the network, ``as released`` keeps them. Prints one JSON
line per kind: the largest output and the largest absolute differences.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import pathlib
import sys
import types

import _paths  # noqa: F401  (puts the repository and its plugins on sys.path)
import torch
from genflow_tim.dit import DiT, DiTConfig
from genflow_tim.official import (
    OfficialModel,
    backbone_options,
    convert_c2i,
    convert_t2i,
    official_c2i_manifest,
    official_t2i_manifest,
)

from genflow.interfaces import Condition, DataSpec

TINY = {"c2i": OfficialModel(name="tiny-c2i", kind="c2i", hidden=64, depth=2, heads=4, patch=2, channels=3, latent=8,
                             lora_rank=16, encoder_depth=1, z_dim=12, projector_dim=24, num_classes=10),
        "t2i": OfficialModel(name="tiny-t2i", kind="t2i", hidden=64, depth=2, heads=4, patch=2, channels=3, latent=8,
                             lora_rank=16, encoder_depth=1, z_dim=12, projector_dim=24, num_classes=0, cap_dim=40,
                             max_length=12)}


def _import_official(repo: pathlib.Path, kind: str) -> types.ModuleType:
    sys.path.insert(0, str(repo))
    try:
        importlib.import_module("flash_attn")
    except ImportError:
        stub = types.ModuleType("flash_attn")

        def flash_attn_func(*_: object, **__: object) -> None:
            raise RuntimeError("flash_attn is not installed (this check uses attn_type='fused_attn')")

        stub.flash_attn_func = flash_attn_func  # type: ignore[attr-defined]
        sys.modules["flash_attn"] = stub
    return importlib.import_module(f"tim.models.{kind}.tim_model")


def _random_state(manifest: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in manifest.items():
        value = 0.15 * torch.randn(shape, generator=gen, dtype=torch.float64)
        state[key] = 1 + value if "norm.weight" in key else value
    return state


def _float64_frequencies(module: types.ModuleType, official: torch.nn.Module) -> None:
    """The official sinusoid and RoPE tables, recomputed in float64 (same formulas)."""

    def positional_embedding(t: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
        args = t[:, None].double() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    module.TimestepEmbedder.positional_embedding = staticmethod(positional_embedding)
    rope = official.rope
    freqs = 1.0 / (10000 ** (torch.arange(0, rope.dim, 2, dtype=torch.float64) / rope.dim))
    positions = torch.arange(rope.freqs_h_cached.shape[0], dtype=torch.float64)
    cached = (positions[:, None] * freqs).repeat_interleave(2, dim=-1)
    rope.freqs_h_cached.copy_(cached)
    rope.freqs_w_cached.copy_(cached)


def check(repo: pathlib.Path, kind: str, seed: int = 0) -> dict[str, object]:
    model = TINY[kind]
    module = _import_official(repo, kind)
    common = {"input_size": model.latent, "patch_size": model.patch, "in_channels": model.channels,
              "hidden_size": model.hidden, "encoder_depth": model.encoder_depth, "depth": model.depth,
              "num_heads": model.heads, "z_dim": model.z_dim, "projector_dim": model.projector_dim,
              "new_condition": "t-r", "use_new_embed": True, "qk_norm": True, "distance_aware": True,
              "lora_hidden_size": model.lora_rank}
    gen = torch.Generator().manual_seed(seed + 1)
    n, side = 4, model.latent
    x = torch.randn(n, model.channels, side, side, generator=gen, dtype=torch.float64)
    t = torch.rand(n, generator=gen, dtype=torch.float64)
    r = t * torch.rand(n, generator=gen, dtype=torch.float64)
    if kind == "c2i":
        official = module.TiM(num_classes=model.num_classes, class_dropout_prob=0.1, **common).double()
        state = _random_state(official_c2i_manifest(model), seed)
        weights = convert_c2i(state, model)
        y = torch.arange(n) % (model.num_classes + 1)  # the null class included
        y[-1] = model.num_classes
        cond, official_y = Condition(labels=y), y
        spec = DataSpec(shape=(model.channels, side, side), num_classes=model.num_classes)
    else:
        official = module.TiM(cap_feat_dim=model.cap_dim, **common).double()
        state = _random_state(official_t2i_manifest(model, model.cap_dim), seed)
        null = torch.randn(model.max_length, model.cap_dim, generator=gen, dtype=torch.float64)
        weights = convert_t2i(state, model, null)
        text = torch.randn(n, 7, model.cap_dim, generator=gen, dtype=torch.float64)
        mask = torch.zeros(n, 7, dtype=torch.bool)
        mask[0], mask[1, :3] = True, True  # row 2 and 3: no real token, the null caption
        cond = Condition(text=text, text_mask=mask)
        official_y = torch.where(mask.any(1)[:, None, None], text, null[:7])
        spec = DataSpec(shape=(model.channels, side, side), text=True, text_dim=model.cap_dim)
    official.load_state_dict(state, strict=True)  # genflow's manifest is the official state dict
    options = {k: v for k, v in backbone_options(model).items() if k != "name"}
    dit = DiT(DiTConfig(**options), spec=spec).double()
    dit.load_state_dict(weights, strict=True)
    with torch.no_grad():
        ours = dit(x, t, r, cond)
        released = official(x, t, r, official_y, attn_type="fused_attn")
        _float64_frequencies(module, official)
        exact = official(x, t, r, official_y, attn_type="fused_attn")
    return {"kind": kind, "tensors": len(state), "max_abs_output": float(exact.abs().max()),
            "max_abs_diff_float64": float((exact - ours).abs().max()),
            "max_abs_diff_as_released": float((released - ours).abs().max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tim-repo", required=True, type=pathlib.Path, help="a checkout of github.com/WZDTHU/TiM")
    parser.add_argument("--kind", nargs="+", choices=("c2i", "t2i"), default=["c2i", "t2i"])
    args = parser.parse_args()
    for kind in args.kind:
        print(json.dumps(check(args.tim_repo.resolve(), kind)))


if __name__ == "__main__":
    main()
