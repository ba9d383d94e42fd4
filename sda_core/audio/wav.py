"""Writing audio: 16-bit WAV files (previews, generated sounds). numpy and soundfile only: no torch."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import soundfile

__all__ = ["write_wav"]


def write_wav(path: str | os.PathLike[str], audio: Any, sample_rate: int) -> None:
    """Write (channels, samples) audio (array or tensor) as 16-bit WAV, NaN-free, clipped to [-1, 1]."""
    data = audio.detach().cpu().numpy() if hasattr(audio, "detach") else np.asarray(audio)
    data = np.clip(np.nan_to_num(data.astype(np.float32)), -1.0, 1.0)
    soundfile.write(path, data.T, sample_rate, subtype="PCM_16")
