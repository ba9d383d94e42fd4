"""Kill and resume: `sda train` killed with SIGKILL at random moments, resumed each time, loses nothing.

One module-scoped run does the work (bounded in time): a training subprocess is killed with
SIGKILL at least :data:`KILLS` times, at moments drawn from a seeded ``random.Random`` (during
start-up, or 0.3 to 2.5 s after the process has saved an epoch, which lands in steps, validation,
checkpoint writes and preview rendering alike), and resumed with ``--resume`` after each kill; a
last resume then runs to the end. The tests check what is left on disk.
"""

from __future__ import annotations

import importlib.util
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import bad_inputs
import pytest
from audio_factory import make_folder

from sda_core.training.checkpoints import load_checkpoint

KILLS = 10
SEED = 20240611
#: Epochs the killed runs aim at: more than they can reach (early stopping is off), so every kill
#: lands in a live run.
TARGET_EPOCHS = 400
#: A kill comes this long (seconds) after the moment chosen for it.
DELAY = (0.3, 2.5)
#: Share of kills aimed at start-up (scan, resume, first batches) rather than at training.
STARTUP_SHARE = 0.3
TIME_LIMIT = 150.0  # seconds for the whole loop; it takes about 60

METRICS_LOG = importlib.util.find_spec("sda_metrics_log") is not None

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


def start(data: Path, run: Path, resume: bool, epochs: int, cwd: Path) -> subprocess.Popen:
    where = ["--resume", str(run)] if resume else ["--out", str(run)]
    plugins = bad_inputs.reference_plugins("metrics_log") if METRICS_LOG else bad_inputs.reference_plugins()
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sda_core",
            "train",
            str(data),
            *where,
            *bad_inputs.fast_set(early_stopping="false"),
            "--max-epochs",
            str(epochs),
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=bad_inputs.sda_env(plugins),
    )


def saved_epoch(run: Path) -> int:
    """The epoch last.pt holds (0 when there is none yet); every checkpoint must always load."""
    for path in (run / "checkpoints").glob("*.pt"):
        load_checkpoint(path)
    last = run / "checkpoints" / "last.pt"
    return load_checkpoint(last)["epoch"] if last.exists() else 0


def mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    work = tmp_path_factory.mktemp("kill_resume")
    data = make_folder(work / "data", [0.6, 1.4, 2.2, 0.9, 1.8, 3.0], rates=(8000, 22050))
    run = work / "run"
    rng = random.Random(SEED)
    started = time.monotonic()
    log = SimpleNamespace(kills=0, resumes=0, starts=0, saved=[], moments=[], work=work, run=run, data=data)
    while log.kills < KILLS:
        assert time.monotonic() - started < TIME_LIMIT, f"only {log.kills} kills in {TIME_LIMIT:.0f} s"
        before = saved_epoch(run)
        resume = before > 0
        history_before = mtime(run / "history.json")
        process = start(data, run, resume, TARGET_EPOCHS, work)
        log.starts += 1
        log.resumes += resume
        if rng.random() < STARTUP_SHARE:
            moment = "start-up"
        else:  # wait for this process to save an epoch (history.json is written after last.pt)
            moment = "training"
            deadline = time.monotonic() + 90
            while mtime(run / "history.json") == history_before:
                if process.poll() is not None:
                    raise AssertionError(f"training exited early: {process.communicate()[1]}")
                assert time.monotonic() < deadline, "no epoch was saved in 90 s"
                time.sleep(0.05)
        time.sleep(rng.uniform(*DELAY))
        assert process.poll() is None, f"training ended on its own: {process.communicate()[1]}"
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        assert process.returncode == -signal.SIGKILL
        log.kills += 1
        after = saved_epoch(run)  # loads, whatever the moment of the kill
        assert after >= before, f"kill {log.kills} ({moment}) lost epochs {after + 1}-{before}"
        log.saved.append(after)
        log.moments.append(moment)
    final = saved_epoch(run) + 3
    process = start(data, run, resume=True, epochs=final, cwd=work)
    stdout, stderr = process.communicate(timeout=300)
    log.resumes += 1
    log.final = SimpleNamespace(returncode=process.returncode, stdout=stdout, stderr=stderr, epochs=final)
    log.seconds = time.monotonic() - started
    return log


