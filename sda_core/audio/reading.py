"""Reading audio: exactly the frames a training chunk needs, or a whole file, resampled and channel-mapped.

:func:`read_segment` is what a dataset's ``__getitem__`` calls for one chunk. It opens the file
with soundfile, seeks, and reads only the source frames the chunk needs (plus the few frames of
context the resampling filter needs on each side), so one second of a one-hour WAV, FLAC or Ogg
file costs about as much as one second of a one-second file. The result is resampled to the
configured rate (:mod:`sda_core.audio.resampling`: torchaudio's Kaiser-windowed sinc kernel, built
once per pair of rates and process), mapped to the configured channel count and returned as a
C-contiguous float32 array ``(channels, frames)``. :func:`read_file` reads a whole file the same way.

Formats that cannot seek cheaply
    Seeking in an MP3 costs more the further into the file it goes, so formats for which
    :func:`sda_core.audio.formats.needs_decode_cache` is true are decoded once, whole, into a
    :class:`~sda_core.audio.decode_cache.DecodeCache` and chunks are read from a memory map of the
    decoded file, touching only their own frames.

Errors
    Every failure is an :class:`AudioReadError` naming the file: a file libsndfile cannot open
    (with libsndfile's reason), and audio containing NaN or Inf samples. A file shorter than its
    header claims (a truncated download, an interrupted export) is not an error: the frames that
    do not exist read as zeros (what survives is read by :mod:`sda_core.audio.decoding`).

Where the rest lives: :mod:`~sda_core.audio.formats` (what is special about MP3),
:mod:`~sda_core.audio.decoding` (whole-file decodes, damaged files),
:mod:`~sda_core.audio.decode_cache`, :mod:`~sda_core.audio.resampling`,
:mod:`~sda_core.audio.wav` (``write_wav``).
"""

from __future__ import annotations

import os

import numpy as np
import soundfile

from sda_core.audio.decode_cache import DecodeCache, default_decode_cache
from sda_core.audio.decoding import decode_file, read_at
from sda_core.audio.formats import has_cached_extension, needs_decode_cache
from sda_core.audio.paths import native_path
from sda_core.audio.resampling import Reader, resampled_length, segment

# Re-export for one release: other branches still import ``write_wav`` from here. Its home is
# sda_core.audio.wav; import it from there (this line goes in the release after next).
from sda_core.audio.wav import write_wav  # noqa: F401
from sda_core.errors import AudioReadError  # noqa: F401 (public here too)

__all__ = [
    "AudioReadError",
    "read_file",
    "read_segment",
]

# Integer encodings cannot hold NaN or Inf, so their samples are not checked. Everything else
# (FLOAT, DOUBLE, VORBIS, OPUS, MPEG ...) is checked.
_INTEGER_SUBTYPES = frozenset(
    {
        "PCM_S8",
        "PCM_U8",
        "PCM_16",
        "PCM_24",
        "PCM_32",
        "ULAW",
        "ALAW",
        "IMA_ADPCM",
        "MS_ADPCM",
        "GSM610",
        "VOX_ADPCM",
        "G721_32",
        "G723_24",
        "G723_40",
        "DWVW_12",
        "DWVW_16",
        "DWVW_24",
        "DPCM_8",
        "DPCM_16",
        "NMS_ADPCM_16",
        "NMS_ADPCM_24",
        "NMS_ADPCM_32",
        "ALAC_16",
        "ALAC_20",
        "ALAC_24",
        "ALAC_32",
    }
)


# ----------------------------------------------------------------------------------------------
# Sources: readers (see sda_core.audio.resampling.Reader) of zero-padded (count, channels) rows at
# the source rate.
#
# Reading integers and converting them in the same numpy pass that makes the result planar is
# bit-identical to libsndfile's own float conversion (both multiply by 2**-15 or 2**-31) and saves
# a pass: a 16-bit WAV chunk costs about as much as ``soundfile.read`` of it, transposition included.

