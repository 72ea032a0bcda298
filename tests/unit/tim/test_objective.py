"""The ``tim`` objective: time sampling, targets, weighting, masking, guidance (docs/math.md s3, s5, s6)."""

from __future__ import annotations

import math

import attrs
import pytest
import torch
from genflow_tim.derivatives import DDE, JVP
from genflow_tim.objective import (
    REFERENCE_LOSS,
    REFERENCE_MIXTURE,
    TimExperimental,
    TimObjective,
    TimObjectiveConfig,
    grouped_mean,
    sample_times,
)
from genflow_tim.trigflow import TrigFlowPath

from genflow.components.paths import LinearPath
from genflow.config.convert import structure
from genflow.errors import ConfigError
from genflow.interfaces import Batch, Condition, DataSpec, Derivative, bind, expand_like
from genflow.objectives import interval_weight, transition_coefficients_dt, transition_target
from genflow.timesteps import resolution_shift

from .oracle import MLPBackbone


def _objective(path=None, derivative=None, spec=DataSpec(shape=(3,)), **options) -> TimObjective:
    config = TimObjectiveConfig(**options)
    return TimObjective(config, path=path or LinearPath(), derivative=derivative or DDE(), spec=spec)


def _batch(n: int = 64, gen: torch.Generator | None = None, labels: int = 0) -> Batch:
    gen = gen or torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    cond = Condition(labels=torch.randint(0, labels, (n,), generator=gen)) if labels else Condition()
    return Batch(x=x, cond=cond)


# ---------------------------------------------------------------- config


def test_config_defaults_are_the_reference_ones_but_the_loss_and_mixture():
    c = TimObjectiveConfig()
    assert (c.p_mean, c.p_std, c.diffusion_ratio, c.consistency_ratio) == (-0.4, 1.0, 0.7, 0.1)
    assert TimObjectiveConfig(**REFERENCE_MIXTURE).diffusion_ratio == 0.5
    assert (c.weighting, c.sigma_d, c.adaptive, c.experimental.adaptive_eps) == ("tangent", 1.0, True, 1e-5)
    # genflow's loss defaults (docs/results.md) and the reference's, one override away
    assert (c.adaptive_groups, c.experimental.diagonal_groups, c.directional, c.diffusion_t) == (8, 0, False, "single")
    assert c.diffusion_p_mean == -1.2
    reference = TimObjectiveConfig(**REFERENCE_LOSS)
    assert (reference.adaptive_groups, reference.directional, reference.diffusion_t) == (0, True, "max")
    assert (c.label_dropout, c.guidance_target, c.guidance_target_scale) == (0.1, False, 0.75)
    assert (c.guidance_target_interval, c.base_resolution) == ((0.3, 0.8), 0)


def test_config_structures_from_toml_data():
    c = structure({"weighting": "odds", "guidance_target_interval": [0.2, 0.9], "adaptive": False},
                  TimObjectiveConfig, "objective")
    assert (c.weighting, c.guidance_target_interval, c.adaptive) == ("odds", (0.2, 0.9), False)
    with pytest.raises(ConfigError, match="objective.weighting"):
        structure({"weighting": "cubic"}, TimObjectiveConfig, "objective")
    with pytest.raises(ValueError):
        TimObjectiveConfig(diffusion_ratio=0.8, consistency_ratio=0.3)


# ---------------------------------------------------------------- (t, r) sampling


def test_time_pairs_fractions_and_order():
    n = 1000
    t, r = sample_times(TimObjectiveConfig(), n, generator=torch.Generator().manual_seed(0))
    assert (t >= r).all() and (r >= 0).all() and (t < 1).all() and (t > 0).all()
    assert (t == r).sum() == 700 and (r == 0).sum() == 100
    t, r = sample_times(TimObjectiveConfig(diffusion_ratio=0.0, consistency_ratio=0.0), n,
                        generator=torch.Generator().manual_seed(0))
    assert (t > r).all()
    # logit-normal (-0.4, 1): max(t1, t2) has median sigmoid(-0.4 + q), q = Phi^-1(sqrt(1/2)) = 0.5449
    assert abs(t.median().item() - torch.sigmoid(torch.tensor(-0.4 + 0.5449)).item()) < 0.03


