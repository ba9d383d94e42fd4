"""Every exception and warning class sda raises on purpose; each message is one sentence a user can act on.

A foundation module: it imports neither torch nor numpy, so a host can catch any sda error cheaply.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class SdaError(Exception):
    """Base class of every error sda raises on purpose."""


class ConfigError(SdaError, ValueError):
    """An invalid setting: the message names the field, the value and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: {value!r} is not allowed; expected {allowed}")

    @classmethod
    def unknown_key(cls, key: str, known: Iterable[str], owner: str = "settings") -> "ConfigError":
        names = sorted(known)
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        error = cls(key, key, "one of " + ", ".join(names))
        error.args = (f"unknown key {key!r} in {owner}{hint}; allowed keys: {', '.join(names)}",)
        return error


class RunDataError(SdaError, ValueError):
    """Data sda stored and reads back is damaged: a run's split, history, scan report or events.

    The rule: what a user wrote (``sda.toml``, ``--set``, the Python overrides, ``[plugins.NAME]``
    tables, a TrainingConfig) is configuration, and a bad value there is a :class:`ConfigError`;
    what sda or a plugin wrote to a file and rebuilds with ``from_dict`` / ``event_from_dict`` /
    ``load_split`` is run data, and a mismatch there is a RunDataError (the ``sda`` command exits
    with code 1, as for a damaged checkpoint).

    Attributes:
        what: the data that is damaged (a type name, or a file).
        reason: what is wrong with it.
    """

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"damaged {what}: {reason}")


class PluginError(SdaError):
    """A plugin failed to load, was invalid, or a provider hook raised or answered wrongly."""

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(message)


class ConformanceError(SdaError, TypeError):
    """An object a plugin made does not follow the interface sda expects of it: a model that lacks
    ``loss``, a ``loss`` that answers a tensor instead of a dict, a transform that changes the
    shape of the audio, a dataset whose items are not chunks ... Raised by the conformance checks
    (:mod:`sda_core.training.conformance`, and through them ``check_model``, ``check_transform``
    and ``check_dataset`` of the testing kit); where the engine checks a provider's answer, it
    becomes a :class:`PluginError` naming the plugin and the hook.

    One error lists every problem a check found, not only the first: with one problem the message
    is ``got FOUND; expected EXPECTED``, with several it is ``N problems:`` followed by one such
    line per problem.

    Attributes:
        found: what came, as a noun phrase ("a Linear, which lacks loss and encode"); the first
            problem's where there are several.
        expected: what was expected instead (the first problem's).
        problems: ``(found, expected)`` of every problem, in the order they were found.
    """

    def __init__(self, found: str, expected: str, more: Iterable[tuple[str, str]] = ()) -> None:
        self.found = found
        self.expected = expected
        self.problems: tuple[tuple[str, str], ...] = ((found, expected), *((str(f), str(e)) for f, e in more))
        if len(self.problems) == 1:
            message = f"got {found}; expected {expected}"
        else:
            message = f"{len(self.problems)} problems:" + "".join(
                f"\n  {number}. got {what}; expected {wanted}"
                for number, (what, wanted) in enumerate(self.problems, start=1)
            )
        super().__init__(message)

    @classmethod
    def of(cls, errors: Iterable[ConformanceError]) -> ConformanceError:
        """One error holding the problems of ``errors`` (at least one), in order."""
        pairs = [pair for error in errors for pair in error.problems]
        if not pairs:
            raise ValueError("ConformanceError.of needs at least one error")
        return cls(*pairs[0], more=pairs[1:])

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (a DataLoader worker may raise one)
        return (type(self), (self.found, self.expected, self.problems[1:]))


class DatasetError(SdaError):
    """A folder cannot be used as a dataset (missing, empty, or holding no usable audio)."""


class TransformError(PluginError, TypeError):
    """A plugin's ``sda_augmentations`` contributed a transform that does not follow
    :class:`Transform` or does not pickle; the message names the plugin."""


class UsageError(SdaError):
    """A command-line argument cannot be used (exit code 2)."""


class TrainingError(SdaError):
    """Training cannot go on (a non-finite loss, an unusable output folder ...)."""


