"""create_data_loaders through a real Engine: split, datasets and augmentation via the hooks."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_factory import make_folder

from sda_core import Engine, FileSplit, TrainingConfig, hookimpl
from sda_core.data.loaders import EpochSampler, create_data_loaders, default_num_workers, samples_per_epoch
from sda_core.data.scan import scan_folder

RATE = 8000


def config(**changes) -> TrainingConfig:
    settings = {"sample_rate": RATE, "batch_size": 4, "num_workers": 0, "validation_fraction": 0.25}
    return TrainingConfig(**{**settings, **changes})


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(
        tmp_path / "data", [0.3, 0.8, 1.5, 2.2, 3.1, 1.0, 0.5, 4.0], rates=(8000, 22050, 44100), channels=(1, 2)
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five files longer than a chunk: 9 training chunks, so an epoch of 8 batches of 4 repeats them."""
    return make_folder(tmp_path_factory.mktemp("tiny") / "data", [1.5, 2.2, 3.1, 2.6, 1.8], rates=(8000, 22050))


def epoch_items(loader, epoch: int) -> torch.Tensor:
    loader.sampler.set_epoch(epoch)
    return torch.cat(list(loader))


def all_distinct(items: torch.Tensor) -> bool:
    return len({item.numpy().tobytes() for item in items}) == len(items)


def test_loaders_give_a_leak_free_split_and_raw_one_second_batches(folder: Path):
    summary = scan_folder(folder)
    train, val, split = create_data_loaders(summary, config(), Engine())
    assert set(split.train).isdisjoint(split.validation)
    assert set(split.train) | set(split.validation) == {info.path for info in summary.files}
    train.sampler.set_epoch(1)
    batches = list(train)
    assert all(batch.shape[1:] == (1, RATE) and batch.dtype == torch.float32 for batch in batches)
    assert len(batches) == len(train) >= 8
    assert len(train.dataset.files) + len(val.dataset.files) == summary.file_count
    per_file = np.bincount(train.dataset.file_of, minlength=len(train.dataset.files))
    assert (per_file >= 1).all()


def test_validation_passes_are_identical(folder: Path):
    _train, val, _split = create_data_loaders(scan_folder(folder), config(), Engine())
    first = torch.cat(list(val))
    second = torch.cat(list(val))
    assert torch.equal(first, second)
    assert first.shape[0] == len(val.dataset)


def test_training_epochs_differ_and_repeat_exactly(folder: Path):
    train, _val, _split = create_data_loaders(scan_folder(folder), config(), Engine())

    def epoch(number: int) -> torch.Tensor:
        train.sampler.set_epoch(number)
        return torch.cat(list(train))

    assert torch.equal(epoch(1), epoch(1))
    assert not torch.equal(epoch(1), epoch(2))


def test_items_are_identical_with_zero_and_two_workers(folder: Path):
    summary = scan_folder(folder)
    loaders = [create_data_loaders(summary, config(num_workers=workers), Engine())[0] for workers in (0, 2)]
    results = []
    for loader in loaders:
        loader.sampler.set_epoch(3)
        results.append(torch.cat(list(loader)))
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("augmentation", ["default", "off"])
def test_an_item_repeated_within_an_epoch_differs_from_its_other_occurrences(tiny: Path, augmentation: str):
    changes = {"augmentation_strength": 0.0} if augmentation == "off" else {}
    train, _val, _split = create_data_loaders(scan_folder(tiny), config(**changes), Engine())
    train.sampler.set_epoch(1)
    keys = list(train.sampler)
    assert len(keys) == 32 and len({index for _epoch, index, _repeat in keys}) == len(train.dataset) == 9
    items = epoch_items(train, 1)
    occurrences = defaultdict(list)
    for (_epoch, index, _repeat), item in zip(keys, items):
        occurrences[index].append(item)
    assert max(len(found) for found in occurrences.values()) >= 3
    for index, found in occurrences.items():
        assert all_distinct(torch.stack(found)), f"item {index} repeats byte for byte"
    assert all_distinct(items)


def test_the_same_seed_gives_the_same_repeated_items(tiny: Path):
    summary = scan_folder(tiny)
    loaders = [create_data_loaders(summary, config(num_workers=workers), Engine())[0] for workers in (0, 2)]
    assert torch.equal(epoch_items(loaders[0], 2), epoch_items(loaders[1], 2))
    other_seed = create_data_loaders(summary, config(seed=43), Engine())[0]
    assert not torch.equal(epoch_items(loaders[0], 2), epoch_items(other_seed, 2))


def test_repeat_keys_count_the_earlier_draws_of_the_epoch_over_all_ranks():
    whole = EpochSampler(5, samples_per_epoch=12, seed=3, repeat_keys=True)
    whole.set_epoch(2)
    keys = list(whole)
    drawn: dict[int, int] = defaultdict(int)
    for epoch, index, repeat in keys:
        assert epoch == 2 and repeat == drawn[index]
        drawn[index] += 1
    assert sorted(drawn.values()) == [2, 2, 2, 3, 3]
    shares = [EpochSampler(5, samples_per_epoch=12, seed=3, rank=r, world_size=2, repeat_keys=True) for r in range(2)]
    for sampler in shares:
        sampler.set_epoch(2)
    assert sorted(key for sampler in shares for key in sampler) == sorted(keys)
    assert list(EpochSampler(3, shuffle=False, repeat_keys=True)) == [(0, 0, 0), (0, 1, 0), (0, 2, 0)]
    assert list(EpochSampler(3, shuffle=False, epoch_keys=False, repeat_keys=True)) == [0, 1, 2]


