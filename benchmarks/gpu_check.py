"""Does training on CUDA run, how fast, and does it learn what the CPU learns?

    .venv/bin/python -m benchmarks.gpu_check [--epochs 6] [--seed 0] [--rtol 0.05] [--mixed-rtol 0.10]
    make gpu-check

On a machine without CUDA it prints one line saying so and exits 0. On a CUDA machine it
synthesises the built-in demo dataset (``sda_core.data.demo``) and trains it through the Engine,
with the same settings and seed, on:

* the CPU in fp32 (the reference), and again with the next seed (how much a different seed alone
  moves the losses);
* CUDA with ``precision = "fp32"``;
* CUDA with ``precision = "auto"``: bf16 autocast where the GPU supports it, else fp16;
* CUDA with ``precision = "fp16"``: fp16 autocast with the GradScaler (when auto was bf16).

The CUDA runs take the trainer's own CUDA path: loaders with pinned memory, ``non_blocking``
copies, autocast and the gradient scaler. For each run it prints the training steps per second
(from the step timestamps of epochs 2 on, so start-up and the first epoch's warm-up are outside
it) and the ratio to the CPU, the share of step time spent waiting for data, the peak GPU memory
(``torch.cuda.max_memory_allocated``), and each epoch's training and validation loss. The CUDA
fp32 losses *match* the CPU's when every epoch's loss is within ``--rtol`` (5%) of the CPU run's
or, if larger, within twice the difference the next seed makes on the CPU: the GPU draws its
random numbers (the VAE's sampling noise) from CUDA's generator, so it cannot repeat the CPU run
exactly; its difference should look like a seed's, not like a bug's. The mixed-precision runs must
have finite losses within ``--mixed-rtol`` (10%) of the CPU's (or twice the seed difference).
It also checks that the training loader pins its batches for CUDA. Exit status: 0 when every
check holds (or there is no CUDA), 1 otherwise.

Not part of ``make bench`` (``python -m benchmarks``): it trains five short runs, a few minutes.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

#: Plugins that write files of their own every epoch: not part of the training path measured here.
OPTIONAL_WRITERS = ("progress", "tensorboard", "plots", "metrics_log")


@dataclass(frozen=True)
class LossComparison:
    """Per-epoch relative differences of a run's losses from a reference run's, and the verdict."""

    differences: tuple[float, ...]
    tolerances: tuple[float, ...]
    finite: bool

    @property
    def matches(self) -> bool:
        """Every loss finite, and every epoch's difference within its tolerance."""
        return self.finite and all(d <= t for d, t in zip(self.differences, self.tolerances))

    @property
    def worst(self) -> float:
        """The largest relative difference (inf when a loss is not finite)."""
        return max(self.differences, default=0.0) if self.finite else math.inf


def relative_differences(reference: Sequence[float], other: Sequence[float]) -> list[float]:
    """``|other - reference| / |reference|`` epoch by epoch (the absolute difference where the
    reference is 0; inf where either is not finite)."""
    if len(reference) != len(other):
        raise ValueError(f"{len(other)} epochs against {len(reference)}: the runs must have the same epochs")
    differences = []
    for ref, value in zip(reference, other):
        if not (math.isfinite(ref) and math.isfinite(value)):
            differences.append(math.inf)
        else:
            differences.append(abs(value - ref) / abs(ref) if ref != 0 else abs(value - ref))
    return differences


def compare_losses(
    reference: Sequence[float],
    other: Sequence[float],
    *,
    rtol: float,
    seed_spread: Sequence[float] | None = None,
    spread_factor: float = 2.0,
) -> LossComparison:
    """Compare per-epoch losses: each epoch within ``max(rtol, spread_factor * seed_spread[epoch])``.

    ``seed_spread`` is the relative difference another seed makes in each epoch (from
    :func:`relative_differences` of two reference runs); without it the tolerance is ``rtol``.
    """
    if rtol < 0 or spread_factor < 0:
        raise ValueError("rtol and spread_factor must be >= 0")
    differences = relative_differences(reference, other)
    if seed_spread is None:
        tolerances = [rtol] * len(differences)
    else:
        if len(seed_spread) != len(differences):
            raise ValueError("seed_spread needs one value per epoch")
        tolerances = [max(rtol, spread_factor * s) if math.isfinite(s) else rtol for s in seed_spread]
    finite = all(math.isfinite(value) for value in other)
    return LossComparison(tuple(differences), tuple(tolerances), finite)


@dataclass
class RunFigures:
    """What one training run measured."""

    label: str
    device: str
    precision: str
    steps_per_second: float = math.nan
    data_wait_share: float = math.nan
    peak_memory_bytes: int | None = None
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    error: str | None = None


