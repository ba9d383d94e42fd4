"""The reference chunk dataset (sda_plugins.chunk_dataset.AudioTrainingDataset)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from audio_factory import make_folder, write_sound
from hypothesis import given, settings
from hypothesis import strategies as st

import sda_core.audio.reading
from sda_core import AudioFileInfo, ConfigError, TrainingConfig
from sda_core.data.scan import scan_folder
from sda_plugins import AudioTrainingDataset
from sda_plugins.chunk_dataset import ChunkReadWarning, DatasetSettings

RATE = 8000
CONFIG = TrainingConfig(sample_rate=RATE, chunk_seconds=1.0)


def dataset(folder: Path, role: str = "train", config: TrainingConfig = CONFIG, **settings) -> AudioTrainingDataset:
    summary = scan_folder(folder)
    return AudioTrainingDataset(
        summary.files, summary.root, config, role=role, settings=DatasetSettings(**settings) if settings else None
    )


def fake_info(path: str, seconds: float, rate: int = RATE) -> AudioFileInfo:
    return AudioFileInfo(
        path=path,
        format="WAV",
        subtype="PCM_16",
        sample_rate=rate,
        channels=1,
        frames=max(1, round(seconds * rate)),
        size_bytes=1000,
    )


def test_the_index_is_built_from_metadata_without_reading_audio(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "data", [0.4, 2.3, 3.0])
    summary = scan_folder(folder)

    def forbidden(*args, **kwargs):
        raise AssertionError("audio was read at construction")

    monkeypatch.setattr(sda_core.audio.reading, "read_segment", forbidden)
    monkeypatch.setattr(sf, "read", forbidden)
    monkeypatch.setattr(sf.SoundFile, "read", forbidden)
    ds = AudioTrainingDataset(summary.files, summary.root, CONFIG, role="train")
    assert len(ds) == 1 + 2 + 3


def test_items_are_raw_float_waveforms_of_one_chunk(tmp_path):
    folder = make_folder(tmp_path / "data", [0.4, 2.0], rates=(22050, 44100), channels=(1, 2))
    for role in ("train", "validation"):
        ds = dataset(folder, role)
        for index in range(len(ds)):
            item = ds[index]
            assert isinstance(item, torch.Tensor) and item.dtype == torch.float32
            assert tuple(item.shape) == (1, RATE) and torch.isfinite(item).all()
    stereo = dataset(folder, config=TrainingConfig(sample_rate=RATE, channels=2))
    assert tuple(stereo[0].shape) == (2, RATE)


def test_a_short_file_is_padded_and_kept(tmp_path):
    write_sound(tmp_path / "data" / "click.wav", 0.25, rate=RATE)
    for role in ("train", "validation"):
        ds = dataset(tmp_path / "data", role)
        assert len(ds) == 1
        item = ds[(5, 0)][0].numpy()
        original = sf.read(tmp_path / "data" / "click.wav", dtype="float32")[0]
        np.testing.assert_allclose(item[: len(original)], original, atol=1e-6)
        assert not item[len(original) :].any()


@pytest.mark.parametrize(
    ("seconds", "fraction", "train_chunks", "val_chunks"),
    [(2.3, 0.5, 2, 3), (2.6, 0.5, 3, 3), (2.3, 0.25, 3, 3), (3.0, 0.5, 3, 3)],
)
def test_a_last_partial_chunk_counts_from_a_configurable_fraction(seconds, fraction, train_chunks, val_chunks):
    files = (fake_info("a.wav", seconds),)
    settings = DatasetSettings(min_partial_fraction=fraction)
    assert len(AudioTrainingDataset(files, "/data", CONFIG, "train", settings=settings)) == train_chunks
    assert len(AudioTrainingDataset(files, "/data", CONFIG, "validation", settings=settings)) == val_chunks


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.01, 9.0), min_size=1, max_size=8), st.sampled_from([8000, 16000, 44100, 48000]))
def test_the_validation_grid_covers_every_sample_exactly_once(durations, rate):
    files = tuple(fake_info(f"f{i}.wav", s, rate) for i, s in enumerate(durations))
    ds = AudioTrainingDataset(files, "/data", CONFIG, "validation")
    coverage = {info.path: np.zeros(int(ds.lengths[i]), dtype=int) for i, info in enumerate(files)}
    for path, start, end in ds.chunk_spans():
        lo, hi = max(start, 0), min(end, len(coverage[path]))
        coverage[path][lo:hi] += 1
    for counts in coverage.values():
        assert (counts == 1).all()
    assert ds.chunk_spans(0) == ds.chunk_spans(7)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(1.05, 6.0), min_size=1, max_size=5))
def test_training_offsets_move_every_epoch_and_reach_all_the_audio(durations):
    files = tuple(fake_info(f"f{i}.wav", s) for i, s in enumerate(durations))
    ds = AudioTrainingDataset(files, "/data", CONFIG, "train", settings=DatasetSettings(min_partial_fraction=0.0))
    seen = {info.path: np.zeros(int(ds.lengths[i]), dtype=bool) for i, info in enumerate(files)}
    for epoch in range(200):
        for path, start, end in ds.chunk_spans(epoch):
            seen[path][max(start, 0) : min(end, len(seen[path]))] = True
    assert all(mask.all() for mask in seen.values())
    moving = [i for i, info in enumerate(files) if ds.lengths[i] % ds.chunk]
    if moving:
        assert len({tuple(s for _p, s, _e in ds.chunk_spans(epoch)) for epoch in range(10)}) > 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.2, 6.0), min_size=1, max_size=5), st.integers(0, 1000), st.integers(2, 12))
def test_a_repeated_item_is_cut_elsewhere_within_half_a_chunk(durations, epoch, occurrences):
    files = tuple(fake_info(f"f{i}.wav", s) for i, s in enumerate(durations))
    ds = AudioTrainingDataset(files, "/data", CONFIG, "train")
    chunk = ds.chunk
    for index in range(len(ds)):
        starts = [ds.chunk_start(index, epoch, repeat) for repeat in range(occurrences)]
        last = int(ds.lengths[ds.file_of[index]]) - chunk
        if last <= 0:  # no longer than a chunk: one position, repeats differ by augmentation only
            assert set(starts) == {starts[0]}
            continue
        centre = min(max(starts[0], 0), last)
        assert all(0 <= start <= last and abs(start - centre) <= chunk // 2 for start in starts[1:])
        window = min(last, centre + chunk // 2) - max(0, centre - chunk // 2) + 1
        assert len(set(starts)) == min(occurrences, window)
        assert starts == [ds.chunk_start(index, epoch, repeat) for repeat in range(occurrences)]


def test_a_repeated_item_differs_from_its_first_cut_and_augmentation(tmp_path):
    folder = make_folder(tmp_path / "data", [1.5, 2.7, 0.6])
    summary = scan_folder(folder)
    seen = []

    def record(audio, *, epoch, index):
        seen.append(index)
        return audio

    ds = AudioTrainingDataset(summary.files, summary.root, CONFIG, "train", augment=record)
    long_items = [i for i in range(len(ds)) if ds.lengths[ds.file_of[i]] > ds.chunk]
    for index in long_items:
        occurrences = [ds[(4, index, repeat)] for repeat in range(4)]
        assert torch.equal(occurrences[0], ds[(4, index)])
        assert all(not torch.equal(a, b) for i, a in enumerate(occurrences) for b in occurrences[i + 1 :])
    # every (index, repeat) of an epoch has its own augmentation index, so its own draw
    assert len(seen) == 5 * len(long_items) and len(set(seen)) == 4 * len(long_items)


def test_items_depend_only_on_epoch_and_index(tmp_path):
    folder = make_folder(tmp_path / "data", [1.5, 2.7, 0.6])
    ds = dataset(folder)
    first = [ds[(3, i)] for i in range(len(ds))]
    clone = pickle.loads(pickle.dumps(ds))
    assert all(torch.equal(a, clone[(3, i)]) for i, a in enumerate(first))
    assert all(torch.equal(a, ds[(3, i)]) for i, a in enumerate(first))
    repeated = [ds[(3, i, 2)] for i in range(len(ds))]
    assert all(torch.equal(a, clone[(3, i, 2)]) for i, a in enumerate(repeated))


def test_memory_cache_and_lazy_reads_give_the_same_items(tmp_path):
    folder = make_folder(tmp_path / "data", [1.7, 2.4], rates=(44100, 8000))
    cached = dataset(folder, memory_cache_mb=100)
    lazy = dataset(folder, memory_cache_mb=0)
    assert cached.use_memory_cache and not lazy.use_memory_cache
    for index in range(len(cached)):
        np.testing.assert_allclose(cached[(2, index)].numpy(), lazy[(2, index)].numpy(), atol=1e-4)


def test_the_index_of_500_one_minute_files_is_small():
    files = tuple(fake_info(f"f{i:03d}.wav", 60.0, 44100) for i in range(500))
    ds = AudioTrainingDataset(files, "/data", TrainingConfig(), "train")
    assert len(ds) == 500 * 60
    assert ds.index_nbytes() < 20 * 2**20


def test_an_unreadable_file_is_skipped_with_a_warning(tmp_path):
    folder = make_folder(tmp_path / "data", [1.0, 1.0])
    bad = np.zeros(RATE, dtype=np.float32)
    bad[100] = np.nan
    sf.write(folder / "sound_001.wav", bad, RATE, subtype="FLOAT")
    ds = dataset(folder, memory_cache_mb=0)
    with pytest.warns(ChunkReadWarning, match="sound_001.wav"):
        items = [ds[(1, i)] for i in range(len(ds))]
    assert all(torch.isfinite(item).all() for item in items)
    good = dataset(folder, memory_cache_mb=0)[(1, 0)]
    assert all(torch.equal(item, good) for item in items)


def test_silent_chunks_can_be_skipped(tmp_path):
    folder = tmp_path / "data"
    write_sound(folder / "tone.wav", 2.0, rate=RATE)
    sf.write(
        folder / "tone_then_silence.wav",
        np.concatenate([sf.read(folder / "tone.wav", dtype="float32")[0][:RATE], np.zeros(2 * RATE, np.float32)]),
        RATE,
    )
    assert len(dataset(folder, "validation")) == 5
    assert len(dataset(folder, "validation", skip_silent=True)) == 3


def test_unknown_settings_are_rejected_by_name():
    config = TrainingConfig(plugins={"chunk_dataset": {"min_partial": 0.3}})
    with pytest.raises(ConfigError, match="min_partial_fraction"):
        DatasetSettings.from_config(config)
    with pytest.raises(ConfigError, match="role"):
        AudioTrainingDataset((), "/data", CONFIG, role="test")


def test_augmentation_is_applied_to_training_items_only(tmp_path):
    folder = make_folder(tmp_path / "data", [1.0])
    summary = scan_folder(folder)

    def invert(audio, *, epoch, index):
        return -audio

    train = AudioTrainingDataset(summary.files, summary.root, CONFIG, "train", augment=invert)
    val = AudioTrainingDataset(summary.files, summary.root, CONFIG, "validation", augment=invert)
    assert torch.equal(train[(0, 0)], -val[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(pickle.dumps(val)) < 10_000


class _Grid:
    """A dataset that answers only ``chunk_spans``: file A in six chunks, B in three, C in one."""

    def chunk_spans(self, epoch: int) -> list[tuple[str, int, int]]:
        spans = [("a.wav", 100 * i, 100 * (i + 1)) for i in range(6)]
        spans += [("b.wav", 100 * i, 100 * (i + 1)) for i in range(3)]
        return spans + [("c.wav", 0, 40)]


def test_chunk_successors_follow_each_file_and_skip_ahead_over_chunks_left_out():
    from sda_core.data.chunks import chunk_successors

    every = chunk_successors(_Grid(), list(range(10)))
    assert every is not None
    assert every.tolist() == [1, 2, 3, 4, 5, -1, 7, 8, -1, -1]  # each file's next chunk; -1 at its end
    # a subsampled dataset (the sampler takes at most 512 chunks): a chunk whose next one was left
    # out goes on with the next picked chunk of its file, and only a file's last picked one ends
    picks = [0, 2, 3, 5, 6, 9]
    subsampled = chunk_successors(_Grid(), picks)
    assert subsampled is not None
    assert subsampled.tolist() == [1, 2, 3, -1, -1, -1]
    assert chunk_successors(_Grid(), [3, 0]).tolist() == [-1, 0]  # positions in picks, in their order
