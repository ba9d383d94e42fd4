"""JSON round trip for the attrs types of sda (configs, events, summaries, history).

``to_jsonable`` turns an attrs instance into plain dicts, lists, strings and numbers;
``from_jsonable`` rebuilds it from the field types, so ``from_jsonable(T, to_jsonable(x)) == x``
for every type in ``sda_core``. Unknown keys are an error naming the type and the allowed keys.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

import attrs

from sda_core.errors import ConfigError

_NONE_TYPE = type(None)


def to_jsonable(value: Any) -> Any:
    """Convert an attrs instance (or a container of them) into JSON-compatible values."""
    if attrs.has(type(value)):
        return {
            field.name: to_jsonable(getattr(value, field.name))
            for field in attrs.fields(type(value))
            if field.init
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    return value


def from_jsonable(cls: Any, data: Any) -> Any:
    """Rebuild a value of type ``cls`` from what :func:`to_jsonable` produced."""
    if data is None:
        return None
    if attrs.has(cls):
        return _attrs_from_dict(cls, data)
    origin = typing.get_origin(cls)
    args = typing.get_args(cls)
    if origin in (typing.Union, types.UnionType):
        for candidate in args:
            if candidate is _NONE_TYPE:
                continue
            return from_jsonable(candidate, data)
    if origin is tuple:
        item_type = args[0] if args else Any
        return tuple(from_jsonable(item_type, item) for item in data)
    if origin is list:
        item_type = args[0] if args else Any
        return [from_jsonable(item_type, item) for item in data]
    if origin is dict:
        value_type = args[1] if len(args) == 2 else Any
        return {key: from_jsonable(value_type, item) for key, item in data.items()}
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        return cls(data)
    if cls is float and isinstance(data, int):
        return float(data)
    return data


def _attrs_from_dict(cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(cls.__name__, data, "a table of settings")
    attrs.resolve_types(cls)
    fields = {field.name: field for field in attrs.fields(cls) if field.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError.unknown_key(unknown[0], fields, owner=cls.__name__)
    kwargs = {name: from_jsonable(fields[name].type, value) for name, value in data.items()}
    return cls(**kwargs)
