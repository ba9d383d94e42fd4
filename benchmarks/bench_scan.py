"""Scan of 500 files: ``sda_core.data.scan.scan_folder`` versus bare ``soundfile.info`` calls.

* measured: ``scan_folder(folder)``: the recursive walk, one ``stat`` and one ``soundfile.info``
  per file, the skip bookkeeping and the :class:`~sda_core.config.dataset.DatasetSummary` it builds.
* baseline: ``soundfile.info(path)`` for every file of the same folder, the list of paths made
  with ``os.walk`` *outside* the timed region. The baseline is the header reading the scan cannot
  avoid; the ratio is what the rest of the scan adds on top of it.

Target: at most 1.3x. The corpus is synthesised once per run in a temporary folder: 500 files of
0.2 s to 3 s in 10 nested sub-folders, WAV (16-bit, 24-bit, float), FLAC (16/24-bit) and a few Ogg
Vorbis, mono and stereo, at 16 to 96 kHz. Both variants run untimed first, so the OS file cache
is warm for both.

When ``../shared/corpus/real-sounds.sh`` exists beside the repository and the environment variable
``SDA_REAL_SOUNDS`` names an existing folder (build it with that script), the same ratio is also
reported on that folder of real recordings, as an informational row without a target.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from benchmarks.timing import Result, compare, describe
from sda_core.data.scan import scan_folder

NAME = "scan"
TARGET = 1.3
FILE_COUNT = 500
REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_SOUNDS_SCRIPT = REPO_ROOT.parent / "shared" / "corpus" / "real-sounds.sh"

SUBFOLDERS = (
    "drums/kicks",
    "drums/snares",
    "drums/hats",
    "loops",
    "loops/120bpm",
    "field/2023/park",
    "field/2024",
    "vocals",
    "fx/risers",
    "pads",
)
# (extension, soundfile format, subtype, how many of the 500)
FORMATS = (
    ("wav", "WAV", "PCM_16", 220),
    ("wav", "WAV", "FLOAT", 75),
    ("wav", "WAV", "PCM_24", 40),
    ("flac", "FLAC", "PCM_16", 85),
    ("flac", "FLAC", "PCM_24", 50),
    ("ogg", "OGG", "VORBIS", 30),
)
SAMPLE_RATES = (44100, 48000, 22050, 16000, 96000)
SAMPLE_RATE_WEIGHTS = (0.5, 0.3, 0.1, 0.05, 0.05)
_BLOCK = 8192  # one big Ogg write can crash libsndfile 1.2.2: write in blocks


def synthesise_corpus(root: Path, count: int = FILE_COUNT, seed: int = 1234) -> list[Path]:
    """Write ``count`` short audio files in a realistic mix of formats under ``root``."""
    if sum(spec[3] for spec in FORMATS) != FILE_COUNT:
        raise AssertionError("FORMATS must add up to FILE_COUNT")
    rng = np.random.default_rng(seed)
    specs = [spec[:3] for spec in FORMATS for _ in range(spec[3])]
    specs = [specs[i] for i in rng.permutation(len(specs))][:count]
    paths = []
    for index, (extension, container, subtype) in enumerate(specs):
        folder = root / SUBFOLDERS[index % len(SUBFOLDERS)]
        folder.mkdir(parents=True, exist_ok=True)
        rate = int(rng.choice(SAMPLE_RATES, p=SAMPLE_RATE_WEIGHTS))
        channels = 1 if rng.random() < 0.4 else 2
        frames = int(rate * rng.uniform(0.2, 3.0))
        t = np.arange(frames, dtype=np.float32) / rate
        tone = np.sin(2 * np.pi * rng.uniform(60, 2000) * t) * np.exp(-t * rng.uniform(0.5, 8))
        noise = rng.standard_normal((frames, channels)).astype(np.float32) * 0.05
        data = (0.3 * tone[:, None] + noise).astype(np.float32)
        path = folder / f"sound_{index:03d}.{extension}"
        with soundfile.SoundFile(path, "w", rate, channels, subtype=subtype, format=container) as out:
            for start in range(0, frames, _BLOCK):
                out.write(data[start : start + _BLOCK])
        paths.append(path)
    return paths


def list_files(folder: str | os.PathLike[str]) -> list[str]:
    """Every regular file under ``folder`` (os.walk, following folder links like the scan)."""
    found = []
    for parent, _dirs, files in os.walk(folder, followlinks=True):
        found.extend(os.path.join(parent, name) for name in files)
    return sorted(found)


def compare_on(folder: str | os.PathLike[str], repeats: int):
    """Time scan_folder(folder) against soundfile.info on each file; also return the counts."""
    paths = list_files(folder)
    info = soundfile.info

    def bare_info() -> None:
        for path in paths:
            try:
                info(path)
            except Exception:  # the scan meets the same failure and reports it; so be it here
                pass

    def scan() -> None:
        scan_folder(folder)

    usable = len(scan_folder(folder).files)
    # warmup=2: both variants read every header (and list every folder) before timing starts.
    comparison = compare({"scan_folder": scan, "soundfile.info": bare_info}, repeats=repeats, warmup=2)
    return comparison, len(paths), usable


def real_sounds_folder() -> Path | None:
    """The folder of real recordings, when the corpus script and ``SDA_REAL_SOUNDS`` are there."""
    folder = os.environ.get("SDA_REAL_SOUNDS")
    if not folder or not REAL_SOUNDS_SCRIPT.is_file():
        return None
    path = Path(folder).expanduser()
    return path if path.is_dir() else None


def run(quick: bool = False) -> list[Result]:
    repeats = 7 if quick else 31
    results = []
    with tempfile.TemporaryDirectory(prefix="sda-bench-scan-") as temp:
        synthesise_corpus(Path(temp))
        comparison, listed, usable = compare_on(temp, repeats)
        if listed != FILE_COUNT or usable != FILE_COUNT:
            raise AssertionError(f"expected {FILE_COUNT} usable files, os.walk found {listed}, scan used {usable}")
        ratio = comparison.ratio("scan_folder", "soundfile.info")
        detail = describe(comparison, "scan_folder", "soundfile.info", per=FILE_COUNT, unit="file")
        results.append(Result(f"scan: {FILE_COUNT} synthetic files", ratio, TARGET, detail))

    real = real_sounds_folder()
    if real is not None:
        comparison, listed, usable = compare_on(real, repeats)
        if listed:
            ratio = comparison.ratio("scan_folder", "soundfile.info")
            detail = describe(comparison, "scan_folder", "soundfile.info", per=listed, unit="file")
            name = f"scan: {listed} real sounds ({usable} usable)"
            results.append(Result(name, ratio, None, detail))
    return results


if __name__ == "__main__":  # pragma: no cover - manual use
    for row in run():
        print(row)
