"""A plugin author's mistakes, through real installed distributions and ``sda`` in a subprocess.

* A plugin a run depends on never fails silently: a model plugin that fails to import, or whose
  hook implementations are invalid, stops ``sda train`` with its name and the reason instead of
  falling back to the reference model; a ``[plugins.NAME]`` table for a plugin that is not
  installed is an error with "did you mean".
* Registration errors in plain words: the closest hook name, the hook's real arguments, the
  function by its qualified name and no object reprs; a warning for a ``sda_*`` method without
  ``@hookimpl``.
* Warnings print as they happen, above the progress display, and are never lost when a later
  error ends the run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import bad_inputs
import pytest
from audio_factory import make_folder

from sda_core import hookimpl
from sda_core.errors import PluginError, PluginLoadWarning, PluginRuntimeWarning
from sda_core.testing import make_engine

SDA = [sys.executable, "-m", "sda_core"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("author_faults") / "data", [0.8, 1.5, 2.1, 1.1, 1.7, 2.6])


def sda(*args: str, load: str = "", **env: str) -> subprocess.CompletedProcess:
    """``sda ARGS`` in a subprocess with sda's own plugins (no progress display) plus ``load``."""
    names = bad_inputs.reference_plugins() + (f",{load}" if load else "")
    return subprocess.run(
        [*SDA, *args], capture_output=True, text=True, timeout=180, env=bad_inputs.sda_env(load=names, **env)
    )


