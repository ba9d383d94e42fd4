"""The decoded-audio cache: formats that cannot seek cheaply (MP3) are decoded once, whole.

:class:`DecodeCache` is a folder of float32 ``.npy`` files (one whole-file decode each) with a size
limit, least recently used out; chunks are read from a memory map of the decoded file, touching
only their own frames (see ``docs/audio-io.md``). Which formats go through it is decided in
:func:`sda_core.audio.formats.needs_decode_cache`. When the folder cannot be written, decodes are
kept in this process's memory instead (with one warning).

numpy and soundfile only: no torch.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import attrs
import numpy as np
import platformdirs
import soundfile

from sda_core.atomic import write_atomic
from sda_core.audio.decoding import decode_file
from sda_core.audio.paths import native_path
from sda_core.errors import AudioReadError

__all__ = [
    "CACHE_DIR_VARIABLE",
    "DEFAULT_CACHE_MAX_BYTES",
    "CacheUsage",
    "DecodeCache",
    "default_cache_directory",
    "default_decode_cache",
]

DEFAULT_CACHE_MAX_BYTES = 2 * 1024**3
"""Default size limit of the decoded-audio cache: 2 GiB (about 100 minutes of 44.1 kHz stereo)."""


CACHE_DIR_VARIABLE = "SDA_CACHE_DIR"
"""The environment variable that moves the decoded-audio cache: the folder itself."""


def default_cache_directory() -> Path:
    """``$SDA_CACHE_DIR``, else ``decoded`` in the platform's cache folder for ``sda``.

    The platform's folder is platformdirs' user cache folder: ``$XDG_CACHE_HOME/sda`` or
    ``~/.cache/sda`` on Linux, ``~/Library/Caches/sda`` on macOS, ``%LOCALAPPDATA%\\sda\\Cache``
    on Windows.
    """
    explicit = os.environ.get(CACHE_DIR_VARIABLE)
    if explicit:
        return Path(explicit).expanduser()
    return platformdirs.user_cache_path("sda", appauthor=False) / "decoded"


@attrs.frozen
class CacheUsage:
    """Entries of a :class:`DecodeCache` and the bytes they take (held, or freed by ``clear``)."""

    entries: int
    bytes: int


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
        return self.usage().bytes

    def usage(self) -> CacheUsage:
        """How many entries the folder holds and the bytes they take."""
        count = total = 0
        for entry in self.entries():
            try:
                total += entry.stat().st_size
                count += 1
            except OSError:  # evicted by another process meanwhile
                pass
        return CacheUsage(entries=count, bytes=total)

    def clear(self) -> CacheUsage:
        """Delete every entry and the entries' leftover temporary files; returns what was freed.

        Only this cache's own files go (see :meth:`entries`); anything else in the folder stays.
        """
        count = freed = 0
        for entry in self.entries():
            try:
                size = entry.stat().st_size
                entry.unlink()
            except OSError:
                continue
            count += 1
            freed += size
        freed += self._remove_stale_temporaries(max_age=0.0)
        return CacheUsage(entries=count, bytes=freed)

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
        data, rate = decode_file(path)
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

    def _remove_stale_temporaries(self, max_age: float) -> int:
        """Temporary files of writers that died (an hour old: no live writer takes that long).

        Returns the bytes freed.
        """
        try:
            names = os.listdir(self.directory)
        except OSError:
            return 0
        now = time.time()
        freed = 0
        for name in names:
            if _is_temporary_name(name):
                candidate = self.directory / name
                try:
                    info = candidate.stat()
                    if now - info.st_mtime >= max_age:
                        candidate.unlink()
                        freed += info.st_size
                except OSError:
                    pass
        return freed


def _is_entry_name(name: str) -> bool:
    stem, dot, extension = name.rpartition(".")
    if extension != "npy" or not dot:
        return False
    key, dash, rate = stem.partition("-")
    return bool(dash) and len(key) == 32 and rate.isdigit() and all(c in "0123456789abcdef" for c in key)


def _is_temporary_name(name: str) -> bool:
    """``.<entry name>.<random>.tmp``: what :func:`~sda_core.atomic.write_atomic` writes an entry through."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    entry, separator, _ = name[1:].partition(".npy.")
    return bool(separator) and _is_entry_name(entry + ".npy")


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
