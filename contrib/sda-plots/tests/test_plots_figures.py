"""Unit tests of sda-plots: settings, the loss figure, the spectrogram figure, the hooks alone."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pytest
import soundfile
from sda_plots import LOSS_FILENAME, SPECTROGRAM_FILENAME, Plots, PlotSettings
from sda_plots import plugin as plugin_module
from sda_plots.loss import (
    MAX_STEP_POINTS,
    StepPoints,
    loss_figure,
    step_curve,
    wants_log_scale,
    write_loss_plot,
)
from sda_plots.spectrogram import (
    FLOOR_DB,
    MelAnalyzer,
    spectrogram_figure,
    write_spectrograms,
)

from sda_core import TrainingConfig
from sda_core.config.events import (
    EpochMetrics,
    PreviewEvent,
    StepMetrics,
    TrainingCompleteEvent,
    TrainingStartEvent,
)
from sda_core.config.history import MetricsHistory
from sda_core.errors import ConfigError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path: Path) -> np.ndarray:
    """The image at ``path``, after checking it is a PNG file."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return matplotlib.image.imread(path)


def synthetic_history(
    epochs: int = 12, steps_per_epoch: int = 5, overfit_from: int = 7, scale: float = 1.0
) -> MetricsHistory:
    """Falling training loss; validation follows it, then rises from ``overfit_from``."""
    history = MetricsHistory()
    step = 0
    for epoch in range(1, epochs + 1):
        train = scale * (0.2 + 4.0 * math.exp(-epoch / 3))
        for index in range(1, steps_per_epoch + 1):
            step += 1
            history.record_step(
                StepMetrics(
                    epoch=epoch,
                    step=step,
                    epoch_step=index,
                    steps_per_epoch=steps_per_epoch,
                    loss=train * (1.1 - 0.04 * index),
                )
            )
        val = train * 1.05 if epoch < overfit_from else train * (1.3 + 0.1 * (epoch - overfit_from))
        history.record_epoch(EpochMetrics(epoch=epoch, step=step, train_loss=train, val_loss=val))
    return history


def labelled(axes, label: str):
    return [line for line in axes.get_lines() if line.get_label() == label]


# -- settings -----------------------------------------------------------------------------


def test_settings_defaults():
    settings = PlotSettings.from_config({"plugins": {}})
    assert (settings.dpi, settings.every, settings.spectrograms) == (100, 1, True)
    assert PlotSettings.from_config({}) == settings


def test_settings_from_config_table():
    settings = PlotSettings.from_config({"plugins": {"plots": {"dpi": 150, "every": 5, "spectrograms": False}}})
    assert (settings.dpi, settings.every, settings.spectrograms) == (150, 5, False)


def test_unknown_setting_names_the_key():
    with pytest.raises(ConfigError, match="evry") as caught:
        PlotSettings.from_config({"plugins": {"plots": {"evry": 2}}})
    assert "did you mean 'every'" in str(caught.value)
    assert "[plugins.plots]" in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dpi", 0),
        ("dpi", 5000),
        ("dpi", "high"),
        ("dpi", True),
        ("dpi", float("nan")),
        ("every", 0),
        ("every", 1.5),
        ("every", "2"),
        ("every", True),
        ("min_seconds", -1),
        ("min_seconds", "10"),
        ("spectrograms", "yes"),
        ("spectrograms", 1),
    ],
)
def test_bad_setting_values_are_rejected(key, value):
    with pytest.raises(ConfigError, match=f"plugins.plots.{key}"):
        PlotSettings.from_config({"plugins": {"plots": {key: value}}})


# -- the loss figure ----------------------------------------------------------------------


