"""The weights-free quality figures (sda_core.audio.quality) on synthetic numpy audio."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sda_core.audio.quality import (
    MIN_REAL_FOR_RESEMBLANCE,
    NN_DRAWS,
    QualityFigures,
    clip_features,
    compare_sets,
    feature_names,
    mrstft_distance,
    nn_two_sample_accuracy,
    shaped_noise,
)

RATE = 22050


def tonal_clips(count: int, seed: int, seconds: float = 1.0) -> np.ndarray:
    """Decaying sine blips with random pitch, decay and onset: a small 'library of one-shots'."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(RATE * seconds)) / RATE
    pitch = rng.uniform(200.0, 2000.0, (count, 1))
    decay = rng.uniform(3.0, 12.0, (count, 1))
    onset = rng.uniform(0.0, 0.3, (count, 1))
    after = np.clip(t - onset, 0.0, None)
    return 0.5 * np.sin(2 * np.pi * pitch * after) * np.exp(-decay * after) * (t >= onset)


def test_clip_features_shape_names_and_speed():
    clips = tonal_clips(100, seed=1)
    clip_features(clips[:2], RATE)  # warm up the FFT plan
    start = time.process_time()  # CPU time: the machine running the tests may be shared
    features = clip_features(clips, RATE)
    elapsed = time.process_time() - start
    assert features.shape == (100, len(feature_names()))
    assert np.all(np.isfinite(features))
    assert elapsed < 2.0  # ~0.15 s on an idle core; generous for a loaded machine


def test_clip_features_reads_the_envelope_and_brightness():
    t = np.arange(RATE) / RATE
    late = np.sin(2 * np.pi * 440 * t) * (t > 0.8)
    early = np.sin(2 * np.pi * 440 * t) * np.exp(-20 * t)
    bright = np.sin(2 * np.pi * 5000 * t) * np.exp(-20 * t)
    names = feature_names()
    features = dict(zip(names, clip_features(np.stack([late, early, bright]), RATE).T, strict=True))
    assert features["envelope_peak_position"][0] > 0.7 > 0.1 > features["envelope_peak_position"][1]
    assert features["envelope_decay_db"][1] > 20.0
    assert features["centroid_mean"][2] > features["centroid_mean"][1]
    assert features["zero_crossing_rate_mean"][2] > 5 * features["zero_crossing_rate_mean"][1]


def test_silence_and_short_clips_give_finite_features():
    features = clip_features(np.zeros((3, 300)), RATE)
    assert np.all(np.isfinite(features))


def test_identical_distributions_score_near_zero_and_half():
    figures = compare_sets(tonal_clips(48, seed=2), tonal_clips(48, seed=3), RATE)
    assert isinstance(figures, QualityFigures)
    assert abs(figures.resemblance) < 0.1
    assert 0.3 <= figures.nn_accuracy <= 0.7
    assert 0.8 < figures.diversity < 1.25
    assert figures.copying > 0.5


def test_shaped_noise_scores_near_one_and_is_told_apart():
    real = tonal_clips(48, seed=4)
    noise = shaped_noise(real, 48, RATE, np.random.default_rng(99))
    figures = compare_sets(noise, real, RATE, seed=5)
    assert figures.resemblance == pytest.approx(1.0, abs=0.15)
    assert figures.nn_accuracy > 0.95


def test_copies_of_real_clips_show_as_copying():
    real = tonal_clips(32, seed=6)
    figures = compare_sets(real.copy(), real, RATE)
    assert figures.copying < 0.05
    assert figures.nn_accuracy < 0.2


def test_compare_sets_is_deterministic_and_serialisable():
    generated, real = tonal_clips(20, seed=7), tonal_clips(30, seed=8)
    first, second = compare_sets(generated, real, RATE, seed=3), compare_sets(generated, real, RATE, seed=3)
    assert first == second
    as_dict = first.to_dict()
    assert as_dict["nn_pairs"] == 20 and as_dict["real_count"] == 30
    assert set(as_dict) >= {"resemblance", "copying", "diversity", "nn_accuracy", "mmd_halves", "mmd_noise"}


def test_too_few_real_clips_leave_resemblance_unset_with_a_reason():
    figures = compare_sets(tonal_clips(10, seed=9), tonal_clips(MIN_REAL_FOR_RESEMBLANCE - 1, seed=10), RATE)
    assert figures.resemblance is None and figures.mmd_generated is None
    assert "at least" in figures.resemblance_note
    assert np.isfinite(figures.nn_accuracy) and np.isfinite(figures.copying)


def test_mrstft_distance_is_zero_for_equal_clips_and_grows_with_noise():
    clips = tonal_clips(4, seed=11)
    rng = np.random.default_rng(0)
    assert mrstft_distance(clips, clips, RATE) == 0.0
    small = mrstft_distance(clips, clips + 0.001 * rng.standard_normal(clips.shape), RATE)
    large = mrstft_distance(clips, clips + 0.05 * rng.standard_normal(clips.shape), RATE)
    assert 0.0 < small < large


def test_mrstft_distance_scales_its_fft_sizes_with_the_rate():
    t = np.arange(48000) / 48000
    clips = np.sin(2 * np.pi * 440 * t)[None, :]
    assert mrstft_distance(clips, 0.5 * clips, 48000) > 0.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: clip_features(np.full((2, 100), np.nan), RATE),
        lambda: clip_features(np.zeros(100), RATE),
        lambda: clip_features(np.zeros((2, 1, 100)), RATE),
        lambda: clip_features(np.zeros((0, 100)), RATE),
        lambda: clip_features(np.zeros((2, 100)), 0),
        lambda: compare_sets(tonal_clips(1, seed=0), tonal_clips(10, seed=1), RATE),
        lambda: compare_sets(tonal_clips(10, seed=0), tonal_clips(1, seed=1), RATE),
        lambda: compare_sets(np.array([[0.0, np.inf, 0.0]] * 3), tonal_clips(10, seed=1), RATE),
        lambda: mrstft_distance(np.zeros((2, 100)), np.zeros((2, 101)), RATE),
        lambda: mrstft_distance(np.zeros((2, 100)), np.full((2, 100), np.nan), RATE),
    ],
)
def test_invalid_input_is_a_clear_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_the_1nn_accuracy_averages_balanced_draws_of_the_larger_set():
    """Equal sets: the one leave-one-out accuracy. A larger generated set: the mean over NN_DRAWS
    balanced draws, steadier from seed to seed than any one draw."""
    points = np.random.default_rng(3)
    real = points.normal(0.0, 1.0, (12, 4))
    generated = points.normal(0.4, 1.0, (64, 4))
    same, pairs = nn_two_sample_accuracy(generated[:12], real, np.random.default_rng(0))
    assert pairs == 12 and same == nn_two_sample_accuracy(generated[:12], real, np.random.default_rng(9))[0]

    def one_draw(seed: int) -> float:
        chosen = generated[np.random.default_rng(seed).choice(64, 12, replace=False)]
        return nn_two_sample_accuracy(chosen, real, np.random.default_rng(0))[0]

    averaged = [nn_two_sample_accuracy(generated, real, np.random.default_rng(seed))[0] for seed in range(20)]
    single = [one_draw(seed) for seed in range(20)]
    assert NN_DRAWS > 1
    assert np.std(averaged) < 0.6 * np.std(single)
    assert abs(np.mean(averaged) - np.mean(single)) < 0.1
