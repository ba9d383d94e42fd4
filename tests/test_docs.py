"""The docs must not drift from the code.

* docs/hooks.md documents every hookspec, with the spec's arguments in order, the right kind, and
  an events table matching the attrs fields of every event; its example hook implementations load.
* docs/presets.md tabulates exactly the values of ``PRESETS`` and the file-count boundaries.
* docs/configuration.md lists every TrainingConfig / RegularizationConfig setting with its default,
  and its sda.toml and ``--set`` examples are valid.
"""

from __future__ import annotations

import enum
import inspect
import re
import tomllib
import types
import warnings
from pathlib import Path

import attrs
import pytest

from sda_core.config import (
    OverfittingPreset,
    RegularizationConfig,
    TrainingConfig,
    apply_overrides,
    get_effective_preview_interval,
)
from sda_core.config.events import EVENT_HOOKS, EVENT_TYPES
from sda_core.config.overrides import SETTINGS_FILENAME, parse_set_options
from sda_core.engine import Engine
from sda_core.hooks import specs as hookspecs
from sda_plugins import adaptive_presets
from sda_plugins.adaptive_presets import (
    BALANCED_MAX_FILES,
    BATCH_SIZES,
    CONSERVATIVE_MAX_FILES,
    MAX_FILES,
    MIN_FILES,
    PRESETS,
    DatasetSizeWarning,
    PresetValues,
    get_adaptive_config,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
HOOKS_MD = (DOCS / "hooks.md").read_text(encoding="utf-8")
PRESETS_MD = (DOCS / "presets.md").read_text(encoding="utf-8")
CONFIGURATION_MD = (DOCS / "configuration.md").read_text(encoding="utf-8")

HOOK_HEADING = re.compile(r"^### (sda_\w+)\((.*)\)[ \t]*$", re.MULTILINE)


# -- markdown helpers -------------------------------------------------------------------------


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line) up to the next heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        raise AssertionError(f"heading {heading!r} not found") from None
    body = []
    fenced = False
    for line in lines[start + 1 :]:
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"^(#+) ", line)
        if match and len(match.group(1)) <= level:
            break
        body.append(line)
    return "\n".join(body)