def test_loss_figure_of_a_history_with_overfitting(tmp_path):
    history = synthetic_history()
    assert history.overfitting_epochs == [7, 8, 9, 10, 11, 12]
    figure = loss_figure(history, title="demo")
    axes = figure.axes[0]
    assert axes.get_xlabel() == "epoch" and axes.get_ylabel() == "loss"
    (train,) = labelled(axes, "training loss (epoch mean)")
    (val,) = labelled(axes, "validation loss")
    (steps,) = labelled(axes, "training loss per step")
    assert list(train.get_xdata()) == list(range(1, 13))
    assert np.allclose(val.get_ydata(), history.val_losses)
    assert len(steps.get_xdata()) == 60 and steps.get_alpha() < 0.5  # faint
    # one shaded span for the run of overfitting epochs 7..12
    spans = [patch for patch in axes.patches if patch.get_alpha() is not None]
    assert len(spans) == 1
    left, right = spans[0].get_x(), spans[0].get_x() + spans[0].get_width()
    assert (left, right) == (6.5, 12.5)
    # the best epoch is marked and labelled
    best = history.best_epoch
    (star,) = labelled(axes, f"best epoch {best}")
    assert list(star.get_xdata()) == [best]
    assert any(f"best: epoch {best}" in text.get_text() for text in axes.texts)
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend[:3] == ["training loss per step", "training loss (epoch mean)", "validation loss"]
    assert any(label.startswith("overfitting") for label in legend)
    # the loss spans more than a decade: log scale
    assert axes.get_yscale() == "log"

    path = write_loss_plot(history, tmp_path / "loss.png", dpi=80)
    image = read_png(path)
    assert image.shape[:2] == (round(4.5 * 80), (8 * 80))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_linear_scale_within_a_decade_and_without_validation():
    history = MetricsHistory()
    for epoch in range(1, 4):
        history.record_epoch(EpochMetrics(epoch=epoch, train_loss=1.0 / epoch))
    axes = loss_figure(history).axes[0]
    assert axes.get_yscale() == "linear"
    assert not labelled(axes, "validation loss") and history.best_epoch is None
    assert not any(text.get_text().startswith("best") for text in axes.texts)


def test_log_scale_rule():
    assert wants_log_scale(np.array([5.0, 0.4]))
    assert not wants_log_scale(np.array([5.0, 0.6]))
    assert not wants_log_scale(np.array([5.0, -0.1, 0.001]))  # non-positive: stays linear
    assert not wants_log_scale(np.array([np.nan, 2.0, np.inf]))


def test_non_finite_and_empty_histories_render(tmp_path):
    write_loss_plot(MetricsHistory(), tmp_path / "empty.png")
    history = synthetic_history(epochs=4)
    history.record_epoch(EpochMetrics(epoch=5, train_loss=float("inf"), val_loss=float("nan")))
    read_png(write_loss_plot(history, tmp_path / "nan.png"))


def test_step_curve_is_bounded_and_incremental():
    history = synthetic_history(epochs=30, steps_per_epoch=200)  # 6000 steps
    points = StepPoints()
    x, y = step_curve(history, points=points)
    assert len(x) <= MAX_STEP_POINTS and np.all(np.diff(x) > 0)
    assert x[-1] == pytest.approx(30, abs=0.01) and np.isfinite(y).all()
    # the history grows: only new steps are converted, the result is the same as from scratch
    history.record_step(StepMetrics(epoch=31, step=6001, epoch_step=1, steps_per_epoch=200, loss=0.1))
    assert np.allclose(step_curve(history, points=points)[0], step_curve(history)[0])
    # another history (truncated on resume): rebuilt
    history.truncate_to_epoch(10)
    assert np.allclose(step_curve(history, points=points)[1], step_curve(history)[1])


# -- the spectrogram figure ---------------------------------------------------------------


def write_tone(path: Path, seconds: float = 0.5, rate: int = 8000, amplitude: float = 1.0, channels: int = 1) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    tone = amplitude * np.sin(2 * np.pi * 440.0 * t)
    soundfile.write(path, np.stack([tone] * channels, axis=1).astype(np.float32), rate)
    return path


