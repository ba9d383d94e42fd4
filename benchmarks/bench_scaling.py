"""Scaling of distributed training: steps per second with N processes (torchrun) over one.

    .venv/bin/python -m benchmarks --only scaling        # CPU: 1 process against 2, gloo
    .venv/bin/python -m benchmarks.bench_scaling --cuda  # GPUs: 1 against every GPU of the machine, NCCL

Each measurement is a real ``sda train`` (``python -m sda_core train``) in a subprocess, one
process alone and N processes under ``torchrun --nproc_per_node N``, on the same synthesised
folder with the same settings and the same global batch: ``batch_size`` is each process's
batch under torchrun, so one process trains ``batch_size = B`` and N processes ``batch_size =
B / N`` each, N x B / N = B chunks a step, with the same steps per epoch; one thread per process
(``OMP_NUM_THREADS=1``) and no DataLoader workers on the CPU. The rate is read from the step
timestamps of epoch 2 in ``history.json``, so start-up, the first epoch's warm-up, validation and
checkpoints are outside it; samples per second are steps per second x B. Speed-up = rate(N) /
rate(1) (the same for steps and samples); efficiency = speed-up / N (1.0 is perfect scaling).
Runs alternate (1, N, 1, N ...) and the medians are compared.

With the same global batch, each process computes 1/N of a step, and the gradients are averaged
over all processes after every step: on small models and batches the fixed cost of that exchange
(and of DDP's bookkeeping) is a large part of a step, so efficiency well below 1 is expected
there; it rises with the work per step (a larger model, longer chunks, a larger batch).

The row is informational (no target): a CPU machine with two cores shared by other work cannot
show what a cluster would. ``--cuda`` without CUDA prints one line and exits 0; with one GPU it
measures the single-process CUDA rate and says that scaling needs two GPUs or more.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.timing import Result

NAME = "scaling"
BATCH = 16
STEPS_PER_EPOCH = 12
ROOT = Path(__file__).resolve().parents[1]


def _settings(device: str, workers: int | None, batch_size: int, global_batch: int) -> list[str]:
    settings = {
        "max_epochs": 2,
        "batch_size": batch_size,
        "samples_per_epoch": global_batch * STEPS_PER_EPOCH,
        "sample_rate": 16000,
        "evaluation_sounds": 0,
        "preview_interval": 100,
        "early_stopping": False,
        "device": device,
    }
    if workers is not None:
        settings["num_workers"] = workers
    options = []
    for key, value in settings.items():
        options += ["--set", f"{key}={json.dumps(value)}"]
    return options


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _steps_per_second(run: Path) -> float:
    """Optimiser steps per second in epoch 2, from the step timestamps of the run's history."""
    steps = [step for step in json.loads((run / "history.json").read_text())["steps"] if step["epoch"] == 2]
    return (len(steps) - 1) / (steps[-1]["timestamp"] - steps[0]["timestamp"])


def global_batch(processes: int) -> int:
    """The global batch compared for ``processes``: ``BATCH``, rounded down to a multiple of it."""
    return processes * max(1, BATCH // processes)


def measure(
    data: Path, out: Path, processes: int, batch: int, *, device: str = "cpu", workers: int | None = 0
) -> float:
    """Steps per second of one ``sda train`` run with ``processes`` processes (1: no torchrun),
    each training ``batch / processes`` chunks a step: a global batch of ``batch``."""
    if batch % processes:
        raise ValueError(f"a global batch of {batch} cannot be shared evenly by {processes} processes")
    launcher = [sys.executable]
    if processes > 1:
        launcher += [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    settings = _settings(device, workers, batch // processes, batch)
    command = [*launcher, "-m", "sda_core", "train", str(data), "--out", str(out), *settings]
    command += ["--disable-plugin", "progress"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return _steps_per_second(out)


def _corpus(folder: Path) -> Path:
    from sda_core.testing.audio import write_audio_folder

    return write_audio_folder(folder, count=16, durations=(2.0, 3.5, 2.5, 4.0), sample_rates=(16000,), seed=3)


def compare(processes: int, repeats: int, *, device: str = "cpu", workers: int | None = 0) -> tuple[float, float]:
    """Median steps/s with one process and with ``processes``, runs alternating."""
    single, several = [], []
    with tempfile.TemporaryDirectory(prefix="sda-bench-scaling-") as temp:
        data = _corpus(Path(temp) / "data")
        for repetition in range(repeats):
            batch = global_batch(processes)
            single.append(measure(data, Path(temp) / f"one_{repetition}", 1, batch, device=device, workers=workers))
            several.append(
                measure(data, Path(temp) / f"n_{repetition}", processes, batch, device=device, workers=workers)
            )
    return statistics.median(single), statistics.median(several)


def _row(processes: int, single: float, several: float, where: str, repeats: int) -> Result:
    speedup, batch = several / single, global_batch(processes)
    return Result(
        f"scaling: steps/s with {processes} processes over 1, same global batch ({where})",
        speedup,
        None,
        f"{processes} processes x batch_size {batch // processes}: {several:.2f} steps/s, "
        f"{several * batch:.1f} samples/s; 1 process x batch_size {batch}: {single:.2f} steps/s, "
        f"{single * batch:.1f} samples/s; speed-up {speedup:.2f}x, efficiency {speedup / processes:.0%} "
        f"(global batch {batch}, 1 thread per process, n={repeats})",
    )


def run(quick: bool = False) -> list[Result]:
    """The CPU row of ``python -m benchmarks``: 2 processes on gloo against one."""
    repeats = 1 if quick else 3
    single, several = compare(2, repeats)
    return [_row(2, single, several, "CPU, gloo", repeats)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--cuda", action="store_true", help="measure on the GPUs of this machine (NCCL)")
    parser.add_argument("--processes", type=int, default=2, metavar="N", help="processes on the CPU (default 2)")
    parser.add_argument("--repeats", type=int, default=3, metavar="K", help="runs of each (default 3)")
    args = parser.parse_args(argv)
    if args.cuda:
        import torch

        if not torch.cuda.is_available():
            print(f"bench_scaling: no CUDA device on this machine (torch {torch.__version__}); nothing to measure.")
            return 0
        gpus = torch.cuda.device_count()
        if gpus < 2:
            with tempfile.TemporaryDirectory(prefix="sda-bench-scaling-") as temp:
                data = _corpus(Path(temp) / "data")
                rate = measure(data, Path(temp) / "one", 1, BATCH, device="cuda", workers=None)
            print(
                f"bench_scaling: 1 GPU ({torch.cuda.get_device_name(0)}): {rate:.2f} steps/s in one process; "
                "scaling needs two GPUs or more (NCCL takes one GPU per process)"
            )
            return 0
        single, several = compare(gpus, args.repeats, device="cuda", workers=None)
        result = _row(gpus, single, several, f"CUDA, NCCL, {torch.cuda.get_device_name(0)}", args.repeats)
    else:
        single, several = compare(args.processes, args.repeats)
        result = _row(args.processes, single, several, "CPU, gloo", args.repeats)
    print(f"{result.name}: {result.ratio:.2f} ({result.detail})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
