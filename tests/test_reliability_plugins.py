"""Plugin faults in whole training runs: plugins come from strangers, and the run must survive them.

* A consumer that raises in every hook: the run completes, the other consumers get every event,
  and each faulty plugin is reported once, by name.
* A provider (or collector) that answers the wrong type: `sda train` exits 1 with one sentence
  naming the plugin and the hook, and the epochs finished before the fault are kept.
* An observer whose entry point fails to import: one warning naming its distribution, and the run
  goes on; with a settings table for it, or in strict mode (``SDA_STRICT_PLUGINS=1``), it is an
  error (a plugin the run depends on stops it: see test_plugin_author_faults.py).
* A consumer that blocks for seconds: the run completes and the progress display keeps moving.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import bad_inputs
import pytest
from audio_factory import make_folder
from rich.console import Console

from sda_core import hookimpl
from sda_core.hooks.host import PluginLoadWarning, PluginRuntimeWarning
from sda_core.testing import make_engine
from sda_core.training.checkpoints import load_checkpoint
from sda_plugins.progress import ProgressDisplay

FAST = {**bad_inputs.FAST, "max_epochs": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(
        tmp_path_factory.mktemp("plugin_faults") / "data", [0.6, 1.4, 2.2, 0.9, 1.8, 3.0], rates=(8000, 22050)
    )


def run_cli(*args: str) -> SimpleNamespace:
    """``sda ARGS`` in this process: returncode, stdout and stderr."""
    from sda_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def train_cli(data: Path, run: Path, *extra: str) -> SimpleNamespace:
    return run_cli("train", str(data), "--out", str(run), *bad_inputs.fast_set(), "--max-epochs", "1", *extra)


def only_plugins(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Load sda's own plugins (no progress display) and ``names``, nothing else installed."""
    monkeypatch.setenv("SDA_LOAD_PLUGINS", bad_inputs.reference_plugins(*names))


# -- consumers that raise -----------------------------------------------------------------------


class RaisesEverywhere:
    """A consumer with a bug in every hook."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def _fail(self) -> None:
        self.calls += 1
        raise RuntimeError(f"bug number {self.calls} in {self.name}")

    @hookimpl(tryfirst=True)
    def sda_on_train_start(self, event):
        self._fail()

    @hookimpl(tryfirst=True)
    def sda_on_step(self, event):
        self._fail()

    @hookimpl(tryfirst=True)
    def sda_on_epoch(self, event, history):
        self._fail()

    @hookimpl(tryfirst=True)
    def sda_on_preview(self, event):
        self._fail()

    @hookimpl(tryfirst=True)
    def sda_on_overfitting(self, event):
        self._fail()

    @hookimpl(tryfirst=True)
    def sda_on_train_end(self, event):
        self._fail()


def test_consumers_raising_in_every_hook_stop_neither_the_run_nor_the_others(data: Path, tmp_path: Path):
    first, second = RaisesEverywhere("buggy_logger"), RaisesEverywhere("buggy_plotter")
    received = []
    engine = make_engine(first, second, reference=True, strict=False, callbacks=[received.append])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = engine.train(data, tmp_path / "run", FAST)

    assert result.reason == "max_epochs" and result.epochs_completed == 2
    kinds = [event.kind for event in received]
    assert kinds[0] == "train_start" and kinds[-1] == "train_end"
    assert kinds.count("epoch") == 2 and kinds.count("step") == 2 * FAST["samples_per_epoch"] // FAST["batch_size"]
    delivered = len(engine.recorder.events())  # every event the consumers were offered
    assert delivered == len(received)
    reports = [str(w.message) for w in caught if issubclass(w.category, PluginRuntimeWarning)]
    assert len(reports) == 2, reports  # one report per plugin, however often it failed
    assert any("'buggy_logger'" in report for report in reports)
    assert any("'buggy_plotter'" in report for report in reports)
    failures = engine.host.consumer_failures
    assert len(failures["buggy_logger"]) == len(failures["buggy_plotter"]) == first.calls == delivered
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 2


RAISING_CONSUMER = """
from sda_core import hookimpl


