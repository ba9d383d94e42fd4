"""Determinism: the same seed gives the same split and the same first-epoch losses on the CPU,
whatever the number of DataLoader workers."""

from __future__ import annotations

import json
from pathlib import Path

import bad_inputs
import pytest
import torch
from audio_factory import make_folder

from sda_core.testing import make_engine

FAST = {**bad_inputs.FAST, "max_epochs": 1, "samples_per_epoch": 16}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(
        tmp_path_factory.mktemp("determinism") / "data",
        [0.6, 1.4, 2.2, 0.9, 1.8, 3.0, 2.5, 1.1],
        rates=(8000, 22050),
        channels=(1, 2),
    )


def first_epoch(data: Path, run: Path, **settings) -> dict:
    """Train one epoch on the CPU; the split, the untrained and step losses, the epoch losses."""
    events = []
    engine = make_engine(reference=True)
    result = engine.train(data, run, {**FAST, **settings}, callback=events.append, device="cpu")
    epoch = next(event for event in events if event.kind == "epoch")
    return {
        "split": json.loads((run / "dataset.json").read_text())["split"],
        "initial_val_loss": result.initial_val_loss,
        "step_losses": [event.losses for event in events if event.kind == "step"],
        "train_loss": epoch.train_loss,
        "val_loss": epoch.val_loss,
        "weights": {key: value.clone() for key, value in engine_model_state(run).items()},
    }


def engine_model_state(run: Path) -> dict[str, torch.Tensor]:
    from sda_core.training.checkpoints import load_checkpoint

    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def assert_same(a: dict, b: dict) -> None:
    assert a["split"] == b["split"]
    assert a["initial_val_loss"] == b["initial_val_loss"]
    assert a["step_losses"] == b["step_losses"]
    assert (a["train_loss"], a["val_loss"]) == (b["train_loss"], b["val_loss"])
    assert a["weights"].keys() == b["weights"].keys()
    for key in a["weights"]:
        assert torch.equal(a["weights"][key], b["weights"][key]), key


@pytest.fixture(scope="module")
def runs(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    work = tmp_path_factory.mktemp("determinism_runs")
    return {
        "workers 0": first_epoch(data, work / "a", num_workers=0, seed=7),
        "workers 0 again": first_epoch(data, work / "b", num_workers=0, seed=7),
        "workers 2": first_epoch(data, work / "c", num_workers=2, seed=7),
        "other seed": first_epoch(data, work / "d", num_workers=0, seed=8),
    }


def test_the_same_seed_gives_the_same_first_epoch(runs):
    assert len(runs["workers 0"]["step_losses"]) == FAST["samples_per_epoch"] // FAST["batch_size"]
    assert_same(runs["workers 0"], runs["workers 0 again"])


def test_the_number_of_workers_changes_nothing(runs):
    assert_same(runs["workers 0"], runs["workers 2"])


def test_another_seed_keeps_the_file_split_but_changes_the_training(runs):
    # the split has its own seed (split_seed, 42): changing the run's seed never moves a file
    assert runs["other seed"]["split"] == runs["workers 0"]["split"]
    assert runs["other seed"]["step_losses"] != runs["workers 0"]["step_losses"]