def test_mel_is_in_dbfs():
    analyzer = MelAnalyzer()
    t = np.arange(8000) / 8000
    loud = analyzer.mel_db(np.sin(2 * np.pi * 440 * t), 8000)
    quiet = analyzer.mel_db(0.01 * np.sin(2 * np.pi * 440 * t), 8000)
    assert loud.shape[0] == 64
    assert -6.0 < loud.max() <= 0.5  # a full-scale sine peaks near 0 dBFS
    assert loud.max() - quiet.max() == pytest.approx(40.0, abs=0.5)
    assert analyzer.mel_db(np.zeros(10), 8000).max() < FLOOR_DB  # shorter than a window: padded


def test_spectrogram_figure_has_a_column_per_kind(tmp_path):
    files = [str(write_tone(tmp_path / f"sample_0{i}.wav")) for i in (1, 2)]
    files.append(str(write_tone(tmp_path / "reconstruction_01.wav", rate=22050, channels=2)))
    files.append(str(tmp_path / "missing.wav"))
    figure = spectrogram_figure(files, ["sample", "sample", "reconstruction", "reconstruction"], title="t")
    panels = [axes for axes in figure.axes if axes.get_images()]
    assert len(panels) == 3
    assert [axes.get_title() for axes in figure.axes if axes.get_title()] == ["samples", "reconstructions"]
    assert any("cannot read" in text.get_text() for axes in figure.axes for text in axes.texts)

    path = write_spectrograms(
        files, ["sample", "sample", "reconstruction", "reconstruction"], tmp_path / SPECTROGRAM_FILENAME, dpi=60
    )
    image = read_png(path)
    assert image.shape[0] > 100 and image.shape[1] > 300


def _labelled(axis) -> list[str]:
    return [label.get_text() for label in axis.get_ticklabels() if label.get_text()]


def test_a_column_shares_its_time_scale_and_one_rate_labels_frequency_once(tmp_path):
    short, long = (
        write_tone(tmp_path / "sample_01.wav", seconds=0.5),
        write_tone(tmp_path / "sample_02.wav", seconds=1.5),
    )
    others = [write_tone(tmp_path / f"reconstruction_0{i}.wav") for i in (1, 2)]
    files = [str(path) for path in (short, long, *others)]
    figure = spectrogram_figure(files, ["sample", "sample", "reconstruction", "reconstruction"])
    figure.canvas.draw()
    first, third, second, _fourth = [axes for axes in figure.axes if axes.get_images()]  # row by row
    # a column's panels show one time range (the longest file's), labelled under its last panel
    assert first.get_xlim() == second.get_xlim() and second.get_xlim()[1] > 1.4
    assert not _labelled(first.xaxis) and "0.8" in _labelled(second.xaxis)
    # one sample rate: frequencies are labelled in the first column only
    assert "1k" in _labelled(first.yaxis) and not _labelled(third.yaxis)

    mixed = [str(write_tone(tmp_path / "reconstruction_03.wav", rate=16000)), *files[1:]]
    figure = spectrogram_figure(mixed, ["reconstruction", "sample", "reconstruction", "sample"])
    figure.canvas.draw()
    assert all("1k" in _labelled(axes.yaxis) for axes in figure.axes if axes.get_images())


# -- the plugin's hooks, called directly ----------------------------------------------------


def replay(full: MetricsHistory):
    """(epoch metrics, the history up to it) per epoch, as the engine delivers them."""
    history = MetricsHistory()
    for metrics in full.epochs:
        for step in full.steps:
            if step.epoch == metrics.epoch:
                history.record_step(step)
        history.record_epoch(metrics)
        yield metrics, history


def start(plugin: Plots, run_dir: Path, max_epochs: int = 5, **settings) -> None:
    config = {"plugins": {"plots": settings}} if settings else {"plugins": {}}
    plugin.sda_on_train_start(TrainingStartEvent(run_dir=run_dir, config=config, max_epochs=max_epochs))


