"""Which plugins built a run, and the checks that resuming it or using its model makes against that.

A run records, for its model, its datasets and its split, the plugin that answered the provider
hook (its name, distribution and version): in ``providers.json`` in the run folder and under
``"providers"`` in every checkpoint::

    {"model": {"hook": "sda_make_model", "plugin": "my_vae", "distribution": "sda-my-vae",
               "version": "1.2"},
     "dataset": {...}, "split": {...}}

A resumed run, ``sda generate``, ``sda evaluate`` and ``sda export`` rebuild the model through
``sda_make_model``; before its weights are loaded, :func:`require_provider` and
:func:`check_provider` compare the plugins loaded now with the record: the model's plugin not
loaded, or another plugin answering in its place, is one :class:`~sda_core.errors.PluginError`
sentence (instead of torch's "Missing key(s) in state_dict"); the same plugin at another version
is a warning, and the run goes on. For the datasets both are warnings. Runs written before the
record existed have none, and are not checked.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sda_core.atomic import write_text_atomic
from sda_core.errors import CheckpointError, PluginError
from sda_core.hooks.facade import Hooks
from sda_core.training.run_folder import RunPaths

#: What a run records: role -> the provider hook that answers it (for "dataset": the training set's).
PROVIDED: dict[str, str] = {"model": "sda_make_model", "dataset": "sda_make_dataset", "split": "sda_split_files"}


def provider_record(hooks: Hooks, role: str) -> dict[str, Any] | None:
    """The record of the plugin that answered ``role``'s hook last: hook, plugin, distribution and
    version (None for a plugin a host registered itself); None when nobody answered yet, or
    wrappers hid who did."""
    hook_name = PROVIDED[role]
    info = hooks.provider(hook_name, role="train" if role == "dataset" else None)
    if info is None:
        return None
    return {"hook": hook_name, "plugin": info.name, "distribution": info.distribution, "version": info.version}


def record_providers(hooks: Hooks, roles: tuple[str, ...] = tuple(PROVIDED)) -> dict[str, dict[str, Any]]:
    """Records of the providers of ``roles`` that answered (see :func:`provider_record`)."""
    records = {role: provider_record(hooks, role) for role in roles}
    return {role: record for role, record in records.items() if record is not None}


def write_providers(run_dir: str | os.PathLike[str], records: Mapping[str, Any]) -> Path:
    """Write the record to ``providers.json`` in the run folder (atomically)."""
    return write_text_atomic(RunPaths(Path(run_dir)).providers, json.dumps(dict(records), indent=2) + "\n")


def recorded_providers(state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The record a checkpoint holds (empty for runs written before it existed, or a damaged one)."""
    records = state.get("providers")
    if not isinstance(records, Mapping):
        return {}
    return {
        str(role): dict(record)
        for role, record in records.items()
        if isinstance(record, Mapping) and isinstance(record.get("plugin"), str)
    }


def describe_plugin(record: Mapping[str, Any]) -> str:
    """``plugin 'NAME' (DISTRIBUTION VERSION)``, or ``(registered by the host application)``."""
    where = "registered by the host application"
    if record.get("distribution"):
        where = " ".join(str(part) for part in (record["distribution"], record.get("version")) if part)
    return f"plugin {record['plugin']!r} ({where})"


def require_provider(
    records: Mapping[str, Mapping[str, Any]], role: str, hooks: Hooks, run_dir: str | os.PathLike[str], action: str
) -> None:
    """Before asking ``role``'s hook: the plugin the run recorded for it must be loaded now and
    implement the hook, else one :class:`PluginError` sentence ending "... to ``action``" (e.g.
    "resume it", "generate from it"). For the model: nothing is built before this check."""
    record = records.get(role)
    if record is None or _loaded(record, role, hooks):
        return
    raise PluginError(record["plugin"], _not_loaded(record, role, run_dir) + f"; install or enable it to {action}")


def check_provider(
    records: Mapping[str, Mapping[str, Any]], role: str, hooks: Hooks, run_dir: str | os.PathLike[str], action: str
) -> None:
    """After asking ``role``'s hook: the plugin that answered must be the one the run recorded.

    Another plugin is one :class:`PluginError` sentence for the model (weights fit only the model
    they were trained in) and a warning for a dataset (the run goes on with other data); the same
    plugin from another distribution or version is a warning."""
    record = records.get(role)
    now = provider_record(hooks, role)
    if record is None or now is None:
        return
    hook_name = PROVIDED[role]
    if now["plugin"] != record["plugin"]:
        if _loaded(record, role, hooks):
            cause = (
                f"the {role} of run '{run_dir}' was made by {describe_plugin(record)}, but {describe_plugin(now)} "
                f"answers {hook_name} now, ahead of it; disable that one (--disable-plugin {now['plugin']})"
            )
        else:
            cause = (
                _not_loaded(record, role, run_dir) + f", and {describe_plugin(now)} answers {hook_name} in its place; "
                "install or enable it"
            )
        if role == "model":
            raise PluginError(now["plugin"], f"{cause} to {action}")
        warnings.warn(f"{cause} to {action} with the same {role}", UserWarning, stacklevel=2)
    elif (now["distribution"], now["version"]) != (record.get("distribution"), record.get("version")):
        warnings.warn(
            f"the {role} of run '{run_dir}' was made by {describe_plugin(record)}; {describe_plugin(now)} answers "
            f"{hook_name} now, so it may differ from the one the run was trained with",
            UserWarning,
            stacklevel=2,
        )


def _loaded(record: Mapping[str, Any], role: str, hooks: Hooks) -> bool:
    """Whether the recorded plugin is registered now and implements ``role``'s hook."""
    name = record["plugin"]
    return hooks.plugin(name) is not None and hooks.implements(name, PROVIDED[role])


def _not_loaded(record: Mapping[str, Any], role: str, run_dir: str | os.PathLike[str]) -> str:
    return (
        f"the {role} of run '{run_dir}' was made by {describe_plugin(record)}, which is not loaded now "
        "(disabled or not installed)"
    )


def load_model_weights(
    model: Any, weights: Mapping[str, Any], checkpoint: str | os.PathLike[str], record: Mapping[str, Any] | None
) -> None:
    """``model.load_state_dict(weights)``; weights that do not fit are one :class:`CheckpointError`
    sentence naming the checkpoint and the plugin that built the model now, not torch's
    many lines of missing and unexpected keys."""
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        detail = "; ".join(lines[1:3] if len(lines) > 1 else lines)[:300]
        built = describe_plugin(record) if record is not None else "the plugin that answers sda_make_model"
        raise CheckpointError(
            f"the weights in '{checkpoint}' do not fit the {type(model).__name__} that {built} builds now ({detail})"
        ) from None
