"""Fixtures of the studio's tests: a studio root with synthesised sounds, a running server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from studio_helpers import free_port, make_root

from sda_core import Engine


@pytest.fixture
def studio_root(tmp_path: Path) -> Path:
    return make_root(tmp_path / "root")


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A studio serving a root with sounds, on a free port of 127.0.0.1 (module-wide)."""
    from sda_studio.command import serve
    from sda_studio.root import StudioRoot

    root = make_root(tmp_path_factory.mktemp("studio") / "root")
    server = serve(
        StudioRoot(root, max_upload_bytes=2_000_000),
        port=free_port(),
        engine_factory=lambda: Engine(disable=["progress"]),
    )
    yield server
    server.studio.jobs.stop_all()
    server.close()
