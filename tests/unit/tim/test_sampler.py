"""The ``transition`` sampler (docs/math.md section 7)."""

from __future__ import annotations

import math

import pytest
import torch
from genflow_tim.sampler import TransitionSampler, TransitionSamplerConfig
from genflow_tim.trigflow import TrigFlowPath

from genflow.components.paths import LinearPath
from genflow.interfaces import Backbone, Condition, DataSpec
from genflow.timesteps import resolution_shift, time_grid

from .oracle import MLPBackbone, OracleBackbone, linear_oracle, trigflow_oracle

SPEC = DataSpec(shape=(3,), num_classes=10)


class LabelBackbone(Backbone):
    """``F = x_t + label`` (the null class 10 counts as 0); records each call's batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, x_t, t, r, cond):
        self.calls.append(x_t.shape[0])
        if cond.labels is None:
            return x_t
        return x_t + torch.where(cond.labels == 10, 0, cond.labels).to(x_t.dtype)[:, None]

    def init_weights(self) -> None:
        pass


def _sampler(path=None, spec=SPEC, **options) -> TransitionSampler:
    return TransitionSampler(TransitionSamplerConfig(**options), path=path or LinearPath(), spec=spec)


def _noise(n: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_time_grid():
    grid = time_grid(4)
    assert grid.dtype == torch.float64
    torch.testing.assert_close(grid, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    shifted = time_grid(4, shift=2.0, t_max=math.pi / 2)
    torch.testing.assert_close(shifted, resolution_shift(grid, 2.0) * math.pi / 2)
    assert shifted[0] == math.pi / 2 and shifted[-1] == 0.0
    with pytest.raises(ValueError):
        time_grid(0)


def test_resolution_shift_of_the_grid():
    sampler = _sampler(spec=DataSpec(shape=(4, 64, 64)), base_resolution=32)
    assert sampler.shift == 2.0


def test_one_step_is_guided_by_default():
    """The default guidance interval is closed, so ``t = 1`` (the only step of 1-step sampling) is guided."""
    backbone, labels = LabelBackbone(), torch.arange(8) % 10
    x_0 = _sampler().sample(backbone, _noise(), Condition(labels=labels), steps=1, guidance=3.0)
    # x_0 = x_1 - F, F = F_u + w (F_c - F_u) = x_1 + w y
    torch.testing.assert_close(x_0, -3.0 * labels.to(torch.float64)[:, None].expand(8, 3))
    assert backbone.calls == [16]  # cond and null as one 2N call


def test_a_half_open_interval_leaves_one_step_unguided():
    backbone = LabelBackbone()
    _sampler(guidance_interval=(0.0, 0.999)).sample(backbone, _noise(), Condition(labels=torch.arange(8)),
                                                    steps=4, guidance=3.0)
    assert backbone.calls == [8, 16, 16, 16]


@pytest.mark.parametrize(("guidance", "labels"), [(1.0, torch.arange(8)), (3.0, None)])
def test_no_guidance_pass_without_guidance_or_labels(guidance, labels):
    backbone = LabelBackbone()
    _sampler().sample(backbone, _noise(), Condition(labels=labels), steps=2, guidance=guidance)
    assert backbone.calls == [8, 8]


def test_sampler_is_pure_and_without_grad():
    backbone = MLPBackbone(3)
    sampler = _sampler()
    a = sampler.sample(backbone, _noise(), Condition(), steps=3)
    b = sampler.sample(backbone, _noise(), Condition(), steps=3)
    assert torch.equal(a, b) and not a.requires_grad


def test_stochastic_term_matches_tim_md_on_the_linear_path():
    sampler = _sampler(stochasticity=0.3)
    x_t, x_r, F = torch.randn(3, 8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t, r = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.35, dtype=torch.float64)
    out = sampler.stochastic_term(x_t, x_r, F, t, r, torch.Generator().manual_seed(5))
    xi = torch.randn(8, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    z_hat = x_t + (1 - 0.6) * F
    torch.testing.assert_close(out, x_r - 0.3 * 0.25 * z_hat + math.sqrt(2 * 0.3 * 0.6 * 0.25) * xi)


def test_no_stochasticity_on_the_first_and_last_step():
    backbone = OracleBackbone(linear_oracle(0.5))
    deterministic = _sampler().sample(backbone, _noise(), Condition(), steps=2)
    stochastic = _sampler(stochasticity=0.5).sample(backbone, _noise(), Condition(), steps=2,
                                                    generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(stochastic, deterministic)
    stochastic = _sampler(stochasticity=0.5).sample(backbone, _noise(), Condition(), steps=3,
                                                    generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(stochastic, deterministic)


@pytest.mark.parametrize("make", [linear_oracle, trigflow_oracle])
def test_stochastic_sampling_converges_on_the_oracle(make):
    """With ``F*`` the stochastic sampler is a consistent SDE discretisation: the std error shrinks with N."""
    oracle = make(0.5)
    noise = torch.randn(10_000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sampler = _sampler(path=oracle.path, stochasticity=0.5)
    errors = []
    for steps in (4, 12, 36):
        x_0 = sampler.sample(OracleBackbone(oracle), noise, Condition(), steps=steps,
                             generator=torch.Generator().manual_seed(1))
        errors.append(abs(x_0.std().item() / oracle.s - 1))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.04


def test_trigflow_sampling_runs_from_pi_over_2():
    seen = []

    class Probe(LabelBackbone):
        def forward(self, x_t, t, r, cond):
            seen.append((t[0].item(), r[0].item()))
            return x_t

    _sampler(path=TrigFlowPath()).sample(Probe(), _noise(), Condition(), steps=2)
    assert seen[0] == pytest.approx((math.pi / 2, math.pi / 4)) and seen[1][1] == 0.0


def test_network_sees_the_noise_dtype_and_the_state_stays_fp32():
    class Probe(LabelBackbone):
        def forward(self, x_t, t, r, cond):
            assert x_t.dtype == torch.bfloat16 and t.dtype == torch.float32
            return x_t

    noise = _noise().to(torch.bfloat16)
    out = _sampler().sample(Probe(), noise, Condition(), steps=3)
    assert out.dtype == torch.bfloat16


def test_captions_are_guided_too():
    """A caption-conditioned batch runs the 2N guidance call (null = the empty caption)."""
    backbone = LabelBackbone()
    text = torch.ones(8, 4, dtype=torch.long)
    cond = Condition(text=text, text_mask=torch.ones(8, 4, dtype=torch.bool))
    _sampler(spec=DataSpec(shape=(3,), text=True)).sample(backbone, _noise(), cond, steps=2, guidance=3.0)
    assert backbone.calls == [16, 16]
