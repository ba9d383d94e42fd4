"""Reading a run folder from outside the run: what a host shows of a run, finished or in progress.

:func:`read_run` gathers what a run folder holds (config, history, evaluation figures, preview
rounds, checkpoints, who is writing it) into a :class:`RunInfo`; :func:`find_runs` lists the run
folders under a folder. Neither needs the run's lock: the files they read are written atomically,
so a reader sees the previous version or the next one, never half a file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import attrs

from sda_core.config.history import MetricsHistory
from sda_core.errors import RunDataError, SdaError
from sda_core.training.run_folder import RunPaths, holds_run, lock_holder

#: A preview round's folder: ``previews/epoch_0005``.
_ROUND = re.compile(r"^epoch_(\d+)$")
#: What a preview file's name says of its kind: ``sample_01.wav`` -> "sample".
_KIND = re.compile(r"^([a-z]+)_\d+$")


class NotARunError(SdaError, ValueError):
    """The folder given to :func:`read_run` does not exist or holds no sda run."""


@attrs.frozen
class PreviewRound:
    """The preview WAV files of one epoch (``previews/epoch_NNNN``).

    Attributes:
        epoch: the epoch they were rendered after.
        directory: their folder.
        files: the WAV files, sorted by name.
        kinds: each file's kind, from its name (``sample``, ``reconstruction`` ...).
    """

    epoch: int
    directory: Path
    files: tuple[Path, ...]
    kinds: tuple[str, ...]


@attrs.frozen
class RunInfo:
    """What a run folder holds, read without its lock.

    Attributes:
        folder: the run folder.
        config: the resolved config (``config.json``) as a dict, or None before it is written.
        history: the metrics so far (``history.json``), or None before the first epoch.
        evaluation: the figures of ``sda evaluate`` (``evaluation.json``) as a dict, or None.
        previews: the preview rounds, oldest first.
        references: the original chunks the reconstructions rebuild (``previews/references``).
        checkpoints: ``{"last": path, "best": path}`` for those on disk.
        holder: who holds the folder's lock now (pid, action ...), or None when nobody does.
    """

    folder: Path
    config: dict[str, Any] | None
    history: MetricsHistory | None
    evaluation: dict[str, Any] | None
    previews: tuple[PreviewRound, ...]
    references: tuple[Path, ...]
    checkpoints: dict[str, Path]
    holder: dict[str, Any] | None

    @property
    def best_epoch(self) -> int | None:
        """The epoch of the lowest validation loss so far, or None."""
        return None if self.history is None else self.history.best_epoch

    @property
    def best_val_loss(self) -> float | None:
        """The lowest validation loss so far, or None."""
        return None if self.history is None else self.history.best_val_loss

    @property
    def last_epoch(self) -> int:
        """The last epoch in the history (0 before the first)."""
        if self.history is None or not self.history.epochs:
            return 0
        return self.history.epochs[-1].epoch

    @property
    def training(self) -> bool:
        """Whether a process or thread is training in the folder now."""
        return self.holder is not None and self.holder.get("action", "training") == "training"


def read_run(folder: str | os.PathLike[str], *, check_lock: bool = True) -> RunInfo:
    """Read the run in ``folder``.

    Args:
        folder: a run folder written by ``sda train`` / ``Engine.train``.
        check_lock: ask the OS who holds the folder's lock (:func:`lock_holder`); False leaves
            ``holder`` None, for readers polling often.

    Raises:
        NotARunError: ``folder`` is not a folder, or holds no run (no config, no checkpoints).
        RunDataError: one of its JSON files is damaged.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotARunError(f"'{root}' is not a folder")
    if not holds_run(root):
        raise NotARunError(f"'{root}' holds no sda run (no config.json, no checkpoints folder)")
    paths = RunPaths(root)
    history_data = _json(paths.history)
    try:
        history = None if history_data is None else MetricsHistory.from_dict(history_data)
    except (TypeError, ValueError, KeyError) as error:
        raise RunDataError(str(paths.history), str(error)) from error
    return RunInfo(
        folder=root,
        config=_json(paths.config),
        history=history,
        evaluation=_json(paths.evaluation),
        previews=_preview_rounds(paths.previews),
        references=tuple(sorted((paths.previews / "references").glob("*.wav"))),
        checkpoints={name: path for name, path in (("last", paths.last), ("best", paths.best)) if path.exists()},
        holder=lock_holder(root) if check_lock else None,
    )


def find_runs(folder: str | os.PathLike[str], *, depth: int = 2) -> list[Path]:
    """The run folders at most ``depth`` levels below ``folder`` (``folder`` itself included),
    newest first (by the time of their last change). Symbolic links are not followed."""
    found: list[Path] = []

    def visit(path: Path, level: int) -> None:
        if holds_run(path):
            found.append(path)
            return
        if level >= depth:
            return
        try:
            children = sorted(child for child in path.iterdir() if child.is_dir() and not child.is_symlink())
        except OSError:
            return
        for child in children:
            if not child.name.startswith("."):
                visit(child, level + 1)

    visit(Path(folder), 0)
    return sorted(found, key=_changed, reverse=True)


def _changed(run: Path) -> float:
    paths = RunPaths(run)
    times = [path.stat().st_mtime for path in (paths.history, paths.config, run) if path.exists()]
    return max(times, default=0.0)


def _json(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise RunDataError(str(path), f"cannot read it: {error}") from error
    try:
        data = json.loads(text)
    except ValueError as error:
        raise RunDataError(str(path), f"not JSON: {error}") from error
    if not isinstance(data, dict):
        raise RunDataError(str(path), f"it holds {type(data).__name__}, not an object")
    return data


def _preview_rounds(previews: Path) -> tuple[PreviewRound, ...]:
    rounds = []
    try:
        folders = list(previews.iterdir())
    except OSError:
        return ()
    for directory in folders:
        match = _ROUND.match(directory.name)
        if not match or not directory.is_dir():
            continue
        files = tuple(sorted(directory.glob("*.wav")))
        if not files:
            continue
        kinds = tuple(kind.group(1) if (kind := _KIND.match(path.stem)) else path.stem for path in files)
        rounds.append(PreviewRound(int(match.group(1)), directory, files, kinds))
    return tuple(sorted(rounds, key=lambda item: item.epoch))
