"""The ``sda`` command line.

Exit codes: 0 success, 1 failure (an unusable folder, a plugin fault), 2 usage error (bad
arguments, a missing folder, an invalid setting). Expected failures print one sentence, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sda_core import __version__
from sda_core.config.commands import CliCommand
from sda_core.config.overrides import parse_set_options
from sda_core.errors import (
    ConfigError,
    DatasetError,
    PeerStopped,
    PluginError,
    RunExistsError,
    SdaError,
    UsageError,
)

if TYPE_CHECKING:  # rich and the Engine load after the arguments parse: `sda --version` stays light
    from rich.console import Console

    from sda_core.engine import Engine

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
#: Epochs `sda demo` trains: a few minutes on 2 CPU cores.


def build_parser(plugin_commands: Sequence[CliCommand] = ()) -> argparse.ArgumentParser:
    """The ``sda`` argument parser: sda's own commands, then ``plugin_commands`` (added by plugins
    through ``sda_cli_commands``)."""
    # --disable-plugin is accepted before and after the command; separate dests keep the
    # subcommand's parser from overwriting what was given before the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--disable-plugin",
        action="append",
        dest="disable_after",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="never load this plugin (entry-point or distribution name); repeatable",
    )
    parser = argparse.ArgumentParser(
        prog="sda",
        description="Train generative audio models on small datasets (5 to 500 files).",
    )
    parser.add_argument(
        "--disable-plugin",
        action="append",
        dest="disable_before",
        default=[],
        metavar="NAME",
        help="never load this plugin (entry-point or distribution name); repeatable",
    )
    parser.add_argument("--version", action="version", version=f"sda {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    plugins = commands.add_parser("plugins", parents=[common], help="list plugins and the hooks they implement")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(handler=cmd_plugins)

    scan = commands.add_parser("scan", parents=[common], help="pre-flight report of a data folder")
    scan.add_argument("data_dir", metavar="DIR", help="folder of audio files (searched recursively)")
    scan.add_argument("--json", action="store_true", help="machine-readable output")
    scan.add_argument("--all", action="store_true", help="list every usable file, however many")
    scan.add_argument(
        "--no-analysis",
        action="store_true",
        help="read headers only: skip decoding the files to check for clipping, DC offset, silence, "
        "NaN/Inf samples and truncation (chunk counts are still given)",
    )
    _add_set_option(scan)
    scan.set_defaults(handler=cmd_scan)

    train = commands.add_parser("train", parents=[common], help="train a model on a folder of audio")
    train.add_argument("data_dir", metavar="DIR", help="folder of audio files (searched recursively)")
    train.add_argument("--out", metavar="RUN", help="run folder (default: runs/<name of DIR>)")
    train.add_argument("--resume", metavar="RUN", help="continue this run folder from its last checkpoint")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run already in the run folder (all its files, previews included) first",
    )
    train.add_argument("--max-epochs", type=int, metavar="N", help="train up to epoch N (also to extend a resumed run)")
    train.add_argument("--device", metavar="D", help="cpu, cuda, mps or auto (default: the config's, auto)")
    train.add_argument("--seed", type=int, metavar="N", help="seed of initialisation, offsets and augmentation")
    _add_set_option(train)
    train.set_defaults(handler=cmd_train)

    generate = commands.add_parser("generate", parents=[common], help="write new sounds from a trained run")
    generate.add_argument("run_dir", metavar="RUN", help="a run folder written by `sda train`")
    generate.add_argument("-n", "--count", type=int, default=4, metavar="N", help="how many sounds (default 4)")
    generate.add_argument("--seconds", type=float, metavar="S", help="length of each (default: one chunk)")
    generate.add_argument("--out", metavar="DIR", help="where to write them (default: RUN/generated)")
    generate.add_argument("--seed", type=int, default=0, metavar="N", help="seed (default 0)")
    generate.add_argument("--device", default="auto", metavar="D", help="cpu, cuda, mps or auto")
    generate.add_argument(
        "--temperature",
        type=float,
        metavar="T",
        help="sampling spread, for models that take one (default: the model's); with --like, "
        "how far variations stray (default 1)",
    )
    mode = generate.add_mutually_exclusive_group()
    mode.add_argument("--like", metavar="FILE", help="variations of the sound in FILE (its loudest chunk)")
    mode.add_argument(
        "--morph",
        nargs=2,
        metavar=("A", "B"),
        help="a path from the sound in file A to the one in file B, and the path joined",
    )
    generate.add_argument(
        "--steps", type=int, metavar="K", help="sounds on a --morph path, A and B included (default 8)"
    )
    generate.add_argument("--slerp", action="store_true", help="--morph along the great circle instead of a line")
    generate.add_argument(
        "--trim", action="store_true", help="cut leading and trailing silence of one-shots (with short fades)"
    )
    generate.set_defaults(handler=cmd_generate)

    export = commands.add_parser(
        "export", parents=[common], help="write a trained run's generator and encoder for use without sda"
    )
    export.add_argument("run_dir", metavar="RUN", help="a run folder written by `sda train`")
    export.add_argument("--format", default="onnx", metavar="F", help="onnx or torchscript (default onnx)")
    export.add_argument(
        "--out",
        metavar="FILE",
        help="the generator's file (default: RUN/export/generator.onnx or .pt); the encoder and FILE.json go beside it",
    )
    export.set_defaults(handler=cmd_export)

    evaluate = commands.add_parser(
        "evaluate", parents=[common], help="measure how close a trained run's generated sounds are to its data"
    )
    evaluate.add_argument("run_dir", metavar="RUN", help="a run folder written by `sda train`")
    evaluate.add_argument("-n", "--count", type=int, default=64, metavar="N", help="sounds to generate (default 64)")
    evaluate.add_argument("--seed", type=int, default=0, metavar="N", help="seed (default 0)")
    evaluate.add_argument(
        "--temperature",
        type=float,
        metavar="T",
        help="sampling temperature, for models that take one (default: the model's)",
    )
    evaluate.add_argument("--device", default="cpu", metavar="D", help="cpu, cuda, mps or auto (default cpu)")
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.set_defaults(handler=cmd_evaluate)

    cache = commands.add_parser(
        "cache", parents=[common], help="show the decoded-MP3 cache: its folder, entries and size"
    )
    cache.add_argument(
        "--clear",
        action="store_true",
        help="delete the cache's entries (nothing else in its folder) and say what was freed",
    )
    cache.add_argument("--json", action="store_true", help="machine-readable output")
    cache.set_defaults(handler=cmd_cache)

    demo = commands.add_parser("demo", parents=[common], help="synthesise a demo dataset, train on it, generate")
    demo.add_argument("--out", default="demo", metavar="DIR", help="where to put the demo (default: ./demo)")
    demo.add_argument(
        "--max-epochs",
        type=int,
        metavar="N",
        help="epochs to train (default: the preset's, 100 for the demo set: about 4 minutes on 2 CPU cores)",
    )
    demo.add_argument("--device", metavar="D", help="cpu, cuda, mps or auto")
    _add_set_option(demo)
    demo.set_defaults(handler=cmd_demo)

    new_plugin = commands.add_parser(
        "new-plugin",
        help="write a plugin distribution to start from (entry point, hooks, settings, tests with the kit)",
    )
    new_plugin.add_argument("name", metavar="NAME", help="the plugin's name, e.g. loop_marker (sda-loop-marker)")
    new_plugin.add_argument(
        "--dest", default=".", metavar="DIR", help="where to put its folder, sda-NAME (default: here)"
    )
    new_plugin.set_defaults(handler=cmd_new_plugin)

    for command in plugin_commands:
        added = commands.add_parser(command.name, parents=[common], help=command.help, description=command.help)
        if command.configure is not None:
            command.configure(added)
        added.set_defaults(handler=_plugin_handler(command))
    return parser


#: sda's own commands: a plugin may not add a command of one of these names.
BUILTIN_COMMANDS = ("plugins", "scan", "train", "generate", "export", "evaluate", "cache", "demo", "new-plugin")


def _plugin_handler(command: CliCommand) -> Callable[[argparse.Namespace, Console, Console], int]:
    def handler(args: argparse.Namespace, console: Console, errors: Console) -> int:
        code = command.run(args)
        return EXIT_OK if code is None else int(code)

    return handler


def _command_word(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` (its first argument that is not an option of ``sda`` itself)."""
    words = iter(argv)
    for word in words:
        if word == "--disable-plugin":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _disabled_before(argv: Sequence[str]) -> list[str]:
    """The ``--disable-plugin`` names given before the command word."""
    names: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--disable-plugin":
            names.append(next(words, ""))
        elif word.startswith("--disable-plugin="):
            names.append(word.split("=", 1)[1])
        elif not word.startswith("-"):
            break
    return [name for name in names if name]


