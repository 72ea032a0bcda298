"""The interval-aware DiT ``tim-dit`` (docs/math.md section 9)."""

from __future__ import annotations

import pytest
import torch
from genflow_tim.dit import DiT, DiTConfig, Preset, apply_rope, axial_rope, build_dit
from torch.nn.attention import SDPBackend, sdpa_kernel

from genflow.errors import ConfigError
from genflow.interfaces import Condition, DataSpec

SPEC = DataSpec(shape=(3, 8, 8), num_classes=10)


def make(config: DiTConfig | None = None, spec: DataSpec = SPEC, *, seed: int = 0) -> DiT:
    """Build on the meta device, materialise on CPU, initialise (the trainer's sequence)."""
    with torch.device("meta"):
        model = build_dit(config or DiTConfig(), spec=spec)
    model.to_empty(device="cpu")
    torch.manual_seed(seed)
    model.init_weights()
    return model


def perturb_zero_init(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Re-randomise the zero-initialised (adaLN-zero, output) parameters so every path is live."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if (p == 0).all():
                p.copy_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def times(*values: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def count(config: DiTConfig, spec: DataSpec) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build_dit(config, spec=spec).parameters())


@pytest.mark.parametrize(("size", "patch"), [((8, 8), 0), ((8, 12), 0), ((16, 4), 0), ((12, 8), 4)])
def test_output_shape_any_size(size: tuple[int, int], patch: int) -> None:
    model = perturb_zero_init(make(DiTConfig(patch_size=patch)))
    x = torch.randn(2, 3, *size)
    out = model(x, times(0.9, 0.5), times(0.1, 0.5), Condition(labels=torch.tensor([0, 10])))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_meta_build_then_init_gives_zero_output() -> None:
    model = make()
    assert all(p.device.type == "cpu" for p in model.parameters())
    out = model(torch.randn(2, 3, 8, 8), times(0.7, 0.3), times(0.2, 0.3), Condition())
    assert torch.equal(out, torch.zeros_like(out))  # zero output layer: F = 0 at initialisation


def test_output_depends_on_t_interval_and_class() -> None:
    model = perturb_zero_init(make())
    x = torch.randn(1, 3, 8, 8)
    y = Condition(labels=torch.tensor([3]))
    base = model(x, times(0.6), times(0.2), y)
    # Same interval t - r = 0.4, different t: phi_t path.
    assert not torch.allclose(base, model(x, times(0.8), times(0.4), y))
    # Same t, different interval: phi_dt path.
    assert not torch.allclose(base, model(x, times(0.6), times(0.5), y))
    # Class.
    assert not torch.allclose(base, model(x, times(0.6), times(0.2), Condition(labels=torch.tensor([4]))))


def test_interval_aware_attention_reads_phi_dt() -> None:
    model = perturb_zero_init(make())
    x, t, r = torch.randn(1, 3, 8, 8), times(0.6), times(0.2)
    base = model(x, t, r, Condition())
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv_interval.weight.zero_()
    assert not torch.allclose(base, model(x, t, r, Condition()))


def test_null_class_is_the_default() -> None:
    model = perturb_zero_init(make())
    x, t, r = torch.randn(2, 3, 8, 8), times(0.6, 0.9), times(0.2, 0.0)
    null = model(x, t, r, Condition(labels=torch.full((2,), SPEC.num_classes)))
    torch.testing.assert_close(model(x, t, r, Condition()), null)


def test_bf16_parameters_with_fp32_inputs() -> None:
    # FSDP2 mixed precision: bf16 parameters, inputs possibly left in fp32; output in the input dtype.
    model = perturb_zero_init(make()).to(torch.bfloat16)
    out = model(torch.randn(2, 3, 8, 8), times(0.6, 0.9), times(0.2, 0.0), Condition())
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_unconditional_spec_has_no_class_embedding() -> None:
    model = perturb_zero_init(make(spec=DataSpec(shape=(3, 8, 8))))
    assert model.class_embedding is None
    assert model(torch.randn(1, 3, 8, 8), times(0.5), times(0.5), Condition()).shape == (1, 3, 8, 8)


# torch loads its forward-AD decompositions through the deprecated torch.jit.script on first use.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_jvp_matches_finite_difference_float64() -> None:
    model = perturb_zero_init(make()).double()
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    t, r = times(0.7, 0.4, dtype=torch.float64), times(0.2, 0.4, dtype=torch.float64)
    dx_dt = torch.randn_like(x)
    cond = Condition(labels=torch.tensor([1, 10]))

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(x, t, r, cond)

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        _, dF_dt = torch.func.jvp(fn, (x, t), (dx_dt, torch.ones_like(t)))
        e = 1e-5
        fd = (fn(x + e * dx_dt, t + e) - fn(x - e * dx_dt, t - e)) / (2 * e)
    torch.testing.assert_close(dF_dt, fd, rtol=1e-6, atol=1e-6 * dF_dt.abs().max().item())


def test_init_is_deterministic_given_the_seed() -> None:
    a, b, c = make(seed=0).state_dict(), make(seed=0).state_dict(), make(seed=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_fsdp_units_are_the_blocks() -> None:
    model = make(DiTConfig(depth=3))
    assert model.fsdp_units() == list(model.blocks)
    assert len(model.fsdp_units()) == 3


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    from genflow.train.trainer import checkpoint_units

    x, t, r = torch.randn(2, 3, 8, 8), times(0.6, 0.9), times(0.2, 0.0)
    grads = []
    for ckpt in (False, True):
        model = perturb_zero_init(make(DiTConfig()))
        if ckpt:
            checkpoint_units(model)  # what train.activation_checkpointing does
        model(x, t, r, Condition()).square().mean().backward()
        grads.append([p.grad for p in model.parameters()])
    for g0, g1 in zip(*grads, strict=True):
        torch.testing.assert_close(g0, g1)


def test_rope_depends_on_relative_position_only() -> None:
    # q at (i, j) . k at (i', j') is unchanged when both positions shift by the same offset.
    h, w, d = 4, 5, 8
    cos, sin = axial_rope(h, w, d, device=torch.device("cpu"), dtype=torch.float64)
    q, k = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    qs = apply_rope(q.expand(1, 1, h * w, d), (cos, sin))[0, 0]  # (h w, d)
    ks = apply_rope(k.expand(1, 1, h * w, d), (cos, sin))[0, 0]
    dot = (qs[:, None] * ks[None]).sum(-1)  # (h w, h w)
    idx = lambda i, j: i * w + j  # noqa: E731
    torch.testing.assert_close(dot[idx(0, 0), idx(1, 2)], dot[idx(2, 1), idx(3, 3)])
    assert not torch.allclose(dot[idx(0, 0), idx(1, 2)], dot[idx(0, 0), idx(2, 1)])


def test_config_overrides_and_errors() -> None:
    assert DiTConfig(preset="B/4", depth=2).resolve() == Preset(
        hidden_size=768, depth=2, heads=12, patch_size=4, adaln_rank=256)
    with pytest.raises(ConfigError, match="image data"):
        build_dit(DiTConfig(), spec=DataSpec(shape=(2,)))
    with pytest.raises(ConfigError, match="heads"):
        build_dit(DiTConfig(heads=3), spec=SPEC)
    with pytest.raises(ValueError, match="multiples of the patch size"):
        make()(torch.randn(1, 3, 8, 9), times(0.5), times(0.1), Condition())


@pytest.mark.parametrize(("preset", "expected"), [("B/4", 128.8e6), ("XL/2", 664.1e6)])
def test_parameter_count_matches_the_reference(preset: str, expected: float) -> None:
    n = count(DiTConfig(preset=preset), DataSpec(shape=(4, 32, 32), num_classes=1000))
    assert abs(n - expected) / expected < 0.01, n
