"""Reading one 1-second training item: ``sda_core.audio.reading.read_segment`` versus bare soundfile.

For each of WAV (16-bit), FLAC (16-bit) and Ogg Vorbis, a one-minute 44.1 kHz stereo file is
synthesised once per run, and the same list of random 1-second offsets is read by:

* measured: ``read_segment(path, start, 44100, target_rate=44100, channels=2)`` (same rate, no
  augmentation): open, seek, read, NaN/Inf check where the encoding can hold them, planar
  ``(channels, frames)`` float32 C-contiguous output.
* baseline ``soundfile.read``: ``soundfile.read(path, start=start, frames=44100, dtype="float32")``:
  the same frames, interleaved ``(frames, channels)``; the floor of any chunk read. Target: at
  most 1.5x.
* baseline whole decode: ``soundfile.read(path, dtype="float32")``, decoding the whole one-minute
  file (what a loader that does not seek pays per item). Target: ``read_segment`` per item at
  least 20x faster, i.e. ratio ``median(read_segment per item) / median(whole decode)`` at most
  0.05 (the table's targets are upper bounds).

The three variants of a format run interleaved in one process (see ``timing.py``); one sample of
the item variants reads ``ITEMS`` items. An informational row shows the same for a resampled read
(48 kHz file to 22.05 kHz) and for MP3 through a warm :class:`~sda_core.audio.decode_cache.DecodeCache`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile

from benchmarks.timing import Comparison, Result, compare, describe, format_seconds
from sda_core.audio.decode_cache import DecodeCache
from sda_core.audio.reading import read_segment

NAME = "read"
TARGET = 1.5
WHOLE_FILE_SPEEDUP = 20.0
RATE = 44100
CHANNELS = 2
SECONDS = 60
ITEMS = 20  # items per timed sample
_BLOCK = 8192  # one big Ogg write crashes libsndfile 1.2.2: write in blocks

FORMATS = (  # (label, extension, soundfile format, subtype)
    ("WAV", "wav", "WAV", "PCM_16"),
    ("FLAC", "flac", "FLAC", "PCM_16"),
    ("Ogg", "ogg", "OGG", "VORBIS"),
)


def synthesise(path: Path, container: str, subtype: str | None, rate: int = RATE, seed: int = 7) -> Path:
    """A one-minute stereo file of decaying tones over noise, written in blocks."""
    rng = np.random.default_rng(seed)
    frames = rate * SECONDS
    t = np.arange(frames, dtype=np.float64) / rate
    tone = np.sin(2 * np.pi * 220.0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.25 * t))
    data = 0.3 * tone[:, None] + 0.05 * rng.standard_normal((frames, CHANNELS))
    data = data.astype(np.float32)
    with soundfile.SoundFile(path, "w", rate, CHANNELS, subtype=subtype, format=container) as out:
        for start in range(0, frames, _BLOCK):
            out.write(data[start : start + _BLOCK])
    return path


def offsets(count: int, rate: int = RATE, seed: int = 99) -> list[int]:
    """Random 1-second offsets inside a one-minute file (the same for every variant)."""
    rng = np.random.default_rng(seed)
    return [int(value) for value in rng.integers(0, rate * (SECONDS - 1), size=count)]


def make_variants(
    path: Path, starts: list[int], *, rate: int = RATE, target_rate: int = RATE, cache: DecodeCache | None = None
):
    """The callables timed for one file: ``read_segment``, bare ``soundfile.read``, whole decode."""
    name = str(path)
    read = soundfile.read
    frames = target_rate
    bare_frames = rate

    def sda_items() -> None:
        for start in starts:
            read_segment(name, start, frames, target_rate=target_rate, channels=CHANNELS, cache=cache)

    def bare_items() -> None:
        for start in starts:
            read(name, start=start, frames=bare_frames, dtype="float32")

    def whole() -> None:
        read(name, dtype="float32")

    return sda_items, bare_items, whole


def check_same_frames(path: Path, starts: list[int]) -> None:
    """The measured and the baseline variant return the same audio (else the ratio means nothing)."""
    for start in starts[:3]:
        ours = read_segment(str(path), start, RATE, target_rate=RATE, channels=CHANNELS)
        bare, _ = soundfile.read(str(path), start=start, frames=RATE, dtype="float32")
        if ours.shape != (CHANNELS, RATE) or not np.array_equal(ours, bare.T):
            raise AssertionError(f"read_segment and soundfile.read disagree on {path.name} at frame {start}")


def _whole_detail(comparison: Comparison) -> str:
    per_item = comparison.median("read_segment") / ITEMS
    whole = comparison.median("whole decode")
    return (
        f"read_segment {format_seconds(per_item)}/item, whole decode {format_seconds(whole)}; "
        f"{whole / per_item:.0f}x faster, n={len(comparison.samples['whole decode'])}"
    )


def run(quick: bool = False) -> list[Result]:
    repeats = 7 if quick else 21
    starts = offsets(ITEMS)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="sda-bench-read-") as temp:
        folder = Path(temp)
        for label, extension, container, subtype in FORMATS:
            path = synthesise(folder / f"minute.{extension}", container, subtype)
            check_same_frames(path, starts)
            sda_items, bare_items, whole = make_variants(path, starts)
            comparison = compare(
                {"read_segment": sda_items, "soundfile.read": bare_items, "whole decode": whole},
                repeats=repeats,
                warmup=2,
            )
            ratio = comparison.ratio("read_segment", "soundfile.read")
            detail = describe(comparison, "read_segment", "soundfile.read", per=ITEMS, unit="item")
            name = f"read: 1 s of a 1-min {label} vs soundfile.read(start, frames)"
            results.append(Result(name, ratio, TARGET, detail))
            per_item_ratio = comparison.median("read_segment") / ITEMS / comparison.median("whole decode")
            results.append(
                Result(
                    f"read: 1 s of a 1-min {label} vs whole-file decode (>= {WHOLE_FILE_SPEEDUP:.0f}x faster)",
                    per_item_ratio,
                    1.0 / WHOLE_FILE_SPEEDUP,
                    _whole_detail(comparison),
                )
            )

        # Informational: a resampled read (48 kHz -> 22.05 kHz) against the bare read of its source frames.
        path = synthesise(folder / "minute48k.wav", "WAV", "PCM_16", rate=48000)
        sda_items, bare_items, _ = make_variants(path, offsets(ITEMS, rate=22050), rate=48000, target_rate=22050)
        comparison = compare({"read_segment": sda_items, "soundfile.read": bare_items}, repeats=repeats, warmup=2)
        results.append(
            Result(
                "read: 1 s of a 1-min 48 kHz WAV resampled to 22.05 kHz vs soundfile.read (info)",
                comparison.ratio("read_segment", "soundfile.read"),
                None,
                describe(comparison, "read_segment", "soundfile.read", per=ITEMS, unit="item"),
            )
        )

        # Informational: MP3 through a warm decode cache against a bare MP3 seek + read.
        try:
            path = synthesise(folder / "minute.mp3", "MP3", "MPEG_LAYER_III")
        except (soundfile.LibsndfileError, ValueError, TypeError):
            path = None  # this libsndfile cannot write MP3: no row
        if path is not None:
            cache = DecodeCache(folder / "decoded")
            sda_items, bare_items, _ = make_variants(path, starts, cache=cache)
            comparison = compare(
                {"read_segment": sda_items, "soundfile.read": bare_items}, repeats=max(3, repeats // 4), warmup=1
            )
            results.append(
                Result(
                    "read: 1 s of a 1-min MP3, warm decode cache vs soundfile.read (info)",
                    comparison.ratio("read_segment", "soundfile.read"),
                    None,
                    describe(comparison, "read_segment", "soundfile.read", per=ITEMS, unit="item"),
                )
            )
    return results


if __name__ == "__main__":  # pragma: no cover - manual use
    for row in run():
        print(row)
