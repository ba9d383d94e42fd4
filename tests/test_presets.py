"""Adaptive presets: the pinned seed facts, a validation file for every split, monotonic sizing."""

from __future__ import annotations

import math
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sda_core.config import OverfittingPreset, TrainingConfig, apply_overrides, get_effective_preview_interval
from sda_core.config.dataset import AudioFileInfo, DatasetSummary
from sda_core.errors import ConfigError
from sda_plugins import adaptive_presets
from sda_plugins.adaptive_presets import (
    PRESETS,
    DatasetSizeWarning,
    batch_size_for,
    get_adaptive_config,
    preset_for,
    validation_fraction_for,
)


def quiet(file_count, **kwargs) -> TrainingConfig:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetSizeWarning)
        return get_adaptive_config(file_count, **kwargs)


def validation_files(config: TrainingConfig, file_count: int) -> int:
    """Files a file-level split holds out when it rounds down (the strictest reading)."""
    return math.floor(config.validation_fraction * file_count)


ALL_COUNTS = range(1, 1001)
CONFIGS = {count: quiet(count) for count in ALL_COUNTS}


# -- seed facts ------------------------------------------------------------------------------------


def test_three_presets_each_with_at_least_100_epochs():
    assert set(PRESETS) == set(OverfittingPreset)
    assert len(PRESETS) == 3
    for values in PRESETS.values():
        assert values.max_epochs >= 100


def test_ten_files_give_conservative_with_100_epochs():
    config = get_adaptive_config(10)
    assert isinstance(config, TrainingConfig)
    assert config.preset is OverfittingPreset.CONSERVATIVE
    assert config.max_epochs == 100


@pytest.mark.parametrize("count", range(5, 501))
def test_fully_configured_for_5_to_500_files(count):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetSizeWarning)
        config = get_adaptive_config(count)
    values = PRESETS[config.preset]
    assert config.preset is preset_for(count)
    assert config.max_epochs == values.max_epochs >= 100
    assert config.learning_rate == values.learning_rate
    assert config.latent_dim == values.latent_dim
    assert config.augmentation_strength == values.augmentation_strength
    assert config.regularization.dropout == values.dropout
    assert config.regularization.weight_decay == values.weight_decay
    assert 0.0 < config.validation_fraction <= 0.5
    assert 1 <= validation_files(config, count) < count
    assert 1 <= config.batch_size <= count
    assert config.split_seed == 42
    assert config.chunk_seconds == 1.0
    assert config.augmentation_probability == 0.5
    assert config.overfitting_threshold == pytest.approx(0.20)
    assert get_effective_preview_interval(config) == 5  # every preset trains >= 50 epochs
    assert TrainingConfig.from_dict(config.to_dict()) == config


def test_preset_boundaries():
    assert [preset_for(n) for n in (1, 5, 20, 21, 100, 101, 500, 1000)] == [
        OverfittingPreset.CONSERVATIVE,
        OverfittingPreset.CONSERVATIVE,
        OverfittingPreset.CONSERVATIVE,
        OverfittingPreset.BALANCED,
        OverfittingPreset.BALANCED,
        OverfittingPreset.AGGRESSIVE,
        OverfittingPreset.AGGRESSIVE,
        OverfittingPreset.AGGRESSIVE,
    ]


# -- at least one validation file ------------------------------------------------------------------


@pytest.mark.parametrize("preset", [None, *OverfittingPreset])
def test_two_or_more_files_always_hold_out_one_and_keep_one(preset):
    for count in range(2, 1001):
        config = quiet(count, preset=preset)
        held_out = validation_files(config, count)
        assert held_out >= 1, (count, config.validation_fraction)
        assert round(config.validation_fraction * count) >= 1
        assert count - math.ceil(config.validation_fraction * count) >= 1, count


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 10**6), st.floats(0.0, 0.999))
def test_validation_fraction_for_guarantees_one_file(count, base):
    fraction = validation_fraction_for(count, base)
    assert 0.0 < fraction < 1.0
    assert math.floor(fraction * count) >= 1
    assert fraction >= min(base, 0.5) or fraction * count < 2


def test_one_file_has_no_validation():
    config = quiet(1)
    assert config.validation_fraction == 0.0


# -- monotonic: fewer files never less regularised ---------------------------------------------------


def _pairs():
    counts = list(ALL_COUNTS)
    return zip(counts, counts[1:])


def test_regularisation_never_increases_with_more_files():
    for fewer, more in _pairs():
        a, b = CONFIGS[fewer], CONFIGS[more]
        assert b.regularization.dropout <= a.regularization.dropout, (fewer, more)
        assert b.regularization.weight_decay <= a.regularization.weight_decay, (fewer, more)
        assert b.augmentation_strength <= a.augmentation_strength, (fewer, more)
        assert b.regularization.kl_weight <= a.regularization.kl_weight, (fewer, more)
        assert b.latent_dim >= a.latent_dim, (fewer, more)
        assert b.batch_size >= a.batch_size, (fewer, more)
        if fewer >= 2:  # a single file has nothing to hold out
            assert b.validation_fraction <= a.validation_fraction, (fewer, more)


def test_presets_order_from_most_to_least_regularised():
    order = [OverfittingPreset.CONSERVATIVE, OverfittingPreset.BALANCED, OverfittingPreset.AGGRESSIVE]
    values = [PRESETS[p] for p in order]
    for a, b in zip(values, values[1:]):
        assert b.dropout <= a.dropout
        assert b.weight_decay <= a.weight_decay
        assert b.augmentation_strength <= a.augmentation_strength
        assert b.latent_dim >= a.latent_dim
        assert b.min_steps_per_epoch <= a.min_steps_per_epoch