def test_single_draw_diffusion_times_follow_one_logit_normal():
    """``diffusion_t = "single"`` at ``diffusion_p_mean = p_mean``: ``r = t`` rows take the first of the
    two draws (median sigmoid(p_mean)), others unchanged."""
    n = 4000
    config = TimObjectiveConfig(diffusion_t="single", diffusion_p_mean=-0.4)
    t, r = sample_times(config, n, generator=torch.Generator().manual_seed(0))
    t0, r0 = sample_times(TimObjectiveConfig(diffusion_t="max"), n, generator=torch.Generator().manual_seed(0))
    fm = t == r
    assert fm.sum() == round(0.7 * n) and torch.equal(fm, t0 == r0)
    assert abs(t[fm].median().item() - torch.sigmoid(torch.tensor(-0.4)).item()) < 0.03
    torch.testing.assert_close((t[~fm], r[~fm]), (t0[~fm], r0[~fm]))
    assert (t[fm] <= t0[fm]).all()  # a single draw is never above the max of two


@pytest.mark.parametrize("p_mean", [-1.2, 0.5])
def test_diffusion_p_mean_moves_only_the_r_equals_t_rows(p_mean):
    n = 4000
    t, r = sample_times(TimObjectiveConfig(diffusion_p_mean=p_mean), n, generator=torch.Generator().manual_seed(0))
    t0, r0 = sample_times(TimObjectiveConfig(diffusion_t="max"), n, generator=torch.Generator().manual_seed(0))
    fm = t == r
    assert torch.equal(fm, t0 == r0)
    assert abs(t[fm].median().item() - torch.sigmoid(torch.tensor(p_mean)).item()) < 0.03
    torch.testing.assert_close((t[~fm], r[~fm]), (t0[~fm], r0[~fm]))


def test_grouped_mean_averages_per_kind_and_time():
    t = torch.tensor([0.1, 0.2, 0.8, 0.9, 0.3, 0.4, 0.7, 0.6])
    r = torch.tensor([0.1, 0.2, 0.8, 0.9, 0.0, 0.1, 0.5, 0.2])  # first four rows: r = t
    L = torch.tensor([1.0, 3.0, 5.0, 7.0, 2.0, 4.0, 8.0, 10.0])
    keep = torch.ones(8, dtype=torch.bool)
    out = grouped_mean(L, t, r, 2, keep)
    torch.testing.assert_close(out, torch.tensor([2.0, 2.0, 6.0, 6.0, 3.0, 3.0, 9.0, 9.0]))
    keep[3] = False  # a dropped row neither joins a group nor changes
    out = grouped_mean(L, t, r, 2, keep)
    assert out[3] == 7.0 and out[2] == 5.0 and out[0] == 2.0
    torch.testing.assert_close(grouped_mean(L, t, r, 100, torch.ones(8, dtype=torch.bool)), L)


def _grouped_mean_loop(L: torch.Tensor, t: torch.Tensor, r: torch.Tensor, groups, keep: torch.Tensor):
    """The definition, one kind and one group at a time: the oracle of the vectorised pass."""
    out = L.clone()
    per_kind = (groups, groups) if isinstance(groups, int) else groups
    for kind, groups in zip(((t == r) & keep, (t != r) & keep), per_kind, strict=True):
        rows = kind.nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        ordered = rows[t[rows].argsort(stable=True)]
        for group in ordered.tensor_split(min(groups, ordered.numel())):
            out[group] = L[group].mean()
    return out


