"""The ``genflow`` command: train, sample, eval, prepare, check, tokenizer, plugins, config, model-info,
import, new-plugin, derivatives."""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import pathlib
import sys
import warnings
from collections.abc import Sequence

from genflow.commands import numbers
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


def _data_kind(name: str, url: object) -> str | None:
    """``image`` or ``points`` for the built-in datasets and readable stores, else ``None``."""
    if name in ("shapes", "toy2d"):
        return "image" if name == "shapes" else "points"
    if name == "store" and isinstance(url, str) and url:
        from genflow.data.store import LatentStore

        try:
            return LatentStore(url, validate=False).meta.sample_kind
        except (GenflowError, OSError, ValueError):
            return None  # building the dataset later says what is wrong with the store
    return None


def _keep_backbone(args: argparse.Namespace, file_data: dict, selectors: dict[str, str | None]) -> str | None:
    """``--data`` replaces the config's dataset. The config's backbone, with its options, stays when
    the new data is of the same kind (images for images); otherwise the new dataset's default
    backbone replaces it, and the one-line notice that says so is returned. ``--backbone`` always
    wins."""
    backbone, old = file_data.get("backbone"), file_data.get("data")
    if selectors.get("data") is None or selectors.get("backbone") is not None or not isinstance(backbone, dict):
        return None
    old = old if isinstance(old, dict) else {}
    name = backbone.get("name")
    url = args.data if selectors["data"] == "store" else None
    if not isinstance(name, str) or (old.get("name") == selectors["data"] and old.get("url") == url):
        return None
    old_kind, new_kind = _data_kind(str(old.get("name", "")), old.get("url")), _data_kind(str(selectors["data"]), url)
    if new_kind is None and url is not None:
        return None  # an unreadable store: building the dataset says what is wrong, in one line
    if old_kind is not None and old_kind == new_kind:
        selectors["backbone"] = name
        return None
    return (f"genflow: note: --data {args.data} is not the kind of data the config's backbone '{name}' was set "
            "for, so the dataset's default backbone replaces it (pass --backbone NAME to choose)")


def resolve_config(args: argparse.Namespace, manager):  # noqa: ANN001, ANN202
    """The config of every command that takes ``--config``, the selectors and overrides (the demo
    preset without ``--config``): one resolution, so ``config`` prints what ``train``, ``model-info`` and
    ``derivatives`` run."""
    from genflow import config as cfg

    selectors, extra = _selectors(args, manager)
    config_file = args.config if args.config is not None else DEFAULT_PRESET
    file_data = cfg.read_config_file(config_file) if config_file and args.data is not None else {}
    notice = _keep_backbone(args, file_data, selectors)
    train = file_data.get("train")
    if args.config is None and isinstance(train, dict) and train.get("max_minutes"):
        extra.append("train.max_minutes=0")  # the demo's time cap is the demo's, not one's own data's
    config = cfg.load(manager, config_file=config_file, selectors=selectors, overrides=[*extra, *args.overrides])
    if notice:  # said once the config is valid: a bad input stays one line
        print(notice, file=sys.stderr)
    return config


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
    from genflow.commands.outputs import check_output_dir
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
        config = resolve_config(args, manager)  # without --config: the demo preset
    from genflow.commands.check import check_start, check_writable

    check_writable(run_dir or pathlib.Path("runs"), resume=resume)
    if args.dry_run:  # everything a real start checks, nothing written
        from genflow.config import to_toml

        check_start(config, manager)
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
        trainer.run()
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
        code = 128 + trainer.stopped_by if trainer.stopped_by else 0  # the run printed its summary
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

    # the same base as ``genflow train``: what this prints is what train would run
    print(to_toml(resolve_config(args, _manager(args))), end="")
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
    from genflow.components.build import build_backbone
    from genflow.interfaces import DataSpec

    manager = _manager(args)
    config = resolve_config(args, manager)  # the config ``genflow train`` would run
    if args.shape:
        try:
            shape = tuple(int(s) for s in args.shape.split(","))
        except ValueError:
            raise GenflowError(f"--shape '{args.shape}': expected integers like 4,32,32") from None
        spec = DataSpec(shape=shape, num_classes=args.classes or 0)
    else:
        from genflow.components.build import build_components

        spec = build_components(config, manager).spec
    backbone = build_backbone(config, manager, spec, meta=True)
    n_params = sum(p.numel() for p in backbone.parameters())
    print(f"backbone: {config.backbone.name}")
    for key, value in backbone_settings(config.backbone.options).items():
        print(f"  {key} = {value}")
    source = "--shape" if args.shape else f"dataset {config.data.name}"
    print(f"data: {source}, sample shape {spec.shape}, classes {spec.num_classes}")
    print(f"parameters: {n_params:,} ({n_params / 1e6:.1f}M), {n_params * 4 / 2**20:.1f} MiB in float32")
    return 0


def backbone_settings(options: object) -> dict[str, object]:
    """A backbone config's fields with the values the backbone is built with: where the config
    has a ``resolve()`` (e.g. ``tim-dit``'s preset with its non-zero overrides), its fields
    replace the config's placeholders."""
    import attrs

    if not attrs.has(type(options)):
        return {"options": options}
    settings = attrs.asdict(options, recurse=False)  # type: ignore[arg-type]
    resolve = getattr(options, "resolve", None)
    if callable(resolve):
        resolved = resolve()
        if attrs.has(type(resolved)):
            settings.update(attrs.asdict(resolved, recurse=False))  # type: ignore[arg-type]
    return settings


