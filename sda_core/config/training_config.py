"""Training configuration types and the rules for applying user overrides.

A :class:`TrainingConfig` is a frozen, validated value. The adaptive-presets plugin sizes one to
the dataset; users adjust it with overrides (``--set key=value``, ``sda.toml``, or a dict from the
Python API), applied by :func:`apply_overrides`. Every plugin reads its own settings from
``config.plugins[NAME]`` (the ``[plugins.NAME]`` table of sda.toml).
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from typing import Any

import attrs

from sda_core import validators as v
from sda_core.errors import ConfigError
from sda_core.serialization import from_jsonable, to_jsonable

DEVICES = ("auto", "cpu", "cuda", "mps")
#: Arithmetic of training: ``auto`` is mixed precision on CUDA (bf16 where the GPU has it, else
#: fp16 with a gradient scaler) and fp32 elsewhere; ``bf16`` and ``fp16`` need CUDA.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class OverfittingPreset(enum.Enum):
    """How hard training guards against overfitting; chosen from the number of files.

    CONSERVATIVE is for the smallest datasets: the strongest regularisation and augmentation.
    AGGRESSIVE is for the largest: it trusts the data more and regularises least.
    """

    CONSERVATIVE = "conservative"
    BALANCED = "balanced"
    AGGRESSIVE = "aggressive"


@attrs.frozen(kw_only=True)
class RegularizationConfig:
    """Regularisation knobs read by the model and the optimiser.

    Attributes:
        dropout: dropout probability inside the model.
        weight_decay: AdamW weight decay.
        gradient_clip_norm: maximum global gradient norm (0 disables clipping).
        kl_weight: final weight of the KL term of a VAE after warm-up.
        kl_warmup_epochs: epochs over which the KL weight ramps from 0 to ``kl_weight``.
        free_bits: nats per latent dimension below which the KL term is not penalised.
    """

    dropout: float = attrs.field(default=0.2, validator=v.number(0.0, 1.0, exclusive_maximum=True))
    weight_decay: float = attrs.field(default=5e-4, validator=v.number(0.0, 1.0))
    gradient_clip_norm: float = attrs.field(default=1.0, validator=v.number(0.0))
    kl_weight: float = attrs.field(default=0.5, validator=v.number(0.0))
    kl_warmup_epochs: int = attrs.field(default=10, validator=v.integer(0))
    free_bits: float = attrs.field(default=0.1, validator=v.number(0.0))

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RegularizationConfig":
        """Rebuild from :meth:`to_dict` output; unknown keys raise listing the allowed ones."""
        return from_jsonable(cls, data)


def _model_name(_instance: Any, attribute: Any, value: Any) -> None:
    """A model plugin's name: a non-empty word of letters, digits, ``_``, ``-`` or ``.``."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > 100
        or not all(char.isascii() and (char.isalnum() or char in "_-.") for char in value)
    ):
        raise ConfigError(attribute.name, value, "a model plugin's name, such as wave_vae or mel_vae")


def _evaluation_sounds(_instance: Any, attribute: Any, value: Any) -> None:
    """0 (no evaluation at the end of a run) or at least 2 sounds (one cannot have a spread)."""
    if not (isinstance(value, int) and not isinstance(value, bool) and (value == 0 or value >= 2)):
        raise ConfigError(attribute.name, value, "0 (off) or an integer of at least 2")


def _preset(value: Any) -> OverfittingPreset:
    return v.enum_converter(OverfittingPreset, "preset")(value)


def _regularization(value: Any) -> RegularizationConfig:
    if isinstance(value, RegularizationConfig):
        return value
    if isinstance(value, Mapping):
        return from_jsonable(RegularizationConfig, value, "regularization")
    raise ConfigError("regularization", value, "a table of regularisation settings")


def _plugin_settings(value: Any) -> dict[str, dict[str, Any]]:
    """Validate the ``plugins`` table and copy it deeply, so the config shares no mutable data."""
    if not isinstance(value, Mapping):
        raise ConfigError("plugins", value, "a table of [plugins.NAME] tables")
    for name, table in value.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"plugins.{name}", table, "a table of settings for plugin " + repr(name))
    return {str(name): _plain_copy(table) for name, table in value.items()}


def _plain_copy(value: Any) -> Any:
    """A deep copy in which every mapping is a plain dict (tables read from TOML or JSON)."""
    if isinstance(value, Mapping):
        return {key: _plain_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_copy(item) for item in value]
    return copy.deepcopy(value)