def step_rate(steps: Sequence[Any], first_epoch: int = 2) -> tuple[float, float]:
    """Steps per second and data-wait share of the steps of ``first_epoch`` on.

    Within each epoch the rate comes from the steps' timestamps (so validation, checkpoints and
    previews between epochs are outside it); the data-wait share is the summed ``data_wait``
    over the summed ``duration`` of the steps.
    """
    by_epoch: dict[int, list[Any]] = {}
    for step in steps:
        if step.epoch >= first_epoch:
            by_epoch.setdefault(step.epoch, []).append(step)
    intervals = sum(len(epoch) - 1 for epoch in by_epoch.values())
    span = sum(epoch[-1].timestamp - epoch[0].timestamp for epoch in by_epoch.values())
    if intervals < 1 or span <= 0:
        raise ValueError(f"too few steps from epoch {first_epoch} on to time (train more epochs)")
    measured = [step for epoch in by_epoch.values() for step in epoch]
    busy = sum(step.duration for step in measured)
    return intervals / span, (sum(step.data_wait for step in measured) / busy if busy > 0 else math.nan)


def train_and_measure(
    data_dir: Path,
    out_dir: Path,
    *,
    label: str,
    device: str,
    precision: str,
    epochs: int,
    seed: int,
    settings: dict[str, Any] | None = None,
) -> RunFigures:
    """One fresh run of ``epochs`` epochs through the Engine on ``device``; its figures.

    A run that fails (a non-finite loss, out of memory) is reported in ``error``, not raised.
    """
    from sda_core import Engine

    figures = RunFigures(label=label, device=device, precision=precision)
    steps: list[Any] = []
    epoch_events: list[Any] = []

    def record(event: Any) -> None:
        if event.kind == "step":
            steps.append(event)
        elif event.kind == "epoch":
            epoch_events.append(event)

    overrides = {
        "max_epochs": epochs,
        "seed": seed,
        "precision": precision,
        "early_stopping": False,
        "evaluation_sounds": 0,
        "preview_interval": 10**6,
        **(settings or {}),
    }
    cuda = device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        Engine(disable=list(OPTIONAL_WRITERS)).train(data_dir, out_dir, overrides, record, device=device)
    except Exception as error:  # reported as this run's failure; the other runs still report
        figures.error = f"{type(error).__name__}: {error}"
    if cuda:
        figures.peak_memory_bytes = torch.cuda.max_memory_allocated()
    figures.train_losses = [event.train_loss for event in epoch_events]
    figures.val_losses = [math.nan if event.val_loss is None else event.val_loss for event in epoch_events]
    if figures.error is None:
        try:
            figures.steps_per_second, figures.data_wait_share = step_rate(steps)
        except ValueError as error:
            figures.error = str(error)
    return figures


def batches_are_pinned(data_dir: Path, device: str, seed: int, settings: dict[str, Any] | None = None) -> bool:
    """Whether the training loader the trainer builds for ``device`` pins the batches it yields."""
    from sda_core import Engine
    from sda_core.data.loaders import create_data_loaders

    engine = Engine(disable=list(OPTIONAL_WRITERS))
    summary = engine.scan(data_dir)
    config = engine.resolve_config(summary, {"seed": seed, **(settings or {})})
    train_loader, _validation, _split = create_data_loaders(summary, config, engine, device=torch.device(device))
    train_loader.sampler.set_epoch(1)
    batch = next(iter(train_loader))
    return bool(train_loader.pin_memory and batch.is_pinned())


def no_cuda_message() -> str | None:
    """The one line to print when this machine has no usable CUDA device, else None."""
    if torch.cuda.is_available():
        return None
    build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
    return f"gpu_check: no CUDA device on this machine (torch {torch.__version__}, {build}); nothing to measure."


def _gib(count: int | None) -> str:
    return "-" if count is None else f"{count / 1024**3:.2f} GiB"


def _losses(values: Sequence[float]) -> str:
    return " ".join(f"{value:.4f}" for value in values) or "-"


def _verdict(name: str, comparison: LossComparison, limit: str) -> str:
    worst = "not finite" if not comparison.finite else f"worst {comparison.worst:.1%}"
    result = "MATCH" if comparison.matches else "MISMATCH"
    tolerances = ", ".join(f"{t:.1%}" for t in comparison.tolerances)
    return f"  {name}: {result} ({worst}; per-epoch tolerance {tolerances}: {limit})"


