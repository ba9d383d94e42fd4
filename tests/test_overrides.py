"""User overrides: ``--set`` parsing, sda.toml loading and merging with a fixed precedence."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sda_core.config import TrainingConfig, apply_overrides
from sda_core.config.overrides import (
    SETTINGS_FILENAME,
    collect_overrides,
    load_settings_file,
    merge_overrides,
    parse_set_options,
)
from sda_core.errors import ConfigError

# -- parse_set_options -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("max_epochs=20", {"max_epochs": 20}),
        ("max_epochs = 20", {"max_epochs": 20}),
        ("seed=-3", {"seed": -3}),
        ("seed=1_000", {"seed": 1000}),
        ("learning_rate=0.0005", {"learning_rate": 0.0005}),
        ("learning_rate=5e-4", {"learning_rate": 5e-4}),
        ("early_stopping=false", {"early_stopping": False}),
        ("early_stopping=true", {"early_stopping": True}),
        ("preset=aggressive", {"preset": "aggressive"}),
        ('preset="aggressive"', {"preset": "aggressive"}),
        ("preset='aggressive'", {"preset": "aggressive"}),
        ('name="a=b"', {"name": "a=b"}),
        ("name=a=b", {"name": "a=b"}),
        ("name=hello world", {"name": "hello world"}),
        ('name=""', {"name": ""}),
        ('name="true"', {"name": "true"}),
        ('name="42"', {"name": "42"}),
        ("name=", {"name": ""}),
        ("sizes=[1, 2, 3]", {"sizes": [1, 2, 3]}),
        ('names=["a", "b"]', {"names": ["a", "b"]}),
        ("empty=[]", {"empty": []}),
        ("table={a = 1, b = 'x'}", {"table": {"a": 1, "b": "x"}}),
        ("regularization.dropout=0.3", {"regularization": {"dropout": 0.3}}),
        ("plugins.plots.dpi=150", {"plugins": {"plots": {"dpi": 150}}}),
        ("plugins.my-plugin.mode=fast", {"plugins": {"my-plugin": {"mode": "fast"}}}),
        (" plugins . plots . dpi =150", {"plugins": {"plots": {"dpi": 150}}}),
    ],
)
def test_parse_one_option(option, expected):
    assert parse_set_options([option]) == expected


def test_parse_no_options():
    assert parse_set_options([]) == {}


def test_parse_many_options_merge_into_nested_tables():
    result = parse_set_options(
        [
            "max_epochs=20",
            "plugins.plots.dpi=150",
            "plugins.plots.format=png",
            "plugins.other.on=true",
            "regularization.dropout=0.3",
            "regularization.weight_decay=1e-3",
        ]
    )
    assert result == {
        "max_epochs": 20,
        "plugins": {"plots": {"dpi": 150, "format": "png"}, "other": {"on": True}},
        "regularization": {"dropout": 0.3, "weight_decay": 1e-3},
    }


def test_later_option_wins():
    assert parse_set_options(["max_epochs=5", "max_epochs=7"]) == {"max_epochs": 7}
    assert parse_set_options(["plugins.a.x=1", "plugins.a={y = 2}"]) == {"plugins": {"a": {"y": 2}}}


@pytest.mark.parametrize(
    "option",
    [
        "max_epochs",
        "",
        "=5",
        " =5",
        ".max_epochs=5",
        "plugins..dpi=1",
        "plugins.plots.=1",
        "sizes=[1, 2",
        "table={a = 1",
        'name="unterminated',
        "name='unterminated",
    ],
)
def test_malformed_option_is_a_config_error_naming_it(option):
    with pytest.raises(ConfigError) as info:
        parse_set_options([option])
    assert "--set" in str(info.value)
    assert repr(option) in str(info.value)


def test_value_then_subkey_conflict_is_a_config_error():
    with pytest.raises(ConfigError, match="max_epochs"):
        parse_set_options(["max_epochs=5", "max_epochs.sub=1"])


@pytest.mark.parametrize(
    "raw",
    [
        "__import__('os').system('touch /tmp/sda_pwned')",
        "os.system('x')",
        "$(touch /tmp/sda_pwned)",
        "`touch /tmp/sda_pwned`",
        "%(x)s{{7*7}}",
        "7*7",
        "${HOME}",
        'exec("print(1)")',
    ],
)
def test_values_are_data_never_evaluated(raw, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = parse_set_options([f"name={raw}"])
    assert result == {"name": raw}
    assert isinstance(result["name"], str)
    assert not os.path.exists("/tmp/sda_pwned")


def test_toml_dates_stay_strings_so_configs_stay_json():
    result = parse_set_options(["plugins.log.since=2024-01-02", "plugins.log.at=07:32:00"])
    assert result == {"plugins": {"log": {"since": "2024-01-02", "at": "07:32:00"}}}
    config = apply_overrides(TrainingConfig(), result)
    assert config.plugin_settings("log") == {"since": "2024-01-02", "at": "07:32:00"}


def test_parsed_overrides_apply_to_a_config():
    overrides = parse_set_options(
        [
            "max_epochs=20",
            "preset=conservative",
            "plugins.plots.dpi=150",
            "regularization.dropout=0.25",
            "early_stopping=false",
        ]
    )
    config = apply_overrides(TrainingConfig(), overrides)
    assert config.max_epochs == 20
    assert config.preset.value == "conservative"
    assert config.plugin_settings("plots") == {"dpi": 150}
    assert config.regularization.dropout == 0.25
    assert config.early_stopping is False


def test_a_string_for_a_number_is_rejected_when_applied():
    with pytest.raises(ConfigError, match="max_epochs"):
        apply_overrides(TrainingConfig(), parse_set_options(["max_epochs=twenty"]))


@settings(max_examples=60, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1))
def test_integers_parse_as_integers(number):
    assert parse_set_options([f"seed={number}"]) == {"seed": number}


@settings(max_examples=60, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_parse_as_floats(number):
    assert parse_set_options([f"x={number!r}"]) == {"x": number}


@settings(max_examples=80, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30))
def test_any_text_value_is_parsed_or_rejected_never_crashes(raw):
    try:
        result = parse_set_options([f"plugins.p.v={raw}"])
    except ConfigError:
        return
    value = result["plugins"]["p"]["v"]
    assert isinstance(value, (str, int, float, bool, list, dict))


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\"'\\"), max_size=30))
def test_double_quoted_text_round_trips(text):
    assert parse_set_options([f'name="{text}"']) == {"name": text}


# -- load_settings_file -------------------------------------------------------------------------


def test_absent_settings_file_gives_empty(tmp_path):
    assert load_settings_file(tmp_path) == {}
    assert load_settings_file(tmp_path / "does-not-exist") == {}


def test_settings_file_is_read(tmp_path):
    (tmp_path / SETTINGS_FILENAME).write_text(
        'max_epochs = 30\npreset = "balanced"\n\n[regularization]\ndropout = 0.3\n\n'
        '[plugins.plots]\ndpi = 200\nformats = ["png", "svg"]\n',
        encoding="utf-8",
    )
    assert load_settings_file(tmp_path) == {
        "max_epochs": 30,
        "preset": "balanced",
        "regularization": {"dropout": 0.3},
        "plugins": {"plots": {"dpi": 200, "formats": ["png", "svg"]}},
    }
    assert load_settings_file(str(tmp_path)) == load_settings_file(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"max_epochs = = 3\n", b"[plugins\n", b"a = 1\na = 2\n", b"name = 'x\n", b"\xff\xfe not utf-8 \x80"],
)
def test_broken_settings_file_is_a_config_error_naming_it(tmp_path, content):
    path = tmp_path / SETTINGS_FILENAME
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_settings_file(tmp_path)
    assert str(path) in str(info.value)


def test_settings_file_values_are_data(tmp_path):
    (tmp_path / SETTINGS_FILENAME).write_text("name = \"__import__('os').system('x')\"\n", encoding="utf-8")
    assert load_settings_file(tmp_path) == {"name": "__import__('os').system('x')"}


def test_settings_file_dates_become_strings(tmp_path):
    (tmp_path / SETTINGS_FILENAME).write_text("[plugins.log]\nsince = 2024-01-02\n", encoding="utf-8")
    assert load_settings_file(tmp_path) == {"plugins": {"log": {"since": "2024-01-02"}}}


def test_unreadable_settings_file_is_a_config_error(tmp_path, monkeypatch):
    path = tmp_path / SETTINGS_FILENAME
    path.write_text("max_epochs = 3\n", encoding="utf-8")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(path), "open", refuse)
    with pytest.raises(ConfigError) as info:
        load_settings_file(tmp_path)
    assert str(path) in str(info.value)
    assert "Permission denied" in str(info.value)


# -- merge_overrides ------------------------------------------------------------------------------


def test_merge_precedence_file_then_api_then_cli(tmp_path):
    api = {
        "max_epochs": 10,
        "seed": 1,
        "regularization": {"dropout": 0.1, "weight_decay": 0.01},
        "plugins": {"plots": {"dpi": 72, "format": "png"}, "api_only": {"x": 1}},
    }
    (tmp_path / SETTINGS_FILENAME).write_text(
        "max_epochs = 20\nbatch_size = 4\n[regularization]\ndropout = 0.2\nkl_weight = 0.5\n[plugins.plots]\ndpi = 100\n",
        encoding="utf-8",
    )
    cli = parse_set_options(["max_epochs=30", "plugins.plots.theme=dark"])
    merged = collect_overrides(tmp_path, api=api, cli=cli)
    assert merged == merge_overrides(load_settings_file(tmp_path), api, cli)
    assert merged == {
        "max_epochs": 30,  # CLI beats API beats file
        "seed": 1,  # only the API set it
        "batch_size": 4,  # only the file set it
        "regularization": {"dropout": 0.1, "weight_decay": 0.01, "kl_weight": 0.5},  # API beats file, key by key
        "plugins": {"plots": {"dpi": 72, "format": "png", "theme": "dark"}, "api_only": {"x": 1}},
    }


def test_merge_ignores_empty_layers():
    assert merge_overrides() == {}
    assert merge_overrides(None, {}, None) == {}
    assert merge_overrides(None, {"a": 1}) == {"a": 1}


def test_merge_replaces_a_value_by_a_table_and_back():
    assert merge_overrides({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert merge_overrides({"a": {"b": 2}}, {"a": 1}) == {"a": 1}


def test_merge_does_not_mutate_or_alias_its_inputs():
    api = {"plugins": {"plots": {"sizes": [1], "dpi": 72}}}
    cli = {"plugins": {"plots": {"dpi": 100}}}
    merged = merge_overrides(api, cli)
    assert api == {"plugins": {"plots": {"sizes": [1], "dpi": 72}}}
    assert cli == {"plugins": {"plots": {"dpi": 100}}}
    merged["plugins"]["plots"]["sizes"].append(2)
    merged["plugins"]["plots"]["new"] = 1
    assert api == {"plugins": {"plots": {"sizes": [1], "dpi": 72}}}


nested_tables = st.recursive(
    st.one_of(st.integers(), st.booleans(), st.text(max_size=4)),
    lambda children: st.dictionaries(st.sampled_from("abcd"), children, max_size=4),
    max_leaves=10,
).filter(lambda value: isinstance(value, dict))


def _lookup(table, path):
    for key in path:
        if not isinstance(table, dict) or key not in table:
            return None, False
        table = table[key]
    return table, True


def _leaves(table, prefix=()):
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


@settings(max_examples=100, deadline=None)
@given(st.lists(nested_tables, max_size=4))
def test_merge_properties(layers):
    merged = merge_overrides(*layers)
    # associative with itself and idempotent
    assert merge_overrides(merged, merged) == merged
    if layers:
        assert merge_overrides(merge_overrides(*layers[:-1]), layers[-1]) == merged
        # every leaf of the last layer survives unchanged
        for path, value in _leaves(layers[-1]):
            found, present = _lookup(merged, path)
            assert present and found == value


# -- a host's preview and its run -------------------------------------------------------------------


def test_a_host_previews_the_config_it_then_trains_and_a_resume_does_not_reread_sda_toml(sda_audio_folder, tmp_path):
    """The Python API dict wins over sda.toml in ``collect_overrides`` as in ``Engine.train``."""
    import json

    from sda_core import Engine
    from sda_core.testing import fast_settings

    data = sda_audio_folder(sample_rates=[8000])
    (data / SETTINGS_FILENAME).write_text(
        "max_epochs = 80\nbatch_size = 2\nseed = 5\n[regularization]\ndropout = 0.35\nkl_weight = 0.5\n"
    )
    api = fast_settings(max_epochs=1, seed=7, batch_size=None, regularization={"dropout": 0.2})
    engine = Engine(load_entrypoints=False, plugins=[], environ={})
    for name, plugin in reference_plugins_without_progress():
        engine.register(plugin, name=name)

    preview = engine.resolve_config(engine.scan(data), engine.collect_overrides(data, api=api))
    assert (preview.max_epochs, preview.seed, preview.batch_size) == (1, 7, 2)  # API, API, sda.toml
    assert (preview.regularization.dropout, preview.regularization.kl_weight) == (0.2, 0.5)

    run = tmp_path / "run"
    engine.train(data, run, api)
    assert json.loads((run / "config.json").read_text()) == preview.to_dict()

    # an edited sda.toml is not read again on resume: only what the host passes changes the config
    (data / SETTINGS_FILENAME).write_text("max_epochs = 80\nbatch_size = 3\nseed = 5\n")
    started = []
    engine.train(data, run, {"max_epochs": 2}, resume=True, callback=started.append)
    resumed = next(event.config for event in started if event.kind == "train_start")
    assert resumed == {**preview.to_dict(), "max_epochs": 2}


def reference_plugins_without_progress():
    from sda_core.testing import reference_plugins

    return [(name, plugin) for name, plugin in reference_plugins() if name != "progress"]
