"""The loss-curve figure of a run, drawn from its :class:`~sda_core.config.history.MetricsHistory`.

What it shows:

* the training loss per epoch (blue) and the validation loss per epoch (orange), each point at
  the end of its epoch;
* the training loss of every optimiser step, faint, behind them (binned to at most
  :data:`MAX_STEP_POINTS` points on long runs, so the cost of a plot stays bounded);
* every epoch the history flags as overfitting (``history.overfitting_epochs``) shaded red;
* the best epoch (lowest validation loss) marked with a star, a dotted line and a label;
* a logarithmic y axis when every value is positive and they span more than a decade.

Because it reads the whole history, a resumed run draws one continuous curve from epoch 1.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from sda_plots._figures import new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from sda_core.config.history import MetricsHistory

#: The per-step curve is averaged into at most this many points.
MAX_STEP_POINTS = 2000
#: Epoch curves get point markers up to this many epochs.
MARKER_EPOCHS = 60
#: Log-scale y when max / min of the plotted (positive) losses exceeds this.
LOG_RATIO = 10.0

TRAIN_COLOR = "tab:blue"
VAL_COLOR = "tab:orange"
OVERFIT_COLOR = "tab:red"
BEST_COLOR = "tab:green"


def _finite(values: list[float | None]) -> np.ndarray:
    """Floats with None and infinities turned into NaN (drawn as gaps)."""
    array = np.array([np.nan if value is None else value for value in values], dtype=float)
    array[~np.isfinite(array)] = np.nan
    return array


class StepPoints:
    """The raw (x, loss) points of the per-step curve, x in epochs (step k of n in epoch e is at
    e - 1 + k/n, so the last step of an epoch lines up with that epoch's point).

    Keeps the points of earlier calls: a history only grows during a run, so each call converts
    just the new steps (a run of 100,000 steps would otherwise spend ~40 ms per plot on it). If
    the history is not a continuation of what was seen (another run, a truncated history), the
    points are rebuilt.
    """

    def __init__(self) -> None:
        self._x: list[float] = []
        self._y: list[float] = []
        self._last_step = 0

    def update(self, history: MetricsHistory) -> tuple[np.ndarray, np.ndarray]:
        steps = history.steps
        seen = len(self._x)
        if seen > len(steps) or (seen and steps[seen - 1].step != self._last_step):
            self._x, self._y, seen = [], [], 0
        for m in steps[seen:] if seen else steps:
            self._x.append(m.epoch - 1 + m.epoch_step / max(m.steps_per_epoch, 1))
            self._y.append(m.loss)
        if steps:
            self._last_step = steps[-1].step
        return np.array(self._x, dtype=float), _finite(self._y)


def step_curve(
    history: MetricsHistory, max_points: int = MAX_STEP_POINTS, points: StepPoints | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(x, loss) of the per-step training curve (see :class:`StepPoints`), with more than
    ``max_points`` steps averaged into ``max_points`` bins of consecutive steps."""
    x, y = (points or StepPoints()).update(history)
    if len(x) > max_points:
        size = math.ceil(len(x) / max_points)
        bins = math.ceil(len(x) / size)
        pad = bins * size - len(x)
        x = np.concatenate([x, np.full(pad, np.nan)]).reshape(bins, size)
        y = np.concatenate([y, np.full(pad, np.nan)]).reshape(bins, size)
        with warnings.catch_warnings():  # an all-NaN bin (non-finite losses) is simply a gap
            warnings.simplefilter("ignore", RuntimeWarning)
            x, y = np.nanmean(x, axis=1), np.nanmean(y, axis=1)
    return x, y


def _spans(epochs: list[int]) -> list[tuple[int, int]]:
    """Runs of consecutive epochs as (first, last) pairs."""
    spans: list[tuple[int, int]] = []
    for epoch in sorted(epochs):
        if spans and epoch == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], epoch)
        else:
            spans.append((epoch, epoch))
    return spans


def log_decades(*curves: np.ndarray) -> float:
    """Decades spanned by the finite values of ``curves``; 0 when any is <= 0 (no log scale)."""
    values = np.concatenate([np.asarray(c, dtype=float).ravel() for c in curves]) if curves else np.empty(0)
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() <= 0:
        return 0.0
    return float(np.log10(values.max() / values.min()))


def wants_log_scale(*curves: np.ndarray) -> bool:
    """Whether all finite values are positive and span more than a decade (max / min > 10)."""
    return log_decades(*curves) > math.log10(LOG_RATIO)


def _plain_number(value: float, _position: int | None = None) -> str:
    return f"{value:g}"


def _format_loss(value: float) -> str:
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-3 or magnitude >= 1e4):
        return f"{value:.3e}"
    return f"{value:.4g}"


