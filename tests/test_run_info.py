"""Reading a run folder from outside the run (read_run, find_runs) and asking who holds its lock."""

from __future__ import annotations

import json
import os
import time

import pytest

from sda_core import Engine, RunDataError, RunLock
from sda_core.testing import fast_settings
from sda_core.training.run_folder import lock_holder, read_holder
from sda_core.training.run_info import NotARunError, find_runs, read_run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from sda_core.testing.audio import write_audio_folder

    base = tmp_path_factory.mktemp("run_info")
    data = write_audio_folder(base / "sounds", count=6, sample_rates=(8000,))
    run = base / "runs" / "sounds"
    Engine(disable=["progress"]).train(
        data, run, fast_settings(preview_interval=1, plugins={"previews": {"samples": 2}})
    )
    return run


def test_read_run_gathers_what_the_folder_holds(trained_run):
    info = read_run(trained_run)
    assert info.config["max_epochs"] == 2 and info.config["sample_rate"] == 8000
    assert info.last_epoch == 2 and [epoch.epoch for epoch in info.history.epochs] == [1, 2]
    assert info.best_epoch in (1, 2) and info.best_val_loss == min(e.val_loss for e in info.history.epochs)
    assert [preview.epoch for preview in info.previews] == [1, 2]
    first = info.previews[0]
    assert first.kinds.count("sample") == 2 and "reconstruction" in first.kinds
    assert all(path.suffix == ".wav" and path.parent == first.directory for path in first.files)
    assert info.references and all(path.name.startswith("original_") for path in info.references)
    assert set(info.checkpoints) == {"last", "best"}
    assert info.holder is None and not info.training
    assert info.evaluation is None  # evaluation_sounds=0 in the fast settings


def test_a_held_lock_is_reported_and_a_released_one_is_not(trained_run):
    assert lock_holder(trained_run) is None
    with RunLock(trained_run, action="training"):
        holder = lock_holder(trained_run)
        assert holder["pid"] == os.getpid() and holder["action"] == "training"
        assert read_run(trained_run).training
        assert read_run(trained_run, check_lock=False).holder is None
    assert lock_holder(trained_run) is None
    assert read_holder(trained_run) is None  # the record is cleared on release


def test_lock_holder_creates_nothing(tmp_path):
    missing = tmp_path / "not-yet"
    assert lock_holder(missing) is None
    assert not missing.exists()


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(NotARunError, match="holds no sda run"):
        read_run(tmp_path)
    with pytest.raises(NotARunError, match="is not a folder"):
        read_run(tmp_path / "missing")


def test_a_damaged_file_is_a_run_data_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "history.json").write_text("[1, 2")
    with pytest.raises(RunDataError, match="damaged .*history.json: not JSON"):
        read_run(tmp_path)
    (tmp_path / "history.json").write_text("[]")
    with pytest.raises(RunDataError, match="holds list, not an object"):
        read_run(tmp_path)


def test_find_runs_lists_runs_newest_first_without_following_links(tmp_path):
    for name in ("old", "new"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "config.json").write_text(json.dumps({"max_epochs": 1}))
        time.sleep(0.02)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    (outside / "elsewhere").mkdir(parents=True)
    (outside / "elsewhere" / "config.json").write_text("{}")
    (tmp_path / "link").symlink_to(outside, target_is_directory=True)
    assert find_runs(tmp_path) == [tmp_path / "runs" / "new", tmp_path / "runs" / "old"]
    assert find_runs(tmp_path, depth=1) == []
