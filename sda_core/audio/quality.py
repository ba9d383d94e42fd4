"""Weights-free quality figures for generated sounds (``sda evaluate``).

Everything here is numpy/scipy: no model weights, no torch, no engine. Audio comes in as
``(n, samples)`` float arrays of mono clips (downmix before calling).

- :func:`clip_features` turns each clip into one feature vector: log-mel band means and spread over
  time, spectral centroid, flatness and roll-off (mean and spread over frames), envelope shape (peak
  position, peak level, mean level, decay after the peak) and zero-crossing rate.
- :func:`compare_sets` compares generated clips with real ones in that feature space (standardised
  on the real set): a normalised kernel distance (*resemblance*), nearest-neighbour distances
  (*copying*), spread (*diversity*) and a 1-nearest-neighbour two-sample test (*nn_accuracy*).
- :func:`mrstft_distance` is a multi-resolution STFT distance between paired clips (reconstruction).

docs/evaluation.md explains each figure and how to read it.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from scipy.spatial.distance import cdist, pdist, squareform

#: Mel bands of :func:`clip_features`.
MEL_BANDS = 40
#: Fewest real clips for which the resemblance score is computed (two halves of four).
MIN_REAL_FOR_RESEMBLANCE = 8
#: Random half splits of the real set averaged for the resemblance score's zero baseline.
HALF_SPLITS = 16
#: Spectral roll-off: the frequency below which this fraction of a frame's energy lies.
ROLLOFF_FRACTION = 0.85
#: Frame level floor (dB re full scale): silence reads as this level, not minus infinity.
LEVEL_FLOOR_DB = -100.0
#: FFT sizes of :func:`mrstft_distance` at 22.05 kHz (scaled with the sample rate).
MRSTFT_FFT_SIZES = (512, 1024, 2048)
#: Magnitude floor of :func:`mrstft_distance`'s log-magnitude term.
MRSTFT_MAGNITUDE_FLOOR = 1e-5

_REFERENCE_RATE = 22050
_FEATURE_FFT = 1024
_POWER_FLOOR = 10.0 ** (LEVEL_FLOOR_DB / 10.0)


# ----------------------------------------------------------------------------------------------
# validation and framing


def _as_clips(clips: Any, name: str, *, minimum: int = 1) -> np.ndarray:
    """``clips`` as a finite float64 (n, samples) array with at least ``minimum`` clips."""
    array = np.asarray(clips, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be shaped (clips, samples) of mono audio, got {array.ndim} dimension(s) {array.shape}"
        )
    if array.shape[0] < minimum:
        raise ValueError(f"{name} needs at least {minimum} clip(s), got {array.shape[0]}")
    if array.shape[1] < 2:
        raise ValueError(f"{name} clips need at least 2 samples, got {array.shape[1]}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite samples")
    return array


def _check_rate(sample_rate: Any) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    return int(sample_rate)


def _scaled_fft_size(size_at_reference: int, sample_rate: int) -> int:
    """A power of two that spans the same duration at ``sample_rate`` as ``size_at_reference``
    samples do at 22.05 kHz."""
    return int(2 ** max(6, round(np.log2(size_at_reference * sample_rate / _REFERENCE_RATE))))


def _frames(clips: np.ndarray, size: int, hop: int) -> np.ndarray:
    """Centred, zero-padded frames: (n, frames, size)."""
    padded = np.pad(clips, ((0, 0), (size // 2, size // 2)))
    if padded.shape[1] < size:
        padded = np.pad(padded, ((0, 0), (0, size - padded.shape[1])))
    return sliding_window_view(padded, size, axis=1)[:, ::hop, :]


def _magnitudes(clips: np.ndarray, size: int) -> np.ndarray:
    """Hann-windowed STFT magnitudes with hop size/4: (n, frames, size // 2 + 1)."""
    window = np.hanning(size + 1)[:-1]
    return np.abs(np.fft.rfft(_frames(clips, size, size // 4) * window, axis=-1))


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def mel_filter_bank(sample_rate: int, fft_size: int, bands: int = MEL_BANDS) -> np.ndarray:
    """Triangular (HTK) mel filters from 0 Hz to Nyquist over the bins of an rfft of ``fft_size``:
    (bands, fft_size // 2 + 1). A filter narrower than one bin keeps its nearest bin."""
    bins = np.fft.rfftfreq(fft_size, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(0.0, _hz_to_mel(sample_rate / 2.0), bands + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bins[None, :]) / np.maximum(upper - centre, 1e-9)
    filters = np.clip(np.minimum(rising, falling), 0.0, None)
    for band in np.flatnonzero(filters.sum(axis=1) == 0):
        filters[band, np.argmin(np.abs(bins - edges[band + 1]))] = 1.0
    return filters


# ----------------------------------------------------------------------------------------------
# features


def feature_names(bands: int = MEL_BANDS) -> list[str]:
    """The name of each column of :func:`clip_features`, in order."""
    names = [f"logmel_mean_{band:02d}" for band in range(bands)]
    names += [f"logmel_std_{band:02d}" for band in range(bands)]
    for measure in ("centroid", "log_flatness", "rolloff"):
        names += [f"{measure}_mean", f"{measure}_std"]
    names += ["envelope_peak_position", "envelope_peak_db", "envelope_mean_db", "envelope_decay_db"]
    names += ["zero_crossing_rate_mean", "zero_crossing_rate_std"]
    return names


def clip_features(clips: np.ndarray, sample_rate: int) -> np.ndarray:
    """One feature vector per clip: ``(n, samples)`` mono float audio -> ``(n, d)`` float64.

    Columns (see :func:`feature_names`): the mean and the standard deviation over time of 40
    log-mel bands (dB); the mean and standard deviation over frames of the spectral centroid and
    roll-off (fractions of Nyquist) and of the log spectral flatness; the envelope's peak position
    (0 = start, 1 = end of the clip), peak and mean frame level (dB) and decay (peak level minus the
    mean level after the peak, dB); the mean and standard deviation of the zero-crossing rate per
    frame. Frames are ~46 ms (1024 samples at 22.05 kHz, scaled with the rate), hop a quarter.
    Raises ValueError for anything but a finite 2-D array with at least one clip.
    """
    rate = _check_rate(sample_rate)
    audio = _as_clips(clips, "clips")
    size = _scaled_fft_size(_FEATURE_FFT, rate)
    window = np.hanning(size + 1)[:-1].astype(np.float32)
    spectrum = scipy.fft.rfft(_frames(audio.astype(np.float32), size, size // 4) * window, axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2) / np.float32(np.sum(window**2))
    power_floored = power + np.float32(_POWER_FLOOR)

    mel = 10.0 * np.log10(power @ mel_filter_bank(rate, size).T.astype(np.float32) + np.float32(_POWER_FLOOR))
    mel_mean, mel_std = mel.mean(axis=1), mel.std(axis=1)

    relative_frequency = np.linspace(0.0, 1.0, power.shape[-1], dtype=np.float32)
    total = power_floored.sum(axis=-1)
    centroid = (power_floored @ relative_frequency) / total
    log_flatness = np.mean(np.log(power_floored), axis=-1) - np.log(np.mean(power_floored, axis=-1))
    cumulative = np.cumsum(power_floored, axis=-1)
    rolloff = np.argmax(cumulative >= ROLLOFF_FRACTION * cumulative[..., -1:], axis=-1) / (power.shape[-1] - 1)
    spectral = [
        stat for measure in (centroid, log_flatness, rolloff) for stat in (measure.mean(axis=1), measure.std(axis=1))
    ]

    # Envelope and zero crossings on non-overlapping blocks of half a frame (the tail is dropped
    # unless the clip is shorter than one block).
    block = min(size // 2, audio.shape[1])
    blocks = audio[:, : audio.shape[1] // block * block].reshape(len(audio), -1, block)
    level = 10.0 * np.log10(np.mean(blocks**2, axis=-1) + _POWER_FLOOR)
    block_count = level.shape[1]
    peak_index = np.argmax(level, axis=1)
    peak = level[np.arange(len(level)), peak_index]
    after_peak = np.arange(block_count)[None, :] > peak_index[:, None]
    after_count = after_peak.sum(axis=1)
    mean_after = np.where(after_count > 0, (level * after_peak).sum(axis=1) / np.maximum(after_count, 1), peak)
    envelope = [peak_index / max(block_count - 1, 1), peak, level.mean(axis=1), peak - mean_after]

    crossings = (np.signbit(blocks[..., 1:]) != np.signbit(blocks[..., :-1])).mean(axis=-1)
    zero_crossings = [crossings.mean(axis=1), crossings.std(axis=1)]

    columns = [mel_mean, mel_std, *spectral, *envelope, *zero_crossings]
    return np.column_stack([np.asarray(column, dtype=np.float64) for column in columns])


# ----------------------------------------------------------------------------------------------
# set comparison


@attrs.frozen(kw_only=True)
class QualityFigures:
    """The result of :func:`compare_sets`; every distance is in the real-standardised feature space.

    Attributes:
        resemblance: ``(mmd_generated - mmd_halves) / (mmd_noise - mmd_halves)``: 0 = as close to
            the real set as its own halves are to each other, 1 = as far as shaped noise. None when
            it cannot be computed (see ``resemblance_note``).
        resemblance_note: why ``resemblance`` is None (else None).
        copying: mean distance of each generated clip to its nearest real clip over the real clips'
            mean leave-one-out nearest-neighbour distance; well under 1 = replaying the data.
        diversity: mean pairwise distance among generated clips over the same among real ones.
        nn_accuracy: leave-one-out 1-nearest-neighbour accuracy telling generated from real on
            ``nn_pairs`` of each (the mean over :data:`NN_DRAWS` balanced draws of the larger
            set): 0.5 indistinguishable, 1.0 told apart, well under 0.5 copying.
        mmd_generated, mmd_halves, mmd_noise: the raw unbiased MMD^2 values (generated vs real,
            mean over random half splits of the real set, shaped noise vs real); None where not
            computed.
        bandwidth: the RBF kernel's bandwidth (median pairwise distance among real clips).
        nearest_real_distance_generated, nearest_real_distance_real: the two terms of ``copying``.
        pairwise_distance_generated, pairwise_distance_real: the two terms of ``diversity``.
        nn_pairs: clips of each set used by the 1-NN test.
        generated_count, real_count, feature_count: sizes of the inputs.
        seed: the seed of the noise, the splits and the subsampling.
    """

    resemblance: float | None
    resemblance_note: str | None
    copying: float
    diversity: float
    nn_accuracy: float
    mmd_generated: float | None
    mmd_halves: float | None
    mmd_noise: float | None
    bandwidth: float
    nearest_real_distance_generated: float
    nearest_real_distance_real: float
    pairwise_distance_generated: float
    pairwise_distance_real: float
    nn_pairs: int
    generated_count: int
    real_count: int
    feature_count: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return attrs.asdict(self)


def _rbf(distances: np.ndarray, bandwidth: float) -> np.ndarray:
    return np.exp(-(distances**2) / (2.0 * bandwidth**2))


def mmd_squared(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Unbiased MMD^2 between feature sets ``x`` (m, d) and ``y`` (n, d), RBF kernel; m, n >= 2."""
    if len(x) < 2 or len(y) < 2:
        raise ValueError("the unbiased MMD needs at least 2 vectors in each set")
    m, n = len(x), len(y)
    kxx = _rbf(pdist(x), bandwidth).sum() * 2.0 / (m * (m - 1))
    kyy = _rbf(pdist(y), bandwidth).sum() * 2.0 / (n * (n - 1))
    kxy = _rbf(cdist(x, y), bandwidth).mean()
    return float(kxx + kyy - 2.0 * kxy)


def shaped_noise(real: np.ndarray, count: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` clips of ``samples`` of stationary noise whose magnitude spectrum is the real
    clips' mean magnitude spectrum (random phases): the resemblance score's 1 baseline."""
    spectra = np.abs(np.fft.rfft(real, n=samples, axis=1))
    magnitude = spectra.mean(axis=0)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(count, magnitude.shape[0]))
    return np.fft.irfft(magnitude * np.exp(1j * phase), n=samples, axis=1)


#: Balanced draws the 1-NN accuracy is averaged over when one set is larger than the other.
NN_DRAWS = 16


def _standardise(real: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean = real.mean(axis=0)
    spread = real.std(axis=0)
    spread = np.where(spread > 1e-9 * (1.0 + np.abs(mean)), spread, 1.0)
    return [(features - mean) / spread for features in (real, *others)]


def nn_two_sample_accuracy(generated: np.ndarray, real: np.ndarray, rng: np.random.Generator) -> tuple[float, int]:
    """Leave-one-out 1-NN accuracy on equal numbers of both sets; returns (accuracy, clips per set).

    When one set is larger, the accuracy is the mean over :data:`NN_DRAWS` balanced draws of it
    (made with ``rng``), so every clip counts: one draw of 18 of 64 generated clips swung the
    figure by a standard deviation of 0.06 between evaluation seeds on the demo set, the mean of
    16 draws by 0.03. Ties go to the lower index.
    """
    pairs = min(len(generated), len(real))
    labels = np.repeat([0, 1], pairs)
    draws = 1 if len(generated) == len(real) else NN_DRAWS
    accuracies = []
    for _ in range(draws):
        chosen_generated, chosen_real = generated, real
        if len(generated) > pairs:
            chosen_generated = generated[np.sort(rng.choice(len(generated), pairs, replace=False))]
        if len(real) > pairs:
            chosen_real = real[np.sort(rng.choice(len(real), pairs, replace=False))]
        distances = squareform(pdist(np.concatenate([chosen_generated, chosen_real])))
        np.fill_diagonal(distances, np.inf)
        accuracies.append(np.mean(labels[np.argmin(distances, axis=1)] == labels))
    return float(np.mean(accuracies)), pairs


def compare_sets(generated: np.ndarray, real: np.ndarray, sample_rate: int, *, seed: int = 0) -> QualityFigures:
    """Compare generated clips with real ones: resemblance, copying, diversity, 1-NN accuracy.

    Both are ``(n, samples)`` mono float arrays at ``sample_rate`` (lengths may differ between the
    two sets). Features (:func:`clip_features`) are standardised on the real set. The RBF kernel's
    bandwidth is the median pairwise distance among real clips (as in the Kernel Audio Distance).
    The resemblance score needs at least :data:`MIN_REAL_FOR_RESEMBLANCE` real clips; with fewer it
    is None and ``resemblance_note`` says why. Deterministic for a given ``seed``.
    Raises ValueError for invalid audio or fewer than 2 clips in either set.
    """
    rate = _check_rate(sample_rate)
    generated_audio = _as_clips(generated, "generated", minimum=2)
    real_audio = _as_clips(real, "real", minimum=2)
    rng = np.random.default_rng(seed)
    noise_audio = shaped_noise(real_audio, len(generated_audio), real_audio.shape[1], rng)

    real_features, generated_features, noise_features = _standardise(
        clip_features(real_audio, rate), clip_features(generated_audio, rate), clip_features(noise_audio, rate)
    )

    real_distances = squareform(pdist(real_features))
    real_pairwise = real_distances[np.triu_indices(len(real_features), k=1)]
    bandwidth = float(np.median(real_pairwise))
    if not bandwidth > 0:
        positive = real_pairwise[real_pairwise > 0]
        bandwidth = float(np.median(positive)) if positive.size else 1.0

    np.fill_diagonal(real_distances, np.inf)
    nearest_real_real = float(real_distances.min(axis=1).mean())
    nearest_real_generated = float(cdist(generated_features, real_features).min(axis=1).mean())
    pairwise_generated = float(pdist(generated_features).mean())
    pairwise_real = float(real_pairwise.mean())

    resemblance = mmd_generated = mmd_halves = mmd_noise = None
    note = None
    if len(real_features) < MIN_REAL_FOR_RESEMBLANCE:
        note = f"needs at least {MIN_REAL_FOR_RESEMBLANCE} real clips for its baselines, got {len(real_features)}"
    else:
        mmd_generated = mmd_squared(generated_features, real_features, bandwidth)
        mmd_noise = mmd_squared(noise_features, real_features, bandwidth)
        half = len(real_features) // 2
        splits = []
        for _ in range(HALF_SPLITS):
            order = rng.permutation(len(real_features))
            splits.append(mmd_squared(real_features[order[:half]], real_features[order[half : 2 * half]], bandwidth))
        mmd_halves = float(np.mean(splits))
        scale = mmd_noise - mmd_halves
        if scale > 0:
            resemblance = (mmd_generated - mmd_halves) / scale
        else:
            note = "shaped noise is as close to the real clips as their own halves are (the real set sounds like noise)"

    accuracy, pairs = nn_two_sample_accuracy(generated_features, real_features, rng)
    return QualityFigures(
        resemblance=resemblance,
        resemblance_note=note,
        copying=nearest_real_generated / nearest_real_real if nearest_real_real > 0 else float("nan"),
        diversity=pairwise_generated / pairwise_real if pairwise_real > 0 else float("nan"),
        nn_accuracy=accuracy,
        mmd_generated=mmd_generated,
        mmd_halves=mmd_halves,
        mmd_noise=mmd_noise,
        bandwidth=bandwidth,
        nearest_real_distance_generated=nearest_real_generated,
        nearest_real_distance_real=nearest_real_real,
        pairwise_distance_generated=pairwise_generated,
        pairwise_distance_real=pairwise_real,
        nn_pairs=pairs,
        generated_count=len(generated_features),
        real_count=len(real_features),
        feature_count=real_features.shape[1],
        seed=seed,
    )


# ----------------------------------------------------------------------------------------------
# reconstruction


def mrstft_distance(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Multi-resolution STFT distance between paired clips, both ``(n, samples)``: lower is better.

    For each FFT size (512, 1024 and 2048 at 22.05 kHz, scaled with the rate; Hann window, hop a
    quarter) it adds the spectral convergence ``||S_ref - S_est||_F / ||S_ref||_F`` and the mean
    absolute difference of the natural-log magnitudes (floored at 1e-5), each averaged over
    clips; the result is the mean over FFT sizes. 0 exactly when the clips are equal.
    Raises ValueError for invalid audio or mismatched shapes.
    """
    rate = _check_rate(sample_rate)
    ref = _as_clips(reference, "reference")
    est = _as_clips(estimate, "estimate")
    if ref.shape != est.shape:
        raise ValueError(f"reference and estimate must have the same shape, got {ref.shape} and {est.shape}")
    totals = []
    for size in MRSTFT_FFT_SIZES:
        fft_size = _scaled_fft_size(size, rate)
        ref_magnitude = _magnitudes(ref, fft_size)
        est_magnitude = _magnitudes(est, fft_size)
        difference = np.sqrt(np.sum((ref_magnitude - est_magnitude) ** 2, axis=(1, 2)))
        norm = np.sqrt(np.sum(ref_magnitude**2, axis=(1, 2)))
        convergence = np.where(norm > 0, difference / np.maximum(norm, 1e-12), np.where(difference > 0, 1.0, 0.0))
        log_difference = np.abs(
            np.log(np.maximum(ref_magnitude, MRSTFT_MAGNITUDE_FLOOR))
            - np.log(np.maximum(est_magnitude, MRSTFT_MAGNITUDE_FLOOR))
        ).mean(axis=(1, 2))
        totals.append(float(np.mean(convergence) + np.mean(log_difference)))
    return float(np.mean(totals))
