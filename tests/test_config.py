"""TrainingConfig, RegularizationConfig and OverfittingPreset: validation, overrides, JSON."""

from __future__ import annotations

import json
import math

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sda_core.config import (
    DEVICES,
    OverfittingPreset,
    RegularizationConfig,
    TrainingConfig,
    apply_overrides,
    get_effective_preview_interval,
    setting_names,
)
from sda_core.errors import ConfigError

# -- strategies -----------------------------------------------------------------------------

finite = dict(allow_nan=False, allow_infinity=False)


def json_scalars() -> st.SearchStrategy:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53), 2**53),
        st.floats(**finite),
        st.text(max_size=8),
    )


json_values = st.recursive(
    json_scalars(),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)

plugin_tables = st.dictionaries(
    st.text(min_size=1, max_size=10),
    st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=3),
    max_size=3,
)


@st.composite
def regularizations(draw) -> RegularizationConfig:
    return RegularizationConfig(
        dropout=draw(st.floats(0.0, 1.0, exclude_max=True)),
        weight_decay=draw(st.floats(0.0, 1.0)),
        gradient_clip_norm=draw(st.floats(0.0, 1e6)),
        kl_weight=draw(st.floats(0.0, 1e3)),
        kl_warmup_epochs=draw(st.integers(0, 10_000)),
        free_bits=draw(st.floats(0.0, 100.0)),
    )


optional_int = lambda lo, hi: st.none() | st.integers(lo, hi)  # noqa: E731


@st.composite
def configs(draw) -> TrainingConfig:
    return TrainingConfig(
        preset=draw(st.sampled_from(OverfittingPreset)),
        sample_rate=draw(st.integers(4000, 384000)),
        channels=draw(st.integers(1, 8)),
        chunk_seconds=draw(st.floats(0.05, 60.0)),
        max_epochs=draw(st.integers(1, 100_000)),
        batch_size=draw(st.integers(1, 4096)),
        learning_rate=draw(st.floats(0.0, 1.0, exclude_min=True)),
        latent_dim=draw(st.integers(1, 4096)),
        validation_fraction=draw(st.floats(0.0, 1.0, exclude_max=True)),
        split_seed=draw(st.integers(0, 2**32)),
        seed=draw(st.integers(0, 2**32)),
        augmentation_probability=draw(st.floats(0.0, 1.0)),
        augmentation_strength=draw(st.floats(0.0, 1.0)),
        overfitting_threshold=draw(st.floats(0.0, 10.0, exclude_min=True)),
        overfitting_min_epochs=draw(st.integers(1, 1000)),
        overfitting_patience=draw(st.integers(1, 1000)),
        early_stopping=draw(st.booleans()),
        early_stopping_patience=draw(st.integers(1, 1000)),
        preview_interval=draw(optional_int(1, 1000)),
        samples_per_epoch=draw(optional_int(1, 10**6)),
        num_workers=draw(optional_int(0, 64)),
        device=draw(st.sampled_from(DEVICES)),
        regularization=draw(regularizations()),
        plugins=draw(plugin_tables),
    )


def json_round_trip(data):
    return json.loads(json.dumps(data, allow_nan=False))


# -- defaults and presets ---------------------------------------------------------------------


def test_default_config_is_valid_and_uses_documented_defaults():
    config = TrainingConfig()
    assert config.split_seed == 42
    assert config.chunk_seconds == 1.0
    assert config.augmentation_probability == 0.5
    assert config.overfitting_threshold == pytest.approx(0.20)
    assert config.preview_interval is None
    assert isinstance(config.regularization, RegularizationConfig)
    assert config.plugins == {}


def test_three_presets():
    assert {p.name for p in OverfittingPreset} == {"CONSERVATIVE", "BALANCED", "AGGRESSIVE"}


@pytest.mark.parametrize("spelling", ["aggressive", "AGGRESSIVE", "Aggressive", OverfittingPreset.AGGRESSIVE])
def test_preset_accepts_member_value_or_name_in_any_case(spelling):
    assert TrainingConfig(preset=spelling).preset is OverfittingPreset.AGGRESSIVE


@pytest.mark.parametrize("bad", ["reckless", "", 1, None, True, ["balanced"]])
def test_unknown_preset_names_field_and_allowed_values(bad):
    with pytest.raises(ConfigError) as info:
        TrainingConfig(preset=bad)
    message = str(info.value)
    assert "preset" in message
    for member in OverfittingPreset:
        assert member.value in message
    assert info.value.field == "preset"


# -- validation -------------------------------------------------------------------------------