def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in; nested tables merge key by key, other values replace."""
    merged = _plain_copy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = _plain_copy(value)
    return merged


@attrs.frozen(kw_only=True)
class TrainingConfig:
    """Everything a training run needs to know, resolved before it starts.

    Attributes:
        preset: the overfitting preset the values were sized from.
        sample_rate: project sample rate in Hz; every file is resampled to it.
        channels: channel count of training items (files are mixed down or up).
        chunk_seconds: length of one training item in seconds (1 s by default).
        max_epochs: upper bound on epochs; early stopping may end the run sooner.
        batch_size: items per optimiser step.
        learning_rate: peak AdamW learning rate.
        latent_dim: size of the model's latent space (smaller regularises more).
        validation_fraction: share of the audio held out, split at file boundaries.
        split_seed: seed of the file-level split (42: identical across restarts).
        seed: seed of everything else (initialisation, chunk offsets, augmentation).
        augmentation_probability: chance that a training chunk is augmented at all.
        augmentation_strength: scale of augmentation ranges, 0 (off) to 1 (strongest).
        overfitting_threshold: relative gap (val - train) / train above which an epoch overfits.
        overfitting_min_epochs: epochs before overfitting can be flagged at all.
        overfitting_patience: consecutive overfitting epochs before a warning is emitted.
        early_stopping: stop when overfitting persists or validation stops improving.
        early_stopping_patience: epochs without a new best validation loss before stopping.
        early_stopping_from: the fraction of ``max_epochs`` from which early stopping counts its
            patience and overfitting streaks (0: from the first epoch); before it the learning
            rate is near its peak and the validation loss swings.
        min_validation_chunks: the fewest validation chunks whose loss chooses best.pt and may stop
            the run early; with fewer, best.pt follows the latest epoch, nothing stops early on the
            validation loss and the overfitting warning still comes (0: always choose by it).
        ema_decay: per-step decay of the exponential moving average of the weights that a run
            validates, previews, samples from and saves as ``checkpoint["model"]`` (warmed up over
            the first steps; see ``sda_core.training.averaging``); 0 uses the trained weights.
        preview_interval: epochs between previews; None means the effective default.
        samples_per_epoch: training items per epoch; None means one pass over the chunks, but at
            least ``min_steps_per_epoch`` batches.
        min_steps_per_epoch: the fewest optimiser steps of an epoch when ``samples_per_epoch`` is
            None (chunks repeat, each time cut and augmented anew, to fill them).
        num_workers: DataLoader worker processes; None sizes them to the machine.
        device: "auto" (cuda, then mps, then cpu) or an explicit device.
        precision: "auto" (mixed precision on CUDA: bf16 where the GPU supports it, else fp16
            with a gradient scaler; fp32 on other devices), "fp32" (no autocast anywhere), or
            "bf16" / "fp16" (that autocast dtype on CUDA; fp16 with the gradient scaler).
        model: which model ``sda_make_model`` builds: ``"wave_vae"`` (the default reference
            model) or ``"mel_vae"`` (the older one); each reference model answers only when
            named here. A third-party model plugin may read it too (or answer regardless).
        evaluation_sounds: sounds generated by the short evaluation that ends a run which
            finished (``max_epochs`` or an early stop): the figures of ``sda evaluate`` from
            ``best.pt``, written to ``evaluation.json`` and sent as an ``EvaluationEvent``.
            0 turns it off; otherwise at least 2.
        plugins: per-plugin settings, ``plugins[NAME]`` being the ``[plugins.NAME]`` table.
    """

    preset: OverfittingPreset = attrs.field(default=OverfittingPreset.BALANCED, converter=_preset)
    sample_rate: int = attrs.field(default=22050, validator=v.integer(4000, 384000))
    channels: int = attrs.field(default=1, validator=v.integer(1, 8))
    chunk_seconds: float = attrs.field(default=1.0, validator=v.number(0.05, 60.0))
    max_epochs: int = attrs.field(default=150, validator=v.integer(1))
    batch_size: int = attrs.field(default=8, validator=v.integer(1, 4096))
    learning_rate: float = attrs.field(default=1e-3, validator=v.number(0.0, 1.0, exclusive_minimum=True))
    latent_dim: int = attrs.field(default=32, validator=v.integer(1, 4096))
    validation_fraction: float = attrs.field(default=0.15, validator=v.number(0.0, 1.0, exclusive_maximum=True))
    split_seed: int = attrs.field(default=42, validator=v.integer(0))
    seed: int = attrs.field(default=42, validator=v.integer(0))
    augmentation_probability: float = attrs.field(default=0.5, validator=v.number(0.0, 1.0))
    augmentation_strength: float = attrs.field(default=0.7, validator=v.number(0.0, 1.0))
    overfitting_threshold: float = attrs.field(default=0.20, validator=v.number(0.0, exclusive_minimum=True))
    overfitting_min_epochs: int = attrs.field(default=3, validator=v.integer(1))
    overfitting_patience: int = attrs.field(default=3, validator=v.integer(1))
    early_stopping: bool = attrs.field(default=True, validator=v.instance_of(bool, "true or false"))
    early_stopping_patience: int = attrs.field(default=15, validator=v.integer(1))
    early_stopping_from: float = attrs.field(default=0.5, validator=v.number(0.0, 1.0, exclusive_maximum=True))
    min_validation_chunks: int = attrs.field(default=8, validator=v.integer(0))
    ema_decay: float = attrs.field(default=0.99, validator=v.number(0.0, 1.0, exclusive_maximum=True))
    preview_interval: int | None = attrs.field(
        default=None, converter=v.auto_is_none, validator=v.integer(1, optional=True)
    )
    samples_per_epoch: int | None = attrs.field(
        default=None, converter=v.auto_is_none, validator=v.integer(1, optional=True)
    )
    min_steps_per_epoch: int = attrs.field(default=8, validator=v.integer(1, 100000))
    num_workers: int | None = attrs.field(
        default=None, converter=v.auto_is_none, validator=v.integer(0, 64, optional=True)
    )
    device: str = attrs.field(default="auto", validator=v.one_of(DEVICES))
    precision: str = attrs.field(default="auto", validator=v.one_of(PRECISIONS))
    model: str = attrs.field(default="wave_vae", validator=_model_name)
    evaluation_sounds: int = attrs.field(default=32, validator=_evaluation_sounds)
    regularization: RegularizationConfig = attrs.field(factory=RegularizationConfig, converter=_regularization)
    plugins: dict[str, dict[str, Any]] = attrs.field(factory=dict, converter=_plugin_settings)

    def plugin_settings(self, name: str) -> dict[str, Any]:
        """The ``[plugins.NAME]`` table for one plugin (empty when the user set nothing)."""
        return dict(self.plugins.get(name, {}))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict; ``TrainingConfig.from_dict`` of it compares equal."""
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainingConfig":
        """Rebuild a config; unknown keys raise :class:`ConfigError` listing the allowed ones."""
        return from_jsonable(cls, data)


