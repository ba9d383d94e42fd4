"""EpochPrefetcher over the training loader that create_data_loaders builds through a real Engine."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch
from audio_factory import make_folder

from sda_core import DatasetError, Engine, TrainingConfig, hookimpl
from sda_core.data.loaders import create_data_loaders
from sda_core.data.prefetch import EpochPrefetcher, epoch_batches
from sda_core.data.scan import scan_folder

RATE = 8000
EPOCHS = range(1, 4)


def config(**changes) -> TrainingConfig:
    settings = {"sample_rate": RATE, "batch_size": 4, "num_workers": 2, "validation_fraction": 0.25}
    return TrainingConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("prefetch") / "data", [0.3, 0.8, 1.5, 2.2, 3.1, 1.0, 0.5, 4.0])


class KeyLog(torch.utils.data.Dataset):
    """Items that name their key, and a log file each worker appends the keys it made to."""

    epoch_keys = True

    def __init__(self, log: Path, items: int = 12, fail_at: tuple[int, int] | None = None) -> None:
        self.log, self.items, self.fail_at = str(log), items, fail_at

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        if tuple(key) == self.fail_at:
            raise DatasetError(f"cannot read item {key}")
        with open(self.log, "a") as log:
            log.write(f"{key[0]} {key[1]}\n")
        return torch.tensor([float(key[0]), float(key[1])])


class KeyLogPlugin:
    def __init__(self, dataset: KeyLog) -> None:
        self.dataset = dataset

    @hookimpl
    def sda_make_dataset(self, role):
        return self.dataset if role == "train" else KeyLog(Path(self.dataset.log).with_suffix(".val"))


def key_log_loader(folder: Path, dataset: KeyLog, **changes):
    train, _val, _split = create_data_loaders(
        scan_folder(folder), config(augmentation_strength=0.0, **changes), Engine(plugins=[KeyLogPlugin(dataset)])
    )
    return train


def logged_epochs(log: Path) -> list[int]:
    return [int(line.split()[0]) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("workers", [0, 2])
def test_the_batches_are_those_of_iterating_each_epoch(folder: Path, workers: int):
    summary = scan_folder(folder)
    direct_loader, prefetched_loader = (
        create_data_loaders(summary, config(num_workers=workers), Engine())[0] for _ in range(2)
    )
    direct = [torch.cat(list(epoch_batches(direct_loader, epoch))) for epoch in EPOCHS]
    with EpochPrefetcher(prefetched_loader, EPOCHS) as prefetcher:
        prefetched = [torch.cat(list(prefetcher.epoch(epoch))) for epoch in EPOCHS]
    for epoch, (a, b) in enumerate(zip(direct, prefetched), start=1):
        assert torch.equal(a, b), f"epoch {epoch} differs"
    assert not torch.equal(prefetched[0], prefetched[1])


def test_the_next_epoch_is_made_before_it_is_asked_for(folder: Path, tmp_path: Path):
    log = tmp_path / "keys.log"
    train = key_log_loader(folder, KeyLog(log))
    with EpochPrefetcher(train, EPOCHS) as prefetcher:
        deadline = time.monotonic() + 20
        while not logged_epochs(log) and time.monotonic() < deadline:  # made before anything is asked
            time.sleep(0.01)
        assert logged_epochs(log), "the first epoch did not start when the prefetcher was created"
        first = list(prefetcher.epoch(1))
        assert [batch[0, 0].item() for batch in first] == [1.0] * len(train)
        while 2 not in logged_epochs(log) and time.monotonic() < deadline:  # the loop validates here
            time.sleep(0.01)
        assert 2 in logged_epochs(log), "epoch 2's batches were not started once epoch 1 was taken"
        assert all(batch[0, 0].item() == 2.0 for batch in prefetcher.epoch(2))


def test_a_fetch_error_is_raised_by_the_epoch_it_belongs_to(folder: Path, tmp_path: Path):
    train = key_log_loader(folder, KeyLog(tmp_path / "keys.log", fail_at=(2, 5)))
    with EpochPrefetcher(train, EPOCHS) as prefetcher:
        assert len(list(prefetcher.epoch(1))) == len(train)
        with pytest.raises(DatasetError, match=r"cannot read item \(2, 5\)"):
            list(prefetcher.epoch(2))


def test_a_loop_that_breaks_off_can_close_it_at_once(folder: Path, tmp_path: Path):
    train = key_log_loader(folder, KeyLog(tmp_path / "keys.log", items=400))
    threads = threading.active_count()
    prefetcher = EpochPrefetcher(train, EPOCHS, depth=1)
    assert threading.active_count() > threads
    next(iter(prefetcher.epoch(1)))
    started = time.monotonic()
    prefetcher.close()
    assert time.monotonic() - started < 5
    assert not any(thread.name == "sda-prefetch" and thread.is_alive() for thread in threading.enumerate())
    with pytest.raises(RuntimeError, match="closed"):
        prefetcher.epoch(2)


def test_epochs_are_asked_for_in_order(folder: Path, tmp_path: Path):
    train = key_log_loader(folder, KeyLog(tmp_path / "keys.log"), num_workers=0)
    with EpochPrefetcher(train, EPOCHS) as prefetcher:
        with pytest.raises(ValueError, match="epoch 2 asked for, but the next epoch of this prefetcher is 1"):
            prefetcher.epoch(2)
        list(prefetcher.epoch(1))
    with pytest.raises(ValueError, match="depth"):
        EpochPrefetcher(train, EPOCHS, depth=0)
