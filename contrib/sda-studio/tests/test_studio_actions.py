"""What the page does, through the Studio object it wires its buttons to (no browser): real scans,
real training runs in the background thread, real generation, and a sentence for every bad input."""

from __future__ import annotations

import os
import time

import pytest
from sda_studio import views
from sda_studio.root import StudioError, StudioRoot
from sda_studio.studio import MODES, Studio
from studio_helpers import studio_settings

from sda_core import ConfigError, Engine, RunLock
from sda_core.errors import SdaError


@pytest.fixture
def studio(studio_root):
    made = Studio(StudioRoot(studio_root), engine_factory=lambda: Engine(disable=["progress"]))
    yield made
    made.jobs.stop_all()


def wait_for(job, timeout=120.0):
    job.thread.join(timeout)
    assert not job.alive, "the training thread did not end"
    return job


def test_scan_reports_files_skipped_files_and_the_config(studio):
    report, config = studio.scan("sounds", "max_epochs=7\n# a comment\n")
    assert "6 files used, 1 skipped" in report
    assert "sound_000.wav" in report and "notes.txt" in report and "not an audio format" in report
    assert config["max_epochs"] == 7 and "preset" in config


@pytest.mark.parametrize(
    ("overrides", "error", "words"),
    [
        ("max_epochs=banana", ConfigError, "max_epochs"),
        ("max_epoch=3", ConfigError, "max_epochs"),  # the typo's suggestion
        ("just words", StudioError, "is not key=value"),
    ],
)
def test_an_invalid_override_is_a_sentence(studio, overrides, error, words):
    with pytest.raises(error) as raised:
        studio.scan("sounds", overrides)
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_bad_folders_are_sentences(studio):
    with pytest.raises(StudioError, match="holds no usable audio .*readme.txt"):
        studio.scan("empty")
    with pytest.raises(StudioError, match="does not exist"):
        studio.scan("nowhere")
    with pytest.raises(StudioError, match="not an sda run folder"):
        studio.open_run("sounds")
    with pytest.raises(StudioError, match="not an sda run folder"):
        studio.generate("sounds")


def test_generating_from_a_run_without_checkpoints_is_a_sentence(studio, studio_root):
    (studio_root / "runs" / "fresh" / "checkpoints").mkdir(parents=True)
    with pytest.raises(StudioError, match="has no checkpoint yet"):
        studio.generate("runs/fresh")


def test_train_watch_generate_and_list(studio, studio_root):
    job = studio.start("sounds", "", studio_settings())
    assert job.run_dir == studio_root.resolve() / "runs" / "sounds"
    wait_for(job)
    assert job.status == "finished" and job.error is None
    assert job.start_event is not None and job.last_epoch.epoch == 2 and job.end.reason == "max_epochs"
    seen = studio.watch("runs/sounds")
    assert "runs/sounds: finished" in seen["status"] and "2 epochs saved" in seen["status"]
    assert seen["info"].checkpoints
    curve = studio.loss_image(seen["info"])
    assert curve == job.run_dir / "loss.png"  # sda-plots drew it during the run: nothing to draw
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    paths, note = studio.generate("runs/sounds", count=2, seconds=0.5, seed=3, temperature=0.5, trim=False)
    assert [path.suffix for path in paths] == [".wav", ".wav"]
    assert all(studio.root.path in path.parents for path in paths) and "seed 3" in note
    assert "runs/sounds" not in str(paths[0].parent)  # outside the run: no lock needed while it trains
    like, _ = studio.generate("runs/sounds", count=2, mode=MODES[1], like="sounds/sound_002.wav")
    assert len(like) == 2
    morph, note = studio.generate(
        "runs/sounds", mode=MODES[2], morph=("sounds/sound_000.wav", "sounds/sound_001.wav"), steps=3
    )
    assert len(morph) == 4 and "joined" in note
    with pytest.raises(StudioError, match="is not an audio file"):
        studio.generate("runs/sounds", mode=MODES[1], like="sounds/notes.txt")
    with pytest.raises(StudioError, match="count must be from 1 to 64"):
        studio.generate("runs/sounds", count=0)

    rows = views.runs_table(studio.runs(), studio.root.relative)
    assert rows[0][:3] == ["runs/sounds", "trained", 2]
    assert studio.current_run() == "runs/sounds" and studio.data_folder_of("runs/sounds") == "sounds"
    later = Studio(studio.root)  # a studio started again: the run's own dataset.json says
    assert later.current_run() == "runs/sounds" and later.data_folder_of("runs/sounds") == "sounds"

    with pytest.raises(StudioError, match="already holds a run; press Resume"):
        studio.start("sounds", "runs/sounds", studio_settings())
    resumed = wait_for(studio.start("sounds", "runs/sounds", "max_epochs=3", resume=True))
    assert resumed.status == "finished" and resumed.last_epoch.epoch == 3
    replaced = wait_for(studio.start("sounds", "runs/sounds", studio_settings(max_epochs=1), overwrite=True))
    assert replaced.status == "finished" and replaced.last_epoch.epoch == 1


