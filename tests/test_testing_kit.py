"""The pytest kit plugin authors use (sda_core.testing, loaded through the pytest11 entry point)."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf

from sda_core import ConformanceError, StepMetrics, TrainingConfig, hookimpl
from sda_core.testing import (
    FAST_SETTINGS,
    check_dataset,
    check_entry_point,
    check_transform,
    fast_settings,
    make_engine,
    set_options,
)


def torch_dataset_base():
    from torch.utils.data import Dataset

    return Dataset


class Answering:
    name = "answering"

    @hookimpl
    def sda_make_model(self, config):
        return "a model"

    @hookimpl
    def sda_on_step(self, event):
        pass


def test_the_kit_is_a_registered_pytest_plugin(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("sda")


def test_an_engine_with_exactly_the_given_plugins(sda_engine):
    engine = sda_engine(Answering())
    names = [info.name for info in engine.plugin_infos()]
    assert names == ["answering"]
    assert engine.make_model(TrainingConfig()) == "a model"
    call = engine.recorder.getcall("sda_make_model")
    assert call.result == "a model" and isinstance(call.config, TrainingConfig)


def test_the_recorder_sees_events_in_order(sda_engine):
    engine = sda_engine(Answering())
    for step in (1, 2):
        engine.emit(StepMetrics(epoch=1, step=step, epoch_step=step, steps_per_epoch=2, loss=1.0))
    assert [event.step for event in engine.recorder.events("step")] == [1, 2]
    assert len(engine.recorder.getcalls("sda_on_step sda_on_epoch")) == 2


def test_reference_plugins_on_request(sda_engine):
    engine = sda_engine(reference=True)
    names = {info.name for info in engine.plugin_infos()}
    assert {"adaptive_presets", "chunk_dataset", "file_split", "mel_vae", "augmentations"} <= names
    assert "progress" not in names


def test_audio_folders_of_any_shape(sda_audio_folder):
    folder = sda_audio_folder(
        count=4, durations=[0.3, 1.5], sample_rates=[8000, 44100], channels=[1, 2], formats=["wav", "flac"]
    )
    infos = [sf.info(path) for path in sorted(folder.iterdir())]
    assert [(i.samplerate, i.channels, i.format) for i in infos] == [
        (8000, 1, "WAV"),
        (44100, 2, "FLAC"),
        (8000, 1, "WAV"),
        (44100, 2, "FLAC"),
    ]
    assert abs(infos[1].duration - 1.5) < 1e-3


def test_training_through_the_kit(sda_engine, sda_audio_folder, tmp_path):
    engine = sda_engine(reference=True)
    engine.train(sda_audio_folder(sample_rates=[8000]), tmp_path / "run", fast_settings())
    assert len(engine.recorder.events("epoch")) == 2
    assert engine.recorder.getcall("sda_split_files").result is not None


def test_make_engine_is_usable_without_pytest_fixtures():
    engine = make_engine(Answering(), strict=False)
    assert engine.recorder.calls == []


# -- shared fast settings -----------------------------------------------------------------------


def test_fast_settings_are_a_fresh_copy_and_set_options_say_the_same(sda_fast_settings):
    from sda_core.config.overrides import parse_set_options

    assert sda_fast_settings == dict(FAST_SETTINGS) and sda_fast_settings is not FAST_SETTINGS
    with pytest.raises(TypeError):
        FAST_SETTINGS["max_epochs"] = 100  # read-only: one test cannot change another's settings
    changed = fast_settings(max_epochs=1, num_workers=None, plugins={"mine": {"flag": True, "name": 'a "b"'}})
    assert changed["max_epochs"] == 1 and "num_workers" not in changed
    assert changed["plugins"] == {"mine": {"flag": True, "name": 'a "b"'}}
    options = set_options(changed, regularization={"dropout": 0.25})
    assert options[:2] == ["--set", "max_epochs=1"]
    assert parse_set_options(options[1::2]) == {**changed, "regularization": {"dropout": 0.25}}
    assert parse_set_options(set_options()[1::2]) == dict(FAST_SETTINGS)


# -- conformance checks ---------------------------------------------------------------------------


def tiny_config(**changes) -> TrainingConfig:
    return TrainingConfig(**{"sample_rate": 8000, "chunk_seconds": 0.25, "latent_dim": 4, **changes})


def test_check_model_lists_every_problem_of_a_model():
    import torch

    from sda_core.testing import check_model

    class Sloppy(torch.nn.Module):
        sample_rate, channels = 16000, 1  # not the config's 8000

        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2000, 4)

        def loss(self, audio, *, epoch):
            return self.layer(audio.flatten(1)).pow(2).mean()  # a tensor, not a dict

        def encode(self, audio):
            return self.layer(audio.flatten(1))

        def decode(self, latent):
            return torch.zeros(len(latent), 1, 2000)

        def reconstruct(self, audio):
            return self.decode(self.encode(audio))

        def generate(self, count, *, seconds=1.0, generator=None):
            return torch.zeros(count, 1, 10)  # not seconds long

    with pytest.raises(ConformanceError) as caught:
        check_model(Sloppy(), tiny_config())
    message = str(caught.value)
    assert message.startswith("3 problems:\n  1. got a Sloppy whose sample_rate is 16000 while the config's is 8000")
    assert "\n  2. got a Sloppy whose loss() returned a Tensor, not a dict; expected loss(audio, *, epoch)" in message
    assert "\n  3. got a Sloppy whose generate(2, seconds=0.25) returned a tensor of shape (2, 1, 10)" in message
    assert len(caught.value.problems) == 3 and caught.value.found.startswith("a Sloppy whose sample_rate")
    assert pickle.loads(pickle.dumps(caught.value)).problems == caught.value.problems


@dataclass(frozen=True)
class Fade:
    """A well-behaved transform: a random fade-in."""

    probability: float = 0.5
    name: str = "fade"

    def sample(self, rng, sample_rate):
        return {"seconds": float(rng.uniform(0.0, 0.1))}

    def apply(self, audio, params, sample_rate):
        length = min(audio.shape[-1], int(params["seconds"] * sample_rate))
        audio[:, :length] *= np.linspace(0.0, 1.0, length, dtype=np.float32)
        return audio


class Careless:
    """Everything a transform can get wrong, at once."""

    name = "careless"
    probability = 1.5

    def __init__(self):
        self.curve = lambda x: x  # does not pickle

    def sample(self, rng, sample_rate):
        return {"gain": np.random.uniform(), "table": np.ones(2)}  # the global generator; an array

    def apply(self, audio, params, sample_rate):
        return (audio[:1] * np.float64("nan")).astype(np.float64)


@dataclass(frozen=True)
class NoisyAtApply:
    probability: float = 0.5
    name: str = "noisy"

    def sample(self, rng, sample_rate):
        return {}

    def apply(self, audio, params, sample_rate):
        return audio + np.float32(0.01) * np.random.standard_normal(audio.shape).astype(np.float32)


class ForgetsOnPickle:
    probability = 0.5
    name = "forgets"

    def __init__(self):
        self.gain = 0.5

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.gain = 1.0

    def sample(self, rng, sample_rate):
        return {}

    def apply(self, audio, params, sample_rate):
        return audio * np.float32(self.gain)


def test_check_transform_passes_every_reference_transform_and_a_good_one():
    from sda_plugins import augmentations as reference

    config = TrainingConfig(plugins={"augmentations": {"enabled": list(reference.TRANSFORM_NAMES)}})
    transforms = [*reference.reference_transforms(config), Fade()]
    assert [t.name for t in transforms] == [*reference.TRANSFORM_NAMES, "fade"]
    state = np.random.get_state()[1].copy()
    for transform in transforms:
        check_transform(transform)
    assert np.array_equal(np.random.get_state()[1], state)  # the global generators are left as they were


def test_check_transform_lists_every_problem_of_a_transform():
    with pytest.raises(ConformanceError) as caught:
        check_transform(Careless())
    problems = [found for found, _expected in caught.value.problems]
    label = "augmentation transform test_testing_kit.Careless"
    assert problems[0] == f"{label} ('careless') with probability 1.5"
    assert problems[1].startswith(f"{label} ('careless'), which cannot be pickled into DataLoader workers:")
    assert "whose sample() returned {'gain'" in problems[2]
    assert "whose sample() gave" in problems[3] and "from a generator of the same seed" in problems[3]
    assert problems[4].endswith("on a mono chunk (1, 22050) with the parameters of seed 0 returned float64 audio")
    assert problems[5].endswith("returned NaN or infinite samples from finite audio")
    assert problems[6].endswith("on a stereo chunk (2, 22050) with the parameters of seed 0 returned shape (1, 22050)")
    assert len(problems) == 7

    with pytest.raises(ConformanceError, match=r"apply\(\) on a mono .* gave a different result the second time"):
        check_transform(NoisyAtApply())
    with pytest.raises(ConformanceError, match="copy pickled into a worker draws or applies something else"):
        check_transform(ForgetsOnPickle())
    with pytest.raises(ConformanceError, match=r"with no sample\(\) method.*\n.*with no apply\(\) method"):
        check_transform(object())


class ListDataset(torch_dataset_base()):
    """A dataset of fixed items, with the faults a test asks for."""

    def __init__(self, items, *, epoch_keys=False):
        self.items = items
        if epoch_keys:
            self.epoch_keys = True
        self.keys = []

    def __len__(self):
        return len(self.items)

    def __getitem__(self, key):
        self.keys.append(key)
        index = key[1] if isinstance(key, tuple) else key
        return self.items[index]


def chunks_for(config, count=5):
    import torch

    from sda_core.data.chunks import chunk_frames

    return [torch.full((config.channels, chunk_frames(config)), 0.1 * k) for k in range(count)]


def test_check_dataset_passes_the_reference_dataset_with_augmentation(sda_engine, sda_audio_folder):
    from sda_core.data.augmentation import AugmentationPipeline

    engine = sda_engine(reference=True)
    data = sda_audio_folder(sample_rates=[8000], channels=[1, 2])
    summary = engine.scan(data)
    config = engine.resolve_config(summary, fast_settings(channels=2, augmentation_probability=1.0))
    pipeline = AugmentationPipeline.from_engine(engine, config)
    check_dataset(engine.make_dataset(summary.files, config, "train", pipeline, root=summary.root), config)
    check_dataset(engine.make_dataset(summary.files, config, "validation", None, root=summary.root), config)

    # plain indices, or (epoch, index) keys for a dataset that declares epoch_keys
    plain, keyed = ListDataset(chunks_for(config)), ListDataset(chunks_for(config), epoch_keys=True)
    check_dataset(plain, config)
    check_dataset(keyed, config)
    assert set(plain.keys) == {0, 2, 4} and set(keyed.keys) == {(1, 0), (1, 2), (1, 4)}


def test_check_dataset_lists_every_problem_of_a_dataset():
    import torch

    config = tiny_config(channels=2)

    class Careless(ListDataset):
        def __init__(self):
            super().__init__([torch.randn(1, 100, dtype=torch.float64) for _ in range(4)])
            self.open_file = lambda: None  # does not pickle

        def __getitem__(self, key):
            return torch.randn(1, 100, dtype=torch.float64)  # the global generator: another item each time

    with pytest.raises(ConformanceError) as caught:
        check_dataset(Careless(), config)
    problems = [found for found, _expected in caught.value.problems]
    assert problems[0].startswith("a Careless, which cannot be pickled into DataLoader workers: ")
    assert problems[1] == "a Careless whose [0] is a tensor of shape (1, 100)"
    assert problems[2] == "a Careless whose [0] is a torch.float64 tensor"
    assert problems[3] == "a Careless whose [0] is another item the second time"
    assert "(2, 2000) (chunk_seconds 0.25 at 8000 Hz)" in caught.value.problems[1][1]

    items = chunks_for(config)
    items[4] = items[4].clone()
    items[4][0, 3] = float("nan")
    with pytest.raises(ConformanceError, match=r"^got a ListDataset whose \[4\] holds NaN or infinite samples"):
        check_dataset(ListDataset(items), config)
    with pytest.raises(ConformanceError, match="got a ListDataset of 0 items"):
        check_dataset(ListDataset([]), config)
    with pytest.raises(ConformanceError, match=r"whose \[0\] is a ndarray"):
        check_dataset(ListDataset([item.numpy() for item in chunks_for(config)]), config)
    with pytest.raises(ConformanceError, match="not a map-style dataset"):
        check_dataset(iter(chunks_for(config)), config)


# -- the entry-point check ------------------------------------------------------------------------

GOOD_PLUGIN = """
from sda_core import hookimpl