def tables(text: str) -> list[list[list[str]]]:
    """Every markdown table in ``text``, as rows of stripped cells (header first, separator dropped)."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in text.splitlines() + [""]:
        stripped = line.strip()
        if stripped.startswith("|"):
            cells = [cell.strip() for cell in stripped.strip("|").split("|")]
            if not all(re.fullmatch(r":?-{3,}:?", cell) for cell in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def only_table(text: str) -> list[list[str]]:
    found = tables(text)
    assert len(found) == 1, f"expected one table, found {len(found)}"
    return found[0]


def code_names(cell: str) -> list[str]:
    """The `backticked` names in a cell."""
    return re.findall(r"`([^`]+)`", cell)


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# -- hooks.md ---------------------------------------------------------------------------------


def hookspec_functions() -> dict[str, types.FunctionType]:
    return {
        name: fn
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("sda_") and getattr(fn, "sda_spec", None) is not None
    }


SPECS = hookspec_functions()


def documented_hooks() -> dict[str, list[str]]:
    documented: dict[str, list[str]] = {}
    for name, args in HOOK_HEADING.findall(HOOKS_MD):
        assert name not in documented, f"{name} is documented twice in docs/hooks.md"
        documented[name] = [arg.strip() for arg in args.split(",")] if args.strip() else []
    return documented


def hook_section(name: str) -> str:
    for line in HOOKS_MD.splitlines():
        if line.startswith(f"### {name}("):
            return section(HOOKS_MD, line)
    raise AssertionError(f"{name} has no section in docs/hooks.md")


def test_hookspecs_are_found() -> None:
    assert SPECS, "no hookspecs found in sda_core.hooks.specs"
    kinds = (hookspecs.PROVIDER_HOOKS, hookspecs.CHECK_HOOKS, hookspecs.COLLECTOR_HOOKS, hookspecs.CONSUMER_HOOKS)
    declared = [name for kind in kinds for name in kind]
    assert sorted(SPECS) == sorted(declared), "the hook kinds disagree with the specs (or name a hook twice)"


def test_every_hook_heading_has_the_documented_form() -> None:
    malformed = [line for line in HOOKS_MD.splitlines() if line.startswith("### sda_") and not HOOK_HEADING.match(line)]
    assert not malformed, f"hook headings must read '### sda_name(arg1, arg2)': {malformed}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_is_documented_with_its_arguments(name: str) -> None:
    documented = documented_hooks()
    assert name in documented, f"hook {name} is not documented in docs/hooks.md"
    expected = list(inspect.signature(SPECS[name]).parameters)
    assert documented[name] == expected, (
        f"docs/hooks.md documents {name}({', '.join(documented[name])}), the spec is {name}({', '.join(expected)})"
    )


def test_documented_hooks_exist() -> None:
    unknown = sorted(set(documented_hooks()) - set(SPECS))
    assert not unknown, f"docs/hooks.md documents hooks that do not exist: {unknown}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_documented_kind_matches_the_spec(name: str) -> None:
    match = re.search(r"^\*\*Kind:\*\* (provider|check|collector|consumer)", hook_section(name), re.MULTILINE)
    assert match, f"the section of {name} has no '**Kind:** provider|check|collector|consumer' line"
    kind = match.group(1)
    if name in hookspecs.PROVIDER_HOOKS:
        assert kind == "provider"
    elif name in hookspecs.CHECK_HOOKS:
        assert kind == "check"
    elif name in hookspecs.COLLECTOR_HOOKS:
        assert kind == "collector"
    else:
        assert kind == "consumer"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_docstring_states_its_kind_and_arguments(name: str) -> None:
    fn = SPECS[name]
    doc = inspect.getdoc(fn) or ""
    assert doc, f"hookspec {name} has no docstring"
    lowered = doc.lower()
    assert "firstresult" in lowered or "consumer" in lowered or "contributes" in lowered, (
        f"the docstring of {name} must say whether it is firstresult, a consumer, or what every plugin contributes"
    )
    firstresult = bool(fn.sda_spec["firstresult"])
    assert firstresult == (name in hookspecs.PROVIDER_HOOKS)
    if name in hookspecs.PROVIDER_HOOKS:
        assert "firstresult" in lowered
    elif name in hookspecs.CHECK_HOOKS:
        assert "veto" in lowered
    elif name in hookspecs.COLLECTOR_HOOKS:
        assert "contributes" in lowered
    else:
        assert "consumer" in lowered
    for argument in inspect.signature(fn).parameters:
        assert f":param {argument}:" in doc, f"the docstring of {name} does not describe {argument!r}"


def events_table() -> list[list[str]]:
    for table in tables(section(HOOKS_MD, "## Events")):
        if table[0][0] == "event":
            return table
    raise AssertionError("docs/hooks.md has no events table (header starting with 'event') under '## Events'")


def test_events_table_lists_every_event_and_exactly_its_fields() -> None:
    by_name = {cls.__name__: cls for cls in EVENT_TYPES.values()}
    header, *rows = events_table()
    assert header[:4] == ["event", "`kind`", "hook", "fields"]
    seen = set()
    for row in rows:
        (name,) = code_names(row[0])
        assert name in by_name, f"the events table names {name}, which is not an event type"
        cls = by_name[name]
        seen.add(name)
        assert code_names(row[1]) == [cls.kind], f"{name}.kind is {cls.kind!r}"
        assert code_names(row[2]) == [EVENT_HOOKS[cls]], f"{name} is delivered by {EVENT_HOOKS[cls]}"
        fields = [field.name for field in attrs.fields(cls)]
        listed = code_names(row[3])
        unknown = [field for field in listed if field not in fields]
        assert not unknown, f"the events table lists fields {name} does not have: {unknown}"
        missing = [field for field in fields if field not in listed]
        assert not missing, f"the events table misses fields of {name}: {missing}"
        assert listed == fields, f"list the fields of {name} in declaration order: {fields}"
    assert seen == set(by_name), f"events missing from the events table: {sorted(set(by_name) - seen)}"


@pytest.mark.parametrize("cls", list(EVENT_TYPES.values()), ids=lambda cls: cls.__name__)
def test_event_field_table_matches_the_class(cls: type) -> None:
    table = only_table(section(HOOKS_MD, f"#### {cls.__name__}"))
    header, *rows = table
    assert header[0] == "field"
    listed = [code_names(row[0])[0] for row in rows]
    assert listed == [field.name for field in attrs.fields(cls)]
    assert all(row[2] for row in rows), f"every field of {cls.__name__} needs a meaning"


def hookimpl_examples() -> list[str]:
    return [block for block in code_blocks(HOOKS_MD, "python") if "@hookimpl" in block]


@pytest.mark.parametrize("index", range(len(hookimpl_examples())))
def test_hookimpl_examples_register_cleanly(index: int) -> None:
    source = hookimpl_examples()[index]
    module = types.ModuleType(f"sda_docs_example_{index}")
    exec(compile(source, f"docs/hooks.md example {index}", "exec"), module.__dict__)  # noqa: S102 - our own docs
    engine = Engine(load_entrypoints=False, strict=True, environ={})
    name = engine.register(module)
    info = {info.name: info for info in engine.plugin_infos()}[name]
    assert info.status == "explicit", info
    assert info.hooks, "the example implements no hook"


def test_hookimpl_examples_cover_every_hook() -> None:
    names = set()
    for source in hookimpl_examples():
        names.update(re.findall(r"^def (sda_\w+)\(", source, re.MULTILINE))
    assert set(SPECS) <= names, f"hooks without an example in docs/hooks.md: {sorted(set(SPECS) - names)}"


def test_hooks_doc_names_the_plugin_environment() -> None:
    for needle in (
        "[project.entry-points.sda]",
        "from sda_core import hookimpl",
        "SDA_DISABLE_PLUGINS",
        "SDA_LOAD_PLUGINS",
        "SDA_STRICT_PLUGINS",
        "SDA_TRACE_HOOKS",
        "--disable-plugin",
        "MetricsCallback",
        "load_entrypoints",
    ):
        assert needle in HOOKS_MD, f"docs/hooks.md does not mention {needle}"


# -- presets.md -------------------------------------------------------------------------------


def preset_table() -> tuple[list[OverfittingPreset], dict[str, list[str]]]:
    header, *rows = only_table(section(PRESETS_MD, "## The three presets"))
    assert header[0] == "setting"
    columns = [OverfittingPreset(cell) for cell in header[1:]]
    assert set(columns) == set(OverfittingPreset), f"the preset table needs one column per preset: {header}"
    return columns, {row[0]: row[1:] for row in rows}


def number(cell: str) -> int | float:
    text = cell.strip("` ")
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


def test_preset_table_values_equal_the_presets() -> None:
    columns, rows = preset_table()
    documented: dict[str, list[str]] = {}
    for setting, cells in rows.items():
        names = code_names(setting)
        if not names:
            continue
        field = names[0].removeprefix("regularization.")
        documented[field] = cells
    expected_fields = [field.name for field in attrs.fields(PresetValues)]
    assert sorted(documented) == sorted(expected_fields), "the preset table must list every field of PresetValues"
    for field, cells in documented.items():
        for preset, cell in zip(columns, cells):
            actual = getattr(PRESETS[preset], field)
            value = number(cell)
            assert value == actual, f"docs/presets.md: {field} of {preset.value} is {cell}, the code says {actual}"
            assert isinstance(value, int) == isinstance(actual, int), f"{field}: write {actual!r} as the code types it"


def test_preset_table_file_counts_match_the_boundaries() -> None:
    columns, rows = preset_table()
    cells = dict(zip(columns, rows["usable files"]))
    assert cells[OverfittingPreset.CONSERVATIVE] == f"up to {CONSERVATIVE_MAX_FILES}"
    assert cells[OverfittingPreset.BALANCED] == f"{CONSERVATIVE_MAX_FILES + 1} to {BALANCED_MAX_FILES}"
    assert cells[OverfittingPreset.AGGRESSIVE] == f"{BALANCED_MAX_FILES + 1} and more"
    assert adaptive_presets.preset_for(CONSERVATIVE_MAX_FILES) is OverfittingPreset.CONSERVATIVE
    assert adaptive_presets.preset_for(CONSERVATIVE_MAX_FILES + 1) is OverfittingPreset.BALANCED
    assert adaptive_presets.preset_for(BALANCED_MAX_FILES) is OverfittingPreset.BALANCED
    assert adaptive_presets.preset_for(BALANCED_MAX_FILES + 1) is OverfittingPreset.AGGRESSIVE
    text = squash(PRESETS_MD)
    assert f"`CONSERVATIVE_MAX_FILES` ({CONSERVATIVE_MAX_FILES})" in text
    assert f"`BALANCED_MAX_FILES` ({BALANCED_MAX_FILES})" in text


def test_batch_size_table_matches_batch_sizes() -> None:
    header, *rows = only_table(section(PRESETS_MD, "## Batch size"))
    assert header == ["usable files", "batch size"]
    documented = []
    lower = 1
    for cells, (limit, _batch) in zip(rows, BATCH_SIZES, strict=True):
        if limit == float("inf"):
            assert cells[0] == f"{lower} and more"
        elif lower == 1:
            assert cells[0] == f"up to {limit}"
        else:
            assert cells[0] == f"{lower} to {limit}"
        documented.append(int(cells[1]))
        lower = int(limit) + 1 if limit != float("inf") else lower
    assert documented == [batch for _limit, batch in BATCH_SIZES]
    match = re.search(r"five clips of ([\d.]+) s train on a batch of (\d+)", squash(PRESETS_MD))
    assert match, "the duration-cap example is gone from docs/presets.md"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetSizeWarning)
        config = get_adaptive_config(5, total_seconds=5 * float(match.group(1)))
    assert config.batch_size == int(match.group(2))


def test_sizing_examples_match_get_adaptive_config() -> None:
    header, *rows = only_table(section(PRESETS_MD, "## Examples"))
    assert header == ["usable files", "preset", "`validation_fraction`", "`batch_size`"]
    assert rows
    for count, preset, fraction, batch in rows:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DatasetSizeWarning)
            config = get_adaptive_config(int(count))
        assert config.preset.value == preset, f"{count} files"
        assert config.validation_fraction == pytest.approx(float(fraction), abs=5e-4), f"{count} files"
        assert config.batch_size == int(batch), f"{count} files"


def test_validation_fraction_rule_is_stated() -> None:
    text = squash(PRESETS_MD)
    assert "`validation_fraction_for(file_count, base)`" in text
    assert "`min(max(base, 1 / file_count), 0.5)`" in text
    for count in range(2, 30):
        for values in PRESETS.values():
            base = values.validation_fraction
            assert adaptive_presets.validation_fraction_for(count, base) == min(max(base, 1 / count), 0.5)
    assert adaptive_presets.validation_fraction_for(1, 0.2) == 0.0


def test_dataset_size_range_and_warnings() -> None:
    text = squash(PRESETS_MD)
    assert f"## Outside {MIN_FILES} to {MAX_FILES} files" in PRESETS_MD
    assert f"fewer than {MIN_FILES} files" in text
    assert f"more than {MAX_FILES} files" in text
    for count, warns in ((MIN_FILES - 1, True), (MIN_FILES, False), (MAX_FILES, False), (MAX_FILES + 1, True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            get_adaptive_config(count)
        assert any(issubclass(w.category, DatasetSizeWarning) for w in caught) == warns, count


def test_preview_interval_rule_matches_the_code() -> None:
    text = squash(PRESETS_MD)
    match = re.search(r"every (\d+) epochs when `max_epochs` is below (\d+) and every (\d+) epochs otherwise", text)
    assert match, "docs/presets.md no longer states the preview interval rule"
    short, limit, long = (int(group) for group in match.groups())
    assert get_effective_preview_interval(TrainingConfig(max_epochs=limit - 1)) == short
    assert get_effective_preview_interval(TrainingConfig(max_epochs=limit)) == long
    assert get_effective_preview_interval(TrainingConfig(max_epochs=limit, preview_interval=7)) == 7
    least = min(values.max_epochs for values in PRESETS.values())
    assert f"every preset has at least {least} epochs" in text.lower()
    assert least >= limit, "docs/presets.md says a preset-sized run previews every 5 epochs"
    for values in PRESETS.values():
        assert get_effective_preview_interval(TrainingConfig(max_epochs=values.max_epochs)) == long


# -- configuration.md -------------------------------------------------------------------------


def settings_table(heading: str) -> dict[str, list[str]]:
    header, *rows = only_table(section(CONFIGURATION_MD, heading))
    assert header == ["setting", "type", "default", "meaning"]
    documented: dict[str, list[str]] = {}
    for row in rows:
        (name,) = code_names(row[0])
        assert name not in documented, f"{name} is listed twice"
        documented[name] = row[1:]
    return documented


def default_of(field: attrs.Attribute):
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()
    if isinstance(default, enum.Enum):
        default = default.value
    return default


def check_defaults(documented: dict[str, list[str]], cls: type, prefix: str = "") -> None:
    fields = {prefix + field.name: field for field in attrs.fields(cls)}
    missing = sorted(set(fields) - set(documented))
    assert not missing, f"docs/configuration.md does not list {missing}"
    unknown = sorted(set(documented) - set(fields))
    assert not unknown, f"docs/configuration.md lists settings {cls.__name__} does not have: {unknown}"
    for name, (kind, default_cell, meaning) in documented.items():
        assert kind and meaning, f"{name} needs a type and a meaning"
        actual = default_of(fields[name])
        if attrs.has(type(actual)):
            assert default_cell == "see below", name
            continue
        if actual is None:
            assert default_cell == "unset", f"{name}: the default is unset (None)"
            continue
        (literal,) = code_names(default_cell)
        value = tomllib.loads(f"value = {literal}")["value"]
        assert value == actual and type(value) is type(actual), (
            f"docs/configuration.md gives {name} the default {literal}, the code says {actual!r}"
        )


def test_every_training_setting_is_documented_with_its_default() -> None:
    check_defaults(settings_table("## Training settings"), TrainingConfig)


def test_every_regularization_setting_is_documented_with_its_default() -> None:
    check_defaults(settings_table("## Regularization settings"), RegularizationConfig, prefix="regularization.")


def test_settings_file_example_is_valid() -> None:
    (example,) = code_blocks(section(CONFIGURATION_MD, "## sda.toml"), "toml")
    data = tomllib.loads(example)
    assert "regularization" in data and data.get("plugins"), "the example needs [regularization] and [plugins.NAME]"
    config = apply_overrides(TrainingConfig(), data)
    for name, table in data["plugins"].items():
        assert config.plugin_settings(name) == table


def test_set_examples_are_valid() -> None:
    (example,) = code_blocks(section(CONFIGURATION_MD, "## --set"), "sh")
    options = re.findall(r"--set (\S+)", example)
    assert any(option.startswith("plugins.") for option in options)
    apply_overrides(TrainingConfig(), parse_set_options(options))


def test_precedence_is_file_then_api_then_cli(tmp_path: Path) -> None:
    text = squash(CONFIGURATION_MD)
    assert "The command line wins." in text
    order = [
        text.index(needle)
        for needle in ("**`sda.toml` in the data folder**", "**The Python API**", "**`--set key=value`**")
    ]
    assert order == sorted(order), "list the sources from lowest to highest precedence"
    (tmp_path / SETTINGS_FILENAME).write_text("max_epochs = 80\nseed = 1\n[regularization]\ndropout = 0.35\n")
    merged = Engine.collect_overrides(
        tmp_path,
        api={"max_epochs": 10, "seed": 2, "batch_size": 4},
        cli=parse_set_options(["max_epochs=30", "regularization.kl_weight=0.5"]),
    )
    assert merged == {
        "max_epochs": 30,
        "seed": 2,
        "batch_size": 4,
        "regularization": {"dropout": 0.35, "kl_weight": 0.5},
    }


def test_values_are_data_never_code() -> None:
    text = squash(CONFIGURATION_MD)
    assert "## Values are data, never code" in CONFIGURATION_MD
    assert "Nothing a user writes is ever evaluated as Python" in text and "tomllib" in text
    parsed = parse_set_options(['device=__import__("os")', "preset=aggressive", "max_epochs=20"])
    assert parsed == {"device": '__import__("os")', "preset": "aggressive", "max_epochs": 20}
