"""Helpers of the studio's tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Any

from sda_core.testing import fast_settings
from sda_core.testing.audio import write_audio_folder

#: Where a copy of the browser tests' screenshots goes when this variable names a folder.
SHOTS_VARIABLE = "SDA_STUDIO_SHOTS"


def studio_settings(**changes: Any) -> str:
    """The overrides box for a quick run: the kit's fast settings as key=value lines."""
    settings = fast_settings(**changes)
    lines = []
    for key, value in settings.items():
        if isinstance(value, dict):
            continue
        lines.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    return "\n".join(lines)


def make_root(folder: Path) -> Path:
    """A studio root: ``sounds/`` with six synthesised sounds and one text file it skips."""
    folder.mkdir(parents=True, exist_ok=True)
    write_audio_folder(folder / "sounds", count=6, sample_rates=(8000,))
    (folder / "sounds" / "notes.txt").write_text("not audio\n")
    (folder / "empty").mkdir()
    (folder / "empty" / "readme.txt").write_text("no audio here\n")
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def chromium_path() -> str | None:
    """The system chromium (Debian's package), or None."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def shots_copy() -> Path | None:
    value = os.environ.get(SHOTS_VARIABLE)
    return Path(value) if value else None
