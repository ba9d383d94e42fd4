"""Reference plugin for ``sda_augmentations``: cheap, picklable augmentations of training chunks.

Contributes, in this order (see docs/augmentation.md for the ranges at each preset):

========== ============================================================ ===========
name       what it does                                                 probability
========== ============================================================ ===========
speed      tape-style speed and pitch change by resampling (+-2 st)     0.3
shift      small time shift, circular or zero-filled (+-0.1 s)          0.3
filter     one of: 2nd-order low-pass, high-pass, or spectral tilt      0.3
gain       gain (+-6 dB)                                                0.5
polarity   polarity flip                                                0.5
noise      white or pink noise at an SNR of 20 to 40 dB (off by default) 0.3
burst      a decaying burst of band-limited noise                      0.3
========== ============================================================ ===========

``noise`` is off unless ``enabled`` names it: a generative model reconstructs its augmented
chunks, so it learns to make the noise floor it was shown (see :data:`DEFAULT_ENABLED`).
``burst`` (on by default) shows the model broadband sound that a small set of tonal recordings
never does, so it can reconstruct noisy sounds it was not trained on (see :class:`NoiseBurst`).

Every range is the full-strength range scaled by ``config.augmentation_strength`` (0 turns the
plugin off), so the adaptive presets scale them too: CONSERVATIVE (strength 1.0) augments most,
BALANCED 0.7, AGGRESSIVE 0.4. The probabilities do not scale.

Settings, in ``[plugins.augmentations]`` of sda.toml (or ``--set plugins.augmentations.KEY=...``)::

    enabled = ["gain", "noise", "filter"]      # a subset of the names above (default: all but noise)
    noise_colors = ["white", "pink"]           # which noise colours may be drawn
    filter_modes = ["lowpass", "highpass", "tilt"]
    shift_mode = "circular"                    # or "zero" (zero-filled)
    [plugins.augmentations.probability]        # per-transform probability overrides
    gain = 0.8

Everything is numpy: no transform calls torch, so none depends on torch's thread pool (with two
threads torchaudio's ``lfilter`` took 4 ms per second of audio here, the FFT below 0.3 ms).
Filters are the exact frequency responses of RBJ biquads applied by FFT with enough zero padding
for the impulse response to decay (equal to an IIR filter from rest, to -100 dB). The speed
change is a windowed-sinc polyphase resampler (the kernel ``torchaudio.functional.resample``
uses) for changes quantised to 0.1 semitone, each ratio a fraction with a denominator of at most
200 and each kernel cached per process; never ``torchaudio.functional.pitch_shift``, which took 25 s per second of audio.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import attrs

from sda_core import hookimpl, plugin_settings
from sda_core import validators as v
from sda_core.config import TrainingConfig
from sda_core.errors import ConfigError

if TYPE_CHECKING:  # numpy is imported where a transform runs: loading the plugin stays light
    import numpy as np

    from sda_core.data.augmentation import Params

#: The plugin's entry-point name, and so the key of its settings table.
PLUGIN_NAME = "augmentations"
#: Transform names, in the order they are applied.
TRANSFORM_NAMES = ("speed", "shift", "filter", "gain", "polarity", "noise", "burst")
#: The transforms used unless ``enabled`` says otherwise: all but ``noise``. Measured
#: with the wave_vae default (``sda evaluate``, 64 sounds): on the 36 real sounds, training without
#: the noise transform gave resemblance 0.01 (with it 0.05), 1-NN accuracy 0.79 (0.85),
#: reconstruction 2.44 (2.85); on the demo set, two seeds, reconstruction 3.20 and 3.27 (4.07 and
#: 4.21) and 1-NN 0.83 and 0.92 (0.89 and 0.94), diversity 0.51 and 0.52 (0.76 and 0.77): the samples
#: of a model shown noisy chunks carry broadband noise up to Nyquist where the data is silent.
#: ``burst`` is on since the reference model has local codes: it took the demo set's validation
#: reconstruction from 3.17 to 2.45 (figures in docs/augmentation.md).
DEFAULT_ENABLED = ("speed", "shift", "filter", "gain", "polarity", "burst")
#: The probability of each transform, applied to a chunk the pipeline augments.
DEFAULT_PROBABILITIES = {
    "speed": 0.3,
    "shift": 0.3,
    "filter": 0.3,
    "gain": 0.5,
    "polarity": 0.5,
    "noise": 0.3,
    "burst": 0.3,
}
NOISE_COLORS = ("white", "pink")
FILTER_MODES = ("lowpass", "highpass", "tilt")
SHIFT_MODES = ("circular", "zero")

#: Ranges at augmentation_strength 1; each scales linearly with the strength.
FULL_STRENGTH = {
    "gain_db": 6.0,  # gain drawn from +-this
    "snr_span_db": 20.0,  # lowest SNR = NOISE_MAX_SNR_DB - this
    "lowpass_octaves": 1.5,  # low-pass cutoff down to this many octaves below LOWPASS_MAX_HZ
    "highpass_span_hz": 380.0,  # high-pass cutoff up to HIGHPASS_MIN_HZ + this
    "tilt_db": 6.0,  # spectral tilt (treble minus bass) drawn from +-this
    "shift_seconds": 0.1,  # time shift drawn from +-this
    "semitones": 2.0,  # speed/pitch change drawn from +-this
    "burst_level_span_db": 18.0,  # a noise burst's level up to BURST_MIN_LEVEL_DB + this
}
NOISE_MAX_SNR_DB = 40.0
#: The quietest noise burst, in dB relative to the chunk's RMS.
BURST_MIN_LEVEL_DB = -6.0
#: Noise bursts: the lowest band edge drawn, the RMS a burst is relative to in a silent chunk,
#: the highest RMS at its attack, and the attack's length.
BURST_LOWEST_HZ = 80.0
BURST_SILENT_REFERENCE = 0.1
BURST_MAX_RMS = 0.3
BURST_ATTACK_SECONDS = 0.002
LOWPASS_MAX_HZ = 12000.0
HIGHPASS_MIN_HZ = 20.0
TILT_PIVOT_HZ = 1000.0
#: Filters and noise stay below this fraction of the sample rate (0.5 is Nyquist).
MAX_CUTOFF_FRACTION = 0.45
#: Speed changes are drawn on a grid of this many semitones: a small set of ratios (and kernels).
SEMITONE_STEP = 0.1
#: Each ratio is a fraction p/q with q at most this (polyphase kernels of at most ~210 x 200 taps).
MAX_RATIO_DENOMINATOR = 200
#: OpenBLAS runs a matrix product on several threads above 65536 * 4 multiply-adds; the resampler
#: stays below, so it is single-threaded (and bit-identical) in every process, whatever the load.
_SINGLE_THREAD_PRODUCT = 200_000
#: Fade (seconds) where resampled audio meets the zero padding after a speed-up.
FADE_SECONDS = 0.005


# -- transforms -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Gain:
    """Multiply by a gain drawn uniformly in decibels from ``[min_db, max_db]``.

    Params: ``gain_db``.
    """

    min_db: float = -6.0
    max_db: float = 6.0
    probability: float = 0.5
    name: str = "gain"

    def sample(self, rng: np.random.Generator, sample_rate: int) -> Params:
        """Draw ``gain_db``."""
        return {"gain_db": float(rng.uniform(self.min_db, self.max_db))}

    def apply(self, audio: np.ndarray, params: Params, sample_rate: int) -> np.ndarray:
        """Scale ``audio`` in place by ``10 ** (gain_db / 20)``."""
        import numpy as np

        audio *= np.float32(10.0 ** (params["gain_db"] / 20.0))
        return audio


@dataclass(frozen=True)
class PolarityFlip:
    """Invert the polarity (multiply by -1). No parameters; inaudible alone, not in mixtures."""

    probability: float = 0.5
    name: str = "polarity"

    def sample(self, rng: np.random.Generator, sample_rate: int) -> Params:
        """Nothing to draw."""
        return {}

    def apply(self, audio: np.ndarray, params: Params, sample_rate: int) -> np.ndarray:
        """Negate ``audio`` in place."""
        import numpy as np

        np.negative(audio, out=audio)
        return audio


@dataclass(frozen=True)
class AddNoise:
    """Add white or pink noise at a signal-to-noise ratio drawn from ``[min_snr_db, max_snr_db]``.

    The SNR is relative to the chunk's mean power over all channels, so a silent chunk stays
    silent. Pink noise (equal power per octave) is shaped in the frequency domain and has no
    energy below 20 Hz. Params: ``snr_db``, ``color``, ``seed`` (of the noise generator).
    """

    min_snr_db: float = 20.0
    max_snr_db: float = 40.0
    colors: tuple[str, ...] = NOISE_COLORS
    probability: float = 0.3
    name: str = "noise"

    def sample(self, rng: np.random.Generator, sample_rate: int) -> Params:
        """Draw ``snr_db``, a ``color`` and the ``seed`` the noise is generated from."""
        return {
            "snr_db": float(rng.uniform(self.min_snr_db, self.max_snr_db)),
            "color": self.colors[int(rng.integers(len(self.colors)))],
            "seed": int(rng.integers(2**63)),
        }

    def apply(self, audio: np.ndarray, params: Params, sample_rate: int) -> np.ndarray:
        """Add the noise in place."""
        import numpy as np

        flat = audio.reshape(-1)
        power = float(np.dot(flat, flat)) / max(flat.size, 1)
        if not power > 1e-12:  # silence (or nothing): nothing to be relative to
            return audio
        rng = np.random.default_rng(params["seed"])
        if params["color"] == "pink":
            noise = _pink_noise(rng, audio.shape, sample_rate)
        else:
            noise = rng.standard_normal(audio.shape, dtype=np.float32)
        noise_flat = noise.reshape(-1)
        noise_power = float(np.dot(noise_flat, noise_flat)) / noise_flat.size
        if not noise_power > 0.0:
            return audio
        noise *= np.float32(math.sqrt(power / (noise_power * 10.0 ** (params["snr_db"] / 10.0))))
        audio += noise
        return audio


@dataclass(frozen=True)
class NoiseBurst:
    """Add one burst of band-limited noise: a 2 ms attack at a random moment, then an exponential
    decay (a hi-hat, a snare's rattle, a breath, a scrape).

    Small sets of tonal sounds never show a model broadband energy, so their autoencoder cannot
    make it: handed a hi-hat (``--like``, ``sda evaluate``'s reconstruction of unseen sounds) it
    answers with tonal lines below 5 kHz. A short burst, unlike a noise floor (:class:`AddNoise`),
    leaves most of the chunk as it was. The burst's level is relative to the chunk's RMS (to
    -20 dBFS for a silent chunk) and its RMS at the attack is at most :data:`BURST_MAX_RMS`;
    each channel gets its own noise. Params: ``onset`` (fraction of the chunk), ``decay_seconds``,
    ``low_hz``, ``high_hz`` (the band's 2nd-order edges), ``level_db`` and ``seed``.
    """

    min_level_db: float = BURST_MIN_LEVEL_DB
    max_level_db: float = BURST_MIN_LEVEL_DB + FULL_STRENGTH["burst_level_span_db"]
    min_decay_seconds: float = 0.02
    max_decay_seconds: float = 0.5
    probability: float = 0.3
    name: str = "burst"

    def sample(self, rng: np.random.Generator, sample_rate: int) -> Params:
        """Draw the onset, decay, band, level and the noise's seed."""
        top = MAX_CUTOFF_FRACTION * sample_rate
        low = _log_uniform(rng, BURST_LOWEST_HZ, top / 2.0)
        return {
            "onset": float(rng.uniform(0.0, 0.8)),
            "decay_seconds": _log_uniform(rng, self.min_decay_seconds, self.max_decay_seconds),
            "low_hz": low,
            "high_hz": min(low * 2.0 ** float(rng.uniform(1.0, 7.0)), top),
            "level_db": float(rng.uniform(self.min_level_db, self.max_level_db)),
            "seed": int(rng.integers(2**63)),
        }

    def apply(self, audio: np.ndarray, params: Params, sample_rate: int) -> np.ndarray:
        """Add the burst in place."""
        import numpy as np

        channels, length = audio.shape
        start = min(int(params["onset"] * length), length - 1)
        span = length - start
        flat = audio.reshape(-1)
        power = float(np.dot(flat, flat)) / max(flat.size, 1)
        reference = math.sqrt(power) if power > 1e-10 else BURST_SILENT_REFERENCE
        rms = min(reference * 10.0 ** (params["level_db"] / 20.0), BURST_MAX_RMS)
        size = _fast_length(span)  # noise is noise: shaped at a fast FFT length, then cut
        rng = np.random.default_rng(params["seed"])
        spectrum = np.fft.rfft(rng.standard_normal((channels, size), dtype=np.float32), axis=-1)
        spectrum *= _band_response(size, sample_rate, params["low_hz"], params["high_hz"])
        noise = np.fft.irfft(spectrum, n=size, axis=-1)[:, :span]
        noise /= max(float(np.sqrt(np.mean(noise**2))), 1e-12)
        time = np.arange(span) / sample_rate
        envelope = np.exp(-time / params["decay_seconds"]) * np.minimum(time / BURST_ATTACK_SECONDS, 1.0)
        audio[:, start:] += (noise * (rms * envelope)).astype(np.float32)
        return audio


@dataclass(frozen=True)
class Filter:
    """One filter, its mode drawn from ``modes``.

    * ``lowpass``: 2nd-order Butterworth low-pass (12 dB/octave), cutoff log-uniform from
      ``lowpass_octaves`` octaves below the top down to the top, the top being
      ``min(lowpass_max_hz, 0.45 * sample_rate)``.
    * ``highpass``: 2nd-order Butterworth high-pass, cutoff log-uniform in
      ``[highpass_min_hz, highpass_max_hz]``.
    * ``tilt``: a gentle 2nd-order shelf around ``tilt_pivot_hz`` giving the treble ``tilt_db``
      more than the bass (half up, half down, so the loudness barely changes); ``tilt_db`` is
      drawn from ``+-max_tilt_db``.

    Params: ``mode`` and ``cutoff_hz`` (low/high-pass) or ``tilt_db`` and ``pivot_hz`` (tilt).
    """

    modes: tuple[str, ...] = FILTER_MODES
    lowpass_max_hz: float = LOWPASS_MAX_HZ
    lowpass_octaves: float = 1.5
    highpass_min_hz: float = HIGHPASS_MIN_HZ
    highpass_max_hz: float = HIGHPASS_MIN_HZ + 380.0
    max_tilt_db: float = 6.0
    tilt_pivot_hz: float = TILT_PIVOT_HZ
    probability: float = 0.3
    name: str = "filter"

    def sample(self, rng: np.random.Generator, sample_rate: int) -> Params:
        """Draw the ``mode`` and its frequency or tilt."""
        mode = self.modes[int(rng.integers(len(self.modes)))]
        top = MAX_CUTOFF_FRACTION * sample_rate
        if mode == "lowpass":
            high = min(self.lowpass_max_hz, top)
            low = high * 2.0**-self.lowpass_octaves
            return {"mode": mode, "cutoff_hz": _log_uniform(rng, low, high)}
        if mode == "highpass":
            high = min(self.highpass_max_hz, top)
            low = min(self.highpass_min_hz, high)
            return {"mode": mode, "cutoff_hz": _log_uniform(rng, low, high)}
        return {
            "mode": "tilt",
            "tilt_db": float(rng.uniform(-self.max_tilt_db, self.max_tilt_db)),
            "pivot_hz": min(self.tilt_pivot_hz, 0.25 * sample_rate),
        }

    def apply(self, audio: np.ndarray, params: Params, sample_rate: int) -> np.ndarray:
        """Filter ``audio`` (a new array)."""
        mode = params["mode"]
        if mode == "tilt":
            b, a = _tilt_coefficients(params["tilt_db"], params["pivot_hz"], sample_rate)
        else:
            b, a = _pass_coefficients(mode, params["cutoff_hz"], sample_rate)
        return apply_biquad(audio, b, a)


@dataclass(frozen=True)
class TimeShift:
    """Shift in time by up to ``max_seconds`` either way.

    ``mode="circular"`` rolls the chunk (what leaves one end comes back at the other);
    ``mode="zero"`` fills the gap with silence. Params: ``shift_samples`` (positive: later),
    ``shift_seconds`` and ``mode``.
    """

    max_seconds: float = 0.1
    mode: str = "circular"
    probability: float = 0.3
    name: str = "shift"

    def sample(self, rng: np.random.Generator, sample_rate: int) -> Params:
        """Draw the shift, rounded to whole samples."""
        samples = int(round(rng.uniform(-self.max_seconds, self.max_seconds) * sample_rate))
        return {"shift_samples": samples, "shift_seconds": samples / sample_rate, "mode": self.mode}

    def apply(self, audio: np.ndarray, params: Params, sample_rate: int) -> np.ndarray:
        """Shift ``audio`` (a new array unless the shift is 0)."""
        import numpy as np

        shift = int(params["shift_samples"])
        length = audio.shape[-1]
        if shift == 0 or length == 0:
            return audio
        if params["mode"] == "circular":
            return np.roll(audio, shift, axis=-1)
        out = np.zeros_like(audio)
        if abs(shift) < length:
            if shift > 0:
                out[:, shift:] = audio[:, : length - shift]
            else:
                out[:, : length + shift] = audio[:, -shift:]
        return out


@dataclass(frozen=True)
class SpeedPitch:
    """Play faster or slower, like a tape: pitch and speed change together, by resampling.

    The change is drawn uniformly in ``+-max_semitones`` and rounded to ``step_semitones``
    (0.1), so at most a few dozen ratios occur; each is the nearest fraction
    ``resample_from / resample_to`` with a denominator of at most ``max_denominator`` (200;
    within 0.002 semitones), resampled with a windowed-sinc polyphase kernel cached per process
    (at most ~130 kB each), and fitted back to
    the chunk's length: a slow-down (longer) is cropped at ``offset`` (0: the start, 1: the end
    of the possible windows), a speed-up (shorter) is zero-padded after a 5 ms fade-out.
    Params: ``semitones`` and ``speed`` (exact, after quantisation), ``resample_from``,
    ``resample_to``, ``offset``.
    """

    max_semitones: float = 2.0
    step_semitones: float = SEMITONE_STEP
    max_denominator: int = MAX_RATIO_DENOMINATOR
    probability: float = 0.3
    name: str = "speed"

    def sample(self, rng: np.random.Generator, sample_rate: int) -> Params:
        """Draw the change and the crop offset; report the quantised change exactly."""
        drawn = float(rng.uniform(-self.max_semitones, self.max_semitones))
        offset = float(rng.random())
        step = self.step_semitones
        semitones = round(drawn / step) * step if step > 0 else drawn
        return speed_params(semitones, offset, self.max_denominator)

    def apply(self, audio: np.ndarray, params: Params, sample_rate: int) -> np.ndarray:
        """Resample by the ratio and fit back to the original length (a new array)."""
        import numpy as np

        source, target = int(params["resample_from"]), int(params["resample_to"])
        length = audio.shape[-1]
        if source == target or length == 0:
            return audio
        resampled = resample_poly(audio, source, target)
        produced = resampled.shape[-1]
        if produced >= length:
            start = int(params["offset"] * (produced - length))
            return np.ascontiguousarray(resampled[:, start : start + length])
        out = np.zeros_like(audio)
        out[:, :produced] = resampled
        fade = min(produced, int(round(FADE_SECONDS * sample_rate)))
        if fade > 1:
            out[:, produced - fade : produced] *= _fade_out(fade)
        return out


def speed_params(semitones: float, offset: float = 0.0, max_denominator: int = MAX_RATIO_DENOMINATOR) -> Params:
    """The :class:`SpeedPitch` params for a change of about ``semitones`` (positive: higher, faster)."""
    # Output samples per input sample: 1 / speed.
    ratio = Fraction(2.0 ** (-semitones / 12.0)).limit_denominator(max_denominator)
    source, target = ratio.denominator, ratio.numerator
    speed = source / target
    return {
        "semitones": 12.0 * math.log2(speed),
        "speed": speed,
        "resample_from": source,
        "resample_to": target,
        "offset": float(offset),
    }


# -- signal processing helpers --------------------------------------------------------------


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    if high <= low:
        return float(low)
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


@lru_cache(maxsize=16)
def _fade_out(length: int) -> np.ndarray:
    import numpy as np

    return np.linspace(1.0, 0.0, length, dtype=np.float32)


@lru_cache(maxsize=64)
def _sinc_kernel(source: int, target: int, zero_crossings: int = 6, rolloff: float = 0.99) -> tuple[np.ndarray, int]:
    """The polyphase windowed-sinc (Hann) kernel, shape (taps, target), and its half width.

    The same kernel as ``torchaudio.functional.resample(..., lowpass_filter_width=6,
    rolloff=0.99, resampling_method="sinc_interp_hann")``; cached per process.
    """
    import numpy as np

    base = min(source, target) * rolloff
    width = math.ceil(zero_crossings * source / base)
    positions = np.arange(-width, width + source, dtype=np.float64)[np.newaxis, :] / source
    phases = np.arange(target, dtype=np.float64)[:, np.newaxis] / target
    t = np.clip((positions - phases) * base, -zero_crossings, zero_crossings)
    window = np.cos(t * np.pi / zero_crossings / 2.0) ** 2
    t *= np.pi
    safe = np.where(t == 0.0, 1.0, t)
    kernel = np.where(t == 0.0, 1.0, np.sin(safe) / safe) * window * (base / source)
    return np.ascontiguousarray(kernel.T, dtype=np.float32), width


def resample_poly(audio: np.ndarray, source: int, target: int) -> np.ndarray:
    """Resample ``audio`` (channels, samples) by ``target / source`` (small coprime integers).

    Returns ``ceil(samples * target / source)`` samples per channel, float32, matching
    ``torchaudio.functional.resample(audio, source, target)``.
    """
    import numpy as np

    channels, length = audio.shape
    kernel, width = _sinc_kernel(source, target)
    taps = kernel.shape[0]
    padded = np.zeros((channels, length + 2 * width + source), dtype=np.float32)
    padded[:, width : width + length] = audio
    frames = np.lib.stride_tricks.sliding_window_view(padded, taps, axis=-1)[:, ::source, :]
    frames = np.ascontiguousarray(frames).reshape(-1, taps)  # (channels * frames, taps)
    out = np.empty((frames.shape[0], target), dtype=np.float32)
    rows = max(1, _SINGLE_THREAD_PRODUCT // (taps * target))
    for start in range(0, frames.shape[0], rows):
        np.matmul(frames[start : start + rows], kernel, out=out[start : start + rows])
    produced = -(-target * length // source)
    return out.reshape(channels, -1)[:, :produced]


def _pass_coefficients(mode: str, cutoff_hz: float, sample_rate: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """RBJ cookbook 2nd-order Butterworth (Q = 1/sqrt 2) low- or high-pass, a0 normalised to 1."""
    w0 = 2.0 * math.pi * cutoff_hz / sample_rate
    cos_w, alpha = math.cos(w0), math.sin(w0) / (2.0 * math.sqrt(0.5))
    a0 = 1.0 + alpha
    if mode == "lowpass":
        b = ((1.0 - cos_w) / 2.0, 1.0 - cos_w, (1.0 - cos_w) / 2.0)
    elif mode == "highpass":
        b = ((1.0 + cos_w) / 2.0, -(1.0 + cos_w), (1.0 + cos_w) / 2.0)
    else:
        raise ValueError(f"unknown filter mode {mode!r}; expected one of {', '.join(FILTER_MODES)}")
    return tuple(x / a0 for x in b), (1.0, -2.0 * cos_w / a0, (1.0 - alpha) / a0)


def _tilt_coefficients(
    tilt_db: float, pivot_hz: float, sample_rate: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """RBJ high shelf (slope 0.5) of ``tilt_db``, shifted down by half of it: a symmetric tilt."""
    amp = 10.0 ** (tilt_db / 40.0)
    w0 = 2.0 * math.pi * pivot_hz / sample_rate
    cos_w = math.cos(w0)
    alpha = math.sin(w0) / 2.0 * math.sqrt((amp + 1.0 / amp) * (1.0 / 0.5 - 1.0) + 2.0)
    root = 2.0 * math.sqrt(amp) * alpha
    b0 = amp * ((amp + 1.0) + (amp - 1.0) * cos_w + root)
    b1 = -2.0 * amp * ((amp - 1.0) + (amp + 1.0) * cos_w)
    b2 = amp * ((amp + 1.0) + (amp - 1.0) * cos_w - root)
    a0 = (amp + 1.0) - (amp - 1.0) * cos_w + root
    a1 = 2.0 * ((amp - 1.0) - (amp + 1.0) * cos_w)
    a2 = (amp + 1.0) - (amp - 1.0) * cos_w - root
    centre = 10.0 ** (-tilt_db / 40.0) / a0
    return (b0 * centre, b1 * centre, b2 * centre), (1.0, a1 / a0, a2 / a0)


def _decay_length(a: Sequence[float], floor: float = 1e-5) -> int:
    """Samples for the impulse response of ``1 / (1 + a1 z^-1 + a2 z^-2)`` to fall below ``floor``."""
    _, a1, a2 = a
    discriminant = a1 * a1 - 4.0 * a2
    if discriminant < 0:
        radius = math.sqrt(max(a2, 0.0))
    else:
        root = math.sqrt(discriminant)
        radius = max(abs((-a1 + root) / 2.0), abs((-a1 - root) / 2.0))
    if radius <= 0.0:
        return 3
    if radius >= 1.0:
        return 1 << 16
    return min(1 << 16, int(math.ceil(math.log(floor) / math.log(radius))) + 3)


@lru_cache(maxsize=1)
def _smooth_numbers(limit: int = 1 << 26) -> np.ndarray:
    """Every 5-smooth number (2^a 3^b 5^c) up to ``limit``, sorted: the fast FFT sizes."""
    import numpy as np

    values = []
    power5 = 1
    while power5 <= limit:
        power35 = power5
        while power35 <= limit:
            value = power35
            while value <= limit:
                values.append(value)
                value *= 2
            power35 *= 3
        power5 *= 5
    return np.array(sorted(values), dtype=np.int64)


def _fast_length(minimum: int) -> int:
    """The smallest 5-smooth number >= ``minimum``: a fast FFT size."""
    import numpy as np

    smooth = _smooth_numbers()
    position = int(np.searchsorted(smooth, max(minimum, 1)))
    return int(smooth[position]) if position < smooth.size else int(minimum)


@lru_cache(maxsize=32)
def _delay(size: int) -> np.ndarray:
    """``z^-1`` on the unit circle at the rfft bins of a ``size``-point FFT (complex64)."""
    import numpy as np

    omega = np.arange(size // 2 + 1, dtype=np.float64) * (2.0 * math.pi / size)
    return np.exp(-1j * omega).astype(np.complex64)


def _quadratic_roots(c1: float, c2: float) -> tuple[complex, complex]:
    """The roots of ``z^2 + c1 z + c2``."""
    root = cmath.sqrt(c1 * c1 - 4.0 * c2)
    return (-c1 + root) / 2.0, (-c1 - root) / 2.0


def _response(b: Sequence[float], a: Sequence[float], size: int) -> np.ndarray:
    """The biquad's frequency response at the rfft bins, complex64.

    Evaluated in factored form, ``b0 (1 - q1/z)(1 - q2/z) / ((1 - p1/z)(1 - p2/z))``: each factor
    is well conditioned in single precision even with poles or zeros close to ``z = 1``, where the
    expanded polynomials lose every digit to cancellation.
    """
    import numpy as np

    z1 = _delay(size)
    if b[0] == 0.0:  # no factored form: evaluate the polynomials in double precision
        z = z1.astype(np.complex128)
        return ((b[1] * z + b[2] * z * z) / (1.0 + a[1] * z + a[2] * z * z)).astype(np.complex64)
    q1, q2 = _quadratic_roots(b[1] / b[0], b[2] / b[0])
    p1, p2 = _quadratic_roots(a[1], a[2])
    response = 1.0 - np.complex64(q1) * z1
    response *= 1.0 - np.complex64(q2) * z1
    response /= 1.0 - np.complex64(p1) * z1
    response /= 1.0 - np.complex64(p2) * z1
    response *= np.float32(b[0])
    return response


def apply_biquad(audio: np.ndarray, b: Sequence[float], a: Sequence[float]) -> np.ndarray:
    """Filter ``audio`` (channels, samples) with the biquad ``b / a`` (a0 = 1), from rest.

    Multiplies the spectrum by the filter's exact frequency response, with zero padding until
    its impulse response has decayed by 100 dB, so the result equals the recursive filter's to
    float32 precision, at the cost of one real FFT pair (no per-sample Python or torch loop).
    """
    import numpy as np

    length = audio.shape[-1]
    size = _fast_length(length + _decay_length(a))
    spectrum = np.fft.rfft(audio, n=size, axis=-1)
    spectrum *= _response(b, a, size)
    return np.ascontiguousarray(np.fft.irfft(spectrum, n=size, axis=-1)[:, :length], dtype=np.float32)


def _band_response(size: int, sample_rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """The magnitude of a 2nd-order high-pass at ``low_hz`` times a 2nd-order low-pass at
    ``high_hz`` (Butterworth-shaped) on the bins of an rfft of ``size`` points."""
    import numpy as np

    frequencies = np.maximum(np.fft.rfftfreq(size, 1.0 / sample_rate), 1e-3)
    return 1.0 / np.sqrt((1.0 + (low_hz / frequencies) ** 4) * (1.0 + (frequencies / high_hz) ** 4))


@lru_cache(maxsize=16)
def _pink_weights(length: int, sample_rate: int) -> np.ndarray:
    """Amplitude weights 1/sqrt(f) of an rfft of ``length`` points, zero below 20 Hz."""
    import numpy as np

    frequencies = np.fft.rfftfreq(length, 1.0 / sample_rate)
    weights = np.zeros(frequencies.shape, dtype=np.float32)
    audible = frequencies >= HIGHPASS_MIN_HZ
    weights[audible] = 1.0 / np.sqrt(frequencies[audible])
    return weights


def _pink_noise(rng: np.random.Generator, shape: tuple[int, ...], sample_rate: int) -> np.ndarray:
    """Pink noise of ``shape`` (channels, samples): a random spectrum shaped 1/f in power."""
    import numpy as np

    channels, length = shape
    bins = length // 2 + 1
    spectrum = rng.standard_normal((channels, bins, 2), dtype=np.float32).view(np.complex64)[..., 0]
    spectrum *= _pink_weights(length, sample_rate)
    return np.fft.irfft(spectrum, n=length, axis=-1).astype(np.float32, copy=False)


# -- settings and the hook ------------------------------------------------------------------


def _names_in(allowed: tuple[str, ...]) -> Any:
    """A converter: a name or a list of names as a tuple of lower-case names in the order of
    ``allowed`` (unknown ones last); anything else is left as it is, for the validator."""

    def convert(value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            chosen = dict.fromkeys(item.strip().lower() for item in value)
            return tuple(sorted(chosen, key=lambda name: allowed.index(name) if name in allowed else len(allowed)))
        return value

    return convert


def _names_from(allowed: tuple[str, ...], empty_ok: bool) -> Any:
    """A validator: a list of names from ``allowed`` (at least one unless ``empty_ok``)."""
    description = f"a list of names from {', '.join(allowed)}" + ("" if empty_ok else " (at least one)")

    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if not isinstance(value, tuple) or not set(value) <= set(allowed) or (not value and not empty_ok):
            raise ConfigError(attribute.name, value, description)

    return check


def _probability(name: str) -> Any:
    return attrs.field(default=DEFAULT_PROBABILITIES[name], validator=v.number(0.0, 1.0))


@attrs.frozen(kw_only=True)
class Probabilities:
    """The ``[plugins.augmentations.probability]`` table: each transform's probability (0 to 1)."""

    speed: float = _probability("speed")
    shift: float = _probability("shift")
    filter: float = _probability("filter")
    gain: float = _probability("gain")
    polarity: float = _probability("polarity")
    noise: float = _probability("noise")
    burst: float = _probability("burst")


@attrs.frozen(kw_only=True)
class AugmentationSettings:
    """The ``[plugins.augmentations]`` table, read through :func:`sda_core.plugin_settings`.

    Attributes:
        enabled: the transforms to use (a list of names from :data:`TRANSFORM_NAMES`; empty: none;
            default :data:`DEFAULT_ENABLED`, all but ``noise``).
        probability: each transform's probability, from :data:`DEFAULT_PROBABILITIES`.
        noise_colors: the noise colours drawn from (``white``, ``pink``; at least one).
        filter_modes: the filters drawn from (``lowpass``, ``highpass``, ``tilt``; at least one).
        shift_mode: ``circular`` (wrap around) or ``zero`` (pad with silence).
    """

    enabled: Any = attrs.field(  # a name or a list of names; a tuple of names once converted
        default=DEFAULT_ENABLED,
        converter=_names_in(TRANSFORM_NAMES),
        validator=_names_from(TRANSFORM_NAMES, empty_ok=True),
    )
    probability: Probabilities = attrs.field(factory=Probabilities)
    noise_colors: Any = attrs.field(  # a name or a list of names; a tuple of names once converted
        default=NOISE_COLORS, converter=_names_in(NOISE_COLORS), validator=_names_from(NOISE_COLORS, empty_ok=False)
    )
    filter_modes: Any = attrs.field(  # a name or a list of names; a tuple of names once converted
        default=FILTER_MODES, converter=_names_in(FILTER_MODES), validator=_names_from(FILTER_MODES, empty_ok=False)
    )
    shift_mode: str = attrs.field(
        default="circular",
        converter=lambda value: value.strip().lower() if isinstance(value, str) else value,
        validator=v.one_of(SHIFT_MODES),
    )

    def probability_of(self, name: str) -> float:
        """The probability of the transform ``name``."""
        return float(getattr(self.probability, name))


#: Every key of the ``[plugins.augmentations]`` table.
SETTING_KEYS = tuple(field.name for field in attrs.fields(AugmentationSettings))


def read_settings(config: TrainingConfig) -> AugmentationSettings:
    """The ``[plugins.augmentations]`` table of ``config``; an unknown key or a bad value raises
    :class:`ConfigError` naming it (the same errors as every plugin's, via ``plugin_settings``)."""
    return plugin_settings(config, PLUGIN_NAME, AugmentationSettings)


@hookimpl
def sda_check_config(config: TrainingConfig) -> None:
    """Veto a bad ``[plugins.augmentations]`` table before anything runs."""
    read_settings(config)


def reference_transforms(config: TrainingConfig) -> list[Any]:
    """The reference transforms for ``config``: ranges scaled by ``augmentation_strength``.

    Empty when the strength is 0 or nothing is enabled. Settings are validated even then.
    """
    settings = read_settings(config)
    strength = float(config.augmentation_strength)
    if strength <= 0.0:
        return []
    p = settings.probability_of
    full = FULL_STRENGTH
    builders = {
        "speed": lambda: SpeedPitch(max_semitones=full["semitones"] * strength, probability=p("speed")),
        "shift": lambda: TimeShift(
            max_seconds=full["shift_seconds"] * strength, mode=settings.shift_mode, probability=p("shift")
        ),
        "filter": lambda: Filter(
            modes=settings.filter_modes,
            lowpass_octaves=full["lowpass_octaves"] * strength,
            highpass_max_hz=HIGHPASS_MIN_HZ + full["highpass_span_hz"] * strength,
            max_tilt_db=full["tilt_db"] * strength,
            probability=p("filter"),
        ),
        "gain": lambda: Gain(
            min_db=-full["gain_db"] * strength, max_db=full["gain_db"] * strength, probability=p("gain")
        ),
        "polarity": lambda: PolarityFlip(probability=p("polarity")),
        "noise": lambda: AddNoise(
            min_snr_db=NOISE_MAX_SNR_DB - full["snr_span_db"] * strength,
            max_snr_db=NOISE_MAX_SNR_DB,
            colors=settings.noise_colors,
            probability=p("noise"),
        ),
        "burst": lambda: NoiseBurst(
            min_level_db=BURST_MIN_LEVEL_DB,
            max_level_db=BURST_MIN_LEVEL_DB + full["burst_level_span_db"] * strength,
            probability=p("burst"),
        ),
    }
    return [builders[name]() for name in TRANSFORM_NAMES if name in settings.enabled]


@hookimpl(trylast=True)
def sda_augmentations(config: TrainingConfig) -> list[Any]:
    """The reference transforms: speed, shift, filter, gain, polarity, noise, burst (see the module doc)."""
    return reference_transforms(config)
