"""The architecture holds: layers, light imports, one place for errors and reference plugins, settings checks.

The import-linter contracts themselves run in ``make test`` (``lint-imports``); these tests pin
what a contract cannot see: which modules a command or an import actually loads at run time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sda_core import ConfigError, Engine, PluginError, TrainingConfig, hookimpl
from sda_core.hooks.host import REFERENCE_PLUGINS

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
HEAVY = ("torch", "torchaudio")


def loaded_modules(code: str, env: dict[str, str | None] | None = None) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; which of torch, numpy, soundfile, the Engine it imported.

    ``env`` adds to the environment; a None value removes the variable."""
    probe = (
        code + "\nimport json, sys\nprint('\\n' + json.dumps({m: m in sys.modules for m in "
        "('torch', 'torchaudio', 'numpy', 'soundfile', 'sda_core.engine')}))"
    )
    environ = {**os.environ, **(env or {})}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={key: value for key, value in environ.items() if value is not None},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_errors_import_neither_torch_nor_numpy():
    loaded = loaded_modules("import sda_core.errors")
    assert not loaded["torch"] and not loaded["numpy"]


def test_the_testing_kit_loads_nothing_heavy_into_a_test_session():
    loaded = loaded_modules("import sda_core.testing")
    assert not any(loaded.values()), loaded


#: the reference plugins only
REFERENCE_ONLY = {"SDA_LOAD_PLUGINS": ",".join(REFERENCE_PLUGINS)}
#: the default plugin set: every installed entry point, the contrib distributions included
DEFAULT_SET = {"SDA_LOAD_PLUGINS": None, "SDA_DISABLE_PLUGINS": None}


def test_the_default_plugin_set_loads_every_installed_entry_point_light():
    """The contrib distributions installed beside sda (``make install``) load without torch."""
    from importlib.metadata import entry_points

    names = sorted(entry.name for entry in entry_points(group="sda"))
    contrib = sorted(set(names) - set(REFERENCE_PLUGINS))
    if not contrib:
        pytest.skip("no contrib plugin distribution is installed")
    code = (
        "from sda_core import Engine\ninfos = {i.name: i.status for i in Engine().plugin_infos()}\n"
        f"assert all(infos.get(name) == 'loaded' for name in {names!r}), infos"
    )
    loaded = loaded_modules(code, DEFAULT_SET)
    assert not any(loaded[name] for name in HEAVY), f"loading the plugins {contrib} imported torch"


@pytest.mark.parametrize("plugin_set", [REFERENCE_ONLY, DEFAULT_SET], ids=["reference", "default"])
@pytest.mark.parametrize(
    "argv",
    [["--version"], ["plugins"], ["plugins", "--json"], ["scan", "{folder}"], ["scan", "--json", "{folder}"]],
    ids=" ".join,
)
def test_light_commands_never_import_torch(argv, plugin_set, tmp_path):
    from sda_core.testing import write_audio_folder

    folder = write_audio_folder(tmp_path / "sounds", count=6)
    args = [arg.format(folder=folder) for arg in argv]
    code = (
        "import contextlib, io, sys\nfrom sda_core.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    try:\n        code = main({args!r})\n    except SystemExit as stop:\n        code = stop.code or 0\n"
        "assert code == 0, code"
    )
    loaded = loaded_modules(code, plugin_set)
    assert not any(loaded[name] for name in HEAVY), f"`sda {' '.join(argv)}` imported torch"


@pytest.mark.parametrize("argv", [["--version"], ["plugins"], ["plugins", "--json"]], ids=" ".join)
def test_commands_without_audio_never_import_numpy(argv):
    """Loading the plugins costs no numpy: the reference and contrib plugins import it when a hook
    needs it; `sda --version` does not even build an Engine."""
    code = (
        "import contextlib, io, sys\nfrom sda_core.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    try:\n        code = main({argv!r})\n    except SystemExit as stop:\n        code = stop.code or 0\n"
        "assert code == 0, code"
    )
    loaded = loaded_modules(code, DEFAULT_SET)
    assert not loaded["numpy"], f"`sda {' '.join(argv)}` imported numpy"
    if argv == ["--version"]:
        assert not loaded["sda_core.engine"]


def test_reference_plugins_list_the_entry_points_of_pyproject():
    assert REFERENCE_PLUGINS == PYPROJECT["project"]["entry-points"]["sda"]


