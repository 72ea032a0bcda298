"""Contract checks for every kind of component, public so plugin authors can run them too.

Each ``check_*`` builds a component from its registration with default settings on tiny data and
asserts the interface contract; genflow's own ``tests/contract`` runs them over every registered
component, and a plugin's test suite can do the same::

    from genflow.plugins import PluginManager
    from genflow.testing import check_objective

    def test_my_objective():
        check_objective(PluginManager(), "myobjective")
"""

from __future__ import annotations

import pathlib
import tempfile

import torch

from genflow.build import cache_dir as genflow_cache_dir
from genflow.errors import ConfigError, GenflowError
from genflow.interfaces import (
    Backbone,
    Batch,
    BatchLoader,
    Condition,
    Dataset,
    DataSpec,
    Derivative,
    Objective,
    ObjectiveOutput,
    ProbabilityPath,
    Sampler,
    TextEncoder,
)
from genflow.plugins import PluginManager

#: Data shapes a contract check tries, in order, until the backbone accepts one.
SPECS = (DataSpec(shape=(2,), num_classes=3), DataSpec(shape=(3, 8, 8), num_classes=3))


def _component(manager: PluginManager, kind: str, name: str):  # noqa: ANN202
    component = manager.get(kind, name)
    return component, component.config()


def build_backbone_for_tests(manager: PluginManager, name: str, spec: DataSpec | None = None) -> tuple[Backbone,
                                                                                                     DataSpec]:
    """The backbone ``name`` with default settings on the first spec of ``SPECS`` it accepts."""
    component, config = _component(manager, "backbone", name)
    for candidate in [spec] if spec is not None else SPECS:
        try:
            with torch.device("meta"):
                backbone = component.build(config, spec=candidate)
        except ConfigError:
            continue
        backbone.to_empty(device="cpu")
        torch.manual_seed(0)
        backbone.init_weights()
        return backbone, candidate
    raise AssertionError(f"backbone '{name}' accepts none of the test data shapes {[s.shape for s in SPECS]}")


def _batch(spec: DataSpec, n: int = 4, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *spec.shape), generator=generator)
    labels = torch.randint(spec.num_classes, (n,), generator=generator) if spec.num_classes else None
    return Batch(x=x, cond=Condition(labels=labels))


def check_path(manager: PluginManager, name: str) -> None:
    """``x_0 = x``, ``x_{t_max} = z``, ``v_t = d x_t / dt``, and the transition at ``r = t`` is the identity."""
    component, config = _component(manager, "path", name)
    path = component.build(config)
    assert isinstance(path, ProbabilityPath)
    x, z = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    zeros, ends = torch.zeros(5, dtype=torch.float64), torch.full((5,), path.t_max, dtype=torch.float64)
    torch.testing.assert_close(path.interpolate(x, z, zeros), x)
    torch.testing.assert_close(path.interpolate(x, z, ends), z, atol=1e-12, rtol=0)
    t, h = torch.rand(5, dtype=torch.float64) * 0.8 * path.t_max + 0.1, 1e-6
    numeric = (path.interpolate(x, z, t + h) - path.interpolate(x, z, t - h)) / (2 * h)
    torch.testing.assert_close(path.velocity(x, z, t), numeric, atol=1e-7, rtol=1e-7)
    F = torch.randn_like(x)
    torch.testing.assert_close(path.transition(x, F, t, t), x)


def check_backbone(manager: PluginManager, name: str) -> None:
    """Output shaped like ``x_t``, finite, deterministic, and class-conditional with a null class."""
    backbone, spec = build_backbone_for_tests(manager, name)
    assert isinstance(backbone, Backbone)
    batch = _batch(spec)
    t = torch.tensor([0.9, 0.5, 0.3, 1.0])
    r = torch.tensor([0.1, 0.5, 0.0, 0.2])
    out = backbone(batch.x, t, r, batch.cond)
    assert out.shape == batch.x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(backbone(batch.x, t, r, batch.cond), out)
    null = Condition(labels=torch.full((4,), spec.num_classes))
    assert torch.isfinite(backbone(batch.x, t, r, null)).all()
    assert all(isinstance(m, torch.nn.Module) for m in backbone.fsdp_units())


def check_derivative(manager: PluginManager, name: str) -> None:
    """The total derivative of an analytic ``F(x(t), t)`` along ``(dx/dt, 1)``."""
    component, config = _component(manager, "derivative", name)
    derivative = component.build(config)
    assert isinstance(derivative, Derivative)
    x_t = torch.randn(6, 3, dtype=torch.float64)
    dx_dt = torch.randn(6, 3, dtype=torch.float64)
    t = torch.linspace(0.3, 0.7, 6, dtype=torch.float64)

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # F = sin(x) * t^2
        return torch.sin(x) * t[:, None] ** 2

    exact = torch.cos(x_t) * dx_dt * t[:, None] ** 2 + torch.sin(x_t) * 2 * t[:, None]
    got = derivative.time_derivative(fn, x_t, t, dx_dt, t_min=torch.zeros_like(t), t_max=1.0)
    assert got.shape == x_t.shape and not got.requires_grad
    torch.testing.assert_close(got, exact, rtol=1e-3, atol=1e-4)


