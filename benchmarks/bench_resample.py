"""Resampling a 1-second chunk from 44.1 kHz to 22.05 kHz: the Kaiser kernel against torchaudio's default.

The reader resamples with a Kaiser-windowed sinc (``sda_core.audio.resampling.RESAMPLE_OPTIONS``:
24 zero crossings, rolloff 0.96, beta 7) instead of torchaudio's default Hann-windowed sinc (6 zero
crossings, rolloff 0.99), which lets a tone just above the new Nyquist frequency fold back at about
-10 dB. Two rows:

* cost: the same random 1-second chunks of a one-minute 44.1 kHz stereo 16-bit WAV, read through
  :func:`~sda_core.audio.resampling.segment` (open, seek, read, polyphase resampling to 22.05 kHz)
  with the Kaiser kernel (measured) and with torchaudio's default kernel (baseline,
  ``options={}``), interleaved in one process. The longer kernel costs more multiply-adds per
  output frame (102 taps against 28); target: at most ``COST_TARGET`` times the old read.
* aliasing: a 0.5-amplitude sine at 1.05x the new Nyquist frequency (11576 Hz) in a 44.1 kHz WAV,
  read at 22.05 kHz through :func:`~sda_core.audio.reading.read_segment`; the level of what folds
  back (at 22050 - 11576 Hz, fitted by least squares over the middle of the file) relative to the
  input, in units of -60 dB (1.00 = -60 dB; target at most 1). The detail gives both kernels' dB.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile

from benchmarks.bench_read import offsets, synthesise
from benchmarks.timing import Result, compare, describe
from sda_core.audio.reading import read_segment
from sda_core.audio.resampling import RESAMPLE_OPTIONS, segment

NAME = "resample"
SOURCE = 44100
TARGET = 22050
CHANNELS = 2
ITEMS = 20  # chunks per timed sample
COST_TARGET = 3.0
ALIAS_MULTIPLE = 1.05  # of the new Nyquist frequency
ALIAS_LIMIT_DB = -60.0


def chunk_items(path: Path, starts: list[int], options: dict[str, object] | None):
    """A callable reading ``ITEMS`` 1-second chunks at 22.05 kHz with the given filter."""
    name = str(path)

    def items() -> None:
        for start in starts:
            with soundfile.SoundFile(name) as handle:
                segment(_reader(handle), handle.frames, SOURCE, start, TARGET, TARGET, CHANNELS, options=options)

    return items


def _reader(handle: soundfile.SoundFile):
    """Zero-padded float32 rows ``[first, first + count)`` of an open file (seek + read)."""

    def read(first: int, count: int) -> tuple[np.ndarray, None]:
        rows = np.zeros((count, handle.channels), dtype=np.float32)
        low, high = max(first, 0), min(first + count, handle.frames)
        if high > low:
            handle.seek(low)
            handle.read(high - low, dtype="float32", always_2d=True, out=rows[low - first : high - first])
        return rows, None

    return read


def alias_level_db(audio: np.ndarray, frequency: float, amplitude: float) -> float:
    """Level (dB re ``amplitude``) of the ``frequency`` component of ``audio`` at ``TARGET``, by least squares."""
    phase = 2 * np.pi * frequency / TARGET * np.arange(audio.size)
    basis = np.stack([np.sin(phase), np.cos(phase)], axis=1)
    coefficients, *_ = np.linalg.lstsq(basis, audio.astype(np.float64), rcond=None)
    return float(20 * np.log10(max(np.hypot(*coefficients), 1e-12) / amplitude))


def measure_aliasing(folder: Path) -> tuple[float, float]:
    """Alias level in dB of a tone at ``ALIAS_MULTIPLE`` x Nyquist: (Kaiser via read_segment, old default)."""
    frequency = ALIAS_MULTIPLE * TARGET / 2
    amplitude = 0.5
    t = np.arange(SOURCE) / SOURCE
    tone = (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)[:, None]
    path = folder / "tone.wav"
    soundfile.write(path, tone, SOURCE, subtype="FLOAT")
    start, frames = TARGET // 4, TARGET // 2  # the middle of the file, away from its edges
    new = read_segment(path, start, frames, target_rate=TARGET, channels=1)[0]
    with soundfile.SoundFile(path) as handle:
        old = segment(_reader(handle), handle.frames, SOURCE, start, frames, TARGET, 1, options={})[0]
    folded = TARGET - frequency
    return alias_level_db(new, folded, amplitude), alias_level_db(old, folded, amplitude)


def run(quick: bool = False) -> list[Result]:
    repeats = 7 if quick else 21
    starts = offsets(ITEMS, rate=TARGET)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="sda-bench-resample-") as temp:
        folder = Path(temp)
        path = synthesise(folder / "minute.wav", "WAV", "PCM_16")
        kaiser, default = chunk_items(path, starts, None), chunk_items(path, starts, {})
        comparison = compare({"Kaiser": kaiser, "default": default}, repeats=repeats, warmup=2)
        results.append(
            Result(
                f"resample: 1 s chunk of a 1-min 44.1 kHz WAV to 22.05 kHz, Kaiser kernel vs torchaudio default "
                f"(<= {COST_TARGET:.1f}x)",
                comparison.ratio("Kaiser", "default"),
                COST_TARGET,
                describe(comparison, "Kaiser", "default", per=ITEMS, unit="chunk"),
            )
        )
        new_db, old_db = measure_aliasing(folder)
        results.append(
            Result(
                f"resample: alias of a tone at {ALIAS_MULTIPLE}x the new Nyquist, 44.1 -> 22.05 kHz "
                f"(amplitude in units of {ALIAS_LIMIT_DB:.0f} dB)",
                10 ** ((new_db - ALIAS_LIMIT_DB) / 20),
                1.0,
                f"Kaiser {new_db:.1f} dB, torchaudio default {old_db:.1f} dB (re the input tone); "
                f"options {dict(RESAMPLE_OPTIONS)}",
            )
        )
    return results


if __name__ == "__main__":  # pragma: no cover - manual use
    for row in run():
        print(row)
