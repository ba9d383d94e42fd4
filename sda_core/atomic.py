"""Atomic file writes: a reader (or a crash) never sees a partial file.

Everything is written to a temporary file in the destination folder, flushed and fsynced, then
moved over the destination with ``os.replace``; on any failure the temporary file is removed and
the previous file, if any, is left untouched. A process killed in the middle of a write (SIGKILL,
a power cut) cannot remove its temporary file; :func:`remove_stale_temporaries` does, when the
next writer starts.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(stream)`` on a temporary binary file, then move it to ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp makes the file private (0600); a replaced file keeps its mode, a new one gets the
        # usual 0644 less the umask, like any file the user's programs write
        os.chmod(temporary, _mode_for(target))
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return target


def copy_atomic(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Copy the file ``source`` to ``path`` atomically (a byte copy, no hard link: changing either
    file later leaves the other as it was)."""

    def copy(stream: IO[bytes]) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, stream, 1 << 20)

    return write_atomic(path, copy)


def _mode_for(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where the platform tells (Linux), else 022."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def remove_stale_temporaries(folder: str | os.PathLike[str], names: tuple[str, ...]) -> list[Path]:
    """Delete the temporary files :func:`write_atomic` left in ``folder`` for files named ``names``
    when its process died mid-write; returns what was deleted. Call it only where no other process
    is writing those files now."""
    removed = []
    for name in names:
        for leftover in glob.glob(os.path.join(glob.escape(os.fspath(folder)), f".{glob.escape(name)}.*.tmp")):
            try:
                os.unlink(leftover)
                removed.append(Path(leftover))
            except OSError:
                pass
    return removed


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text to ``path`` atomically."""
    return write_atomic(path, lambda stream: stream.write(text.encode("utf-8")))