def train(data: Path, run: Path, *extra: str, load: str = "", **env: str) -> subprocess.CompletedProcess:
    return sda(
        "train", str(data), "--out", str(run), *bad_inputs.fast_set(), "--max-epochs", "1", *extra, load=load, **env
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- a plugin the run depends on never fails silently ------------------------------------------

MODEL_WITH_A_MISSING_DEPENDENCY = """
import sda_author_dependency_that_is_not_installed

from sda_core import hookimpl


class TinyModel:
    @hookimpl
    def sda_make_model(self, config):
        return sda_author_dependency_that_is_not_installed.Model()
"""


def test_a_model_plugin_that_fails_to_import_stops_sda_train_instead_of_falling_back(data, tmp_path, make_distribution):
    make_distribution(
        "sda-author-model",
        {"myplugin": "sda_author_model:TinyModel"},
        {"sda_author_model": MODEL_WITH_A_MISSING_DEPENDENCY},
        version="0.2",
    )
    run = tmp_path / "run"
    result = train(data, run, load="myplugin")
    assert result.returncode == 1, result.stdout + result.stderr
    error = lines(result.stderr)[-1]
    assert error.startswith("sda: error: plugin 'myplugin' from distribution 'sda-author-model' failed to import")
    assert "No module named 'sda_author_dependency_that_is_not_installed'" in error
    assert "it implements sda_make_model" in error and "does not fall back" in error
    assert "--disable-plugin myplugin" in error
    assert "Traceback" not in result.stderr and not run.exists()  # nothing trained, no run folder

    # the warning at load time already says what will become of a run
    warning = lines(result.stderr)[0]
    assert warning.startswith("warning: plugin 'myplugin' from distribution 'sda-author-model' failed to import")
    assert "a run stops while it is broken" in warning

    # the way out it names works: without the plugin, the reference model trains
    without = train(data, run, "--disable-plugin", "myplugin", load="myplugin")
    assert without.returncode == 0, without.stderr
    assert "max_epochs after epoch 1" in without.stdout and without.stderr.strip() == ""


MODEL_WITH_AN_INVALID_HOOKIMPL = """
from sda_core import hookimpl


class TinyModel:
    @hookimpl
    def sda_make_model(self, config):
        raise RuntimeError("never called: the plugin is invalid")

    @hookimpl
    def sda_on_epoch(self, event, histroy):
        pass
"""


def test_a_model_plugin_with_an_invalid_hookimpl_is_reported_failed_and_stops_sda_train(
    data, tmp_path, make_distribution
):
    make_distribution(
        "sda-author-invalid",
        {"myplugin": "sda_author_invalid:TinyModel"},
        {"sda_author_invalid": MODEL_WITH_AN_INVALID_HOOKIMPL},
    )
    listed = sda("plugins", "--json", load="myplugin")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    (info,) = [info for info in report["plugins"] if info["name"] == "myplugin"]
    assert info["status"] == "failed" and info["distribution"] == "sda-author-invalid"
    assert info["reason"] == (
        "is invalid: sda_author_invalid.TinyModel.sda_on_epoch(event, histroy) asks for 'histroy', which "
        "sda_on_epoch does not pass; it passes event, history (an implementation takes any of them, by name)"
    )
    assert (
        report["warnings"]
        and "a run stops while it is broken, since it implements sda_make_model" in (report["warnings"][0])
    )

    run = tmp_path / "run"
    result = train(data, run, load="myplugin")
    assert result.returncode == 1, result.stdout + result.stderr
    assert lines(result.stderr)[0].startswith(
        "warning: plugin 'myplugin' from distribution 'sda-author-invalid' is invalid"
    )
    error = lines(result.stderr)[-1]
    assert error.startswith("sda: error: plugin 'myplugin' from distribution 'sda-author-invalid' is invalid")
    assert "'histroy'" in error and "it implements sda_make_model" in error
    assert not run.exists()


def test_the_hooks_of_a_plugin_that_failed_to_import_are_read_from_its_source(make_distribution):
    import importlib

    from sda_core import Engine, TrainingConfig

    site = make_distribution(
        "sda-author-package",
        {"pkgmodel": "sda_author_pkg.model:Model", "garbled": "sda_author_garbled"},
        {"sda_author_garbled": "from sda_core import hookimpl\n\n@hookimpl\ndef sda_make_model(config:\n"},
    )
    package = site / "sda_author_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("import sda_author_dependency_that_is_not_installed\n")
    (package / "model.py").write_text(MODEL_WITH_A_MISSING_DEPENDENCY.replace("TinyModel", "Model"))
    importlib.invalidate_caches()

    with pytest.warns(PluginLoadWarning) as caught:
        engine = Engine(environ={"SDA_LOAD_PLUGINS": "pkgmodel,garbled"})
    warned = sorted(str(w.message) for w in caught)
    assert "cannot tell which hooks it implements" in warned[0] and "'garbled'" in warned[0]
    assert "since it implements sda_make_model" in warned[1] and "'pkgmodel'" in warned[1]
    # the parent package failed, not the module the entry point names: its hooks are still read
    with pytest.raises(PluginError, match=r"plugin 'garbled' .* SyntaxError.*cannot tell which hooks"):
        engine.check_config(TrainingConfig())
    with pytest.warns(PluginLoadWarning, match="'pkgmodel'"):
        engine = Engine(environ={"SDA_LOAD_PLUGINS": "pkgmodel,garbled"}, disable=["garbled"])
    with pytest.raises(PluginError, match=r"plugin 'pkgmodel' .*\(it implements sda_make_model\)"):
        engine.check_config(TrainingConfig())


SETTINGS_PLUGIN = """
import attrs

from sda_core import hookimpl, plugin_settings


@attrs.frozen
class Settings:
    hidden: int = 2


@hookimpl
def sda_check_config(config):
    plugin_settings(config, "myplugin", Settings)


@hookimpl
def sda_on_epoch(event):
    pass
"""


def test_a_table_for_a_plugin_that_is_not_installed_is_an_error_with_did_you_mean(data, tmp_path, make_distribution):
    make_distribution(
        "sda-author-settings", {"myplugin": "sda_author_settings"}, {"sda_author_settings": SETTINGS_PLUGIN}
    )
    result = train(data, tmp_path / "run", "--set", "plugins.mypluginn.hidden=3", load="myplugin")
    assert result.returncode == 2, result.stdout + result.stderr
    (error,) = lines(result.stderr)
    assert error.startswith("sda: error: [plugins.mypluginn] (in sda.toml, or --set plugins.mypluginn.KEY=VALUE)")
    assert "no plugin of that name is installed (did you mean 'myplugin'?)" in error
    assert not (tmp_path / "run").exists()

    # the same in sda.toml, caught by the pre-flight scan too; the right name is accepted
    folder = tmp_path / "with_toml"
    make_folder(folder, [1.0, 1.6, 2.2, 0.9, 1.3])
    (folder / "sda.toml").write_text("[plugins.mypluginn]\nhidden = 3\n")
    scan = sda("scan", "--no-analysis", str(folder), load="myplugin")
    assert scan.returncode == 2 and "did you mean 'myplugin'?" in scan.stderr, scan.stderr
    (folder / "sda.toml").write_text("[plugins.myplugin]\nhidden = 3\n")
    assert sda("scan", "--no-analysis", str(folder), load="myplugin").returncode == 0


def test_resuming_a_run_whose_saved_table_names_a_plugin_no_longer_installed_says_so(data, tmp_path, make_distribution):
    site = make_distribution(
        "sda-author-settings", {"myplugin": "sda_author_settings"}, {"sda_author_settings": SETTINGS_PLUGIN}
    )
    run = tmp_path / "run"
    first = train(data, run, "--set", "plugins.myplugin.hidden=3", load="myplugin")
    assert first.returncode == 0, first.stdout + first.stderr
    before = (run / "checkpoints" / "last.pt").read_bytes()

    (site / "sda_author_settings.py").unlink()  # the user uninstalls the plugin
    shutil.rmtree(site / "sda_author_settings-1.0.dist-info")
    resumed = sda("train", str(data), "--resume", str(run), "--max-epochs", "2")
    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    (error,) = lines(resumed.stderr)
    assert error.startswith(f"sda: error: [plugins.myplugin] (saved in the config of the run {run}, which used it)")
    assert "no plugin of that name is installed" in error and "sda.toml" not in error
    assert (run / "checkpoints" / "last.pt").read_bytes() == before  # the run is untouched


# -- registration errors in plain words --------------------------------------------------------

MISTAKES = {
    "misspelt": """
from sda_core import hookimpl


@hookimpl
def sda_on_epochs(event):
    pass
""",
    "wrong_argument": """
from sda_core import hookimpl


class Logger:
    @hookimpl
    def sda_on_step(self, evnt):
        pass
""",
    "unmarked": """
from sda_core import hookimpl


class Logger:
    def sda_on_epoch(self, event):
        pass

    @hookimpl
    def sda_on_train_end(self, event):
        pass
""",
}


def test_registration_errors_say_what_is_wrong_in_plain_words(make_distribution):
    make_distribution(
        "sda-author-mistakes",
        {
            "misspelt": "sda_mistake_misspelt",
            "wrong_argument": "sda_mistake_wrong_argument:Logger",
            "unmarked": "sda_mistake_unmarked:Logger",
        },
        {f"sda_mistake_{name}": source for name, source in MISTAKES.items()},
    )
    result = sda("plugins", load="misspelt,wrong_argument,unmarked")
    assert result.returncode == 0, result.stderr
    warned = lines(result.stderr)
    assert len(warned) == 3, warned
    by_plugin = {name: [line for line in warned if f"plugin {name!r}" in line] for name in MISTAKES}

    (misspelt,) = by_plugin["misspelt"]
    assert "sda_mistake_misspelt.sda_on_epochs implements 'sda_on_epochs', which is not an sda hook" in misspelt
    assert "(did you mean 'sda_on_epoch'?)" in misspelt

    (wrong,) = by_plugin["wrong_argument"]
    assert "sda_mistake_wrong_argument.Logger.sda_on_step(evnt) asks for 'evnt'" in wrong
    assert "it passes event" in wrong

    (unmarked,) = by_plugin["unmarked"]
    assert "sda_mistake_unmarked.Logger.sda_on_epoch is named like a hook but has no @hookimpl marker" in unmarked
    assert "sda never calls it" in unmarked

    for line in warned:  # no object reprs, no pluggy wording, one line each
        assert " object at 0x" not in line and "<module" not in line and "hookspec" not in line
        assert line.startswith("warning: plugin ") and "from distribution 'sda-author-mistakes'" in line
    # the misspelt and wrongly argued observers failed (a run goes on without them); the unmarked
    # one loaded, with the hook it marked
    assert "a run goes on without it: it only observes" in misspelt
    table = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("│")}
    assert "failed" in table["misspelt"] and "failed" in table["wrong_argument"]
    assert "loaded" in table["unmarked"] and "on_train_end" in table["unmarked"]


