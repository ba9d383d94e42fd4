"""Content checks of a scanned dataset: clipping, DC offset, silence, NaN/Inf, truncation.

The header scan (:mod:`sda_core.data.scan`) decodes nothing, so it cannot see what is *in* the files.
This module runs after it: :func:`analyse_file` streams one file through libsndfile in blocks of
:data:`BLOCK_FRAMES` frames (never the whole file at once, so a long recording costs one block of
memory) and measures its peak, clipping, DC offset, RMS level, non-finite samples and how many
frames are really readable. :func:`analyse_dataset` does that for every usable file (in a small
thread pool: libsndfile is called through cffi, which releases the GIL, and numpy's reductions
release it too), adds the chunk counts the dataset will build from the headers
(:func:`sda_core.data.chunks.file_chunk_count`), the seconds of training audio, and a list of
:class:`DatasetWarning` for the report of ``sda scan``.

Warnings (``DatasetWarning.code``):

* ``little_audio``: under :data:`LITTLE_AUDIO_SECONDS` of usable audio in total.
* ``mixed_sample_rates``: files at more than one sample rate (all are resampled to the project rate).
* ``low_sample_rate``: files below the project rate (upsampled: nothing above their Nyquist).
* ``clipping``: more than :data:`CLIPPING_FRACTION` of the samples at full scale.
* ``dc_offset``: a channel whose mean is further than :data:`DC_OFFSET_LIMIT` from zero.
* ``near_silent``: RMS below :data:`SILENT_RMS_DBFS` or peak below :data:`SILENT_PEAK_DBFS`.
* ``non_finite``: NaN or infinite samples (training skips such files).
* ``truncated``: fewer frames readable than the header claims (used up to where the data ends).
* ``read_error``: the file could not be decoded at all any more.

Each message is one sentence naming the files (the first few, then "and N more").
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs
import numpy as np
import soundfile

from sda_core.audio.decoding import SALVAGE_FRAMES, surviving_blocks
from sda_core.audio.formats import frame_count_tolerance
from sda_core.audio.paths import native_path
from sda_core.config import TrainingConfig
from sda_core.config.dataset import AudioFileInfo, DatasetSummary
from sda_core.data.chunks import chunk_frames, file_chunk_count
from sda_core.serialization import from_stored, to_jsonable

#: Frames decoded per read; a file is never held in memory whole.
BLOCK_FRAMES = 65536
#: Frames per read when reading on after a decoder error, to locate where the damage starts.
RETRY_FRAMES = SALVAGE_FRAMES
#: A sample at or above this magnitude counts as clipped (integer formats: their full scale, if lower).
CLIP_LEVEL = 0.999
#: A file clips when more than this fraction of its samples are clipped.
CLIPPING_FRACTION = 0.001
#: A channel mean further than this from zero is a DC offset.
DC_OFFSET_LIMIT = 0.05
#: A file whose RMS level is below this is near-silent.
SILENT_RMS_DBFS = -50.0
#: A file whose peak is below this is near-silent.
SILENT_PEAK_DBFS = -40.0
#: Less usable audio than this in total triggers the ``little_audio`` warning.
LITTLE_AUDIO_SECONDS = 30.0
#: Levels are floored here, so that digital silence stays a finite (JSON-safe) number.
FLOOR_DBFS = -120.0
#: How many files a warning names before "and N more".
NAMED_FILES = 3
#: Default upper bound of analysis threads.
MAX_WORKERS = 8

# Largest decoded magnitude of integer encodings whose full scale is below CLIP_LEVEL.
_FULL_SCALE = {"PCM_S8": 127 / 128, "PCM_U8": 127 / 128, "ULAW": 32124 / 32768, "ALAW": 32256 / 32768}
_BYTES_PER_SAMPLE = {
    "PCM_S8": 1,
    "PCM_U8": 1,
    "PCM_16": 2,
    "PCM_24": 3,
    "PCM_32": 4,
    "FLOAT": 4,
    "DOUBLE": 8,
    "ULAW": 1,
    "ALAW": 1,
}
# libsndfile logs "data : 88200 (should be 44078)" when a chunk claims more bytes than the file holds.
_SHOULD_BE = re.compile(r"^\s*(?P<chunk>[A-Za-z0-9 ]+?)\s*:\s*(?P<claimed>\d+)\s*\(should be (?P<actual>\d+)\)")
_DATA_CHUNKS = frozenset({"data", "SSND", "Data Size"})
# Sizes streaming recorders write before they know the length: not a truncation.
_PLACEHOLDER_SIZE = 0x7FFF0000


class _Json:
    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (finite numbers only); ``from_dict`` of it compares equal."""
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Rebuild the value from :meth:`to_dict` output; damaged data raises RunDataError."""
        return from_stored(cls, data)


class WarningCode:
    """The ``code`` of a :class:`DatasetWarning`."""

    LITTLE_AUDIO = "little_audio"
    MIXED_SAMPLE_RATES = "mixed_sample_rates"
    LOW_SAMPLE_RATE = "low_sample_rate"
    CLIPPING = "clipping"
    DC_OFFSET = "dc_offset"
    NEAR_SILENT = "near_silent"
    NON_FINITE = "non_finite"
    TRUNCATED = "truncated"
    READ_ERROR = "read_error"

    ALL = (
        LITTLE_AUDIO,
        MIXED_SAMPLE_RATES,
        LOW_SAMPLE_RATE,
        CLIPPING,
        DC_OFFSET,
        NEAR_SILENT,
        NON_FINITE,
        TRUNCATED,
        READ_ERROR,
    )


@attrs.frozen(kw_only=True)
class FileAnalysis(_Json):
    """What streaming one file through the decoder found.

    Attributes:
        path: POSIX path relative to the scanned folder.
        frames_expected: frames the file claims: its header's count, or more when a chunk of the
            container claims more data than the file holds (a file cut short).
        frames_read: frames actually decoded before the data (or the decoder) ended.
        peak: largest finite sample magnitude (1.0 is full scale).
        clipped_fraction: share of samples at full scale (``|x| >= 0.999``, or the format's own
            full scale for 8-bit and mu/A-law files).
        dc_offset: the channel mean furthest from zero (signed).
        rms_dbfs: RMS level over all finite samples in dBFS, floored at :data:`FLOOR_DBFS`.
        non_finite: count of NaN and infinite samples.
        error: libsndfile's message when decoding failed (midway or at the start), else None.
    """

    path: str
    frames_expected: int
    frames_read: int
    peak: float = 0.0
    clipped_fraction: float = 0.0
    dc_offset: float = 0.0
    rms_dbfs: float = FLOOR_DBFS
    non_finite: int = 0
    error: str | None = None

    @property
    def peak_dbfs(self) -> float:
        """Peak level in dBFS, floored at :data:`FLOOR_DBFS`."""
        return to_dbfs(self.peak)

    @property
    def truncated(self) -> bool:
        """Fewer frames were readable than the file claims."""
        return self.frames_read < self.frames_expected

    @property
    def unreadable(self) -> bool:
        """Decoding failed before a single frame came out."""
        return self.error is not None and self.frames_read == 0

    @property
    def clipping(self) -> bool:
        return self.clipped_fraction > CLIPPING_FRACTION

    @property
    def has_dc_offset(self) -> bool:
        return abs(self.dc_offset) > DC_OFFSET_LIMIT

    @property
    def near_silent(self) -> bool:
        if self.frames_read == 0:
            return False
        return self.rms_dbfs < SILENT_RMS_DBFS or self.peak_dbfs < SILENT_PEAK_DBFS

    @property
    def flags(self) -> tuple[str, ...]:
        """The warning codes this file triggers, in :attr:`WarningCode.ALL` order."""
        found = []
        if self.clipping:
            found.append(WarningCode.CLIPPING)
        if self.has_dc_offset:
            found.append(WarningCode.DC_OFFSET)
        if self.near_silent:
            found.append(WarningCode.NEAR_SILENT)
        if self.non_finite:
            found.append(WarningCode.NON_FINITE)
        if self.unreadable:
            found.append(WarningCode.READ_ERROR)
        elif self.truncated:
            found.append(WarningCode.TRUNCATED)
        return tuple(found)


@attrs.frozen(kw_only=True)
class DatasetWarning(_Json):
    """One finding of the pre-flight report.

    Attributes:
        code: one of :attr:`WarningCode.ALL`.
        message: one sentence for people, naming the first few files.
        paths: every file concerned (relative paths), empty for dataset-wide findings.
    """

    code: str
    message: str
    paths: tuple[str, ...] = attrs.field(converter=tuple, default=())


@attrs.frozen(kw_only=True)
class DatasetAnalysis(_Json):
    """Chunk counts, training seconds and content findings for one scanned dataset.

    Attributes:
        sample_rate: the project sample rate the chunk counts are at.
        chunk_seconds: length of one training chunk in seconds.
        chunk_counts: relative path -> chunks that file yields (from its header, as the dataset's
            chunk index counts them).
        total_duration: seconds of usable audio (header lengths).
        chunk_count: chunks training will use: every file's, except files training skips
            (non-finite samples).
        training_seconds: ``chunk_count * chunk_seconds``.
        content_checked: whether the files were decoded (False with ``sda scan --no-analysis``).
        files: the per-file analyses, in path order (empty when the content was not checked).
        warnings: the findings, dataset-wide ones first.
    """

    sample_rate: int
    chunk_seconds: float
    chunk_counts: dict[str, int] = attrs.field(factory=dict)
    total_duration: float = 0.0
    chunk_count: int = 0
    training_seconds: float = 0.0
    content_checked: bool = False
    files: tuple[FileAnalysis, ...] = attrs.field(converter=tuple, default=())
    warnings: tuple[DatasetWarning, ...] = attrs.field(converter=tuple, default=())

    def file(self, path: str) -> FileAnalysis | None:
        """The analysis of one file, or None when the content was not checked."""
        for analysis in self.files:
            if analysis.path == path:
                return analysis
        return None

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes of :attr:`warnings`, in order."""
        return tuple(warning.code for warning in self.warnings)


