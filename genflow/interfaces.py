"""The abstract interfaces every genflow plugin implements.

Conventions (docs/math.md section 1): ``t = 0`` is data, ``t = 1`` is noise; per-sample times are 1-D
tensors of shape ``(N,)``; data tensors are ``(N, D)`` (low-dimensional) or ``(N, C, H, W)``.
The core never imports a plugin: it only talks to these classes.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import attrs
import torch
from torch import Tensor, nn

from genflow.errors import GenflowError
from genflow.rng import replayed_rng, rng_snapshot


def expand_like(t: Tensor, x: Tensor) -> Tensor:
    """Reshape per-sample ``t`` of shape ``(N,)`` to broadcast against ``x`` of shape ``(N, ...)``."""
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1))).to(x.dtype)


# --------------------------------------------------------------------------------------------
# Conditioning and batches
# --------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Condition:
    """What a sample is conditioned on; every field is optional and batch-first.

    ``labels``: ``(N,)`` int64 class ids, where ``num_classes`` (the null class) means
    "unconditional" for classifier-free guidance. ``text``: ``(N, L, D)`` encoder states or
    ``(N, L)`` token ids; ``text_mask``: ``(N, L)`` bool, True on real tokens.
    """

    labels: Tensor | None = None
    text: Tensor | None = None
    text_mask: Tensor | None = None

    def _map(self, fn: Callable[[Tensor], Tensor]) -> Condition:
        return Condition(**{k: None if v is None else fn(v) for k, v in attrs.asdict(self, recurse=False).items()})

    def index(self, rows: Tensor) -> Condition:
        """Rows selected by a bool mask or an index tensor."""
        return self._map(lambda v: v[rows])

    def tile(self, k: int) -> Condition:
        """The batch repeated ``k`` times along dim 0 (``[c, c, ..., c]``), for batched passes."""
        return self._map(lambda v: torch.cat([v] * k, dim=0))

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> Condition:
        return self._map(lambda v: v.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Condition:
        """Every field in page-locked host memory (for asynchronous copies to a GPU)."""
        return self._map(lambda v: v.pin_memory())

    @staticmethod
    def cat(conds: Sequence[Condition]) -> Condition:
        """Concatenate conditions with identical fields along dim 0."""
        first = attrs.asdict(conds[0], recurse=False)
        return Condition(
            **{
                k: None if v is None else torch.cat([getattr(c, k) for c in conds], dim=0)
                for k, v in first.items()
            }
        )


@attrs.frozen(kw_only=True)
class Batch:
    """One training batch: data ``x`` (``(N, ...)``) and its condition."""

    x: Tensor
    cond: Condition = Condition()


@attrs.frozen(kw_only=True)
class DataSpec:
    """What a backbone must know about the data it models.

    ``shape`` is one sample's shape: ``(D,)`` or ``(C, H, W)``. ``num_classes`` is 0 when the
    data is unlabelled. ``text`` is True when batches carry captions; ``text_dim`` is then the width
    of the text-encoder states a backbone receives in ``Condition.text`` (set by
    ``genflow.components.build.build_backbone`` from the run's text encoder; 0 before).
    """

    shape: tuple[int, ...]
    num_classes: int = 0
    text: bool = False
    text_dim: int = 0

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3


# --------------------------------------------------------------------------------------------
# ProbabilityPath
# --------------------------------------------------------------------------------------------


class ProbabilityPath(abc.ABC):
    """An interpolant ``x_t = alpha_t x + sigma_t z`` (docs/math.md section 1).

    ``t_max`` is the noise end of the time interval (1 for the linear path, pi/2 for TrigFlow).
    The transition ``x_r = A_{t,r} x_t + B_{t,r} F`` (docs/math.md section 2) is part of the path.
    """

    t_max: float = 1.0

    @abc.abstractmethod
    def alpha(self, t: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def sigma(self, t: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def d_alpha(self, t: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def d_sigma(self, t: Tensor) -> Tensor: ...

    @abc.abstractmethod
    def transition_coefficients(self, t: Tensor, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(A_{t,r}, B_{t,r}, dB/dt)`` of the transition ``x_r = A x_t + B F``."""

    def interpolate(self, x: Tensor, z: Tensor, t: Tensor) -> Tensor:
        """``x_t = alpha_t x + sigma_t z``."""
        return expand_like(self.alpha(t), x) * x + expand_like(self.sigma(t), x) * z

    def velocity(self, x: Tensor, z: Tensor, t: Tensor) -> Tensor:
        """Conditional velocity ``v_t = alpha_t' x + sigma_t' z``."""
        return expand_like(self.d_alpha(t), x) * x + expand_like(self.d_sigma(t), x) * z

    def transition(self, x_t: Tensor, F: Tensor, t: Tensor, r: Tensor) -> Tensor:
        """Apply one transition step ``x_r = A_{t,r} x_t + B_{t,r} F`` (docs/math.md section 2)."""
        A, B, _ = self.transition_coefficients(t, r)
        return expand_like(A, x_t) * x_t + expand_like(B, x_t) * F


# --------------------------------------------------------------------------------------------
# Backbone
# --------------------------------------------------------------------------------------------


class Backbone(nn.Module, abc.ABC):
    """The network ``F_theta(x_t, t, r, cond)``; its output is shaped like ``x_t``.

    Subclasses build their parameters so they can be created on the meta device and then
    materialised with ``to_empty`` + ``init_weights()``.
    """

    #: True when ``torch.func.jvp`` can differentiate ``forward`` (forward-mode AD everywhere).
    supports_jvp: bool = True

    @abc.abstractmethod
    def forward(self, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition) -> Tensor:
        """``x_t``: ``(N, ...)``; ``t``, ``r``: ``(N,)`` with ``t >= r``; returns ``(N, ...)``."""

    @abc.abstractmethod
    def init_weights(self) -> None:
        """(Re-)initialise every parameter and buffer in place (after ``to_empty``)."""

    def fsdp_units(self) -> list[nn.Module]:
        """Sub-modules to shard one by one with FSDP2 (e.g. transformer blocks); root last."""
        return []


class TextEncoder(nn.Module, abc.ABC):
    """Captions -> states ``(N, L, dim)`` for cross-attention (the ``text_encoder`` slot).

    It owns its tokenizer: :meth:`tokenize` runs in the data pipeline and the sampling CLI (CPU, no
    gradients) and gives ``(ids, mask)``; :meth:`forward` runs inside the model (the
    ``genflow.text.conditioned.TextConditioned`` wrapper calls it on every backbone call), so its
    trainable parameters are trained jointly with the generator, sharded and averaged (EMA) with
    it. A pretrained encoder loads its weights in ``init_weights`` (after ``to_empty``; it is built
    on the meta device) and freezes them with ``requires_grad_(False)``. Rows whose mask is all
    False are the empty caption, the null condition of classifier-free guidance; states at masked
    positions may be anything finite (backbones ignore them).
    """

    #: Width ``D_text`` of the states.
    dim: int
    #: True for an encoder whose library or weights live outside genflow and load on first use
    #: (which may then fail with one ``GenflowError`` where they are missing).
    external_weights: bool = False

    @abc.abstractmethod
    def tokenize(self, captions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``(ids, mask)``: ``(N, L)`` int64 and ``(N, L)`` bool (True on real tokens), any caption
        (empty, unknown words, other scripts; too long ones truncated with a warning)."""

    @abc.abstractmethod
    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """``ids``, ``mask``: ``(N, L)``; returns ``(N, L, dim)``."""

    @abc.abstractmethod
    def init_weights(self) -> None:
        """(Re-)initialise (or load) every parameter in place, after ``to_empty``."""

    def fsdp_units(self) -> list[nn.Module]:
        """Sub-modules to shard one by one with FSDP2 (its transformer layers)."""
        return []

    def provenance(self) -> dict[str, Any]:
        """What the encoder depends on beyond its config (tokenizer file and checksum, weights)."""
        return {}


# --------------------------------------------------------------------------------------------
# Derivative providers
# --------------------------------------------------------------------------------------------


class TimeFunction(Protocol):
    """``fn(x, t) -> F`` with ``r`` and the condition closed over.

    It must accept a batch that is ``k`` copies of the original batch concatenated along dim 0
    (``x``: ``(k N, ...)``, ``t``: ``(k N,)``), so derivative providers can run several
    evaluations as one batched call. :func:`bind` makes one from a backbone.
    """

    def __call__(self, x: Tensor, t: Tensor) -> Tensor: ...


def bind(backbone: Callable[..., Tensor], r: Tensor, cond: Condition) -> TimeFunction:
    """``fn(x, t) = backbone(x, t, r, cond)``: the :class:`TimeFunction` of ``backbone`` at fixed ``r``.

    ``fn`` accepts ``k``-fold tiled batches (``k N`` rows): ``r`` and ``cond`` are tiled to match.
    """
    n = r.shape[0]

    def fn(x: Tensor, t: Tensor) -> Tensor:
        k, rest = divmod(x.shape[0], n)
        if rest or k < 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"TimeFunction got {x.shape[0]} rows, not a multiple of its batch of {n}")
        if k == 1:
            return backbone(x, t, r, cond)
        return backbone(x, t, torch.cat([r] * k), cond.tile(k))

    return fn


def interval_rows(t: Tensor, r: Tensor) -> Tensor:
    """The rows that need ``dF/dt``: those with ``t != r``, ascending, ``(M,)`` int64.

    On ``r = t`` rows the interval has zero length, so ``dF/dt`` drops out of every target that
    multiplies it by ``t - r`` (arXiv 2509.04394, Eq. 9); the providers are not run there.
    """
    return (t != r).nonzero().squeeze(1)


@attrs.frozen(kw_only=True)
class DerivativeOutput:
    """The main pass and its time derivative, both ``(N, ...)`` shaped like ``x_t``.

    ``F``: ``backbone(x_t, t, r, cond)`` with gradients (the prediction to regress).
    ``dF_dt``: ``dF/dt`` along ``(dx_dt, 1)`` at fixed ``r``, detached (a stop-gradient target); zero
    on the rows that did not need it.
    """

    F: Tensor
    dF_dt: Tensor  # noqa: N815 (the paper's name)


class Derivative(abc.ABC):
    """Computes ``dF/dt``, the total derivative of ``fn(x(t), t)`` along ``(dx_dt, 1)``.

    **Provider side** (implement :meth:`time_derivative`): called under no-grad semantics, the
    result is detached; evaluate ``fn`` only inside ``[t_min, t_max]`` (``fn`` is defined for
    ``r <= t <= t_max``); never advance the global RNG (wrap passes in
    ``genflow.rng.preserved_rng``), so every pass sees the random state (dropout masks) the main pass
    sees. ``order`` is the accuracy order of the estimate (``genflow.testing.check_derivative`` holds
    the provider to it); a provider that reuses the main pass sets ``uses_output`` and takes it as
    ``F_t``.

    **Objective side** (call :meth:`forward_and_derivative`): it runs the main pass and the
    provider in the order the provider needs, replays the random state, and evaluates ``dF/dt`` only
    on the rows that need it (:func:`interval_rows`). :meth:`on_rows` is the derivative alone.
    """

    #: False when the provider needs forward-mode AD through the backbone (``jvp``).
    forward_only: bool = True

    #: True when ``time_derivative`` takes ``F_t=fn(x_t, t)`` from the caller's main pass; the
    #: caller then runs that pass first and replays its RNG state for the provider's passes.
    uses_output: bool = False

    #: Accuracy order: the error shrinks like ``step^order`` (1: one-sided differences; 2: central
    #: differences; exact methods such as forward-mode AD count as 2).
    order: int = 2

    @abc.abstractmethod
    def time_derivative(
        self,
        fn: TimeFunction,
        x_t: Tensor,
        t: Tensor,
        dx_dt: Tensor,
        *,
        t_min: Tensor | None = None,
        t_max: float = 1.0,
        F_t: Tensor | None = None,
    ) -> Tensor:
        """Return ``dF/dt`` shaped like ``x_t`` (detached).

        ``x_t``, ``dx_dt``: ``(M, ...)``; ``t``, ``t_min``: ``(M,)``. ``F_t``: ``fn(x_t, t)`` as the
        main pass computed it (detached), given only to providers with ``uses_output``; others may
        leave the keyword out of their signature.
        """

    def check_backbone(self, backbone: Backbone, *, distributed: bool) -> None:  # noqa: B027
        """Raise ``GenflowError`` before training when this provider cannot run on ``backbone``."""

    def on_rows(
        self, backbone: Callable[..., Tensor], x_t: Tensor, t: Tensor, r: Tensor, dx_dt: Tensor, cond: Condition,
        *, t_max: float, rows: Tensor | None = None, F_t: Tensor | None = None,
    ) -> Tensor:
        """``sg(dF/dt)`` of ``backbone(., ., r, cond)`` along ``(dx_dt, 1)``, ``(N, ...)``: computed on
        ``rows`` (default :func:`interval_rows`), zero on the others.

        ``F_t``: the main pass's output ``(N, ...)``, handed over when the provider ``uses_output``.
        """
        dF_dt = torch.zeros_like(x_t)
        rows = interval_rows(t, r) if rows is None else rows
        if rows.numel() == 0:
            return dF_dt
        fn = bind(backbone, r[rows], cond.index(rows))
        reuse = {"F_t": F_t.detach()[rows]} if F_t is not None and self.uses_output else {}
        dF_dt[rows] = self.time_derivative(
            fn, x_t[rows], t[rows], dx_dt[rows], t_min=r[rows], t_max=t_max, **reuse
        ).to(x_t.dtype)
        return dF_dt.detach()

    def forward_and_derivative(
        self, backbone: Callable[..., Tensor], x_t: Tensor, t: Tensor, r: Tensor, dx_dt: Tensor, cond: Condition,
        *, t_max: float, rows: Tensor | None = None, main: Callable[..., Tensor] | None = None,
    ) -> DerivativeOutput:
        """The main pass ``F = backbone(x_t, t, r, cond)`` (with gradients) and ``sg(dF/dt)``.

        Providers that do not reuse the main pass run first (they keep the RNG state, so the main
        pass after them draws the same dropout masks); with ``uses_output`` the main pass runs
        first and the provider's passes replay the RNG state it started from. ``main``, when
        given, runs the main pass instead of ``backbone`` (e.g. to also keep hidden features); it
        must compute the same ``F``.
        """
        main = backbone if main is None else main
        if not self.uses_output:
            dF_dt = self.on_rows(backbone, x_t, t, r, dx_dt, cond, t_max=t_max, rows=rows)
            return DerivativeOutput(F=main(x_t, t, r, cond), dF_dt=dF_dt)
        snapshot = rng_snapshot(x_t.device)
        F = main(x_t, t, r, cond)
        with replayed_rng(x_t.device, snapshot):
            dF_dt = self.on_rows(backbone, x_t, t, r, dx_dt, cond, t_max=t_max, rows=rows, F_t=F)
        return DerivativeOutput(F=F, dF_dt=dF_dt)


# --------------------------------------------------------------------------------------------
# Objective
# --------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ObjectiveOutput:
    """``loss``: scalar to back-propagate; ``per_sample``: ``(N,)`` unweighted losses (detached);
    ``logs``: scalar tensors for logging (detached)."""

    loss: Tensor
    per_sample: Tensor
    logs: Mapping[str, Tensor] = attrs.field(factory=dict)


class Objective(abc.ABC):
    """A training objective: owns time sampling, noising, targets and weighting."""

    @abc.abstractmethod
    def loss(self, backbone: Backbone, batch: Batch, *, generator: torch.Generator) -> ObjectiveOutput:
        """Compute the loss of ``backbone`` on ``batch``; all randomness comes from ``generator``."""

    def check_backbone(self, backbone: Backbone, *, distributed: bool) -> None:  # noqa: B027
        """Raise ``GenflowError`` before training when this objective cannot train ``backbone``."""


# --------------------------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------------------------


class Sampler(abc.ABC):
    """Maps noise at ``t = t_max`` to data at ``t = 0``. Pure: no hidden state between calls."""

    @abc.abstractmethod
    def sample(
        self,
        backbone: Backbone,
        noise: Tensor,
        cond: Condition,
        *,
        steps: int,
        guidance: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``noise``: ``(N, ...)``; ``steps``: number of network evaluations per guidance branch;
        ``guidance`` 1.0 means off. Returns samples shaped like ``noise``."""


# --------------------------------------------------------------------------------------------
# Datasets, autoencoders, metrics
# --------------------------------------------------------------------------------------------


class BatchLoader(abc.ABC):
    """A stateful, rank-sharded iterator of batches that can resume exactly."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Batch]: ...

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class TextFn(Protocol):
    """``text_fn(captions) -> (text, text_mask)``: token ids ``(N, L)`` and their mask ``(N, L)`` for
    ``Condition.text`` (a text encoder's ``TextEncoder.tokenize``)."""

    def __call__(self, captions: Sequence[str]) -> tuple[Tensor, Tensor]: ...


class Dataset(abc.ABC):
    """A source of training data and of reference samples for metrics.

    Caption-conditioned data (``spec.text``) turn captions into ``Condition.text`` with ``text_fn``,
    which the run sets from its text encoder (:meth:`attach_tokenizer`); None until then.
    """

    spec: DataSpec
    text_fn: TextFn | None = None

    @abc.abstractmethod
    def loader(self, *, batch_size: int, rank: int, world_size: int, seed: int) -> BatchLoader:
        """A loader yielding per-rank batches of ``batch_size`` samples."""

    @abc.abstractmethod
    def reference(self, n: int, *, seed: int) -> Batch:
        """``n`` real samples (with their conditions), reproducible from ``seed``."""

    def decode(self, x: Tensor) -> Tensor:
        """Map model space back to data space (pixels in [-1, 1] for images). Identity by default."""
        return x

    def attach_tokenizer(self, text_fn: TextFn) -> None:
        """Let this caption-conditioned dataset's batches carry token ids from ``text_fn``; a
        ``GenflowError`` for data without captions as the condition."""
        if not self.spec.text:
            raise GenflowError(f"dataset {type(self).__name__} is not caption-conditioned: nothing to tokenize")
        self.text_fn = text_fn

    def tokenizer(self) -> TextFn:
        """The attached ``text_fn``; a ``GenflowError`` when none is attached."""
        if self.text_fn is None:
            raise GenflowError(f"dataset {type(self).__name__}: no tokenizer attached (attach_tokenizer)")
        return self.text_fn


@attrs.frozen(kw_only=True)
class EvalContext:
    """What metrics share while one run is evaluated: its ``dataset`` (reference samples and
    ``decode``), its ``path`` (the interpolant its sampler integrates, for exact flow maps), the
    ``device``, the evaluation ``seed``, and a ``cache`` that keeps work done once per run (a loaded
    classifier, reference features) across metrics and step counts; use :meth:`memo`."""

    dataset: Dataset
    path: ProbabilityPath
    device: torch.device = torch.device("cpu")
    seed: int = 0
    cache: dict[str, Any] = attrs.field(factory=dict)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """``cache[key]``, computed by ``compute()`` on first use."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


@attrs.frozen(kw_only=True)
class EvalSamples:
    """One step count's samples, row-aligned with what produced them.

    ``samples``: ``(N, ...)`` in data space (decoded: pixels in [-1, 1], or points); ``noise``: the
    model-space noise at ``t = t_max`` they were sampled from (the same for every step count);
    ``cond``: the condition asked for (``labels``); ``captions``: the captions asked for, when the
    samples were caption-conditioned; ``steps``: the step count. ``cache`` is shared by the metrics
    of this step count (features of the samples); use :meth:`memo`.
    """

    samples: Tensor
    noise: Tensor
    cond: Condition = Condition()
    steps: int = 1
    captions: list[str] | None = None
    cache: dict[str, Any] = attrs.field(factory=dict)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """``cache[key]``, computed by ``compute()`` on first use."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


class Metric(abc.ABC):
    """A quality metric of generated samples, one number per step count.

    Lower is better unless ``higher_is_better``. ``applies_to`` says whether the metric fits a
    dataset (``genflow eval`` runs every metric that fits unless ``--metrics`` names some);
    ``prepare`` runs once per evaluated run before any sampling (load weights, train or check a
    feature network, reference statistics), so missing inputs fail before minutes of sampling;
    ``provenance`` names what the values depend on beyond the config (recorded in ``eval.json``).
    Errors the user can fix are ``GenflowError`` (one line, exit code 2).
    """

    higher_is_better: bool = False

    def applies_to(self, dataset: Dataset) -> bool:
        """Whether this metric can score samples of ``dataset``."""
        return True

    def prepare(self, context: EvalContext) -> None:  # noqa: B027
        """One-time work for ``context``'s run, before sampling."""

    def provenance(self, context: EvalContext) -> dict[str, Any]:
        """What the values depend on beyond the metric's config (a weights file and its SHA-256, say);
        recorded with the results."""
        return {}

    @abc.abstractmethod
    def __call__(self, batch: EvalSamples, context: EvalContext) -> float:
        """The metric of ``batch`` (a finite float)."""