def test_an_explicit_plugin_gets_the_same_plain_words(recwarn):
    class Typo:
        name = "typo"

        def sda_on_train_start(self, event):
            pass

        def sda_make_modle(self, config):
            pass

    from sda_core import Engine

    engine = Engine(plugins=[Typo()], load_entrypoints=False, environ={})
    messages = [str(w.message) for w in recwarn if issubclass(w.category, PluginLoadWarning)]
    assert len(messages) == 2, messages
    assert any("Typo.sda_on_train_start is named like a hook but has no @hookimpl marker" in m for m in messages)
    assert any("'sda_make_modle' is not an sda hook: did you mean 'sda_make_model'?" in m for m in messages)
    assert engine.pm.get_plugin("typo") is not None  # unmarked routines are never hook implementations


# -- warnings as they happen ---------------------------------------------------------------------

NOISY_CONSUMER = """
from sda_core import hookimpl


@hookimpl
def sda_on_train_start(event):
    raise RuntimeError("no font for the plots")
"""

FAILING_STOPPER = """
from sda_core import hookimpl


@hookimpl
def sda_should_stop(history):
    raise RuntimeError("out of ideas")
"""


def test_warnings_print_as_they_happen_and_survive_a_later_error(data, tmp_path, make_distribution):
    make_distribution(
        "sda-author-noisy",
        {"noisy": "sda_author_noisy", "stopper": "sda_author_stopper"},
        {"sda_author_noisy": NOISY_CONSUMER, "sda_author_stopper": FAILING_STOPPER},
    )
    # the progress display (plain mode: stderr is a pipe) shows the run; the warning comes when
    # the consumer fails, at the start, not after the run has ended
    shown = {"SDA_DISABLE_PLUGINS": ""}
    result = train(data, tmp_path / "run", load="progress,noisy", **shown)
    assert result.returncode == 0, result.stderr
    err = lines(result.stderr)
    warning = [
        i for i, line in enumerate(err) if line.startswith("warning: plugin 'noisy' raised in sda_on_train_start")
    ]
    ended = [i for i, line in enumerate(err) if line.startswith("training ended")]
    assert len(warning) == 1 and len(ended) == 1, err
    assert warning[0] < ended[0], err

    # a provider error ends the run after the consumer's warning: the warning is still printed
    failed = train(data, tmp_path / "failed", load="progress,noisy,stopper", **shown)
    assert failed.returncode == 1, failed.stderr
    err = lines(failed.stderr)
    assert err[-1] == "sda: error: plugin 'stopper' failed in sda_should_stop: RuntimeError: out of ideas"
    warning = [
        i for i, line in enumerate(err) if line.startswith("warning: plugin 'noisy' raised in sda_on_train_start")
    ]
    assert len(warning) == 1 and warning[0] < len(err) - 1, err


