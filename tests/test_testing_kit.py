"""The pytest kit plugin authors use (sda_core.testing, loaded through the pytest11 entry point)."""

from __future__ import annotations

import soundfile as sf

from sda_core import StepMetrics, TrainingConfig, hookimpl
from sda_core.testing import make_engine


class Answering:
    name = "answering"

    @hookimpl
    def sda_make_model(self, config):
        return "a model"

    @hookimpl
    def sda_on_step(self, event):
        pass


def test_the_kit_is_a_registered_pytest_plugin(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("sda")


def test_an_engine_with_exactly_the_given_plugins(sda_engine):
    engine = sda_engine(Answering())
    names = [info.name for info in engine.plugin_infos()]
    assert names == ["answering"]
    assert engine.make_model(TrainingConfig()) == "a model"
    call = engine.recorder.getcall("sda_make_model")
    assert call.result == "a model" and isinstance(call.config, TrainingConfig)


def test_the_recorder_sees_events_in_order(sda_engine):
    engine = sda_engine(Answering())
    for step in (1, 2):
        engine.emit(StepMetrics(epoch=1, step=step, epoch_step=step, steps_per_epoch=2, loss=1.0))
    assert [event.step for event in engine.recorder.events("step")] == [1, 2]
    assert len(engine.recorder.getcalls("sda_on_step sda_on_epoch")) == 2


def test_reference_plugins_on_request(sda_engine):
    engine = sda_engine(reference=True)
    names = {info.name for info in engine.plugin_infos()}
    assert {"adaptive_presets", "chunk_dataset", "file_split", "mel_vae", "augmentations"} <= names
    assert "progress" not in names


def test_audio_folders_of_any_shape(sda_audio_folder):
    folder = sda_audio_folder(
        count=4, durations=[0.3, 1.5], sample_rates=[8000, 44100], channels=[1, 2], formats=["wav", "flac"]
    )
    infos = [sf.info(path) for path in sorted(folder.iterdir())]
    assert [(i.samplerate, i.channels, i.format) for i in infos] == [
        (8000, 1, "WAV"),
        (44100, 2, "FLAC"),
        (8000, 1, "WAV"),
        (44100, 2, "FLAC"),
    ]
    assert abs(infos[1].duration - 1.5) < 1e-3


def test_training_through_the_kit(sda_engine, sda_audio_folder, tmp_path):
    engine = sda_engine(reference=True)
    engine.train(
        sda_audio_folder(sample_rates=[8000]),
        tmp_path / "run",
        {"max_epochs": 2, "sample_rate": 8000, "batch_size": 4, "samples_per_epoch": 8, "num_workers": 0},
    )
    assert len(engine.recorder.events("epoch")) == 2
    assert engine.recorder.getcall("sda_split_files").result is not None


def test_make_engine_is_usable_without_pytest_fixtures():
    engine = make_engine(Answering(), strict=False)
    assert engine.recorder.calls == []
