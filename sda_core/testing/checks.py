"""One-line checks a plugin author calls in a test: what the plugin makes follows sda's interfaces,
and its distribution's entry point loads and registers cleanly.

``check_model``, ``check_transform`` and ``check_dataset`` are
:mod:`sda_core.training.conformance`'s (the checks the engine itself runs where it can), imported
when first called so that loading the kit imports no torch. Each raises one
:class:`~sda_core.errors.ConformanceError` listing every problem it found.
"""

from __future__ import annotations

import importlib.metadata
import re
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sda_core.errors import ConformanceError

if TYPE_CHECKING:
    from sda_core.config import TrainingConfig
    from sda_core.hooks.host import PluginInfo


def check_model(model: Any, config: TrainingConfig, audio: Any = None) -> None:
    """Check a model against ``sda_core.training.model.GenerativeModel`` for ``config``.

    Its members, then one call of ``loss`` (with gradients), ``encode`` and ``decode``,
    ``reconstruct`` and ``generate`` on ``audio`` (a batch (batch, channels, samples); two chunks
    of quiet noise by default). See :func:`sda_core.training.conformance.check_model`.
    """
    from sda_core.training.conformance import check_model as check

    check(model, config, audio)


def check_transform(transform: Any, *, sample_rate: int = 22050, seconds: float = 1.0, draws: int = 8) -> None:
    """Check an augmentation transform: its members, that it pickles (and the copy works the
    same), and on a synthetic mono and stereo chunk for ``draws`` seeds that ``sample`` draws
    JSON-compatible parameters from the generator it is given alone and ``apply`` returns finite
    float32 audio of the shape it was given, the same for the same parameters. See
    :func:`sda_core.training.conformance.check_transform`."""
    from sda_core.training.conformance import check_transform as check

    check(transform, sample_rate=sample_rate, seconds=seconds, draws=draws)


def check_dataset(dataset: Any, config: TrainingConfig, *, items: int = 3) -> None:
    """Check a dataset against the ``sda_make_dataset`` contract: a map-style dataset whose items
    are float32 tensors of ``config.channels`` x chunk samples, finite, the same for the same key,
    that collate into a batch, and that pickles into DataLoader workers giving the same items. See
    :func:`sda_core.training.conformance.check_dataset`."""
    from sda_core.training.conformance import check_dataset as check

    check(dataset, config, items=items)


def check_entry_point(name: str, distribution: str | None = None, hooks: Iterable[str] = ()) -> PluginInfo:
    """Check that the plugin ``name`` is installed in the ``sda`` entry-point group and that sda
    loads and registers it without a problem; returns how ``sda plugins`` reports it.

    Args:
        name: the entry-point name (the plugin's name).
        distribution: the distribution that must provide it (``"sda-loss-table"``), if given.
        hooks: hooks it must implement (at least these).

    The plugin is loaded the way ``sda`` loads it: by an Engine whose ``SDA_LOAD_PLUGINS``
    allowlist names it alone, which imports the entry point, makes one instance of a class,
    checks its hook implementations (:mod:`sda_core.hooks.validation`: unknown hooks, arguments a
    hook does not pass, ``sda_*`` routines without ``@hookimpl``) and registers it. Every problem
    is listed in one :class:`~sda_core.errors.ConformanceError`: not installed (with the names
    that are, and the closest), provided by another distribution or by two, failed to import,
    to start or to register (sda's reason), a warning while loading, no hook at all, a hook
    missing.
    """
    from sda_core.engine import Engine
    from sda_core.hooks.host import ENTRYPOINT_GROUP, LOADED

    expected = f"an installed distribution registering {name!r} in the {ENTRYPOINT_GROUP!r} entry-point group"
    found = [ep for ep in importlib.metadata.entry_points(group=ENTRYPOINT_GROUP) if ep.name == name]
    if not found:
        installed = sorted({ep.name for ep in importlib.metadata.entry_points(group=ENTRYPOINT_GROUP)})
        from difflib import get_close_matches

        close = get_close_matches(name, installed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConformanceError(
            f"no entry point {name!r} in the {ENTRYPOINT_GROUP!r} group{hint}; the group holds "
            + (", ".join(installed) or "none"),
            expected + " (install it, e.g. pip install -e ., and check [project.entry-points.sda] in pyproject.toml)",
        )
    problems: list[ConformanceError] = []
    providers = sorted({_dist_name(ep) or "?" for ep in found})
    if len(found) > 1:
        problems.append(
            ConformanceError(
                f"{len(found)} entry points named {name!r} ({', '.join(providers)})",
                "one: the second plugin to claim a name is refused",
            )
        )
    if distribution is not None and not any(_same_name(_dist_name(ep), distribution) for ep in found):
        problems.append(
            ConformanceError(f"the entry point {name!r} from {', '.join(providers)}", f"it from {distribution!r}")
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = Engine(environ={"SDA_LOAD_PLUGINS": name}, strict=False)
    info = next((info for info in engine.plugin_infos() if info.name == name), None)
    if info is None or info.status != LOADED:
        reason = info.reason if info is not None else "it was not loaded"
        problems.append(ConformanceError(f"plugin {name!r}, which {reason}", f"it to be {LOADED}"))
    for warning in caught:
        text = str(warning.message)
        if info is not None and info.status != LOADED and info.reason and info.reason in text:
            continue  # the failure above, said again as a warning
        problems.append(ConformanceError(f"a warning while loading it: {text}", "none"))
    if info is not None and info.status == LOADED:
        if not info.hooks:
            problems.append(ConformanceError(f"plugin {name!r} implementing no sda hook", "at least one @hookimpl"))
        missing = [hook for hook in hooks if hook not in info.hooks]
        if missing:
            problems.append(
                ConformanceError(f"plugin {name!r} implementing {', '.join(info.hooks)}", f"also {', '.join(missing)}")
            )
    if problems:
        raise ConformanceError.of(problems)
    return info


def _dist_name(entry_point: importlib.metadata.EntryPoint) -> str | None:
    dist = getattr(entry_point, "dist", None)
    return dist.name if dist is not None else None


def _same_name(first: str | None, second: str) -> bool:
    """Distribution names compared as pip does (PEP 503: case, ``-``, ``_`` and ``.`` alike)."""
    return first is not None and re.sub(r"[-_.]+", "-", first).lower() == re.sub(r"[-_.]+", "-", second).lower()
