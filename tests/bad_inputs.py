"""The bad-input corpus of the reliability tests, generated on demand (no binary is committed).

A user's folder is never clean. :func:`build_corpus` writes one entry per way it can be messy,
next to good files, and returns the :data:`CASES` it wrote. Each :class:`Case` says what the tool
must do with its file:

``scan``
    What ``sda scan`` reports: ``used`` (trained on as it is), ``repaired`` (trained on after a
    fix: the readable part of a file cut short, a corrected length) or ``skipped`` (not trained
    on: left out by the scan, or named by a warning that says training skips it).
``code``
    Why: the scan's skip reason (:class:`sda_core.config.dataset.SkipReason`) for a skipped entry,
    else the warning codes (:class:`sda_core.data.analysis.WarningCode`) that name the file,
    comma-separated, or ``-`` for none.
``training``
    What ``sda train`` does with it: ``trained`` (in the split, read without a problem),
    ``replaced`` (in the split, but it cannot be read when training comes to it: one warning
    names it and its chunks are replaced by chunks of other files) or ``absent`` (not in the
    split).
``after_scan``
    What happens to the file between the scan and training: ``vanish`` (deleted) or
    ``shorten`` or ``grow`` (rewritten shorter or longer); :func:`mutate_after_scan` does it.

``docs/reliability.md`` tabulates the same cases; ``tests/test_reliability_inputs.py`` checks the
table, these expectations and what the code does against each other.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from sda_core.config.dataset import SkipReason
from sda_core.testing import fast_settings, set_options

#: Scan verdicts.
USED, REPAIRED, SKIPPED = "used", "repaired", "skipped"
#: Training outcomes.
TRAINED, REPLACED, ABSENT = "trained", "replaced", "absent"
#: What happens between the scan and training.
VANISH, SHORTEN, GROW = "vanish", "shorten", "grow"
#: The project rate the corpus is scanned at (the default config's).
PROJECT_RATE = 22050
#: Codes of entries the scan leaves out.
SKIP_REASONS = SkipReason.ALL


@dataclass(frozen=True)
class Case:
    """One entry of the corpus and what must happen to it."""

    name: str
    path: str  # POSIX path relative to the corpus folder, as the scan reports it
    scan: str
    code: str
    training: str
    make: Callable[[Path], None]
    after_scan: str | None = None

    @property
    def good(self) -> bool:
        """A file training must use: it must be in the split and read without a problem."""
        return self.training == TRAINED

    @property
    def codes(self) -> frozenset[str]:
        return frozenset() if self.code == "-" else frozenset(part.strip() for part in self.code.split(","))


# -- signals ------------------------------------------------------------------------------------


def tone(seconds: float, rate: int = PROJECT_RATE, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A decaying harmonic tone plus a little noise, (frames, channels) float32, deterministic."""
    rng = np.random.default_rng(seed)
    frames = max(1, int(round(seconds * rate)))
    t = np.arange(frames) / rate
    base = 110.0 * (1 + seed % 5)
    mono = sum(np.sin(2 * np.pi * base * k * t) / k for k in (1, 2, 3)) * np.exp(-t * 1.2)
    mono = 0.3 * mono / max(np.abs(mono).max(), 1e-9) + 0.01 * rng.standard_normal(frames)
    return np.stack([mono * (1 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


def write(path: Path, data: np.ndarray, rate: int = PROJECT_RATE, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, **kwargs)


def good(
    seconds: float, rate: int = PROJECT_RATE, channels: int = 1, seed: int = 0, **kwargs
) -> Callable[[Path], None]:
    """A maker of a good file: :func:`tone` written with ``kwargs`` (format, subtype, endian)."""
    return lambda path: write(path, tone(seconds, rate, channels, seed), rate, **kwargs)


# -- bad files ----------------------------------------------------------------------------------


def zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def header_only(path: Path) -> None:
    write(path, np.zeros((0, 1), dtype=np.float32))


def text_file(path: Path) -> None:
    path.write_text("Take 3, kick drum, recorded in the kitchen.\n" * 20)


def random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(7).bytes(8192))


def cut_short(fraction: float, **kwargs) -> Callable[[Path], None]:
    """A good file cut to ``fraction`` of its bytes: its header still promises all of it."""

    def make(path: Path) -> None:
        write(path, tone(3.0, seed=3), **kwargs)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])

    return make


