"""JSON round trip for the attrs types of sda (configs, events, summaries, history).

``to_jsonable`` turns an attrs instance into plain dicts, lists, strings and numbers;
``from_jsonable`` rebuilds it from the field types, so ``from_jsonable(T, to_jsonable(x)) == x``
for every type in ``sda_core``. Unknown keys are an error naming the type and the allowed keys;
a value of the wrong shape is a :class:`ConfigError` naming the (dotted) field: configuration.
``from_stored`` is the same for data sda stored and reads back (run files, events), where a
mismatch is a :class:`RunDataError` instead.
"""

from __future__ import annotations

import enum
import os
import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs

from sda_core.errors import ConfigError, RunDataError
from sda_core.validators import enum_converter

_NONE_TYPE = type(None)


#: Values returned as they are: checked first, since a run's history is mostly numbers (a
#: 1,200-step history converted in 0.09 s through the attrs check first, and in 0.02 s this way).
_SCALARS = frozenset({int, float, str, bool, _NONE_TYPE})


def to_jsonable(value: Any) -> Any:
    """Convert an attrs instance (or a container of them) into JSON-compatible values."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if attrs.has(kind):
        return {field.name: to_jsonable(getattr(value, field.name)) for field in attrs.fields(kind) if field.init}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def from_jsonable(cls: Any, data: Any, name: str | None = None) -> Any:
    """Rebuild a value of type ``cls`` from what :func:`to_jsonable` produced.

    ``name`` is the (dotted) field the value belongs to; errors name it. Values of the wrong
    shape for a container or enum type raise :class:`ConfigError`; scalar values are passed on
    unchanged, for the attrs validators of the target class to judge.
    """
    if data is None:
        return None
    if attrs.has(cls):
        return _attrs_from_dict(cls, data, name)
    origin = typing.get_origin(cls)
    args = typing.get_args(cls)
    if origin in (typing.Union, types.UnionType):
        for candidate in args:
            if candidate is _NONE_TYPE:
                continue
            return from_jsonable(candidate, data, name)
    if origin in (tuple, list):
        if not isinstance(data, (list, tuple)):
            raise ConfigError(name or _type_name(cls), data, "a list")
        item_type = args[0] if args else Any
        items = [from_jsonable(item_type, item, f"{name or ''}[{index}]") for index, item in enumerate(data)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(data, Mapping):
            raise ConfigError(name or _type_name(cls), data, "a table")
        value_type = args[1] if len(args) == 2 else Any
        return {key: from_jsonable(value_type, item, _join(name, str(key))) for key, item in data.items()}
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        return enum_converter(cls, name or cls.__name__)(data)
    if cls is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    return data


def from_stored(cls: Any, data: Any, what: str | None = None) -> Any:
    """:func:`from_jsonable` for data sda stored (a run's files, events): any mismatch, an unknown
    key or a bad value, is a :class:`RunDataError` naming ``what`` (default: the type's name)."""
    try:
        return from_jsonable(cls, data)
    except ConfigError as error:
        raise RunDataError(what or _type_name(cls), str(error)) from error


def _attrs_from_dict(cls: type, data: Any, name: str | None = None) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(name or cls.__name__, data, "a table of settings")
    attrs.resolve_types(cls)
    fields = {field.name: field for field in attrs.fields(cls) if field.init}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        owner = f"the [{name}] table" if name else cls.__name__
        raise ConfigError.unknown_key(str(unknown[0]), fields, owner=owner)
    kwargs = {key: from_jsonable(fields[key].type, value, _join(name, key)) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as error:
        if name is None:
            raise
        raise prefixed(error, name) from None


def prefixed(error: ConfigError, prefix: str) -> ConfigError:
    """``error`` with its field shown as ``prefix.field`` (unknown-key errors are kept as is)."""
    if not str(error).startswith(f"{error.field}:") or error.field.startswith(prefix + "."):
        return error
    return ConfigError(f"{prefix}.{error.field}", error.value, error.allowed)


def _join(name: str | None, key: str) -> str:
    return key if name is None else f"{name}.{key}"


def _type_name(cls: Any) -> str:
    return getattr(cls, "__name__", str(cls))