# subtype -> (dtype libsndfile reads it as, the factor that makes it float like libsndfile does)
_INTEGER_READS: dict[str, tuple[type, float]] = {
    "PCM_S8": (np.int16, 2.0**-15),
    "PCM_U8": (np.int16, 2.0**-15),
    "PCM_16": (np.int16, 2.0**-15),
    "PCM_24": (np.int32, 2.0**-31),
    "PCM_32": (np.int32, 2.0**-31),
}

_SF_FORMAT_TYPEMASK = 0x0FFF0000
_SF_FORMAT_SUBMASK = 0x0000FFFF
# soundfile's code -> name tables (private, stable for a decade); the public properties are the
# fallback and cost ~15 us each, a tenth of reading a 16-bit WAV chunk.
_FORMAT_NAMES = {code: name for name, code in getattr(soundfile, "_formats", {}).items()}
_SUBTYPE_NAMES = {code: name for name, code in getattr(soundfile, "_subtypes", {}).items()}


def _format_and_subtype(handle: soundfile.SoundFile) -> tuple[str, str]:
    try:
        code = int(handle._info.format)
        container = _FORMAT_NAMES[code & _SF_FORMAT_TYPEMASK]
        subtype = _SUBTYPE_NAMES[code & _SF_FORMAT_SUBMASK]
    except (AttributeError, KeyError, TypeError, ValueError):
        return handle.format, handle.subtype
    return container, subtype


def _soundfile_reader(handle: soundfile.SoundFile, path: str | os.PathLike[str], subtype: str) -> Reader:
    channels = handle.channels
    total = handle.frames
    dtype, scale = _INTEGER_READS.get(subtype, (np.float32, None))
    check = scale is None and subtype not in _INTEGER_SUBTYPES

    def read(first: int, count: int) -> tuple[np.ndarray, float | None]:
        out = np.empty((count, channels), dtype=dtype)
        low = min(max(first, 0), first + count)
        high = max(min(first + count, total), low)
        got = read_at(handle, low, out[low - first : high - first]) if high > low else 0
        end = low - first + got
        if low > first:
            out[: low - first] = 0
        if end < count:
            out[end:] = 0  # past the end, or past what a truncated file really holds
        if check:
            _check_finite(out[low - first : end], path, low)
        return out, scale

    return read


def _array_reader(array: np.ndarray, path: str | os.PathLike[str], check: bool) -> Reader:
    """Rows of an in-memory or memory-mapped float32 ``(frames, channels)`` array, zero-padded."""
    total, channels = array.shape

    def read(first: int, count: int) -> tuple[np.ndarray, float | None]:
        low = min(max(first, 0), first + count)
        high = max(min(first + count, total), low)
        if low == first and high == first + count:
            out = np.array(array[low:high], dtype=np.float32, order="C")
        else:
            out = np.zeros((count, channels), dtype=np.float32)
            out[low - first : high - first] = array[low:high]
        if check:
            _check_finite(out[low - first : high - first], path, low)
        return out, None

    return read


def _check_finite(rows: np.ndarray, path: str | os.PathLike[str], first_frame: int) -> None:
    if rows.size and not np.isfinite(rows).all():
        bad = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        raise AudioReadError.non_finite(path, first_frame + bad)


# ----------------------------------------------------------------------------------------------
# Reads


