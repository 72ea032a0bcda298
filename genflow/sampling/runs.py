"""Open a finished or running run folder for sampling and evaluation."""

from __future__ import annotations

import pathlib

import attrs
import torch

from genflow import config as cfg
from genflow.components.build import Components, build_backbone, build_components, materialize
from genflow.errors import GenflowError
from genflow.interfaces import Backbone
from genflow.plugins import PluginManager
from genflow.train import checkpoint, safe_load
from genflow.train.distributed import World
from genflow.train.ema import EMA
from genflow.train.rundir import stored_config

FINAL_WEIGHTS = "model.pt"


@attrs.frozen(kw_only=True)
class LoadedRun:
    config: cfg.RunConfig
    components: Components
    backbone: Backbone
    source: str  # which weights: "model.pt" or "checkpoints/step_XXXXXXXX (EMA)"


def _load_final(backbone: Backbone, path: pathlib.Path) -> None:
    # weights_only: a crafted file is refused (UnsafeFileError), never unpickled with its code
    payload = safe_load.load_weights(path)
    try:
        backbone.load_state_dict(payload["model"])
    except Exception as exc:  # a damaged or foreign file: one line, not a traceback
        detail = " ".join(str(exc).split())[:200]
        raise GenflowError(f"'{path}' is not a genflow weights file for this model: {detail}") from None


def _load_checkpoint_ema(backbone: Backbone, path: pathlib.Path, decays: tuple[float, ...]) -> None:
    world = World(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    ema = EMA(backbone, decays)
    state = {"ema": ema.state_dict()}
    checkpoint.load(state, path, world)
    ema.load_state_dict(state["ema"])
    with torch.no_grad():
        ema.averages[decays[0]].copy_to()


def load_run(run_dir: pathlib.Path, manager: PluginManager, *, step: int | None = None,
             device: torch.device | None = None) -> LoadedRun:
    """Config, components and the EMA weights of a run (``model.pt``, or checkpoint ``step``)."""
    device = device or torch.device("cpu")
    config_path = run_dir / "config.toml"
    if not run_dir.is_dir() or not config_path.is_file():
        raise GenflowError(f"'{run_dir}' is not a genflow run folder (no config.toml)")
    config = stored_config(run_dir, manager)  # config.toml with the changes its resumes recorded
    components = build_components(config, manager)
    backbone = materialize(build_backbone(config, manager, components.spec, meta=True), torch.device("cpu"), 0)
    final = run_dir / FINAL_WEIGHTS
    available = checkpoint.list_checkpoints(run_dir)
    if step is None and final.is_file():
        _load_final(backbone, final)
        source = FINAL_WEIGHTS
    else:
        chosen = [p for s, p in available if step is None or s == step]
        if not chosen:
            have = ", ".join(str(s) for s, _ in available) or "none"
            raise GenflowError(f"run folder '{run_dir}' has no checkpoint{'' if step is None else f' at step {step}'}"
                               f" (checkpoints: {have}; final weights {FINAL_WEIGHTS}: "
                               f"{'yes' if final.is_file() else 'no'})")
        _load_checkpoint_ema(backbone, chosen[-1], config.train.ema_decay)
        source = f"{chosen[-1].relative_to(run_dir)} (EMA)"
    backbone.to(device).eval()
    return LoadedRun(config=config, components=components, backbone=backbone, source=source)
