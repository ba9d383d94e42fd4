"""Reference plugin for ``sda_make_dataset``: lazy fixed-length chunks of every file.

The chunk index is built from header metadata when the dataset is constructed; audio is read in
``__getitem__``, only the frames one chunk needs (see :mod:`sda_core.audio.reading`). Items are raw
float32 waveforms shaped (channels, samples) at the project sample rate; the mel transform runs
later, on the training device.

* Training: each file contributes a fixed number of chunks per epoch, laid on a grid whose phase
  moves randomly every epoch, so over the epochs every sample is seen, not only a fixed grid.
  An item drawn again in the same epoch (an epoch longer than the dataset) is cut elsewhere,
  within half a chunk of its grid position, and augmented with a draw of its own.
* Validation: a fixed grid, identical on every pass, that covers every sample of every file
  exactly once (the last partial chunk is zero-padded).
* Files shorter than a chunk are kept, zero-padded at the end. A last partial training chunk is
  kept when it holds at least ``min_partial_fraction`` of a chunk.
* Small datasets are decoded once into memory (per process) when they fit ``memory_cache_mb``.

Settings (``[plugins.chunk_dataset]`` in sda.toml or ``--set plugins.chunk_dataset.KEY=VALUE``):
``min_partial_fraction`` (0.5), ``skip_silent`` (false), ``silence_dbfs`` (-60),
``memory_cache_mb`` (256).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch
from torch.utils.data import Dataset

from sda_core import hookimpl, plugin_settings
from sda_core import validators as v
from sda_core.audio.reading import AudioReadError, read_file, read_segment
from sda_core.config import TrainingConfig
from sda_core.config.dataset import AudioFileInfo
from sda_core.data.chunks import chunk_count, chunk_frames, target_frames
from sda_core.errors import ConfigError, DatasetError

PLUGIN_NAME = "chunk_dataset"
ROLES = ("train", "validation")
_MASK64 = (1 << 64) - 1
#: Sets the hash of a repetition's cut apart from the other hashes of (seed, epoch, index).
_REPEAT_STREAM = 1


class ChunkReadWarning(UserWarning):
    """A file could not be read during training; its chunks are replaced by other chunks."""


@attrs.frozen(kw_only=True)
class DatasetSettings:
    """The ``[plugins.chunk_dataset]`` settings.

    Attributes:
        min_partial_fraction: keep a last partial training chunk holding at least this fraction.
        skip_silent: drop chunks quieter than ``silence_dbfs`` (reads all audio once at start).
        silence_dbfs: RMS level below which a chunk counts as silent.
        memory_cache_mb: decode the whole dataset into memory when it is at most this big.
    """

    min_partial_fraction: float = attrs.field(default=0.5, validator=v.number(0.0, 1.0))
    skip_silent: bool = attrs.field(default=False, validator=v.instance_of(bool, "true or false"))
    silence_dbfs: float = attrs.field(default=-60.0, validator=v.number(-200.0, 0.0))
    memory_cache_mb: float = attrs.field(default=256.0, validator=v.number(0.0))

    @classmethod
    def from_config(cls, config: TrainingConfig) -> "DatasetSettings":
        """The ``[plugins.chunk_dataset]`` table; unknown keys and bad values raise ConfigError."""
        return plugin_settings(config, PLUGIN_NAME, cls)


class AudioTrainingDataset(Dataset):
    """Fixed-length chunks of a list of audio files, read lazily.

    Args:
        files: the files of one side of the split (paths relative to ``root``).
        root: the data folder.
        config: the resolved config (sample_rate, channels, chunk_seconds, seed).
        role: ``"train"`` (moving grid, augmentation) or ``"validation"`` (fixed grid).
        augment: a picklable callable ``augment(audio, epoch=, index=)`` applied to training items.
        settings: the plugin's settings (default: read from ``config``).

    Items are addressed by ``index``, ``(epoch, index)`` or ``(epoch, index, repeat)``; the epoch
    moves the training grid and seeds augmentation, and ``repeat`` (how many times the epoch drew
    the item before) moves a repeated training item's cut and gives it another augmentation draw,
    so items depend only on (seed, epoch, index, repeat), never on the worker.
    """

    #: Tell :func:`sda_core.data.loaders.create_data_loaders` to address items as
    #: (epoch, index, repeat) (see :class:`sda_core.data.loaders.EpochSampler`).
    epoch_keys = True
    repeat_keys = True

    def __init__(
        self,
        files: Sequence[AudioFileInfo],
        root: str | os.PathLike[str],
        config: TrainingConfig,
        role: str = "train",
        augment: Any = None,
        settings: DatasetSettings | None = None,
    ) -> None:
        if role not in ROLES:
            raise ConfigError("role", role, "one of " + ", ".join(ROLES))
        self.files = tuple(files)
        self.root = os.fspath(root)
        self.role = role
        self.augment = augment if role == "train" else None
        self.settings = settings or DatasetSettings.from_config(config)
        self.sample_rate = config.sample_rate
        self.channels = config.channels
        self.seed = config.seed
        self.chunk = chunk_frames(config)
        self.lengths = np.array([target_frames(info, self.sample_rate) for info in self.files], dtype=np.int64)
        partial = self.settings.min_partial_fraction if role == "train" else 0.0
        self.grid_counts = np.array([chunk_count(int(n), self.chunk, partial) for n in self.lengths], dtype=np.int64)
        self.file_of = np.repeat(np.arange(len(self.files), dtype=np.int32), self.grid_counts)
        self.chunk_of = _ranges(self.grid_counts)
        decoded_bytes = int(self.lengths.sum()) * self.channels * 4
        self.use_memory_cache = decoded_bytes <= self.settings.memory_cache_mb * 2**20
        self._decoded: dict[int, np.ndarray] = {}
        self._failed: set[int] = set()
        if self.settings.skip_silent:
            self._drop_silent_chunks()

    # -- the Dataset protocol --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.file_of)

    def __getitem__(self, key: int | tuple[int, int] | tuple[int, int, int]) -> torch.Tensor:
        epoch, index, repeat = _parse_key(key)
        audio = self._read_item(index, epoch, repeat)
        if audio is None:  # the item's file is unreadable: substitute a deterministic other item
            offset = _mix(self.seed, epoch, index)
            for step in range(len(self)):
                candidate = (offset + step) % len(self)
                audio = self._read_item(candidate, epoch, repeat)
                if audio is not None:
                    index = candidate
                    break
            else:
                raise DatasetError(f"none of the {len(self.files)} {self.role} files under '{self.root}' could be read")
        if self.augment is not None:
            # each (index, repeat) of an epoch has an augmentation index of its own
            audio = self.augment(audio, epoch=epoch, index=index + repeat * len(self))
        return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes start with an empty memory cache instead of a pickled copy of ours.
        state = self.__dict__.copy()
        state["_decoded"], state["_failed"] = {}, set()
        return state

    # -- the index -------------------------------------------------------------------------

    def chunk_start(self, index: int, epoch: int = 0, repeat: int = 0) -> int:
        """First frame (at the project rate; may be negative: zero-padded) of an item.

        ``repeat`` > 0 (a training item the epoch draws again) moves the cut: see
        :meth:`_repeat_start`.
        """
        file_index = int(self.file_of[index])
        start = int(self.chunk_of[index]) * self.chunk
        if self.role == "train":
            start += self._phase(file_index, epoch)
            if repeat > 0:
                start = self._repeat_start(file_index, start, epoch, index, repeat)
        return start

    def chunk_spans(self, epoch: int = 0) -> list[tuple[str, int, int]]:
        """(path, start, end) in project-rate frames of every item of an epoch."""
        spans = []
        for index in range(len(self)):
            start = self.chunk_start(index, epoch)
            spans.append((self.files[int(self.file_of[index])].path, start, start + self.chunk))
        return spans

    def index_nbytes(self) -> int:
        """Memory held by the chunk index itself."""
        return sum(array.nbytes for array in (self.lengths, self.grid_counts, self.file_of, self.chunk_of))

    # -- internals -------------------------------------------------------------------------

    def _phase(self, file_index: int, epoch: int) -> int:
        """Random shift of a file's training grid for one epoch, within the file's slack."""
        length = int(self.lengths[file_index])
        if length <= self.chunk:
            return 0
        slack = length - int(self.grid_counts[file_index]) * self.chunk
        low, high = min(0, slack), max(0, slack)
        return low + _mix(self.seed, epoch, file_index) % (high - low + 1)

    def _repeat_start(self, file_index: int, first: int, epoch: int, index: int, repeat: int) -> int:
        """Where the ``repeat``-th repetition within an epoch of an item first cut at ``first`` starts.

        A full chunk of its file, starting within half a chunk of the first cut, at a position
        that neither the first cut nor another repetition of the epoch has while the window holds
        enough positions (the repetitions walk a seeded permutation of them). A file no longer
        than a chunk has one position: its repetitions differ by augmentation only.
        """
        last = int(self.lengths[file_index]) - self.chunk  # the last start of a full chunk
        if last <= 0:
            return first
        centre = min(max(first, 0), last)
        low, high = max(0, centre - self.chunk // 2), min(last, centre + self.chunk // 2)
        taken = low <= first <= high
        count = high - low + 1 - taken  # the window's positions other than the first cut's
        if count <= 0:
            return first
        origin = _mix(self.seed, epoch, index, _REPEAT_STREAM)
        stride = _coprime(1 + _mix(origin) % count, count) if count > 1 else 1
        position = low + (origin + (repeat - 1) * stride) % count
        return position + 1 if taken and position >= first else position

    def _read_item(self, index: int, epoch: int, repeat: int = 0) -> np.ndarray | None:
        """The audio of one item, or None when its file cannot be read (warned once)."""
        file_index = int(self.file_of[index])
        if file_index in self._failed:
            return None
        try:
            return self._read(file_index, self.chunk_start(index, epoch, repeat))
        except AudioReadError as error:
            self._failed.add(file_index)
            warnings.warn(f"{error}; its chunks are replaced by chunks of other files", ChunkReadWarning, stacklevel=3)
            return None

    def _read(self, file_index: int, start: int) -> np.ndarray:
        info = self.files[file_index]
        path = os.path.join(self.root, info.path)
        if not self.use_memory_cache:
            return read_segment(
                path,
                start,
                self.chunk,
                target_rate=self.sample_rate,
                channels=self.channels,
                source_rate=info.sample_rate,
                format=info.format,
            )
        decoded = self._decoded.get(file_index)
        if decoded is None:
            decoded = read_file(path, target_rate=self.sample_rate, channels=self.channels)
            self._decoded[file_index] = decoded
        return _crop(decoded, start, self.chunk)

    def _drop_silent_chunks(self) -> None:
        keep = np.ones(len(self.file_of), dtype=bool)
        threshold = 10 ** (self.settings.silence_dbfs / 20)
        for file_index, info in enumerate(self.files):
            path = os.path.join(self.root, info.path)
            try:
                audio = read_file(path, target_rate=self.sample_rate, channels=self.channels)
            except AudioReadError:
                continue
            positions = np.flatnonzero(self.file_of == file_index)
            for position in positions:
                chunk = _crop(audio, int(self.chunk_of[position]) * self.chunk, self.chunk)
                if np.sqrt(np.mean(np.square(chunk, dtype=np.float64))) < threshold:
                    keep[position] = False
        if not keep.any():
            keep[:] = True  # an all-silent dataset keeps its chunks rather than none
        self.file_of, self.chunk_of = self.file_of[keep], self.chunk_of[keep]


def _parse_key(key: Any) -> tuple[int, int, int]:
    """``(epoch, index, repeat)`` of a key: ``index``, ``(epoch, index)`` or ``(epoch, index, repeat)``."""
    if not isinstance(key, tuple):
        return 0, int(key), 0
    if len(key) == 2:
        return int(key[0]), int(key[1]), 0
    epoch, index, repeat = key
    return int(epoch), int(index), int(repeat)


def _coprime(start: int, modulus: int) -> int:
    """The first number from ``start`` up that shares no factor with ``modulus`` (a stride that
    visits every residue)."""
    while math.gcd(start, modulus) != 1:
        start += 1
    return start


def _ranges(counts: np.ndarray) -> np.ndarray:
    """[0..c0-1, 0..c1-1, ...] for the given counts, as int32."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int32)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return (np.arange(total) - offsets).astype(np.int32)


def _crop(audio: np.ndarray, start: int, frames: int) -> np.ndarray:
    """``frames`` frames of (channels, n) audio from ``start``, zero-padded outside it."""
    out = np.zeros((audio.shape[0], frames), dtype=np.float32)
    lo, hi = max(start, 0), min(start + frames, audio.shape[1])
    if hi > lo:
        out[:, lo - start : hi - start] = audio[:, lo:hi]
    return out


def _mix(*values: int) -> int:
    """A fast, platform-independent 64-bit hash of integers (splitmix64 steps)."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        state = (state ^ (state >> 27)) * 0x94D049BB133111EB & _MASK64
        state ^= state >> 31
    return state


@hookimpl
def sda_check_config(config: TrainingConfig) -> None:
    """Veto a bad ``[plugins.chunk_dataset]`` table before anything runs."""
    DatasetSettings.from_config(config)


@hookimpl(trylast=True)
def sda_make_dataset(
    files: tuple[AudioFileInfo, ...], config: TrainingConfig, role: str, augment: Any, root: str
) -> AudioTrainingDataset:
    """The reference dataset: lazy fixed-length chunks."""
    return AudioTrainingDataset(files, root, config, role=role, augment=augment)
