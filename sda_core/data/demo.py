"""A built-in demo dataset: twelve short, varied, instrument-like sounds synthesised with numpy.

:func:`synthesize_demo_dataset` writes them as 16-bit WAV files. The output is deterministic (every
random draw comes from a fixed seed), so two runs write byte-identical files. Like a real small
dataset it is mixed: durations from 0.5 s to 3 s, one stereo file, and one file at 44100 Hz.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile

PEAK = 10 ** (-1 / 20)
"""Peak level of every sound: -1 dBFS."""

HIGH_SAMPLE_RATE = 44100

_Synth = Callable[[int, np.random.Generator], np.ndarray]


def synthesize_demo_dataset(dest: Path, sample_rate: int = 22050) -> list[Path]:
    """Write the twelve demo sounds into ``dest`` and return their paths, sorted.

    The folder is created when missing; files already there with the same names are overwritten
    and nothing else is written or removed. ``bell_glass.wav`` is always written at 44100 Hz, every
    other file at ``sample_rate``; ``pad_wide.wav`` is stereo, the rest mono.
    """
    if sample_rate < 8000:
        raise ValueError(f"sample_rate {sample_rate} is too low; use 8000 Hz or more")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for seed, (name, rate, synth) in enumerate(_sounds(sample_rate)):
        rng = np.random.default_rng(1000 + seed)
        audio = _finish(synth(rate, rng), rate)
        path = dest / f"{name}.wav"
        soundfile.write(path, _to_pcm16(audio), rate, subtype="PCM_16", format="WAV")
        written.append(path)
    return sorted(written)


def _sounds(sample_rate: int) -> list[tuple[str, int, _Synth]]:
    return [
        ("pluck_a2", sample_rate, lambda sr, rng: _pluck(110.0, 2.0, 0.996, sr, rng)),
        ("pluck_e3", sample_rate, lambda sr, rng: _pluck(164.81, 1.5, 0.994, sr, rng)),
        ("pluck_a4", sample_rate, lambda sr, rng: _pluck(440.0, 1.0, 0.990, sr, rng)),
        ("bell_c5", sample_rate, lambda sr, rng: _bell(523.25, 2.5, sr, rng)),
        ("bell_low", sample_rate, lambda sr, rng: _bell(196.0, 3.0, sr, rng)),
        ("bell_glass", HIGH_SAMPLE_RATE, lambda sr, rng: _bell(1318.5, 2.0, sr, rng)),
        ("drum_kick", sample_rate, lambda sr, rng: _kick(0.5, sr)),
        ("drum_snare", sample_rate, lambda sr, rng: _snare(0.5, sr, rng)),
        ("drum_hat", sample_rate, lambda sr, rng: _hat(0.5, sr, rng)),
        ("drum_tom", sample_rate, lambda sr, rng: _tom(0.8, sr, rng)),
        ("pad_minor", sample_rate, lambda sr, rng: _pad((220.0, 261.63, 329.63), 2.5, sr, rng, stereo=False)),
        ("pad_wide", sample_rate, lambda sr, rng: _pad((146.83, 220.0, 293.66, 369.99), 3.0, sr, rng, stereo=True)),
    ]


def _time(duration: float, sr: int) -> np.ndarray:
    return np.arange(int(round(duration * sr))) / sr


def _pluck(frequency: float, duration: float, decay: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Karplus-Strong plucked string, computed one period at a time."""
    total = int(round(duration * sr))
    period = max(2, int(round(sr / frequency)))
    previous = rng.uniform(-1.0, 1.0, period)
    previous -= previous.mean()
    blocks = [previous]
    carry = previous[-1]
    while sum(len(block) for block in blocks) < total:
        delayed = np.concatenate(([carry], previous[:-1]))
        carry = previous[-1]
        previous = decay * 0.5 * (previous + delayed)
        blocks.append(previous)
    return np.concatenate(blocks)[:total]