EPOCH_CONSUMER = """
from sda_core import hookimpl


@hookimpl
def sda_on_epoch(event):
    raise RuntimeError("no font for the plots")
"""


def test_a_warning_prints_above_the_live_progress_bars(data, tmp_path, make_distribution):
    make_distribution("sda-author-epoch", {"noisy": "sda_author_epoch"}, {"sda_author_epoch": EPOCH_CONSUMER})
    # FORCE_COLOR makes rich treat the pipe as a terminal: the live bars run, and rich redirects
    # stderr through the display while they do
    terminal = {"SDA_DISABLE_PLUGINS": "", "FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "300"}
    result = train(data, tmp_path / "run", load="progress,noisy", **terminal)
    assert result.returncode == 0, result.stderr
    raw = result.stderr
    at = raw.index("warning: plugin 'noisy' raised in sda_on_epoch")
    # the display erased its bars (clear line, cursor up, clear line), the warning took their
    # place, and the bars were drawn again below it, before the run's summary
    assert raw[:at].endswith("\x1b[2K\x1b[1A\x1b[2K"), repr(raw[at - 80 : at])
    assert "epochs" in raw[at : raw.index("training ended")]
    assert raw.count("warning: plugin 'noisy'") == 1


class Noisy:
    name = "noisy"

    @hookimpl
    def sda_on_train_start(self, event):
        raise RuntimeError("no font for the plots")


class Stopper:
    name = "stopper"

    @hookimpl(tryfirst=True)
    def sda_should_stop(self, history):
        raise RuntimeError("out of ideas")


def test_a_host_app_gets_warnings_as_they_happen_through_the_warnings_module(data, tmp_path):
    timeline: list[str] = []
    engine = make_engine(
        Noisy(), Stopper(), reference=True, strict=False, callbacks=[lambda e: timeline.append(e.kind)]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, *rest, **kw: timeline.append(category.__name__)
        with pytest.raises(PluginError, match="out of ideas"):
            engine.train(data, tmp_path / "run", {**bad_inputs.FAST, "max_epochs": 1})
    # the consumer's warning comes as it fails, at the start, before any step; the run's end
    # (the provider's error) comes after it
    assert timeline.count(PluginRuntimeWarning.__name__) == 1
    assert timeline.index(PluginRuntimeWarning.__name__) < timeline.index("step")
    assert timeline[-1] == "train_end"
