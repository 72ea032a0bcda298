"""Exact metrics of low-dimensional (``toy2d``) samples: sliced Wasserstein and transition error."""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from genflow.config.domains import interval, non_negative, positive
from genflow.data.toy2d import GaussianMixture, Toy2D
from genflow.eval.distances import sliced_wasserstein
from genflow.eval.flow_map import flow_map
from genflow.interfaces import Dataset, EvalContext, EvalSamples, Metric

#: Offset of the reference seed from the evaluation seed, so reference data never equals the noise.
REFERENCE_SEED_OFFSET = 7


@attrs.frozen(kw_only=True)
class SlicedWassersteinConfig:
    """``projections``: random directions; ``reference``: fresh data points (0: as many as samples)."""

    projections: int = attrs.field(default=512, validator=positive())
    reference: int = attrs.field(default=0, validator=non_negative())


class SlicedWasserstein(Metric):
    """Sliced 2-Wasserstein distance between the samples and fresh data (lower is better).

    Two independent data sets of ``N`` points are not at distance 0: the finite-sample floor is
    the data-to-data distance at the same ``N`` (about 0.065 for ``gaussians8`` at ``N = 2000``).
    """

    def __init__(self, config: SlicedWassersteinConfig) -> None:
        self.config = config

    def applies_to(self, dataset: Dataset) -> bool:
        return not dataset.spec.is_image and not dataset.spec.text

    def __call__(self, batch: EvalSamples, context: EvalContext) -> float:
        n = self.config.reference or batch.samples.shape[0]
        reference = context.memo(f"reference_points/{n}", lambda: _reference(context, n))
        return sliced_wasserstein(batch.samples, reference, projections=self.config.projections, seed=context.seed)


def _reference(context: EvalContext, n: int) -> Tensor:
    x = context.dataset.reference(n, seed=context.seed + REFERENCE_SEED_OFFSET).x
    return context.dataset.decode(x).cpu()


@attrs.frozen(kw_only=True)
class TransitionErrorConfig:
    """``ode_steps``: RK4 steps of the exact flow map (256 keep its error near 1e-7)."""

    ode_steps: int = attrs.field(default=256, validator=interval(10, integer=True))


class TransitionError(Metric):
    """Mean per-sample distance ``|x_N(z) - Phi(z)|`` between each sample and the exact flow map of
    the noise it came from (docs/math.md section 8): zero for a perfect sampler at every step count.

    Applies to ``toy2d`` Gaussian mixtures (``gaussians8``, ``gaussian``), whose marginal velocity is
    analytic (:mod:`genflow.eval.flow_map`); the flow map is solved on the run's own path.
    """

    def __init__(self, config: TransitionErrorConfig) -> None:
        self.config = config

    def applies_to(self, dataset: Dataset) -> bool:
        return isinstance(dataset, Toy2D) and dataset.mixture() is not None

    def __call__(self, batch: EvalSamples, context: EvalContext) -> float:
        target = self.exact(batch.noise, context)
        return float((batch.samples.double().cpu() - target).norm(dim=1).mean())

    def exact(self, noise: Tensor, context: EvalContext) -> Tensor:
        """``Phi(noise)`` in float64 on the CPU, solved once per noise tensor."""
        cached = context.cache.get("flow_map")
        if cached is not None and torch.equal(cached[0], noise.cpu()):
            return cached[1]
        mixture = _mixture(context.dataset)
        target = flow_map(mixture, context.path, noise.cpu(), steps=self.config.ode_steps)
        context.cache["flow_map"] = (noise.cpu(), target)
        return target


def _mixture(dataset: Dataset) -> GaussianMixture:
    mixture = dataset.mixture() if isinstance(dataset, Toy2D) else None
    assert mixture is not None, "transition_error applies only to Gaussian-mixture toy2d data"
    return mixture
