"""The ``genflow`` command: train, sample, eval, prepare, tokenizer, plugins, config, model-info."""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import warnings
from collections.abc import Sequence

from genflow.errors import GenflowError

SELECTORS = ("objective", "derivative", "backbone", "sampler", "path")
DEFAULT_PRESET = "demo"


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ``GenflowError`` (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise GenflowError(f"{self.prog}: {message} (see '{self.prog} --help')")


# ------------------------------------------------------------------------------------------------
# argument groups
# ------------------------------------------------------------------------------------------------


def _add_plugin_options(parser: argparse.ArgumentParser, dest: str = "plugin_options") -> None:
    parser.add_argument("-p", dest=dest, action="append", default=[], metavar="no:NAME",
                        help="block a plugin by name (repeatable), e.g. -p no:genflow_tim")


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="a TOML config file or a preset name (see configs/)")
    for slot in SELECTORS:
        parser.add_argument(f"--{slot}", help=f"select the {slot} by registered name")
    parser.add_argument("--data", metavar="NAME_OR_URL", help="a registered dataset or a store URL / path")
    parser.add_argument("--text-encoder", dest="text_encoder", help="select the text encoder (captioned data)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides parsed as TOML literals, e.g. train.steps=100 objective.adaptive=false")


def _blocked(args: argparse.Namespace) -> list[str]:
    names = []
    for option in [*args.global_plugin_options, *args.plugin_options]:
        if not option.startswith("no:") or not option[3:]:
            raise GenflowError(f"-p {option}: expected -p no:NAME to block the plugin NAME")
        names.append(option[3:])
    return names


def _manager(args: argparse.Namespace):  # noqa: ANN202
    from genflow.plugins import PluginManager, report_warnings

    manager = PluginManager(blocked=_blocked(args))
    report_warnings(manager)
    return manager


def _selectors(args: argparse.Namespace, manager) -> tuple[dict[str, str | None], list[str]]:  # noqa: ANN001
    """Selector flags; ``--data`` is a dataset name, else a store URL / path for ``store``."""
    from genflow.errors import allowed

    selectors: dict[str, str | None] = {slot: getattr(args, slot) for slot in SELECTORS}
    selectors["text_encoder"] = getattr(args, "text_encoder", None)
    extra: list[str] = []
    data = args.data
    if data is not None:
        if data in manager.components["dataset"]:
            selectors["data"] = data
        elif "://" in data or os.sep in data or data.endswith(".zarr") or os.path.exists(data):
            selectors["data"] = "store"
            extra.append(f"data.url={_toml_string(data)}")
        else:
            raise GenflowError(f"--data '{data}': unknown dataset; registered: "
                               f"{allowed(manager.names('dataset'))}, or give a store URL / path")
    return selectors, extra


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _load_config(args: argparse.Namespace, manager, base: str | None = None):  # noqa: ANN001, ANN202
    from genflow import config as cfg

    selectors, extra = _selectors(args, manager)
    return cfg.load(manager, config_file=args.config or base, selectors=selectors,
                    overrides=[*extra, *args.overrides])


# ------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------


def _run_dir_argument(args: argparse.Namespace) -> tuple[pathlib.Path | None, bool]:
    """``--run-dir`` and ``--resume [RUN]``: the folder named (if any) and whether to resume."""
    named = args.resume if isinstance(args.resume, str) else None
    if named is not None and "=" in named and args.run_dir is not None:  # --run-dir R --resume KEY=VALUE
        args.overrides.insert(0, named)
        named = None
    if named is not None and args.run_dir is not None and pathlib.Path(named) != pathlib.Path(args.run_dir):
        raise GenflowError(f"--resume '{named}' and --run-dir '{args.run_dir}' name two runs; give one of them")
    run_dir = named or args.run_dir
    resume = bool(args.resume)
    if resume and run_dir is None:
        raise GenflowError("--resume needs the run to continue: genflow train --resume RUN_DIR")
    return (pathlib.Path(run_dir) if run_dir else None), resume


