"""The plugin layer through a real pluggy PluginManager and real entry-point metadata."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch

from sda_core import (
    DatasetSummary,
    Engine,
    EpochMetrics,
    FileSplit,
    MetricsHistory,
    OverfittingWarning,
    PluginError,
    PluginLoadWarning,
    PluginRuntimeWarning,
    PreviewEvent,
    StepMetrics,
    TrainingCompleteEvent,
    TrainingConfig,
    TrainingStartEvent,
    hookimpl,
)
from sda_core.config.dataset import AudioFileInfo


def _files(count: int) -> tuple[AudioFileInfo, ...]:
    return tuple(
        AudioFileInfo(
            path=f"f{i:02d}.wav",
            format="WAV",
            subtype="PCM_16",
            sample_rate=22050,
            channels=1,
            frames=22050 * (i + 1),
            size_bytes=44 + 44100 * (i + 1),
        )
        for i in range(count)
    )


def _summary(count: int = 10) -> DatasetSummary:
    return DatasetSummary(root="/data", files=_files(count))


def _events() -> list:
    return [
        TrainingStartEvent(run_dir="runs/x", max_epochs=3),
        StepMetrics(epoch=1, step=1, epoch_step=1, steps_per_epoch=2, loss=1.0),
        EpochMetrics(epoch=1, train_loss=1.0, val_loss=1.1),
        PreviewEvent(epoch=1, directory="p", files=("a.wav",), kinds=("sample",)),
        OverfittingWarning(epoch=1, gap=0.3, threshold=0.2),
        TrainingCompleteEvent(reason="max_epochs", epochs_completed=1),
    ]


class ReferenceLike:
    """Answers every provider like a reference plugin does: trylast."""

    name = "reference_like"

    @hookimpl(trylast=True)
    def sda_split_files(self, files, config):
        return FileSplit(train=[f.path for f in files[1:]], validation=[files[0].path])

    @hookimpl(trylast=True)
    def sda_make_dataset(self, files, config, role, augment):
        return ("reference dataset", role)

    @hookimpl(trylast=True)
    def sda_make_model(self, config):
        return "reference model"

    @hookimpl(trylast=True)
    def sda_should_stop(self, history, config):
        return None

    @hookimpl(trylast=True)
    def sda_augmentations(self, config):
        return ["reference-gain"]


class ThirdParty:
    """Overrides every provider simply by answering."""

    name = "third_party"

    @hookimpl
    def sda_resolve_config(self, summary, overrides):
        return TrainingConfig(max_epochs=7, batch_size=3)

    @hookimpl
    def sda_split_files(self, files):  # a hookimpl may take a subset of the arguments
        return FileSplit(train=[f.path for f in files[:-1]], validation=[files[-1].path])

    @hookimpl
    def sda_make_dataset(self, role):
        return ("third-party dataset", role)

    @hookimpl
    def sda_make_model(self, config):
        return torch.nn.Linear(2, 2)

    @hookimpl
    def sda_should_stop(self, history):
        return "third party says stop" if history.last_epoch >= 1 else None

    @hookimpl
    def sda_augmentations(self, config):
        return ["third-party-reverb"]


def test_reference_answers_when_nobody_else_does():
    engine = Engine(plugins=[ReferenceLike()], load_entrypoints=False)
    config = TrainingConfig()
    assert engine.split_files(_files(3), config).validation == ("f00.wav",)
    assert engine.make_dataset(_files(3), config, "train") == ("reference dataset", "train")
    assert engine.make_model(config) == "reference model"
    assert engine.should_stop(MetricsHistory(), config) is None


def test_third_party_overrides_every_provider_by_answering():
    engine = Engine(plugins=[ReferenceLike(), ThirdParty()])
    config = engine.resolve_config(_summary(10), {})
    assert (config.max_epochs, config.batch_size) == (7, 3)
    assert engine.split_files(_files(3), config).validation == ("f02.wav",)
    assert engine.make_dataset(_files(3), config, "validation") == ("third-party dataset", "validation")
    assert isinstance(engine.make_model(config), torch.nn.Linear)
    history = MetricsHistory()
    history.record_epoch(EpochMetrics(epoch=1, train_loss=1.0, val_loss=1.0))
    assert engine.should_stop(history, config) == "third party says stop"


def test_user_overrides_win_over_any_provider():
    engine = Engine(plugins=[ThirdParty()])
    config = engine.resolve_config(_summary(10), {"max_epochs": 11})
    assert config.max_epochs == 11 and config.batch_size == 3


def test_every_plugin_contributes_augmentations():
    engine = Engine(plugins=[ReferenceLike(), ThirdParty()], load_entrypoints=False)
    assert engine.augmentations(TrainingConfig()) == ["third-party-reverb", "reference-gain"]


def test_reference_presets_plugin_answers_from_entry_points():
    engine = Engine()
    config = engine.resolve_config(_summary(10), {})
    assert config.preset.value == "conservative" and config.max_epochs == 100


def test_a_wrapper_may_adjust_the_resolved_config():
    class Adjuster:
        @hookimpl(wrapper=True)
        def sda_resolve_config(self, summary, overrides):
            config = yield
            return config.__class__.from_dict({**config.to_dict(), "batch_size": 2})

    engine = Engine(plugins=[Adjuster()])
    config = engine.resolve_config(_summary(10), {})
    assert config.batch_size == 2 and config.preset.value == "conservative"


def test_a_raising_provider_is_fatal_and_named():
    class Broken:
        name = "broken_model"

        @hookimpl
        def sda_make_model(self, config):
            raise RuntimeError("out of ideas")

    engine = Engine(plugins=[ReferenceLike(), Broken()], load_entrypoints=False)
    with pytest.raises(PluginError, match="'broken_model' failed in sda_make_model: RuntimeError: out of ideas"):
        engine.make_model(TrainingConfig())


def test_a_raising_provider_behind_a_wrapper_is_still_named():
    class Broken:
        name = "broken_presets"

        @hookimpl
        def sda_resolve_config(self, summary, overrides):
            raise ValueError("bad table")

    class Passthrough:
        @hookimpl(wrapper=True)
        def sda_resolve_config(self):
            return (yield)

    engine = Engine(plugins=[Broken(), Passthrough()], load_entrypoints=False)
    with pytest.raises(PluginError, match="'broken_presets' failed in sda_resolve_config"):
        engine.resolve_config(_summary(), {})


def test_a_provider_answering_the_wrong_type_is_named():
    class Wrong:
        name = "wrong_split"

        @hookimpl
        def sda_split_files(self, files, config):
            return {"train": [], "validation": []}

    engine = Engine(plugins=[Wrong()], load_entrypoints=False)
    with pytest.raises(PluginError, match="'wrong_split' answered sda_split_files with dict, expected FileSplit"):
        engine.split_files(_files(2), TrainingConfig())


def test_no_provider_is_a_clear_error():
    engine = Engine(load_entrypoints=False)
    with pytest.raises(PluginError, match="no plugin answered sda_make_model"):
        engine.make_model(TrainingConfig())


class Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list = []

    @hookimpl
    def sda_on_step(self, event):
        self.seen.append(event)

    @hookimpl
    def sda_on_epoch(self, event, history):
        self.seen.append(event)


class Exploding:
    name = "exploding"

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(tryfirst=True)
    def sda_on_step(self, event):
        self.calls += 1
        raise RuntimeError("consumer bug")

    @hookimpl(tryfirst=True)
    def sda_on_epoch(self, event):
        self.calls += 1
        raise KeyError("another bug")


def test_a_raising_consumer_stops_neither_the_others_nor_the_run():
    before, after, exploding = Recorder("before"), Recorder("after"), Exploding()
    engine = Engine(plugins=[before, exploding, after], load_entrypoints=False)
    step = StepMetrics(epoch=1, step=1, epoch_step=1, steps_per_epoch=1, loss=0.5)
    epoch = EpochMetrics(epoch=1, train_loss=0.5, val_loss=0.6)
    with pytest.warns(PluginRuntimeWarning) as caught:
        for _ in range(3):
            engine.emit(step)
            engine.emit(epoch)
    assert len(before.seen) == len(after.seen) == 6
    assert exploding.calls == 6
    reports = [str(w.message) for w in caught if issubclass(w.category, PluginRuntimeWarning)]
    assert len(reports) == 1 and "'exploding'" in reports[0]
    assert len(engine.host.consumer_failures["exploding"]) == 6


def test_strict_mode_makes_consumer_errors_fatal(monkeypatch):
    monkeypatch.setenv("SDA_STRICT_PLUGINS", "1")
    engine = Engine(plugins=[Exploding()], load_entrypoints=False)
    with pytest.raises(PluginError, match="'exploding' raised in sda_on_step"):
        engine.emit(StepMetrics(epoch=1, step=1, epoch_step=1, steps_per_epoch=1, loss=0.5))


def test_a_callback_receives_every_event():
    received = []
    engine = Engine(callbacks=[received.append], load_entrypoints=False)
    events = _events()
    for event in events:
        engine.emit(event, history=MetricsHistory())
    assert received == events


def test_subscribe_and_unsubscribe():
    received = []
    engine = Engine(load_entrypoints=False)
    name = engine.subscribe(received.append)
    engine.emit(TrainingCompleteEvent(reason="done", epochs_completed=1))
    engine.unsubscribe(name)
    engine.emit(TrainingCompleteEvent(reason="done", epochs_completed=1))
    assert len(received) == 1
    with pytest.raises(TypeError):
        engine.subscribe("not callable")


def test_engines_do_not_share_plugins():
    recorder = Recorder("solo")
    first = Engine(plugins=[recorder], load_entrypoints=False)
    second = Engine(load_entrypoints=False)
    second.emit(StepMetrics(epoch=1, step=1, epoch_step=1, steps_per_epoch=1, loss=0.5))
    assert recorder.seen == []
    assert first.pm is not second.pm and second.pm.get_plugin("solo") is None


def test_an_unknown_hook_is_rejected_by_check_pending():
    class Typo:
        name = "typo"

        @hookimpl
        def sda_on_stepp(self, event):
            pass

    with pytest.warns(PluginLoadWarning, match="'typo' is invalid"):
        engine = Engine(plugins=[Typo()], load_entrypoints=False)
    assert engine.pm.get_plugin("typo") is None
    assert [info.status for info in engine.plugin_infos() if info.name == "typo"] == ["failed"]


def test_wrappers_on_consumer_hooks_are_rejected():
    class Wrapping:
        name = "wrapping"

        @hookimpl(wrapper=True)
        def sda_on_step(self, event):
            return (yield)

    with pytest.warns(PluginLoadWarning, match="takes no wrappers"):
        engine = Engine(plugins=[Wrapping()], load_entrypoints=False)
    assert engine.pm.get_plugin("wrapping") is None


# -- entry points ---------------------------------------------------------------------------

GOOD_PLUGIN = """
from sda_core import hookimpl