def test_a_second_start_is_refused_and_stop_saves(studio, studio_root):
    job = studio.start("sounds", "runs/long", studio_settings(max_epochs=400))
    deadline = time.monotonic() + 120
    while job.last_epoch is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.status == "training"
    with pytest.raises(StudioError, match="'long' is already training \\(started from this studio\\)"):
        studio.start("sounds", "runs/long", studio_settings(max_epochs=400), overwrite=True)
    assert "runs/long: training" in studio.watch("runs/long")["status"]
    studio.stop("runs/long")
    wait_for(job)
    assert job.status == "stopped" and job.end.reason == "stop_requested"
    assert (studio_root / "runs" / "long" / "checkpoints" / "last.pt").exists()
    with pytest.raises(StudioError, match="nothing to stop"):
        studio.stop("runs/long")


def test_a_folder_another_writer_holds_is_refused_with_who_holds_it(studio, studio_root):
    with RunLock(studio_root / "runs" / "busy", action="training"):
        with pytest.raises(StudioError) as refused:
            studio.start("sounds", "runs/busy", studio_settings())
        assert f"'busy' is already training in process {os.getpid()}" in str(refused.value)
        assert "runs/busy: training in another process" in studio.watch("runs/busy")["status"]
    job = wait_for(studio.start("sounds", "runs/busy", studio_settings(max_epochs=1)))
    assert job.status == "finished"


def test_without_sda_plots_in_the_run_the_studio_draws_the_pictures_itself(studio_root):
    studio = Studio(StudioRoot(studio_root), engine_factory=lambda: Engine(disable=["progress", "plots"]))
    job = wait_for(studio.start("sounds", "runs/plain", studio_settings(preview_interval=1)))
    info = studio.watch("runs/plain")["info"]
    assert not (job.run_dir / "loss.png").exists()
    curve = studio.loss_image(info)
    assert curve == studio_root.resolve() / ".sda-studio" / "curves" / "runs--plain.png"
    drawn = curve.stat().st_mtime_ns
    assert studio.loss_image(info) == curve and curve.stat().st_mtime_ns == drawn  # drawn once
    images = studio.spectrograms(info)
    assert sorted(images) == [1, 2] and all(image.read_bytes()[:4] == b"\x89PNG" for image in images.values())
    assert "/gradio_api/file=" in views.curve_html(curve) and "sda-spectrogram" in views.previews_html(
        info.previews, info.references, images
    )


def test_resuming_a_folder_without_an_epoch_is_refused(studio):
    with pytest.raises(StudioError, match="no saved epoch to resume"):
        studio.start("sounds", "runs/nothing", "", resume=True)


def test_errors_are_sda_errors(studio):
    """Everything a page shows as a message is an SdaError (a traceback would be a bug)."""
    for action in (lambda: studio.scan("empty"), lambda: studio.generate("nowhere"), lambda: studio.stop("runs/x")):
        with pytest.raises(SdaError):
            action()
