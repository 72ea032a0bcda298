"""``genflow sample RUN_DIR``: grids (PNG) and raw arrays (.npy) from a run's EMA weights.

Text-conditioned runs take ``--prompt "two red circles left of a blue square"`` (repeatable) or
``--prompts FILE`` (one prompt per line, an empty line is the empty prompt); ``--num`` is then the
number of samples per prompt and the grid has one row per prompt. Any prompt samples: unknown
words and other scripts tokenize through byte fallback, the empty prompt is the null condition,
and too long prompts are truncated with a warning.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
import torch

from genflow.commands import numbers
from genflow.commands.outputs import check_output_dir, check_replaceable
from genflow.errors import GenflowError
from genflow.interfaces import Condition
from genflow.plugins import PluginManager
from genflow.sampling.driver import generate, sample_conditions, text_conditions
from genflow.sampling.runs import LoadedRun, load_run
from genflow.sampling.visualize import plot_prompt_grid, plot_samples

#: Samples per prompt when ``--num`` is not given.
DEFAULT_PER_PROMPT = 8
#: Samples drawn from a run on low-dimensional data (points) when ``--num`` is not given (sample and eval).
DEFAULT_NUM_POINTS = 2000


def parse_steps(text: str) -> tuple[int, ...]:
    """``"1,4,16"`` -> ``(1, 4, 16)``; every entry a positive integer."""
    items = [s.strip() for s in text.split(",")]
    bad = [s for s in items if not s.isdigit() or int(s) < 1]
    if not items or bad:
        raise GenflowError(f"--steps '{text}': expected positive integers separated by commas, e.g. 1,4,16 "
                           f"(bad: {', '.join(repr(b) for b in bad) or 'empty'})")
    return tuple(int(s) for s in items)


def add_common_arguments(parser: argparse.ArgumentParser, *, steps_default: str = "the run's sample.steps",
                         num_default: str = f"the run's sample.num for images, {DEFAULT_NUM_POINTS} points",
                         out_default: str = "RUN_DIR/samples") -> None:
    """Arguments shared by ``sample`` and ``eval``; the ``*_default`` texts describe their defaults."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by genflow train")
    parser.add_argument("--checkpoint", type=numbers.count, metavar="STEP", help="use checkpoint STEP (default: final weights)")
    parser.add_argument("--steps", help=f"step counts, e.g. 1,4,16 (default: {steps_default})")
    parser.add_argument("--num", type=numbers.samples, help=f"number of samples (default: {num_default})")
    parser.add_argument("--guidance", type=numbers.finite_float, help="classifier-free guidance scale (1 = off; default: the run's)")
    parser.add_argument("--seed", type=numbers.seed, help="noise seed (default: the run's sample.seed)")
    parser.add_argument("--out", help=f"output folder (default: {out_default})")
    parser.add_argument("--overwrite", action="store_true", help="replace output files that exist")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to sample")


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--class", dest="class_label", type=numbers.count, metavar="K", help="sample class K only")
    parser.add_argument("--prompt", action="append", default=[], metavar="TEXT",
                        help="text-conditioned runs: a prompt (repeatable); --num samples per prompt")
    parser.add_argument("--prompts", metavar="FILE", help="text-conditioned runs: a file of prompts, one per line")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def draw(run: LoadedRun, steps: tuple[int, ...], num: int, seed: int, guidance: float, device: torch.device,
         cond: Condition, *, progress: bool) -> dict[int, torch.Tensor]:
    """``{steps: decoded samples}`` on the CPU, with a progress bar over samples x steps (the
    time left is estimated from the rate so far)."""
    from tqdm import tqdm

    with tqdm(total=num * sum(steps), unit="sample-step", unit_scale=True, desc="sample", file=sys.stderr,
              disable=not progress, dynamic_ncols=True, leave=False) as bar:
        samples = generate(run.backbone, run.components.sampler, run.components.spec, steps=steps, num=num,
                           seed=seed, device=device, guidance=guidance, cond=cond, on_chunk=bar.update)
    return {k: run.components.dataset.decode(v).cpu() for k, v in samples.items()}


def read_prompts(args: argparse.Namespace) -> list[str]:
    """``--prompt`` values then the lines of ``--prompts FILE`` (UTF-8)."""
    prompts = list(args.prompt)
    if args.prompts:
        path = pathlib.Path(args.prompts)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GenflowError(f"--prompts '{path}': cannot read it as UTF-8 text ({type(exc).__name__})") from None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the file's final newline
        if not lines:
            raise GenflowError(f"--prompts '{path}' holds no prompt (one per line)")
        prompts.extend(line.rstrip("\r") for line in lines)
    return prompts