def test_the_smallest_sets_get_more_steps_per_epoch():
    assert quiet(10).min_steps_per_epoch == 12 and quiet(10).max_epochs == 100
    assert quiet(50).min_steps_per_epoch == 8 and quiet(500).min_steps_per_epoch == 8


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000))
def test_monotonic_for_any_two_counts(x, y):
    fewer, more = sorted((x, y))
    a, b = quiet(fewer), quiet(more)
    assert b.regularization.dropout <= a.regularization.dropout
    assert b.regularization.weight_decay <= a.regularization.weight_decay
    assert b.augmentation_strength <= a.augmentation_strength
    assert b.latent_dim >= a.latent_dim


# -- outside 5..500 --------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 4, 501, 1000, 10_000])
def test_outside_the_tuned_range_warns_and_still_configures(count):
    with pytest.warns(DatasetSizeWarning, match=str(count)):
        config = get_adaptive_config(count)
    assert isinstance(config, TrainingConfig)
    assert config.max_epochs >= 100
    assert config.batch_size >= 1


@pytest.mark.parametrize("count", [5, 10, 500])
def test_inside_the_range_does_not_warn(count):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_adaptive_config(count)


def test_dataset_size_warning_is_a_user_warning():
    assert issubclass(DatasetSizeWarning, UserWarning)


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "10", None])
def test_invalid_file_count_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="file_count"):
        get_adaptive_config(bad)


# -- preset and size arguments ---------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["aggressive", "AGGRESSIVE", OverfittingPreset.AGGRESSIVE])
def test_a_preset_can_be_forced(preset):
    config = get_adaptive_config(10, preset=preset)
    assert config.preset is OverfittingPreset.AGGRESSIVE
    assert config.max_epochs == PRESETS[OverfittingPreset.AGGRESSIVE].max_epochs


def test_unknown_forced_preset_lists_allowed():
    with pytest.raises(ConfigError, match="conservative, balanced, aggressive"):
        get_adaptive_config(10, preset="wild")


def test_batch_size_is_capped_by_the_training_audio():
    assert get_adaptive_config(200).batch_size == 32
    small = get_adaptive_config(200, total_seconds=12.0)  # 90 % of 12 s: 10 one-second chunks
    assert small.batch_size == 10
    tiny = quiet(2, total_seconds=0.3)
    assert tiny.batch_size == 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, "10"])
def test_invalid_total_seconds_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="total_seconds"):
        get_adaptive_config(10, total_seconds=bad)


def test_batch_size_for_respects_chunk_seconds():
    assert batch_size_for(200, train_seconds=40.0, chunk_seconds=2.0) == 20
    assert batch_size_for(200, train_seconds=40.0, chunk_seconds=0.5) == 32


# -- the hook ---------------------------------------------------------------------------------------


def summary_of(count: int, seconds_each: float = 3.0) -> DatasetSummary:
    files = [
        AudioFileInfo(
            path=f"f{i:04d}.wav",
            format="WAV",
            subtype="PCM_16",
            sample_rate=1000,
            channels=1,
            frames=int(seconds_each * 1000),
            size_bytes=1,
        )
        for i in range(count)
    ]
    return DatasetSummary(root="/data", files=files)


def test_resolve_config_hook_sizes_to_the_summary_and_applies_overrides():
    config = adaptive_presets.sda_resolve_config(summary=summary_of(10), overrides={"max_epochs": 7})
    assert config.preset is OverfittingPreset.CONSERVATIVE
    assert config.max_epochs == 7
    assert config.batch_size == 4


def test_resolve_config_hook_takes_a_preset_override_first():
    config = adaptive_presets.sda_resolve_config(summary=summary_of(10), overrides={"preset": "aggressive"})
    assert config.preset is OverfittingPreset.AGGRESSIVE
    assert config.latent_dim == PRESETS[OverfittingPreset.AGGRESSIVE].latent_dim


def test_resolve_config_hook_is_idempotent_with_engine_reapplying_overrides():
    overrides = {"max_epochs": 7, "regularization": {"dropout": 0.05}, "plugins": {"x": {"y": 1}}}
    config = adaptive_presets.sda_resolve_config(summary=summary_of(50), overrides=overrides)
    assert apply_overrides(config, overrides) == config


def test_resolve_config_hook_uses_the_overridden_chunk_length_for_the_batch_cap():
    # 200 files of 0.25 s: 50 s in all, 45 s for training.
    config = adaptive_presets.sda_resolve_config(summary=summary_of(200, 0.25), overrides={"chunk_seconds": 5.0})
    assert config.batch_size == 9


def test_resolve_config_hook_with_an_empty_summary_warns_and_configures():
    with pytest.warns(DatasetSizeWarning):
        config = adaptive_presets.sda_resolve_config(summary=DatasetSummary(root="/data"), overrides={})
    assert isinstance(config, TrainingConfig)


# -- preview interval --------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_epochs", "interval"), [(1, 2), (10, 2), (49, 2), (50, 5), (100, 5), (200, 5)])
def test_effective_preview_interval(max_epochs, interval):
    config = apply_overrides(get_adaptive_config(10), {"max_epochs": max_epochs})
    assert get_effective_preview_interval(config) == interval


def test_explicit_preview_interval_wins():
    config = apply_overrides(get_adaptive_config(10), {"max_epochs": 10, "preview_interval": 3})
    assert get_effective_preview_interval(config) == 3
    config = apply_overrides(get_adaptive_config(10), {"preview_interval": 1})
    assert get_effective_preview_interval(config) == 1