class Tidy:
    @hookimpl
    def sda_on_epoch(self, event):
        pass

    @hookimpl
    def sda_check_config(self, config):
        pass
"""

UNMARKED_PLUGIN = (
    GOOD_PLUGIN
    + """
    def sda_on_step(self, event):
        pass
"""
)


def test_check_entry_point_loads_and_registers_the_installed_plugin(make_distribution):
    make_distribution("sda-tidy", {"tidy": "sda_tidy:Tidy"}, {"sda_tidy": GOOD_PLUGIN}, version="0.3")
    info = check_entry_point("tidy", distribution="sda_Tidy", hooks=["sda_on_epoch"])
    assert (info.name, info.status, info.distribution, info.version) == ("tidy", "loaded", "sda-tidy", "0.3")
    assert info.hooks == ("sda_check_config", "sda_on_epoch")


def test_check_entry_point_lists_what_is_wrong(make_distribution):
    make_distribution("sda-tidy", {"tidy": "sda_tidy:Tidy"}, {"sda_tidy": UNMARKED_PLUGIN})
    make_distribution("sda-broken", {"broken": "sda_broken_module:Missing"}, {"sda_broken_module": GOOD_PLUGIN})

    with pytest.raises(ConformanceError, match=r"no entry point 'tidyy' in the 'sda' group \(did you mean 'tidy'\?\)"):
        check_entry_point("tidyy")
    with pytest.raises(ConformanceError) as caught:
        check_entry_point("tidy", distribution="sda-other", hooks=["sda_on_epoch", "sda_should_stop"])
    problems = [found for found, _expected in caught.value.problems]
    assert problems[0] == "the entry point 'tidy' from sda-tidy"
    assert problems[1].startswith("a warning while loading it: plugin 'tidy' from distribution 'sda-tidy':")
    assert "sda_tidy.Tidy.sda_on_step is named like a hook but has no @hookimpl marker" in problems[1]
    assert problems[2] == "plugin 'tidy' implementing sda_check_config, sda_on_epoch"
    assert caught.value.problems[2][1] == "also sda_should_stop"
    with pytest.raises(ConformanceError, match="plugin 'broken', which failed to import: AttributeError"):
        check_entry_point("broken")


# -- the CLI runner -------------------------------------------------------------------------------


def test_the_cli_runner_trains_and_reads_the_run_folder(sda_cli, sda_audio_folder, make_distribution, monkeypatch):
    make_distribution("sda-tidy", {"tidy": "sda_tidy:Tidy"}, {"sda_tidy": GOOD_PLUGIN})
    monkeypatch.setenv("SDA_DISABLE_PLUGINS", "tidy")  # the developer's shell does not reach the command
    environ, here = dict(os.environ), os.getcwd()

    listed = sda_cli("plugins", "--json").assert_ok()
    plugins = {entry["name"]: entry for entry in listed.json()["plugins"]}
    assert plugins["tidy"]["status"] == "loaded" and plugins["progress"]["status"] == "blocked"
    assert dict(os.environ) == environ and os.getcwd() == here  # swapped for the call only

    data = sda_audio_folder(sample_rates=[8000])
    load = {"SDA_LOAD_PLUGINS": "adaptive_presets,augmentations,chunk_dataset,file_split,wave_vae,overfitting_detector"}
    trained = sda_cli("train", data, *set_options(max_epochs=1), env=load).assert_ok()
    assert trained.exit_code == 0 and "max_epochs after epoch 1" in trained.stdout
    assert trained.run_dir == sda_cli.cwd / "runs" / data.name
    run = trained.run
    assert run.config.sample_rate == 8000 and [epoch.epoch for epoch in run.history.epochs] == [1]
    assert set(run.checkpoints) == {"best", "last"} and run.providers["model"]["plugin"] == "wave_vae"

    bad = sda_cli("scan", data, "--set", "max_epoch=3", env=load)
    assert bad.exit_code == 2 and "did you mean 'max_epochs'" in bad.error
    assert not bad.ok and bad.stdout == ""


def test_the_cli_runner_in_a_subprocess_gives_what_it_gives_in_process(sda_cli, sda_audio_folder):
    data = sda_audio_folder(count=3)
    here = sda_cli("scan", data, "--json", "--no-analysis", env={"SDA_LOAD_PLUGINS": "adaptive_presets"})
    there = sda_cli(
        "scan", data, "--json", "--no-analysis", env={"SDA_LOAD_PLUGINS": "adaptive_presets"}, in_subprocess=True
    )
    assert here.exit_code == there.exit_code == 0, there.stderr
    assert here.json() == there.json()
    usage = sda_cli("train", in_subprocess=True)
    assert usage.exit_code == sda_cli("train").exit_code == 2 and "DIR" in usage.stderr
    with pytest.raises(AssertionError, match="exited with 2"):
        usage.assert_ok()