@pytest.mark.parametrize("seed", range(20))
def test_grouped_mean_matches_the_loop(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 70, (), generator=g))
    t = torch.rand(n, generator=g, dtype=torch.float64)
    if seed % 3 == 0:
        t = (t * 4).round() / 4  # ties in t: the stable order decides the groups
    r = torch.where(torch.rand(n, generator=g) < 0.5, t, t * torch.rand(n, generator=g, dtype=torch.float64))
    L = torch.rand(n, generator=g, dtype=torch.float64)
    keep = torch.rand(n, generator=g) < (0.8 if seed % 2 else 1.0)
    L = torch.where(keep, L, torch.nan) if seed % 4 == 1 else L  # dropped rows may hold anything
    groups = int(torch.randint(1, 12, (), generator=g))
    if seed % 5 == 2:  # r = t rows counted apart
        groups = (int(torch.randint(1, 12, (), generator=g)), groups)
    torch.testing.assert_close(grouped_mean(L, t, r, groups, keep), _grouped_mean_loop(L, t, r, groups, keep),
                               equal_nan=True)


def test_grouped_adaptive_weight_does_not_follow_the_sample():
    """Per-sample 1/sg(L) gives every row the same weighted loss ~1; grouped weights keep the ratio."""
    objective = _objective(adaptive_groups=1, directional=False, weighting="constant")
    F_hat = torch.zeros(4, 3, dtype=torch.float64)
    F = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.5, 0.5, 0.5, 0.5], dtype=torch.float64)
    out = objective.weighted_loss(F, F_hat, t, t.clone())
    out.loss.backward()
    assert F.grad is not None
    # one group: weight 1 / mean(L) for all rows, so gradients stay proportional to F (unbiased)
    torch.testing.assert_close(F.grad[1, 0] / F.grad[0, 0], torch.tensor(2.0, dtype=torch.float64))
    per_sample = _objective(directional=False, weighting="constant", adaptive_groups=0)
    F.grad = None
    per_sample.weighted_loss(F, F_hat, t, t.clone()).loss.backward()
    torch.testing.assert_close(F.grad[1, 0] / F.grad[0, 0], torch.tensor(0.5, dtype=torch.float64), rtol=1e-4, atol=0)


def test_time_pairs_rows_are_random():
    t, r = sample_times(TimObjectiveConfig(), 64, generator=torch.Generator().manual_seed(0))
    same = (t == r).nonzero().squeeze(1)
    assert not torch.equal(same, torch.arange(32))


