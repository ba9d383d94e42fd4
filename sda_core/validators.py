"""attrs validators whose errors name the field, the value and the allowed values."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any

from sda_core.errors import ConfigError

Validator = Callable[[Any, Any, Any], None]


def integer(minimum: int | None = None, maximum: int | None = None, optional: bool = False) -> Validator:
    """An ``int`` (not a bool) within ``[minimum, maximum]``; ``None`` too when ``optional``."""
    bounds = _describe_bounds(minimum, maximum, "an integer")

    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
        if not ok:
            raise ConfigError(attribute.name, value, bounds + (' or "auto"' if optional else ""))

    return check


def number(
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    exclusive_maximum: bool = False,
    exclusive_minimum: bool = False,
    optional: bool = False,
) -> Validator:
    """A finite real number within the bounds; ``None`` too when ``optional``."""
    low = f"> {minimum}" if exclusive_minimum else f">= {minimum}"
    high = f"< {maximum}" if exclusive_maximum else f"<= {maximum}"
    parts = [p for p, bound in ((low, minimum), (high, maximum)) if bound is not None]
    allowed = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and minimum is not None:
            ok = value > minimum if exclusive_minimum else value >= minimum
        if ok and maximum is not None:
            ok = value < maximum if exclusive_maximum else value <= maximum
        if not ok:
            raise ConfigError(attribute.name, value, allowed + (' or "auto"' if optional else ""))

    return check


def auto_is_none(value: Any) -> Any:
    """Read ``"auto"`` (TOML has no null) as None: "let sda choose"."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    return value


def one_of(choices: tuple[str, ...]) -> Validator:
    """One of the given strings."""

    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if value not in choices:
            raise ConfigError(attribute.name, value, "one of " + ", ".join(choices))

    return check


def instance_of(kind: type, description: str) -> Validator:
    def check(_instance: Any, attribute: Any, value: Any) -> None:
        if not isinstance(value, kind):
            raise ConfigError(attribute.name, value, description)

    return check


def enum_converter(enum_type: type[enum.Enum], field: str) -> Callable[[Any], Any]:
    """Accept an enum member, its value or its name in any case."""

    def convert(value: Any) -> Any:
        if isinstance(value, enum_type):
            return value
        if isinstance(value, str):
            for member in enum_type:
                if value.lower() in (member.value.lower(), member.name.lower()):
                    return member
        allowed = ", ".join(member.value for member in enum_type)
        raise ConfigError(field, value, "one of " + allowed)

    return convert


def _describe_bounds(minimum: Any, maximum: Any, kind: str) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} from {minimum} to {maximum}"
    if minimum is not None:
        return f"{kind} >= {minimum}"
    if maximum is not None:
        return f"{kind} <= {maximum}"
    return kind
