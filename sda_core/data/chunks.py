"""How a file is cut into fixed-length chunks: shared by the dataset and the scan report.

Everything here works from header metadata (frames and sample rates); no audio is read.
Lengths are in frames at the project (target) sample rate.
"""

from __future__ import annotations

import math

from sda_core.config import TrainingConfig
from sda_core.config.dataset import AudioFileInfo

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
