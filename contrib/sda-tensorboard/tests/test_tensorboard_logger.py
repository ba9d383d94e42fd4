"""The logger driven with hand-made events: settings, previews, warnings, resume, cost."""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from sda_tensorboard import Settings, TensorBoardLogger, settings_from_config
from sda_tensorboard import logger as logger_module

from sda_core import Engine, TrainingConfig
from sda_core.config.events import (
    EpochMetrics,
    EvaluationEvent,
    OverfittingWarning,
    PreviewEvent,
    StepMetrics,
    TrainingCompleteEvent,
    TrainingStartEvent,
)
from sda_core.errors import ConfigError

COMPONENTS = {"loss": 1.5, "recon": 1.0, "kl": 0.5}


def start(logger, run_dir, settings=None, *, resumed=False, timestamp=None, **config):
    config = {"max_epochs": 3, "plugins": {"tensorboard": settings or {}}, **config}
    event = TrainingStartEvent(
        run_dir=run_dir,
        config=config,
        resumed=resumed,
        steps_per_epoch=2,
        timestamp=timestamp if timestamp is not None else time.time(),
    )
    logger.sda_on_train_start(event)


def step(number, spe=2, timestamp=None, loss=None):
    epoch = (number - 1) // spe + 1
    return StepMetrics(
        epoch=epoch,
        step=number,
        epoch_step=(number - 1) % spe + 1,
        steps_per_epoch=spe,
        loss=loss if loss is not None else 1.0 / number,
        losses=COMPONENTS,
        learning_rate=1e-3,
        items_per_second=50.0,
        timestamp=timestamp if timestamp is not None else time.time(),
    )


def epoch(number, spe=2, **fields):
    values = {
        "train_loss": 1.0,
        "val_loss": 1.1,
        "duration": 2.0,
        "train_duration": 1.5,
        "val_duration": 0.5,
        "eta_seconds": 10.0,
        "learning_rate": 1e-3,
        "train_losses": COMPONENTS,
        "val_losses": COMPONENTS,
    }
    values.update(fields)
    return EpochMetrics(epoch=number, step=number * spe, **values)


def end(reason="max_epochs", epochs=1):
    return TrainingCompleteEvent(reason=reason, epochs_completed=epochs, steps=epochs * 2)


def run_epochs(logger, first_step, last_epoch, spe=2, loss=None):
    for number in range(first_step, last_epoch * spe + 1):
        logger.sda_on_step(step(number, spe, loss=loss))
        if number % spe == 0:
            logger.sda_on_epoch(epoch(number // spe, spe))


def write_wav(path, data, rate=8000):
    soundfile.write(path, np.asarray(data, dtype=np.float32), rate, subtype="PCM_16")
    return str(path)


def steps_of(events, tag="step/loss"):
    return [scalar.step for scalar in events.Scalars(tag)]


def steps_written(events, tag="step/loss"):
    """The steps on disk so far: none while the writer thread has not flushed the tag yet."""
    return steps_of(events, tag) if tag in events.Tags()["scalars"] else []


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table, expected",
    [
        (None, Settings()),
        ({}, Settings()),
        ({"steps": False}, Settings(steps=False)),
        ({"audio": False, "log_dir": "tb"}, Settings(audio=False, log_dir="tb")),
    ],
)
def test_valid_settings(table, expected):
    assert settings_from_config({} if table is None else {"plugins": {"tensorboard": table}}) == expected
    assert settings_from_config(TrainingConfig(plugins={} if table is None else {"tensorboard": table})) == expected


@pytest.mark.parametrize(
    "table, field",
    [
        ({"stepz": True}, "stepz"),
        ({"steps": True, "images": False}, "images"),
        ({"steps": "yes"}, "plugins.tensorboard.steps"),
        ({"audio": 1}, "plugins.tensorboard.audio"),
        ({"log_dir": ""}, "plugins.tensorboard.log_dir"),
        ({"log_dir": 3}, "plugins.tensorboard.log_dir"),
        ("steps", "plugins.tensorboard"),
    ],
)
def test_invalid_settings_raise_config_error_naming_the_key(table, field):
    with pytest.raises(ConfigError) as caught:
        settings_from_config({"plugins": {"tensorboard": table}})
    assert caught.value.field == field
    assert field in str(caught.value)


def test_unknown_keys_list_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"unknown key 'audios'.*did you mean 'audio'.*audio, log_dir, steps"):
        settings_from_config({"plugins": {"tensorboard": {"audios": True}}})


