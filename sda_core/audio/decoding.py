"""Decoding through libsndfile, and reading the surviving part of a damaged file (written once).

A damaged or truncated file makes libsndfile fail a whole read: soundfile raises, the frames it
did decode are lost, and the handle's error sticks, failing every later seek. What the file still
holds is recovered by :func:`surviving_blocks`: a fresh handle, a seek, and small blocks
(:data:`SALVAGE_FRAMES`), keeping every block that decodes; the first block that fails ends the
data. The segment reader (:func:`read_at`), the whole-file decode (:func:`decode_file`,
:func:`decoded_frames`) and the content analysis of ``sda scan``
(:mod:`sda_core.data.analysis`) all recover damaged files through it.

numpy and soundfile only: no torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import soundfile

from sda_core.audio.paths import native_path
from sda_core.errors import AudioReadError

__all__ = [
    "BLOCK_FRAMES",
    "SALVAGE_FRAMES",
    "decode_all",
    "decode_file",
    "decoded_frames",
    "read_at",
    "surviving_blocks",
]

BLOCK_FRAMES = 65536
"""Frames per read when decoding a whole file."""

SALVAGE_FRAMES = 1024
"""Frames per read when recovering what a damaged file still holds."""


def surviving_blocks(
    path: str | os.PathLike[str],
    position: int = 0,
    *,
    block_frames: int = SALVAGE_FRAMES,
    limit: int | None = None,
    channels: int | None = None,
    dtype: np.dtype[Any] | type = np.float32,
) -> Iterator[np.ndarray]:
    """The decodable frames of a (possibly damaged) file from ``position`` on, in small blocks.

    Opens the file afresh, seeks to ``position`` and yields ``(frames, channels)`` blocks (of
    ``dtype``, as libsndfile converts: float32, or int16/int32 for integer PCM)
    of ``block_frames`` frames (the last may be shorter) until ``limit`` frames were yielded, the
    file ends, or a block fails to decode: the first failure ends the data, silently. Each block
    is a view of one reused buffer, valid until the next one is asked for. Nothing is yielded
    when the file cannot be opened or seeked, or has a channel count other than ``channels``.
    """
    try:
        with soundfile.SoundFile(native_path(path)) as handle:
            if channels is not None and handle.channels != channels:
                return
            if position:
                handle.seek(position)
            buffer = np.empty((max(1, block_frames), handle.channels), dtype=dtype)
            remaining = limit
            while remaining is None or remaining > 0:
                step = len(buffer) if remaining is None else min(len(buffer), remaining)
                block = handle.read(step, out=buffer[:step])
                if len(block):
                    yield block
                if len(block) < step:
                    return
                if remaining is not None:
                    remaining -= len(block)
    except Exception:  # noqa: BLE001 - any decoder failure ends what survives
        return


def read_at(handle: soundfile.SoundFile, position: int, out: np.ndarray) -> int:
    """Read ``len(out)`` frames at ``position`` into ``out``; returns how many frames exist.

    When libsndfile fails the read (a damaged or truncated file), the span is read again through
    :func:`surviving_blocks`, keeping every block that decodes.
    """
    count = len(out)
    try:
        if handle.tell() != position:
            handle.seek(position)
        return len(handle.read(count, out=out))
    except soundfile.LibsndfileError:
        pass
    got = 0
    for block in surviving_blocks(handle.name, position, limit=count, dtype=out.dtype):
        out[got : got + len(block)] = block
        got += len(block)
    return got


def decode_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """The whole file at its own rate, (frames, channels) float32, and that rate.

    Raises:
        AudioReadError: the file cannot be opened, or not one frame decodes.
    """
    try:
        with soundfile.SoundFile(native_path(path)) as handle:
            return decode_all(handle, path), handle.samplerate
    except (soundfile.LibsndfileError, OSError) as error:
        raise AudioReadError.unreadable(path, error) from None


def decode_all(handle: soundfile.SoundFile, path: str | os.PathLike[str]) -> np.ndarray:
    """Every frame the file really holds, ``(frames, channels)`` float32 (the header may overstate).

    Raises:
        AudioReadError: not one frame decodes although the header promises some.
    """
    blocks = []
    position = 0
    while True:
        block = np.empty((BLOCK_FRAMES, handle.channels), dtype=np.float32)
        got = read_at(handle, position, block)
        if got:
            blocks.append(block[:got])
            position += got
        if got < BLOCK_FRAMES:
            break
    if not blocks:
        if handle.frames > 0:
            try:
                handle.seek(0)
                handle.read(1, dtype="float32")
            except soundfile.LibsndfileError as error:
                raise AudioReadError.unreadable(path, error) from None
            raise AudioReadError(path, "no audio frame could be decoded")
        return np.zeros((0, handle.channels), dtype=np.float32)
    return np.concatenate(blocks)


def decoded_frames(path: str | os.PathLike[str]) -> int:
    """How many frames a file really decodes to, whatever its header claims.

    For headers that cannot be trusted (an MP3's length is a claim of its Xing tag or an estimate
    from its first frame). The file is streamed through the decoder in blocks and nothing is kept;
    a file that stops decoding midway counts the frames before the damage.

    Raises:
        AudioReadError: the file cannot be opened.
    """
    try:
        handle = soundfile.SoundFile(native_path(path))
    except (soundfile.LibsndfileError, OSError) as error:
        raise AudioReadError.unreadable(path, error) from None
    with handle:
        block = np.empty((BLOCK_FRAMES, handle.channels), dtype=np.float32)
        position = 0
        while True:
            got = read_at(handle, position, block)
            position += got
            if got < BLOCK_FRAMES:
                return position