def test_every_setting_and_the_last_epoch(tmp_path):
    plugin = Plots()
    start(plugin, tmp_path, max_epochs=5, every=2, min_seconds=0)
    drawn = []
    for metrics, history in replay(synthetic_history(epochs=5)):
        plugin.sda_on_epoch(metrics, history)
        drawn.append(plugin.drawn_epochs[-1] if plugin.drawn_epochs else None)
    assert drawn == [None, 2, 2, 4, 5]  # every 2 epochs, and always the last one
    assert len(plugin.loss_seconds) == 3
    read_png(tmp_path / LOSS_FILENAME)


def test_a_loss_plot_waits_min_seconds_after_the_last_but_the_last_epoch_never_waits(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(plugin_module.time, "monotonic", lambda: clock[0])
    plugin = Plots()
    start(plugin, tmp_path, max_epochs=6, min_seconds=10)
    drawn = []
    for metrics, history in replay(synthetic_history(epochs=6)):
        plugin.sda_on_epoch(metrics, history)
        drawn.append(plugin.drawn_epochs[-1])
        clock[0] += 4.0  # a 4 s epoch
    assert drawn == [1, 1, 1, 4, 4, 6]  # 0 s, 12 s after the first plot, and the last epoch
    assert PlotSettings().min_seconds == 10.0


def test_train_end_draws_an_epoch_left_undrawn(tmp_path):
    plugin = Plots()
    start(plugin, tmp_path, max_epochs=50, every=10)
    for metrics, history in replay(synthetic_history(epochs=3)):
        plugin.sda_on_epoch(metrics, history)
    assert not (tmp_path / LOSS_FILENAME).exists()
    plugin.sda_on_train_end(TrainingCompleteEvent(reason="early_stop: overfitting", epochs_completed=3))
    assert plugin.drawn_epochs == (1, 2, 3)
    read_png(tmp_path / LOSS_FILENAME)


def test_bad_settings_raise_and_leave_the_plugin_idle(tmp_path):
    plugin = Plots()
    with pytest.raises(ConfigError, match="colour"):
        plugin.sda_check_config(TrainingConfig(plugins={"plots": {"colour": "red"}}))
    with pytest.raises(ConfigError, match="colour"):
        start(plugin, tmp_path, colour="red")
    history = synthetic_history(epochs=1)
    plugin.sda_on_epoch(history.epochs[0], history)
    plugin.sda_on_train_end(TrainingCompleteEvent(reason="max_epochs", epochs_completed=1))
    assert not list(tmp_path.iterdir())


def test_spectrograms_off(tmp_path):
    plugin = Plots()
    start(plugin, tmp_path, spectrograms=False)
    wav = write_tone(tmp_path / "sample_01.wav")
    plugin.sda_on_preview(PreviewEvent(epoch=2, directory=tmp_path, files=(str(wav),), kinds=("sample",)))
    assert not (tmp_path / SPECTROGRAM_FILENAME).exists()
    start(plugin, tmp_path)
    plugin.sda_on_preview(PreviewEvent(epoch=2, directory=tmp_path, files=(str(wav),), kinds=("sample",)))
    read_png(tmp_path / SPECTROGRAM_FILENAME)


def test_plots_from_a_background_thread(tmp_path):
    """Hosts train in threads: Agg figures with no pyplot state work off the main thread."""
    errors = []

    def draw():
        try:
            write_loss_plot(synthetic_history(), tmp_path / "thread.png")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    thread = threading.Thread(target=draw)
    thread.start()
    thread.join()
    assert not errors
    read_png(tmp_path / "thread.png")


def test_no_pyplot_and_lazy_matplotlib():
    """Loading the plugin does not import matplotlib; drawing never imports pyplot."""
    code = (
        "import sys, sda_plots\n"
        "assert 'matplotlib' not in sys.modules\n"
        "import sda_plots.loss, sda_plots.spectrogram\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
