"""The convolutional ``unet`` backbone for CPU work."""

from __future__ import annotations

import pytest
import torch
from genflow_tim.unet import ResBlock, UNet, UNetConfig, build_unet
from torch.nn.attention import SDPBackend, sdpa_kernel

from genflow.errors import ConfigError
from genflow.interfaces import Condition, DataSpec

SPEC = DataSpec(shape=(3, 8, 8), num_classes=10)
SMALL = UNetConfig(channels=(8, 16, 16), embedding_dim=16, patch=1)


def make(config: UNetConfig = SMALL, spec: DataSpec = SPEC, *, seed: int = 0) -> UNet:
    """Build on the meta device, materialise on CPU, initialise (the trainer's sequence)."""
    with torch.device("meta"):
        model = build_unet(config, spec=spec)
    model.to_empty(device="cpu")
    torch.manual_seed(seed)
    model.init_weights()
    return model


def perturb_zero_init(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Re-randomise the zero-initialised (output, attention projection) parameters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if (p == 0).all():
                p.copy_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def times(*values: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


@pytest.mark.parametrize("size", [(8, 8), (12, 20), (16, 4)])
def test_output_shape_any_size(size: tuple[int, int]) -> None:
    model = perturb_zero_init(make())
    x = torch.randn(2, 3, *size)
    out = model(x, times(0.9, 0.5), times(0.1, 0.5), Condition(labels=torch.tensor([0, 10])))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [(8, 8), (16, 24)])
def test_space_to_depth_stem_keeps_shapes(size: tuple[int, int]) -> None:
    model = perturb_zero_init(make(UNetConfig(channels=(8, 16), embedding_dim=16, patch=2)))
    x = torch.randn(2, 3, *size)
    out = model(x, times(0.9, 0.5), times(0.1, 0.5), Condition(labels=torch.tensor([0, 10])))
    assert out.shape == x.shape and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.randn(1, 3, 8, 6), times(0.5), times(0.1), Condition())


def test_default_config_size_and_zero_output_at_init() -> None:
    model = make(UNetConfig(), spec=DataSpec(shape=(3, 32, 32), num_classes=10))
    assert 1.2e6 < sum(p.numel() for p in model.parameters()) < 2.0e6
    out = model(torch.randn(2, 3, 32, 32), times(0.7, 0.3), times(0.2, 0.3), Condition())
    assert torch.equal(out, torch.zeros_like(out))


def test_output_depends_on_t_interval_and_class() -> None:
    model = perturb_zero_init(make())
    x = torch.randn(1, 3, 8, 8)
    y = Condition(labels=torch.tensor([3]))
    base = model(x, times(0.6), times(0.2), y)
    assert not torch.allclose(base, model(x, times(0.8), times(0.4), y))  # same t - r, other t
    assert not torch.allclose(base, model(x, times(0.6), times(0.5), y))  # same t, other t - r
    assert not torch.allclose(base, model(x, times(0.6), times(0.2), Condition(labels=torch.tensor([4]))))


def test_null_class_is_the_default() -> None:
    model = perturb_zero_init(make())
    x, t, r = torch.randn(2, 3, 8, 8), times(0.6, 0.9), times(0.2, 0.0)
    null = model(x, t, r, Condition(labels=torch.full((2,), SPEC.num_classes)))
    torch.testing.assert_close(model(x, t, r, Condition()), null)


def test_bf16_parameters_with_fp32_inputs() -> None:
    model = perturb_zero_init(make()).to(torch.bfloat16)
    out = model(torch.randn(2, 3, 8, 8), times(0.6, 0.9), times(0.2, 0.0), Condition())
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


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


def test_fsdp_units_are_the_residual_blocks() -> None:
    model = make(UNetConfig(channels=(8, 16), blocks_per_level=2, embedding_dim=16))
    units = model.fsdp_units()
    assert len(units) == 2 * 2 + 1 + 2 * 2  # down, middle, up
    assert all(isinstance(u, ResBlock) for u in units)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="image data"):
        build_unet(SMALL, spec=DataSpec(shape=(2,)))
    with pytest.raises(ConfigError, match="multiples of 8"):
        build_unet(UNetConfig(channels=(12, 24)), spec=SPEC)
    with pytest.raises(ValueError, match="divisible by 4"):
        make()(torch.randn(1, 3, 8, 6), times(0.5), times(0.1), Condition())
