"""The small-scale reproduction of TiM's claims (issue "science"): one command per experiment.

    python benchmarks/science/run.py EXPERIMENT [--quick] [--seeds 3] [--jobs 2]

Experiments (each trains every variant x seed through `genflow train`, evaluates with `genflow eval`
at the same noise for every step count, and writes ``benchmarks/results/science/<EXPERIMENT>.{json,md}``
plus one plot per metric; finished runs are cached, so a rerun only does what is missing):

- ``toy-steps``: quality vs steps on toy2d, TiM (defaults, and the reference's loss) against flow
  matching trained with the same compute (``FM_COMPUTE`` x the steps: a TiM step costs ~1.1 fm steps).
- ``toy-long``, ``shapes-long``: TiM (defaults) against flow matching with the same compute, with
  twice the training steps (does the gap at many steps close?).
- ``shapes-steps``: the same on 16x16 shapes (UNet), class accuracy and Frechet distance.
- ``shapes-drift``: why TiM's shapes FD rises past 2 steps: more ``r = t`` rows (diffusion_ratio 0.7)
  and flow matching trained on only as many velocity rows as TiM sees.
- ``toy-velocity-rows``, ``shapes-velocity-rows``: TiM's ``r = t`` rows weighted as flow matching
  weights its rows (one adaptive group: uniform over ``t`` relative to each other) against the
  default ``E[L | t]`` groups.
- ``shapes-times``: the time distribution: flow matching's ``p_mean = 0`` instead of the
  reference's -0.4, and the ``r = t`` rows at the max of two draws (the reference's).
- ``toy-diffusion-times``, ``shapes-diffusion-times``: the ``r = t`` rows' times nearer the data
  (``diffusion_p_mean`` -0.4, the old default, against -0.8 and -1.2, on shapes also -1.6).
- ``toy-cheaper-steps``, ``shapes-cheaper-steps`` (and ``*-long-*`` with twice the training): TiM with
  cheaper steps (the one-sided DDE, ``diffusion_ratio`` 0.7, both: today's defaults), each trained
  for the steps the old defaults' compute buys it, against the old defaults and flow matching with
  the same compute and with the same steps; ``shapes-long-defaults``: the last three, for more seeds.
- ``toy-velocity-share``, ``shapes-velocity-share``: ``diffusion_ratio`` 0.7 (more ``r = t`` rows)
  against the reference's 0.5 (the default), and flow matching with the compute of either;
  ``toy-long-velocity-share``, ``shapes-long-velocity-share``: the same with twice the training.
- ``loss``: the reference's loss against genflow's defaults, one setting at a time, on toy2d.
- ``derivatives``: DDE (central, one-sided) against JVP on toy2d: quality and training time.
- ``weighting``: the interval weightings tangent / linear / odds (t/(1-t)) / constant on toy2d.
- ``mixture``: diffusion_ratio x consistency_ratio on toy2d.
- ``shapes-class-fidelity``, ``digits-class-fidelity``: TiM's defaults, TiM with the official
  guidance-enhanced target, and flow matching, each at the same compute, on shapes and on
  scikit-learn's handwritten digits (a real labelled set: 8x8 grey, 10 classes, scored against its
  held-out split with the store's own classifier; the store is prepared on first use).

``--quick``: one seed and a third of the training steps (a smoke run of the pipeline, minutes).
Resolution generalisation is ``benchmarks/science/resolution.py`` (it samples at sizes the run
never saw, which `genflow eval` does not do).
"""

from __future__ import annotations

import functools
import pathlib
import subprocess
import sys
from collections.abc import Callable, Sequence

import _paths  # noqa: F401
from common import RESULTS, Variant, metric_tables, parser, plot, run_grid, science_dir
from genflow_tim import objective as tim_objective