INVALID = [
    ("max_epochs", -1, "integer"),
    ("max_epochs", 0, "integer"),
    ("max_epochs", True, "integer"),
    ("max_epochs", 10.0, "integer"),
    ("max_epochs", float("nan"), "integer"),
    ("max_epochs", "10", "integer"),
    ("batch_size", False, "integer"),
    ("batch_size", 5000, "4096"),
    ("sample_rate", 100, "4000"),
    ("channels", 0, "1"),
    ("latent_dim", None, "integer"),
    ("split_seed", -1, ">= 0"),
    ("validation_fraction", 1.0, "< 1.0"),
    ("validation_fraction", 1.5, "< 1.0"),
    ("validation_fraction", -0.1, ">= 0.0"),
    ("validation_fraction", float("nan"), "finite"),
    ("validation_fraction", True, "number"),
    ("learning_rate", 0.0, "> 0.0"),
    ("learning_rate", float("inf"), "finite"),
    ("learning_rate", float("nan"), "finite"),
    ("learning_rate", "0.001", "number"),
    ("chunk_seconds", 0.0, "0.05"),
    ("augmentation_probability", 1.01, "<= 1.0"),
    ("augmentation_strength", -0.5, ">= 0.0"),
    ("overfitting_threshold", 0.0, "> 0.0"),
    ("overfitting_threshold", float("nan"), "finite"),
    ("overfitting_min_epochs", 0, "integer"),
    ("early_stopping", 1, "true or false"),
    ("early_stopping", "yes", "true or false"),
    ("early_stopping_patience", 0, "integer"),
    ("preview_interval", 0, "auto"),
    ("preview_interval", True, "auto"),
    ("samples_per_epoch", -5, "auto"),
    ("num_workers", 65, "64"),
    ("device", "tpu", "cpu"),
    ("device", "CPU", "cuda"),
    ("precision", "fp64", "bf16"),
    ("precision", "FP16", "fp32"),
]


@pytest.mark.parametrize(("field", "value", "allowed_part"), INVALID)
def test_invalid_value_raises_config_error_naming_field_and_allowed(field, value, allowed_part):
    with pytest.raises(ConfigError) as info:
        TrainingConfig(**{field: value})
    message = str(info.value)
    assert message.startswith(field + ":"), message
    assert "expected" in message
    assert allowed_part in message
    assert info.value.field == field


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("dropout", float("nan")),
        ("dropout", True),
        ("weight_decay", 2.0),
        ("gradient_clip_norm", -1.0),
        ("kl_weight", float("inf")),
        ("kl_warmup_epochs", -1),
        ("kl_warmup_epochs", 2.5),
        ("kl_warmup_epochs", False),
        ("free_bits", "0.1"),
    ],
)
def test_invalid_regularization_raises_config_error(field, value):
    with pytest.raises(ConfigError) as info:
        RegularizationConfig(**{field: value})
    assert field in str(info.value)
    assert "expected" in str(info.value)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        TrainingConfig(max_epochs=-3)


def test_boundaries_that_are_allowed():
    TrainingConfig(validation_fraction=0.0, augmentation_strength=0.0, augmentation_probability=1.0)
    TrainingConfig(validation_fraction=0.999, learning_rate=1.0, num_workers=0, preview_interval=1)
    RegularizationConfig(dropout=0.0, weight_decay=0.0, gradient_clip_norm=0.0, kl_warmup_epochs=0)


@pytest.mark.parametrize(
    ("plugins", "field"),
    [
        ("plots", "plugins"),
        (["x"], "plugins"),
        (None, "plugins"),
        ({"plots": 3}, "plugins.plots"),
        ({"plots": None}, "plugins.plots"),
        ({"plots": ["dpi"]}, "plugins.plots"),
    ],
)
def test_plugins_must_be_a_table_of_tables(plugins, field):
    with pytest.raises(ConfigError) as info:
        TrainingConfig(plugins=plugins)
    assert str(info.value).startswith(field + ":")


def test_regularization_may_be_given_as_a_table():
    config = TrainingConfig(regularization={"dropout": 0.4})
    assert config.regularization == RegularizationConfig(dropout=0.4)
    with pytest.raises(ConfigError, match="regularization"):
        TrainingConfig(regularization=0.4)


# -- frozen -------------------------------------------------------------------------------------


def test_configs_are_frozen():
    config = TrainingConfig()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.max_epochs = 5  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.regularization.dropout = 0.5  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        del config.seed  # type: ignore[misc]


def test_plugin_settings_returns_a_copy():
    config = TrainingConfig(plugins={"plots": {"dpi": 100}})
    table = config.plugin_settings("plots")
    table["dpi"] = 1
    assert config.plugin_settings("plots") == {"dpi": 100}
    assert config.plugin_settings("absent") == {}


