"""Mel-spectrogram pictures of preview audio, as image tensors TensorBoard can show.

:func:`mel_image` turns mono audio into an RGB ``(3, height, width)`` float tensor in [0, 1]:
a log-power mel spectrogram (torchaudio's ``MelSpectrogram``, kernels cached per sample rate),
clipped to the loudest 80 dB, normalised, low frequencies at the bottom, coloured with a small
built-in perceptual colour map (no matplotlib needed) and enlarged by whole pixels so a one-second
preview is not a thumbnail.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torchaudio

#: Mel bands (image rows before enlarging).
N_MELS = 64
#: Dynamic range shown, in dB below the loudest bin.
TOP_DB = 80.0
#: Images are enlarged by whole pixels until at least this wide (at most 8 times).
MIN_WIDTH = 384
#: Rows per mel band.
ROW_SCALE = 3

# Anchor colours of a magma-like map, dark (quiet) to bright (loud).
_ANCHORS = torch.tensor(
    [
        [0.001, 0.000, 0.014],
        [0.232, 0.060, 0.438],
        [0.550, 0.161, 0.506],
        [0.868, 0.288, 0.409],
        [0.994, 0.624, 0.427],
        [0.987, 0.991, 0.750],
    ]
)


def fft_size(sample_rate: int) -> int:
    """A power of two close to 46 ms at ``sample_rate`` (1024 at 22.05 kHz)."""
    return 2 ** max(6, round(math.log2(sample_rate * 0.046)))


@lru_cache(maxsize=8)
def mel_transform(sample_rate: int) -> torchaudio.transforms.MelSpectrogram:
    """The (cached) mel transform for one sample rate."""
    n_fft = fft_size(sample_rate)
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate,
        n_fft=n_fft,
        hop_length=n_fft // 4,
        n_mels=N_MELS,
        f_min=0.0,
        f_max=sample_rate / 2,
        power=2.0,
    )


def normalised_mel(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Log-power mel spectrogram of mono ``audio`` scaled to [0, 1], shape ``(N_MELS, frames)``.

    Row 0 is the highest band (image orientation). Silence gives an all-zero picture.
    """
    audio = torch.as_tensor(audio, dtype=torch.float32).reshape(-1)
    audio = torch.nan_to_num(audio)
    transform = mel_transform(int(sample_rate))
    if audio.numel() < transform.n_fft:  # centred frames need at least half a window either side
        audio = torch.nn.functional.pad(audio, (0, transform.n_fft - audio.numel()))
    with torch.no_grad():
        power = transform(audio)
    db = 10.0 * torch.log10(power.clamp(min=1e-10))
    top = db.max()
    db = db.clamp(min=float(top) - TOP_DB)
    low = db.min()
    if float(top - low) <= 1e-6:
        return torch.zeros_like(db)
    return ((db - low) / (top - low)).flip(0)


def colourise(values: torch.Tensor) -> torch.Tensor:
    """Map values in [0, 1] (H, W) to RGB colours, shape (3, H, W), still in [0, 1]."""
    position = values.clamp(0.0, 1.0) * (len(_ANCHORS) - 1)
    index = position.floor().long().clamp(max=len(_ANCHORS) - 2)
    weight = (position - index).unsqueeze(-1)
    colours = _ANCHORS[index] * (1 - weight) + _ANCHORS[index + 1] * weight
    return colours.permute(2, 0, 1).contiguous()


def mel_image(audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """An RGB picture of the mel spectrogram of mono ``audio``: (3, H, W) floats in [0, 1]."""
    picture = normalised_mel(audio, sample_rate)
    frames = picture.shape[1]
    widen = max(1, min(8, math.ceil(MIN_WIDTH / max(frames, 1))))
    picture = picture.repeat_interleave(ROW_SCALE, dim=0).repeat_interleave(widen, dim=1)
    return colourise(picture)
