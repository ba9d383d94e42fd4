"""What a plugin declares, and its registration problems in plain words.

pluggy validates hook implementations, but its messages are written for pluggy's own users: an
unknown hook is ``unknown hook 'sda_on_epochs' in plugin <module 'x' from '...'>``, a wrong argument
``Argument(s) {'evnt'} are declared in the hookimpl but can not be found in the hookspec``, and a
``sda_*`` method without the ``@hookimpl`` marker is silently never called. This module checks a
plugin object before it is registered and says, for each problem, what is wrong and what would be
right: the closest hook name, the hook's real arguments, the function by its qualified name.

It also tells which hooks a plugin declares, from the object or, for a plugin that failed to
import, from its source text (read, never run), so that the host can tell a plugin a run depends
on (a provider, a collector) from one that only observes.
"""

from __future__ import annotations

import ast
import difflib
import importlib.machinery
import importlib.util
import inspect
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import pluggy

from sda_core.hooks import specs as hookspecs

#: Every hook of the contract.
HOOK_NAMES: tuple[str, ...] = (
    hookspecs.PROVIDER_HOOKS + hookspecs.COLLECTOR_HOOKS + hookspecs.CHECK_HOOKS + hookspecs.CONSUMER_HOOKS
)
#: Hooks whose answers shape a run (the model, the data, the split, the transforms, the metrics):
#: a run must not go on without a plugin that implements one of them.
SHAPING_HOOKS: frozenset[str] = frozenset(hookspecs.PROVIDER_HOOKS + hookspecs.COLLECTOR_HOOKS)
#: Source files read, at most, to find the hooks of a package that failed to import.
_MAX_SOURCE_FILES = 200


@attrs.frozen
class Declaration:
    """One ``sda_*`` routine of a plugin, or one routine carrying the ``@hookimpl`` marker.

    Attributes:
        hook: the hook it implements (its ``specname``, else its attribute name).
        where: the routine's qualified name, ``module.Class.method`` or ``module.function``.
        argnames: the arguments pluggy passes it (those without defaults, ``self`` excluded).
        marked: whether it carries ``@hookimpl``.
        optional: ``@hookimpl(optionalhook=True)``: an unknown hook name is allowed.
    """

    hook: str
    where: str
    argnames: tuple[str, ...] = ()
    marked: bool = True
    optional: bool = False


def closest_hook(name: str, cutoff: float = 0.6) -> str | None:
    """The hook of the contract whose name is closest to ``name`` (difflib), or None."""
    close = difflib.get_close_matches(name, HOOK_NAMES, n=1, cutoff=cutoff)
    return close[0] if close else None


def declarations(pm: pluggy.PluginManager, plugin: object) -> list[Declaration]:
    """The hook implementations of ``plugin`` (marked routines) and its unmarked ``sda_*`` routines.

    The plugin's attributes are read from the dicts of the module, or of the instance and its
    classes, so properties and other descriptors never run; only the few candidates are then
    looked up the way pluggy registers them.
    """
    marker = pm.project_name + "_impl"
    found = []
    for attribute, value in _static_attributes(plugin).items():
        routine = inspect.isroutine(value) or isinstance(value, (staticmethod, classmethod))
        if not routine or not (attribute.startswith("sda_") or _marked(value, marker)):
            continue
        try:
            opts = pm.parse_hookimpl_opts(plugin, attribute)
            function = getattr(plugin, attribute)
        except Exception:  # noqa: BLE001 - a broken attribute is pluggy's to reject, not ours
            continue
        if opts is None and not attribute.startswith("sda_"):
            continue
        argnames: tuple[str, ...] = ()
        if opts is not None:
            try:
                argnames = tuple(pluggy.HookImpl(plugin, "?", function, opts).argnames)
            except Exception:  # noqa: BLE001 - pluggy reports what it cannot read when registering
                argnames = ()
        found.append(
            Declaration(
                hook=(opts or {}).get("specname") or attribute,
                where=qualified_name(function, attribute),
                argnames=argnames,
                marked=opts is not None,
                optional=bool((opts or {}).get("optionalhook")),
            )
        )
    return found