def run_sample(args: argparse.Namespace, manager: PluginManager) -> int:
    run_dir = pathlib.Path(args.run_dir)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise GenflowError("--device cuda: CUDA is not available here; use --device cpu")
    device = torch.device(args.device)
    run = load_run(run_dir, manager, step=args.checkpoint, device=device)
    spec, defaults = run.components.spec, run.config.sample
    steps = parse_steps(args.steps) if args.steps else defaults.steps
    num = args.num if args.num is not None else (defaults.num if spec.is_image else DEFAULT_NUM_POINTS)
    if num < 1:
        raise GenflowError(f"--num {num}: expected a positive number of samples")
    if args.class_label is not None and spec.text:
        raise GenflowError("--class: this run is text-conditioned; use --prompt TEXT or --prompts FILE")
    if args.class_label is not None and not 0 <= args.class_label < max(spec.num_classes, 1):
        raise GenflowError(f"--class {args.class_label}: this run has {spec.num_classes} classes "
                           f"(allowed: 0..{spec.num_classes - 1})" if spec.num_classes else
                           f"--class {args.class_label}: this run is unconditional")
    seed = defaults.seed if args.seed is None else args.seed
    guidance = defaults.guidance if args.guidance is None else args.guidance
    prompts = read_prompts(args)
    out = pathlib.Path(args.out) if args.out else run_dir / "samples"
    check_output_dir(out, "--out")  # before the sampling: a bad --out fails at once
    if prompts or spec.text:
        return _sample_prompts(args, run, prompts, steps, seed, guidance, device, out)
    cond = sample_conditions(spec, num, device, args.class_label)
    check_replaceable(out, [*(f"samples_{k}steps.{ext}" for k in steps for ext in ("npy", "png")), "samples.png",
                            *(["labels.npy"] if cond.labels is not None else [])], "--out", args.overwrite)
    samples = draw(run, steps, num, seed, guidance, device, cond, progress=not args.no_progress)
    out.mkdir(parents=True, exist_ok=True)
    reference = None if spec.is_image else run.components.dataset.reference(num, seed=seed + 7).x
    if cond.labels is not None:  # row i of every array was asked for class labels[i]
        np.save(out / "labels.npy", cond.labels.cpu().numpy())
    for k, x in samples.items():
        np.save(out / f"samples_{k}steps.npy", x.numpy())
        plot_samples({k: x}, out / f"samples_{k}steps.png", reference=reference)
    plot_samples(samples, out / "samples.png", reference=reference,
                 title=f"{run.config.objective.name} / {run.config.sampler.name}, weights: {run.source}")
    print(f"genflow: wrote {len(samples)} grids and arrays of {num} samples to {out} (weights: {run.source})")
    if reference is not None:
        from genflow.eval.distances import sliced_wasserstein

        for k, x in samples.items():
            print(f"  {k:>4} steps: sliced Wasserstein distance to data = {sliced_wasserstein(x, reference):.4f}")
    return 0


def _sample_prompts(args: argparse.Namespace, run: LoadedRun, prompts: list[str], steps: tuple[int, ...], seed: int,
                    guidance: float, device: torch.device, out: pathlib.Path) -> int:
    """``--num`` samples per prompt (default: 8 per prompt, 8 captions of the data without prompts)."""
    spec = run.components.spec
    if not spec.text:
        raise GenflowError("--prompt / --prompts: this run is not text-conditioned (its data has no captions "
                           "as the condition); use --class for class-conditional runs")
    if args.class_label is not None:
        raise GenflowError("--class: this run is text-conditioned; use --prompt TEXT or --prompts FILE")
    tokenize = run.components.dataset.tokenizer()
    if not prompts:  # captions of real images
        prompts = list(run.components.dataset.reference_raw(8, seed=seed).captions)  # type: ignore[attr-defined]
    per_prompt = DEFAULT_PER_PROMPT if args.num is None else args.num
    captions = [p for p in prompts for _ in range(per_prompt)]
    cond = text_conditions(captions, tokenize, device)
    check_replaceable(out, ["prompts.txt", "samples.png", *(f"samples_{k}steps.npy" for k in steps)], "--out",
                      args.overwrite)
    samples = draw(run, steps, len(captions), seed, guidance, device, cond, progress=not args.no_progress)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prompts.txt").write_text("".join(c.replace("\n", " ") + "\n" for c in captions), encoding="utf-8")
    for k, x in samples.items():
        np.save(out / f"samples_{k}steps.npy", x.numpy())
    shown = prompts[:16]  # the picture stays readable; the arrays hold every prompt
    plot_prompt_grid({k: x[: len(shown) * per_prompt] for k, x in samples.items()}, shown, out / "samples.png",
                     per_prompt=per_prompt,
                     title=f"{run.config.objective.name} / {run.config.sampler.name}, weights: {run.source}")
    print(f"genflow: wrote {len(captions)} samples ({len(prompts)} prompts x {per_prompt}) at steps "
          f"{', '.join(map(str, steps))} to {out} (weights: {run.source}; prompts.txt: row i's prompt)")
    return 0
