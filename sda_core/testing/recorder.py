"""The kit's hook recorder: every hook call an Engine makes, with its arguments and result."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
import pytest

if TYPE_CHECKING:
    from sda_core.engine import Engine


@attrs.frozen
class HookCall:
    """One recorded hook call: its name, keyword arguments and result (None for consumers)."""

    name: str
    kwargs: dict[str, Any]
    result: Any = None

    def __getattr__(self, key: str) -> Any:
        try:
            return self.kwargs[key]
        except KeyError:
            raise AttributeError(key) from None


class HookRecorder:
    """Records every hook call an Engine makes (in the spirit of pytest's HookRecorder).

    Attach it with :meth:`attach`; it sees provider, collector and consumer calls alike, in
    order, including the events delivered to consumers.
    """

    def __init__(self) -> None:
        self.calls: list[HookCall] = []
        self._detach: Callable[[], None] | None = None

    def attach(self, engine: Engine) -> "HookRecorder":
        self._detach = engine.host.observe(self._record)
        return self

    def detach(self) -> None:
        if self._detach is not None:
            self._detach()
            self._detach = None

    def _record(self, name: str, kwargs: dict[str, Any], result: Any) -> None:
        self.calls.append(HookCall(name, dict(kwargs), result))

    def getcalls(self, names: str | Iterable[str]) -> list[HookCall]:
        """Calls of the given hooks (a space-separated string or a list), in order."""
        wanted = set(names.split() if isinstance(names, str) else names)
        return [call for call in self.calls if call.name in wanted]

    def getcall(self, name: str) -> HookCall:
        """The only call of one hook; fails the test when there were none or several."""
        calls = self.getcalls(name)
        if len(calls) != 1:
            pytest.fail(f"expected one call of {name}, got {len(calls)}")
        return calls[0]

    def events(self, kind: str | None = None) -> list[Any]:
        """Events delivered to consumers (optionally of one kind: "step", "epoch" ...)."""
        delivered = [call.kwargs["event"] for call in self.calls if call.name.startswith("sda_on_")]
        return [event for event in delivered if kind is None or event.kind == kind]

    def clear(self) -> None:
        self.calls.clear()