def test_log_dir_is_relative_to_the_run_folder(tmp_path):
    assert Settings().resolve_log_dir(tmp_path) == tmp_path / "tensorboard"
    assert Settings(log_dir="tb/here").resolve_log_dir(tmp_path) == tmp_path / "tb" / "here"
    assert Settings(log_dir=str(tmp_path / "abs")).resolve_log_dir("elsewhere") == tmp_path / "abs"
    assert Settings(log_dir="~/x").resolve_log_dir(tmp_path) == Path.home() / "x"


def test_log_dir_override(tmp_path, tb_events):
    logger = TensorBoardLogger()
    start(logger, tmp_path / "run", {"log_dir": str(tmp_path / "shared" / "run1")})
    run_epochs(logger, 1, 1)
    logger.sda_on_train_end(end())
    assert not (tmp_path / "run" / "tensorboard").exists()
    assert steps_of(tb_events(tmp_path / "shared" / "run1")) == [1, 2]


def test_steps_false_logs_epochs_only(tmp_path, tb_events):
    logger = TensorBoardLogger()
    start(logger, tmp_path, {"steps": False})
    run_epochs(logger, 1, 2)
    logger.sda_on_train_end(end(epochs=2))
    scalars = tb_events(tmp_path / "tensorboard").Tags()["scalars"]
    assert not [tag for tag in scalars if tag.startswith("step")]
    assert "epoch/train_loss" in scalars


def test_bad_settings_at_a_start_veto_the_run(tmp_path):
    """A ConfigError in sda_on_train_start is a veto, not an isolated fault (strict or not)."""
    logger = TensorBoardLogger()
    engine = Engine([logger], load_entrypoints=False, strict=False, environ={})
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        engine.emit(TrainingStartEvent(run_dir=tmp_path, config={"plugins": {"tensorboard": {"colour": 1}}}))
    assert logger.writer is None and not (tmp_path / "tensorboard").exists()
    assert not engine.host.consumer_failures


def test_the_settings_check_vetoes_a_bad_table():
    logger = TensorBoardLogger()
    assert logger.sda_check_config(TrainingConfig(plugins={"tensorboard": {"steps": False}})) is None
    assert logger.sda_check_config(TrainingConfig()) is None
    with pytest.raises(ConfigError, match=r"unknown key 'nope' in the \[plugins.tensorboard\] table"):
        logger.sda_check_config(TrainingConfig(plugins={"tensorboard": {"nope": 1}}))


# -- what gets written ---------------------------------------------------------------------