EVENTS = []

@hookimpl
def sda_on_step(event):
    EVENTS.append(event)
"""

BROKEN_PLUGIN = """
raise ImportError("missing dependency: libdoesnotexist")
"""

SIDE_EFFECT_PLUGIN = """
import os
os.environ["SDA_TEST_IMPORTED"] = "yes"
from sda_core import hookimpl

@hookimpl
def sda_make_model(config):
    return "blocked model"
"""


def test_a_broken_entry_point_warns_with_its_distribution_and_the_run_goes_on(make_distribution):
    make_distribution("sda-broken-dist", {"broken": "sda_test_broken"}, {"sda_test_broken": BROKEN_PLUGIN})
    make_distribution("sda-good-dist", {"good": "sda_test_good"}, {"sda_test_good": GOOD_PLUGIN}, version="2.5")
    with pytest.warns(PluginLoadWarning) as caught:
        engine = Engine()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "'broken' from distribution 'sda-broken-dist' failed to import" in messages[0]
    assert "libdoesnotexist" in messages[0]
    infos = {info.name: info for info in engine.plugin_infos()}
    assert infos["broken"].status == "failed" and infos["broken"].distribution == "sda-broken-dist"
    assert infos["good"].status == "loaded" and infos["good"].version == "2.5"
    assert infos["good"].hooks == ("sda_on_step",)
    engine.emit(StepMetrics(epoch=1, step=1, epoch_step=1, steps_per_epoch=1, loss=0.5))
    assert len(sys.modules["sda_test_good"].EVENTS) == 1


def test_strict_mode_makes_a_broken_entry_point_fatal(make_distribution, monkeypatch):
    make_distribution("sda-broken-dist", {"broken": "sda_test_broken"}, {"sda_test_broken": BROKEN_PLUGIN})
    monkeypatch.setenv("SDA_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="sda-broken-dist"):
        Engine()


@pytest.mark.parametrize("how", ["argument", "environment", "distribution"])
def test_a_disabled_plugin_is_blocked_before_it_is_imported(make_distribution, monkeypatch, how):
    make_distribution(
        "sda-side-effect", {"side_effect": "sda_test_side_effect"}, {"sda_test_side_effect": SIDE_EFFECT_PLUGIN}
    )
    monkeypatch.delenv("SDA_TEST_IMPORTED", raising=False)
    if how == "argument":
        engine = Engine(disable=["side_effect"])
    elif how == "environment":
        monkeypatch.setenv("SDA_DISABLE_PLUGINS", "other, side_effect")
        engine = Engine()
    else:
        engine = Engine(disable=["sda-side-effect"])
    assert "sda_test_side_effect" not in sys.modules
    assert "SDA_TEST_IMPORTED" not in __import__("os").environ
    infos = {info.name: info for info in engine.plugin_infos()}
    assert infos["side_effect"].status == "blocked"
    assert engine.pm.is_blocked("side_effect")


def test_a_reference_plugin_can_be_disabled_by_name():
    engine = Engine(disable=["adaptive_presets"])
    assert engine.pm.get_plugin("adaptive_presets") is None
    assert engine.resolve_config(_summary(10), {}) == TrainingConfig()


def test_the_allowlist_loads_only_named_entry_points(make_distribution, monkeypatch):
    make_distribution("sda-good-dist", {"good": "sda_test_good"}, {"sda_test_good": GOOD_PLUGIN})
    monkeypatch.setenv("SDA_LOAD_PLUGINS", "good")
    engine = Engine()
    statuses = {info.name: info.status for info in engine.plugin_infos()}
    assert statuses["good"] == "loaded" and statuses["adaptive_presets"] == "blocked"


def test_an_empty_allowlist_loads_only_explicit_plugins(monkeypatch):
    monkeypatch.setenv("SDA_LOAD_PLUGINS", "")
    recorder = Recorder("explicit")
    engine = Engine(plugins=[recorder])
    loaded = [info.name for info in engine.plugin_infos() if info.status in ("loaded", "explicit")]
    assert loaded == ["explicit"]


def test_tracing_is_opt_in_and_never_formats_tensors(monkeypatch, capsys):
    class Model:
        @hookimpl
        def sda_make_dataset(self, augment):
            return [1]

    Engine(plugins=[Model()], load_entrypoints=False).make_dataset((), TrainingConfig(), "train")
    assert "sda-trace" not in capsys.readouterr().err
    monkeypatch.setenv("SDA_TRACE_HOOKS", "1")
    engine = Engine(plugins=[Model()], load_entrypoints=False, callbacks=[lambda e: None])
    big = torch.full((1000, 1000), 0.123456)
    engine.make_dataset((), TrainingConfig(), "train", augment=big)
    engine.emit(StepMetrics(epoch=1, step=1, epoch_step=1, steps_per_epoch=1, loss=0.5))
    err = capsys.readouterr().err
    assert "-> sda_make_dataset(" in err and "Tensor(shape=(1000, 1000)" in err
    assert "0.1234" not in err
    assert "-> sda_on_step(event=StepMetrics(" in err and "<- sda_on_step" in err
    assert max(len(line) for line in err.splitlines()) < 400


def test_load_warnings_do_not_break_hosts_that_turn_warnings_into_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine = Engine(plugins=[Exploding()], load_entrypoints=False)
        engine.emit(StepMetrics(epoch=1, step=1, epoch_step=1, steps_per_epoch=1, loss=0.5))
    assert "exploding" in engine.host.consumer_failures


def test_two_callbacks_of_the_same_name_both_receive_events():
    first, second = [], []
    engine = Engine(load_entrypoints=False)
    name_one = engine.subscribe(lambda event: first.append(event))
    name_two = engine.subscribe(lambda event: second.append(event))
    assert name_one != name_two
    engine.emit(TrainingCompleteEvent(reason="done", epochs_completed=1))
    engine.unsubscribe(name_two)
    engine.emit(TrainingCompleteEvent(reason="done", epochs_completed=2))
    assert len(first) == 2 and len(second) == 1


def test_an_explicit_name_clash_is_reported_without_losing_the_first():
    recorder = Recorder("same")
    engine = Engine(plugins=[recorder], load_entrypoints=False)
    with pytest.warns(PluginLoadWarning, match="already taken"):
        engine.register(Recorder("x"), name="same")
    statuses = [(info.name, info.status) for info in engine.plugin_infos()]
    assert ("same", "explicit") in statuses and ("same", "failed") in statuses
    engine.emit(StepMetrics(epoch=1, step=1, epoch_step=1, steps_per_epoch=1, loss=0.5))
    assert len(recorder.seen) == 1
