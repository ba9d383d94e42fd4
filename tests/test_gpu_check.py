"""benchmarks/gpu_check.py: its answer without CUDA, its helpers, and one measured run on the CPU."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sda_core.config.events import StepMetrics
from sda_core.data.demo import synthesize_demo_dataset
from sda_core.testing import fast_settings

ROOT = Path(__file__).resolve().parents[1]
#: A small, fast run of the demo on the CPU.
SMALL = fast_settings(max_epochs=None, evaluation_sounds=None)  # the check sets the epochs itself


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gpu_check = load_gpu_check()


def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith("gpu_check: no CUDA device on this machine (torch ")
    assert "nothing to measure" in lines[0]


def test_on_cuda_it_trains_every_run_and_reports(monkeypatch: pytest.MonkeyPatch, capsys):
    """The orchestration on a (pretended) bf16 GPU: the runs planned, their figures reported, the
    exit status; each run's training is faked here (a real one is timed below)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "Pretend GPU")
    planned = []

    def fake_run(data_dir, out_dir, *, label, device, precision, epochs, seed, settings=None):
        planned.append((label, device, precision, epochs, seed))
        assert len(list(data_dir.glob("*.wav"))) == 12  # the demo dataset
        losses = [4.0 - epoch * (1.01 if seed == 8 else 1.0) for epoch in range(epochs)]
        if precision == "fp16":
            losses[-1] = 9.0  # far off
        rate = 10.0 if device == "cpu" else 40.0
        memory = None if device == "cpu" else 3 * 2**30
        return gpu_check.RunFigures(label, device, precision, rate, 0.01, memory, losses, [x + 0.1 for x in losses])

    monkeypatch.setattr(gpu_check, "train_and_measure", fake_run)
    monkeypatch.setattr(gpu_check, "batches_are_pinned", lambda data, device, seed: device == "cuda")
    assert gpu_check.main(["--epochs", "3", "--seed", "7"]) == 1
    assert planned == [
        ("cpu fp32", "cpu", "fp32", 3, 7),
        ("cpu fp32 (next seed)", "cpu", "fp32", 3, 8),
        ("cuda fp32", "cuda", "fp32", 3, 7),
        ("cuda auto (bf16)", "cuda", "auto", 3, 7),
        ("cuda fp16 + GradScaler", "cuda", "fp16", 3, 7),
    ]
    out = capsys.readouterr().out
    assert out.startswith("gpu_check: Pretend GPU (CUDA ")
    assert "cuda auto (bf16)          40.00   4.00x      1.0%   3.00 GiB" in out
    assert "cuda fp32 against the CPU (fp32):\n  train loss: MATCH" in out
    assert "cuda fp16 + GradScaler against the CPU (fp32):\n  train loss: MISMATCH" in out
    assert "training batches pinned for CUDA: yes" in out
    assert out.rstrip().endswith("gpu_check: a check FAILED (see above)")


def test_too_few_epochs_is_a_usage_error():
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main(["--epochs", "1"])
    assert stopped.value.code == 2


def test_relative_differences():
    assert gpu_check.relative_differences([2.0, 4.0], [2.2, 3.0]) == pytest.approx([0.1, 0.25])
    assert gpu_check.relative_differences([0.0], [0.5]) == [0.5]  # absolute where the reference is 0
    assert gpu_check.relative_differences([1.0, 1.0], [math.nan, math.inf]) == [math.inf, math.inf]
    with pytest.raises(ValueError, match="same epochs"):
        gpu_check.relative_differences([1.0, 2.0], [1.0])


def test_losses_match_within_the_tolerance_only():
    cpu = [3.0, 2.0, 1.5]
    close = gpu_check.compare_losses(cpu, [3.09, 1.95, 1.5], rtol=0.05)
    assert close.matches and close.worst == pytest.approx(0.03)
    far = gpu_check.compare_losses(cpu, [3.0, 2.0, 1.8], rtol=0.05)
    assert not far.matches and far.worst == pytest.approx(0.2)
    assert far.tolerances == (0.05, 0.05, 0.05)


def test_a_seed_spread_widens_the_tolerance_of_its_epoch():
    cpu = [3.0, 2.0, 1.5]
    gpu = [3.0, 2.0, 1.8]  # 20% off in the last epoch
    widened = gpu_check.compare_losses(cpu, gpu, rtol=0.05, seed_spread=[0.01, 0.02, 0.15])
    assert widened.tolerances == pytest.approx((0.05, 0.05, 0.30)) and widened.matches
    narrow = gpu_check.compare_losses(cpu, gpu, rtol=0.05, seed_spread=[0.01, 0.02, 0.05])
    assert not narrow.matches
    with pytest.raises(ValueError, match="one value per epoch"):
        gpu_check.compare_losses(cpu, gpu, rtol=0.05, seed_spread=[0.1])