#: Cost of a TiM step with genflow's defaults (the CPU presets' one-sided DDE, diffusion_ratio 0.7)
#: in flow-matching steps, side by side on the demo UNet (train_step_unet_cpu_stencil.json: 1.10).
FM_COMPUTE = 1.10
#: The same for the central DDE with the reference's mixture (train_step_unet_cpu.json: 1.30-1.31),
#: the cost the experiments of that configuration compare with.
CENTRAL_COST = 1.31
#: The central DDE with diffusion_ratio 0.7 (1.16-1.25 fm steps; train_step_unet_cpu_stencil.json: 1.16).
FM_COMPUTE_07 = 1.2
#: The reference's mixture with the central DDE (genflow's defaults before the cheaper steps),
#: named explicitly so that experiments about it keep their runs.
OLD_DEFAULTS = {**{f"objective.{k}": v for k, v in tim_objective.REFERENCE_MIXTURE.items()},
                "derivative.stencil": "central"}
#: How many of the old defaults' steps a cheaper TiM step buys in the same compute: an old-default
#: step's time over the variant's, side by side on the demo UNet
#: (benchmarks/results/train_step_unet_cpu_stencil.json: fm 1, dde 1.274, dde1 1.158, dde-0.7
#: 1.160, dde1-0.7 1.102).
CHEAPER_STEPS = {"one-sided": 1.101, "0.7": 1.099, "one-sided, 0.7": 1.156}
TOY = ["--config", "toy2d"]
TOY_STEPS = 3000
TOY_EVAL = [1, 2, 4, 8, 16, 32, 64, 128]
SHAPES = ["--config", "shapes-science"]
SHAPES_STEPS = 1000
SHAPES_EVAL = [1, 2, 4, 8, 16, 32, 64, 128]
#: The reference's loss (docs/math.md s6): per-sample adaptive weighting, directional term, t = max of two draws.
REFERENCE_LOSS = {f"objective.{k}": v for k, v in tim_objective.REFERENCE_LOSS.items()}


class Experiment:
    def __init__(self, variants: Callable[[int], list[Variant]], steps: int, eval_steps: Sequence[int],
                 metrics: Sequence[str], eval_args: Sequence[str] = (), title: str = "") -> None:
        self.variants, self.steps, self.eval_steps = variants, steps, list(eval_steps)
        self.metrics, self.eval_args, self.title = list(metrics), list(eval_args), title


def _same_compute_fm(args: list[str], steps: int, factor: float = FM_COMPUTE) -> Variant:
    return Variant(f"fm ({factor}x steps)", [*args, "--objective", "fm"], {"train.steps": round(factor * steps)})


def toy_steps(steps: int) -> list[Variant]:
    return [Variant("tim", TOY), Variant("tim, reference loss", TOY, REFERENCE_LOSS), _same_compute_fm(TOY, steps)]


def shapes_steps(steps: int) -> list[Variant]:
    return [Variant("tim", SHAPES), Variant("tim, reference loss", SHAPES, REFERENCE_LOSS),
            _same_compute_fm(SHAPES, steps)]


def long_training(args: list[str]) -> Callable[[int], list[Variant]]:
    """TiM with its defaults against flow matching with the same compute (the ``*-long`` experiments)."""
    return lambda steps: [Variant("tim", args), _same_compute_fm(args, steps)]


def velocity_rows(args: list[str]) -> Callable[[int], list[Variant]]:
    """TiM's ``r = t`` rows in one adaptive group (flow matching's weighting over ``t``) or in the default groups."""
    return lambda steps: [Variant("tim", args),
                          _tim_variant("tim, r = t rows in one group", args, {"experimental.diagonal_groups": 1})]


def times(args: list[str]) -> Callable[[int], list[Variant]]:
    """TiM's time distribution: ``p_mean`` (the reference's -0.4, flow matching's 0) and the ``t`` of the ``r = t`` rows."""
    return lambda steps: [Variant("tim", args), _tim_variant("tim, p_mean 0", args, {"p_mean": 0.0, "diffusion_p_mean": 0.0}),
                          _tim_variant("tim, r = t rows at max(t1, t2)", args, {"diffusion_t": "max"})]