def _plugin_commands(argv: Sequence[str]) -> list[CliCommand]:
    """The commands plugins add, loaded only when ``argv`` names a command sda does not have, or
    asks for help without a command: sda's own commands never load the plugins for it."""
    word = _command_word(argv)
    if word in BUILTIN_COMMANDS or (word is None and not {"-h", "--help"} & set(argv)):
        return []
    from sda_core.engine import Engine

    engine, _caught = _with_warnings(lambda: Engine(disable=_disabled_before(argv)))
    return engine.cli_commands(reserved=BUILTIN_COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sda`` console script; returns the exit code.

    A torchrun worker of ``sda train`` ends here instead, through
    :func:`sda_core.training.distributed.end_worker_process`."""
    code = _main(argv)
    distributed = sys.modules.get("sda_core.training.distributed")  # imported by a training run only
    if distributed is not None and distributed.owns_process_group():
        distributed.end_worker_process(code)
    return code


def _main(argv: Sequence[str] | None) -> int:
    from rich.console import Console

    argv = list(sys.argv[1:] if argv is None else argv)
    errors = Console(stderr=True)
    try:
        parser = build_parser(_plugin_commands(argv))
    except SdaError as error:  # a plugin's command is broken: sda's own commands still work
        errors.print(f"sda: error: {error}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_FAILURE
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return EXIT_USAGE
    console = Console()
    if not console.is_terminal:  # piped or logged: wide enough that tables do not truncate paths
        console = Console(width=160)
    prefix = "sda" if _rank() == 0 else f"sda (rank {_rank()})"
    try:
        if _world_size() > 1 and args.command != "train":
            raise UsageError(
                f"sda {args.command} runs in one process: start it without torchrun (only sda train runs under "
                "torchrun, see docs/scale-out.md)"
            )
        return args.handler(args, console, errors)
    except (UsageError, ConfigError, RunExistsError) as error:
        errors.print(f"{prefix}: error: {error}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except PeerStopped:
        # another process of a torchrun launch failed and reports it with its exit code; ending
        # with a failure here too would have torchrun kill that process before it has reported
        return EXIT_OK
    except (DatasetError, PluginError, SdaError) as error:
        errors.print(f"{prefix}: error: {error}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        errors.print("sda: interrupted")
        return 130


# -- commands -------------------------------------------------------------------------------


def cmd_plugins(args: argparse.Namespace, console: Console, errors: Console) -> int:
    from sda_core.cli.report import print_plugins

    engine, caught = _with_warnings(lambda: _engine(args), live=not args.json)
    infos = engine.plugin_infos()
    if args.json:
        _print_json({"plugins": [info.to_dict() for info in infos], "warnings": caught})
    else:
        print_plugins(console, infos)
    return EXIT_OK


def cmd_scan(args: argparse.Namespace, console: Console, errors: Console) -> int:
    from sda_core.cli.report import print_config, print_dataset_warnings, print_scan, scan_to_dict
    from sda_core.data.scan import require_usable

    data_dir = _existing_folder(args.data_dir)
    overrides = parse_set_options(args.set)

    def resolve() -> tuple[Any, Any]:
        engine = _engine(args)
        summary = engine.scan(data_dir)
        config = None
        if summary.files:
            config = engine.resolve_config(summary, engine.collect_overrides(data_dir, cli=overrides))
            engine.check_config(config)  # every plugin may veto the settings (sda_check_config)
        return summary, config

    (summary, config), caught = _with_warnings(resolve, live=not args.json)
    analysis = None
    if config is not None:
        analysis = _analyse(summary, config, content=not args.no_analysis, console=None if args.json else console)
    if args.json:
        _print_json(scan_to_dict(summary, config, caught, analysis))
    else:
        print_scan(console, summary, show_all=args.all, analysis=analysis)
        if config is not None:
            print_config(console, config)
        print_dataset_warnings(console, analysis)
    require_usable(summary)
    return EXIT_OK


def _analyse(summary: Any, config: Any, content: bool, console: Console | None) -> Any:
    """Chunk counts and content checks of the scanned files (a spinner while decoding, on a terminal)."""
    from sda_core.data.analysis import analyse_dataset

    if content and console is not None and console.is_terminal:
        with console.status(f"checking the audio of {summary.file_count} files ...", spinner="dots"):
            return analyse_dataset(summary, config, content=content)
    return analyse_dataset(summary, config, content=content)


def cmd_train(args: argparse.Namespace, console: Console, errors: Console) -> int:
    data_dir = _existing_folder(args.data_dir)
    if args.resume and args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise UsageError("give the run folder once: --resume RUN (or --out RUN), not two different ones")
    if args.resume and args.overwrite:
        raise UsageError("--resume continues a run and --overwrite deletes it: give one of them")
    overrides = parse_set_options(args.set)
    if args.max_epochs is not None:
        overrides["max_epochs"] = args.max_epochs
    if args.seed is not None:
        overrides["seed"] = args.seed
    engine, caught = _with_warnings(lambda: _engine(args))
    result, caught = _with_warnings(
        lambda: engine.train(
            data_dir,
            args.resume or args.out,
            overrides,
            resume=bool(args.resume),
            overwrite=args.overwrite,
            device=args.device,
        )
    )
    if _rank() != 0:  # under torchrun, rank 0 reports the run and its exit code
        return EXIT_OK
    _print_result(console, result)
    return 130 if result.interrupted else EXIT_OK


def cmd_generate(args: argparse.Namespace, console: Console, errors: Console) -> int:
    from sda_core.training import generation
    from sda_core.training.trainer import select_device

    if args.count < 1:
        raise UsageError("-n must be at least 1")
    if args.seconds is not None and not 0 < args.seconds <= 600:
        raise UsageError("--seconds must be above 0 and at most 600")
    if args.temperature is not None and not 0 <= args.temperature <= 10:
        raise UsageError("--temperature must be from 0 to 10")
    if (args.steps is not None or args.slerp) and not args.morph:
        raise UsageError("--steps and --slerp go with --morph A B")
    if (args.like or args.morph) and args.seconds is not None:
        raise UsageError("--seconds applies to new sounds; --like and --morph make sounds of one chunk")
    if args.morph and (args.temperature is not None or args.trim):
        raise UsageError("--temperature and --trim do not apply to --morph")
    steps = 8 if args.steps is None else args.steps
    if args.morph and steps < 2:
        raise UsageError("--steps must be at least 2 (A and B)")
    for path in ([args.like] if args.like else []) + list(args.morph or []):
        if not Path(path).exists():
            raise UsageError(f"sound file '{path}' does not exist")
        if Path(path).is_dir():
            raise UsageError(f"'{path}' is a folder; pass one sound file")
    _existing_folder(args.run_dir, what="run folder")
    engine, caught = _with_warnings(lambda: _engine(args))
    device = select_device(args.device)
    if args.like:
        what = f"variations of {args.like}"
        action = lambda: generation.like_files(  # noqa: E731
            engine,
            args.run_dir,
            args.like,
            args.out,
            count=args.count,
            seed=args.seed,
            temperature=args.temperature,
            trim=args.trim,
            device=device,
        )
    elif args.morph:
        what = f"steps of a morph from {args.morph[0]} to {args.morph[1]} and the joined path"
        action = lambda: generation.morph_files(  # noqa: E731
            engine,
            args.run_dir,
            args.morph[0],
            args.morph[1],
            args.out,
            steps=steps,
            spherical=args.slerp,
            device=device,
        )
    else:
        what = "sounds"
        action = lambda: generation.generate_files(  # noqa: E731
            engine,
            args.run_dir,
            args.out,
            count=args.count,
            seconds=args.seconds,
            seed=args.seed,
            temperature=args.temperature,
            trim=args.trim,
            device=device,
        )
    paths, caught = _with_warnings(action)
    count = len(paths) - 1 if args.morph else len(paths)
    console.print(f"wrote {count} {what} to {paths[0].parent}", markup=False, highlight=False)
    for path in paths:
        console.print(f"  {path}", markup=False, highlight=False)
    return EXIT_OK


def cmd_export(args: argparse.Namespace, console: Console, errors: Console) -> int:
    from sda_core.training.export import FORMATS, export_run

    if args.format not in FORMATS:
        raise UsageError(f"unknown export format '{args.format}'; use one of: {', '.join(FORMATS)}")
    run_dir = _existing_folder(args.run_dir, what="run folder")
    if args.out is not None and Path(args.out).is_dir():
        raise UsageError(
            f"--out '{args.out}' is a folder; give the file to write, e.g. {Path(args.out) / 'generator'}"
            f"{'.onnx' if args.format == 'onnx' else '.pt'}"
        )
    engine, caught = _with_warnings(lambda: _engine(args))
    paths, caught = _with_warnings(lambda: export_run(run_dir, args.format, args.out, hooks=engine))
    console.print(f"exported {run_dir} as {args.format} to {paths[0].parent}", markup=False, highlight=False)
    for path in paths:
        console.print(f"  {path}", markup=False, highlight=False)
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace, console: Console, errors: Console) -> int:
    from sda_core.cli.report import print_evaluation
    from sda_core.training.evaluation import evaluate_run
    from sda_core.training.trainer import select_device

    if args.count < 2:
        raise UsageError("-n must be at least 2")
    run_dir = _existing_folder(args.run_dir, what="run folder")
    engine, caught = _with_warnings(lambda: _engine(args), live=not args.json)

    def evaluate() -> Any:
        return _evaluate(evaluate_run, engine, run_dir, args, select_device)

    if not args.json and console.is_terminal:
        with console.status(f"generating {args.count} sounds and measuring them ...", spinner="dots"):
            result, more = _with_warnings(evaluate)
    else:
        result, more = _with_warnings(evaluate, live=not args.json)
    if args.json:
        _print_json({**result.to_dict(), "warnings": list(dict.fromkeys(caught + more))})
    else:
        print_evaluation(console, result)
    return EXIT_OK


def _evaluate(
    evaluate_run: Callable[..., Any],
    engine: Engine,
    run_dir: Path,
    args: argparse.Namespace,
    select_device: Callable[[str], Any],
) -> Any:
    return evaluate_run(
        run_dir,
        hooks=engine,
        count=args.count,
        seed=args.seed,
        temperature=args.temperature,
        device=select_device(args.device),
    )


def cmd_cache(args: argparse.Namespace, console: Console, errors: Console) -> int:
    from sda_core.audio.decode_cache import CACHE_DIR_VARIABLE, DecodeCache
    from sda_core.cli.report import cache_to_dict, print_cache

    cache = DecodeCache()
    source = f"${CACHE_DIR_VARIABLE}" if os.environ.get(CACHE_DIR_VARIABLE) else "the platform's cache folder"
    if cache.directory.exists() and not cache.directory.is_dir():
        raise UsageError(
            f"the cache folder '{cache.directory}' (from {source}) is a file; point {CACHE_DIR_VARIABLE} at a folder"
        )
    cleared = cache.clear() if args.clear else None
    usage = cache.usage()
    if args.json:
        _print_json(cache_to_dict(cache, source, usage, cleared))
    else:
        print_cache(console, cache, source, usage, cleared)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, console: Console, errors: Console) -> int:
    from sda_core.cli.report import print_config, print_scan
    from sda_core.data.demo import synthesize_demo_dataset
    from sda_core.training.generation import generate_files
    from sda_core.training.run_folder import RunPaths

    out = Path(args.out)
    data_dir = out / "data"
    written = synthesize_demo_dataset(data_dir)
    console.print(f"[bold]Demo dataset:[/bold] {len(written)} synthesised sounds in {data_dir}")
    engine, caught = _with_warnings(lambda: _engine(args))
    # the default config, as `sda train` would resolve it: the figures in docs/model.md are its own
    epochs = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    overrides = {**epochs, **parse_set_options(args.set)}

    def resolve() -> tuple[Any, Any]:
        summary = engine.scan(data_dir)
        return summary, engine.resolve_config(summary, engine.collect_overrides(data_dir, cli=overrides))

    (summary, config), caught = _with_warnings(resolve)
    print_scan(console, summary)
    print_config(console, config)
    run_dir = out / "run"
    resume = RunPaths(run_dir).last.exists()
    if resume:
        console.print(f"resuming the demo run in {run_dir}")
    # the demo owns its run folder: a fresh demo replaces an earlier one
    result, caught = _with_warnings(
        lambda: engine.train(data_dir, run_dir, overrides, resume=resume, overwrite=not resume, device=args.device)
    )
    _print_result(console, result)
    if result.interrupted:
        return 130
    # one chunk each: the model's unit, and what `sda evaluate` measures
    paths = generate_files(engine, run_dir, out / "generated", count=4)
    seconds = f"{config.chunk_seconds:g}"
    console.print(f"[bold]Generated[/bold] {len(paths)} new sounds of {seconds} s (one chunk) in {paths[0].parent}")
    console.print(f"Listen to the previews in {run_dir / 'previews'} and the sounds in {paths[0].parent}.")
    return EXIT_OK


def cmd_new_plugin(args: argparse.Namespace, console: Console, errors: Console) -> int:
    from sda_core.cli.new_plugin import create_plugin

    root, written = create_plugin(args.name, args.dest)
    console.print(f"[bold]Wrote[/bold] {root}:", highlight=False)
    for path in written:
        console.print(f"  {path.relative_to(root).as_posix()}", markup=False, highlight=False)
    console.print(
        f"next: cd {root} && pip install -e '.[test]' && pytest   (see its README.md)", markup=False, highlight=False
    )
    return EXIT_OK


def _print_result(console: Console, result: Any) -> None:
    def loss(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    console.print(f"[bold]Run[/bold] {result.run_dir}: {result.reason} after epoch {result.epochs_completed}")
    console.print(
        f"validation loss: first {loss(result.initial_val_loss)} (untrained), final {loss(result.final_val_loss)}, "
        f"best {loss(result.best_val_loss)} at epoch {result.best_epoch or '-'}"
    )
    evaluation = getattr(result, "evaluation", None)
    if evaluation is not None:
        shown = ("resemblance", "nn_accuracy", "copying", "diversity", "reconstruction", "reconstruction_fitted")
        figures = ", ".join(f"{name} {value:.2f}" for name, value in evaluation.figures().items() if name in shown)
        console.print(
            f"evaluation of {evaluation.count} sounds from epoch {evaluation.epoch}: {figures} "
            f"(sda evaluate {result.run_dir} for the full table)",
            markup=False,
            highlight=False,
        )
    for name, path in sorted(result.checkpoints.items()):
        console.print(f"  {name}: {path}", markup=False, highlight=False)
    if not result.interrupted:
        console.print(f"next: sda generate {result.run_dir}", markup=False, highlight=False)
    else:
        console.print(f"resume with: sda train DATA --resume {result.run_dir}", markup=False, highlight=False)


# -- helpers --------------------------------------------------------------------------------


def _add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting (e.g. max_epochs=20, regularization.dropout=0.3, plugins.NAME.key=1); "
        "repeatable; wins over sda.toml",
    )


def _rank() -> int:
    """This process's rank in a torchrun launch (0 without torchrun)."""
    return _launch_variable("RANK", 0)


def _world_size() -> int:
    """The processes of this torchrun launch (1 without torchrun)."""
    return _launch_variable("WORLD_SIZE", 1)


def _launch_variable(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _engine(args: argparse.Namespace) -> Engine:
    from sda_core.engine import Engine

    return Engine(disable=[*args.disable_before, *getattr(args, "disable_after", [])])


def _existing_folder(path: str, what: str = "folder") -> Path:
    folder = Path(path)
    if not folder.exists():
        raise UsageError(f"{what} '{path}' does not exist")
    if not folder.is_dir():
        holds = "the files of a training run" if what == "run folder" else "your audio files"
        raise UsageError(f"'{path}' is a file, not a folder; pass the folder that holds {holds}")
    return folder


def _with_warnings(action: Callable[[], Any], *, live: bool = True) -> tuple[Any, list[str]]:
    """Run ``action`` and return its result with the warnings it issued, as sentences.

    With ``live`` (every command but ``--json`` output), each warning is printed the moment it is
    issued, as a ``warning: ...`` line on stderr: above a live progress display (rich redirects
    stderr while one runs), and before an error that ends the command. Without ``live`` the
    warnings are only collected, for the JSON report, and printed if ``action`` raises, so that
    none is ever lost.
    """
    seen: list[str] = []

    def show(message: Warning | str, *_args: Any, **_kwargs: Any) -> None:
        text = str(message)
        if text not in seen:  # one report per sentence, however often it is issued
            seen.append(text)
            if live:
                _write_warning(text)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        try:
            result = action()
        except BaseException:
            if not live:
                for text in seen:
                    _write_warning(text)
            raise
    return result, seen


def _write_warning(text: str) -> None:
    # sys.stderr as it is now: rich's proxy while a live display runs, which prints above it
    sys.stderr.write(f"warning: {text}\n")
    sys.stderr.flush()


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