# -- one file --------------------------------------------------------------------------------


def to_dbfs(level: float) -> float:
    """A linear level as dBFS, floored at :data:`FLOOR_DBFS` (silence stays finite)."""
    if level <= 0 or not math.isfinite(level):
        return FLOOR_DBFS
    return max(FLOOR_DBFS, 20.0 * math.log10(level))


def clip_level(subtype: str) -> float:
    """Magnitude at or above which a decoded sample of this encoding counts as clipped."""
    full_scale = _FULL_SCALE.get(subtype)
    if full_scale is None:
        return CLIP_LEVEL
    return min(CLIP_LEVEL, full_scale - 1e-6)


def analyse_file(root: str | os.PathLike[str], info: AudioFileInfo, block_frames: int = BLOCK_FRAMES) -> FileAnalysis:
    """Stream one file in blocks of ``block_frames`` and measure its content.

    Never raises for a bad file: a decoder error is recorded in ``error``. A failed read loses
    the whole block it was decoding, so after one the rest is re-read in blocks of
    :data:`RETRY_FRAMES` from where the last good block ended, to find out (closely) how much
    audio is usable before the damage.
    """
    path = os.path.join(os.fspath(root), *info.path.split("/"))
    stats = _Stats(info.channels, clip_level(info.subtype))
    expected = info.frames
    error: str | None = None
    try:
        with soundfile.SoundFile(native_path(path)) as audio:
            expected = max(expected, audio.frames, _claimed_frames(audio, info))
            if audio.channels != info.channels:
                stats = _Stats(audio.channels, stats.clip)
            _stream(audio, stats, block_frames)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a finding, not a crash
        error = _error_message(exc)
        if stats.frames or block_frames > RETRY_FRAMES:
            _retry(path, stats, min(block_frames, RETRY_FRAMES))
    if error is None and expected - frame_count_tolerance(info.format) <= stats.frames < expected:
        expected = stats.frames  # an MPEG length estimate, not missing audio
    return stats.result(info.path, expected, error)


