"""Never lose a run: no silent overwrite, one writer per run folder, logs that stay valid.

The two ways users lost work (a second `sda train` on the same folder, two trainings at once) run
through the CLI in subprocesses; the lock is also exercised from two threads of one process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from audio_factory import make_folder

from sda_core import Engine, RunExistsError, RunFolderBusyError, RunLock
from sda_core.testing import fast_settings, set_options
from sda_core.training.run_folder import LOCK_FILENAME, prepare_run_folder, read_holder

START = "train_start"
FAST = fast_settings(samples_per_epoch=16, max_epochs=None)  # the kit's, four steps an epoch
FAST_SET = set_options(FAST)
METRICS_LOG = importlib.util.find_spec("sda_metrics_log") is not None

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "data", [0.6, 1.4, 2.2, 0.9, 1.8, 3.0], rates=(8000,))


def sda(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sda_core", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "SDA_DISABLE_PLUGINS": "progress"},
    )


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sda_core", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SDA_DISABLE_PLUGINS": "progress"},
    )


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (the lock file aside) with the hash of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != LOCK_FILENAME
    }


def wait_until(condition, process: subprocess.Popen | None = None, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited early: {process.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def one_sentence(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- scenario 1: the same command twice -----------------------------------------------------------


def test_a_second_fresh_run_is_refused_and_the_first_run_is_untouched(data: Path, tmp_path: Path):
    run = tmp_path / "runs" / "my_sounds"
    first = sda("train", str(data), "--out", str(run), "--max-epochs", "3", *FAST_SET, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = fingerprint(run)
    assert "checkpoints/best.pt" in before and any(name.startswith("previews/") for name in before)

    second = sda("train", str(data), "--out", str(run), "--max-epochs", "2", *FAST_SET, cwd=tmp_path)
    assert second.returncode == 2
    sentence = one_sentence(second.stderr)
    assert "already holds a run trained to epoch 3" in sentence and "best validation loss" in sentence
    for way in ("--resume", "--out NEW", "--overwrite"):
        assert way in sentence
    assert fingerprint(run) == before  # byte-identical


def test_the_default_run_folder_is_protected_too(data: Path, tmp_path: Path):
    first = sda("train", str(data), "--max-epochs", "1", *FAST_SET, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run = tmp_path / "runs" / "data"
    before = fingerprint(run)
    second = sda("train", str(data), "--max-epochs", "1", *FAST_SET, cwd=tmp_path)
    assert second.returncode == 2 and "already holds a run" in second.stderr
    assert fingerprint(run) == before


def test_overwrite_replaces_the_old_run_entirely(data: Path, tmp_path: Path):
    run = tmp_path / "run"
    assert sda("train", str(data), "--out", str(run), "--max-epochs", "4", *FAST_SET, cwd=tmp_path).returncode == 0
    old_previews = {path.name for path in (run / "previews").iterdir()}
    assert "epoch_0004" in old_previews
    (run / "notes-of-the-old-run.txt").write_text("belongs to the old run")

    result = sda("train", str(data), "--out", str(run), "--max-epochs", "2", "--overwrite", *FAST_SET, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "deleted the earlier run" in result.stderr
    assert {path.name for path in (run / "previews").iterdir()} - {"references"} == {"epoch_0002"}
    assert not (run / "notes-of-the-old-run.txt").exists()
    history = json.loads((run / "history.json").read_text())
    assert [epoch["epoch"] for epoch in history["epochs"]] == [1, 2]
    if METRICS_LOG:  # the new run's log starts empty: one start event, no old epochs
        events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
        assert [event["event"] for event in events].count(START) == 1
        assert max(event.get("epoch", 0) or 0 for event in events) <= 2


def test_resume_and_overwrite_exclude_each_other(data: Path, tmp_path: Path):
    result = sda("train", str(data), "--resume", str(tmp_path / "run"), "--overwrite", cwd=tmp_path)
    assert result.returncode == 2 and "--overwrite" in one_sentence(result.stderr)


def test_overwrite_never_deletes_the_data_or_a_folder_that_holds_no_run(data: Path, tmp_path: Path):
    inside = tmp_path / "project"
    inner_data = make_folder(inside / "data", [1.0, 1.5, 2.0], rates=(8000,))
    (inside / "config.json").write_text("{}")  # looks like a run
    result = sda("train", str(inner_data), "--out", str(inside), "--overwrite", *FAST_SET, cwd=tmp_path)
    assert result.returncode == 1 and "inside the run folder" in one_sentence(result.stderr)
    assert len(list(inner_data.iterdir())) == 3

    music = tmp_path / "music"
    music.mkdir()
    (music / "song.wav").write_bytes(b"precious")
    result = sda("train", str(data), "--out", str(music), "--overwrite", *FAST_SET, cwd=tmp_path)
    assert result.returncode == 2 and "holds no sda run" in one_sentence(result.stderr)
    assert (music / "song.wav").read_bytes() == b"precious"


def test_the_python_api_refuses_an_existing_run_the_same_way(data: Path, tmp_path: Path):
    run = tmp_path / "run"
    engine = Engine(disable=["progress"])
    engine.train(data, run, {**FAST, "max_epochs": 2})
    before = fingerprint(run)
    with pytest.raises(RunExistsError) as caught:
        engine.train(data, run, {**FAST, "max_epochs": 1})
    assert caught.value.last_epoch == 2 and caught.value.best_epoch in (1, 2)
    assert fingerprint(run) == before
    result = engine.train(data, run, {**FAST, "max_epochs": 1}, overwrite=True)
    assert result.epochs_completed == 1


def test_a_start_that_saved_no_epoch_is_replaced_with_a_warning(tmp_path: Path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    with RunLock(run), pytest.warns(UserWarning, match="saved no epoch"):
        assert sorted(prepare_run_folder(run)) == ["checkpoints", "config.json"]
    assert not run.exists() or list(run.iterdir()) == []


# -- scenario 2: two writers at once --------------------------------------------------------------


@posix_only  # stops the first run with SIGINT
def test_a_second_training_on_a_busy_folder_is_refused_naming_the_holder(data: Path, tmp_path: Path):
    run = tmp_path / "run"
    # far more epochs than the test needs and no early stop: the first run trains during every attempt
    first = start(
        "train",
        str(data),
        "--out",
        str(run),
        "--max-epochs",
        "400",
        "--set",
        "early_stopping=false",
        *FAST_SET,
        cwd=tmp_path,
    )
    try:
        wait_until(lambda: (run / "history.json").exists(), first)
        for args in (["--out", str(run)], ["--resume", str(run)], ["--out", str(run), "--overwrite"]):
            second = sda("train", str(data), *args, "--max-epochs", "2", *FAST_SET, cwd=tmp_path)
            sentence = one_sentence(second.stderr)
            assert second.returncode == 1, sentence
            assert f"pid {first.pid}" in sentence and "started" in sentence and "training" in sentence
        generate = sda("generate", str(run), "-n", "1", cwd=tmp_path)
        assert generate.returncode == 1 and f"pid {first.pid}" in one_sentence(generate.stderr)
        # writing elsewhere needs no lock: checkpoints are always whole
        elsewhere = sda("generate", str(run), "-n", "1", "--out", str(tmp_path / "elsewhere"), cwd=tmp_path)
        assert elsewhere.returncode == 0, elsewhere.stderr
        assert first.poll() is None, "the first run ended before every attempt was made"
    finally:
        first.send_signal(signal.SIGINT)  # a clean stop, with a checkpoint
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode in (0, 130), stderr
    history = json.loads((run / "history.json").read_text())
    epochs = [epoch["epoch"] for epoch in history["epochs"]]
    assert epochs == list(range(1, len(epochs) + 1)) and epochs  # one writer: every epoch once
    if METRICS_LOG:
        lines = (run / "events.jsonl").read_text().splitlines()
        assert all(json.loads(line) for line in lines)  # whole lines only, from one writer
        assert [json.loads(line)["event"] for line in lines].count(START) == 1


@posix_only
def test_the_lock_is_released_when_the_holder_is_killed(data: Path, tmp_path: Path):
    run = tmp_path / "run"
    first = start(
        "train",
        str(data),
        "--out",
        str(run),
        "--max-epochs",
        "50",
        "--set",
        "early_stopping=false",
        *FAST_SET,
        cwd=tmp_path,
    )
    wait_until(lambda: (run / "checkpoints" / "last.pt").exists(), first)
    assert read_holder(run)["pid"] == first.pid
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    resumed = sda("train", str(data), "--resume", str(run), "--max-epochs", "2", *FAST_SET, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr


def test_the_lock_is_held_across_a_resume(data: Path, tmp_path: Path):
    run = tmp_path / "run"
    no_early_stop = ["--set", "early_stopping=false"]
    assert (
        sda(
            "train", str(data), "--out", str(run), "--max-epochs", "1", *no_early_stop, *FAST_SET, cwd=tmp_path
        ).returncode
        == 0
    )
    resumed = start("train", str(data), "--resume", str(run), "--max-epochs", "8", cwd=tmp_path)
    try:
        wait_until(lambda: (read_holder(run) or {}).get("pid") == resumed.pid, resumed)
        with pytest.raises(RunFolderBusyError, match=f"pid {resumed.pid}.*resuming"):
            RunLock(run).acquire()
    finally:
        resumed.communicate(timeout=300)
    assert resumed.returncode == 0
    with RunLock(run):  # free again once the resumed run ended
        pass


def test_two_threads_of_one_process_cannot_train_one_folder(data: Path, tmp_path: Path):
    run = tmp_path / "run"
    engine_a, engine_b = Engine(disable=["progress"]), Engine(disable=["progress"])
    started = threading.Event()
    outcome: dict[str, object] = {}

    def on_event(event: object) -> None:
        started.set()

    def first() -> None:
        try:
            outcome["a"] = engine_a.train(
                data, run, {**FAST, "max_epochs": 40, "early_stopping": False}, callback=on_event
            )
        except BaseException as error:  # pragma: no cover - reported below
            outcome["a"] = error

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(120)
        with pytest.raises(RunFolderBusyError, match=f"pid {os.getpid()}"):
            engine_b.train(data, run, {**FAST, "max_epochs": 1}, overwrite=True)
        with pytest.raises(RunFolderBusyError):
            engine_b.train(data, run, {"max_epochs": 1}, resume=True)
    finally:
        engine_a.request_stop()
        thread.join(timeout=300)
    assert not isinstance(outcome["a"], BaseException), outcome["a"]
    assert (run / "checkpoints" / "last.pt").exists()


def test_a_lock_file_does_not_make_a_folder_hold_a_run(tmp_path: Path):
    folder = tmp_path / "run"
    lock = RunLock(folder).acquire()
    assert (folder / LOCK_FILENAME).exists() and read_holder(folder)["pid"] == os.getpid()
    assert prepare_run_folder(folder) == []
    lock.release()
    assert not folder.exists()  # the lock made the folder and nothing else was written


def test_run_files_are_readable_by_others_like_any_file_the_user_writes(tmp_path: Path):
    from sda_core import write_text_atomic

    path = write_text_atomic(tmp_path / "config.json", "{}")
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    path.chmod(0o600)  # a file the user made private stays private when replaced
    write_text_atomic(path, "{}\n")
    assert path.stat().st_mode & 0o777 == 0o600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