def diffusion_times(args: list[str], means: Sequence[float]) -> Callable[[int], list[Variant]]:
    """The ``r = t`` rows' logit-normal mean (``diffusion_p_mean``) against -0.4 (the other rows' ``p_mean``).
    Every variant names its mean (the default moved from -0.4 to -1.2 after this experiment)."""
    return lambda steps: [Variant(f"tim, r = t rows at p_mean {m}", args, {"objective.diffusion_p_mean": m})
                          for m in (-0.4, *means)]


def loss_ablation(steps: int) -> list[Variant]:
    """The three loss settings where genflow's defaults leave the reference, one at a time."""
    def loss(adaptive: bool, groups: int, directional: bool, diffusion_t: str) -> dict[str, object]:
        return {"objective.adaptive": adaptive, "objective.adaptive_groups": groups,
                "objective.directional": directional, "objective.diffusion_t": diffusion_t}

    return [Variant("reference loss", TOY, REFERENCE_LOSS),
            Variant("adaptive off", TOY, loss(False, 0, True, "max")),
            Variant("directional off", TOY, loss(True, 0, False, "max")),
            Variant("both off", TOY, loss(False, 0, False, "max")),
            Variant("both off, single-draw t", TOY, loss(False, 0, False, "single")),
            Variant("grouped adaptive, directional", TOY, loss(True, 8, True, "max")),
            Variant("grouped adaptive, no directional", TOY, loss(True, 8, False, "max")),
            Variant("grouped adaptive, no directional, single-draw t (defaults)", TOY),
            Variant("fm", [*TOY, "--objective", "fm"])]


def derivatives(steps: int) -> list[Variant]:
    return [Variant("dde (central)", TOY, {"derivative.stencil": "central"}),
            Variant("dde (one-sided)", TOY, {"derivative.stencil": "one-sided"}),
            Variant("jvp", [*TOY, "--derivative", "jvp"])]


def shapes_drift(steps: int) -> list[Variant]:
    """Why shapes FD rises past 2 steps: more ``r = t`` rows, and flow matching trained on as many
    velocity rows as TiM's ``r = t`` rows (``diffusion_ratio`` of its batches)."""
    rows = round(tim_objective.TimObjectiveConfig().diffusion_ratio * steps)
    return [Variant("tim", SHAPES), _tim_variant("tim, diffusion_ratio 0.7", SHAPES, {"diffusion_ratio": 0.7}),
            _same_compute_fm(SHAPES, steps),
            Variant(f"fm ({rows} steps: TiM's r = t rows)", [*SHAPES, "--objective", "fm"], {"train.steps": rows})]


def velocity_share(args: list[str]) -> Callable[[int], list[Variant]]:
    """More ``r = t`` rows (``diffusion_ratio`` 0.7 instead of the reference's 0.5) at the same steps, central DDE, and flow matching with the compute of either
    (``FM_COMPUTE_07``, ``CENTRAL_COST``)."""
    return lambda steps: [Variant("tim", args, OLD_DEFAULTS),
                          Variant("tim, diffusion_ratio 0.7", args, {**OLD_DEFAULTS, "objective.diffusion_ratio": 0.7}),
                          _same_compute_fm(args, steps, FM_COMPUTE_07), _same_compute_fm(args, steps, CENTRAL_COST)]


def cheaper_steps(args: list[str], each: bool = True) -> Callable[[int], list[Variant]]:
    """TiM with cheaper steps (the one-sided DDE, fewer interval rows, both: today's defaults;
    ``each`` False: both only), each trained for as many steps as the old defaults' compute buys
    it, against the old defaults (central DDE, ``diffusion_ratio`` 0.5) and flow matching with the
    same compute (the comparison the issue asks for, at equal cost) and with the same steps (what
    a TiM step teaches the velocity, cost aside). Every variant names its settings."""
    one_sided, ratio = {**OLD_DEFAULTS, "derivative.stencil": "one-sided"}, {"objective.diffusion_ratio": 0.7}

    def variant(name: str, key: str, options: dict[str, object], steps: int) -> Variant:
        n = round(CHEAPER_STEPS[key] * steps)
        return Variant(f"{name} ({n} steps)", args, {**options, "train.steps": n})

    def variants(steps: int) -> list[Variant]:
        alone = [variant("tim, one-sided dde", "one-sided", one_sided, steps),
                 variant("tim, diffusion_ratio 0.7", "0.7", {**OLD_DEFAULTS, **ratio}, steps)] if each else []
        return [Variant("tim, central dde, diffusion_ratio 0.5 (old defaults)", args, OLD_DEFAULTS), *alone,
                variant("tim, one-sided dde, diffusion_ratio 0.7 (defaults)", "one-sided, 0.7",
                        {**one_sided, **ratio}, steps),
                _same_compute_fm(args, steps, CENTRAL_COST), _same_compute_fm(args, steps, 1.0)]

    return variants


