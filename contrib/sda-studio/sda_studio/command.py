"""``sda studio``: the subcommand this plugin adds to ``sda`` (``sda_cli_commands``), and the server.

By default the page listens on 127.0.0.1 only. ``--host`` with an address other machines reach
needs a password (``--auth USER:PASSWORD`` or the ``SDA_STUDIO_AUTH`` environment variable), which
Gradio asks for at login.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import threading
from typing import Any

from sda_core import CliCommand, hookimpl
from sda_studio.root import DEFAULT_MAX_UPLOAD_BYTES, StudioError, StudioRoot

#: The environment variable that may hold ``USER:PASSWORD`` instead of ``--auth``.
AUTH_VARIABLE = "SDA_STUDIO_AUTH"
DEFAULT_PORT = 7860
#: Seconds Gradio's queue sleeps between looks for work when idle (its default: 0.001).
IDLE_POLL_SECONDS = 0.05


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``sda studio``."""
    parser.add_argument(
        "--root", default=".", metavar="DIR", help="the only folder it reads and writes under (default: here)"
    )
    parser.add_argument("--runs", default="runs", metavar="DIR", help="where new runs go, under --root (default: runs)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="P", help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address to listen on (default 127.0.0.1: this machine only); any other needs --auth",
    )
    parser.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        help=f"the login the page asks for (or set {AUTH_VARIABLE}); required with a --host beyond this machine",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_BYTES / 1024 / 1024,
        metavar="MB",
        help=f"largest file an upload may hold (default {DEFAULT_MAX_UPLOAD_BYTES // 1024 // 1024})",
    )


def is_local(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (a loopback address or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(value: str | None, host: str) -> tuple[str, str] | None:
    """The (user, password) pair from ``--auth`` or the environment; required off this machine."""
    value = value or os.environ.get(AUTH_VARIABLE) or None
    if value is None:
        if not is_local(host):
            raise StudioError(
                f"--host {host} lets other machines reach the studio: give a password with "
                f"--auth USER:PASSWORD or the {AUTH_VARIABLE} environment variable"
            )
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise StudioError("--auth takes USER:PASSWORD, both not empty")
    return user, password


def run(args: argparse.Namespace) -> int:
    """Serve the page until Ctrl-C; runs still training are asked to stop and saved."""
    auth = parse_auth(args.auth, args.host)
    if not 0 < args.port < 65536:
        raise StudioError(f"--port must be from 1 to 65535, not {args.port}")
    if args.max_upload_mb <= 0:
        raise StudioError("--max-upload-mb must be above 0")
    root = StudioRoot(args.root, max_upload_bytes=int(args.max_upload_mb * 1024 * 1024))
    server = serve(root, args.runs, host=args.host, port=args.port, auth=auth)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    print(f"sda studio: open {url} (serving {root.path}; Ctrl-C to quit)", flush=True)
    # Ctrl-C (SIGINT) ends the studio however it was started: Python raises KeyboardInterrupt only
    # when SIGINT was not ignored at its start, and a shell starts background jobs with it ignored
    # (`sda train` installs its own handler for the same reason).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        running = server.studio.jobs.running()
        if running:
            print(f"sda studio: stopping {len(running)} run(s) and saving them ...", file=sys.stderr, flush=True)
        server.studio.jobs.stop_all()
        server.close()
    return 0


def serve(
    root: StudioRoot,
    runs: str = "runs",
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    auth: tuple[str, str] | None = None,
    engine_factory: Any = None,
) -> Any:
    """Start the page in background threads and return the Gradio Blocks (``.studio`` is its
    :class:`~sda_studio.studio.Studio`, ``.local_url`` its address); ``.close()`` ends it."""
    # A local tool does not report its use or reach the internet: Gradio's usage analytics and
    # version check are off unless the user sets the variable.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from sda_studio.page import CSS, build_page
    from sda_studio.studio import Studio

    if auth is None and not is_local(host):
        raise StudioError(f"--host {host} needs a password (--auth USER:PASSWORD or {AUTH_VARIABLE})")
    studio = Studio(root, runs, engine_factory=engine_factory)
    page = build_page(studio)
    page.studio = studio
    page.queue(default_concurrency_limit=4)
    # Gradio's queue polls for work every millisecond when idle (every 50 ms on Windows): a
    # thousand wake-ups a second in the process that trains, each taking the GIL from the
    # training thread (9% of a core on the 2-core development machine with no page open). The
    # Windows intervals cost the page at most 50 ms of latency per click.
    queue = page._queue  # noqa: SLF001 - no public setting
    if hasattr(queue, "sleep_when_free") and hasattr(queue, "progress_update_sleep_when_free"):
        queue.sleep_when_free = IDLE_POLL_SECONDS
        queue.progress_update_sleep_when_free = 2 * IDLE_POLL_SECONDS
    try:
        page.launch(
            server_name=host,
            server_port=port,
            auth=auth,
            auth_message="sda studio: log in with the user and password given to `sda studio --auth`",
            prevent_thread_lock=True,
            allowed_paths=[str(root.path)],
            max_file_size=root.max_upload_bytes,
            quiet=True,
            show_error=False,
            footer_links=[],
            ssr_mode=False,
            css=CSS,
        )
    except OSError as error:  # the port is taken, the address is not this machine's ...
        raise StudioError(f"cannot listen on {host}:{port}: {error}") from error
    return page


def studio_command() -> CliCommand:
    """The ``sda studio`` command."""
    return CliCommand(
        name="studio",
        help="a web page to train, watch, listen and generate (on 127.0.0.1 unless --host)",
        run=run,
        configure=configure,
    )


@hookimpl
def sda_cli_commands() -> list[CliCommand]:
    """Add ``sda studio`` to the command line."""
    return [studio_command()]
