"""The run folder: its layout, one writer at a time, and no fresh run on top of an old one.

:class:`RunPaths` is the one place that knows where a run keeps its files (config, split,
history, checkpoints, previews, generated sounds, evaluation).

A process that writes into a run folder (training, a resumed run, ``sda generate`` or ``sda
evaluate`` writing there) holds :class:`RunLock`: an exclusive OS lock (``flock`` on POSIX, a
byte-range lock on Windows) on the file ``.sda-run.lock`` inside the folder. The operating system
releases it when the process ends, however it ends (SIGKILL, a crash, a power cut), so a lock is
never stale. The file also holds the holder's process id, start time and command, which a refused
writer names. Locks are per open file, so two threads of one process exclude each other too.

Readers (plots, the studio, ``sda scan``) take no lock: every run file is written atomically, so
they never see half of one.

:func:`prepare_run_folder` is what a fresh run does under the lock: an empty (or new) folder is
used as is, a folder holding a run is refused (:class:`RunExistsError`, naming the run's last epoch
and best loss and the three ways on) or, with ``overwrite``, emptied first so that nothing of two
runs is ever mixed.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import attrs

from sda_core.errors import RunExistsError, RunFolderBusyError

LAST, BEST = "last.pt", "best.pt"
#: The lock file inside a run folder (hidden; it stays after the run, harmless and empty of meaning
#: once no process holds it).
LOCK_FILENAME = ".sda-run.lock"
#: What marks a folder as holding a run: its config, or its checkpoints folder (made first).
RUN_MARKERS = ("config.json", "checkpoints")  # RunPaths.config, RunPaths.checkpoints
#: On Windows the lock covers one byte far past the holder record, so the record stays readable.
_WINDOWS_LOCK_OFFSET = 2**20


@attrs.frozen
class RunPaths:
    """Where a run keeps its files."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset.json"

    @property
    def history(self) -> Path:
        return self.root / "history.json"

    @property
    def providers(self) -> Path:
        """Which plugins made the model, the datasets and the split (:mod:`sda_core.training.provenance`)."""
        return self.root / "providers.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / LAST

    @property
    def best(self) -> Path:
        return self.checkpoints / BEST

    @property
    def previews(self) -> Path:
        return self.root / "previews"

    @property
    def generated(self) -> Path:
        """Where ``sda generate`` writes by default."""
        return self.root / "generated"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation.json"

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILENAME

    def weights(self) -> Path:
        """The checkpoint to generate from: ``best.pt``, else ``last.pt``."""
        return self.best if self.best.exists() else self.last


def default_run_dir(data_dir: str | Path) -> Path:
    """``runs/<name of the data folder>``."""
    return Path("runs") / Path(data_dir).resolve().name