def _resume_config(args: argparse.Namespace, manager, run_dir: pathlib.Path):  # noqa: ANN001, ANN202
    """A resumed run trains its stored config; ``KEY=VALUE`` overrides change it (recorded in the
    run). ``--config`` and selectors are accepted only when they agree with the stored config."""
    from genflow.runs import check_output_dir
    from genflow.train import rundir

    check_output_dir(run_dir, "--resume")
    if not (run_dir / rundir.CONFIG).is_file():
        raise GenflowError(f"--resume: '{run_dir}' holds no run (no config.toml); start one without --resume")
    stored = rundir.stored_config(run_dir, manager)
    config = rundir.stored_config(run_dir, manager, args.overrides)
    selectors, extra = _selectors(args, manager)
    if args.config or extra or any(selectors.values()):
        from genflow import config as cfg

        requested = cfg.load(manager, config_file=args.config or str(run_dir / rundir.CONFIG), selectors=selectors,
                             overrides=[*extra, *args.overrides])
        if differing := rundir.differences(requested, config):
            raise GenflowError(f"--resume: {', '.join(differing[:6])} of the run's stored config differ from "
                               f"{args.config or 'the selectors given'}; a resumed run trains its stored config: "
                               "drop --config and the selectors, and change values explicitly with KEY=VALUE "
                               "(recorded in the run's changes.jsonl)")
    from genflow.train.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    if latest is not None and latest[0] > config.train.steps:
        raise GenflowError(f"train.steps = {config.train.steps} is before the run's latest checkpoint (step "
                           f"{latest[0]}); to train on, give a larger value: genflow train --resume {run_dir} "
                           "train.steps=N")
    return config, rundir.differences(stored, config)


def cmd_train(args: argparse.Namespace) -> int:
    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from genflow.train.launch import launch_local

        return launch_local(args.nproc, _argv_without_nproc(sys.argv[1:]))
    manager = _manager(args)
    run_dir, resume = _run_dir_argument(args)
    changed: list[str] = []
    if resume:
        assert run_dir is not None
        config, changed = _resume_config(args, manager, run_dir)
    else:
        config = _load_config(args, manager, base=DEFAULT_PRESET)  # without --config: the demo preset
    if args.dry_run:
        from genflow.config import to_toml

        print(to_toml(config), end="")
        return 0
    from genflow.text.setup import resolve_tokenizer
    from genflow.train.distributed import init_world

    config = resolve_tokenizer(config, manager)  # captioned data: record (or train) the tokenizer
    world = init_world(config.train.device, config.train.dist_timeout_minutes)
    return _train(args, manager, config, world, _opener(config, run_dir, resume, args.overrides, changed))


def _opener(config, run_dir: pathlib.Path | None, resume: bool, overrides: list[str],  # noqa: ANN001, ANN202
            changed: list[str]):
    """Rank 0's decision: the folder, its lock, and ``config.toml`` or the recorded change."""
    from genflow.config import to_toml
    from genflow.train import rundir

    def decide() -> rundir.Opened:
        if resume:
            assert run_dir is not None
            return rundir.open_resumed_run(run_dir, overrides, changed)
        return rundir.open_new_run(run_dir or rundir.default_run_dir(config.objective.name), to_toml(config))

    return decide


def _train(args: argparse.Namespace, manager, config, world, decide) -> int:  # noqa: ANN001
    """Agree on the run folder, train, and end every rank with one exit code."""
    from genflow.train import rundir
    from genflow.train.distributed import LOST_RANK_EXIT, exit_rank, is_lost_rank, shutdown_world
    from genflow.train.launch import announce
    from genflow.train.trainer import Trainer

    opened = None
    run_dir: pathlib.Path | None = None
    try:
        run_dir, opened = rundir.agree(world, decide)
        if world.is_main:
            announce(run_dir)
        try:
            trainer = Trainer(config, manager, run_dir, resume=bool(args.resume), progress=not args.no_progress)
        except BaseException:
            if opened is not None:  # nothing of a run that could not be built stays behind
                opened.abandon()
                opened = None
            raise
        if opened is not None:
            opened.commit()
        step = trainer.run()
    except GenflowError as exc:
        if world.is_main or not isinstance(exc, rundir.AgreedError):
            print(f"genflow: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except Exception as exc:
        if not world.distributed or not is_lost_rank(exc):
            raise
        if "GENFLOW_LAUNCH_INFO" not in os.environ:  # under --nproc the launcher names the failed rank
            detail = " ".join(str(exc).split())[:160]
            print(f"genflow: error: rank {world.rank} lost contact with another rank, which died or hangs "
                  f"({detail}); {_resume_line(run_dir)}", file=sys.stderr)
        code = LOST_RANK_EXIT
    else:
        # 128 + N: the shell's convention for "ended by signal N"
        code = 128 + trainer.stopped_by if trainer.stopped_by else 0
        if not code and world.is_main:
            print(f"genflow: trained to step {step}; run folder: {run_dir}")
    finally:
        if opened is not None:
            opened.lock.release()
    if world.distributed:
        exit_rank(code)
    shutdown_world()
    return code


def _resume_line(run_dir: pathlib.Path | None) -> str:
    from genflow.train.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir) if run_dir is not None else None
    if run_dir is None or latest is None:
        return "no complete checkpoint to continue from"
    return f"last complete checkpoint: step {latest[0]}; continue with: genflow train --resume {run_dir}"