def _bell(frequency: float, duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Additive bell: inharmonic partials, higher ones quieter and decaying faster."""
    t = _time(duration, sr)
    ratios = (0.56, 0.92, 1.19, 1.71, 2.0, 2.74, 3.0, 3.76, 4.07)
    amplitudes = (1.0, 0.67, 1.0, 1.8, 2.67, 1.67, 1.46, 1.33, 1.33)
    out = np.zeros_like(t)
    nyquist = sr / 2
    for ratio, amplitude in zip(ratios, amplitudes):
        partial = frequency * ratio * (1 + rng.uniform(-0.002, 0.002))
        if partial >= 0.9 * nyquist:
            continue
        decay_time = duration * 0.6 / ratio
        phase = rng.uniform(0, 2 * np.pi)
        out += amplitude * np.exp(-t / decay_time) * np.sin(2 * np.pi * partial * t + phase)
    attack = np.minimum(1.0, t / 0.002)
    return out * attack


def _kick(duration: float, sr: int) -> np.ndarray:
    """Sine whose pitch sweeps from 150 Hz down to 45 Hz, with a fast decay."""
    t = _time(duration, sr)
    frequency = 45.0 + 105.0 * np.exp(-t / 0.04)
    phase = 2 * np.pi * np.cumsum(frequency) / sr
    return np.sin(phase) * np.exp(-t / 0.15)


def _snare(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Band-limited noise burst plus a short 185 Hz tone."""
    t = _time(duration, sr)
    noise = _filter(rng.standard_normal(len(t)), sr, low=1500.0, high=min(9000.0, 0.45 * sr))
    noise /= np.max(np.abs(noise))
    tone = np.sin(2 * np.pi * 185.0 * t) * np.exp(-t / 0.05)
    return 0.8 * noise * np.exp(-t / 0.09) + 0.6 * tone


def _hat(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """High-passed noise with a very short decay."""
    t = _time(duration, sr)
    noise = _filter(rng.standard_normal(len(t)), sr, low=min(7000.0, 0.3 * sr))
    return noise * np.exp(-t / 0.04)


def _tom(duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Pitch-swept sine from 160 Hz to 95 Hz with a little low-passed noise at the attack."""
    t = _time(duration, sr)
    frequency = 95.0 + 65.0 * np.exp(-t / 0.08)
    body = np.sin(2 * np.pi * np.cumsum(frequency) / sr) * np.exp(-t / 0.25)
    noise = _filter(rng.standard_normal(len(t)), sr, high=3000.0)
    noise /= np.max(np.abs(noise))
    return body + 0.3 * noise * np.exp(-t / 0.02)


def _pad(
    frequencies: tuple[float, ...], duration: float, sr: int, rng: np.random.Generator, stereo: bool
) -> np.ndarray:
    """Chord of detuned saw and sine voices with a slow attack and release, low-passed."""
    t = _time(duration, sr)
    channels = []
    for _channel in range(2 if stereo else 1):
        mix = np.zeros_like(t)
        for frequency in frequencies:
            for cents in (-7.0, 0.0, 7.0):
                detuned = frequency * 2 ** ((cents + rng.uniform(-2.0, 2.0)) / 1200)
                offset = rng.uniform(0.0, 1.0)
                saw = 2.0 * ((detuned * t + offset) % 1.0) - 1.0
                mix += 0.5 * saw + 0.5 * np.sin(2 * np.pi * (detuned * t + offset))
        channels.append(_filter(mix, sr, high=1200.0))
    audio = np.stack(channels, axis=1) if stereo else channels[0]
    envelope = np.minimum(1.0, t / (0.4 * duration)) * np.minimum(1.0, (duration - t) / (0.25 * duration))
    return audio * (envelope[:, None] if stereo else envelope)


def _filter(signal: np.ndarray, sr: int, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Zero-phase Butterworth-shaped high-pass (``low``) and/or low-pass (``high``) via the FFT."""
    spectrum = np.fft.rfft(signal)
    frequencies = np.fft.rfftfreq(len(signal), 1 / sr)
    gain = np.ones_like(frequencies)
    if high is not None:
        gain /= np.sqrt(1 + (frequencies / high) ** 8)
    if low is not None:
        with np.errstate(divide="ignore"):
            gain /= np.sqrt(1 + (low / np.maximum(frequencies, 1e-9)) ** 8)
        gain[0] = 0.0
    return np.fft.irfft(spectrum * gain, n=len(signal))


def _finish(audio: np.ndarray, sr: int) -> np.ndarray:
    """Remove DC, fade the last 10 ms out and normalise the peak to -1 dBFS."""
    audio = audio - audio.mean(axis=0)
    fade = min(len(audio), int(0.01 * sr))
    ramp = np.linspace(1.0, 0.0, fade)
    audio[len(audio) - fade :] *= ramp[:, None] if audio.ndim == 2 else ramp
    peak = np.max(np.abs(audio))
    if not np.isfinite(peak) or peak == 0:
        raise RuntimeError("demo synthesis produced silence or non-finite samples")
    return audio * (PEAK / peak)


def _to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
