"""Run the benchmark suite: ``python -m benchmarks [--quick] [--only NAME ...]``.

Prints one table row per target (what was measured, the measured ratio, the target, PASS/FAIL)
and exits 1 when any target is missed. Informational rows have no target and never fail.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time

from rich.console import Console
from rich.table import Table

from benchmarks.timing import Result

#: benchmark name -> module; each module has ``run(quick: bool) -> list[Result]``.
BENCHMARKS = {
    "augment": "benchmarks.bench_augment",
    "dispatch": "benchmarks.bench_dispatch",
    "loader": "benchmarks.bench_loader",
    "quality": "benchmarks.bench_quality",
    "read": "benchmarks.bench_read",
    "resample": "benchmarks.bench_resample",
    "scaling": "benchmarks.bench_scaling",
    "scan": "benchmarks.bench_scan",
    "studio": "benchmarks.bench_studio",
    "training": "benchmarks.bench_training",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Ratio benchmarks of the sda engine against the bare libraries it wraps.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (noisier, a few seconds)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        choices=sorted(BENCHMARKS),
        help=f"run only this benchmark (repeatable): {', '.join(sorted(BENCHMARKS))}",
    )
    return parser.parse_args(argv)


def _versions() -> str:
    import pluggy
    import soundfile

    return (
        f"Python {platform.python_version()}, pluggy {pluggy.__version__}, "
        f"libsndfile {soundfile.__libsndfile_version__}, {platform.machine()}"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    console = Console()
    if not console.is_terminal:  # piped or logged (make bench in CI): do not wrap at 80 columns
        console = Console(width=180)
    names = list(dict.fromkeys(args.only or BENCHMARKS))
    results: list[Result] = []
    errors: list[tuple[str, str]] = []
    started = time.perf_counter()
    for name in names:
        with console.status(f"running {name}{' (quick)' if args.quick else ''} ..."):
            try:
                module = importlib.import_module(BENCHMARKS[name])
                results.extend(module.run(quick=args.quick))
            except Exception as error:  # one broken benchmark still lets the others report
                errors.append((name, f"{type(error).__name__}: {error}"))
    elapsed = time.perf_counter() - started

    table = Table(title=f"sda benchmarks{' (quick)' if args.quick else ''}", title_justify="left")
    table.add_column("benchmark")
    table.add_column("ratio", justify="right")
    table.add_column("target", justify="right")
    table.add_column("result", justify="center")
    table.add_column("medians: measured, baseline", overflow="fold")
    styles = {"PASS": "bold green", "FAIL": "bold red", "info": "dim", "ERROR": "bold red"}
    for result in results:
        target = "-" if result.target is None else f"<= {result.target:.2f}"
        verdict = result.verdict
        table.add_row(result.name, f"{result.ratio:.2f}", target, f"[{styles[verdict]}]{verdict}[/]", result.detail)
    for name, message in errors:
        table.add_row(name, "-", "-", f"[{styles['ERROR']}]ERROR[/]", message)
    console.print(table)
    console.print(
        f"[dim]{_versions()}; ratio = median(measured) / median(baseline), "
        f"variants interleaved in one process; {elapsed:.1f} s[/]"
    )

    failed = [result.name for result in results if not result.passed]
    if failed or errors:
        console.print(f"[bold red]{len(failed) + len(errors)} benchmark(s) failed[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