class RecordingModel(torch.nn.Module):
    """Keeps every training batch it is given; a constant loss keeps the run cheap."""

    sample_rate = RATE
    channels = 1

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.batches: list[tuple[int, torch.Tensor]] = []

    def loss(self, audio, *, epoch):
        if self.training:
            self.batches.append((epoch, audio.detach().clone()))
        return {"loss": self.weight * 1.0}

    def encode(self, audio):
        return audio.mean(dim=(1, 2)).unsqueeze(1)

    def decode(self, latent):
        return torch.zeros(latent.shape[0], 1, self.sample_rate)

    def generate(self, count, *, seconds=1.0, generator=None):
        return torch.zeros(count, 1, int(seconds * self.sample_rate))

    def reconstruct(self, audio):
        return audio


class RecordingModels:
    def __init__(self) -> None:
        self.made: list[RecordingModel] = []

    @hookimpl
    def sda_make_model(self, config):
        self.made.append(RecordingModel())
        return self.made[-1]


def test_training_runs_repeat_no_item_byte_for_byte_and_repeat_exactly(tiny: Path, tmp_path: Path):
    settings = {
        "sample_rate": RATE,
        "batch_size": 4,
        "validation_fraction": 0.25,
        "max_epochs": 2,
        "preview_interval": 100,
        "evaluation_sounds": 0,
        "seed": 5,
    }
    runs = []
    for workers in (0, 2):
        models = RecordingModels()
        Engine(plugins=[models], disable=["progress"]).train(
            tiny, tmp_path / f"run_{workers}", {**settings, "num_workers": workers}, device="cpu"
        )
        runs.append(models.made[-1].batches)
    for epoch in (1, 2):
        items = torch.cat([batch for number, batch in runs[0] if number == epoch])
        assert len(items) == 4 * 12 and all_distinct(items), f"epoch {epoch} repeats an item byte for byte"
    assert [number for number, _batch in runs[0]] == [number for number, _batch in runs[1]]
    assert all(torch.equal(a, b) for (_n, a), (_m, b) in zip(runs[0], runs[1]))


def test_samples_per_epoch_sets_the_epoch_length(folder: Path):
    train, _val, _split = create_data_loaders(scan_folder(folder), config(samples_per_epoch=40), Engine())
    assert len(train.sampler) == 40 and len(train) == 10
    assert samples_per_epoch(config(), train_items=5) == 4 * 8
    assert samples_per_epoch(config(), train_items=50) == 50  # one pass once it has the steps
    assert samples_per_epoch(config(min_steps_per_epoch=12), train_items=5) == 4 * 12
    assert samples_per_epoch(config(min_steps_per_epoch=12, samples_per_epoch=7), train_items=5) == 7
    smallest = create_data_loaders(scan_folder(folder), config(min_steps_per_epoch=12), Engine())[0]
    assert len(smallest) == 12


def test_a_plugin_can_replace_the_split_and_the_dataset(folder: Path):
    class Everything:
        @hookimpl
        def sda_split_files(self, files):
            return FileSplit(train=[f.path for f in files[:-1]], validation=[files[-1].path])

        @hookimpl
        def sda_make_dataset(self, files, role):
            return [torch.full((1, RATE), float(len(files)))] * 4

    train, val, split = create_data_loaders(
        scan_folder(folder), config(augmentation_strength=0.0), Engine(plugins=[Everything()])
    )
    assert split.validation == ("sound_007.wav",)
    assert next(iter(val)).shape == (4, 1, RATE)


def test_a_saved_split_is_reused(folder: Path):
    summary = scan_folder(folder)
    saved = FileSplit(train=[f.path for f in summary.files[1:]], validation=[summary.files[0].path])
    _train, _val, split = create_data_loaders(summary, config(), Engine(), split=saved)
    assert split == saved


def test_distributed_ranks_get_disjoint_equal_shares():
    shares = [EpochSampler(10, samples_per_epoch=10, seed=1, rank=r, world_size=3) for r in range(3)]
    for sampler in shares:
        sampler.set_epoch(4)
    indices = [list(sampler.indices()) for sampler in shares]
    assert len({len(share) for share in indices}) == 1
    assert set().union(*map(set, indices)) == set(range(10))
    with pytest.raises(ValueError):
        EpochSampler(10, rank=3, world_size=3)


def test_default_workers_fit_the_machine():
    assert default_num_workers(1) == 0
    assert default_num_workers(2) == 1
    assert default_num_workers(64) == 4


def test_loaders_over_the_real_corpus(real_sounds: Path):
    summary = scan_folder(real_sounds)
    train, val, split = create_data_loaders(summary, TrainingConfig(num_workers=0), Engine())
    assert not set(split.train) & set(split.validation)
    assert len(split.train) + len(split.validation) == summary.file_count == 36
    assert len(val.dataset.files) >= 1
    for dataset in (train.dataset, val.dataset):
        assert (np.bincount(dataset.file_of, minlength=len(dataset.files)) >= 1).all()
    train.sampler.set_epoch(1)
    batch = next(iter(train))
    assert batch.shape[1:] == (1, 22050) and torch.isfinite(batch).all()
    assert torch.equal(torch.cat(list(val)), torch.cat(list(val)))