class Plots:
    @hookimpl
    def sda_on_train_start(self, event):
        raise RuntimeError("no font for the plots")

    @hookimpl
    def sda_on_step(self, event):
        raise RuntimeError("no font for the plots")

    @hookimpl
    def sda_on_epoch(self, event, history):
        raise RuntimeError("no font for the plots")

    @hookimpl
    def sda_on_preview(self, event):
        raise RuntimeError("no font for the plots")

    @hookimpl
    def sda_on_train_end(self, event):
        raise RuntimeError("no font for the plots")
"""


def test_sda_train_reports_a_raising_consumer_once_and_completes(data, tmp_path, make_distribution, monkeypatch):
    make_distribution(
        "sda-reliability-plots",
        {"broken_plots": "sda_reliability_plots:Plots"},
        {"sda_reliability_plots": RAISING_CONSUMER},
    )
    only_plugins(monkeypatch, "broken_plots")
    result = train_cli(data, tmp_path / "run")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("warning: plugin 'broken_plots' raised in sda_on_train_start")
    assert "max_epochs after epoch 1" in result.stdout


# -- providers that answer the wrong type -------------------------------------------------------

WRONG_ANSWERS = {
    # hook: (signature, wrong answer, what the error says it expected)
    "sda_resolve_config": ("summary, overrides", '{"max_epochs": 3}', "expected TrainingConfig"),
    "sda_split_files": ("files, config", "[file.path for file in files]", "expected FileSplit"),
    "sda_make_dataset": ("files, role", '"the dataset"', "expected a map-style torch.utils.data.Dataset"),
    "sda_make_model": ("config", '{"weights": [0.0]}', "expected a torch.nn.Module"),
    "sda_augmentations": ("config", '["gain"]', "with a bad transform"),
    "sda_check_overfitting": ("history", '"overfitting!"', "expected OverfittingWarning"),
    "sda_should_stop": ("history", "True", "expected str"),
    "sda_render_previews": ("epoch, directory", '[directory + "/a.wav"]', "expected PreviewEvent"),
}
#: Hooks called after an epoch has finished: the fault must not cost that epoch.
AFTER_AN_EPOCH = ("sda_check_overfitting", "sda_should_stop", "sda_render_previews")


@pytest.mark.parametrize("hook", sorted(WRONG_ANSWERS))
def test_a_wrongly_typed_answer_ends_sda_train_with_one_sentence_naming_the_plugin(
    hook, data, tmp_path, make_distribution, monkeypatch
):
    arguments, answer, expected = WRONG_ANSWERS[hook]
    source = f"from sda_core import hookimpl\n\n\n@hookimpl\ndef {hook}({arguments}):\n    return {answer}\n"
    make_distribution(
        "sda-reliability-wrong", {"wrong_answers": "sda_reliability_wrong"}, {"sda_reliability_wrong": source}
    )
    only_plugins(monkeypatch, "wrong_answers")
    run = tmp_path / "run"
    result = train_cli(data, run)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("sda: error: plugin 'wrong_answers' ")
    assert hook in lines[0] and expected in lines[0]
    assert "Traceback" not in result.stderr and lines[0].count(". ") == 0
    if hook in AFTER_AN_EPOCH:  # the epoch before the fault is saved
        assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1


@pytest.mark.parametrize("hook", sorted(WRONG_ANSWERS))
def test_a_raising_provider_ends_sda_train_with_one_sentence_naming_the_plugin(
    hook, data, tmp_path, make_distribution, monkeypatch
):
    arguments = WRONG_ANSWERS[hook][0]
    source = (
        f"from sda_core import hookimpl\n\n\n@hookimpl\ndef {hook}({arguments}):\n"
        "    raise RuntimeError('out of ideas')\n"
    )
    make_distribution(
        "sda-reliability-raising", {"raising": "sda_reliability_raising"}, {"sda_reliability_raising": source}
    )
    only_plugins(monkeypatch, "raising")
    run = tmp_path / "run"
    result = train_cli(data, run)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"sda: error: plugin 'raising' failed in {hook}: RuntimeError: out of ideas"]
    if hook in AFTER_AN_EPOCH:
        assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1


# -- entry points that fail to import ----------------------------------------------------------

BROKEN_IMPORT = """
import sda_reliability_dependency_that_is_not_installed

from sda_core import hookimpl


@hookimpl
def sda_on_epoch(event):
    pass
