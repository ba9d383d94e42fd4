"""Opt-in hook tracing (``SDA_TRACE_HOOKS=1``) that never formats tensors or audio buffers.

pluggy's own tracer formats every argument with ``repr``, which for a tensor or a long list of
files is slow and unreadable; here each argument is summarised by its type and a few scalars.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import attrs

_MAX_TEXT = 60


def describe(value: Any) -> str:
    """A short, bounded description of a hook argument or result."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= _MAX_TEXT else value[: _MAX_TEXT - 3] + "...")
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return f"{type(value).__name__}(shape={tuple(shape)}, dtype={value.dtype})"
    if attrs.has(type(value)):
        scalars = [
            f"{field.name}={getattr(value, field.name)!r}"
            for field in attrs.fields(type(value))
            if isinstance(getattr(value, field.name), (bool, int, float))
        ][:4]
        return f"{type(value).__name__}({', '.join(scalars)})"
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return f"{type(value).__name__}[{len(value)}]"
    return type(value).__name__


class HookTracer:
    """Writes one line before and one after each hook call to a text stream (stderr)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._started: list[float] = []

    def before(self, hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        arguments = ", ".join(f"{key}={describe(value)}" for key, value in kwargs.items())
        plugins = ",".join(impl.plugin_name for impl in impls)
        self._write(f"sda-trace: -> {hook_name}({arguments}) [{plugins}]")
        self._started.append(time.perf_counter())

    def after(self, outcome: Any, hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        elapsed = (time.perf_counter() - self._started.pop()) * 1000 if self._started else 0.0
        exception = getattr(outcome, "exception", None)
        if exception is not None:
            result = f"raised {type(exception).__name__}"
        else:
            result = describe(outcome.get_result() if hasattr(outcome, "get_result") else outcome)
        self._write(f"sda-trace: <- {hook_name} = {result} ({elapsed:.2f} ms)")

    def _write(self, line: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()
