"""sda-plots in real runs (through the testing kit) and through its installed entry point."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import matplotlib.image
import pytest
from sda_plots import LOSS_FILENAME, SPECTROGRAM_FILENAME, Plots
from sda_plots.loss import loss_figure

from sda_core import Engine
from sda_core.config.history import MetricsHistory
from sda_core.errors import ConfigError
from sda_core.testing import fast_settings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST = fast_settings(plugins={"previews": {"samples": 2}})


def assert_png(path: Path, min_width: int = 200, min_height: int = 150) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.shape[1] >= min_width and image.shape[0] >= min_height, image.shape


def test_training_writes_loss_plot_and_spectrograms(sda_engine, sda_audio_folder, tmp_path):
    plots = Plots()
    engine = sda_engine(plots, reference=True)
    run = tmp_path / "run"
    engine.train(sda_audio_folder(), run, FAST)

    assert_png(run / LOSS_FILENAME, 800, 450)
    assert plots.drawn_epochs == (1, 2)
    assert len(plots.loss_seconds) == 2  # refreshed after each epoch
    previews = engine.recorder.events("preview")
    assert previews, "the reference previews plugin wrote no preview"
    for event in previews:
        assert_png(Path(event.directory) / SPECTROGRAM_FILENAME)
    assert len(plots.spectrogram_seconds) == len(previews)
    assert not list(run.glob(".*.tmp")) and not engine.host.consumer_failures


def test_resume_draws_the_whole_history(sda_engine, sda_audio_folder, tmp_path):
    data, run = sda_audio_folder(), tmp_path / "run"
    sda_engine(Plots(), reference=True).train(data, run, FAST)

    plots = Plots()  # a new engine and plugin instance, as after a restart
    sda_engine(plots, reference=True).train(data, run, {**FAST, "max_epochs": 3}, resume=True)
    assert plots.drawn_epochs == (1, 2, 3)  # from the history, not only this invocation's epoch
    assert len(plots.loss_seconds) == 1
    assert_png(run / LOSS_FILENAME)

    history = MetricsHistory.from_dict(json.loads((run / "history.json").read_text()))
    axes = loss_figure(history).axes[0]
    (train,) = [line for line in axes.get_lines() if line.get_label().startswith("training loss (")]
    assert list(train.get_xdata()) == [1, 2, 3]
    (steps,) = [line for line in axes.get_lines() if line.get_label() == "training loss per step"]
    assert len(steps.get_xdata()) == len(history.steps) and steps.get_xdata()[-1] == pytest.approx(3)


@pytest.mark.parametrize("strict", [True, False])
def test_bad_setting_vetoes_the_run_before_anything_runs(sda_engine, sda_audio_folder, tmp_path, strict):
    """sda_check_config rejects the table naming the key, strict or not; nothing is written."""
    engine = sda_engine(Plots(), reference=True, strict=strict)
    settings = {**FAST, "max_epochs": 1, "plugins": {"plots": {"dip": 150}}}
    with pytest.raises(ConfigError, match=r"unknown key 'dip' in the \[plugins.plots\] table.*did you mean 'dpi'"):
        engine.train(sda_audio_folder(), tmp_path / "run", settings)
    assert not (tmp_path / "run").exists()
    assert not engine.host.consumer_failures


# -- through the installed distribution's entry point (pip install -e contrib/sda-plots) ----


def test_installed_entry_point_is_listed_with_its_distribution():
    assert importlib.metadata.version("sda-plots") == "0.1.0"
    infos = {info.name: info for info in Engine(environ={}).plugin_infos()}
    assert "plots" in infos, sorted(infos)
    info = infos["plots"]
    assert (info.status, info.distribution, info.version) == ("loaded", "sda-plots", "0.1.0")
    assert {"sda_on_train_start", "sda_on_epoch", "sda_on_preview", "sda_on_train_end"} <= set(info.hooks)


def test_entry_point_instantiates_one_plugin_per_engine():
    first, second = Engine(environ={}), Engine(environ={})
    a, b = first.pm.get_plugin("plots"), second.pm.get_plugin("plots")
    assert isinstance(a, Plots) and isinstance(b, Plots) and a is not b


def test_disable_turns_it_off():
    for engine in (Engine(disable=["plots"], environ={}), Engine(environ={"SDA_DISABLE_PLUGINS": "sda-plots"})):
        infos = {info.name: info for info in engine.plugin_infos()}
        assert infos["plots"].status == "blocked"
        assert engine.pm.get_plugin("plots") is None
