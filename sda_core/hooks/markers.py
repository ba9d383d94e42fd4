"""The pluggy markers of the ``sda`` project: ``@hookspec`` for the contract, ``@hookimpl`` for plugins."""

from __future__ import annotations

import pluggy

PROJECT_NAME = "sda"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
