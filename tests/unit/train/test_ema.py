"""The multi-tensor EMA update is torch-ema's update (float64, up to rounding), and its state round-trips."""

from __future__ import annotations

import torch
from torch import nn
from torch_ema import ExponentialMovingAverage

from genflow.plugins import PluginManager
from genflow.sampling.runs import load_run
from genflow.train import checkpoint
from genflow.train.distributed import World
from genflow.train.ema import EMA
from tests.unit.train.helpers import train


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 5), nn.SiLU(), nn.Linear(5, 2)).double()
    model[0].bias.requires_grad_(False)  # frozen parameters have no average
    return model


def _step(model: nn.Module, seed: int) -> None:
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g))


def test_update_is_torch_ema_up_to_rounding():
    model = _model(0)
    params = [p for p in model.parameters() if p.requires_grad]
    ema = EMA(model, (0.9, 0.999))
    with torch.no_grad():
        references = {d: ExponentialMovingAverage(params, decay=d) for d in (0.9, 0.999)}
    for step in range(25):  # through torch-ema's warm-up (decay (1 + n) / (10 + n)) and past it
        _step(model, step)
        ema.update()
        for reference in references.values():
            reference.update()
    for decay, reference in references.items():
        assert ema.averages[decay].num_updates == reference.num_updates == 25
        for ours, theirs in zip(ema.averages[decay].shadow_params, reference.shadow_params, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-14, atol=1e-14)
    assert len(ema.averages[0.9].shadow_params) == 3


def test_applied_swaps_in_the_average_and_back():
    model = _model(1)
    ema = EMA(model, (0.5,))
    _step(model, 0)
    ema.update()
    trained = [p.clone() for p in model.parameters()]
    with ema.applied() as averaged:
        assert torch.equal(averaged[2].weight, ema.averages[0.5].shadow_params[-2])
        assert not torch.equal(averaged[2].weight, trained[3])
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), trained, strict=True))


def test_state_dict_round_trip():
    source, target = _model(2), _model(3)
    ema = EMA(source, (0.99,))
    for step in range(3):
        _step(source, step)
        ema.update()
    state = {k: v.clone() for k, v in ema.state_dict().items()}
    restored = EMA(target, (0.99,))
    restored.load_state_dict(state)
    assert restored.averages[0.99].num_updates == 3
    for ours, theirs in zip(restored.averages[0.99].shadow_params, ema.averages[0.99].shadow_params, strict=True):
        assert torch.equal(ours, theirs)
    assert set(state) == {"0.99/0.weight", "0.99/2.weight", "0.99/2.bias", "0.99/num_updates"}


def test_the_final_weights_file_holds_the_ema_of_the_last_checkpoint(tmp_path):
    """``model.pt`` is the EMA (as ``genflow eval --checkpoint LAST`` loads it), not the raw weights:
    on CPU the exported state dict aliases the live parameters, which leaving the EMA restores."""
    train(tmp_path / "run", "train.steps=4", "train.ema_decay=[0.9]", "train.log_every=1")
    manager = PluginManager()
    final = load_run(tmp_path / "run", manager).backbone.state_dict()
    ema = load_run(tmp_path / "run", manager, step=4).backbone.state_dict()
    raw = final_raw_weights(tmp_path / "run", 4)
    assert final.keys() == ema.keys()
    for name in final:
        torch.testing.assert_close(final[name], ema[name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(final[name], raw[name]) for name in final)


def final_raw_weights(run_dir, step):
    """The raw parameters of checkpoint ``step`` (``torch.distributed.checkpoint`` on one process)."""
    model = load_run(run_dir, PluginManager(), step=step).backbone
    state = {"model": {k: v.clone() for k, v in model.state_dict().items()}}
    path = dict(checkpoint.list_checkpoints(run_dir))[step]
    checkpoint.load(state, path, World(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))
    return state["model"]