def _tim_variant(name: str, args: list[str], options: dict[str, object]) -> Variant:
    """A TiM variant whose options (dotted below ``objective``, e.g. ``experimental.diagonal_groups``)
    equal to the defaults are left out, so it shares the default run."""
    defaults = tim_objective.TimObjectiveConfig()

    def default(dotted: str) -> object:
        return functools.reduce(getattr, dotted.split("."), defaults)

    changed = {f"objective.{k}": v for k, v in options.items() if default(k) != v}
    return Variant(name, args, changed)


def weighting(steps: int) -> list[Variant]:
    return [_tim_variant(w, TOY, {"weighting": w}) for w in ("tangent", "linear", "odds", "constant")]


def mixture(steps: int) -> list[Variant]:
    return [_tim_variant(f"diffusion {d}, consistency {c}", TOY, {"diffusion_ratio": d, "consistency_ratio": c})
            for d in (0.3, 0.5, 0.7) for c in (0.05, 0.1, 0.15)]


#: The enhanced target's extra no-grad guided pass, side by side on shapes-science (CPU time of 300
#: steps, three interleaved rounds, one thread): 1.21 default TiM steps (1.15-1.26); the variant trains
#: correspondingly fewer steps.
GUIDANCE_TARGET_COST = 1.21
DIGITS_METRICS = ["class_accuracy_store", "fd_store", "sw_pixels"]


def class_fidelity(args: list[str]) -> Callable[[int], list[Variant]]:
    """TiM (defaults; with the guidance-enhanced target at the official scale 0.75 and at 0.25)
    against flow matching, at equal compute: each trains as many steps as the old defaults' compute
    buys it (``CHEAPER_STEPS``, ``GUIDANCE_TARGET_COST``). The last four rows sample TiM's default
    run and flow matching's with classifier-free guidance 1.25 and 1.75 (two passes per step)."""
    def variants(steps: int) -> list[Variant]:
        n = round(CHEAPER_STEPS["one-sided, 0.7"] * steps)
        n_target = round(n / GUIDANCE_TARGET_COST)
        tim, fm = Variant(f"tim, defaults ({n} steps)", args, {"train.steps": n}), _same_compute_fm(args, steps, CENTRAL_COST)
        targets = [Variant(f"tim, enhanced target{label} ({n_target} steps)", args,
                           {"objective.guidance_target": True, **scale, "train.steps": n_target})
                   for label, scale in (("", {}), (" at scale 0.25", {"objective.guidance_target_scale": 0.25}))]
        guided = [Variant(f"{v.name}, guidance {w}", v.args, v.overrides, ["--guidance", str(w)])
                  for v in (tim, fm) for w in (1.25, 1.75)]
        return [tim, *targets, fm, *guided]

    return variants