class PeerStopped(TrainingError):
    """Under torchrun, another process of the run failed or stopped it, and this one stops with it.

    The process where it happened reports why, with its exit code; the others raise this, and
    ``sda train`` on them ends quietly with exit code 0, so that torchrun, which stops every
    process once one fails, does not stop the reporting process before it has reported.

    Attributes:
        ranks: the ranks that failed.
    """

    def __init__(self, ranks: Iterable[int], what: str = "failed") -> None:
        self.ranks = tuple(ranks)
        names = ", ".join(str(rank) for rank in self.ranks)
        super().__init__(f"rank {names} {what}, so every process of the run stops (see rank {self.ranks[0]}'s message)")


class CheckpointError(SdaError):
    """A checkpoint is missing, unreadable, not an sda checkpoint, or carries untrusted objects."""


class GenerationError(SdaError):
    """Sounds cannot be generated as asked (the model takes no temperature, cannot encode ...)."""


class ExportError(SdaError):
    """A run's model cannot be exported (an op the format lacks, a failed check of the files)."""


class AudioReadError(SdaError):
    """An audio file could not be read, or its audio is unusable (NaN or Inf samples).

    Attributes:
        path: the file, as it was passed in.
        reason: what went wrong, without the file name (libsndfile's own words where it has some).
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, message: str | None = None) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(message if message is not None else f"cannot read audio file '{self.path}': {reason}")

    def __reduce__(self) -> tuple[Any, ...]:  # crosses DataLoader worker boundaries intact
        return (type(self), (self.path, self.reason, str(self)))

    @classmethod
    def unreadable(cls, path: str | os.PathLike[str], error: BaseException) -> "AudioReadError":
        """The error for a file libsndfile (or the operating system) refused to open or read."""
        return cls(path, _audio_read_reason(path, error))

    @classmethod
    def non_finite(cls, path: str | os.PathLike[str], frame: int) -> "AudioReadError":
        """The error for audio holding NaN or Inf samples (``frame``: the first such frame)."""
        reason = f"the audio contains NaN or Inf samples (first at frame {frame})"
        message = (
            f"audio file '{os.fspath(path)}' contains NaN or Inf samples (first at frame {frame}); "
            "re-export it as PCM or remove it from the dataset"
        )
        return cls(path, reason, message)


def _audio_read_reason(path: str | os.PathLike[str], error: BaseException) -> str:
    """libsndfile's reason, or the operating system's where libsndfile only says 'System error'."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    text = getattr(error, "error_string", None) or str(error)
    text = text.strip().rstrip(".") or type(error).__name__
    if text.lower() == "system error":
        try:
            os.stat(path)
        except OSError as os_error:
            return os_error.strerror or text
    return text


class PluginLoadWarning(UserWarning):
    """A plugin was skipped because it failed to import, register or validate."""


class PluginRuntimeWarning(UserWarning):
    """A consumer plugin raised; it was isolated and the run went on."""


class RunFolderBusyError(SdaError):
    """Another process (or thread) is writing into the run folder: it holds the folder's lock."""

    def __init__(self, folder: Path, holder: dict[str, Any] | None) -> None:
        self.folder = folder
        self.holder = holder or {}
        who = "another sda process"
        if self.holder.get("pid") is not None:
            who += f" (pid {self.holder['pid']}, started {self.holder.get('started', '?')}"
            if self.holder.get("action"):
                who += f", {self.holder['action']}"
            who += ")"
        super().__init__(
            f"'{folder}' is in use by {who}; wait for it to finish or stop it, or write somewhere else (--out NEW)"
        )


class RunExistsError(SdaError):
    """A fresh run was asked to write into a folder that already holds a run (or other files)."""

    def __init__(
        self,
        folder: Path,
        message: str,
        *,
        last_epoch: int | None = None,
        best_val_loss: float | None = None,
        best_epoch: int | None = None,
    ) -> None:
        self.folder = folder
        self.last_epoch = last_epoch
        self.best_val_loss = best_val_loss
        self.best_epoch = best_epoch
        super().__init__(message)
