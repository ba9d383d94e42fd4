"""Synthesised audio folders for tests (numpy + soundfile; nothing committed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf


def write_sound(
    path: Path,
    seconds: float,
    rate: int = 22050,
    channels: int = 1,
    *,
    seed: int = 0,
    subtype: str | None = None,
    fmt: str | None = None,
) -> Path:
    """A decaying harmonic tone plus a little noise, deterministic for (seed, rate, length)."""
    rng = np.random.default_rng(seed)
    frames = max(1, int(round(seconds * rate)))
    t = np.arange(frames) / rate
    base = 110.0 * (1 + seed % 7)
    mono = sum(np.sin(2 * np.pi * base * k * t) / k for k in (1, 2, 3)) * np.exp(-t * 1.5)
    mono = 0.3 * mono / max(np.abs(mono).max(), 1e-9) + 0.01 * rng.standard_normal(frames)
    data = np.stack([mono * (1 - 0.2 * c) for c in range(channels)], axis=1) if channels > 1 else mono
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), rate, subtype=subtype, format=fmt)
    return path


def make_folder(
    root: Path, durations: Sequence[float], rates: Sequence[int] = (22050,), channels: Sequence[int] = (1,)
) -> Path:
    """A folder of WAV files with the given durations, cycling through rates and channel counts."""
    root.mkdir(parents=True, exist_ok=True)
    for i, seconds in enumerate(durations):
        write_sound(root / f"sound_{i:03d}.wav", seconds, rates[i % len(rates)], channels[i % len(channels)], seed=i)
    return root
