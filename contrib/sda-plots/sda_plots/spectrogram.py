"""Mel spectrograms of preview WAV files, drawn as one figure per preview round.

Layout: one column per kind of file, in the order the kinds first appear in the PreviewEvent
(the reference previews plugin gives "sample" then "reconstruction"), one row per file of that
kind; each panel is titled with the file name. Every panel uses the same fixed colour scale,
in dB relative to full scale (a full-scale sine peaks near 0 dBFS, the floor is
:data:`FLOOR_DB`), so spectrograms of successive epochs can be compared directly.

The mel spectrogram is computed with ``torchaudio.transforms.MelSpectrogram`` (one cached
transform per sample rate) on the mono mix of the file read with soundfile.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile
import torch
import torchaudio
from matplotlib.ticker import MaxNLocator, NullLocator

from sda_plots._figures import new_figure, save_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Mel bands of every spectrogram.
N_MELS = 64
#: Analysis window, in seconds (rounded up to a power of two of samples).
WINDOW_SECONDS = 0.04
#: Bottom of the colour scale, in dBFS.
FLOOR_DB = -90.0
#: Height of one panel, in inches.
PANEL_HEIGHT = 1.5
#: Frequencies labelled on the y axis (those below Nyquist).
TICK_HZ = (100, 250, 500, 1000, 2000, 4000, 8000, 16000)
COLORMAP = "magma"


def _hz_to_mel(hz: float) -> float:
    """The HTK mel scale (torchaudio's default)."""
    return 2595.0 * math.log10(1.0 + hz / 700.0)


class MelAnalyzer:
    """Mel spectrograms in dBFS, with one cached torchaudio transform per sample rate."""

    def __init__(self, n_mels: int = N_MELS) -> None:
        self.n_mels = n_mels
        self._transforms: dict[int, tuple[Any, float]] = {}

    @staticmethod
    def n_fft(sample_rate: int) -> int:
        return 2 ** math.ceil(math.log2(max(sample_rate * WINDOW_SECONDS, 64)))

    def _transform(self, sample_rate: int) -> tuple[Any, float]:
        cached = self._transforms.get(sample_rate)
        if cached is None:
            n_fft = self.n_fft(sample_rate)
            transform = torchaudio.transforms.MelSpectrogram(
                sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=self.n_mels, power=2.0
            )
            # A periodic Hann window sums to n_fft / 2: a sine of amplitude A has a peak power of
            # (A * n_fft / 4) ** 2, so dividing by (n_fft / 4) ** 2 gives dB relative to full scale.
            cached = (transform, (n_fft / 4.0) ** 2)
            self._transforms[sample_rate] = cached
        return cached

    def hop_length(self, sample_rate: int) -> int:
        return self.n_fft(sample_rate) // 4

    def mel_db(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """(n_mels, frames) dBFS of ``audio`` (samples, or samples x channels; mixed to mono)."""
        data = np.asarray(audio, dtype=np.float32)
        if data.ndim == 2:
            data = data.mean(axis=1)
        data = np.nan_to_num(data.reshape(-1))
        transform, scale = self._transform(sample_rate)
        n_fft = self.n_fft(sample_rate)
        if data.size < n_fft:  # reflect padding needs more than half a window
            data = np.pad(data, (0, n_fft - data.size))
        with torch.inference_mode():
            power = transform(torch.from_numpy(data)).numpy()
        return 10.0 * np.log10(np.maximum(power / scale, 1e-12))

    def mel_db_file(self, path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
        """Read a sound file with soundfile; (dBFS mel spectrogram, sample rate)."""
        audio, sample_rate = soundfile.read(os.fspath(path), dtype="float32", always_2d=True)
        return self.mel_db(audio, sample_rate), sample_rate


def _columns(files: Sequence[str], kinds: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(kind, files) per kind, kinds in order of first appearance; files without a kind: "preview"."""
    grouped: dict[str, list[str]] = {}
    for index, path in enumerate(files):
        kind = kinds[index] if index < len(kinds) and kinds[index] else "preview"
        grouped.setdefault(kind, []).append(path)
    return list(grouped.items())


def _plural(kind: str) -> str:
    return kind if kind.endswith("s") else kind + "s"


def spectrogram_figure(
    files: Sequence[str], kinds: Sequence[str] = (), title: str | None = None, analyzer: MelAnalyzer | None = None
) -> Figure:
    """One panel per file, a column per kind (see the module docstring). An unreadable file
    gets a panel saying why instead of failing the whole figure."""
    analyzer = analyzer or MelAnalyzer()
    columns = _columns(files, kinds) or [("preview", [])]
    rows = max(max(len(paths) for _kind, paths in columns), 1)
    ncols = len(columns)
    width, height = 4.0 * ncols + 1.2, PANEL_HEIGHT * rows + 1.0
    figure = new_figure(width, height)
    # Fixed margins in inches (a layout engine would double the cost): title on top, tick labels
    # at the bottom, the colour bar on the right.
    left, right, top, bottom = 0.6 / width, 1 - 0.95 / width, 1 - 0.7 / height, 0.45 / height
    figure.subplots_adjust(left=left, right=right, top=top, bottom=bottom, hspace=0.45, wspace=0.18)
    grid = figure.subplots(rows, ncols, squeeze=False)
    # Read every file first: the panels of a row share one frequency axis when their sample
    # rates agree, and then only the first column is labelled (ticks are most of the drawing).
    spectra: dict[str, tuple[np.ndarray, int] | Exception] = {}
    for _kind, paths in columns:
        for path in paths:
            try:
                spectra[path] = analyzer.mel_db_file(path)
            except Exception as error:  # noqa: BLE001 - one bad file must not cost the others
                spectra[path] = error
    rates = {spectrum[1] for spectrum in spectra.values() if not isinstance(spectrum, Exception)}
    shared_rate = len(rates) == 1
    seconds_of = {
        path: spectrum[0].shape[1] * analyzer.hop_length(spectrum[1]) / spectrum[1]
        for path, spectrum in spectra.items()
        if not isinstance(spectrum, Exception)
    }
    if title:
        figure.suptitle(title, fontsize=11, y=1 - 0.15 / height, va="top")
    image = None
    for column, (kind, paths) in enumerate(columns):
        # one time scale per column, labelled under its last panel
        longest = max((seconds_of[path] for path in paths if path in seconds_of), default=1.0)
        for row in range(rows):
            axes = grid[row][column]
            axes.tick_params(labelsize=7, length=2.5)
            if row >= len(paths):
                axes.set_axis_off()
                continue
            path = paths[row]
            if row == 0:
                axes.set_title(_plural(kind), fontsize=9.5, loc="center", fontweight="bold", pad=14)
            axes.text(0.01, 1.02, Path(path).name, fontsize=7.5, transform=axes.transAxes, va="bottom")
            if row == len(paths) - 1:  # time is labelled under a column's last panel only
                axes.xaxis.set_major_locator(MaxNLocator(5))
                axes.set_xlabel("seconds", fontsize=8)
            else:
                axes.xaxis.set_major_locator(NullLocator())
            if column == 0:
                axes.set_ylabel("Hz", fontsize=8)
            spectrum = spectra[path]
            if isinstance(spectrum, Exception):
                axes.text(
                    0.5,
                    0.5,
                    f"cannot read: {type(spectrum).__name__}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    transform=axes.transAxes,
                )
                axes.set_yticks([])
                continue
            db, sample_rate = spectrum
            seconds = seconds_of[path]
            image = axes.imshow(
                db,
                origin="lower",
                aspect="auto",
                cmap=COLORMAP,
                vmin=FLOOR_DB,
                vmax=0.0,
                extent=(0.0, seconds, -0.5, db.shape[0] - 0.5),
                interpolation="nearest",
            )
            axes.set_xlim(0.0, longest)
            if column == 0 or not shared_rate:
                _frequency_ticks(axes, sample_rate, db.shape[0])
            else:
                axes.yaxis.set_major_locator(NullLocator())
    if image is not None:
        bar_axes = figure.add_axes((1 - 0.75 / width, bottom, 0.12 / width, top - bottom))
        bar = figure.colorbar(image, cax=bar_axes)
        bar.set_label("dBFS", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return figure


def _frequency_ticks(axes: Any, sample_rate: int, n_mels: int) -> None:
    """Label the mel-band axis in Hz (the centre of band i is mel point i + 1 of n_mels + 2)."""
    top = _hz_to_mel(sample_rate / 2)
    step = top / (n_mels + 1)
    positions, labels = [], []
    for hz in TICK_HZ:
        if hz >= sample_rate / 2:
            break
        positions.append(_hz_to_mel(hz) / step - 1)
        labels.append(f"{hz // 1000}k" if hz >= 1000 else str(hz))
    axes.set_yticks(positions, labels)


def write_spectrograms(
    files: Sequence[str],
    kinds: Sequence[str],
    path: str | os.PathLike[str],
    dpi: float = 100,
    title: str | None = None,
    analyzer: MelAnalyzer | None = None,
) -> Path:
    """Draw the spectrograms of ``files`` and write them atomically as one PNG at ``path``."""
    return save_png(spectrogram_figure(files, kinds, title=title, analyzer=analyzer), path, dpi=dpi)
