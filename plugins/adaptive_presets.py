"""Reference plugin for ``sda_resolve_config``: a TrainingConfig sized to the dataset.

The number of usable files picks an :class:`~sda_core.config.OverfittingPreset`; the preset
fixes the regularisation, augmentation and patience values (tabulated in docs/presets.md); the
file count and total duration then size the validation fraction and the batch size. Fewer files
never get less regularisation.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import attrs

from sda_core import hookimpl
from sda_core.config import OverfittingPreset, RegularizationConfig, TrainingConfig, apply_overrides
from sda_core.config.dataset import DatasetSummary
from sda_core.errors import ConfigError

#: The range of dataset sizes the presets are tuned for.
MIN_FILES, MAX_FILES = 5, 500
#: Largest file count that still gets each preset (above the last: AGGRESSIVE).
CONSERVATIVE_MAX_FILES, BALANCED_MAX_FILES = 20, 100


class DatasetSizeWarning(UserWarning):
    """The dataset is outside the 5..500 files the presets are tuned for; training still works."""


@attrs.frozen
class PresetValues:
    """The values one preset fixes; documented as the table in docs/presets.md."""

    max_epochs: int
    learning_rate: float
    latent_dim: int
    validation_fraction: float
    augmentation_strength: float
    overfitting_patience: int
    early_stopping_patience: int
    dropout: float
    weight_decay: float
    kl_weight: float
    min_steps_per_epoch: int


PRESETS: dict[OverfittingPreset, PresetValues] = {
    OverfittingPreset.CONSERVATIVE: PresetValues(
        max_epochs=100,
        learning_rate=1e-3,
        latent_dim=16,
        validation_fraction=0.2,
        augmentation_strength=1.0,
        overfitting_patience=2,
        early_stopping_patience=10,
        dropout=0.3,
        weight_decay=1e-3,
        kl_weight=1.0,
        min_steps_per_epoch=12,
    ),
    OverfittingPreset.BALANCED: PresetValues(
        max_epochs=150,
        learning_rate=1e-3,
        latent_dim=32,
        validation_fraction=0.15,
        augmentation_strength=0.7,
        overfitting_patience=3,
        early_stopping_patience=15,
        dropout=0.2,
        weight_decay=5e-4,
        kl_weight=0.5,
        min_steps_per_epoch=8,
    ),
    OverfittingPreset.AGGRESSIVE: PresetValues(
        max_epochs=200,
        learning_rate=1e-3,
        latent_dim=64,
        validation_fraction=0.1,
        augmentation_strength=0.4,
        overfitting_patience=4,
        early_stopping_patience=20,
        dropout=0.1,
        weight_decay=1e-4,
        kl_weight=0.25,
        min_steps_per_epoch=8,
    ),
}

#: (largest file count, batch size): small datasets get small batches, so an epoch has steps.
BATCH_SIZES = ((10, 4), (30, 8), (100, 16), (math.inf, 32))


def preset_for(file_count: int) -> OverfittingPreset:
    """The preset for a number of files: CONSERVATIVE up to 20, BALANCED up to 100, else AGGRESSIVE."""
    if file_count <= CONSERVATIVE_MAX_FILES:
        return OverfittingPreset.CONSERVATIVE
    if file_count <= BALANCED_MAX_FILES:
        return OverfittingPreset.BALANCED
    return OverfittingPreset.AGGRESSIVE


def validation_fraction_for(file_count: int, base: float) -> float:
    """``base``, raised so that 2 or more files always hold out at least one (at most half).

    The result is exact in floating point: ``math.floor(fraction * file_count) >= 1`` for every
    ``file_count >= 2``, so a split that rounds down still holds out a file.
    """
    if file_count < 2:
        return 0.0
    fraction = min(max(base, 1.0 / file_count), 0.5)
    while math.floor(fraction * file_count) < 1:  # 1/n * n can be 0.999...: nudge up one ulp
        fraction = math.nextafter(fraction, 1.0)
    return fraction


def batch_size_for(file_count: int, train_seconds: float | None = None, chunk_seconds: float = 1.0) -> int:
    """Batch size from the file count, capped so one epoch has at least one full batch."""
    size = next(batch for limit, batch in BATCH_SIZES if file_count <= limit)
    if train_seconds is not None:
        chunks = max(1, int(train_seconds // chunk_seconds))
        size = min(size, chunks)
    return size


def get_adaptive_config(
    file_count: int,
    *,
    total_seconds: float | None = None,
    preset: OverfittingPreset | str | None = None,
    chunk_seconds: float = 1.0,
) -> TrainingConfig:
    """A fully configured TrainingConfig for a dataset of ``file_count`` files.

    Args:
        file_count: number of usable files (at least 1). Outside 5..500 a
            :class:`DatasetSizeWarning` is issued and a config is still returned.
        total_seconds: total usable audio, when known; caps the batch size for tiny datasets.
        preset: force a preset instead of choosing one from ``file_count``.
        chunk_seconds: length of one training item, for the batch-size cap.
    """
    if isinstance(file_count, bool) or not isinstance(file_count, int) or file_count < 1:
        raise ConfigError("file_count", file_count, "an integer >= 1 (a dataset needs at least one file)")
    if total_seconds is not None and (
        isinstance(total_seconds, bool)
        or not isinstance(total_seconds, (int, float))
        or not math.isfinite(total_seconds)
        or total_seconds < 0
    ):
        raise ConfigError("total_seconds", total_seconds, "a finite number of seconds >= 0, or None")
    chunk_seconds = TrainingConfig(chunk_seconds=chunk_seconds).chunk_seconds  # validated, names the field
    if file_count < MIN_FILES:
        warnings.warn(
            f"{file_count} file(s) is fewer than the {MIN_FILES} the presets are tuned for; expect "
            "a model that memorises them",
            DatasetSizeWarning,
            stacklevel=2,
        )
    elif file_count > MAX_FILES:
        warnings.warn(
            f"{file_count} files is more than the {MAX_FILES} the presets are tuned for; "
            "training works but a larger-scale tool may serve you better",
            DatasetSizeWarning,
            stacklevel=2,
        )
    chosen = preset_for(file_count) if preset is None else TrainingConfig(preset=preset).preset
    values = PRESETS[chosen]
    validation_fraction = validation_fraction_for(file_count, values.validation_fraction)
    train_seconds = None if total_seconds is None else total_seconds * (1.0 - validation_fraction)
    return TrainingConfig(
        preset=chosen,
        max_epochs=values.max_epochs,
        chunk_seconds=chunk_seconds,
        batch_size=batch_size_for(file_count, train_seconds, chunk_seconds),
        learning_rate=values.learning_rate,
        latent_dim=values.latent_dim,
        validation_fraction=validation_fraction,
        augmentation_strength=values.augmentation_strength,
        overfitting_patience=values.overfitting_patience,
        early_stopping_patience=values.early_stopping_patience,
        min_steps_per_epoch=values.min_steps_per_epoch,
        regularization=RegularizationConfig(
            dropout=values.dropout, weight_decay=values.weight_decay, kl_weight=values.kl_weight
        ),
    )


@hookimpl(trylast=True)
def sda_resolve_config(summary: DatasetSummary, overrides: dict[str, Any]) -> TrainingConfig:
    """Size the config to the scanned dataset, honouring a ``preset`` override first."""
    base = get_adaptive_config(
        max(summary.file_count, 1),
        total_seconds=summary.total_duration if summary.file_count else None,
        preset=overrides.get("preset"),
        chunk_seconds=overrides.get("chunk_seconds", 1.0),
    )
    return apply_overrides(base, overrides)