def _objective_context(manager: PluginManager, spec: DataSpec) -> dict[str, object]:
    """Build context of an objective: the core's linear path, the first registered derivative
    provider (None when no plugin registers one) and ``spec``."""
    path_c, path_cfg = _component(manager, "path", "linear")
    derivative = None
    if manager.names("derivative"):
        deriv_c, deriv_cfg = _component(manager, "derivative", manager.names("derivative")[0])
        derivative = deriv_c.build(deriv_cfg)
    return {"path": path_c.build(path_cfg), "derivative": derivative, "spec": spec}


def check_objective(manager: PluginManager, name: str, backbone: str = "mlp") -> None:
    """A finite scalar loss whose gradient reaches the backbone; deterministic given the generator."""
    component, config = _component(manager, "objective", name)
    model, spec = build_backbone_for_tests(manager, backbone)
    objective = component.build(config, **_objective_context(manager, spec))
    assert isinstance(objective, Objective)
    batch = _batch(spec, n=8)
    out = objective.loss(model, batch, generator=torch.Generator().manual_seed(1))
    assert isinstance(out, ObjectiveOutput)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.per_sample.shape == (8,)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    again = objective.loss(model, batch, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again.loss, out.loss)


def check_sampler(manager: PluginManager, name: str, backbone: str = "mlp") -> None:
    """Samples shaped like the noise, finite, deterministic, for 1 and 3 steps, with guidance."""
    component, config = _component(manager, "sampler", name)
    model, spec = build_backbone_for_tests(manager, backbone)
    path_c, path_cfg = _component(manager, "path", "linear")
    sampler = component.build(config, path=path_c.build(path_cfg), spec=spec)
    assert isinstance(sampler, Sampler)
    batch = _batch(spec)
    for steps in (1, 3):
        for guidance in (1.0, 2.0):
            a = sampler.sample(model, batch.x, batch.cond, steps=steps, guidance=guidance)
            b = sampler.sample(model, batch.x, batch.cond, steps=steps, guidance=guidance)
            assert a.shape == batch.x.shape and torch.isfinite(a).all()
            torch.testing.assert_close(a, b)


def check_dataset(manager: PluginManager, name: str, cache_dir: pathlib.Path | None = None,
                  shared_cache: bool = True) -> None:
    """Batches of the declared shape; a loader resumed from ``state_dict`` continues exactly.

    Datasets prepared on first use go to ``cache_dir``, else genflow's cache (``GENFLOW_CACHE``)
    when ``shared_cache``, else a temporary folder."""
    component, config = _component(manager, "dataset", name)
    if hasattr(config, "url"):  # a store reader needs a store: covered by the data tests
        return
    with tempfile.TemporaryDirectory() as tmp:
        dataset = component.build(config, cache_dir=cache_dir or (genflow_cache_dir() if shared_cache else pathlib.Path(tmp)))
        assert isinstance(dataset, Dataset)
        loader = dataset.loader(batch_size=4, rank=0, world_size=1, seed=3)
        assert isinstance(loader, BatchLoader)
        it = iter(loader)
        first = next(it)
        assert first.x.shape == (4, *dataset.spec.shape)
        state = loader.state_dict()
        expected = next(it)
        resumed = dataset.loader(batch_size=4, rank=0, world_size=1, seed=3)
        resumed.load_state_dict(state)
        torch.testing.assert_close(next(iter(resumed)).x, expected.x)
        assert dataset.reference(8, seed=0).x.shape == (8, *dataset.spec.shape)


def check_text_encoder(manager: PluginManager, name: str) -> None:
    """States ``(N, L, dim)``, finite and deterministic; padding does not change the states of real
    tokens; an empty caption (all-False mask) stays finite. ``tokenize`` is checked on odd captions
    when the default config can tokenize (the built-in ``transformer`` needs a tokenizer file)."""
    component, config = _component(manager, "text_encoder", name)
    spec = DataSpec(shape=(3, 8, 8), text=True)
    with torch.device("meta"):
        encoder = component.build(config, spec=spec)
    assert isinstance(encoder, TextEncoder) and encoder.dim > 0
    encoder.to_empty(device="cpu")
    torch.manual_seed(0)
    encoder.init_weights()
    encoder.eval()
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0], [0, 0, 0, 0, 0]])
    mask = ids != 0
    with torch.no_grad():
        states = encoder(ids, mask)
        assert states.shape == (3, 5, encoder.dim) and torch.isfinite(states).all()
        torch.testing.assert_close(encoder(ids, mask), states)
        shorter = encoder(ids[:, :3], mask[:, :3])  # less padding: the real tokens' states are the same
        torch.testing.assert_close(shorter[mask[:, :3]], states[mask])
    try:
        tok_ids, tok_mask = encoder.tokenize(["a red circle", "", "zebra \u00e9\u00e8 \u4e09\u4e2a"])
    except GenflowError:
        return
    assert tok_ids.shape == tok_mask.shape and tok_ids.shape[0] == 3 and not tok_mask[1].any()


CHECKS = {
    "text_encoder": check_text_encoder,
    "path": check_path,
    "backbone": check_backbone,
    "derivative": check_derivative,
    "objective": check_objective,
    "sampler": check_sampler,
    "dataset": check_dataset,
}