def _argv_without_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``."""
    kept: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            kept.append(item)
    return kept


def cmd_config(args: argparse.Namespace) -> int:
    from genflow.config import to_toml

    print(to_toml(_load_config(args, _manager(args))), end="")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    manager = _manager(args)
    print("plugins: " + ", ".join(manager.plugin_names()))
    for kind, table in manager.components.items():
        print(f"\n{kind}s:")
        if not table:
            print("  (none)")
        for name in sorted(table):
            entry = table[name]
            print(f"  {name:<14} {entry.plugin:<14} {entry.component.description}")
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    from genflow.build import build_backbone
    from genflow.interfaces import DataSpec

    manager = _manager(args)
    config = _load_config(args, manager)
    if args.shape:
        try:
            shape = tuple(int(s) for s in args.shape.split(","))
        except ValueError:
            raise GenflowError(f"--shape '{args.shape}': expected integers like 4,32,32") from None
        spec = DataSpec(shape=shape, num_classes=args.classes or 0)
    else:
        from genflow.build import build_components

        spec = build_components(config, manager).spec
    backbone = build_backbone(config, manager, spec, meta=True)
    n_params = sum(p.numel() for p in backbone.parameters())
    print(f"backbone: {config.backbone.name} {config.backbone.options}")
    print(f"data: shape {spec.shape}, classes {spec.num_classes}")
    print(f"parameters: {n_params:,} ({n_params / 1e6:.1f}M)")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from genflow.sampling_cli import run_sample

    return run_sample(args, _manager(args))


def cmd_eval(args: argparse.Namespace) -> int:
    from genflow.eval.cli import run_eval

    return run_eval(args, _manager(args))


def cmd_tokenizer(args: argparse.Namespace) -> int:
    from genflow.text.setup import run

    return run(args)


def cmd_prepare(args: argparse.Namespace) -> int:
    from genflow.data.prepare import run

    return run(args, _manager(args))


# ------------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------------


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="genflow", description=__doc__)
    _add_plugin_options(parser, dest="global_plugin_options")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)

    train = sub.add_parser("train", help="train a model (default: the CPU demo)")
    _add_plugin_options(train)
    _add_config_options(train)
    train.add_argument("--run-dir", help="run folder: new or empty (default: runs/<time>-<objective>)")
    train.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                       help="continue a run (RUN_DIR, or --run-dir) from its latest checkpoint with its stored "
                            "config; KEY=VALUE overrides change it and are recorded in the run")
    train.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    train.add_argument("--nproc", type=int, default=0,
                       help="run N processes on this machine (as torchrun --nproc-per-node N would)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    config = sub.add_parser("config", help="print the resolved config as TOML")
    _add_plugin_options(config)
    _add_config_options(config)
    config.set_defaults(func=cmd_config)

    plugins = sub.add_parser("plugins", help="list every registered component and its plugin")
    _add_plugin_options(plugins)
    plugins.set_defaults(func=cmd_plugins)

    info = sub.add_parser("model-info", help="parameter count of the configured backbone")
    _add_plugin_options(info)
    _add_config_options(info)
    info.add_argument("--shape", help="sample shape, e.g. 4,32,32 (default: the dataset's)")
    info.add_argument("--classes", type=int, help="number of classes with --shape (default 0)")
    info.set_defaults(func=cmd_model_info)

    from genflow.sampling_cli import add_sample_arguments

    sample = sub.add_parser("sample", help="sample grids and arrays from a run")
    _add_plugin_options(sample)
    add_sample_arguments(sample)
    sample.set_defaults(func=cmd_sample)

    from genflow.eval.cli import add_eval_arguments

    evaluate = sub.add_parser("eval", help="metrics per step count: JSON table, plot, grids")
    _add_plugin_options(evaluate)
    add_eval_arguments(evaluate)
    evaluate.set_defaults(func=cmd_eval)

    from genflow.text.setup import add_arguments as add_tokenizer_arguments

    tokenizer = sub.add_parser("tokenizer", help="train a sentencepiece tokenizer on a store's captions")
    add_tokenizer_arguments(tokenizer)
    tokenizer.set_defaults(func=cmd_tokenizer)

    prepare = sub.add_parser("prepare", help="write a zarr latent store from a dataset")
    _add_plugin_options(prepare)
    try:
        from genflow.data.prepare import add_arguments
    except ImportError:  # the data package is optional while it is being built
        pass
    else:
        add_arguments(prepare)
    prepare.set_defaults(func=cmd_prepare)
    return parser


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """genflow's own warnings as one plain line (``genflow: ...``), others as Python prints them."""
    text = str(message)
    if text.startswith("genflow:"):
        return text.replace("genflow:", "genflow: warning:", 1) + "\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _format_warning
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return int(args.func(args) or 0)
    except GenflowError as exc:
        print(f"genflow: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("genflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
