"""The chunk index and the training DataLoader.

* index: ``scan_folder`` plus building the training and validation chunk indexes for 500 files
  (the split, computed once per run, is outside the timed region), versus the bare ``soundfile.info`` calls on the same files (the floor: the headers must be
  read). Target: at most 1.3x.
* index memory: bytes held by the chunk index of 500 one-minute files (from metadata only),
  as a fraction of 20 MB. Target: at most 1.0.
* loader: training batches per second from ``create_data_loaders`` with the default worker
  count on this machine, augmentation on, 44.1 kHz files resampled to 22.05 kHz. Informational
  until the model exists (then: batch time / step time).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from benchmarks.bench_scan import FILE_COUNT, list_files, synthesise_corpus
from benchmarks.timing import Result, compare, describe
from sda_core import AudioFileInfo, Engine, TrainingConfig
from sda_core.data.loaders import create_data_loaders, default_num_workers
from sda_core.data.scan import scan_folder
from sda_plugins.chunk_dataset import AudioTrainingDataset

NAME = "loader"
INDEX_TARGET = 1.3
INDEX_MEMORY_LIMIT = 20 * 2**20


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


def _loader_row(quick: bool) -> Result:
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="sda-bench-loader-") as temp:
        for index in range(24):
            seconds = rng.uniform(2.0, 8.0)
            t = np.arange(int(44100 * seconds)) / 44100
            audio = 0.3 * np.sin(2 * np.pi * rng.uniform(80, 800) * t) + 0.02 * rng.standard_normal(len(t))
            soundfile.write(Path(temp) / f"take_{index:02d}.wav", audio.astype(np.float32), 44100)
        summary = scan_folder(temp)
        config = TrainingConfig(
            batch_size=16,
            samples_per_epoch=16 * (8 if quick else 24),
            plugins={"chunk_dataset": {"memory_cache_mb": 0}},
        )
        train, _val, _split = create_data_loaders(summary, config, Engine())
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


def run(quick: bool = False) -> list[Result]:
    return [_index_row(7 if quick else 21), _memory_row(), _loader_row(quick)]


if __name__ == "__main__":  # pragma: no cover - manual use
    for row in run():
        print(row)
