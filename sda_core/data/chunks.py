"""How a file is cut into fixed-length chunks: shared by the dataset and the scan report.

Everything here works from header metadata (frames and sample rates); no audio is read.
Lengths are in frames at the project (target) sample rate.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sda_core.config import TrainingConfig
from sda_core.config.dataset import AudioFileInfo

if TYPE_CHECKING:
    import torch

#: A last partial chunk is kept (zero-padded) when it holds at least this fraction of a chunk.
DEFAULT_MIN_PARTIAL_FRACTION = 0.5


def chunk_frames(config: TrainingConfig) -> int:
    """Frames in one chunk at the project sample rate."""
    return max(1, round(config.chunk_seconds * config.sample_rate))


def target_frames(info: AudioFileInfo, target_rate: int) -> int:
    """Length of a file once resampled to ``target_rate`` (at least one frame)."""
    return max(1, math.ceil(info.frames * target_rate / info.sample_rate))


def chunk_count(total: int, chunk: int, min_partial_fraction: float = DEFAULT_MIN_PARTIAL_FRACTION) -> int:
    """Chunks a file of ``total`` frames yields.

    A file shorter than one chunk gives one (padded) chunk: short one-shots are always kept.
    Otherwise every full chunk counts, and a last partial chunk counts when it holds at least
    ``min_partial_fraction`` of a chunk (``0`` keeps any remainder, as the validation grid does).
    """
    if total <= chunk:
        return 1
    full, remainder = divmod(total, chunk)
    if remainder and remainder >= min_partial_fraction * chunk:
        full += 1
    return full


def file_chunk_count(
    info: AudioFileInfo, config: TrainingConfig, min_partial_fraction: float = DEFAULT_MIN_PARTIAL_FRACTION
) -> int:
    """Chunks one file yields under ``config``."""
    return chunk_count(target_frames(info, config.sample_rate), chunk_frames(config), min_partial_fraction)


def chunk_successors(dataset: Any, picks: Sequence[int]) -> "torch.Tensor | None":
    """For each of the items ``picks`` of ``dataset`` (their order), the position in ``picks`` of
    the item that continues it in the same file on epoch 0's grid, or -1 where its file ends: a
    long tensor, or None when the dataset cannot say (it has no ``chunk_spans``, as the reference
    dataset has, answering ``(path, start, end)`` per item).

    The item that continues a chunk starts where it ends. When ``picks`` leaves it out (a
    subsampled dataset: the sampler is fitted to at most 512 chunks), the next later picked item
    of the same file continues it instead, so a sound skips ahead in its file rather than stopping
    as if the file had ended there; -1 then means no later item of the file was picked.
    """
    spans_of = getattr(dataset, "chunk_spans", None)
    if not callable(spans_of):
        return None
    try:
        spans = spans_of(0)
        picked = [(str(path), int(start), int(end)) for path, start, end in (spans[index] for index in picks)]
    except (TypeError, ValueError, IndexError, KeyError):  # a provider's spans of another shape
        return None
    by_file: dict[str, list[tuple[int, int]]] = {}
    for position, (path, start, _end) in enumerate(picked):
        by_file.setdefault(path, []).append((start, position))
    for chunks in by_file.values():
        chunks.sort()
    following = []
    for path, _start, end in picked:
        chunks = by_file[path]
        later = bisect.bisect_left(chunks, (end, -1))  # the first picked chunk starting at `end` or after
        following.append(chunks[later][1] if later < len(chunks) else -1)
    import torch  # here: reading the chunk grid needs no torch

    return torch.tensor(following, dtype=torch.long)
