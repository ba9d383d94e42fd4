"""Reading audio: exactly the frames a training chunk needs, resampled and channel-mapped.

:func:`read_segment` is what a dataset's ``__getitem__`` calls for one chunk. It opens the file
with soundfile, seeks, and reads only the source frames the chunk needs (plus the few frames of
context the resampling filter needs on each side), so one second of a one-hour WAV, FLAC or Ogg
file costs about as much as one second of a one-second file. The result is resampled to the
configured rate with torchaudio's windowed-sinc kernel (the same kernel as
``torchaudio.transforms.Resample``, built once per pair of rates and process), mapped to the
configured channel count and returned as a C-contiguous float32 array ``(channels, frames)``.

Segments line up with whole-file resampling
    ``torchaudio``'s resampler is a polyphase filter. With ``g = gcd(source, target)``,
    ``source = g * a`` and ``target = g * b``, output frames ``k*b ... k*b + b - 1`` are computed
    from source frames ``k*a - width ... k*a + a + width`` with the same ``b`` filters for every
    ``k``. A segment is therefore read from a source window that starts on a multiple of ``a``
    (minus the filter width), filtered block by block, and cropped exactly: segment ``[s, s+n)``
    of the target-rate signal equals frames ``s ... s+n-1`` of ``torchaudio.functional.resample``
    of the whole file (up to float rounding), including near the file's edges, because the file is
    zero-padded on both sides exactly as the whole-file resampler pads it. Frames outside the
    whole-file result (before 0, at or after ``ceil(frames * target / source)``) are zeros.

    Unusual pairs of rates (say 44056 Hz to 22050 Hz, whose reduced ratio is 22028:11025) would
    need a kernel of hundreds of millions of taps; for those the same windowed sinc is evaluated
    directly at each output frame instead (slower per call, no giant kernel, same values).

Formats that cannot seek cheaply
    Seeking in an MP3 costs more the further into the file it goes, so formats for which
    :func:`needs_decode_cache` is true are decoded once, whole, into a :class:`DecodeCache` (a
    folder of float32 ``.npy`` files with a size limit, see ``docs/audio-io.md``) and chunks are
    read from a memory map of the decoded file, touching only their own frames.

Errors
    Every failure is an :class:`AudioReadError` naming the file: a file libsndfile cannot open
    (with libsndfile's reason), and audio containing NaN or Inf samples. A file shorter than its
    header claims (a truncated download, an interrupted export) is not an error: the frames that
    do not exist read as zeros.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
import torchaudio

from sda_core.atomic import write_atomic
from sda_core.audio.paths import native_path
from sda_core.errors import AudioReadError, SdaError  # noqa: F401 (AudioReadError: public here too)

__all__ = [
    "AudioReadError",
    "DEFAULT_CACHE_MAX_BYTES",
    "DecodeCache",
    "decoded_frames",
    "default_cache_directory",
    "default_decode_cache",
    "needs_decode_cache",
    "read_file",
    "read_segment",
    "resampled_length",
]

DEFAULT_CACHE_MAX_BYTES = 2 * 1024**3
"""Default size limit of the decoded-audio cache: 2 GiB (about 100 minutes of 44.1 kHz stereo)."""

CACHED_FORMATS = frozenset({"MP3"})
"""Containers (soundfile's ``format`` names) decoded once into the :class:`DecodeCache`."""

_CACHED_EXTENSIONS = frozenset({".mp3", ".mp2", ".mp1", ".mpga"})

# Integer encodings cannot hold NaN or Inf, so their samples are not checked. Everything else
# (FLOAT, DOUBLE, VORBIS, OPUS, MPEG ...) is checked.
_INTEGER_SUBTYPES = frozenset(
    {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW", "IMA_ADPCM", "MS_ADPCM",
     "GSM610", "VOX_ADPCM", "G721_32", "G723_24", "G723_40", "DWVW_12", "DWVW_16", "DWVW_24",
     "DPCM_8", "DPCM_16", "NMS_ADPCM_16", "NMS_ADPCM_24", "NMS_ADPCM_32", "ALAC_16", "ALAC_20",
     "ALAC_24", "ALAC_32"}
)

# A polyphase kernel bigger than this (in float32 taps) is not built; the sinc is evaluated
# directly instead. 2**22 taps = 16 MiB; every common pair of rates needs under 200 000.
_MAX_KERNEL_TAPS = 2**22

_BLOCK_FRAMES = 65536  # frames per read when decoding a whole file
_SALVAGE_FRAMES = 1024  # frames per read when recovering what a damaged file still holds


def needs_decode_cache(format: str | None) -> bool:  # noqa: A002 - soundfile's own word
    """Whether files of this container (soundfile's ``format``, e.g. "MP3") are read via the cache.

    True for formats where seeking to a far position costs a decode of everything before it.
    """
    return format is not None and format.upper() in CACHED_FORMATS


# ----------------------------------------------------------------------------------------------
# Resampling plans


class _Plan:
    """How to resample between two rates: reduced ratio, filter width, and the kernel.

    ``kernel`` is ``torchaudio.transforms.Resample(source, target).kernel``: shape
    ``(b, 1, 2 * width + a)``, one filter per output phase. It is None when too big to build
    (see ``_MAX_KERNEL_TAPS``); then :func:`_direct_resample` evaluates the same sinc directly.
    """

    __slots__ = ("source_rate", "target_rate", "down", "up", "width", "kernel", "rolloff", "zeros")

    def __init__(self, source_rate: int, target_rate: int) -> None:
        gcd = math.gcd(source_rate, target_rate)
        self.source_rate = source_rate
        self.target_rate = target_rate
        self.down = source_rate // gcd  # a: source frames per block
        self.up = target_rate // gcd  # b: output frames per block
        self.rolloff = 0.99  # torchaudio's defaults, so results equal its whole-file resampling
        self.zeros = 6  # lowpass_filter_width
        self.kernel: torch.Tensor | None = None
        base = min(self.down, self.up) * self.rolloff
        self.width = math.ceil(self.zeros * self.down / base)
        if self.up * (2 * self.width + self.down) <= _MAX_KERNEL_TAPS:
            resampler = torchaudio.transforms.Resample(source_rate, target_rate)
            self.kernel = resampler.kernel.detach().contiguous()
            self.width = int(resampler.width)


@functools.lru_cache(maxsize=32)
def _plan(source_rate: int, target_rate: int) -> _Plan:
    """The cached resampling plan for a pair of rates (one kernel per pair and process)."""
    return _Plan(source_rate, target_rate)


def resampled_length(frames: int, source_rate: int, target_rate: int) -> int:
    """Frames of a ``frames``-long signal after resampling (as torchaudio counts them: rounded up)."""
    if source_rate == target_rate:
        return frames
    return -(-frames * target_rate // source_rate)


# ----------------------------------------------------------------------------------------------
# Sources: something that yields zero-padded (count, channels) rows at the source rate.
#
# A reader returns ``(rows, scale)``: float32 rows with ``scale`` None, or integer rows (int16 or
# int32, read straight from integer PCM) that become float32 when multiplied by ``scale``. Reading
# integers and converting them in the same numpy pass that makes the result planar is bit-identical
# to libsndfile's own float conversion (both multiply by 2**-15 or 2**-31) and saves a pass: a
# 16-bit WAV chunk costs about as much as ``soundfile.read`` of it, transposition included.

_Reader = Callable[[int, int], "tuple[np.ndarray, float | None]"]

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


def _soundfile_reader(handle: soundfile.SoundFile, path: str | os.PathLike[str], subtype: str) -> _Reader:
    channels = handle.channels
    total = handle.frames
    dtype, scale = _INTEGER_READS.get(subtype, (np.float32, None))
    check = scale is None and subtype not in _INTEGER_SUBTYPES

    def read(first: int, count: int) -> tuple[np.ndarray, float | None]:
        out = np.empty((count, channels), dtype=dtype)
        low = min(max(first, 0), first + count)
        high = max(min(first + count, total), low)
        got = _read_at(handle, low, out[low - first:high - first]) if high > low else 0
        end = low - first + got
        if low > first:
            out[:low - first] = 0
        if end < count:
            out[end:] = 0  # past the end, or past what a truncated file really holds
        if check:
            _check_finite(out[low - first:end], path, low)
        return out, scale

    return read


def _read_at(handle: soundfile.SoundFile, position: int, out: np.ndarray) -> int:
    """Read ``len(out)`` frames at ``position`` into ``out``; returns how many frames exist.

    A damaged or truncated file makes libsndfile fail the whole read (soundfile raises, the frames
    it did decode are lost, and the handle's error sticks, failing every later seek). So on failure
    the span is read again through a fresh handle in small blocks, keeping every block that
    decodes; the first block that fails ends the data.
    """
    count = len(out)
    try:
        if handle.tell() != position:
            handle.seek(position)
        return len(handle.read(count, out=out))
    except soundfile.LibsndfileError:
        pass
    got = 0
    try:
        with soundfile.SoundFile(handle.name) as fresh:
            fresh.seek(position)
            while got < count:
                step = min(_SALVAGE_FRAMES, count - got)
                read = len(fresh.read(step, out=out[got:got + step]))
                got += read
                if read < step:
                    break
    except (soundfile.LibsndfileError, OSError, TypeError):
        pass
    return got


def _array_reader(array: np.ndarray, path: str | os.PathLike[str], check: bool) -> _Reader:
    """Rows of an in-memory or memory-mapped float32 ``(frames, channels)`` array, zero-padded."""
    total, channels = array.shape

    def read(first: int, count: int) -> tuple[np.ndarray, float | None]:
        low = min(max(first, 0), first + count)
        high = max(min(first + count, total), low)
        if low == first and high == first + count:
            out = np.array(array[low:high], dtype=np.float32, order="C")
        else:
            out = np.zeros((count, channels), dtype=np.float32)
            out[low - first:high - first] = array[low:high]
        if check:
            _check_finite(out[low - first:high - first], path, low)
        return out, None

    return read


def _check_finite(rows: np.ndarray, path: str | os.PathLike[str], first_frame: int) -> None:
    if rows.size and not np.isfinite(rows).all():
        bad = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
        raise AudioReadError.non_finite(path, first_frame + bad)


# ----------------------------------------------------------------------------------------------
# The segment pipeline


def _planar(rows: np.ndarray, scale: float | None, channels: int) -> np.ndarray:
    """``(count, C)`` rows -> ``(c, count)`` float32, C-contiguous, in one pass where possible.

    Mixing down happens here, at the source rate (before resampling, the cheaper side): mono is
    the mean of all channels; ``1 < channels < C`` keeps the first ``channels``. Up-mixing waits
    for :func:`_finish_channels`, after resampling.
    """
    source_channels = rows.shape[1]
    if channels == 1 and source_channels > 1:
        mono = rows.mean(axis=1, dtype=np.float32)
        if scale is not None:
            mono *= np.float32(scale)
        return mono[None, :]
    view = rows[:, :channels].T if 1 < channels < source_channels else rows.T
    if scale is None and view.flags.c_contiguous:  # mono float rows: already planar, our own buffer
        return view
    out = np.empty(view.shape, dtype=np.float32)
    if scale is None:
        np.copyto(out, view)
    else:
        np.multiply(view, np.float32(scale), out=out, dtype=np.float32)
    return out


def _finish_channels(planar: np.ndarray, channels: int) -> np.ndarray:
    """Up-mix (repeat the channels cyclically) and make the result C-contiguous float32."""
    have = planar.shape[0]
    if have < channels:
        planar = planar[[index % have for index in range(channels)]]
    return np.ascontiguousarray(planar, dtype=np.float32)


def _segment(
    reader: _Reader,
    total: int,
    source_rate: int,
    start: int,
    frames: int,
    target_rate: int,
    channels: int,
) -> np.ndarray:
    """Frames ``[start, start + frames)`` of the file resampled to ``target_rate``: ``(channels, frames)``."""
    if frames == 0:
        return np.zeros((channels, 0), dtype=np.float32)
    if source_rate == target_rate:
        return _finish_channels(_planar(*reader(start, frames), channels), channels)

    plan = _plan(source_rate, target_rate)
    if plan.kernel is None:
        planar = _direct_resample(reader, plan, start, frames, channels)
    else:
        a, b, width = plan.down, plan.up, plan.width
        first_block = start // b
        end_block = -(-(start + frames) // b)
        blocks = end_block - first_block
        source = _planar(*reader(first_block * a - width, blocks * a + 2 * width), channels)
        signal = torch.from_numpy(source).unsqueeze(1)  # (c, 1, source frames)
        with torch.no_grad():
            phases = torch.nn.functional.conv1d(signal, plan.kernel, stride=a)  # (c, b, blocks)
        offset = start - first_block * b
        planar = phases.transpose(1, 2).reshape(signal.shape[0], blocks * b)[:, offset:offset + frames].numpy()

    # Outside the whole-file result (before frame 0, past its last frame) the answer is silence,
    # not the filter's ringing into the padding.
    valid_end = resampled_length(total, source_rate, target_rate)
    if start < 0 or start + frames > valid_end:  # planar is this call's own buffer: edit in place
        planar[:, :min(max(-start, 0), frames)] = 0.0
        planar[:, max(valid_end - start, 0):] = 0.0
    return _finish_channels(planar, channels)


def _direct_resample(reader: _Reader, plan: _Plan, start: int, frames: int, channels: int) -> np.ndarray:
    """torchaudio's windowed sinc evaluated per output frame (for pairs of rates with huge kernels).

    Output frame ``n`` sits at source position ``n * a / b``; its taps are the source frames within
    ``width`` of it, weighted by ``sinc(pi * base * dt) * hann(dt) * base / a`` with
    ``dt = i / a - n / b`` (in units of reduced-rate periods) clamped to ``+-zeros / base``.
    """
    a, b, width = plan.down, plan.up, plan.width
    base = min(a, b) * plan.rolloff
    outputs = np.arange(start, start + frames, dtype=np.int64)
    first = (start * a) // b - width
    last = ((start + frames - 1) * a) // b + width + 1
    rows = _planar(*reader(first, last - first + 1), channels).T  # (count, c)
    centres = (outputs * a) // b
    taps = np.arange(-width, width + 2, dtype=np.int64)
    source_index = centres[:, None] + taps[None, :]  # (frames, taps) absolute source frames
    # i/a - n/b, exactly in integers, then scaled: t in units of base-frequency periods.
    t = (source_index * b - outputs[:, None] * a).astype(np.float64) / (a * b) * base
    t = np.clip(t, -plan.zeros, plan.zeros)
    window = np.cos(t * math.pi / plan.zeros / 2) ** 2
    weights = (np.sinc(t) * window * (base / a)).astype(np.float32)  # np.sinc(x) = sin(pi x)/(pi x)
    gathered = rows[source_index - first]  # (frames, taps, c)
    return np.einsum("ftc,ft->cf", gathered, weights, dtype=np.float32, optimize=False)


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
    cache: "DecodeCache | None" = None,
    format: str | None = None,  # noqa: A002 - AudioFileInfo.format
) -> np.ndarray:
    """Read ``frames`` frames of a file, starting at ``start``, at ``target_rate`` with ``channels``.

    Only the source frames the segment needs are read (seek + read), plus the resampling filter's
    context on each side. The result equals the same frames of the whole file resampled with
    ``torchaudio.functional.resample`` (default settings) and channel-mapped.

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
    extension = os.path.splitext(os.fspath(path))[1].lower()
    if needs_decode_cache(format) or (format is None and extension in _CACHED_EXTENSIONS):
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
            return _segment(reader, handle.frames, handle.samplerate, start, frames, target_rate, channels)
    return _read_cached(path, start, frames, target_rate, channels, rate, cache)


def _read_cached(
    path: str | os.PathLike[str],
    start: int,
    frames: int,
    target_rate: int,
    channels: int,
    source_rate: int | None,
    cache: "DecodeCache | None",
) -> np.ndarray:
    decoded, rate = (cache or default_decode_cache()).get(path, source_rate=source_rate)
    reader = _array_reader(decoded, path, check=True)
    return _segment(reader, decoded.shape[0], rate, start, frames, target_rate, channels)


def _decode_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """The whole file at its own rate, (frames, channels) float32, and that rate."""
    try:
        with soundfile.SoundFile(native_path(path)) as handle:
            return _decode_all(handle, path), handle.samplerate
    except (soundfile.LibsndfileError, OSError) as error:
        raise AudioReadError.unreadable(path, error) from None


def write_wav(path: str | os.PathLike[str], audio: Any, sample_rate: int) -> None:
    """Write (channels, samples) audio (array or tensor) as 16-bit WAV, NaN-free, clipped to [-1, 1]."""
    data = audio.detach().cpu().numpy() if hasattr(audio, "detach") else np.asarray(audio)
    data = np.clip(np.nan_to_num(data.astype(np.float32)), -1.0, 1.0)
    soundfile.write(path, data.T, sample_rate, subtype="PCM_16")


def read_file(
    path: str | os.PathLike[str],
    *,
    target_rate: int,
    channels: int,
) -> np.ndarray:
    """The whole file, resampled to ``target_rate`` and mapped to ``channels``: ``(channels, frames)``.

    For small in-memory caches and previews. ``frames`` is ``ceil(decoded * target / source)``,
    where ``decoded`` is what the file really holds (which can be less than its header claims). The
    result equals ``torchaudio.functional.resample`` of the decoded audio. MP3 files are decoded
    directly (no decode cache: the whole file is wanted once).

    Raises:
        AudioReadError: as :func:`read_segment`.
    """
    _validate(0, 0, target_rate, channels)
    data, rate = _decode_file(path)
    reader = _array_reader(data, path, check=True)
    length = resampled_length(data.shape[0], rate, int(target_rate))
    return _segment(reader, data.shape[0], rate, 0, length, int(target_rate), int(channels))


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
        block = np.empty((_BLOCK_FRAMES, handle.channels), dtype=np.float32)
        position = 0
        while True:
            got = _read_at(handle, position, block)
            position += got
            if got < _BLOCK_FRAMES:
                return position


def _decode_all(handle: soundfile.SoundFile, path: str | os.PathLike[str]) -> np.ndarray:
    """Every frame the file really holds, ``(frames, channels)`` float32 (the header may overstate).

    Raises:
        AudioReadError: not one frame decodes although the header promises some.
    """
    blocks = []
    position = 0
    while True:
        block = np.empty((_BLOCK_FRAMES, handle.channels), dtype=np.float32)
        got = _read_at(handle, position, block)
        if got:
            blocks.append(block[:got])
            position += got
        if got < _BLOCK_FRAMES:
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


# ----------------------------------------------------------------------------------------------
# The decode cache


def default_cache_directory() -> Path:
    """``$SDA_CACHE_DIR``, else ``$XDG_CACHE_HOME/sda/decoded``, else ``~/.cache/sda/decoded``."""
    explicit = os.environ.get("SDA_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "sda" / "decoded"


_default_caches: dict[tuple[Path, int], "DecodeCache"] = {}


def default_decode_cache() -> "DecodeCache":
    """The per-process cache at :func:`default_cache_directory` (looked up again on every call)."""
    directory = default_cache_directory()
    key = (directory, DEFAULT_CACHE_MAX_BYTES)
    cache = _default_caches.get(key)
    if cache is None:
        cache = _default_caches[key] = DecodeCache(directory)
    return cache


class DecodeCache:
    """A folder of whole-file decodes (float32 ``.npy``), bounded in size, least recently used out.

    Each entry is one source file decoded at its own rate, ``(frames, channels)`` float32, named
    ``<key>-<rate>.npy`` where ``key`` hashes the file's absolute path, size and modification time
    (so an edited file is decoded again; the stale entry ages out). Entries are written to a
    temporary file and renamed into place, so DataLoader workers racing on the same file are safe;
    they are read with ``np.load(mmap_mode="r")``, so a chunk touches only its own frames. Each use
    sets the entry's access time; after each new entry the least recently used entries are
    deleted until the folder holds at most ``max_bytes`` (an entry larger than the whole budget is
    kept while it is the newest).

    Only ``directory`` and ``max_bytes`` are state: the object pickles into DataLoader workers.

    Args:
        directory: the folder; default :func:`default_cache_directory`. Created when first written.
        max_bytes: the size limit of the folder's entries; default 2 GiB.
    """

    def __init__(
        self, directory: str | os.PathLike[str] | None = None, max_bytes: int = DEFAULT_CACHE_MAX_BYTES
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an integer >= 0, got {max_bytes!r}")
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_directory()
        self.max_bytes = int(max_bytes)

    def __repr__(self) -> str:
        return f"DecodeCache(directory={str(self.directory)!r}, max_bytes={self.max_bytes})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DecodeCache):
            return NotImplemented
        return (self.directory, self.max_bytes) == (other.directory, other.max_bytes)

    def __hash__(self) -> int:
        return hash((self.directory, self.max_bytes))

    # -- keys and entries

    @staticmethod
    def key(path: str | os.PathLike[str]) -> str:
        """The entry key of a file: a hash of its absolute path, size and ``st_mtime_ns``."""
        absolute = os.path.abspath(os.fspath(path))
        try:
            info = os.stat(absolute)
        except OSError as error:
            raise AudioReadError.unreadable(path, error) from None
        text = f"{absolute}\0{info.st_size}\0{info.st_mtime_ns}"
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]

    def entry_path(self, key: str, rate: int) -> Path:
        """Where the entry of ``key`` decoded at ``rate`` lives."""
        return self.directory / f"{key}-{int(rate)}.npy"

    def entries(self) -> list[Path]:
        """Every entry in the folder (files named like this cache's entries; nothing else)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return [self.directory / name for name in names if _is_entry_name(name)]

    def total_bytes(self) -> int:
        """Bytes the folder's entries take."""
        total = 0
        for entry in self.entries():
            try:
                total += entry.stat().st_size
            except OSError:
                pass
        return total

    def clear(self) -> int:
        """Delete every entry (and leftover temporary file); returns how many entries were deleted."""
        removed = 0
        for entry in self.entries():
            try:
                entry.unlink()
                removed += 1
            except OSError:
                pass
        self._remove_stale_temporaries(max_age=0.0)
        return removed

    # -- use

    def get(self, path: str | os.PathLike[str], *, source_rate: int | None = None) -> tuple[np.ndarray, int]:
        """The decoded file as a read-only memory map ``(frames, channels)`` float32, and its rate.

        Decodes the file (once) when it has no entry yet. ``source_rate`` (from a scan) finds the
        entry without opening the file; without it the file's header is read.

        Raises:
            AudioReadError: the file cannot be opened or decoded.
        """
        key = self.key(path)
        if source_rate is None:
            try:
                source_rate = soundfile.info(native_path(path)).samplerate
            except (soundfile.LibsndfileError, OSError) as error:
                raise AudioReadError.unreadable(path, error) from None
        entry = self.entry_path(key, source_rate)
        found = self._load(entry)
        if found is not None:
            return found, int(source_rate)
        memory = _memory_fallback.get(entry)
        if memory is not None:
            return memory, int(source_rate)
        return self._decode_into(path, key)

    def _load(self, entry: Path) -> np.ndarray | None:
        try:
            array = np.load(entry, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # a damaged entry (disk full, crash mid-write elsewhere)
            _unlink_quietly(entry)
            return None
        if array.dtype != np.float32 or array.ndim != 2:
            _unlink_quietly(entry)
            return None
        try:
            os.utime(entry)  # last use = now (atime and mtime), whatever the mount's atime policy
        except OSError:
            pass
        return array

    def _decode_into(self, path: str | os.PathLike[str], key: str) -> tuple[np.ndarray, int]:
        data, rate = _decode_file(path)
        entry = self.entry_path(key, rate)
        try:  # atomic, so DataLoader workers racing on one file never read a partial entry
            write_atomic(entry, lambda stream: np.save(stream, data, allow_pickle=False))
        except OSError as error:
            _warn_unwritable(self.directory, error)
            _memory_fallback.put(entry, data, self.max_bytes)
            return data, rate
        self.evict(keep=(entry,))
        loaded = self._load(entry)
        return (loaded if loaded is not None else data), rate

    def evict(self, keep: tuple[Path, ...] = ()) -> int:
        """Delete least recently used entries until the folder holds at most ``max_bytes``.

        Entries in ``keep`` are never deleted. Returns how many entries were deleted.
        """
        stats = []
        for entry in self.entries():
            try:
                info = entry.stat()
            except OSError:
                continue
            stats.append((info.st_atime_ns, entry, info.st_size))
        total = sum(size for _, _, size in stats)
        removed = 0
        for _, entry, size in sorted(stats, key=lambda item: item[0]):
            if total <= self.max_bytes:
                break
            if entry in keep:
                continue
            if _unlink_quietly(entry):
                total -= size
                removed += 1
        self._remove_stale_temporaries(max_age=3600.0)
        return removed

    def _remove_stale_temporaries(self, max_age: float) -> None:
        """Temporary files of writers that died (an hour old: no live writer takes that long)."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        now = time.time()
        for name in names:
            if name.startswith(".") and name.endswith(".tmp") and ".npy." in name:
                candidate = self.directory / name
                try:
                    if now - candidate.stat().st_mtime >= max_age:
                        candidate.unlink()
                except OSError:
                    pass


def _is_entry_name(name: str) -> bool:
    stem, dot, extension = name.rpartition(".")
    if extension != "npy" or not dot:
        return False
    key, dash, rate = stem.partition("-")
    return bool(dash) and len(key) == 32 and rate.isdigit() and all(c in "0123456789abcdef" for c in key)


def _unlink_quietly(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except OSError:  # already gone (another worker evicted it), or open elsewhere on Windows
        return False


class _MemoryFallback:
    """Decodes kept in this process's memory when the cache folder cannot be written (LRU)."""

    def __init__(self) -> None:
        self._entries: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Path) -> np.ndarray | None:
        with self._lock:
            array = self._entries.get(key)
            if array is not None:
                self._entries.move_to_end(key)
            return array

    def put(self, key: Path, array: np.ndarray, max_bytes: int) -> None:
        with self._lock:
            self._entries[key] = array
            self._entries.move_to_end(key)
            total = sum(value.nbytes for value in self._entries.values())
            while total > max_bytes and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                total -= dropped.nbytes


_memory_fallback = _MemoryFallback()
_warned_directories: set[Path] = set()


def _warn_unwritable(directory: Path, error: OSError) -> None:
    if directory not in _warned_directories:
        _warned_directories.add(directory)
        warnings.warn(
            f"cannot write the decoded-audio cache in '{directory}' ({error.strerror or error}); "
            "keeping decoded MP3 files in memory instead. Set SDA_CACHE_DIR to a writable folder.",
            RuntimeWarning,
            stacklevel=4,
        )