def test_the_wheel_holds_every_package_and_the_plugin_template():
    """A wheel holds only the packages pyproject.toml names (an editable install would hide one
    that is missing), and ``sda new-plugin`` needs its template folder as package data."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "sda_core").rglob("__init__.py")} | {
        "sda_plugins"
    }
    assert listed == found
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["sda_core.cli"]
    templates = {path for pattern in patterns for path in (ROOT / "sda_core" / "cli").glob(pattern)}
    assert templates and templates == set((ROOT / "sda_core" / "cli" / "plugin-template").rglob("*.tmpl"))


def test_the_architecture_doc_names_every_layer_of_the_contract():
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    (layers,) = [c for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    for layer in layers["layers"]:
        for name in layer.split("|"):
            assert f"sda_core.{name.strip()}" in doc or f"{name.strip()}/" in doc, name.strip()


# -- settings checks ----------------------------------------------------------------------------


class Veto:
    name = "veto"  # the name it registers under, and so of its [plugins.veto] table

    @hookimpl
    def sda_check_config(self, config):
        if config.plugin_settings("veto").get("no"):
            raise ConfigError("plugins.veto.no", True, "false")


def test_a_plugin_vetoes_the_config_before_anything_runs(tmp_path):
    from sda_core.testing import write_audio_folder

    folder = write_audio_folder(tmp_path / "sounds")
    engine = Engine(plugins=[Veto()], disable=["progress"])
    with pytest.raises(ConfigError, match="plugins.veto.no"):
        engine.train(folder, tmp_path / "run", {"plugins": {"veto": {"no": True}}})
    assert not (tmp_path / "run").exists()


class StartVeto:
    @hookimpl
    def sda_on_train_start(self, event):
        raise ConfigError("plugins.start_veto.x", 1, "nothing")


class StartFault:
    @hookimpl
    def sda_on_train_start(self, event):
        raise RuntimeError("boom")


def test_a_config_error_in_train_start_vetoes_the_run():
    from sda_core.config.events import TrainingStartEvent

    engine = Engine(plugins=[StartVeto()], load_entrypoints=False, strict=False, environ={})
    with pytest.raises(ConfigError, match="plugins.start_veto.x"):
        engine.emit(TrainingStartEvent(run_dir="run"))
    assert not engine.host.consumer_failures


def test_other_errors_in_train_start_stay_isolated():
    from sda_core.config.events import TrainingStartEvent
    from sda_core.errors import PluginRuntimeWarning

    engine = Engine(plugins=[StartFault()], load_entrypoints=False, strict=False, environ={})
    with pytest.warns(PluginRuntimeWarning, match="boom"):
        engine.emit(TrainingStartEvent(run_dir="run"))
    assert len(engine.host.consumer_failures) == 1


@pytest.mark.parametrize("table", [{"samples": 99}, {"sample": 2}])
def test_reference_plugins_reject_a_bad_table_in_check_config(table):
    engine = Engine()
    with pytest.raises(ConfigError, match="plugins.previews"):
        engine.check_config(TrainingConfig(plugins={"previews": table}))


def test_sda_scan_rejects_a_bad_plugin_setting_with_the_usage_exit_code(tmp_path, capsys):
    from sda_core.cli import main
    from sda_core.testing import write_audio_folder

    folder = write_audio_folder(tmp_path / "sounds")
    assert main(["scan", "--no-analysis", str(folder), "--set", "plugins.chunk_dataset.skip_silent=7"]) == 2


def test_an_engine_can_refuse_an_unanswered_provider_at_construction():
    with pytest.raises(PluginError, match="sda_make_model"):
        Engine(disable=["mel_vae", "wave_vae"], require_providers=True)
    Engine(disable=["mel_vae", "wave_vae"])  # a partial engine (a host that only scans) stays legitimate


# -- the audio layer ----------------------------------------------------------------------------


def test_what_is_special_about_mp3_is_decided_in_one_module():
    """Only sda_core.audio.formats names MPEG containers or extensions in code; the rest asks it."""
    import ast

    names = {"mp3", "mpeg", ".mp3", ".mp2", ".mp1", ".mpga"}
    sources = [*(ROOT / "sda_core").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
    deciding = sorted(
        str(path.relative_to(ROOT))
        for path in sources
        if any(
            isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in names
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    )
    assert deciding == ["sda_core/audio/formats.py"]


def test_write_wav_is_still_importable_from_reading_for_one_release():
    from sda_core.audio import reading, wav

    assert reading.write_wav is wav.write_wav


def test_writing_wav_and_the_decode_cache_import_no_torch():
    loaded = loaded_modules("import sda_core.audio.wav, sda_core.audio.decode_cache, sda_core.audio.formats")
    assert not any(loaded[name] for name in HEAVY), loaded
