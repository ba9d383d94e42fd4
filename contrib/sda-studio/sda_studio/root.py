"""The one folder the studio reads and writes under, and the checks that keep it there.

Every path a page sends (a data folder, a run folder, an upload) goes through :class:`StudioRoot`:
a path outside the root, a symbolic link that leads out of it, an upload whose name holds a folder
or ``..``, a file that is not audio or is too large is refused with a :class:`StudioError` the page
shows as a message.
"""

from __future__ import annotations

import datetime
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from sda_core.errors import SdaError

#: Largest upload accepted, per file (``--max-upload-mb``): 200 MB, about 20 minutes of 48 kHz stereo WAV.
DEFAULT_MAX_UPLOAD_BYTES = 200 * 1024 * 1024
#: Where uploaded folders go, under the root.
UPLOADS = "uploads"
#: Where the studio writes generated sounds, under the root (outside the run, so no lock is needed
#: while the run trains).
GENERATED = "studio-generated"


class StudioError(SdaError):
    """A request the studio refuses; the message is shown on the page as it is."""


class StudioRoot:
    """The folder (``--root``) the studio may read and write under.

    Args:
        root: the folder; it must exist.
        max_upload_bytes: the largest file an upload may hold.
    """

    def __init__(self, root: str | os.PathLike[str], max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> None:
        path = Path(root)
        if not path.is_dir():
            raise StudioError(f"the studio's root '{root}' is not a folder")
        self.path = path.resolve()
        self.max_upload_bytes = max_upload_bytes

    def resolve(self, value: str | os.PathLike[str], what: str = "folder") -> Path:
        """``value`` (relative to the root, or absolute) as a real path inside the root.

        Symbolic links are followed before the check, so a link leading out of the root is
        refused like the path it leads to.
        """
        text = os.fspath(value).strip()
        if not text:
            raise StudioError(f"give a {what}: a path under {self.path}")
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            candidate = self.path / candidate
        real = candidate.resolve()
        if real != self.path and self.path not in real.parents:
            raise StudioError(
                f"the {what} '{text}' is outside the studio's folder {self.path}; "
                "the studio only reads and writes under its --root"
            )
        return real

    def relative(self, path: str | os.PathLike[str]) -> str:
        """``path`` as shown on the page: relative to the root ("." for the root itself)."""
        resolved = Path(path).resolve()
        try:
            return resolved.relative_to(self.path).as_posix() or "."
        except ValueError:
            return str(resolved)

    def existing_folder(self, value: str | os.PathLike[str], what: str = "folder") -> Path:
        """:meth:`resolve`, and the result must be an existing folder."""
        path = self.resolve(value, what)
        if not path.exists():
            raise StudioError(f"the {what} '{value}' does not exist under {self.path}")
        if not path.is_dir():
            raise StudioError(f"'{value}' is a file, not a folder")
        return path

    def check_upload_name(self, name: str) -> str:
        """The file name an upload will have, or a StudioError: a bare name (no folder, no ``..``,
        not hidden) of an audio file."""
        if not name or "/" in name or "\\" in name or name in (".", "..") or ".." in name or "\x00" in name:
            raise StudioError(f"the upload name {name!r} is refused: give a plain file name, without folders or '..'")
        if name.startswith("."):
            raise StudioError(f"the upload name {name!r} is refused: hidden files are not uploaded")
        from sda_core.data.scan import AUDIO_EXTENSIONS  # here: loading the plugin imports no numpy

        if Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
            kinds = ", ".join(sorted(AUDIO_EXTENSIONS))
            raise StudioError(f"'{name}' is not an audio file; the studio accepts {kinds}")
        return name

    def upload(self, files: Iterable[tuple[str, str | os.PathLike[str]]], folder: str | None = None) -> Path:
        """Copy uploaded files, given as (original name, temporary path), into a new folder under
        ``uploads/`` (named ``folder``, or by the time) and return it. Every file is checked
        before any is copied, so a refused upload leaves nothing behind."""
        items = list(files)
        if not items:
            raise StudioError("choose one or more audio files to upload")
        seen: set[str] = set()
        for name, source in items:
            self.check_upload_name(name)
            size = Path(source).stat().st_size
            if size > self.max_upload_bytes:
                raise StudioError(
                    f"'{name}' is {size / 1e6:.1f} MB; the studio accepts files up to "
                    f"{self.max_upload_bytes / 1e6:.0f} MB (--max-upload-mb)"
                )
            if name in seen:
                raise StudioError(f"two uploaded files are named '{name}'")
            seen.add(name)
        label = (folder or "").strip() or datetime.datetime.now().strftime("upload-%Y%m%d-%H%M%S")
        if "/" in label or "\\" in label or ".." in label or label.startswith("."):
            raise StudioError(f"the folder name {label!r} is refused: give a plain name, without '/' or '..'")
        target = self.resolve(Path(UPLOADS) / label, "upload folder")
        target.mkdir(parents=True, exist_ok=True)
        for name, source in items:
            shutil.copyfile(source, target / name)
        return target

    def generated_folder(self, run_dir: Path) -> Path:
        """A new folder for one generation request from ``run_dir``."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        return self.resolve(Path(GENERATED) / run_dir.name / stamp, "output folder")
