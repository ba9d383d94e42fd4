"""Folders of synthesised sounds for tests."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

_BLOCK = 16384  # libsndfile 1.2.2 can crash on one large Ogg write: write in blocks


def write_audio_folder(
    folder: str | Path,
    *,
    count: int = 6,
    durations: Sequence[float] = (0.5, 1.2, 2.0, 0.8, 1.6, 3.0),
    sample_rates: Sequence[int] = (22050,),
    channels: Sequence[int] = (1,),
    formats: Sequence[str] = ("wav",),
    seed: int = 0,
) -> Path:
    """Write ``count`` synthesised sounds, cycling through the given lengths, rates, channel
    counts and formats ("wav", "flac", "ogg", "aiff"). Deterministic for the same arguments."""
    import numpy as np
    import soundfile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    specs = itertools.islice(
        zip(
            itertools.cycle(durations),
            itertools.cycle(sample_rates),
            itertools.cycle(channels),
            itertools.cycle(formats),
        ),
        count,
    )
    for index, (seconds, rate, chans, fmt) in enumerate(specs):
        frames = max(1, int(round(seconds * rate)))
        t = np.arange(frames) / rate
        pitch = float(rng.choice([110.0, 165.0, 220.0, 330.0]))
        tone = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in (1, 2, 3)) * np.exp(-t * 2.0)
        mono = 0.3 * tone / max(np.abs(tone).max(), 1e-9) + 0.005 * rng.standard_normal(frames)
        data = np.stack([mono * (1 - 0.1 * c) for c in range(chans)], axis=1).astype(np.float32)
        path = folder / f"sound_{index:03d}.{fmt}"
        with soundfile.SoundFile(path, "w", rate, chans, format=fmt.upper()) as out:
            for start in range(0, frames, _BLOCK):
                out.write(data[start : start + _BLOCK])
    return folder
