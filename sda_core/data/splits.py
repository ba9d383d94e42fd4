"""A saved file split and a resumed run: reuse it, report what changed, never move files.

A run's split is saved with it (``dataset.json`` and every checkpoint). When a run resumes, the
saved split is reused and checked against the files present now: files that are gone are dropped
and reported, files added since are reported and, by default, used in neither set, so the
validation set keeps its meaning across the whole run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from sda_core.atomic import write_text_atomic
from sda_core.config.dataset import AudioFileInfo, FileSplit
from sda_core.errors import DatasetError, RunDataError
from sda_core.serialization import from_stored


@attrs.frozen(kw_only=True)
class SplitReconciliation:
    """A saved split checked against the files present now.

    Attributes:
        split: the split to use: the saved one, less missing files (plus added files in
            training when ``include_added`` was set).
        added: paths present now that the saved split does not hold, sorted.
        missing: paths of the saved split that are no longer present, sorted.
        added_to_training: whether ``added`` were put into ``split.train``.
    """

    split: FileSplit
    added: tuple[str, ...] = attrs.field(converter=tuple, default=())
    missing: tuple[str, ...] = attrs.field(converter=tuple, default=())
    added_to_training: bool = False

    @property
    def changed(self) -> bool:
        """Whether the files differ from the saved split at all."""
        return bool(self.added or self.missing)

    def describe(self) -> list[str]:
        """One human sentence per change, for the run log; empty when nothing changed."""
        lines = []
        if self.missing:
            lines.append(
                f"{len(self.missing)} file(s) of the saved split are gone and were dropped: " + ", ".join(self.missing)
            )
        if self.added:
            where = (
                "added to the training set"
                if self.added_to_training
                else "left out of both sets (start a fresh run to use them)"
            )
            lines.append(
                f"{len(self.added)} file(s) are new since the split was saved and were {where}: "
                + ", ".join(self.added)
            )
        return lines


def reconcile_split(
    saved: FileSplit,
    files: Iterable[AudioFileInfo | str],
    *,
    include_added: bool = False,
) -> SplitReconciliation:
    """Check a saved split against the files present now, for a resumed run.

    Files of the saved split that are gone are dropped and reported (``missing``). Files present
    now that the saved split does not hold are reported (``added``) and, by default, used in
    neither set, so the validation set keeps its meaning; with ``include_added=True`` they join
    the training set. No file ever moves from one set to the other.

    Args:
        saved: the split saved with the run.
        files: the usable files now (:class:`AudioFileInfo` or relative paths).
        include_added: put added files into training instead of leaving them out.

    Raises:
        DatasetError: no training file would remain (start a fresh run instead).
    """
    present = {item if isinstance(item, str) else item.path for item in files}
    saved_paths = set(saved.train) | set(saved.validation)
    missing = tuple(sorted(saved_paths - present))
    added = tuple(sorted(present - saved_paths))
    train = sorted(path for path in saved.train if path in present)
    if include_added:
        train = sorted([*train, *added])
    validation = sorted(path for path in saved.validation if path in present)
    if not train and (saved.train or added):
        raise DatasetError(
            "no training file of the saved split is left (missing: "
            + (", ".join(missing) or "none")
            + "); start a fresh run"
            + ("" if include_added or not added else " or include the added files")
        )
    split = FileSplit(train=tuple(train), validation=tuple(validation), seed=saved.seed)
    return SplitReconciliation(
        split=split, added=added, missing=missing, added_to_training=include_added and bool(added)
    )


def save_split(split: FileSplit, path: str | os.PathLike[str]) -> Path:
    """Write a split as JSON atomically (temporary file in the same folder, then ``os.replace``)."""
    return write_text_atomic(path, json.dumps(split.to_dict(), indent=2, sort_keys=True) + "\n")


def load_split(path: str | os.PathLike[str]) -> FileSplit:
    """Read a split written by :func:`save_split` (or the ``split`` entry of a JSON object)."""
    source = Path(path)
    try:
        data: Any = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RunDataError(f"split file '{source}'", f"invalid JSON ({error})") from error
    if isinstance(data, dict) and "train" not in data and isinstance(data.get("split"), dict):
        data = data["split"]
    if not isinstance(data, dict):
        raise RunDataError(
            f"split file '{source}'", f"a JSON {type(data).__name__}, not an object with train, validation and seed"
        )
    return from_stored(FileSplit, data, f"split file '{source}'")
