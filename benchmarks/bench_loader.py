"""The chunk index and the training DataLoader.

* index: ``scan_folder`` plus building the training and validation chunk indexes for 500 files
  (the split, computed once per run, is outside the timed region), versus the bare ``soundfile.info`` calls on the same files (the floor: the headers must be
  read). Target: at most 1.3x.
* index memory: bytes held by the chunk index of 500 one-minute files (from metadata only),
  as a fraction of 20 MB. Target: at most 1.0.
* loader: training batches per second from ``create_data_loaders`` with the default worker
  count on this machine, augmentation on, 44.1 kHz files resampled to 22.05 kHz, every chunk read
  from its file (no memory cache). Informational.
* data wait at a fast step: the same loader with the default settings (each worker decodes the
  files once into memory) under a loop whose step computes for 100 ms (a model several times
  faster than the reference one on this CPU, as on a GPU), four epochs after a 0.5 s pause (the
  run's set-up): the share of step time spent waiting for a batch, taking the batches epoch by
  epoch from the loader, against through ``EpochPrefetcher`` (what the training loop does). The
  ratio column is the worst epoch after the first (epoch starts and steady state); the first
  epoch, which also waits for the workers to start and decode the files, is shown beside it.
  Informational: the training benchmark holds the target (data wait < 5% of the real model's
  step time in every epoch).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from benchmarks.bench_scan import FILE_COUNT, list_files, synthesise_corpus
from benchmarks.timing import Result, compare, describe
from sda_core import AudioFileInfo, Engine, TrainingConfig
from sda_core.data.loaders import create_data_loaders, default_num_workers
from sda_core.data.prefetch import EpochPrefetcher, epoch_batches
from sda_core.data.scan import scan_folder
from sda_plugins.chunk_dataset import AudioTrainingDataset, DatasetSettings

NAME = "loader"
INDEX_TARGET = 1.3
INDEX_MEMORY_LIMIT = 20 * 2**20
#: The simulated training step of the data-wait rows, and the set-up pause before the first epoch.
STEP_SECONDS = 0.1
SETUP_SECONDS = 0.5


def _index_row(repeats: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="sda-bench-index-") as temp:
        synthesise_corpus(Path(temp))
        paths = list_files(temp)
        config = TrainingConfig()
        split = Engine().split_files(scan_folder(temp).files, config)  # once per run, not timed

        def bare_info() -> None:
            for path in paths:
                soundfile.info(path)

        def index() -> None:
            summary = scan_folder(temp)
            by_path = {info.path: info for info in summary.files}
            for role, names in (("train", split.train), ("validation", split.validation)):
                AudioTrainingDataset([by_path[p] for p in names], summary.root, config, role)

        comparison = compare({"scan+index": index, "soundfile.info": bare_info}, repeats=repeats, warmup=2)
    detail = describe(comparison, "scan+index", "soundfile.info", per=FILE_COUNT, unit="file")
    return Result(
        f"chunk index: {FILE_COUNT} files", comparison.ratio("scan+index", "soundfile.info"), INDEX_TARGET, detail
    )


def _memory_row() -> Result:
    files = [
        AudioFileInfo(
            path=f"f{i:03d}.wav",
            format="WAV",
            subtype="PCM_16",
            sample_rate=44100,
            channels=2,
            frames=60 * 44100,
            size_bytes=60 * 44100 * 4,
        )
        for i in range(500)
    ]
    dataset = AudioTrainingDataset(files, "/data", TrainingConfig(), "train")
    used = dataset.index_nbytes()
    return Result(
        "chunk index memory: 500 one-minute files",
        used / INDEX_MEMORY_LIMIT,
        1.0,
        f"{used / 2**20:.2f} MB for {len(dataset)} chunks (limit 20 MB)",
    )


def _corpus(folder: Path) -> None:
    rng = np.random.default_rng(7)
    for index in range(24):
        seconds = rng.uniform(2.0, 8.0)
        t = np.arange(int(44100 * seconds)) / 44100
        audio = 0.3 * np.sin(2 * np.pi * rng.uniform(80, 800) * t) + 0.02 * rng.standard_normal(len(t))
        soundfile.write(folder / f"take_{index:02d}.wav", audio.astype(np.float32), 44100)


def _train_loader(folder: Path, steps: int, memory_cache_mb: float = 0):
    """The training loader of ``folder``: batches of 16, ``steps`` per epoch, lazy reads by default."""
    config = TrainingConfig(
        batch_size=16, samples_per_epoch=16 * steps, plugins={"chunk_dataset": {"memory_cache_mb": memory_cache_mb}}
    )
    return create_data_loaders(scan_folder(folder), config, Engine())[0]


def _loader_row(quick: bool) -> Result:
    with tempfile.TemporaryDirectory(prefix="sda-bench-loader-") as temp:
        _corpus(Path(temp))
        train = _train_loader(Path(temp), 8 if quick else 24)
        train.sampler.set_epoch(0)
        for _batch in train:  # start the persistent workers
            pass
        rates = []
        for epoch in range(1, 3 if quick else 4):
            train.sampler.set_epoch(epoch)
            started = time.perf_counter()
            count = sum(1 for _batch in train)
            rates.append(count / (time.perf_counter() - started))
        del train
    workers = default_num_workers()
    best = float(np.median(rates))
    return Result(
        f"loader: batches of 16 x 1 s, {workers} worker(s)",
        best,
        None,
        f"{best:.1f} batches/s = {best * 16:.0f} items/s (lazy reads, resampling, augmentation); "
        "the ratio column is batches per second",
    )


def _compute(seconds: float) -> None:
    """Keep this thread busy for ``seconds`` with torch work, as a training step does."""
    work = torch.ones(192, 192)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        work @ work


def _wait_shares(folder: Path, prefetch: bool, epochs: int, steps: int) -> list[float]:
    """Per epoch, the share of a STEP_SECONDS loop's time spent waiting for batches."""
    train = _train_loader(folder, steps, memory_cache_mb=DatasetSettings().memory_cache_mb)
    numbers = range(1, epochs + 1)
    prefetcher = EpochPrefetcher(train, numbers) if prefetch else None
    _compute(SETUP_SECONDS)
    shares = []
    try:
        for epoch in numbers:
            batches = prefetcher.epoch(epoch) if prefetcher else epoch_batches(train, epoch)
            waited = 0.0
            while True:
                started = time.perf_counter()
                batch = next(batches, None)
                waited += time.perf_counter() - started
                if batch is None:
                    break
                _compute(STEP_SECONDS)
            shares.append(waited / (waited + STEP_SECONDS * len(train)))
    finally:
        if prefetcher is not None:
            prefetcher.close()
        del train
    return shares


def _wait_rows(quick: bool) -> list[Result]:
    epochs, steps = (3, 12) if quick else (4, 24)
    with tempfile.TemporaryDirectory(prefix="sda-bench-wait-") as temp:
        _corpus(Path(temp))
        shares = {prefetch: _wait_shares(Path(temp), prefetch, epochs, steps) for prefetch in (False, True)}
    workers = default_num_workers()
    rows = []
    for prefetch, name in ((False, "epoch by epoch"), (True, "EpochPrefetcher")):
        first, later = shares[prefetch][0], shares[prefetch][1:]
        rows.append(
            Result(
                f"loader: data wait at a {STEP_SECONDS * 1e3:.0f} ms step, {name}, {workers} worker(s)",
                max(later),
                None,
                f"epochs 2-{epochs}: worst {max(later):.1%}, median {statistics.median(later):.1%} "
                f"({', '.join(f'{v:.1%}' for v in later)}); epoch 1 (workers start, files decoded) {first:.1%}",
            )
        )
    return rows


def run(quick: bool = False) -> list[Result]:
    return [_index_row(7 if quick else 21), _memory_row(), _loader_row(quick), *_wait_rows(quick)]


if __name__ == "__main__":  # pragma: no cover - manual use
    for row in run():
        print(row)