def setting_names() -> tuple[str, ...]:
    """Every top-level override key (``regularization.*`` and ``plugins.*`` take sub-keys)."""
    return tuple(field.name for field in attrs.fields(TrainingConfig))


#: The model every run saved before the ``model`` setting existed was trained with.
MODEL_BEFORE_SETTING = "mel_vae"


#: The key of ``config.json`` recording how many processes trained the run, under torchrun (a
#: record of the launch, not a setting: absent for one process).
WORLD_SIZE_KEY = "world_size"


def stored_config(data: Mapping[str, Any]) -> TrainingConfig:
    """A run's saved config (``config.json``, a checkpoint's ``"config"``) as a TrainingConfig.

    Runs saved before the ``model`` setting existed were all trained with the mel-VAE, so a
    saved config without ``model`` names it (not today's default) and its weights still load.
    ``world_size`` (:data:`WORLD_SIZE_KEY`) records the launch and is no setting: it is left out.
    """
    if WORLD_SIZE_KEY in data:
        data = {key: value for key, value in data.items() if key != WORLD_SIZE_KEY}
    if "model" not in data:
        data = {**data, "model": MODEL_BEFORE_SETTING}
    return TrainingConfig.from_dict(data)


def apply_overrides(config: TrainingConfig, overrides: Mapping[str, Any] | None) -> TrainingConfig:
    """Return ``config`` with nested ``overrides`` applied; validation errors name the key.

    ``overrides`` is a nested mapping such as ``{"max_epochs": 20, "regularization":
    {"dropout": 0.3}, "plugins": {"plots": {"dpi": 150}}}``. Applying the same overrides twice
    gives the same config, so the engine can re-apply user overrides after any provider.
    ``regularization`` merges field by field (a RegularizationConfig replaces it whole);
    ``plugins`` tables merge recursively. Nothing of ``overrides`` is shared with the result.
    """
    if not overrides:
        return config
    if not isinstance(overrides, Mapping):
        raise ConfigError("overrides", overrides, "a table of settings such as {'max_epochs': 20}")
    known = {field.name: field for field in attrs.fields(TrainingConfig)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError.unknown_key(str(key), known, owner="the training settings")
        if key == "regularization":
            if isinstance(value, RegularizationConfig):
                changes[key] = value
            elif isinstance(value, Mapping):
                merged = {**config.regularization.to_dict(), **value}
                changes[key] = from_jsonable(RegularizationConfig, merged, "regularization")
            else:
                raise ConfigError("regularization", value, "a table of regularisation settings")
        elif key == "plugins":
            changes[key] = _deep_merge(config.plugins, _plugin_settings(value))
        else:
            changes[key] = value
    return attrs.evolve(config, **changes)


def get_effective_preview_interval(config: TrainingConfig) -> int:
    """Epochs between previews: the configured interval, else 2 below 50 epochs and 5 otherwise."""
    if config.preview_interval is not None:
        return config.preview_interval
    return 2 if config.max_epochs < 50 else 5
