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
from genflow.runs import LoadedRun
from genflow.sample import fixed_noise, generate, sample_conditions, text_conditions

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


def sample_step_count(run: LoadedRun, settings: SweepSettings, steps: int, cond: Condition) -> Tensor:
    """``num`` samples with ``steps`` steps, from the fixed noise of ``settings.seed``."""
    samples = generate(run.backbone, run.components.sampler, run.components.spec, steps=[steps], num=settings.num,
                       seed=settings.seed, device=settings.device, guidance=settings.guidance, cond=cond,
                       batch_size=settings.batch_size)
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
             progress: bool = True, label: str = "") -> list[StepResult]:
    """Score ``run`` at every step count of ``settings``; the noise and conditions are the same for
    every step count (``genflow.sample.fixed_noise``). ``on_samples(steps, decoded)`` sees each set."""
    context = context or context_for(run, settings)
    for metric in metrics.values():  # weights, classifiers, reference statistics: before sampling
        metric.prepare(context)
    spec = run.components.spec
    noise = fixed_noise(spec, settings.num, settings.seed, torch.device("cpu"))  # what generate() draws
    captions = eval_captions(run, settings.num, settings.seed) if spec.text else None
    if captions is not None:
        tokenize = run.components.dataset.text_fn  # type: ignore[attr-defined]
        cond = text_conditions(captions, tokenize, settings.device)
    else:
        cond = sample_conditions(spec, settings.num, settings.device)
    results = []
    bar = tqdm(total=sum(settings.steps), unit="step", desc=f"eval {label}".strip(), file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    with bar:
        for steps in settings.steps:
            bar.set_postfix_str(f"sampling with {steps} step{'s' if steps != 1 else ''}")
            start = time.perf_counter()
            decoded = decode(run, sample_step_count(run, settings, steps, cond))
            seconds = time.perf_counter() - start
            batch = EvalSamples(samples=decoded, noise=noise, cond=cond.to("cpu"), steps=steps, captions=captions)
            values = {name: _finite(metric(batch, context)) for name, metric in metrics.items()}
            results.append(StepResult(steps=steps, values=values, seconds=seconds))
            if on_samples is not None:
                on_samples(steps, decoded)
            bar.update(steps)
    return results