def test_a_run_killed_ten_times_at_random_moments_finishes_with_contiguous_history(killed_and_resumed, record_property):
    log = killed_and_resumed
    for key in ("kills", "resumes", "starts", "saved", "moments", "seconds"):
        record_property(key, getattr(log, key))
    print(
        f"\n{log.kills} kills ({log.moments.count('start-up')} in start-up), {log.resumes} resumes, "
        f"saved epochs {log.saved}, {log.final.epochs} epochs in the end, {log.seconds:.0f} s"
    )
    assert log.kills >= KILLS and log.resumes >= KILLS
    assert log.final.returncode == 0, log.final.stderr
    assert f"max_epochs after epoch {log.final.epochs}" in log.final.stdout
    assert "training" in log.moments and "start-up" in log.moments
    assert log.saved == sorted(log.saved), "a kill took the saved epoch backwards"
    history = json.loads((log.run / "history.json").read_text())
    epochs = [epoch["epoch"] for epoch in history["epochs"]]
    assert epochs == list(range(1, log.final.epochs + 1))  # contiguous: no epoch lost, none twice
    steps = [step["step"] for step in history["steps"]]
    assert steps == list(range(1, len(steps) + 1))  # no duplicate step, no gap
    assert [epoch["step"] for epoch in history["epochs"]][-1] == steps[-1]
    per_epoch = {}
    for step in history["steps"]:
        per_epoch[step["epoch"]] = per_epoch.get(step["epoch"], 0) + 1
    assert set(per_epoch.values()) == {bad_inputs.FAST["samples_per_epoch"] // bad_inputs.FAST["batch_size"]}


def test_every_checkpoint_on_disk_loads_and_agrees_with_the_history(killed_and_resumed):
    log = killed_and_resumed
    checkpoints = sorted((log.run / "checkpoints").glob("*.pt"))
    assert [path.name for path in checkpoints] == ["best.pt", "last.pt"]
    states = {path.name: load_checkpoint(path) for path in checkpoints}
    history = json.loads((log.run / "history.json").read_text())
    assert states["last.pt"]["epoch"] == log.final.epochs
    assert states["last.pt"]["history"] == history
    assert states["best.pt"]["epoch"] == history_best(history)
    assert states["last.pt"]["step"] == history["steps"][-1]["step"]


def history_best(history: dict) -> int:
    """The epoch best.pt must hold: the lowest validation loss, or the latest validated epoch when
    the validation set has too few chunks to choose (docs/training.md)."""
    validated = [(epoch["val_loss"], epoch["epoch"]) for epoch in history["epochs"] if epoch["val_loss"] is not None]
    if history["validation_chunks"] < history["min_validation_chunks"]:
        return max(epoch for _loss, epoch in validated)
    return min(validated)[1]


def test_no_partial_or_temporary_file_is_left_behind(killed_and_resumed):
    log = killed_and_resumed
    leftovers = [path.name for path in log.run.rglob("*") if path.name.endswith(".tmp")]
    assert leftovers == []
    for name in ("config.json", "dataset.json", "history.json"):
        json.loads((log.run / name).read_text())


@pytest.mark.skipif(not METRICS_LOG, reason="the sda-metrics-log plugin (contrib/sda-metrics-log) is not installed")
def test_the_event_log_has_no_duplicates(killed_and_resumed):
    log = killed_and_resumed
    lines = [json.loads(line) for line in (log.run / "events.jsonl").read_text().splitlines() if line.strip()]
    for kind, key in (("step", "step"), ("epoch", "epoch"), ("preview", "epoch"), ("overfitting", "epoch")):
        values = [line[key] for line in lines if line["event"] == kind]
        assert len(values) == len(set(values)), f"duplicate {kind} events"
    steps = [line["step"] for line in lines if line["event"] == "step"]
    epochs = [line["epoch"] for line in lines if line["event"] == "epoch"]
    assert steps == sorted(steps) and epochs == sorted(epochs)
    assert epochs[-1] == log.final.epochs