def test_config_does_not_alias_the_callers_tables():
    tables = {"plots": {"sizes": [1, 2], "style": {"line": "solid"}}}
    config = TrainingConfig(plugins=tables)
    tables["plots"]["sizes"].append(3)
    tables["plots"]["style"]["line"] = "dashed"
    tables["plots"]["new"] = True
    assert config.plugins == {"plots": {"sizes": [1, 2], "style": {"line": "solid"}}}


# -- overrides ------------------------------------------------------------------------------------


def test_apply_overrides_changes_top_level_fields():
    config = apply_overrides(TrainingConfig(), {"max_epochs": 20, "preset": "aggressive", "device": "cpu"})
    assert config.max_epochs == 20
    assert config.preset is OverfittingPreset.AGGRESSIVE
    assert config.device == "cpu"


def test_apply_overrides_without_overrides_returns_the_config():
    config = TrainingConfig(max_epochs=7)
    assert apply_overrides(config, None) is config
    assert apply_overrides(config, {}) is config


def test_apply_overrides_merges_regularization():
    base = TrainingConfig(regularization=RegularizationConfig(dropout=0.3, weight_decay=0.01))
    config = apply_overrides(base, {"regularization": {"dropout": 0.1}})
    assert config.regularization.dropout == 0.1
    assert config.regularization.weight_decay == 0.01  # kept
    assert base.regularization.dropout == 0.3  # the original is untouched


def test_apply_overrides_accepts_a_regularization_config():
    reg = RegularizationConfig(dropout=0.05)
    assert apply_overrides(TrainingConfig(), {"regularization": reg}).regularization == reg


def test_apply_overrides_merges_plugin_tables():
    base = TrainingConfig(plugins={"plots": {"dpi": 100, "style": {"line": "solid", "width": 1}}, "other": {"x": 1}})
    config = apply_overrides(base, {"plugins": {"plots": {"format": "png", "style": {"width": 2}}, "new": {"y": 2}}})
    assert config.plugins == {
        "plots": {"dpi": 100, "format": "png", "style": {"line": "solid", "width": 2}},
        "other": {"x": 1},
        "new": {"y": 2},
    }
    assert base.plugins["plots"] == {"dpi": 100, "style": {"line": "solid", "width": 1}}


def test_apply_overrides_is_idempotent_on_an_example():
    overrides = {
        "max_epochs": 20,
        "regularization": {"dropout": 0.25},
        "plugins": {"plots": {"dpi": 150, "nested": {"a": [1, 2]}}},
    }
    once = apply_overrides(TrainingConfig(), overrides)
    assert apply_overrides(once, overrides) == once


@settings(max_examples=60, deadline=None)
@given(configs(), configs(), st.sets(st.sampled_from(setting_names()), max_size=8))
def test_apply_overrides_is_idempotent(base, source, keys):
    source_dict = source.to_dict()
    overrides = {key: source_dict[key] for key in keys}
    once = apply_overrides(base, overrides)
    assert apply_overrides(once, overrides) == once
    for key in keys - {"regularization", "plugins"}:
        assert once.to_dict()[key] == source_dict[key]
    if "regularization" in keys:
        assert once.regularization == source.regularization


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("max_epoch", "max_epochs"), ("batchsize", "batch_size"), ("lerning_rate", "learning_rate")],
)
def test_unknown_override_key_names_it_suggests_and_lists_allowed(key, suggestion):
    with pytest.raises(ConfigError) as info:
        apply_overrides(TrainingConfig(), {key: 1})
    message = str(info.value)
    assert repr(key) in message
    assert f"did you mean {suggestion!r}" in message
    for name in setting_names():
        assert name in message


def test_unknown_key_without_close_match_has_no_suggestion():
    with pytest.raises(ConfigError) as info:
        apply_overrides(TrainingConfig(), {"zzzzqqq": 1})
    assert "did you mean" not in str(info.value)
    assert "max_epochs" in str(info.value)


def test_unknown_regularization_key_names_it_and_suggests():
    with pytest.raises(ConfigError) as info:
        apply_overrides(TrainingConfig(), {"regularization": {"dropot": 0.2}})
    message = str(info.value)
    assert "dropot" in message
    assert "regularization" in message
    assert "did you mean 'dropout'" in message
    assert "weight_decay" in message


def test_invalid_regularization_override_names_the_dotted_field():
    with pytest.raises(ConfigError) as info:
        apply_overrides(TrainingConfig(), {"regularization": {"dropout": 1.5}})
    assert "regularization.dropout" in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"max_epochs": -5}, "max_epochs"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"preset": "wild"}, "preset"),
        ({"batch_size": True}, "batch_size"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"regularization": 3}, "regularization"),
        ({"plugins": {"plots": 3}}, "plugins.plots"),
        ({"plugins": [1]}, "plugins"),
    ],
)
def test_invalid_override_value_names_field(overrides, field):
    with pytest.raises(ConfigError) as info:
        apply_overrides(TrainingConfig(), overrides)
    assert str(info.value).startswith(field + ":") or f"{field}:" in str(info.value)


