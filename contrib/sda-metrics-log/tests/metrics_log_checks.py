"""Checks shared by the sda-metrics-log tests."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from sda_core import MetricsHistory
from sda_core.testing import fast_settings

#: A real but tiny training run: the kit's fast settings, 2 optimiser steps per epoch on 8 kHz
#: audio, no worker processes.
FAST = fast_settings()
STEPS_PER_EPOCH = 2


def read_jsonl(path: Path) -> list[dict]:
    """Every line of an events file, each of which must be a complete JSON object."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"{path.name} does not end with a complete line"
    return [json.loads(line) for line in text.splitlines()]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a metrics file whose every line must be complete."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"{path.name} does not end with a complete line"
    reader = csv.DictReader(text.splitlines())
    rows = list(reader)
    assert all(None not in row and None not in row.values() for row in rows), "a row of the wrong width"
    return list(reader.fieldnames), rows


def saved_history(run_dir: Path) -> MetricsHistory:
    return MetricsHistory.from_dict(json.loads((run_dir / "history.json").read_text()))


def assert_one_run(
    run_dir: Path,
    epochs: int,
    steps_per_epoch: int = STEPS_PER_EPOCH,
    events_name: str = "events.jsonl",
    csv_name: str = "metrics.csv",
) -> list[dict]:
    """Both files hold epochs 1..``epochs`` and their steps exactly once, in order, and agree
    with the run's own history.json. Returns the events."""
    events = read_jsonl(run_dir / events_name)
    steps = [event["step"] for event in events if event["event"] == "step"]
    assert steps == list(range(1, epochs * steps_per_epoch + 1))
    assert [event["epoch"] for event in events if event["event"] == "epoch"] == list(range(1, epochs + 1))
    previews = [event["epoch"] for event in events if event["event"] == "preview"]
    assert not [epoch for epoch, count in Counter(previews).items() if count > 1]
    _, rows = read_csv(run_dir / csv_name)
    assert [int(row["epoch"]) for row in rows] == list(range(1, epochs + 1))
    history = saved_history(run_dir)
    assert [(int(r["epoch"]), int(r["step"]), float(r["train_loss"]), float(r["val_loss"])) for r in rows] == [
        (m.epoch, m.step, m.train_loss, m.val_loss) for m in history.epochs
    ]
    best = history.best_epoch
    assert [row["epoch"] for row in rows if row["is_best"] == "true"][-1] == str(best)
    return events