"""


def test_a_plugin_that_fails_to_import_is_one_warning_naming_its_distribution(
    data, tmp_path, make_distribution, monkeypatch
):
    make_distribution(
        "sda-reliability-broken",
        {"broken_import": "sda_reliability_broken"},
        {"sda_reliability_broken": BROKEN_IMPORT},
        version="0.3",
    )
    only_plugins(monkeypatch, "broken_import")
    result = train_cli(data, tmp_path / "run")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "'sda-reliability-broken'" in lines[0] and "failed to import" in lines[0]
    assert "sda_reliability_dependency_that_is_not_installed" in lines[0]
    assert "a run goes on without it: it only observes (sda_on_epoch)" in lines[0]

    # settings for it make the run depend on it: they would be ignored, so the run stops
    tabled = train_cli(data, tmp_path / "tabled_run", "--set", "plugins.broken_import.every=2")
    assert tabled.returncode == 1
    error = [line for line in tabled.stderr.splitlines() if line.startswith("sda: error:")]
    assert len(error) == 1 and "the settings table [plugins.broken_import] is for it" in error[0], tabled.stderr
    assert not (tmp_path / "tabled_run").exists()

    monkeypatch.setenv("SDA_STRICT_PLUGINS", "1")
    strict = train_cli(data, tmp_path / "strict_run")
    assert strict.returncode == 1
    lines = [line for line in strict.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        "sda: error: plugin 'broken_import' from distribution 'sda-reliability-broken' failed to import"
    ), lines
    assert not (tmp_path / "strict_run").exists()


def test_in_strict_mode_a_plugin_that_fails_to_import_is_fatal_for_an_engine(make_distribution, monkeypatch):
    from sda_core import Engine
    from sda_core.errors import PluginError

    make_distribution(
        "sda-reliability-broken", {"broken_import": "sda_reliability_broken"}, {"sda_reliability_broken": BROKEN_IMPORT}
    )
    only_plugins(monkeypatch, "broken_import")
    with pytest.warns(PluginLoadWarning, match="sda-reliability-broken"):
        Engine()
    with pytest.raises(PluginError, match="sda-reliability-broken"):
        Engine(strict=True)


# -- consumers that block ------------------------------------------------------------------------


class Blocker:
    """A consumer that stalls the run: ``seconds`` in one step of each epoch."""

    name = "slow_uploader"

    def __init__(self, buffer: io.StringIO, seconds: float) -> None:
        self.buffer, self.seconds = buffer, seconds
        self.grew_while_blocked: list[bool] = []

    @hookimpl
    def sda_on_step(self, event):
        if event.epoch_step == 1:
            before = len(self.buffer.getvalue())
            time.sleep(self.seconds)
            self.grew_while_blocked.append(len(self.buffer.getvalue()) > before)


def test_a_consumer_that_blocks_for_seconds_neither_stops_the_run_nor_freezes_the_display(data, tmp_path):
    buffer = io.StringIO()
    display = ProgressDisplay(console=Console(file=buffer, force_terminal=True, width=120), mode="rich")
    blocker = Blocker(buffer, seconds=1.5)
    engine = make_engine(display, blocker, reference=True, strict=True)
    started = time.monotonic()
    result = engine.train(data, tmp_path / "run", FAST)
    assert result.reason == "max_epochs" and result.epochs_completed == 2
    assert time.monotonic() - started >= 2 * blocker.seconds
    assert blocker.grew_while_blocked == [True, True]  # the bars kept refreshing during each stall
    assert not display.live
    assert "training ended (max_epochs)" in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())


def test_a_blocking_consumer_delays_but_does_not_lose_plain_progress_lines(data, tmp_path):
    buffer = io.StringIO()
    display = ProgressDisplay(console=Console(file=buffer, force_terminal=False, width=120), mode="plain")
    blocker = Blocker(buffer, seconds=1.0)
    engine = make_engine(display, blocker, reference=True, strict=True)
    result = engine.train(data, tmp_path / "run", FAST)
    assert result.epochs_completed == 2
    lines = buffer.getvalue().splitlines()
    assert [line.split(" |")[0].split()[1] for line in lines if line.startswith("epoch ") and "| train" in line] == [
        "1/2",
        "2/2",
    ]
    assert "training ended (max_epochs)" in buffer.getvalue()