def test_override_of_unknown_preset_lists_allowed():
    with pytest.raises(ConfigError, match="conservative, balanced, aggressive"):
        apply_overrides(TrainingConfig(), {"preset": "wild"})


# -- JSON round trip -------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(configs())
def test_json_round_trip(config):
    data = json_round_trip(config.to_dict())
    assert TrainingConfig.from_dict(data) == config
    assert TrainingConfig.from_dict(data).to_dict() == config.to_dict()


@settings(max_examples=40, deadline=None)
@given(regularizations())
def test_regularization_json_round_trip(reg):
    assert RegularizationConfig.from_dict(json_round_trip(reg.to_dict())) == reg


def test_to_dict_is_plain_json():
    data = TrainingConfig(plugins={"plots": {"dpi": 1}}).to_dict()
    assert data["preset"] == "balanced"
    assert isinstance(data["regularization"], dict)
    assert json_round_trip(data) == data


def test_from_dict_of_a_partial_dict_uses_defaults():
    assert TrainingConfig.from_dict({"max_epochs": 3}) == TrainingConfig(max_epochs=3)
    assert TrainingConfig.from_dict({}) == TrainingConfig()


def test_from_dict_unknown_key_lists_allowed():
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_dict({"max_epoch": 3})
    assert "did you mean 'max_epochs'" in str(info.value)
    assert "batch_size" in str(info.value)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"preset": "bogus"}, "preset"),
        ({"plugins": 5}, "plugins"),
        ({"plugins": {"a": 5}}, "plugins.a"),
        ({"regularization": 5}, "regularization"),
        ({"regularization": None}, "regularization"),
        ({"max_epochs": None}, "max_epochs"),
        ({"max_epochs": "x"}, "max_epochs"),
        ({"learning_rate": "fast"}, "learning_rate"),
    ],
)
def test_from_dict_with_bad_values_raises_config_error(data, field):
    with pytest.raises(ConfigError) as info:
        TrainingConfig.from_dict(data)
    assert field in str(info.value)


def test_from_dict_rejects_a_non_table():
    with pytest.raises(ConfigError):
        TrainingConfig.from_dict([("max_epochs", 3)])  # type: ignore[arg-type]


def test_from_dict_does_not_take_a_bool_for_a_float():
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainingConfig.from_dict({"learning_rate": True})


def test_integer_valued_floats_round_trip_as_floats():
    config = TrainingConfig(learning_rate=1, chunk_seconds=2)
    back = TrainingConfig.from_dict(json_round_trip(config.to_dict()))
    assert back == config
    assert isinstance(back.learning_rate, float) and isinstance(back.chunk_seconds, float)


# -- preview interval -------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_epochs", "expected"), [(1, 2), (49, 2), (50, 5), (100, 5), (1000, 5)])
def test_effective_preview_interval(max_epochs, expected):
    assert get_effective_preview_interval(TrainingConfig(max_epochs=max_epochs)) == expected


def test_explicit_preview_interval_wins():
    assert get_effective_preview_interval(TrainingConfig(max_epochs=10, preview_interval=7)) == 7
    assert get_effective_preview_interval(TrainingConfig(max_epochs=500, preview_interval=1)) == 1


def test_setting_names_lists_every_field():
    assert set(setting_names()) == {f.name for f in attrs.fields(TrainingConfig)}
    assert not math.isnan(TrainingConfig().learning_rate)


@pytest.mark.parametrize("field", ["preview_interval", "samples_per_epoch", "num_workers"])
def test_auto_resets_an_optional_setting(field):
    config = apply_overrides(TrainingConfig(**{field: 3}), {field: "auto"})
    assert getattr(config, field) is None


def test_defaults_are_the_balanced_preset():
    from sda_plugins.adaptive_presets import PRESETS

    values = PRESETS[OverfittingPreset.BALANCED]
    config = TrainingConfig()
    assert config.preset is OverfittingPreset.BALANCED
    assert (config.max_epochs, config.learning_rate, config.latent_dim, config.augmentation_strength) == (
        values.max_epochs,
        values.learning_rate,
        values.latent_dim,
        values.augmentation_strength,
    )
    assert (config.validation_fraction, config.overfitting_patience, config.early_stopping_patience) == (
        values.validation_fraction,
        values.overfitting_patience,
        values.early_stopping_patience,
    )
    reg = config.regularization
    assert (reg.dropout, reg.weight_decay, reg.kl_weight) == (values.dropout, values.weight_decay, values.kl_weight)
