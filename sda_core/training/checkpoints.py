"""Checkpoints: written atomically, loaded with ``torch.load(weights_only=True)``.

A checkpoint is a dict of state dicts, tensors and JSON-able values only, never pickled objects,
so loading one runs no code from it. A file that needs more than that (a pickle payload) is
refused with :class:`CheckpointError` before anything in it is executed.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from sda_core.atomic import write_atomic
from sda_core.errors import CheckpointError, SdaError  # noqa: F401 (CheckpointError: public here too)
from sda_core.training.run_folder import BEST, LAST  # noqa: F401 (public here too)

FORMAT = "sda-checkpoint"
VERSION = 1


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` atomically: a crash or a full disk never leaves a partial file in place."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    return write_atomic(path, lambda stream: torch.save(payload, stream))


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; anything else is a :class:`CheckpointError`."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint '{source}' does not exist")
    try:
        state = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing checkpoint '{source}': it holds objects other than tensors and plain data, "
            f"and loading it could run code ({_first_line(error)})"
        ) from None
    except Exception as error:  # damaged bytes surface as IndexError, KeyError ... from the unpickler
        raise CheckpointError(f"checkpoint '{source}' is unreadable: {_first_line(error)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"'{source}' is not an sda checkpoint")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"checkpoint '{source}' was written by a newer sda (format {state['version']})")
    return state


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
