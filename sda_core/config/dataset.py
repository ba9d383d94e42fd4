"""Value types describing a dataset folder: what a scan found and how files are split.

All are frozen attrs classes with a lossless JSON round trip (``to_dict`` / ``from_dict``).
Paths are POSIX paths relative to the scanned folder, so a run folder stays valid when the data
folder moves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import attrs

from sda_core import validators as v
from sda_core.errors import ConfigError
from sda_core.serialization import from_stored, to_jsonable


class _JsonMixin:
    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict; ``from_dict`` of it compares equal to this value."""
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """Rebuild the value from :meth:`to_dict` output; damaged data raises RunDataError."""
        return from_stored(cls, data)


@attrs.frozen(kw_only=True)
class AudioFileInfo(_JsonMixin):
    """Header facts about one usable audio file (nothing decoded).

    Attributes:
        path: POSIX path relative to the scanned folder.
        format: container as soundfile names it ("WAV", "FLAC", "OGG", "MP3" ...).
        subtype: sample encoding ("PCM_16", "FLOAT", "VORBIS" ...).
        sample_rate: frames per second.
        channels: channel count.
        frames: frames per channel, as the header reports.
        size_bytes: file size on disk.
    """

    path: str = attrs.field(validator=v.instance_of(str, "a relative POSIX path"))
    format: str
    subtype: str
    sample_rate: int = attrs.field(validator=v.integer(1))
    channels: int = attrs.field(validator=v.integer(1))
    frames: int = attrs.field(validator=v.integer(1))
    size_bytes: int = attrs.field(validator=v.integer(0))

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


class SkipReason:
    """Reason codes for a file a scan did not use (the ``reason`` of :class:`SkippedFile`)."""

    EMPTY = "empty"
    NOT_AUDIO = "not_audio"
    UNREADABLE = "unreadable"
    NO_FRAMES = "no_frames"
    PERMISSION_DENIED = "permission_denied"
    BROKEN_LINK = "broken_link"
    LINK_LOOP = "link_loop"
    SETTINGS_FILE = "settings_file"

    ALL = (EMPTY, NOT_AUDIO, UNREADABLE, NO_FRAMES, PERMISSION_DENIED, BROKEN_LINK, LINK_LOOP, SETTINGS_FILE)


@attrs.frozen(kw_only=True)
class SkippedFile(_JsonMixin):
    """A file or folder entry the scan did not use, and why.

    Attributes:
        path: POSIX path relative to the scanned folder.
        reason: one of :attr:`SkipReason.ALL`.
        detail: one human sentence (the decoder's own message where there is one).
    """

    path: str
    reason: str = attrs.field(validator=v.one_of(SkipReason.ALL))
    detail: str = ""


@attrs.frozen(kw_only=True)
class DatasetSummary(_JsonMixin):
    """What a scan of one folder found: every usable file and every skipped one with a reason.

    Attributes:
        root: absolute path of the scanned folder.
        files: usable audio files, sorted by path.
        skipped: entries not used, sorted by path, each with a reason.
        settings_file: relative path of sda.toml when the folder has one.
    """

    root: str
    files: tuple[AudioFileInfo, ...] = attrs.field(converter=tuple, default=())
    skipped: tuple[SkippedFile, ...] = attrs.field(converter=tuple, default=())
    settings_file: str | None = None

    @property
    def file_count(self) -> int:
        return len(self.files)

    @property
    def total_duration(self) -> float:
        """Seconds of usable audio."""
        return sum(info.duration for info in self.files)

    @property
    def sample_rates(self) -> dict[int, int]:
        """Sample rate -> number of files at that rate."""
        return dict(sorted(Counter(info.sample_rate for info in self.files).items()))

    @property
    def channel_counts(self) -> dict[int, int]:
        """Channel count -> number of files with that many channels."""
        return dict(sorted(Counter(info.channels for info in self.files).items()))

    def file(self, path: str) -> AudioFileInfo:
        """The usable file with this relative path."""
        for info in self.files:
            if info.path == path:
                return info
        raise KeyError(path)


def _disjoint(instance: "FileSplit", _attribute: Any, _value: Any) -> None:
    both = sorted(set(instance.train) & set(instance.validation))
    if both:
        raise ConfigError("validation", both[0], "a file that is not also in the training set")


@attrs.frozen(kw_only=True)
class FileSplit(_JsonMixin):
    """The file-level train/validation split; no file is ever in both sets.

    Attributes:
        train: relative paths of the training files, sorted.
        validation: relative paths of the validation files, sorted.
        seed: the seed the split was drawn with.
    """

    train: tuple[str, ...] = attrs.field(converter=tuple)
    validation: tuple[str, ...] = attrs.field(converter=tuple, validator=_disjoint)
    seed: int = attrs.field(default=42, validator=v.integer(0))
