"""Pre-flight scan of a data folder: which files are usable audio, which are skipped and why.

:func:`scan_folder` walks a folder recursively and reads only the header of each file with
``soundfile.info``; no audio is decoded. Every entry found is accounted for: it is either a usable
:class:`~sda_core.config.dataset.AudioFileInfo` or a :class:`~sda_core.config.dataset.SkippedFile`
with a reason code from :class:`~sda_core.config.dataset.SkipReason`. The ``sda.toml`` at the top of
the folder is reported as the summary's ``settings_file``.

An MP3's length is only a claim (of its Xing/Info tag, or an estimate from its first frame), and a
damaged tag or a file cut short after its tag was written can claim many times the audio it holds.
When the claim is impossible for the file's size, the file is decoded to count its real frames, so
chunk counts, durations and the duration-balanced split rest on audio that exists.

Symlinked folders are followed, but each real folder is scanned once: a link to a folder that has
already been scanned (a loop, or a second route to the same folder) is reported as ``link_loop``.
Real sub-folders are scanned before linked ones, so a link pointing back into the data folder
never takes precedence over the folder itself.

:func:`require_usable` turns an empty or unusable summary into a :class:`DatasetError`.
"""

from __future__ import annotations

import errno
import os
import shlex
import stat
from collections import deque
from pathlib import Path

import soundfile

from sda_core.audio.decoding import decoded_frames
from sda_core.audio.formats import MPEG_EXTENSIONS, length_is_a_claim, plausible_mpeg_length
from sda_core.audio.paths import native_path
from sda_core.config.dataset import AudioFileInfo, DatasetSummary, SkippedFile, SkipReason
from sda_core.config.overrides import SETTINGS_FILENAME
from sda_core.errors import AudioReadError, DatasetError

AUDIO_EXTENSIONS = (
    frozenset(
        {
            ".wav",
            ".wave",
            ".bwf",
            ".rf64",
            ".w64",
            ".flac",
            ".ogg",
            ".oga",
            ".opus",
            ".aif",
            ".aiff",
            ".aifc",
            ".au",
            ".snd",
            ".caf",
            ".voc",
            ".wv",
            ".sd2",
            ".sf",
            ".ircam",
            ".paf",
            ".svx",
            ".nist",
            ".sph",
            ".mat",
            ".pvf",
            ".xi",
            ".htk",
            ".avr",
            ".mpc",
        }
    )
    | MPEG_EXTENSIONS
)
"""Extensions of audio formats; a file with one of them that libsndfile cannot open is "unreadable"."""

_NOT_AUDIO_DETAIL = "not an audio format libsndfile can open"
_ALREADY_SCANNED_DETAIL = "link to a folder that is already scanned (a loop or a second route to it)"

_Folder = tuple[str, str, tuple[int, int]]


def scan_folder(path: str | os.PathLike[str]) -> DatasetSummary:
    """Scan a folder recursively and report every usable audio file and every skipped entry.

    Only headers are read (one ``soundfile.info`` call and one ``stat`` per file; an MP3 whose
    claimed length is impossible for its size is decoded to count its frames). Symlinked
    folders are followed without ever looping. An empty folder, or one without usable audio, is
    not an error here: the summary simply has no files (see :func:`require_usable`).

    Args:
        path: the data folder.

    Returns:
        A :class:`DatasetSummary` whose ``root`` is the resolved absolute folder and whose paths are
        POSIX paths relative to it, sorted.

    Raises:
        DatasetError: the path does not exist, is not a folder, or cannot be read.
    """
    given = os.fspath(path)
    root = Path(given).expanduser()
    try:
        root_stat = root.stat()
    except FileNotFoundError:
        raise DatasetError(f"folder '{given}' does not exist") from None
    except PermissionError:
        raise DatasetError(f"folder '{given}' cannot be accessed: permission denied") from None
    except OSError as error:
        raise DatasetError(f"folder '{given}' cannot be accessed: {error.strerror or error}") from None
    if not stat.S_ISDIR(root_stat.st_mode):
        raise DatasetError(f"'{given}' is a file, not a folder; pass the folder that holds your audio files")
    root = root.resolve()

    walk = _Walk()
    real_folders: list[_Folder] = [(str(root), "", (root_stat.st_dev, root_stat.st_ino))]
    linked_folders: deque[_Folder] = deque()
    while real_folders or linked_folders:
        folder = real_folders.pop() if real_folders else linked_folders.popleft()
        absolute, relative, key = folder
        if key in walk.visited:
            walk.skip(relative, SkipReason.LINK_LOOP, _ALREADY_SCANNED_DETAIL)
            continue
        walk.visited.add(key)
        try:
            with os.scandir(absolute) as entries:
                listing = sorted(entries, key=lambda entry: entry.name)
        except PermissionError:
            if not relative:
                raise DatasetError(f"folder '{given}' cannot be read: permission denied") from None
            walk.skip(relative, SkipReason.PERMISSION_DENIED, "folder cannot be read: permission denied")
            continue
        except OSError as error:
            if not relative:
                raise DatasetError(f"folder '{given}' cannot be read: {error.strerror or error}") from None
            walk.skip(relative, SkipReason.UNREADABLE, f"folder cannot be read: {error.strerror or error}")
            continue
        subfolders: list[_Folder] = []
        for entry in listing:
            found = walk.entry(entry, relative)
            if found is None:
                continue
            if entry.is_symlink():
                linked_folders.append(found)
            else:
                subfolders.append(found)
        real_folders.extend(reversed(subfolders))

    return DatasetSummary(
        root=str(root),
        files=sorted(walk.files, key=lambda info: info.path),
        skipped=sorted(walk.skipped, key=lambda item: item.path),
        settings_file=walk.settings_file,
    )