def test_the_end_of_run_evaluation_becomes_scalars_at_the_last_epoch(tmp_path, tb_events):
    logger = TensorBoardLogger()
    start(logger, tmp_path)
    run_epochs(logger, 1, 3)
    logger.sda_on_evaluation(
        EvaluationEvent(
            run_dir=str(tmp_path),
            epoch=2,
            count=32,
            resemblance=0.5,
            nn_accuracy=0.75,
            copying=1.5,
            diversity=0.25,
            validation_nn_accuracy=1.0,
            reconstruction=4.0,
            metrics={"fad": 3.0},
        )
    )
    logger.sda_on_train_end(end(epochs=3))
    events = tb_events(tmp_path / "tensorboard")
    found = {
        tag: [(scalar.step, scalar.value) for scalar in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if tag.startswith("evaluation/")
    }
    assert found == {
        "evaluation/resemblance": [(3, 0.5)],
        "evaluation/nn_accuracy": [(3, 0.75)],
        "evaluation/copying": [(3, 1.5)],
        "evaluation/diversity": [(3, 0.25)],
        "evaluation/validation_nn_accuracy": [(3, 1.0)],
        "evaluation/reconstruction": [(3, 4.0)],
        "evaluation/plugins/fad": [(3, 3.0)],
    }


def test_overfitting_warnings_become_text(tmp_path, tb_events):
    logger = TensorBoardLogger()
    start(logger, tmp_path)
    logger.sda_on_overfitting(
        OverfittingWarning(
            epoch=4,
            gap=0.35,
            threshold=0.2,
            consecutive_epochs=2,
            train_loss=1.0,
            val_loss=1.35,
            message="Stop here or add more files.",
        )
    )
    logger.sda_on_train_end(end())
    (text,) = tb_events(tmp_path / "tensorboard").Tensors("overfitting/text_summary")
    content = text.tensor_proto.string_val[0].decode()
    assert text.step == 4
    assert "35%" in content and "20%" in content and "2 epoch(s)" in content and "add more files" in content


def test_previews_are_mixed_to_mono_with_a_spectrogram_each(tmp_path, tb_events):
    folder = tmp_path / "previews" / "epoch_0002"
    folder.mkdir(parents=True)
    (tmp_path / "previews" / "references").mkdir()
    t = np.arange(8000) / 8000
    tone = 0.8 * np.sin(2 * np.pi * 440 * t)
    stereo = write_wav(folder / "sample_01.wav", np.stack([tone, np.zeros_like(tone)], axis=1))
    mono = write_wav(folder / "reconstruction_01.wav", tone[:4000])
    write_wav(tmp_path / "previews" / "references" / "original_01.wav", tone)
    logger = TensorBoardLogger()
    start(logger, tmp_path)
    logger.sda_on_preview(
        PreviewEvent(
            epoch=2, directory=folder, files=(stereo, mono), kinds=("sample", "reconstruction"), sample_rate=8000
        )
    )
    logger.sda_on_preview(PreviewEvent(epoch=4, directory=folder, files=(stereo,), kinds=("sample",), sample_rate=8000))
    logger.sda_on_train_end(end())
    events = tb_events(tmp_path / "tensorboard")
    assert sorted(events.Tags()["audio"]) == [
        "preview/original/original_01",
        "preview/reconstruction/reconstruction_01",
        "preview/sample/sample_01",
    ]
    assert sorted(events.Tags()["images"]) == [
        tag.replace("preview/", "spectrogram/", 1) for tag in sorted(events.Tags()["audio"])
    ]
    assert [audio.step for audio in events.Audio("preview/sample/sample_01")] == [2, 4]
    assert len(events.Audio("preview/original/original_01")) == 1  # the originals once per session
    decoded, rate = soundfile.read(io.BytesIO(events.Audio("preview/sample/sample_01")[0].encoded_audio_string))
    assert rate == 8000 and decoded.ndim == 1 and len(decoded) == 8000
    assert np.abs(decoded).max() == pytest.approx(0.4, abs=0.01)  # (left + right) / 2
    image = events.Images("spectrogram/sample/sample_01")[0]
    assert image.width >= 384 and image.height == 64 * 3


def test_audio_false_skips_previews(tmp_path, tb_events):
    path = write_wav(tmp_path / "sample_01.wav", np.zeros(800))
    logger = TensorBoardLogger()
    start(logger, tmp_path, {"audio": False})
    logger.sda_on_preview(PreviewEvent(epoch=2, directory=tmp_path, files=(path,), kinds=("sample",)))
    logger.sda_on_train_end(end())
    tags = tb_events(tmp_path / "tensorboard").Tags()
    assert tags["audio"] == [] and tags["images"] == []


def test_an_unreadable_preview_is_skipped_with_a_warning(tmp_path, tb_events):
    good = write_wav(tmp_path / "sample_02.wav", 0.1 * np.ones(800))
    bad = tmp_path / "sample_01.wav"
    bad.write_bytes(b"not audio")
    logger = TensorBoardLogger()
    start(logger, tmp_path)
    with pytest.warns(RuntimeWarning, match="cannot read preview"):
        logger.sda_on_preview(
            PreviewEvent(epoch=2, directory=tmp_path, files=(str(bad), good), kinds=("sample", "sample"))
        )
    logger.sda_on_train_end(end())
    assert tb_events(tmp_path / "tensorboard").Tags()["audio"] == ["preview/sample/sample_02"]


def test_events_outside_a_run_are_ignored(tmp_path):
    logger = TensorBoardLogger()
    logger.sda_on_step(step(1))
    logger.sda_on_epoch(epoch(1))
    logger.sda_on_overfitting(OverfittingWarning(epoch=1, gap=0.5, threshold=0.2))
    logger.sda_on_train_end(end())
    assert logger.writer is None


def test_steps_are_buffered_and_written_every_few_seconds(tmp_path, tb_events):
    logger = TensorBoardLogger()
    began = time.time()
    start(logger, tmp_path, timestamp=began)
    for number in range(1, 4):
        logger.sda_on_step(step(number, spe=100, timestamp=began + number * 0.01))
    assert len(logger._pending) == 3  # nothing written yet
    logger.sda_on_step(step(4, spe=100, timestamp=began + logger_module.DRAIN_SECONDS + 1))
    assert logger._pending == []
    for number in range(5, 5 + logger_module.MAX_PENDING):
        logger.sda_on_step(step(number, spe=10**4, timestamp=began + logger_module.DRAIN_SECONDS + 2))
    assert logger._pending == []  # a full buffer is written at once
    logger.writer.flush()
    # on disk while the run goes on: within the writer thread's flush interval, with a wide margin
    # because a loaded CI machine can starve that thread for seconds
    expected = list(range(1, 5 + logger_module.MAX_PENDING))
    deadline = time.monotonic() + logger_module.FLUSH_SECONDS + 30
    while steps_written(tb_events(tmp_path / "tensorboard")) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert steps_of(tb_events(tmp_path / "tensorboard")) == expected
    assert logger.writer is not None
    logger.sda_on_train_end(end())


def test_one_instance_logs_runs_one_after_the_other(tmp_path, tb_events):
    logger = TensorBoardLogger()
    start(logger, tmp_path / "a")
    run_epochs(logger, 1, 1)
    start(logger, tmp_path / "b")  # the first run never ended: its writer is closed now
    run_epochs(logger, 1, 2)
    logger.sda_on_train_end(end(epochs=2))
    assert steps_of(tb_events(tmp_path / "a" / "tensorboard")) == [1, 2]
    assert steps_of(tb_events(tmp_path / "b" / "tensorboard")) == [1, 2, 3, 4]


# -- restarts ------------------------------------------------------------------------------


def test_a_fresh_run_hides_what_an_earlier_run_left_in_the_folder(tmp_path, tb_events):
    old = TensorBoardLogger()
    start(old, tmp_path)
    run_epochs(old, 1, 3, loss=9.0)
    old.sda_on_train_end(end(epochs=3))
    new = TensorBoardLogger()
    start(new, tmp_path)
    run_epochs(new, 1, 1, loss=1.0)
    new.sda_on_train_end(end())
    events = tb_events(tmp_path / "tensorboard")
    assert steps_of(events) == [1, 2] and {s.value for s in events.Scalars("step/loss")} == {1.0}
    assert steps_of(events, "epoch/train_loss") == [1]


def test_a_resume_purges_from_its_first_step(tmp_path, tb_events):
    first = TensorBoardLogger()
    start(first, tmp_path)
    run_epochs(first, 1, 1, loss=5.0)
    for number in (3, 4):  # epoch 2 ran, but its checkpoint was never written
        first.sda_on_step(step(number, loss=5.0))
    first.sda_on_train_end(end(reason="error: KeyboardInterrupt: ", epochs=1))

    second = TensorBoardLogger()
    start(second, tmp_path, resumed=True)
    assert second.writer is None  # opened at the first step, which says where to purge from
    run_epochs(second, 3, 3, loss=2.0)
    second.sda_on_train_end(end(epochs=3))

    events = tb_events(tmp_path / "tensorboard")
    assert steps_of(events) == [1, 2, 3, 4, 5, 6]
    assert [s.value for s in events.Scalars("step/loss")] == [5.0, 5.0, 2.0, 2.0, 2.0, 2.0]
    assert steps_of(events, "epoch/train_loss") == [1, 2, 3]
    assert [t.step for t in events.Tensors("run/config/text_summary")] == [0, 3]


def test_a_resume_with_nothing_left_to_run_still_records_its_end(tmp_path, tb_events):
    logger = TensorBoardLogger()
    start(logger, tmp_path, resumed=True)
    logger.sda_on_train_end(end(epochs=3))
    texts = tb_events(tmp_path / "tensorboard").Tensors("run/end/text_summary")
    assert [text.step for text in texts] == [3]


def test_hparams_are_flat_scalars():
    flat = logger_module._flat_hparams(
        {"a": 1, "b": {"c": 0.5, "d": None, "e": [1, 2]}, "f": True, "g": float("inf"), "h": "x"}
    )
    assert flat == {"a": 1, "b.c": 0.5, "b.d": "none", "b.e": "[1, 2]", "f": True, "g": "inf", "h": "x"}


# -- cost ----------------------------------------------------------------------------------


def test_a_step_costs_microseconds(tmp_path):
    """The buffered path of sda_on_step; batch writes are amortised (see benchmarks/step_cost.py)."""
    logger = TensorBoardLogger()
    began = time.time()
    start(logger, tmp_path, timestamp=began)
    events = [step(number, spe=10**6, timestamp=began) for number in range(1, 401)]
    clock = time.perf_counter
    costs = []
    for event in events:
        before = clock()
        logger.sda_on_step(event)
        costs.append(clock() - before)
    logger.sda_on_train_end(end())
    assert statistics.median(costs) < 50e-6, f"median {statistics.median(costs) * 1e6:.1f} us"