def nan_and_inf(path: Path) -> None:
    data = tone(2.0, seed=4)
    data[1000:1010] = np.nan
    data[5000:5003] = np.inf
    data[9000] = -np.inf
    write(path, data, subtype="FLOAT")


def silent(path: Path) -> None:
    write(path, np.zeros((int(1.5 * PROJECT_RATE), 1), dtype=np.float32), subtype="PCM_16")


def apple_double(path: Path) -> None:
    path.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64))


def fifo(path: Path) -> None:
    os.mkfifo(path)  # opening it would block until a writer comes: the scan must not open it


def nested_settings(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("max_epochs = 1000\n")


def symlink(target: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)

    return make


def mp3_with_frame_count(frames: int | None = None, *, scale: int = 1, keep: float = 1.0) -> Callable[[Path], None]:
    """A good MP3 whose Xing header claims ``frames`` MPEG frames (or ``scale`` times its real
    count), cut to ``keep`` of its bytes."""

    def make(path: Path) -> None:
        write(path, tone(2.5, seed=6), format="MP3")
        data = bytearray(path.read_bytes())
        if frames is not None or scale != 1:
            at = data.find(b"Xing")
            assert at >= 0, "libsndfile wrote no Xing header"
            flags, real = struct.unpack(">II", data[at + 4 : at + 12])
            assert flags & 1, "the Xing header holds no frame count"
            data[at + 8 : at + 12] = struct.pack(">I", frames if frames is not None else real * scale)
        path.write_bytes(bytes(data[: int(len(data) * keep)]))

    return make


def in_folder_named_wav(path: Path) -> None:
    good(1.8, seed=8)(path)


def undecodable_name(path: Path) -> None:
    """A good file whose name holds a byte that is not UTF-8 (Latin-1, from an old archive)."""
    plain = path.with_name("latin1_name.wav")
    good(1.6, seed=19)(plain)
    os.rename(plain, path)  # Python encodes the surrogate escape back to the raw byte


# -- the cases ----------------------------------------------------------------------------------

CASES: tuple[Case, ...] = (
    # good files of every kind
    Case("16-bit WAV", "good_pcm16.wav", USED, "-", TRAINED, good(2.0, seed=0)),
    Case("stereo FLAC", "good_stereo.flac", USED, "-", TRAINED, good(2.4, channels=2, seed=1)),
    Case("Ogg Vorbis", "good.ogg", USED, "-", TRAINED, good(2.2, seed=2)),
    Case("MP3", "good.mp3", USED, "-", TRAINED, good(2.0, seed=3, format="MP3")),
    Case("upper-case extension", "LOUD.WAV", USED, "-", TRAINED, good(1.6, seed=4)),
    Case("24-bit WAV", "pcm24.wav", USED, "-", TRAINED, good(1.7, seed=5, subtype="PCM_24")),
    Case("8-bit WAV", "pcm8.wav", USED, "-", TRAINED, good(1.9, seed=6, subtype="PCM_U8")),
    Case("u-law WAV", "ulaw.wav", USED, "-", TRAINED, good(2.1, seed=7, subtype="ULAW")),
    Case(
        "big-endian AIFF",
        "big_endian.aiff",
        USED,
        "-",
        TRAINED,
        good(2.3, seed=8, format="AIFF", subtype="PCM_16", endian="BIG"),
    ),
    Case("6-channel WAV", "six_channels.wav", USED, "-", TRAINED, good(1.5, channels=6, seed=9)),
    Case(
        "8 kHz WAV", "rate_8k.wav", USED, "low_sample_rate, mixed_sample_rates", TRAINED, good(2.0, rate=8000, seed=10)
    ),
    Case("192 kHz WAV", "rate_192k.wav", USED, "mixed_sample_rates", TRAINED, good(1.0, rate=192000, seed=11)),
    Case("0.02 s file", "tiny.wav", USED, "-", TRAINED, good(0.02, seed=12)),
    Case("all-silent file", "silent.wav", USED, "near_silent", TRAINED, silent),
    Case("name with spaces", "name with spaces.wav", USED, "-", TRAINED, good(1.4, seed=13)),
    Case("non-ASCII letters in the name", "Ångström café naïve.wav", USED, "-", TRAINED, good(1.3, seed=14)),
    Case("emoji in the name", "drum 🥁 loop.wav", USED, "-", TRAINED, good(1.2, seed=15)),
    Case("name that is not valid UTF-8 (Latin-1 byte)", "caf\udce9 latin-1.wav", USED, "-", TRAINED, undecodable_name),
    Case("rich markup in the name", "take [2] [red].wav", USED, "-", TRAINED, good(1.1, seed=16)),
    Case("a folder named x.wav (its file)", "x.wav/inside.wav", USED, "-", TRAINED, in_folder_named_wav),
    # damaged but usable
    Case("truncated WAV (header claims more frames)", "truncated.wav", REPAIRED, "truncated", TRAINED, cut_short(0.6)),
    Case("truncated FLAC", "truncated.flac", REPAIRED, "truncated", TRAINED, cut_short(0.5)),
    Case(
        "MP3 whose header claims 10x the frames",
        "mp3_count_x10.mp3",
        REPAIRED,
        "truncated",
        TRAINED,
        mp3_with_frame_count(scale=10),
    ),
    Case(
        "MP3 whose header claims 2^31 frames",
        "mp3_count_absurd.mp3",
        REPAIRED,
        "truncated",
        TRAINED,
        mp3_with_frame_count(2**31 - 1),
    ),
    Case("MP3 cut in half", "mp3_cut.mp3", REPAIRED, "truncated", TRAINED, mp3_with_frame_count(keep=0.5)),
    # unusable
    Case("zero-byte .wav", "empty.wav", SKIPPED, "empty", ABSENT, zero_bytes),
    Case("WAV header without frames", "header_only.wav", SKIPPED, "no_frames", ABSENT, header_only),
    Case("text file named .wav", "text.wav", SKIPPED, "unreadable", ABSENT, text_file),
    Case("random bytes named .flac", "random.flac", SKIPPED, "unreadable", ABSENT, random_bytes),
    Case("text file", "notes.txt", SKIPPED, "not_audio", ABSENT, text_file),
    Case("macOS AppleDouble file", "._good_pcm16.wav", SKIPPED, "not_audio", ABSENT, apple_double),
    Case("named pipe (FIFO) named .wav", "pipe.wav", SKIPPED, "not_audio", ABSENT, fifo),
    Case("float WAV with NaN and Inf", "nan_inf.wav", SKIPPED, "non_finite", REPLACED, nan_and_inf),
    Case("symbolic link to itself", "loop.wav", SKIPPED, "link_loop", ABSENT, symlink("loop.wav")),
    Case("folder link back to its parent", "sub/back", SKIPPED, "link_loop", ABSENT, symlink("..")),
    Case("broken symbolic link", "broken.wav", SKIPPED, "broken_link", ABSENT, symlink("nowhere.wav")),
    Case("sda.toml below the top folder", "sub/sda.toml", SKIPPED, "settings_file", ABSENT, nested_settings),
    # changes between the scan and training
    Case(
        "file that vanishes between scan and training",
        "vanishes.wav",
        USED,
        "-",
        REPLACED,
        good(2.0, seed=17),
        after_scan=VANISH,
    ),
    Case(
        "file that gets shorter after the scan",
        "changes_length.wav",
        USED,
        "-",
        TRAINED,
        good(2.6, seed=18),
        after_scan=SHORTEN,
    ),
    Case("file that gets longer after the scan", "grows.wav", USED, "-", TRAINED, good(1.2, seed=20), after_scan=GROW),
)


def build_corpus(folder: str | os.PathLike[str]) -> tuple[Case, ...]:
    """Write every case into ``folder`` (created); returns :data:`CASES`."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        case.make(root / case.path)
    return CASES


def mutate_after_scan(folder: str | os.PathLike[str]) -> list[str]:
    """Do what happens between the scan and training; returns the paths changed."""
    root = Path(folder)
    changed = []
    for case in CASES:
        path = root / case.path
        if case.after_scan == VANISH:
            path.unlink()
        elif case.after_scan == SHORTEN:
            data, rate = sf.read(path, dtype="float32", always_2d=True)
            sf.write(path, data[: len(data) // 3], rate)
        elif case.after_scan == GROW:
            data, rate = sf.read(path, dtype="float32", always_2d=True)
            sf.write(path, np.concatenate([data, data, data]), rate)
        else:
            continue
        changed.append(case.path)
    return changed


def good_paths() -> set[str]:
    return {case.path for case in CASES if case.good}


def display(path: str) -> str:
    """A path as docs/reliability.md writes it: bytes that are not UTF-8 as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# -- running sda on it ---------------------------------------------------------------------------

#: The fast settings of every `sda train` of the reliability tests: the kit's, with the number of
#: epochs left to each test (``--max-epochs`` or ``max_epochs``).
FAST = fast_settings(max_epochs=None)
TESTS = Path(__file__).resolve().parent


def fast_set(**changes: object) -> list[str]:
    """``--set`` options of :data:`FAST`, with ``changes``."""
    return set_options(FAST, **changes)


def reference_plugins(*extra: str, without: tuple[str, ...] = ("progress",)) -> str:
    """An ``SDA_LOAD_PLUGINS`` value: sda's own plugins less ``without``, plus ``extra``.

    Third-party plugins installed beside sda (contrib distributions being written) stay out of
    these runs, so their state never decides whether a reliability test passes.
    """
    from sda_core.testing import reference_plugins as loaded

    return ",".join([name for name, _plugin in loaded() if name not in without] + list(extra))


def sda_env(load: str | None = None, site: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of an `sda` subprocess: no progress display, sda's own plugins (``load``),
    this folder (and ``site``) importable."""
    paths = [str(site)] if site is not None else []
    paths += [str(TESTS), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "SDA_DISABLE_PLUGINS": "progress", "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    env["SDA_LOAD_PLUGINS"] = reference_plugins() if load is None else load
    for name in ("SDA_STRICT_PLUGINS", "SDA_TRACE_HOOKS"):
        env.pop(name, None)
    env.update(extra)
    return env


def install_plugin(site: Path, dist_name: str, entry_point: str, module: str, source: str) -> Path:
    """Write a plugin distribution (module + .dist-info with its ``sda`` entry point) into ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist_name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[sda]\n{entry_point} = {module}\n")
    return site


#: A plugin that does :func:`mutate_after_scan` once the run has scanned its data folder (in
#: ``sda_resolve_config``, which answers nothing: the reference presets still resolve the config).
MUTATE_PLUGIN = """
import bad_inputs
from sda_core import hookimpl

DONE = []


@hookimpl
def sda_resolve_config(summary, overrides):
    if not DONE:
        DONE.append(bad_inputs.mutate_after_scan(summary.root))
    return None
"""


if __name__ == "__main__":  # pragma: no cover - `python tests/bad_inputs.py DIR` writes the corpus
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "bad_inputs")
    build_corpus(target)
    print(
        json.dumps({case.path: [case.scan, case.code, case.training] for case in CASES}, indent=1, ensure_ascii=False)
    )