class RunLock:
    """An exclusive lock on a run folder, held from :meth:`acquire` to :meth:`release`.

    ``action`` says what the holder does ("training", "generating" ...) for the message another
    writer gets. Creates the folder (and missing parents) if needed; :meth:`release` removes them
    again when this lock created them and nothing else was written there.
    """

    def __init__(self, folder: str | os.PathLike[str], action: str = "writing") -> None:
        self.folder = Path(folder)
        self.action = action
        self.path = self.folder / LOCK_FILENAME
        self._fd: int | None = None
        self._created: list[Path] = []  # the folders acquire made, innermost first

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunFolderBusyError` naming its holder; never waits."""
        if self._fd is not None:
            raise RuntimeError("this RunLock is already held")
        self._created = []
        if not self.folder.exists():
            self._created = [self.folder, *(parent for parent in self.folder.parents if not parent.exists())]
            self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = _try_lock(fd)
            except BaseException:
                os.close(fd)
                raise
            if not locked:
                os.close(fd)
                raise RunFolderBusyError(self.folder, read_holder(self.folder))
            # The file may have been removed (and re-created by another writer) between open and
            # lock: then this lock guards nothing; start again on the file now at the path.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        self._write_holder()
        return self

    def release(self) -> None:
        """Let go of the lock (idempotent). Removes the lock file, and the folder when this lock
        created it, if nothing else is there."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _only_the_lock_file(self.folder):
                # Unlink while still locked: a writer that opened the old file re-checks the path.
                try:
                    self.path.unlink()
                except OSError:
                    pass
                for folder in self._created:  # innermost first; stops at the first that holds anything
                    try:
                        folder.rmdir()
                    except OSError:
                        break
            else:
                os.ftruncate(fd, 0)
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the last descriptor releases the OS lock

    def __enter__(self) -> RunLock:
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _write_holder(self) -> None:
        record = {
            "pid": os.getpid(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "action": self.action,
            "command": " ".join(sys.argv)[:500],
        }
        data = (json.dumps(record) + "\n").encode("utf-8")
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, data)


def read_holder(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the lock file of ``folder`` says of its holder (pid, started, action, command), or
    None when there is no readable record. Needs no lock; retries briefly while a new holder is
    writing its record."""
    path = Path(folder) / LOCK_FILENAME
    for _attempt in range(5):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            return None
        try:
            record = json.loads(text)
        except ValueError:
            time.sleep(0.02)
            continue
        return record if isinstance(record, dict) else None
    return None


def lock_holder(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who holds the lock of ``folder`` now: its holder record (pid, started, action, command; an
    empty dict if the record cannot be read), or None when no process or thread holds it.

    Unlike :func:`read_holder`, which reads what the last holder wrote (a process that was killed
    leaves its record behind), this asks the OS: it takes the lock for an instant when it is free,
    so a writer starting in that instant gets :class:`RunFolderBusyError`. Call it when a user
    asks (listing runs, before a start), not in a tight loop. Never creates the folder.
    """
    path = Path(folder) / LOCK_FILENAME
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:  # no lock file: no holder (a holder keeps its file until it releases)
        return None
    try:
        if _try_lock(fd):
            _unlock(fd)
            return None
    finally:
        os.close(fd)
    return read_holder(folder) or {}


def holds_run(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds (part of) an sda run: its config or its checkpoints folder."""
    root = Path(folder)
    return any((root / marker).exists() for marker in RUN_MARKERS)


def describe_run(folder: str | os.PathLike[str]) -> tuple[int | None, float | None, int | None]:
    """(last epoch, best validation loss, best epoch) of the run in ``folder``, from its
    ``history.json``; Nones where the run saved no epoch or the file cannot be read."""
    try:
        history = json.loads(RunPaths(Path(folder)).history.read_text(encoding="utf-8"))
        epochs = history.get("epochs") or []
        last = max((int(item["epoch"]) for item in epochs), default=None)
        scored = [(float(item["val_loss"]), int(item["epoch"])) for item in epochs if item.get("val_loss") is not None]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None, None, None
    if not scored:
        return last, None, None
    best_loss, best_epoch = min(scored)
    return last, best_loss, best_epoch


def prepare_run_folder(folder: str | os.PathLike[str], *, overwrite: bool = False) -> list[str]:
    """Make ``folder`` ready for a fresh run; call it while holding its :class:`RunLock`.

    An empty (or new) folder is used as is. A folder holding a run that saved an epoch raises
    :class:`RunExistsError` unless ``overwrite``: then everything in it but the lock is deleted
    first. The files of a run that never saved an epoch (a start that failed) are deleted with a
    warning. A folder holding other files is never used nor emptied. Returns what was deleted.
    """
    root = Path(folder)
    entries = [entry for entry in root.iterdir() if entry.name != LOCK_FILENAME] if root.is_dir() else []
    if not entries:
        return []
    if not holds_run(root):
        raise RunExistsError(
            root,
            f"'{root}' is not empty and holds no sda run ({len(entries)} other entries); "
            "train into a new or empty folder with --out NEW",
        )
    saved = saved_an_epoch(root)
    if saved and not overwrite:
        last_epoch, best_loss, best_epoch = describe_run(root)
        what = f"a run trained to epoch {last_epoch}" if last_epoch is not None else "a run with checkpoints"
        if best_loss is not None:
            what += f" (best validation loss {best_loss:.4f} at epoch {best_epoch})"
        raise RunExistsError(
            root,
            f"'{root}' already holds {what}; continue it with --resume {root}, train into a new "
            "folder with --out NEW, or replace it with --overwrite",
            last_epoch=last_epoch,
            best_val_loss=best_loss,
            best_epoch=best_epoch,
        )
    removed = []
    for entry in sorted(entries):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry.name)
    if saved:
        message = f"deleted the earlier run in '{root}' as asked (--overwrite): {', '.join(removed)}"
    else:
        message = f"deleted what a run that saved no epoch left in '{root}': {', '.join(removed)}"
    warnings.warn(message, UserWarning, stacklevel=2)
    return removed


def saved_an_epoch(folder: str | os.PathLike[str]) -> bool:
    """Whether the run in ``folder`` saved at least one epoch (a checkpoint or its history)."""
    root = Path(folder)
    checkpoints = RunPaths(root).checkpoints
    has_checkpoint = checkpoints.is_dir() and any(path.suffix == ".pt" for path in checkpoints.iterdir())
    return has_checkpoint or RunPaths(root).history.exists()


def _only_the_lock_file(folder: Path) -> bool:
    try:
        return [entry.name for entry in folder.iterdir()] == [LOCK_FILENAME]
    except OSError:
        return False


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        finally:
            os.lseek(fd, 0, os.SEEK_SET)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
