"""Real, short trainings through the engine, read back with TensorBoard's own event reader."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import soundfile
from sda_tensorboard import TensorBoardLogger

from sda_core import hookimpl
from sda_core.errors import ConfigError, PluginError


def step_steps(events, tag="step/loss"):
    return [scalar.step for scalar in events.Scalars(tag)]


def test_a_training_writes_scalars_audio_images_and_text(sda_engine, data_dir, tmp_path, fast, tb_events):
    logger = TensorBoardLogger()
    engine = sda_engine(logger, reference=True)
    run_dir = tmp_path / "run"
    result = engine.train(data_dir, run_dir, fast)

    assert result.reason == "max_epochs" and result.epochs_completed == 2
    log_dir = run_dir / "tensorboard"
    assert list(log_dir.glob("events.out.tfevents.*")), "no event file under run_dir/tensorboard"
    assert logger.writer is None, "the writer is closed at the end of the run"
    events = tb_events(log_dir)
    tags = events.Tags()

    # one point per optimiser step, at the global step, for every step scalar
    steps = engine.recorder.events("step")
    assert step_steps(events) == [step.step for step in steps] == list(range(1, result.steps + 1))
    for component in steps[0].losses:
        assert step_steps(events, f"step_losses/{component}") == list(range(1, result.steps + 1))
    for tag in ("step/learning_rate", "step/items_per_second"):
        assert step_steps(events, tag) == list(range(1, result.steps + 1))
    assert events.Scalars("step/loss")[-1].value == pytest.approx(steps[-1].loss, rel=1e-6)
    assert events.Scalars("step/learning_rate")[0].value == pytest.approx(steps[0].learning_rate, rel=1e-6)

    # one point per epoch, at the epoch number
    epochs = engine.recorder.events("epoch")
    for tag in (
        "epoch/train_loss",
        "epoch/val_loss",
        "epoch/overfitting_gap",
        "epoch/learning_rate",
        "time/epoch_seconds",
        "time/train_seconds",
        "time/validation_seconds",
        "time/eta_seconds",
    ):
        assert step_steps(events, tag) == [1, 2], tag
    assert [s.value for s in events.Scalars("epoch/val_loss")] == pytest.approx([e.val_loss for e in epochs], rel=1e-6)
    assert [s.value for s in events.Scalars("epoch/overfitting_gap")] == pytest.approx(
        [e.overfitting_gap for e in epochs], rel=1e-5
    )
    assert any(tag.startswith("epoch_train_losses/") for tag in tags["scalars"])
    assert any(tag.startswith("epoch_val_losses/") for tag in tags["scalars"])

    # every preview file as audio and as a mel-spectrogram image, at the preview's epoch
    preview = engine.recorder.events("preview")[-1]
    for path, kind in zip(preview.files, preview.kinds):
        tag = f"{kind}/{Path(path).stem}"
        (audio,) = events.Audio(f"preview/{tag}")
        assert audio.step == preview.epoch and audio.sample_rate == 8000
        decoded, rate = soundfile.read(io.BytesIO(audio.encoded_audio_string))
        assert rate == 8000 and decoded.ndim == 1 and len(decoded) == soundfile.info(path).frames
        (image,) = events.Images(f"spectrogram/{tag}")
        assert image.step == preview.epoch and image.width > image.height > 0
    assert any(tag.startswith("preview/original/") for tag in tags["audio"])

    # the config as text and as hparams, the layout, and how the run ended
    config_text = events.Tensors("run/config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"max_epochs": 2' in config_text and '"sample_rate": 8000' in config_text
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert "custom_scalars__config__" in tags["tensors"]
    end_text = events.Tensors("run/end/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "max_epochs" in end_text and "best.pt" in end_text


def test_a_resumed_epoch_replaces_its_steps_instead_of_duplicating_them(
    sda_engine, data_dir, tmp_path, fast, tb_events
):
    run_dir = tmp_path / "run"
    first = sda_engine(TensorBoardLogger(), reference=True)

    def stop_in_epoch_two(event):
        if event.kind == "step" and event.epoch == 2:
            first.request_stop()  # after the first step of epoch 2: that epoch is not kept

    stopped = first.train(data_dir, run_dir, fast, callback=stop_in_epoch_two)
    assert stopped.reason == "stop_requested" and stopped.epochs_completed == 1
    logged_before = max(step.step for step in first.recorder.events("step"))
    assert logged_before > stopped.steps  # a step of epoch 2 was logged, then dropped by the engine

    second = sda_engine(TensorBoardLogger(), reference=True)
    resumed = second.train(data_dir, run_dir, fast, resume=True)
    assert resumed.epochs_completed == 2
    assert second.recorder.events("step")[0].step == stopped.steps + 1

    log_dir = run_dir / "tensorboard"
    assert len(list(log_dir.glob("events.out.tfevents.*"))) == 2  # one file per session
    everything = tb_events(log_dir, purge=False)
    assert len(step_steps(everything)) > resumed.steps  # the re-run step really was written twice ...
    events = tb_events(log_dir)
    assert step_steps(events) == list(range(1, resumed.steps + 1))  # ... and TensorBoard shows it once
    for tag in ("epoch/train_loss", "epoch/val_loss", "time/epoch_seconds"):
        assert step_steps(events, tag) == [1, 2]
    resumed_losses = {step.step: step.loss for step in second.recorder.events("step")}
    assert {s.step: s.value for s in events.Scalars("step/loss") if s.step in resumed_losses} == pytest.approx(
        resumed_losses, rel=1e-6
    )  # the values of the run that was kept


def test_bad_settings_stop_the_run_before_training(sda_engine, data_dir, tmp_path, fast):
    engine = sda_engine(TensorBoardLogger(), reference=True)
    fast["plugins"]["tensorboard"] = {"step": False}
    with pytest.raises(ConfigError, match="'step'.*did you mean 'steps'"):
        engine.train(data_dir, tmp_path / "run", fast)
    assert not engine.recorder.getcalls("sda_make_model")
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_settings_come_from_sda_toml_too(sda_engine, data_dir, tmp_path, fast):
    (data_dir / "sda.toml").write_text('[plugins.tensorboard]\naudio = "yes"\n')
    engine = sda_engine(TensorBoardLogger(), reference=True)
    with pytest.raises(ConfigError, match="plugins.tensorboard.audio"):
        engine.train(data_dir, tmp_path / "run", fast)


class FailsAtEpochEnd:
    """A consumer that raises (fatal under the kit's strict mode): the run ends with an error."""

    name = "fails"

    @hookimpl
    def sda_on_epoch(self, event):
        raise RuntimeError("boom")


def test_a_run_that_ends_in_an_error_still_leaves_a_readable_closed_log(
    sda_engine, data_dir, tmp_path, fast, tb_events
):
    logger = TensorBoardLogger()
    engine = sda_engine(logger, FailsAtEpochEnd(), reference=True)
    with pytest.raises(PluginError, match="boom"):
        engine.train(data_dir, tmp_path / "run", fast)
    (end,) = engine.recorder.events("train_end")
    assert end.reason.startswith("error:")
    assert logger.writer is None
    events = tb_events(tmp_path / "run" / "tensorboard")
    spe = engine.recorder.events("train_start")[0].steps_per_epoch
    assert step_steps(events) == list(range(1, spe + 1))  # buffered steps were written at the end
    end_text = events.Tensors("run/end/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "error: PluginError" in end_text