def report(
    runs: Sequence[RunFigures],
    reference: RunFigures,
    seeded: RunFigures | None,
    *,
    rtol: float,
    mixed_rtol: float,
    pinned: bool | None,
) -> tuple[list[str], bool]:
    """The printed lines and whether every check holds (``runs`` are the CUDA runs)."""
    lines = [
        f"{'run':<22} {'steps/s':>8} {'vs CPU':>7} {'data wait':>9} {'peak GPU':>10}  losses per epoch (train / val)"
    ]
    ok = reference.error is None
    for run in [reference, *([seeded] if seeded else []), *runs]:
        if run.error:
            lines.append(f"{run.label:<22} FAILED: {run.error}")
            continue
        ratio = run.steps_per_second / reference.steps_per_second if reference.error is None else math.nan
        lines.append(
            f"{run.label:<22} {run.steps_per_second:>8.2f} {ratio:>6.2f}x {run.data_wait_share:>9.1%} "
            f"{_gib(run.peak_memory_bytes):>10}  {_losses(run.train_losses)} / {_losses(run.val_losses)}"
        )
    if reference.error is not None:
        return [*lines, "the CPU reference run failed: nothing to compare"], False
    spread_train = spread_val = None
    if seeded is not None and seeded.error is None:
        spread_train = relative_differences(reference.train_losses, seeded.train_losses)
        spread_val = relative_differences(reference.val_losses, seeded.val_losses)
        lines.append(
            f"another seed on the CPU moves the losses by {max(spread_train):.1%} (train) and "
            f"{max(spread_val):.1%} (validation) at most"
        )
    for run in runs:
        if run.error:
            ok = False
            continue
        tolerance = rtol if run.precision == "fp32" else mixed_rtol
        limit = f"{tolerance:.0%}, or twice the seed's difference"
        lines.append(f"{run.label} against the CPU (fp32):")
        for name, ours, theirs, spread in (
            ("train loss", run.train_losses, reference.train_losses, spread_train),
            ("validation loss", run.val_losses, reference.val_losses, spread_val),
        ):
            comparison = compare_losses(theirs, ours, rtol=tolerance, seed_spread=spread)
            lines.append(_verdict(name, comparison, limit))
            ok = ok and comparison.matches
    if pinned is not None:
        lines.append(f"training batches pinned for CUDA: {'yes' if pinned else 'NO'}")
        ok = ok and pinned
    return lines, ok


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__.split("\n", 1)[0] if __doc__ else None
    )
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run (at least 2; default 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every run (the spread run: seed + 1)")
    parser.add_argument("--rtol", type=float, default=0.05, help="fp32 loss tolerance, relative (default 0.05)")
    parser.add_argument(
        "--mixed-rtol", type=float, default=0.10, help="bf16/fp16 loss tolerance, relative (default 0.10)"
    )
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (steps/s is measured from epoch 2 on)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    message = no_cuda_message()
    if message is not None:
        print(message)
        return 0
    from sda_core.data.demo import synthesize_demo_dataset
    from sda_core.data.loaders import default_num_workers

    bf16 = torch.cuda.is_bf16_supported()
    print(
        f"gpu_check: {torch.cuda.get_device_name()} (CUDA {torch.version.cuda}, torch {torch.__version__}); "
        f"bf16 {'supported' if bf16 else 'not supported'}; TF32 convolutions "
        f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'}, TF32 matmuls "
        f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}; {default_num_workers()} data worker(s); "
        f"the demo dataset, {args.epochs} epochs per run, seed {args.seed}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="sda-gpu-check-") as temp:
        root = Path(temp)
        data = root / "data"
        synthesize_demo_dataset(data)
        plan = [("cpu fp32", "cpu", "fp32", args.seed), ("cpu fp32 (next seed)", "cpu", "fp32", args.seed + 1)]
        plan += [
            ("cuda fp32", "cuda", "fp32", args.seed),
            (f"cuda auto ({'bf16' if bf16 else 'fp16'})", "cuda", "auto", args.seed),
        ]
        if bf16:
            plan.append(("cuda fp16 + GradScaler", "cuda", "fp16", args.seed))
        results = []
        for number, (label, device, precision, seed) in enumerate(plan):
            print(f"  training: {label} ...", flush=True)
            results.append(
                train_and_measure(
                    data,
                    root / f"run_{number}",
                    label=label,
                    device=device,
                    precision=precision,
                    epochs=args.epochs,
                    seed=seed,
                )
            )
        pinned = batches_are_pinned(data, "cuda", args.seed)
    lines, ok = report(results[2:], results[0], results[1], rtol=args.rtol, mixed_rtol=args.mixed_rtol, pinned=pinned)
    print("\n".join(lines))
    print("gpu_check: all checks hold" if ok else "gpu_check: a check FAILED (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