def digits_store() -> str:
    """scikit-learn's digits as a store with a 20% held-out split (prepared once, in the science folder)."""
    root = science_dir().resolve()
    store = root / "digits8.zarr"
    if not (store / "zarr.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        example = pathlib.Path(__file__).resolve().parents[2] / "examples" / "export_digits.py"
        subprocess.run([sys.executable, str(example), str(root / "digits")], check=True)
        subprocess.run([sys.executable, "-m", "genflow", "prepare", "--dataset", "imagefolder", "--root",
                        str(root / "digits"), "--resolution", "8", "--multiple", "8", "--holdout", "0.2",
                        "--out", str(store)], check=True)
    return str(store)


TOY_METRICS = ["sliced_wasserstein", "transition_error"]
EXPERIMENTS = {
    "toy-steps": Experiment(toy_steps, TOY_STEPS, TOY_EVAL, TOY_METRICS, title="toy2d: quality vs steps"),
    "toy-long": Experiment(long_training(TOY), 2 * TOY_STEPS, TOY_EVAL, TOY_METRICS,
                           title="toy2d: quality vs steps, twice the training"),
    "shapes-steps": Experiment(shapes_steps, SHAPES_STEPS, SHAPES_EVAL, ["class_accuracy", "fd_shapes"],
                               ["--num", "500"], title="shapes 16x16: quality vs steps"),
    "shapes-long": Experiment(long_training(SHAPES), 2 * SHAPES_STEPS, SHAPES_EVAL, ["class_accuracy", "fd_shapes"],
                              ["--num", "500"], title="shapes 16x16: quality vs steps, twice the training"),
    "toy-velocity-rows": Experiment(velocity_rows(TOY), TOY_STEPS, TOY_EVAL, TOY_METRICS,
                                    title="toy2d: the r = t rows weighted as flow matching's"),
    "shapes-velocity-rows": Experiment(velocity_rows(SHAPES), SHAPES_STEPS, SHAPES_EVAL,
                                       ["class_accuracy", "fd_shapes"], ["--num", "500"],
                                       title="shapes 16x16: the r = t rows weighted as flow matching's"),
    "toy-diffusion-times": Experiment(diffusion_times(TOY, (-0.8, -1.2)), TOY_STEPS, TOY_EVAL, TOY_METRICS,
                                      title="toy2d: the r = t rows' times"),
    "shapes-diffusion-times": Experiment(diffusion_times(SHAPES, (-0.8, -1.2, -1.6)), SHAPES_STEPS, SHAPES_EVAL,
                                         ["class_accuracy", "fd_shapes"], ["--num", "500"],
                                         title="shapes 16x16: the r = t rows' times"),
    "shapes-times": Experiment(times(SHAPES), SHAPES_STEPS, SHAPES_EVAL, ["class_accuracy", "fd_shapes"],
                               ["--num", "500"], title="shapes 16x16: the time distribution"),
    "loss": Experiment(loss_ablation, TOY_STEPS, [1, 2, 4, 8, 16, 32, 64], TOY_METRICS,
                       title="toy2d: the loss settings"),
    "derivatives": Experiment(derivatives, TOY_STEPS, [1, 8, 64], TOY_METRICS, title="toy2d: DDE vs JVP"),
    "weighting": Experiment(weighting, TOY_STEPS, [1, 2, 4, 8, 16, 32, 64], TOY_METRICS,
                            title="toy2d: interval weighting"),
    "shapes-drift": Experiment(shapes_drift, SHAPES_STEPS, SHAPES_EVAL, ["class_accuracy", "fd_shapes"],
                               ["--num", "500"], title="shapes 16x16: the velocity rows"),
    "mixture": Experiment(mixture, TOY_STEPS, [1, 64], TOY_METRICS, title="toy2d: batch mixture"),
    "toy-velocity-share": Experiment(velocity_share(TOY), TOY_STEPS, TOY_EVAL, TOY_METRICS,
                                     title="toy2d: the share of r = t rows"),
    "shapes-velocity-share": Experiment(velocity_share(SHAPES), SHAPES_STEPS, SHAPES_EVAL,
                                        ["class_accuracy", "fd_shapes"], ["--num", "500"],
                                        title="shapes 16x16: the share of r = t rows"),
    "toy-long-velocity-share": Experiment(velocity_share(TOY), 2 * TOY_STEPS, TOY_EVAL, TOY_METRICS,
                                          title="toy2d: the share of r = t rows, twice the training"),
    "shapes-long-velocity-share": Experiment(velocity_share(SHAPES), 2 * SHAPES_STEPS, SHAPES_EVAL,
                                             ["class_accuracy", "fd_shapes"], ["--num", "500"],
                                             title="shapes 16x16: the share of r = t rows, twice the training"),
    "toy-cheaper-steps": Experiment(cheaper_steps(TOY), TOY_STEPS, TOY_EVAL, TOY_METRICS,
                                    title="toy2d: cheaper TiM steps, more of them in the same compute"),
    "shapes-cheaper-steps": Experiment(cheaper_steps(SHAPES), SHAPES_STEPS, SHAPES_EVAL,
                                       ["class_accuracy", "fd_shapes"], ["--num", "500"],
                                       title="shapes 16x16: cheaper TiM steps, more of them in the same compute"),
    "toy-long-cheaper-steps": Experiment(cheaper_steps(TOY, each=False), 2 * TOY_STEPS, TOY_EVAL, TOY_METRICS,
                                         title="toy2d: cheaper TiM steps in the same compute, twice the training"),
    "shapes-long-cheaper-steps": Experiment(cheaper_steps(SHAPES), 2 * SHAPES_STEPS, SHAPES_EVAL,
                                            ["class_accuracy", "fd_shapes"], ["--num", "500"],
                                            title="shapes 16x16: cheaper TiM steps in the same compute, "
                                                  "twice the training"),
    "shapes-long-defaults": Experiment(cheaper_steps(SHAPES, each=False), 2 * SHAPES_STEPS, SHAPES_EVAL,
                                       ["class_accuracy", "fd_shapes"], ["--num", "500"],
                                       title="shapes 16x16: today's defaults against the old ones and flow "
                                             "matching, twice the training (run with --seeds 5)"),
    "shapes-class-fidelity": Experiment(class_fidelity(SHAPES), 2 * SHAPES_STEPS, SHAPES_EVAL,
                                        ["class_accuracy", "fd_shapes"], ["--num", "500"],
                                        title="shapes 16x16: class fidelity, TiM with the enhanced target"),
    "digits-class-fidelity": Experiment(lambda steps: class_fidelity([*SHAPES, "--data", digits_store()])(steps),
                                        2 * SHAPES_STEPS, SHAPES_EVAL[:-1], DIGITS_METRICS, ["--num", "359"],
                                        title="digits 8x8 (scikit-learn, held-out split): class fidelity"),
}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("experiment", choices=sorted(EXPERIMENTS))
    args = p.parse_args()
    exp = EXPERIMENTS[args.experiment]
    steps = exp.steps // 3 if args.quick else exp.steps
    seeds = [0] if args.quick else list(range(args.seeds))
    name = args.experiment + ("-quick" if args.quick else "")
    variants = exp.variants(steps)
    cache = run_grid(variants, seeds, name=name, steps=steps, eval_steps=exp.eval_steps,
                     eval_args=exp.eval_args, jobs=args.jobs)
    names = [v.name for v in variants]
    baseline = next((v.name for v in variants if not v.overrides), names[0])  # the default run
    sections = [f"# {exp.title}\n\n{len(seeds)} seed(s), {steps} training steps "
                f"(`python benchmarks/science/run.py {args.experiment}{' --quick' if args.quick else ''}`)\n"]
    for metric in exp.metrics:
        summary, tables = metric_tables(cache, metric, names, baseline=baseline)
        sections += tables
        plot(summary, metric, RESULTS / f"{name}-{metric}.png", title=exp.title, ylog="accuracy" not in metric)
    times = summarize_train_time(cache, names)
    sections.append("| training wall time (s, mean) | " + " | ".join(f"{k}: {v:.0f}" for k, v in times.items()) + " |")
    text = "\n\n".join(sections) + "\n"
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


def summarize_train_time(cache: dict, names: Sequence[str]) -> dict[str, float]:
    out = {}
    for n in names:
        times = [r["train_s"] for r in cache["runs"].values() if r["variant"] == n]
        if times:
            out[n] = sum(times) / len(times)
    return out


if __name__ == "__main__":
    main()
