"""Running the ``sda`` command in a test, as a user runs it (in the spirit of pytest's ``pytester``
and click's ``CliRunner``): in this process or in a subprocess, in a folder of the test's own,
with an environment of its own; the exit code, stdout and stderr come back, and the run folder
the command wrote can be read.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from sda_core.config import MetricsHistory, TrainingConfig

#: The variables of the plugin policy: a test never inherits them from the developer's shell.
POLICY_VARIABLES = ("SDA_DISABLE_PLUGINS", "SDA_LOAD_PLUGINS", "SDA_STRICT_PLUGINS", "SDA_TRACE_HOOKS")


@attrs.frozen
class RunFolder:
    """A run folder ``sda train`` wrote, read the way a user or a host reads it.

    Attributes:
        path: the folder.
    """

    path: Path

    @property
    def config(self) -> TrainingConfig:
        """The resolved config of the run (``config.json``)."""
        from sda_core.config.training_config import stored_config

        return stored_config(self._json("config.json"))

    @property
    def history(self) -> MetricsHistory:
        """Its loss curves and epochs (``history.json``)."""
        from sda_core.config.history import MetricsHistory

        return MetricsHistory.from_dict(self._json("history.json"))

    @property
    def providers(self) -> dict[str, Any]:
        """Which plugins made its model, datasets and split (``providers.json``)."""
        return self._json("providers.json")

    @property
    def checkpoints(self) -> dict[str, Path]:
        """``{"last": path, "best": path}``: the checkpoints it holds."""
        return {path.stem: path for path in sorted((self.path / "checkpoints").glob("*.pt"))}

    @property
    def previews(self) -> list[Path]:
        """The preview WAV files, sorted (``previews/epoch_NNNN/*.wav``)."""
        return sorted((self.path / "previews").glob("*/*.wav"))

    def files(self, pattern: str = "*") -> list[Path]:
        """Files directly in the folder matching ``pattern`` (what a plugin wrote there), sorted."""
        return sorted(path for path in self.path.glob(pattern) if path.is_file())

    def _json(self, name: str) -> Any:
        path = self.path / name
        if not path.is_file():
            raise AssertionError(f"the run folder {self.path} holds no {name} (it holds: {_listing(self.path)})")
        return json.loads(path.read_text(encoding="utf-8"))


@attrs.frozen
class CliResult:
    """What one ``sda`` command did.

    Attributes:
        args: the arguments after ``sda``.
        exit_code: its exit code (0 success, 1 failure, 2 usage error, 130 interrupted).
        stdout: what it printed on stdout.
        stderr: what it printed on stderr (warnings, ``sda: error: ...``).
        cwd: the folder it ran in; relative paths in ``args`` are relative to it.
        seconds: how long it took.
    """

    args: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    cwd: Path
    seconds: float

    @property
    def ok(self) -> bool:
        """Whether it exited with 0."""
        return self.exit_code == 0

    @property
    def warnings(self) -> list[str]:
        """The ``warning: ...`` lines of stderr, without the prefix."""
        return [line[len("warning: ") :] for line in self.stderr.splitlines() if line.startswith("warning: ")]

    @property
    def error(self) -> str | None:
        """The ``sda: error: ...`` sentence it ended with, without the prefix, or None."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("sda: error: ")]
        return lines[-1][len("sda: error: ") :] if lines else None

    def json(self) -> Any:
        """stdout parsed as JSON (``--json`` output)."""
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(f"`sda {' '.join(self.args)}` printed no JSON:\n{self.stdout}{self.stderr}") from None

    def assert_ok(self) -> CliResult:
        """Fail with its output unless it exited with 0; returns itself, to chain."""
        if self.exit_code != 0:
            raise AssertionError(
                f"`sda {' '.join(self.args)}` exited with {self.exit_code}\n"
                f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
            )
        return self

    @property
    def run_dir(self) -> Path:
        """The run folder the command wrote or read, found from its arguments as sda finds it:
        ``train``: ``--resume`` or ``--out``, else ``runs/<name of DIR>`` in :attr:`cwd`;
        ``generate``, ``evaluate``, ``export``: its RUN; ``demo``: ``OUT/run``."""
        from sda_core.cli import build_parser

        try:
            parsed = build_parser().parse_args(list(self.args))
        except SystemExit:
            raise ValueError(f"`sda {' '.join(self.args)}` does not parse, so it has no run folder") from None
        command = getattr(parsed, "command", None)
        if command == "train":
            chosen = parsed.resume or parsed.out
            folder = Path(chosen) if chosen else Path("runs") / (self.cwd / parsed.data_dir).resolve().name
        elif command in ("generate", "evaluate", "export"):
            folder = Path(parsed.run_dir)
        elif command == "demo":
            folder = Path(parsed.out) / "run"
        else:
            raise ValueError(f"`sda {command}` has no run folder")
        return folder if folder.is_absolute() else self.cwd / folder

    @property
    def run(self) -> RunFolder:
        """The :attr:`run_dir`, to read: ``result.run.config``, ``.history``, ``.checkpoints`` ..."""
        return RunFolder(self.run_dir)


class SdaCli:
    """Runs ``sda ARGS`` the way the console script does; what the ``sda_cli`` fixture gives.

    Args:
        cwd: the folder commands run in (relative paths are relative to it).
        env: variables set for every command (a value of None removes one). On top of
            ``os.environ`` without the plugin-policy variables :data:`POLICY_VARIABLES`, and with
            ``SDA_DISABLE_PLUGINS=progress`` (no live progress display) and ``SDA_CACHE_DIR``
            in ``cwd`` (the decode cache stays out of the user's cache folder).
        in_subprocess: run each command in a fresh ``python -m sda_core`` process (slower; the
            entry points and every module are loaded afresh) instead of calling
            ``sda_core.cli.main`` in this process with stdout, stderr, the environment and the
            current folder swapped for the call.
        timeout: seconds a subprocess may run.
    """

    def __init__(
        self,
        cwd: str | os.PathLike[str],
        env: Mapping[str, str | None] | None = None,
        *,
        in_subprocess: bool = False,
        timeout: float = 600.0,
    ) -> None:
        self.cwd = Path(cwd)
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.env = dict(env or {})
        self.in_subprocess = in_subprocess
        self.timeout = timeout

    def __call__(
        self,
        *args: str | os.PathLike[str],
        env: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        in_subprocess: bool | None = None,
    ) -> CliResult:
        """Run ``sda ARGS``; ``env``, ``cwd`` and ``in_subprocess`` change the defaults for this call."""
        argv = tuple(os.fspath(arg) for arg in args)
        folder = Path(cwd) if cwd is not None else self.cwd
        environ = self.environment(env)
        started = time.perf_counter()
        separate = self.in_subprocess if in_subprocess is None else in_subprocess
        run = _in_a_subprocess if separate else _in_this_process
        code, out, err = run(argv, folder, environ, self.timeout)
        return CliResult(argv, code, out, err, folder, time.perf_counter() - started)

    def environment(self, env: Mapping[str, str | None] | None = None) -> dict[str, str]:
        """The environment a command gets (see the class)."""
        merged: dict[str, str | None] = {key: value for key, value in os.environ.items() if key not in POLICY_VARIABLES}
        merged |= {"SDA_DISABLE_PLUGINS": "progress", "SDA_CACHE_DIR": str(self.cwd / ".sda-cache")}
        merged |= self.env
        merged |= dict(env or {})
        return {key: value for key, value in merged.items() if value is not None}


def _in_a_subprocess(argv: tuple[str, ...], cwd: Path, environ: dict[str, str], timeout: float) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "sda_core", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ,
        timeout=timeout,
    )
    return done.returncode, done.stdout, done.stderr


def _in_this_process(
    argv: tuple[str, ...], cwd: Path, environ: dict[str, str], _timeout: float
) -> tuple[int, str, str]:
    from sda_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _swapped_environment(environ), contextlib.chdir(cwd):
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exit_:  # argparse: --help, --version, bad arguments
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
                if isinstance(exit_.code, str):
                    err.write(exit_.code + "\n")
            except Exception:  # noqa: BLE001 - a bug: reported as the console script would
                traceback.print_exc(file=err)
                code = 1
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def _swapped_environment(environ: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is exactly ``environ`` within the block, as it was afterwards."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _listing(folder: Path) -> str:
    if not folder.is_dir():
        return "nothing: it does not exist"
    return ", ".join(sorted(path.name for path in folder.iterdir())) or "nothing"
