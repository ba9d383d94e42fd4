"""The pluggy markers of the ``sda`` project: ``@hookspec`` for the contract, ``@hookimpl`` for plugins."""

from __future__ import annotations

import pluggy

PROJECT_NAME = "sda"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
#: A plugin (module, class or instance) with this attribute set to True receives the events of
#: every rank of a distributed run; others receive rank 0's only (docs/hooks.md, "Distributed runs").
EVERY_RANK_ATTRIBUTE = "sda_every_rank"
