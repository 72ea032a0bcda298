"""The quality-vs-steps sweep: sample one run at every step count from the same noise, score each."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping

import attrs
import torch
from torch import Tensor
from tqdm import tqdm

from genflow.interfaces import Condition, EvalContext, EvalSamples, Metric
from genflow.sampling.driver import fixed_noise, generate, sample_conditions, text_conditions
from genflow.sampling.runs import LoadedRun

SamplesHook = Callable[[int, Tensor], None]


@attrs.frozen(kw_only=True)
class SweepSettings:
    """``steps``: step counts; ``num``: samples per step count; ``seed``: noise (and reference) seed;
    ``guidance``: classifier-free guidance scale (1 = off); ``batch_size``: samples per sampler call."""

    steps: tuple[int, ...]
    num: int
    seed: int = 0
    guidance: float = 1.0
    batch_size: int = 1024
    device: torch.device = torch.device("cpu")


@attrs.frozen(kw_only=True)
class StepResult:
    """Every metric at one step count; ``seconds``: sampling wall time."""

    steps: int
    values: dict[str, float]
    seconds: float


def context_for(run: LoadedRun, settings: SweepSettings) -> EvalContext:
    """The evaluation context of ``run``."""
    return EvalContext(dataset=run.components.dataset, path=run.components.path, device=settings.device,
                       seed=settings.seed)


def decode(run: LoadedRun, x: Tensor, batch_size: int = 256) -> Tensor:
    """Model space -> data space (the store's autoencoder), in chunks, on the CPU."""
    dataset = run.components.dataset
    return torch.cat([dataset.decode(x[i:i + batch_size]).cpu() for i in range(0, x.shape[0], batch_size)])


def sample_step_count(run: LoadedRun, settings: SweepSettings, steps: int, cond: Condition,
                      on_chunk: Callable[[int], None] | None = None) -> Tensor:
    """``num`` samples with ``steps`` steps, from the fixed noise of ``settings.seed``."""
    samples = generate(run.backbone, run.components.sampler, run.components.spec, steps=[steps], num=settings.num,
                       seed=settings.seed, device=settings.device, guidance=settings.guidance, cond=cond,
                       batch_size=settings.batch_size, on_chunk=on_chunk)
    return samples[steps]


def eval_captions(run: LoadedRun, num: int, seed: int) -> list[str]:
    """The prompts of a text-conditioned run's evaluation: the held-out ``shapes`` prompt set
    (:func:`genflow.eval.compositional.prompt_set`), else captions of real samples."""
    from genflow.eval.compositional import prompt_set
    from genflow.eval.metrics_shapes import shapes_config_of

    shapes = shapes_config_of(run.components.dataset)
    if shapes is not None:
        return prompt_set(shapes, num)
    raw = run.components.dataset.reference_raw(num, seed=seed)  # type: ignore[attr-defined]
    return list(raw.captions)


def _finite(value: float) -> float:
    return float(value) if math.isfinite(float(value)) else math.nan


def evaluate(run: LoadedRun, metrics: Mapping[str, Metric], settings: SweepSettings, *,
             context: EvalContext | None = None, on_samples: SamplesHook | None = None,
             progress: bool = True, label: str = "", bar: tqdm | None = None) -> list[StepResult]:
    """Score ``run`` at every step count of ``settings``; the noise and conditions are the same for
    every step count (``genflow.sampling.driver.fixed_noise``). ``on_samples(steps, decoded)`` sees each set.

    Progress: ``bar`` (shared by several runs, see :func:`progress_bar`) advances by samples x steps
    as they are drawn; without one, a bar of this run's own (unless ``progress`` is False)."""
    own_bar = bar is None
    bar = bar if bar is not None else progress_bar(settings, 1, progress=progress, label=label)
    try:
        return _evaluate(run, metrics, settings, context, on_samples, bar, label)
    finally:
        if own_bar:
            bar.close()


def progress_bar(settings: SweepSettings, runs: int, *, progress: bool, label: str = "") -> tqdm:
    """A bar over the sampling work of ``runs`` sweeps (``num * sum(steps)`` samples x steps each):
    the time left is estimated from the rate so far."""
    return tqdm(total=runs * settings.num * sum(settings.steps), unit="sample-step", unit_scale=True,
                desc=f"eval {label}".strip(), file=sys.stderr, disable=not progress, dynamic_ncols=True)


def _evaluate(run: LoadedRun, metrics: Mapping[str, Metric], settings: SweepSettings, context: EvalContext | None,
              on_samples: SamplesHook | None, bar: tqdm, label: str) -> list[StepResult]:
    context = context or context_for(run, settings)
    prefix = f"{label}: " if label else ""
    bar.set_postfix_str(f"{prefix}preparing the metrics")
    for metric in metrics.values():  # weights, classifiers, reference statistics: before sampling
        metric.prepare(context)
    spec = run.components.spec
    noise = fixed_noise(spec, settings.num, settings.seed, torch.device("cpu"))  # what generate() draws
    captions = eval_captions(run, settings.num, settings.seed) if spec.text else None
    if captions is not None:
        tokenize = run.components.dataset.tokenizer()
        cond = text_conditions(captions, tokenize, settings.device)
    else:
        cond = sample_conditions(spec, settings.num, settings.device)
    results = []
    for steps in settings.steps:
        bar.set_postfix_str(f"{prefix}sampling with {steps} step{'s' if steps != 1 else ''}")
        start = time.perf_counter()
        decoded = decode(run, sample_step_count(run, settings, steps, cond, on_chunk=bar.update))
        seconds = time.perf_counter() - start
        bar.set_postfix_str(f"{prefix}metrics at {steps} step{'s' if steps != 1 else ''}")
        batch = EvalSamples(samples=decoded, noise=noise, cond=cond.to("cpu"), steps=steps, captions=captions)
        values = {name: _finite(metric(batch, context)) for name, metric in metrics.items()}
        results.append(StepResult(steps=steps, values=values, seconds=seconds))
        if on_samples is not None:
            on_samples(steps, decoded)
    return results