def test_resolution_shift_and_path_scale():
    spec = DataSpec(shape=(4, 64, 64))
    objective = _objective(spec=spec, base_resolution=32)
    assert objective.shift == 2.0
    t, r = objective.times(256, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    t0, r0 = sample_times(objective.config, 256, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close((t, r), (resolution_shift(t0, 2.0), resolution_shift(r0, 2.0)))
    trig = _objective(path=TrigFlowPath())
    t, r = trig.times(256, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    torch.testing.assert_close((t, r), (t0 * math.pi / 2, r0 * math.pi / 2))


# ---------------------------------------------------------------- target and weighting


def test_linear_target_is_eq_9():
    """General form on the linear path: ``F_hat = v_t - (t - r) dF/dt`` (arXiv 2509.04394, Eq. 9)."""
    gen = torch.Generator().manual_seed(0)
    t, r = torch.rand(2, 16, generator=gen, dtype=torch.float64).sort(dim=0).values.flip(0)
    x_t, v_t, dF = torch.randn(3, 16, 4, generator=gen, dtype=torch.float64)
    F_hat = transition_target(LinearPath(), x_t, v_t, dF, t, r)
    torch.testing.assert_close(F_hat, v_t - expand_like(t - r, x_t) * dF, rtol=0, atol=1e-14)


def test_trigflow_target_is_the_velocity_form_of_tim_md():
    """``alpha_hat x + sigma_hat z + (B / B') (alpha_hat' x + sigma_hat' z - dF/dt)`` (docs/math.md s3)."""
    gen = torch.Generator().manual_seed(0)
    t, r = (torch.rand(2, 16, generator=gen, dtype=torch.float64) * math.pi / 2).sort(dim=0).values.flip(0)
    x, z, dF = torch.randn(3, 16, 4, generator=gen, dtype=torch.float64)
    path = TrigFlowPath()
    x_t, v_t = path.interpolate(x, z, t), path.velocity(x, z, t)
    dv_dt = -x_t  # alpha_hat' x + sigma_hat' z = -cos(t) x - sin(t) z
    _, B, dB = (expand_like(c, x_t) for c in path.transition_coefficients(t, r))
    torch.testing.assert_close(transition_target(path, x_t, v_t, dF, t, r), v_t + B / dB * (dv_dt - dF))


def test_flow_matching_rows_regress_on_v():
    gen = torch.Generator().manual_seed(0)
    t = torch.rand(8, generator=gen, dtype=torch.float64)
    x_t, v_t = torch.randn(2, 8, 3, generator=gen, dtype=torch.float64)
    for path in (LinearPath(), TrigFlowPath()):
        torch.testing.assert_close(transition_target(path, x_t, v_t, torch.zeros_like(x_t), t, t), v_t)


def test_trigflow_coefficients():
    """``x_r = cos(t - r) x_t - sin(t - r) F`` carries a conditional trajectory with ``F = v_t``;
    ``dB/dt`` and the forward-AD ``dA/dt`` match differences."""
    path, gen = TrigFlowPath(), torch.Generator().manual_seed(0)
    assert path.t_max == math.pi / 2
    t, r = (torch.rand(2, 32, generator=gen, dtype=torch.float64) * math.pi / 2).sort(dim=0).values.flip(0)
    x, z = torch.randn(2, 32, 3, generator=gen, dtype=torch.float64)
    x_r = path.transition(path.interpolate(x, z, t), path.velocity(x, z, t), t, r)
    torch.testing.assert_close(x_r, path.interpolate(x, z, r))
    cos_t, sin_t = torch.cos(t)[:, None], torch.sin(t)[:, None]
    torch.testing.assert_close(path.interpolate(x, z, t), cos_t * x + sin_t * z)
    A, B, dA, dB = transition_coefficients_dt(path, t, r)
    h = 1e-6
    A_p, B_p, _ = path.transition_coefficients(t + h, r)
    A_m, B_m, _ = path.transition_coefficients(t - h, r)
    torch.testing.assert_close(dB, (B_p - B_m) / (2 * h), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(dA, (A_p - A_m) / (2 * h), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(transition_coefficients_dt(LinearPath(), t, r)[2], torch.zeros_like(t))


@pytest.mark.parametrize(
    ("weighting", "g"),
    [("tangent", torch.tan), ("linear", lambda t: t), ("odds", lambda t: t / (1 - t)), ("constant", None)],
)
def test_interval_weightings(weighting, g):
    t = torch.tensor([0.9, 0.5, 0.7, 0.3], dtype=torch.float64)
    r = torch.tensor([0.1, 0.0, 0.7, 0.2], dtype=torch.float64)
    w = interval_weight(t, r, weighting=weighting, sigma_d=1.0)
    expected = torch.ones(4, dtype=torch.float64) if g is None else (1.0 + g(t) - g(r)) ** -0.5
    expected[2] = 1.0  # r = t rows
    torch.testing.assert_close(w, expected)
    assert w[2] == 1.0


# ---------------------------------------------------------------- the loss


@pytest.mark.parametrize("diffusion_ratio", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("path", [LinearPath(), TrigFlowPath()])
def test_interval_rows_are_the_t_ne_r_rows(diffusion_ratio, path):
    """The sync-free row selection equals ``(t != r).nonzero()`` on every sampled batch size."""
    objective = _objective(path=path, spec=DataSpec(shape=(3, 64, 64)), base_resolution=32,
                           diffusion_ratio=diffusion_ratio, consistency_ratio=0.0 if diffusion_ratio == 1 else 0.1)
    gen = torch.Generator().manual_seed(0)
    for n in (1, 2, 3, 7, 64, 255):
        t, r = objective.times(n, generator=gen, dtype=torch.float32)
        assert torch.equal(objective.interval_rows(t, r), (t != r).nonzero().squeeze(1))


class _Recorder(Derivative):
    """Records what the objective hands to its derivative provider."""

    def __init__(self, value: float = 0.0) -> None:
        self.value, self.seen = value, []

    def time_derivative(self, fn, x_t, t, dx_dt, *, t_min=None, t_max=1.0):
        self.seen.append((x_t, t, dx_dt, t_min, t_max, fn(x_t, t)))
        out = torch.zeros_like(x_t)
        out[0] = self.value
        return out


def test_derivative_runs_only_on_t_ne_r_rows():
    recorder = _Recorder()
    objective = _objective(derivative=recorder, path=TrigFlowPath())
    objective.loss(MLPBackbone(3), _batch(100), generator=torch.Generator().manual_seed(0))
    (x_t, t, dx_dt, t_min, t_max, F) = recorder.seen[0]
    assert x_t.shape[0] == 30 and (t > t_min).all() and t_max == math.pi / 2  # 1 - diffusion_ratio
    assert F.shape == x_t.shape


def test_loss_backward_and_logs():
    backbone = MLPBackbone(3)
    out = _objective(derivative=JVP()).loss(backbone, _batch(), generator=torch.Generator().manual_seed(0))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.per_sample.shape == (64,) and not out.per_sample.requires_grad
    assert {"mse", "cos", "nonfinite"} <= set(out.logs) and out.logs["nonfinite"] == 0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in backbone.parameters())


def test_adaptive_weighting_normalises_each_row():
    """With adaptive weighting each row contributes ``w L / (sg(L) + eps)``, i.e. about ``w``."""
    objective = _objective(weighting="constant", directional=False, adaptive_groups=0)
    F = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    F_hat = torch.randn(8, 3, dtype=torch.float64)
    t = torch.full((8,), 0.5, dtype=torch.float64)
    out = objective.weighted_loss(F, F_hat, t, t * 0.5)
    L = (F - F_hat).square().mean(1).detach()
    torch.testing.assert_close(out.loss, (L / (L + 1e-5)).mean())
    torch.testing.assert_close(out.per_sample, L)


def test_directional_term():
    objective = _objective(weighting="constant", adaptive=False, directional=True)
    F = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    F_hat = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    L, mse, cos = objective.per_sample_loss(F, F_hat)
    torch.testing.assert_close(cos, torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(L, mse + cos)


def test_nonfinite_rows_are_masked_and_counted():
    objective = _objective(weighting="constant", adaptive=False, directional=False)
    F = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    F_hat = torch.randn(6, 3, dtype=torch.float64)
    F_hat[1, 0] = float("nan")  # e.g. a diverging derivative
    F_bad = F * torch.tensor([1, 1, 1, float("inf"), 1, 1], dtype=torch.float64)[:, None]  # an overflow
    F_bad.retain_grad()
    t = torch.full((6,), 0.5, dtype=torch.float64)
    out = objective.weighted_loss(F_bad, F_hat, t, t / 2)
    keep = torch.tensor([0, 2, 4, 5])
    torch.testing.assert_close(out.loss, (F[keep] - F_hat[keep]).square().mean(1).mean())
    assert out.logs["nonfinite"] == 2
    assert out.per_sample[1].isnan() and not out.per_sample[keep].isnan().any()
    out.loss.backward()
    # the gradient the objective sends back is finite and zero on the bad rows (an inf made *inside*
    # the network can still poison its own backward: the trainer's gradient-norm guard catches that)
    assert torch.isfinite(F_bad.grad).all() and (F_bad.grad[[1, 3]] == 0).all()


def test_all_rows_nonfinite_give_a_nan_loss():
    objective = _objective()
    F = torch.full((4, 3), float("nan"), dtype=torch.float64, requires_grad=True)
    t = torch.full((4,), 0.5, dtype=torch.float64)
    out = objective.weighted_loss(F, torch.zeros(4, 3, dtype=torch.float64), t, t / 2)
    assert out.loss.isnan() and out.logs["nonfinite"] == 4


def test_nonfinite_derivative_reaches_the_logs():
    out = _objective(derivative=_Recorder(float("nan"))).loss(MLPBackbone(3), _batch(),
                                                              generator=torch.Generator().manual_seed(0))
    assert out.logs["nonfinite"] == 1 and torch.isfinite(out.loss)


def test_loss_is_reproducible_from_the_generator():
    backbone, batch = MLPBackbone(3), _batch()
    a = _objective().loss(backbone, batch, generator=torch.Generator().manual_seed(3))
    b = _objective().loss(backbone, batch, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.loss, b.loss)


# ---------------------------------------------------------------- labels and guidance


def test_label_dropout_to_the_null_class():
    objective = _objective(spec=DataSpec(shape=(3,), num_classes=10))
    cond = Condition(labels=torch.randint(0, 10, (4000,), generator=torch.Generator().manual_seed(0)))
    dropped = objective.drop_labels(cond, generator=torch.Generator().manual_seed(1)).labels
    null = dropped == 10
    assert abs(null.float().mean().item() - 0.1) < 0.02
    assert torch.equal(dropped[~null], cond.labels[~null])
    assert objective.drop_labels(Condition(), generator=torch.Generator()).labels is None


class _LabelBackbone(MLPBackbone):
    """``F = x_t + label`` (the null class 10 counts as 0); records its batch sizes."""

    sizes: list[int]

    def forward(self, x_t, t, r, cond):
        self.sizes = [*getattr(self, "sizes", []), x_t.shape[0]]
        y = torch.where(cond.labels == 10, 0, cond.labels).to(x_t.dtype)
        return x_t + y[:, None]


def test_guidance_enhanced_target():
    spec = DataSpec(shape=(3,), num_classes=10)
    objective = _objective(spec=spec, guidance_target=True)
    gen = torch.Generator().manual_seed(0)
    x_t, v_t = torch.randn(2, 40, 3, generator=gen, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 40, dtype=torch.float64)
    labels = torch.randint(0, 10, (40,), generator=gen)
    labels[::4] = 10
    backbone = _LabelBackbone(3)
    v = objective.guided_velocity(backbone, x_t, v_t, t, Condition(labels=labels))
    inside = (t >= 0.3) & (t <= 0.8) & (labels != 10)
    expected = v_t + 0.75 * torch.where(inside, labels, 0).to(v_t.dtype)[:, None]
    torch.testing.assert_close(v, expected)
    assert backbone.sizes == [2 * int(inside.sum())]  # one batched call, rows in the interval only


class _CaptionBackbone(MLPBackbone):
    """``F = x_t + (real tokens in the caption)``: an empty caption counts as 0."""

    def forward(self, x_t, t, r, cond):
        return x_t + cond.text_mask.sum(1).to(x_t.dtype)[:, None]


def test_guidance_enhanced_target_with_captions():
    spec = DataSpec(shape=(3,), text=True, text_dim=8)
    objective = _objective(spec=spec, guidance_target=True)
    gen = torch.Generator().manual_seed(0)
    x_t, v_t = torch.randn(2, 40, 3, generator=gen, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 40, dtype=torch.float64)
    lengths = torch.randint(1, 6, (40,), generator=gen)
    lengths[::4] = 0  # dropped captions
    mask = torch.arange(6) < lengths[:, None]
    ids = torch.where(mask, 5, 0)
    v = objective.guided_velocity(_CaptionBackbone(3), x_t, v_t, t, Condition(text=ids, text_mask=mask))
    inside = (t >= 0.3) & (t <= 0.8) & (lengths > 0)
    expected = v_t + 0.75 * torch.where(inside, lengths, 0).to(v_t.dtype)[:, None]
    torch.testing.assert_close(v, expected)


def test_guidance_target_runs_in_the_loss():
    spec = DataSpec(shape=(3,), num_classes=10)
    backbone = MLPBackbone(3, num_classes=10)
    out = _objective(spec=spec, guidance_target=True).loss(backbone, _batch(labels=10),
                                                           generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss)


# ---------------------------------------------------------------- the TimeFunction contract


def test_bind_accepts_tiled_batches():
    backbone = MLPBackbone(3, num_classes=5)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    r = torch.rand(6, generator=gen, dtype=torch.float64)
    t = r + 0.1
    cond = Condition(labels=torch.arange(6) % 5)
    fn = bind(backbone, r, cond)
    once = fn(x, t)
    torch.testing.assert_close(once, backbone(x, t, r, cond))
    for k in (2, 3):
        torch.testing.assert_close(fn(torch.cat([x] * k), torch.cat([t] * k)), torch.cat([once] * k))
    with pytest.raises(ValueError, match="multiple"):
        fn(x[:4], t[:4])


def test_registered_components():
    from genflow_tim import plugin

    objectives = {c.name: c for c in plugin.genflow_objectives()}
    assert objectives["tim"].config is TimObjectiveConfig
    assert objectives["tim"].defaults == {"sampler": "transition", "derivative": "dde"}
    assert {"dde", "jvp"} <= {c.name for c in plugin.genflow_derivatives()}
    assert {c.name for c in plugin.genflow_samplers()} == {"transition"}
    (trig,) = plugin.genflow_paths()
    assert trig.name == "trigflow" and isinstance(trig.build(trig.config()), TrigFlowPath)
    objective = objectives["tim"].build(TimObjectiveConfig(), path=LinearPath(), derivative=JVP(),
                                        spec=DataSpec(shape=(3,)))
    assert isinstance(objective, TimObjective) and attrs.has(type(objective.config))


# ---------------------------------------------------------------- the guidance-enhanced target, both variants


class _AnalyticBackbone(MLPBackbone):
    """``F = x_t (1 + t^2)(1 + r / 2) + t y`` (``y`` the label, the null class 10 counts as 0), with
    its ``dF/dt`` along ``(dx, 1, 0)`` written out by hand: ``dx (1 + t^2)(1 + r / 2) + 2 t x_t (1 + r / 2) + y``."""

    def forward(self, x_t, t, r, cond):
        y = torch.where(cond.labels == 10, 0, cond.labels).to(x_t.dtype)[:, None]
        return x_t * ((1 + t**2) * (1 + r / 2))[:, None] + t[:, None] * y + 0 * self.out.bias.sum()

    @staticmethod
    def by_hand(x_t, t, r, labels):
        y = torch.where(labels == 10, 0, labels).to(x_t.dtype)[:, None]
        return x_t * ((1 + t**2) * (1 + r / 2))[:, None] + t[:, None] * y

    @staticmethod
    def dF_dt_by_hand(x_t, dx, t, r, labels):
        y = torch.where(labels == 10, 0, labels).to(x_t.dtype)[:, None]
        return dx * ((1 + t**2) * (1 + r / 2))[:, None] + x_t * (2 * t * (1 + r / 2))[:, None] + y


class _Recording(TimObjective):
    """Keeps the inputs of ``target_velocity`` and of ``weighted_loss`` for a re-derivation."""

    def target_velocity(self, backbone, x_t, v_t, t, cond, true_cond):
        self.seen = {"x_t": x_t, "v_t": v_t, "t": t, "cond": cond, "true": true_cond}
        return super().target_velocity(backbone, x_t, v_t, t, cond, true_cond)

    def weighted_loss(self, F, F_hat, t, r):
        self.seen.update(F_hat=F_hat, r=r)
        return super().weighted_loss(F, F_hat, t, r)


def _enhanced_target_by_hand(seen, variant: str, scale: float = 0.75, interval=(0.3, 0.8)):
    """``F_hat`` of the enhanced target re-derived on the linear path (arXiv 2509.04394, Eq. 9):
    ``F_hat = v_hat - (t - r) dF/dt``; official: ``v_hat = v + w (F(y_true) - F(null))`` on every
    row with a true label in the interval and ``dF/dt`` along ``v``; guided-tangent: guided by the
    dropped label (null rows unguided) and ``dF/dt`` along ``v_hat``."""
    x_t, v, t, r = seen["x_t"], seen["v_t"], seen["t"], seen["r"]
    dropped, true = seen["cond"].labels, seen["true"].labels
    guide_labels = true if variant == "official" else dropped
    null = torch.full_like(guide_labels, 10)
    inside = ((t >= interval[0]) & (t <= interval[1]) & (guide_labels != 10))[:, None]
    term = _AnalyticBackbone.by_hand(x_t, t, t, guide_labels) - _AnalyticBackbone.by_hand(x_t, t, t, null)
    v_hat = v + scale * torch.where(inside, term, torch.zeros_like(term))
    direction = v if variant == "official" else v_hat
    dF_dt = _AnalyticBackbone.dF_dt_by_hand(x_t, direction, t, r, dropped)
    dF_dt = torch.where((t == r)[:, None], torch.zeros_like(dF_dt), dF_dt)
    return v_hat - (t - r)[:, None] * dF_dt


@pytest.mark.parametrize("variant", ["official", "guided-tangent"])
def test_enhanced_target_matches_a_float64_rederivation(variant):
    spec = DataSpec(shape=(3,), num_classes=10)
    config = TimObjectiveConfig(guidance_target=True, experimental=TimExperimental(guidance_target_variant=variant), label_dropout=0.3,
                                adaptive=False)
    objective = _Recording(config, path=LinearPath(), derivative=JVP(), spec=spec)
    objective.loss(_AnalyticBackbone(3, num_classes=10), _batch(n=256, labels=10),
                   generator=torch.Generator().manual_seed(3))
    seen = objective.seen
    dropped_rows = seen["cond"].labels != seen["true"].labels
    assert 0 < int(dropped_rows.sum()) < 256  # the batch has dropped and kept labels
    torch.testing.assert_close(seen["F_hat"], _enhanced_target_by_hand(seen, variant), rtol=1e-12, atol=1e-12)


def test_enhanced_target_variants_differ_on_dropped_rows_only_through_guidance_and_tangent():
    spec = DataSpec(shape=(3,), num_classes=10)
    targets = {}
    for variant in ("official", "guided-tangent"):
        config = TimObjectiveConfig(guidance_target=True, experimental=TimExperimental(guidance_target_variant=variant), label_dropout=0.3)
        objective = _Recording(config, path=LinearPath(), derivative=JVP(), spec=spec)
        objective.loss(_AnalyticBackbone(3, num_classes=10), _batch(n=256, labels=10),
                       generator=torch.Generator().manual_seed(3))
        targets[variant] = objective.seen
    official, genflow = targets["official"], targets["guided-tangent"]
    t, r = official["t"], official["r"]
    dropped = official["cond"].labels != official["true"].labels
    labels = official["true"].labels
    guided = (t >= 0.3) & (t <= 0.8) & (labels != 10) & (labels != 0)  # label 0: F_c = F_u here
    diff = (official["F_hat"] - genflow["F_hat"]).abs().amax(1)
    # r = t rows outside the guided set coincide; dropped rows inside the interval differ
    same = (t == r) & ~(guided & dropped)
    assert torch.equal(diff[same], torch.zeros_like(diff[same]))
    assert bool((diff[guided & dropped] > 1e-3).all())


def test_guidance_target_variant_is_validated():
    with pytest.raises(ValueError, match="guidance_target_variant"):
        TimExperimental(guidance_target_variant="ema")