def loss_figure(history: MetricsHistory, title: str | None = None, step_points: StepPoints | None = None) -> Figure:
    """Draw the loss curves of ``history`` on a new Agg figure (see the module docstring).

    Pass the same ``step_points`` on every call of a run to convert only new steps each time.
    """
    figure = new_figure(8.0, 4.5)  # fixed margins: no layout engine, which would double the cost
    figure.subplots_adjust(left=0.095, right=0.98, bottom=0.11, top=0.92)
    axes = figure.add_subplot()
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, which="major", alpha=0.3, linewidth=0.6)
    if title:
        axes.set_title(title, fontsize=11)
    epochs = np.array(history.epoch_numbers, dtype=float)
    if epochs.size == 0:
        axes.text(0.5, 0.5, "no epoch finished yet", ha="center", va="center", transform=axes.transAxes)
        return figure

    train = _finite(history.train_losses)
    val = _finite(history.val_losses)
    step_x, step_y = step_curve(history, points=step_points)
    marker = "o" if epochs.size <= MARKER_EPOCHS else None

    handles = []
    if step_x.size:
        (line,) = axes.plot(
            step_x, step_y, color=TRAIN_COLOR, alpha=0.25, linewidth=0.8, label="training loss per step", zorder=1
        )
        handles.append(line)
    (line,) = axes.plot(
        epochs,
        train,
        color=TRAIN_COLOR,
        linewidth=1.8,
        marker=marker,
        markersize=3.5,
        label="training loss (epoch mean)",
        zorder=3,
    )
    handles.append(line)
    if np.isfinite(val).any():
        (line,) = axes.plot(
            epochs,
            val,
            color=VAL_COLOR,
            linewidth=1.8,
            marker=marker,
            markersize=3.5,
            label="validation loss",
            zorder=3,
        )
        handles.append(line)

    overfitting = history.overfitting_epochs
    for first, last in _spans(overfitting):
        axes.axvspan(first - 0.5, last + 0.5, color=OVERFIT_COLOR, alpha=0.12, linewidth=0, zorder=0)
    if overfitting:
        count = len(overfitting)
        threshold = history.overfitting_threshold
        handles.append(
            Patch(
                color=OVERFIT_COLOR,
                alpha=0.25,
                linewidth=0,
                label=f"overfitting: val more than {threshold:.0%} above train ({count} epoch{'s' * (count != 1)})",
            )
        )

    decades = log_decades(train, val, step_y)
    if decades > math.log10(LOG_RATIO):
        axes.set_yscale("log")
        # Plain-text tick labels ("0.2", "1", "10"): the default ones are mathtext, whose parsing
        # alone costs more than the rest of the plot. Minor ticks only at 2 and 5 (fewer tick
        # artists to build), labelled when the range spans at most three decades.
        axes.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        axes.yaxis.set_major_formatter(FuncFormatter(_plain_number))
        axes.yaxis.set_minor_formatter(FuncFormatter(_plain_number) if decades <= 3 else NullFormatter())

    low = min(epochs[0] - 0.5, step_x[0] if step_x.size else math.inf)
    axes.set_xlim(low, epochs[-1] + 0.5)

    best = history.best_epoch
    if best is not None:
        best_val = history.best_val_loss
        axes.axvline(best, color=BEST_COLOR, linestyle=":", linewidth=1.2, zorder=2)
        (star,) = axes.plot(
            [best],
            [best_val],
            linestyle="none",
            marker="*",
            markersize=13,
            color=BEST_COLOR,
            markeredgecolor="white",
            markeredgewidth=0.6,
            label=f"best epoch {best}",
            zorder=4,
        )
        handles.append(star)
        # Place the label away from the edges: left or right of the star by its x position,
        # above or below it by its y position (in axes coordinates, so log scales work too).
        x_frac, y_frac = axes.transAxes.inverted().transform(axes.transData.transform((best, best_val)))
        right_side, upper_half = x_frac > 0.7, y_frac > 0.55
        axes.annotate(
            f"best: epoch {best}\nval {_format_loss(best_val)}",
            xy=(best, best_val),
            xytext=(-8 if right_side else 8, -14 if upper_half else 14),
            textcoords="offset points",
            ha="right" if right_side else "left",
            va="top" if upper_half else "bottom",
            fontsize=8.5,
            color="darkgreen",
            zorder=5,
            bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": BEST_COLOR, "alpha": 0.85},
        )

    axes.legend(handles=handles, loc="best", fontsize=8, framealpha=0.85)
    return figure


def write_loss_plot(
    history: MetricsHistory,
    path: str | os.PathLike[str],
    dpi: float = 100,
    title: str | None = None,
    step_points: StepPoints | None = None,
) -> Path:
    """Draw ``history`` and write it atomically as a PNG at ``path``."""
    return save_png(loss_figure(history, title=title, step_points=step_points), path, dpi=dpi)