def cmd_import(args: argparse.Namespace) -> int:
    manager = _manager(args)
    component = manager.get("importer", args.source)
    run_import = component.build(component.config())
    extra = {"null_caption": pathlib.Path(args.null_caption)} if args.null_caption else {}
    out = run_import(pathlib.Path(args.file), args.preset, pathlib.Path(args.out), manager, **extra)
    print(f"imported '{args.file}' into run folder {out} (genflow sample {out})")
    return 0


# ------------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------------


#: Commands whose modules import torch: ``(name, help, module, its arguments function, its run
#: function)``. Their arguments are added only when the command is the one being run, so
#: ``genflow --help`` and the light commands start fast; the module is imported when it is needed.
HEAVY_COMMANDS: tuple[tuple[str, str, str, str, str], ...] = (
    ("sample", "sample grids and arrays from a run", "genflow.commands.sample", "add_sample_arguments", "run_sample"),
    ("eval", "metrics per step count: JSON table, plot, grids", "genflow.eval.cli", "add_eval_arguments", "run_eval"),
    ("tokenizer", "train a sentencepiece tokenizer on a store's captions", "genflow.text.setup", "add_arguments",
     "run"),
    ("prepare", "write a zarr latent store from a dataset", "genflow.data.prepare", "add_arguments", "run"),
    ("check", "check a latent store or a run folder (reads everything)", "genflow.commands.check", "add_arguments", "run"),
    ("new-plugin", "write a plugin package (objective or derivative) with its tests", "genflow.commands.new_plugin",
     "add_arguments", "run"),
    ("derivatives", "every derivative provider's dF/dt error, step cost and memory", "genflow.commands.derivatives",
     "add_arguments", "run"),
)
#: Heavy commands without plugins: no ``-p`` options, and their run function takes no plugin manager.
WITHOUT_PLUGINS = ("tokenizer",)
#: Heavy commands that also take the config options (``--config``, the selectors, overrides).
WITH_CONFIG = ("derivatives",)


def _run_heavy(module: str, function: str, args: argparse.Namespace) -> int:
    """A heavy command's ``run(args, manager)`` (``run(args)`` without plugins), imported now."""
    run = getattr(importlib.import_module(module), function)
    return run(args) if args.command in WITHOUT_PLUGINS else run(args, _manager(args))


def build_parser(command: str | None = None) -> ArgumentParser:
    """The ``genflow`` parser. ``command``: the subcommand being run; the arguments of the other
    ``HEAVY_COMMANDS`` are then left out (their modules import torch). ``None``: every argument."""
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
    train.add_argument("--dry-run", action="store_true",
                       help="check what a start checks (config, data store, model, run folder), print the config, "
                            "write nothing")
    train.add_argument("--nproc", type=numbers.integer(0, 1024), default=0,
                       help="run N processes on this machine (as torchrun --nproc-per-node N would)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    config = sub.add_parser("config", help="print the resolved config as TOML (default: the demo preset)")
    _add_plugin_options(config)
    _add_config_options(config)
    config.set_defaults(func=cmd_config)

    plugins = sub.add_parser("plugins", help="list every registered component and its plugin")
    _add_plugin_options(plugins)
    plugins.set_defaults(func=cmd_plugins)

    info = sub.add_parser("model-info", help="the configured backbone's settings and parameter count")
    _add_plugin_options(info)
    _add_config_options(info)
    info.add_argument("--shape", help="sample shape, e.g. 4,32,32 (default: the dataset's)")
    info.add_argument("--classes", type=numbers.count, help="number of classes with --shape (default 0)")
    info.set_defaults(func=cmd_model_info)

    importer = sub.add_parser("import", help="import weights trained elsewhere into a run folder")
    _add_plugin_options(importer)
    importer.add_argument("source", help="a registered importer, e.g. tim-official")
    importer.add_argument("file", help="the weights file")
    importer.add_argument("--preset", required=True, help="the genflow preset the weights fit")
    importer.add_argument("--out", required=True, help="the new run folder")
    importer.add_argument("--null-caption", metavar="FILE",
                          help="text-to-image: the text encoder's states of the empty prompt (a tensor file)")
    importer.set_defaults(func=cmd_import)

    for name, help_text, module, add_arguments, run in HEAVY_COMMANDS:
        subparser = sub.add_parser(name, help=help_text)
        if name not in WITHOUT_PLUGINS:
            _add_plugin_options(subparser)
        if command is None or command == name:
            if name in WITH_CONFIG:
                _add_config_options(subparser)
            getattr(importlib.import_module(module), add_arguments)(subparser)
        subparser.set_defaults(func=functools.partial(_run_heavy, module, run))
    return parser


def _command_of(argv: Sequence[str]) -> str:
    """The subcommand named in ``argv`` ("" when none): the first argument that is not a global
    option (``-p NAME``, ``-p=NAME``, ``-pNAME``, ``-h``)."""
    args = list(argv)
    i = 0
    while i < len(args):
        if args[i] == "-p":
            i += 2
        elif args[i].startswith("-"):
            i += 1
        else:
            return args[i]
    return ""


def parse_args(parser: ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args`` that also takes ``KEY=VALUE`` overrides after options (argparse takes
    one run of positionals: ``train a=1 --config debug b=2`` would refuse ``b=2``)."""
    args, extras = parser.parse_known_args(argv)
    late = [item for item in extras if "=" in item and not item.startswith("-")]
    unknown = [item for item in extras if item not in late]
    if late and hasattr(args, "overrides"):
        args.overrides = [*args.overrides, *late]
    else:
        unknown = extras
    if unknown:
        prog = f"{parser.prog} {args.command}" if getattr(args, "command", None) else parser.prog
        raise GenflowError(f"{prog}: unrecognized arguments: {' '.join(unknown)} (see '{prog} --help')")
    return args


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
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(_command_of(argv))
        args = parse_args(parser, argv)
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
