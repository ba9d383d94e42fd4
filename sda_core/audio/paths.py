"""File paths as the audio libraries want them."""

from __future__ import annotations

import os
import sys


def native_path(path: str | os.PathLike[str]) -> str | bytes:
    """A path as soundfile should get it: as is, except a name that is not valid in the file
    system's encoding (Python keeps such bytes as surrogate escapes: Latin-1 names from an old
    archive, say), which soundfile cannot encode; that one goes as its raw bytes."""
    path = os.fspath(path)
    if os.name == "nt" or isinstance(path, bytes):
        return path
    try:
        path.encode(sys.getfilesystemencoding())
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path