def _stream(audio: soundfile.SoundFile, stats: _Stats, block_frames: int) -> None:
    """Read ``audio`` from its current position to the end, one block at a time, into ``stats``."""
    length = max(1, min(block_frames, audio.frames or block_frames))
    buffer = np.empty((length, audio.channels), dtype=np.float32)
    while True:
        block = audio.read(length, out=buffer)
        if len(block):
            stats.add(block)
        if len(block) < length:
            return


def _retry(path: str, stats: _Stats, block_frames: int) -> None:
    """After a failed read: read on from what ``stats`` holds, through what survives of the file."""
    for block in surviving_blocks(path, stats.frames, block_frames=block_frames, channels=len(stats.sums)):
        stats.add(block)


class _Stats:
    """Running sums over the blocks of one file."""

    def __init__(self, channels: int, clip: float) -> None:
        self.clip = clip
        self.frames = 0
        self.peak = 0.0
        self.clipped = 0
        self.non_finite = 0
        self.sums = np.zeros(channels, dtype=np.float64)
        self.finite = np.zeros(channels, dtype=np.int64)
        self.squares = 0.0

    def add(self, block: np.ndarray) -> None:
        """Fold one block (frames x channels, float32, our own read buffer) into the sums.

        Cheap reductions only: one dot product (which also reveals NaN/Inf), max and min; the
        clipped samples are counted only in blocks that reach the clip level, and per-channel
        sums go through BLAS (a strided numpy sum over interleaved channels is 20x slower).
        """
        frames = len(block)
        self.frames += frames
        flat = block.reshape(-1)
        squares = float(np.dot(flat, flat))
        if math.isfinite(squares):
            self.finite += frames
            self.sums += _ones(frames) @ block
        else:  # NaN/Inf somewhere, or finite values so large that float32 sums overflow
            bad = ~np.isfinite(block)
            count = int(bad.sum())
            self.non_finite += count
            self.finite += frames - bad.sum(axis=0)
            if count:
                block[bad] = 0.0
            wide = block.astype(np.float64)
            squares = float(np.dot(wide.reshape(-1), wide.reshape(-1)))
            self.sums += wide.sum(axis=0)
        self.squares += squares
        peak = max(float(flat.max()), -float(flat.min()))
        self.peak = max(self.peak, peak)
        if peak >= self.clip:
            self.clipped += int(np.count_nonzero(np.abs(flat) >= self.clip))

    def result(self, path: str, expected: int, error: str | None) -> FileAnalysis:
        samples = int(self.finite.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(self.finite > 0, self.sums / np.maximum(self.finite, 1), 0.0)
        dc = float(means[np.argmax(np.abs(means))]) if len(means) else 0.0
        rms = math.sqrt(self.squares / samples) if samples else 0.0
        total = samples + self.non_finite
        return FileAnalysis(
            path=path,
            frames_expected=expected,
            frames_read=self.frames,
            peak=self.peak,
            clipped_fraction=self.clipped / total if total else 0.0,
            dc_offset=dc,
            rms_dbfs=to_dbfs(rms),
            non_finite=self.non_finite,
            error=error,
        )


@functools.lru_cache(maxsize=8)
def _ones(length: int) -> np.ndarray:
    """A read-only row of ones: ``_ones(n) @ block`` sums each channel of a block of n frames."""
    ones = np.ones(length, dtype=np.float32)
    ones.flags.writeable = False
    return ones


def _claimed_frames(audio: soundfile.SoundFile, info: AudioFileInfo) -> int:
    """Frames the container claims when a chunk says it holds more data than the file has.

    libsndfile quietly shortens the frame count of a WAV/AIFF/AU/W64 file that was cut short
    and logs the chunk's claimed size ("data : 88200 (should be 44078)"); that log is the only
    trace of the missing audio.
    """
    try:
        log = audio.extra_info
    except Exception:  # noqa: BLE001 - the log is a nicety
        return 0
    data_missing = container_missing = 0
    for line in log.splitlines():
        match = _SHOULD_BE.match(line)
        if not match:
            continue
        claimed, actual = int(match["claimed"]), int(match["actual"])
        if claimed <= actual or claimed >= _PLACEHOLDER_SIZE:
            continue
        if match["chunk"] in _DATA_CHUNKS:
            data_missing = max(data_missing, claimed - actual)
        else:
            container_missing = max(container_missing, claimed - actual)
    missing = data_missing if data_missing else (container_missing if container_missing > 16 else 0)
    if not missing or audio.frames <= 0:
        return 0
    sample_bytes = _BYTES_PER_SAMPLE.get(info.subtype)
    frame_bytes = sample_bytes * audio.channels if sample_bytes else info.size_bytes / audio.frames
    return audio.frames + int(missing // frame_bytes)


def _error_message(exc: Exception) -> str:
    message = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
    return str(message).strip()


# -- the dataset -----------------------------------------------------------------------------


def default_workers(file_count: int) -> int:
    """Analysis threads: one per CPU, at most :data:`MAX_WORKERS`, at most one per file."""
    return max(1, min(file_count, os.cpu_count() or 1, MAX_WORKERS))


def analyse_files(
    root: str | os.PathLike[str],
    files: Sequence[AudioFileInfo],
    workers: int | None = None,
    block_frames: int = BLOCK_FRAMES,
) -> tuple[FileAnalysis, ...]:
    """:func:`analyse_file` for every file, in the given order, over ``workers`` threads."""
    count = default_workers(len(files)) if workers is None else max(1, min(workers, len(files) or 1))
    if count <= 1 or len(files) <= 1:
        return tuple(analyse_file(root, info, block_frames) for info in files)
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="sda-analyse") as pool:
        return tuple(pool.map(lambda info: analyse_file(root, info, block_frames), files))


def analyse_dataset(
    summary: DatasetSummary,
    config: TrainingConfig,
    workers: int | None = None,
    content: bool = True,
    block_frames: int = BLOCK_FRAMES,
) -> DatasetAnalysis:
    """Chunk counts, training seconds and warnings for a scanned dataset.

    Args:
        summary: the header scan.
        config: the resolved config (project sample rate and chunk length).
        workers: analysis threads; None sizes them to the machine (:func:`default_workers`).
        content: decode the files and check their content; False keeps to header facts
            (chunk counts, sample-rate and little-audio warnings), which costs no decoding.
        block_frames: frames decoded per read.
    """
    counts = {info.path: file_chunk_count(info, config) for info in summary.files}
    analyses = analyse_files(summary.root, summary.files, workers, block_frames) if content else ()
    skipped_by_training = {analysis.path for analysis in analyses if analysis.non_finite}
    chunks = sum(count for path, count in counts.items() if path not in skipped_by_training)
    chunk_seconds = chunk_frames(config) / config.sample_rate
    return DatasetAnalysis(
        sample_rate=config.sample_rate,
        chunk_seconds=chunk_seconds,
        chunk_counts=counts,
        total_duration=summary.total_duration,
        chunk_count=chunks,
        training_seconds=chunks * chunk_seconds,
        content_checked=content,
        files=analyses,
        warnings=dataset_warnings(summary, config, analyses, chunks * chunk_seconds),
    )


def dataset_warnings(
    summary: DatasetSummary,
    config: TrainingConfig,
    analyses: Iterable[FileAnalysis] = (),
    training_seconds: float | None = None,
) -> list[DatasetWarning]:
    """The findings for a dataset: header ones first, then one per content problem found."""
    found: list[DatasetWarning] = []
    if not summary.files:
        return found
    rate = config.sample_rate
    total = summary.total_duration
    if total < LITTLE_AUDIO_SECONDS:
        if training_seconds is None:
            training_seconds = sum(file_chunk_count(info, config) for info in summary.files) * (
                chunk_frames(config) / rate
            )
        found.append(
            DatasetWarning(
                code=WarningCode.LITTLE_AUDIO,
                message=(
                    f"Only {total:.1f} s of usable audio ({training_seconds:.0f} s of training chunks), under "
                    f"{LITTLE_AUDIO_SECONDS:.0f} s: expect the model to memorise these sounds rather than generalise "
                    "from them, so previews will echo the recordings; more audio helps most."
                ),
            )
        )
    rates = summary.sample_rates
    if len(rates) > 1:
        listed = ", ".join(f"{value} Hz x{count}" for value, count in rates.items())
        other = [info for info in summary.files if info.sample_rate != rate]
        named = _name([(info.path, f"{info.sample_rate} Hz") for info in other])
        found.append(
            DatasetWarning(
                code=WarningCode.MIXED_SAMPLE_RATES,
                message=(
                    f"Files come at {len(rates)} sample rates ({listed}); everything is resampled to {rate} Hz, "
                    f"including {named}."
                ),
                paths=[info.path for info in other],
            )
        )
    low = [info for info in summary.files if info.sample_rate < rate]
    if low:
        found.append(
            DatasetWarning(
                code=WarningCode.LOW_SAMPLE_RATE,
                message=(
                    f"{_count(low, ('is', 'are'))} below the project rate of {rate} Hz and upsampled, so they hold nothing above "
                    f"half their own rate: {_name([(i.path, f'{i.sample_rate} Hz') for i in low])}."
                ),
                paths=[info.path for info in low],
            )
        )
    analyses = list(analyses)

    def add(
        code: str, chosen: list[FileAnalysis], verbs: tuple[str, str], text: str, detail: Callable[[FileAnalysis], str]
    ) -> None:
        if chosen:
            named = _name([(a.path, detail(a)) for a in chosen])
            single = len(chosen) == 1
            message = text.format(
                files=_count(chosen, verbs), named=named, it="it" if single else "each", them="it" if single else "them"
            )
            found.append(DatasetWarning(code=code, message=message, paths=[a.path for a in chosen]))

    add(
        WarningCode.CLIPPING,
        [a for a in analyses if a.clipping],
        ("clips", "clip"),
        f"{{files}} (over {CLIPPING_FRACTION:.1%} of samples at full scale): {{named}}; "
        "the model will learn the distortion.",
        lambda a: f"{a.clipped_fraction:.1%}",
    )
    add(
        WarningCode.DC_OFFSET,
        [a for a in analyses if a.has_dc_offset],
        ("has", "have"),
        f"{{files}} a DC offset (a channel mean beyond +/-{DC_OFFSET_LIMIT}): {{named}}; "
        "a high-pass filter before training removes it.",
        lambda a: f"{a.dc_offset:+.3f}",
    )
    add(
        WarningCode.NEAR_SILENT,
        [a for a in analyses if a.near_silent],
        ("is", "are"),
        f"{{files}} near-silent (RMS below {SILENT_RMS_DBFS:.0f} dBFS or peak below {SILENT_PEAK_DBFS:.0f} dBFS): "
        "{named}; they give the model little to learn from.",
        lambda a: f"RMS {a.rms_dbfs:.0f} dBFS, peak {a.peak_dbfs:.0f} dBFS",
    )
    add(
        WarningCode.NON_FINITE,
        [a for a in analyses if a.non_finite],
        ("holds", "hold"),
        "{files} NaN or infinite samples: {named}; training skips them.",
        lambda a: f"{a.non_finite} samples",
    )
    add(
        WarningCode.TRUNCATED,
        [a for a in analyses if a.truncated and not a.unreadable],
        ("is", "are"),
        "{files} shorter than the header claims: {named}; {it} is used up to where the data ends.",
        lambda a: _truncation(a, summary),
    )
    add(
        WarningCode.READ_ERROR,
        [a for a in analyses if a.unreadable],
        ("fails", "fail"),
        "{files} to decode: {named}; remove or re-export {them}, or training will fail on {them}.",
        lambda a: f"libsndfile: {a.error}",
    )
    return found


def _truncation(analysis: FileAnalysis, summary: DatasetSummary) -> str:
    rate = summary.file(analysis.path).sample_rate
    text = f"{analysis.frames_read / rate:.2f} s of {analysis.frames_expected / rate:.2f} s readable"
    if analysis.error:
        text += f", libsndfile: {analysis.error}"
    return text


def _count(items: Sequence[object], verbs: tuple[str, str]) -> str:
    """``"1 file is"`` / ``"3 files are"``: the count and the verb in agreement."""
    if len(items) == 1:
        return f"1 file {verbs[0]}"
    return f"{len(items)} files {verbs[1]}"


def _name(entries: Sequence[tuple[str, str]]) -> str:
    """``"a.wav (x), b.wav (y), c.wav (z) and 4 more"``."""
    shown = [f"{path} ({detail})" if detail else path for path, detail in entries[:NAMED_FILES]]
    hidden = len(entries) - len(shown)
    if hidden:
        return ", ".join(shown) + f" and {hidden} more"
    if len(shown) > 1:
        return ", ".join(shown[:-1]) + " and " + shown[-1]
    return shown[0]
