"""What is special about some audio formats, decided here once: MPEG audio (MP3 and its kin).

MPEG audio differs from the other containers libsndfile reads in three ways, and every part of
sda asks this module rather than naming "MP3" itself:

* **Seeking is expensive.** Seeking to a far position decodes everything before it, so chunks are
  read from a whole-file decode kept in the :class:`~sda_core.audio.decode_cache.DecodeCache`
  (:func:`needs_decode_cache`, :func:`has_cached_extension`).
* **The header's length is a claim** (of a Xing/Info tag, or an estimate from the first frame) that
  a damaged tag or a file cut short can get wildly wrong; the scan checks it against the file's
  size (:func:`length_is_a_claim`, :func:`plausible_mpeg_length`).
* **Decoders disagree by a frame or two.** A decode one or two MPEG frames shorter than the header
  is an estimate, not missing audio (:func:`frame_count_tolerance`).

Pure functions of names and bytes: no numpy, no soundfile, no torch.
"""

from __future__ import annotations

import os

__all__ = [
    "MIN_MPEG_BITRATE",
    "MPEG_EXTENSIONS",
    "MPEG_FORMATS",
    "MPEG_FRAME_TOLERANCE",
    "frame_count_tolerance",
    "has_cached_extension",
    "is_mpeg",
    "length_is_a_claim",
    "needs_decode_cache",
    "plausible_mpeg_length",
]

MPEG_FORMATS = frozenset({"MP3", "MPEG"})
"""Container names (soundfile's ``format``; it says "MP3" for every MPEG layer) of MPEG audio."""

MPEG_EXTENSIONS = frozenset({".mp3", ".mp2", ".mp1", ".mpga"})
"""File extensions of MPEG audio (used where the container is not known yet)."""

MIN_MPEG_BITRATE = 8000
"""The lowest bitrate of MPEG audio (MPEG-2.5 layer III, bits per second): no MP3 holds more
seconds than its bytes allow at this rate."""

MPEG_FRAME_TOLERANCE = 2304
"""Frames by which an MPEG decoder's count may fall short of the header (two MPEG frames)."""

_XING_TAGS = (b"Xing", b"Info")
_XING_WITHIN = 64  # the tag sits 13 to 36 bytes into the first MPEG frame


def is_mpeg(format: str | None) -> bool:  # noqa: A002 - soundfile's own word
    """Whether a container (soundfile's ``format``, any case) is MPEG audio."""
    return format is not None and format.upper() in MPEG_FORMATS


def needs_decode_cache(format: str | None) -> bool:  # noqa: A002 - soundfile's own word
    """Whether files of this container (soundfile's ``format``, e.g. "MP3") are read via the cache.

    True for formats where seeking to a far position costs a decode of everything before it.
    """
    return is_mpeg(format)


def has_cached_extension(path: str | os.PathLike[str]) -> bool:
    """Whether a file's extension says it needs the decode cache (before the file is opened)."""
    return os.path.splitext(os.fspath(path))[1].lower() in MPEG_EXTENSIONS


def length_is_a_claim(format: str | None) -> bool:  # noqa: A002 - soundfile's own word
    """Whether a container's header length is a claim that a damaged or cut file can get wrong."""
    return is_mpeg(format)


def frame_count_tolerance(format: str | None) -> int:  # noqa: A002 - soundfile's own word
    """Frames a full decode may fall short of the header without the file being truncated."""
    return MPEG_FRAME_TOLERANCE if is_mpeg(format) else 0


def plausible_mpeg_length(path: str | os.PathLike[str], frames: int, rate: int, size: int) -> bool:
    """Whether an MP3's claimed length can be right, judged from its size and its Xing/Info tag.

    Impossible: more seconds than the file's bytes hold at MPEG's lowest bitrate, or fewer bytes
    than the tag says the stream has (the file was cut after the tag was written).
    """
    if frames / rate * MIN_MPEG_BITRATE / 8 > size:
        return False
    stream_bytes, start = _xing_stream_bytes(path)
    return stream_bytes is None or size - start >= 0.99 * stream_bytes


def _xing_stream_bytes(path: str | os.PathLike[str]) -> tuple[int | None, int]:
    """The stream size an MP3's Xing/Info tag claims (None: no tag or no size), and where the
    MPEG stream starts (after an ID3v2 tag)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(10)
            start = 0
            if len(head) == 10 and head[:3] == b"ID3":
                start = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | head[9] & 0x7F)
                start += 10 if head[5] & 0x10 else 0  # a footer
            stream.seek(start)
            frame = stream.read(_XING_WITHIN + 16)
    except OSError:
        return None, 0
    for tag in _XING_TAGS:
        at = frame.find(tag, 4, _XING_WITHIN)
        if at < 0 or len(frame) < at + 16:
            continue
        flags = int.from_bytes(frame[at + 4 : at + 8], "big")
        if not flags & 2:
            return None, start
        field = at + 8 + (4 if flags & 1 else 0)
        return int.from_bytes(frame[field : field + 4], "big"), start
    return None, start
