"""Resuming: the files grow without duplicates, whatever happened to the run before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from metrics_log_checks import FAST, STEPS_PER_EPOCH, assert_one_run, read_csv, read_jsonl, saved_history
from sda_metrics_log import MetricsLog, repair_csv, repair_events
from sda_metrics_log.plugin import best_epochs

from sda_core import hookimpl


def kinds(events: list[dict]) -> list[str]:
    return [event["event"] for event in events]


def test_resuming_to_more_epochs_appends_without_duplicates(engine_with, data_dir, tmp_path):
    engine = engine_with(MetricsLog())  # one instance logs both invocations
    run_dir = tmp_path / "run"
    engine.train(data_dir, run_dir, FAST)
    events_before = (run_dir / "events.jsonl").read_bytes()
    csv_before = (run_dir / "metrics.csv").read_bytes()

    engine.train(data_dir, run_dir, {**FAST, "max_epochs": 4}, resume=True)
    events = assert_one_run(run_dir, epochs=4)
    assert (run_dir / "events.jsonl").read_bytes().startswith(events_before)  # appended, not rewritten
    assert (run_dir / "metrics.csv").read_bytes().startswith(csv_before)
    starts = [event for event in events if event["event"] == "train_start"]
    assert [(s["start_epoch"], s["resumed"]) for s in starts] == [(1, False), (3, True)]
    assert [e["epochs_completed"] for e in events if e["event"] == "train_end"] == [2, 4]
    _, rows = read_csv(run_dir / "metrics.csv")
    best = best_epochs(saved_history(run_dir).epochs)
    assert [row["is_best"] == "true" for row in rows] == [epoch in best for epoch in range(1, 5)]


def test_an_interrupted_epoch_is_logged_once_after_the_resume(engine_with, data_dir, tmp_path):
    class StopInEpochTwo:
        name = "stopper"

        def __init__(self):
            self.engine = None

        @hookimpl
        def sda_on_step(self, event):
            if event.epoch == 2 and event.epoch_step == 1:
                self.engine.request_stop()

    stopper = StopInEpochTwo()
    engine = engine_with(MetricsLog(), stopper)
    stopper.engine = engine
    run_dir = tmp_path / "run"
    result = engine.train(data_dir, run_dir, {**FAST, "max_epochs": 3})
    assert result.reason == "stop_requested" and result.epochs_completed == 1
    interrupted = read_jsonl(run_dir / "events.jsonl")
    assert [e["step"] for e in interrupted if e["event"] == "step"] == [1, 2, 3]  # the cut epoch's step too

    engine.unsubscribe("stopper")
    engine.train(data_dir, run_dir, {**FAST, "max_epochs": 3}, resume=True)
    events = assert_one_run(run_dir, epochs=3)
    assert [e["reason"] for e in events if e["event"] == "train_end"] == ["stop_requested", "max_epochs"]


def test_resuming_with_nothing_left_to_do_keeps_every_epoch(engine_with, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    engine_with(MetricsLog()).train(data_dir, run_dir, FAST)
    csv_before = (run_dir / "metrics.csv").read_bytes()
    engine_with(MetricsLog()).train(data_dir, run_dir, FAST, resume=True)  # start_epoch == max_epochs
    events = assert_one_run(run_dir, epochs=2)
    assert (run_dir / "metrics.csv").read_bytes() == csv_before
    assert kinds(events)[-2:] == ["train_start", "train_end"]


def test_torn_lines_are_dropped_and_a_torn_row_is_rebuilt(engine_with, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    engine_with(MetricsLog()).train(data_dir, run_dir, FAST)
    events_path, csv_path = run_dir / "events.jsonl", run_dir / "metrics.csv"
    row_two = csv_path.read_text().splitlines()[-1]
    # as if killed mid-write: the last line of each file is cut in the middle
    for path in (events_path, csv_path):
        data = path.read_bytes()
        last_start = data.rstrip(b"\n").rfind(b"\n") + 1
        path.write_bytes(data[: last_start + (len(data) - last_start) // 2])
    assert not events_path.read_text().endswith("\n")

    engine_with(MetricsLog()).train(data_dir, run_dir, {**FAST, "max_epochs": 3}, resume=True)
    assert_one_run(run_dir, epochs=3)
    assert csv_path.read_text().splitlines()[2] == row_two  # epoch 2 rebuilt from the history, as it was


def test_a_run_killed_mid_epoch_resumes_without_duplicates_or_broken_lines(data_dir, engine_with, tmp_path):
    """A real SIGKILL in epoch 3, after the kernel got half of a line of each file."""
    run_dir = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from sda_core import hookimpl
        from sda_core.testing import make_engine
        from sda_metrics_log import MetricsLog

        class Killer:
            name = "killer"

            @hookimpl
            def sda_on_step(self, event):
                if event.epoch == 3 and event.epoch_step == 2:
                    with open(os.path.join(sys.argv[2], "events.jsonl"), "a") as handle:
                        handle.write('{{"event": "step", "epoch": 3, "st')
                    with open(os.path.join(sys.argv[2], "metrics.csv"), "a") as handle:
                        handle.write("3,6,0.41")
                    os.kill(os.getpid(), signal.SIGKILL)

        engine = make_engine(Killer(), MetricsLog(), reference=True, disable=("progress", "previews"))
        engine.train(sys.argv[1], sys.argv[2], {json.dumps({**FAST, "max_epochs": 4})})
    """)
    killed = subprocess.run(
        [sys.executable, "-c", script, str(data_dir), str(run_dir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (run_dir / "events.jsonl").read_text().endswith("\n")
    before = read_jsonl_lenient(run_dir / "events.jsonl")
    assert [e["epoch"] for e in before if e["event"] == "epoch"] == [1, 2]

    engine_with(MetricsLog()).train(data_dir, run_dir, {**FAST, "max_epochs": 4}, resume=True)
    events = assert_one_run(run_dir, epochs=4)
    assert [(e["start_epoch"], e["resumed"]) for e in events if e["event"] == "train_start"] == [(1, False), (3, True)]
    assert kinds(events).count("train_end") == 1  # the killed invocation never ended


def test_installed_in_the_middle_of_a_run_it_rebuilds_the_earlier_rows(engine_with, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    engine_with().train(data_dir, run_dir, FAST)  # without the plugin
    engine_with(MetricsLog()).train(data_dir, run_dir, {**FAST, "max_epochs": 3}, resume=True)
    _, rows = read_csv(run_dir / "metrics.csv")
    history = saved_history(run_dir)
    assert [(int(r["epoch"]), float(r["train_loss"])) for r in rows] == [
        (m.epoch, m.train_loss) for m in history.epochs
    ]
    events = read_jsonl(run_dir / "events.jsonl")
    assert [e["epoch"] for e in events if e["event"] == "step"] == [3] * STEPS_PER_EPOCH


# -- the repair functions on their own ----------------------------------------------------


def _lines(*events: dict) -> str:
    return "".join(json.dumps(event) + "\n" for event in events)


def read_jsonl_lenient(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_repair_events_drops_later_epochs_and_torn_lines_and_keeps_invocations(tmp_path):
    path = tmp_path / "events.jsonl"
    kept = [
        {"event": "train_start", "start_epoch": 1},
        {"event": "step", "epoch": 1, "step": 1},
        {"event": "epoch", "epoch": 1},
        {"event": "preview", "epoch": 1},
        {"event": "train_end", "epochs_completed": 1, "reason": "interrupted"},
    ]
    dropped = [
        {"event": "step", "epoch": 2, "step": 2},
        {"event": "overfitting", "epoch": 2},
        {"event": "epoch", "epoch": 3},
    ]
    path.write_text(_lines(*kept[:3]) + "not json\n" + _lines(*dropped, *kept[3:]) + '{"event": "st')
    assert repair_events(path, cutoff=2) == 5
    assert path.read_text() == _lines(*kept)
    inode = path.stat().st_ino
    assert repair_events(path, cutoff=2) == 0
    assert path.stat().st_ino == inode  # nothing to drop: not rewritten
    assert repair_events(tmp_path / "missing.jsonl", cutoff=1) == 0


def test_repair_csv_keeps_the_header_and_earlier_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss\n1,2,0.5\n2,4,0.4\n2,4,0.4\n3,6,0.3\n4,8\n5,10,0.1")
    columns, epochs = repair_csv(path, cutoff=3)
    assert columns == ["epoch", "step", "train_loss"] and epochs == {1, 2}
    assert path.read_text() == "epoch,step,train_loss\n1,2,0.5\n2,4,0.4\n"
    path.write_text("epo")  # a torn header: nothing usable, start over
    assert repair_csv(path, cutoff=3) == (None, set()) and path.read_text() == ""
    assert repair_csv(tmp_path / "missing.csv", cutoff=1) == (None, set())


def test_a_failed_rewrite_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    original = _lines({"event": "epoch", "epoch": 1}, {"event": "epoch", "epoch": 2})
    path.write_text(original)

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        repair_events(path, cutoff=2)
    assert path.read_text() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"]  # no temporary file left