def problems(pm: pluggy.PluginManager, plugin: object, found: list[Declaration] | None = None) -> list[str]:
    """Why ``plugin`` cannot be registered, one sentence per hook implementation at fault.

    An unknown hook name gives the closest hook; an argument the hook does not pass gives the
    hook's real arguments. An empty list: nothing wrong that sda checks before pluggy does.
    ``found``: the plugin's :func:`declarations`, when the caller has them already.
    """
    sentences = []
    for declaration in declarations(pm, plugin) if found is None else found:
        if not declaration.marked:
            continue
        caller = getattr(pm.hook, declaration.hook, None)
        spec = getattr(caller, "spec", None)
        if spec is None:
            if declaration.optional:
                continue  # @hookimpl(optionalhook=True): a hook that may not exist
            close = closest_hook(declaration.hook)
            hint = f" (did you mean {close!r}?)" if close else " (docs/hooks.md lists them)"
            sentences.append(f"{declaration.where} implements {declaration.hook!r}, which is not an sda hook{hint}")
            continue
        allowed = tuple(spec.argnames) + tuple(getattr(spec, "kwargnames", ()))
        unknown = [name for name in declaration.argnames if name not in allowed]
        if unknown:
            asked = ", ".join(repr(name) for name in unknown)
            sentences.append(
                f"{declaration.where}({', '.join(declaration.argnames)}) asks for {asked}, which "
                f"{declaration.hook} does not pass; it passes {', '.join(spec.argnames)} "
                "(an implementation takes any of them, by name)"
            )
    return sentences


def unmarked(pm: pluggy.PluginManager, plugin: object, found: list[Declaration] | None = None) -> list[str]:
    """One sentence for each ``sda_*`` routine of ``plugin`` without the ``@hookimpl`` marker."""
    sentences = []
    for declaration in declarations(pm, plugin) if found is None else found:
        if declaration.marked:
            continue
        close = None if declaration.hook in HOOK_NAMES else closest_hook(declaration.hook)
        hint = f" (and {declaration.hook!r} is not an sda hook: did you mean {close!r}?)" if close else ""
        sentences.append(
            f"{declaration.where} is named like a hook but has no @hookimpl marker, so sda never "
            f"calls it{hint}; mark it with @hookimpl (from sda_core import hookimpl)"
        )
    return sentences


def declared_hooks(pm: pluggy.PluginManager, plugin: object, found: list[Declaration] | None = None) -> tuple[str, ...]:
    """The hooks ``plugin`` marks with ``@hookimpl`` (misspelt ones included), sorted."""
    return tuple(sorted({item.hook for item in (declarations(pm, plugin) if found is None else found) if item.marked}))


def hooks_in_source(module_name: str) -> tuple[str, ...] | None:
    """The ``sda_*`` functions and methods defined in a module's source (a package: all its
    modules), found by parsing it, never by importing it; None when it cannot be read or defines
    none (then nobody can tell what the plugin would have done)."""
    path = _module_file(module_name)
    if path is None:
        return None
    files = sorted(path.parent.rglob("*.py"))[:_MAX_SOURCE_FILES] if path.name == "__init__.py" else [path]
    names: set[str] = set()
    for file in files:
        try:
            tree = ast.parse(file.read_bytes(), filename=str(file))
        except (OSError, SyntaxError, ValueError):
            return None
        names.update(
            node.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("sda_")
        )
    return tuple(sorted(names)) or None


def shaping(hooks: Iterable[str]) -> tuple[str, ...]:
    """The hooks among ``hooks`` (a misspelt name counts as the hook it is closest to) whose
    answers shape a run: providers and collectors."""
    result = []
    for name in hooks:
        meant = name if name in HOOK_NAMES else closest_hook(name)
        if meant in SHAPING_HOOKS:
            result.append(name)
    return tuple(result)


def qualified_name(function: Any, default: str = "?") -> str:
    """``module.Class.method`` or ``module.function``: how messages name a hook implementation."""
    function = getattr(function, "__func__", function)
    qualname = getattr(function, "__qualname__", None) or getattr(function, "__name__", None) or default
    module = getattr(function, "__module__", None)
    return f"{module}.{qualname}" if module else str(qualname)


def _static_attributes(plugin: object) -> dict[str, Any]:
    """Name -> raw value of every attribute of a module, a class or an instance (its classes'
    dicts, then its own), read without running any descriptor."""
    if isinstance(plugin, types.ModuleType):
        return dict(vars(plugin))
    classes = plugin.__mro__ if isinstance(plugin, type) else type(plugin).__mro__
    attributes: dict[str, Any] = {}
    for klass in reversed(classes):
        attributes.update(vars(klass))
    if not isinstance(plugin, type):
        attributes.update(getattr(plugin, "__dict__", {}))
    return attributes


def _marked(value: Any, marker: str) -> bool:
    """Whether a raw attribute value (a function, or a static/class method around one) carries
    the ``@hookimpl`` marker."""
    return isinstance(getattr(value, marker, None), dict) or isinstance(
        getattr(getattr(value, "__func__", None), marker, None), dict
    )


def _module_file(module_name: str) -> Path | None:
    """The source file of a module, found without importing it (nor, for a submodule, its
    parents: their search paths are followed instead)."""
    parts = module_name.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: nothing is imported
        for depth in range(1, len(parts)):
            locations = spec.submodule_search_locations if spec is not None else None
            if not locations:
                return None
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: depth + 1]), list(locations))
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    if spec is None or not origin or not getattr(spec, "has_location", False) or not origin.endswith(".py"):
        return None
    return Path(origin)