def require_usable(summary: DatasetSummary) -> None:
    """Raise :class:`DatasetError` unless the summary holds at least one usable audio file.

    The message is one sentence: the folder is empty, or it holds no usable audio and how many
    entries were skipped (with the command that lists why).
    """
    if summary.files:
        return
    if not summary.skipped:
        if summary.settings_file:
            raise DatasetError(f"folder '{summary.root}' holds no audio files, only {summary.settings_file}")
        raise DatasetError(f"folder '{summary.root}' is empty")
    count = len(summary.skipped)
    noun = "file" if count == 1 else "files"
    raise DatasetError(
        f"folder '{summary.root}' holds no usable audio: {count} {noun} skipped "
        f"(see `sda scan {shlex.quote(summary.root)}`)"
    )


class _Walk:
    """Accumulates the results of one scan."""

    def __init__(self) -> None:
        self.files: list[AudioFileInfo] = []
        self.skipped: list[SkippedFile] = []
        self.settings_file: str | None = None
        self.visited: set[tuple[int, int]] = set()

    def skip(self, relative: str, reason: str, detail: str) -> None:
        self.skipped.append(SkippedFile(path=relative, reason=reason, detail=detail))

    def entry(self, entry: os.DirEntry[str], parent: str) -> _Folder | None:
        """Handle one directory entry; return it when it is a folder to descend into."""
        relative = f"{parent}/{entry.name}" if parent else entry.name
        try:
            info = entry.stat(follow_symlinks=entry.is_symlink())
        except FileNotFoundError:
            if entry.is_symlink():
                target = _link_target(entry.path)
                self.skip(relative, SkipReason.BROKEN_LINK, f"link target '{target}' does not exist")
            else:
                self.skip(relative, SkipReason.UNREADABLE, "entry disappeared during the scan")
            return None
        except PermissionError:
            self.skip(relative, SkipReason.PERMISSION_DENIED, "cannot be accessed: permission denied")
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                self.skip(relative, SkipReason.LINK_LOOP, "symbolic link loop: the link never reaches a real file")
            else:
                self.skip(relative, SkipReason.UNREADABLE, f"cannot be accessed: {error.strerror or error}")
            return None

        if stat.S_ISDIR(info.st_mode):
            return (entry.path, relative, (info.st_dev, info.st_ino))
        if not stat.S_ISREG(info.st_mode):
            self.skip(relative, SkipReason.NOT_AUDIO, "not a regular file (a device, pipe or socket)")
            return None
        if entry.name == SETTINGS_FILENAME:
            if parent:
                detail = "only the sda.toml at the top of the data folder is read"
                self.skip(relative, SkipReason.SETTINGS_FILE, detail)
            else:
                self.settings_file = relative
            return None
        if info.st_size == 0:
            self.skip(relative, SkipReason.EMPTY, "file is empty (0 bytes)")
            return None
        self._read_header(entry, relative, info.st_size)
        return None

    def _read_header(self, entry: os.DirEntry[str], relative: str, size: int) -> None:
        try:
            header = soundfile.info(native_path(entry.path))
        except Exception as error:
            self._skip_unopenable(entry, relative, error)
            return
        if header.frames <= 0 or header.samplerate <= 0 or header.channels <= 0:
            self.skip(relative, SkipReason.NO_FRAMES, "the header reports no audio frames")
            return
        frames = int(header.frames)
        if length_is_a_claim(header.format) and not plausible_mpeg_length(
            entry.path, frames, int(header.samplerate), size
        ):
            try:
                frames = decoded_frames(native_path(entry.path))
            except AudioReadError as error:
                self.skip(relative, SkipReason.UNREADABLE, f"libsndfile cannot decode it: {error.reason}")
                return
            if frames <= 0:
                self.skip(relative, SkipReason.NO_FRAMES, "not one audio frame decodes")
                return
        self.files.append(
            AudioFileInfo(
                path=relative,
                format=header.format,
                subtype=header.subtype,
                sample_rate=int(header.samplerate),
                channels=int(header.channels),
                frames=frames,
                size_bytes=size,
            )
        )

    def _skip_unopenable(self, entry: os.DirEntry[str], relative: str, error: Exception) -> None:
        if not os.access(entry.path, os.R_OK):
            self.skip(relative, SkipReason.PERMISSION_DENIED, "file cannot be read: permission denied")
            return
        extension = os.path.splitext(entry.name)[1].lower()
        if entry.name.startswith("._"):
            self.skip(relative, SkipReason.NOT_AUDIO, "macOS metadata file (AppleDouble), not audio")
        elif extension in AUDIO_EXTENSIONS:
            message = getattr(error, "error_string", None) or str(error) or type(error).__name__
            self.skip(relative, SkipReason.UNREADABLE, f"libsndfile cannot open it: {message}")
        else:
            self.skip(relative, SkipReason.NOT_AUDIO, _NOT_AUDIO_DETAIL)


def _link_target(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"
