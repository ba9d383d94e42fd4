"""Mel-spectrogram pictures of preview audio."""

from __future__ import annotations

import pytest
import torch
from sda_tensorboard import mel_image
from sda_tensorboard.spectrogram import N_MELS, ROW_SCALE, fft_size, mel_transform, normalised_mel


def tone(frequency: float, rate: int, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(rate * seconds)) / rate
    return 0.5 * torch.sin(2 * torch.pi * frequency * t)


@pytest.mark.parametrize("rate, n_fft", [(8000, 512), (22050, 1024), (44100, 2048), (48000, 2048)])
def test_the_window_is_about_46_ms(rate, n_fft):
    assert fft_size(rate) == n_fft


def test_transforms_are_cached_per_sample_rate():
    assert mel_transform(8000) is mel_transform(8000)
    assert mel_transform(8000) is not mel_transform(16000)


def test_normalised_to_the_unit_range_with_low_frequencies_at_the_bottom():
    picture = normalised_mel(tone(200.0, 8000), 8000)
    assert picture.shape[0] == N_MELS and picture.shape[1] > 10
    assert float(picture.min()) == 0.0 and float(picture.max()) == pytest.approx(1.0)
    loudest_row = int(picture.mean(dim=1).argmax())
    assert loudest_row > N_MELS // 2  # a low tone lights up the lower half of the picture


def test_an_rgb_picture_in_the_unit_range():
    image = mel_image(tone(1000.0, 22050), 22050)
    assert image.shape[0] == 3 and image.shape[1] == N_MELS * ROW_SCALE and image.shape[2] >= 384
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


@pytest.mark.parametrize("audio", [torch.zeros(8000), torch.zeros(10), torch.tensor([float("nan")] * 100)])
def test_silence_short_or_broken_audio_gives_a_dark_picture(audio):
    picture = normalised_mel(audio, 8000)
    assert picture.shape[0] == N_MELS and torch.all(picture == 0)
    assert torch.isfinite(mel_image(audio, 8000)).all()