def test_a_non_finite_loss_never_matches():
    comparison = gpu_check.compare_losses([1.0, 1.0], [1.0, math.nan], rtol=10.0)
    assert not comparison.finite and not comparison.matches and comparison.worst == math.inf


def step(epoch: int, number: int, timestamp: float, duration: float = 0.5, wait: float = 0.05) -> StepMetrics:
    return StepMetrics(
        epoch=epoch,
        step=number,
        epoch_step=1,
        steps_per_epoch=3,
        loss=1.0,
        duration=duration,
        data_wait=wait,
        timestamp=timestamp,
    )


def test_step_rate_times_epochs_2_on_within_each_epoch():
    steps = [step(1, 1, 0.0), step(1, 2, 10.0)]  # epoch 1: warm-up, left out
    steps += [step(2, 3, 100.0), step(2, 4, 100.5), step(2, 5, 101.0)]  # 2 intervals in 1 s
    steps += [step(3, 6, 200.0, wait=0.25), step(3, 7, 202.0, wait=0.25)]  # 1 interval in 2 s; the gap between is out
    rate, wait = gpu_check.step_rate(steps)
    assert rate == pytest.approx(3 / 3.0)
    assert wait == pytest.approx((3 * 0.05 + 2 * 0.25) / (5 * 0.5))
    with pytest.raises(ValueError, match="too few steps"):
        gpu_check.step_rate(steps[:2])


def test_the_report_flags_a_mismatch_a_failure_and_unpinned_batches():
    cpu = gpu_check.RunFigures("cpu fp32", "cpu", "fp32", 10.0, 0.02, None, [3.0, 2.0], [3.1, 2.1])
    seeded = gpu_check.RunFigures("cpu next seed", "cpu", "fp32", 10.0, 0.02, None, [3.03, 2.02], [3.1, 2.1])
    good = gpu_check.RunFigures("cuda fp32", "cuda", "fp32", 50.0, 0.01, 2**30, [3.06, 2.0], [3.1, 2.12])
    lines, ok = gpu_check.report([good], cpu, seeded, rtol=0.05, mixed_rtol=0.1, pinned=True)
    text = "\n".join(lines)
    assert ok, text
    assert "5.00x" in text and "1.00 GiB" in text and "MISMATCH" not in text
    assert "another seed on the CPU moves the losses by 1.0% (train)" in text

    off = gpu_check.RunFigures("cuda bf16", "cuda", "auto", 80.0, 0.01, 2**29, [3.0, 2.6], [3.1, 2.1])
    broken = gpu_check.RunFigures("cuda fp16", "cuda", "fp16", error="TrainingError: the loss became nan")
    lines, ok = gpu_check.report([good, off, broken], cpu, seeded, rtol=0.05, mixed_rtol=0.1, pinned=False)
    text = "\n".join(lines)
    assert not ok
    assert "cuda bf16 against the CPU (fp32):\n  train loss: MISMATCH (worst 30.0%" in text
    assert "cuda fp16              FAILED: TrainingError: the loss became nan" in text
    assert "training batches pinned for CUDA: NO" in text


def test_a_measured_run_on_the_cpu_repeats_exactly_with_its_seed(tmp_path: Path):
    data = tmp_path / "data"
    synthesize_demo_dataset(data, sample_rate=8000)
    runs = [
        gpu_check.train_and_measure(
            data, tmp_path / f"run{n}", label="cpu", device="cpu", precision="fp32", epochs=2, seed=3, settings=SMALL
        )
        for n in (1, 2)
    ]
    for run in runs:
        assert run.error is None
        assert run.steps_per_second > 0 and 0 <= run.data_wait_share < 1
        assert run.peak_memory_bytes is None
        assert len(run.train_losses) == len(run.val_losses) == 2
        assert all(math.isfinite(loss) for loss in run.train_losses + run.val_losses)
    comparison = gpu_check.compare_losses(runs[0].train_losses, runs[1].train_losses, rtol=0.0)
    assert comparison.matches and comparison.worst == 0.0  # the CPU is deterministic for a seed
    assert not gpu_check.batches_are_pinned(data, "cpu", seed=3, settings=SMALL)  # pinned for CUDA only


def test_a_run_that_fails_is_reported_not_raised(tmp_path: Path):
    data = tmp_path / "data"
    synthesize_demo_dataset(data, sample_rate=8000)
    run = gpu_check.train_and_measure(
        data, tmp_path / "run", label="cpu fp16", device="cpu", precision="fp16", epochs=2, seed=0, settings=SMALL
    )
    assert run.error is not None and "precision" in run.error and run.train_losses == []