def _validate(start: int, frames: int, target_rate: int, channels: int) -> None:
    for name, value, least in (("frames", frames, 0), ("target_rate", target_rate, 1), ("channels", channels, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise ValueError(f"start must be an integer, got {start!r}")


def read_segment(
    path: str | os.PathLike[str],
    start: int,
    frames: int,
    *,
    target_rate: int,
    channels: int,
    source_rate: int | None = None,
    cache: DecodeCache | None = None,
    format: str | None = None,  # noqa: A002 - AudioFileInfo.format
) -> np.ndarray:
    """Read ``frames`` frames of a file, starting at ``start``, at ``target_rate`` with ``channels``.

    Only the source frames the segment needs are read (seek + read), plus the resampling filter's
    context on each side. The result equals the same frames of the whole file resampled with
    ``torchaudio.functional.resample(..., **resampling.RESAMPLE_OPTIONS)`` (a Kaiser-windowed sinc that
    keeps aliases at or below -60 dB; see :mod:`sda_core.audio.resampling`) and channel-mapped.

    Args:
        path: the audio file.
        start: first frame, in frames at ``target_rate``; may be negative (silence before the file).
        frames: how many frames to return (at ``target_rate``).
        target_rate: the output sample rate.
        channels: the output channel count. Fewer channels than the file: mono is the mean of all
            channels, otherwise the first ``channels`` channels are kept; more: the file's
            channels are repeated cyclically (mono becomes identical left and right).
        source_rate: the file's rate when already known (from a scan); only used to find an MP3's
            cached decode without opening the MP3. The file's real rate always wins.
        cache: where formats that need it (:func:`needs_decode_cache`, MP3) are decoded once;
            default :func:`default_decode_cache`.
        format: the file's container as soundfile names it (``AudioFileInfo.format``), when known;
            otherwise MP3 is recognised by extension or by opening the file.

    Returns:
        float32, C-contiguous, shape ``(channels, frames)``. Frames before the start or past the end
        of the file (or of what a truncated file really holds) are zeros.

    Raises:
        AudioReadError: the file cannot be opened or read (with libsndfile's reason), or the frames
            read contain NaN or Inf samples.
        ValueError: a negative ``frames``, or a rate or channel count below 1.
    """
    _validate(start, frames, target_rate, channels)
    start, frames, target_rate, channels = int(start), int(frames), int(target_rate), int(channels)
    if needs_decode_cache(format) or (format is None and has_cached_extension(path)):
        return _read_cached(path, start, frames, target_rate, channels, source_rate, cache)
    try:
        handle = soundfile.SoundFile(native_path(path))
    except (soundfile.LibsndfileError, OSError) as error:
        raise AudioReadError.unreadable(path, error) from None
    with handle:
        container, subtype = _format_and_subtype(handle)
        if needs_decode_cache(container):
            rate = handle.samplerate
        else:
            reader = _soundfile_reader(handle, path, subtype)
            return segment(reader, handle.frames, handle.samplerate, start, frames, target_rate, channels)
    return _read_cached(path, start, frames, target_rate, channels, rate, cache)


def _read_cached(
    path: str | os.PathLike[str],
    start: int,
    frames: int,
    target_rate: int,
    channels: int,
    source_rate: int | None,
    cache: DecodeCache | None,
) -> np.ndarray:
    decoded, rate = (cache or default_decode_cache()).get(path, source_rate=source_rate)
    reader = _array_reader(decoded, path, check=True)
    return segment(reader, decoded.shape[0], rate, start, frames, target_rate, channels)


def read_file(
    path: str | os.PathLike[str],
    *,
    target_rate: int,
    channels: int,
) -> np.ndarray:
    """The whole file, resampled to ``target_rate`` and mapped to ``channels``: ``(channels, frames)``.

    For small in-memory caches and previews. ``frames`` is ``ceil(decoded * target / source)``,
    where ``decoded`` is what the file really holds (which can be less than its header claims). The
    result equals ``torchaudio.functional.resample(..., **RESAMPLE_OPTIONS)`` of the decoded audio.
    MP3 files are decoded directly (no decode cache: the whole file is wanted once).

    Raises:
        AudioReadError: as :func:`read_segment`.
    """
    _validate(0, 0, target_rate, channels)
    data, rate = decode_file(path)
    reader = _array_reader(data, path, check=True)
    length = resampled_length(data.shape[0], rate, int(target_rate))
    return segment(reader, data.shape[0], rate, 0, length, int(target_rate), int(channels))
