"""The docs' examples run as written.

* ``examples/embed.py`` trains in a background thread, prints events, stops early, and leaves a
  checkpoint: run in a subprocess exactly as a user runs it.
* Every ``sda ...`` command line in docs/user-guide.md (and in the other two guides) names a real
  subcommand and options that ``sda <command> --help`` lists, and parses.
* Every Python block of docs/plugin-authors.md and docs/host-apps.md compiles, every TOML block
  parses, and the plugin that docs/plugin-authors.md builds from its code blocks is found through
  its entry point by ``sda plugins`` and passes its own tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import warnings
from functools import cache
from pathlib import Path

import pytest
from conftest import install_project
from doc_blocks import guide_plugin_files, write_guide_plugin

from sda_core.cli import build_parser
from sda_core.testing import set_options

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EMBED = ROOT / "examples" / "embed.py"
FAST = set_options(max_epochs=None)  # the kit's fast settings as --set options; epochs are each test's
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "2>&1", "&"}


def code_blocks(path: Path, *languages: str) -> list[tuple[int, str]]:
    """(line number, body) of every fenced block in one of ``languages``."""
    text = path.read_text(encoding="utf-8")
    pattern = rf"^```(?:{'|'.join(languages)})[ \t]*\n(.*?)^```"
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(1))
        for match in re.finditer(pattern, text, re.MULTILINE | re.DOTALL)
    ]


def run_python(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


# -- examples/embed.py ------------------------------------------------------------------------


def test_embed_trains_in_a_thread_prints_events_and_stops_early(sda_audio_folder, tmp_path):
    data = sda_audio_folder(count=6, sample_rates=[8000])
    run = tmp_path / "run"
    sets = FAST
    done = run_python(
        str(EMBED),
        str(data),
        "--out",
        str(run),
        "--stop-after-epochs",
        "1",
        "--max-epochs",
        "20",
        *sets,
        env={"SDA_DISABLE_PLUGINS": "progress"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("train_start") for line in lines), done.stdout
    assert any(re.match(r"epoch\s+1: train \d", line) for line in lines), done.stdout
    assert any(line.startswith("train_end") and "stop_requested" in line for line in lines), done.stdout
    assert any(line.startswith("result: stop_requested after epoch") for line in lines), done.stdout
    assert (run / "checkpoints" / "last.pt").is_file()
    history = json.loads((run / "history.json").read_text())
    assert 1 <= len(history["epochs"]) < 20


def load_embed():
    spec = importlib.util.spec_from_file_location("embed_example", EMBED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_embed_prints_json_events_and_reports_bad_settings(sda_audio_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SDA_DISABLE_PLUGINS", "progress")
    embed = load_embed()  # in this process: the same code, without a second torch start-up
    data = sda_audio_folder(count=6, sample_rates=[8000])
    sets = FAST
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # installed plugins that fail to load are not this test's business
        assert embed.main([str(data), "--stop-after-epochs", "1", "--json", *sets]) == 0
    out = capsys.readouterr().out
    kinds = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    assert kinds[0] == "train_start" and "epoch" in kinds and kinds[-1] == "train_end"
    assert (tmp_path / "runs" / data.name / "checkpoints" / "last.pt").is_file()  # the default run folder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert embed.main([str(data), "--set", "max_epoch=3"]) == 2
    assert "did you mean 'max_epochs'" in capsys.readouterr().err


# -- docs/user-guide.md: every sda command is real ------------------------------------------------


@cache
def help_text(*command: str) -> str:
    done = run_python("-m", "sda_core", *command, "--help", timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def subcommands() -> set[str]:
    """The commands `sda --help` lists under its positional arguments."""
    return set(re.findall(r"^ {4}(\w[\w-]*)\s{2,}\S", help_text(), re.MULTILINE))


def options(*command: str) -> set[str]:
    """The options `sda [command] --help` lists (the left column of its options section)."""
    found: set[str] = set()
    for line in help_text(*command).splitlines():
        stripped = line.strip()
        if stripped.startswith("-"):
            invocation = re.split(r"\s{2,}", stripped)[0]
            found.update(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", invocation))
    return found


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `sda`) for every `sda ...` line of a sh/console block."""
    commands = []
    for path in (DOCS / name for name in ("user-guide.md", "plugin-authors.md", "host-apps.md")):
        commands += _commands_in(path)
    return commands


def _commands_in(path: Path) -> list[tuple[str, list[str]]]:
    commands = []
    for start, body in code_blocks(path, "sh", "console"):
        for offset, line in enumerate(body.splitlines(), start=1):
            line = line.strip().removeprefix("$ ")
            tokens = shlex.split(line, comments=True)
            while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0]):  # VAR=value sda ...
                tokens.pop(0)
            if not tokens or tokens[0] != "sda":
                continue
            cut = next((i for i, token in enumerate(tokens) if token in SHELL_OPERATORS), len(tokens))
            commands.append((f"{path.name}:{start + offset}: {line}", tokens[1:cut]))
    return commands


COMMANDS = documented_commands()


def test_the_user_guide_shows_commands():
    used = {
        argv[0] for where, argv in COMMANDS if where.startswith("user-guide") and argv and not argv[0].startswith("-")
    }
    assert {"scan", "train", "generate", "plugins", "demo"} <= used


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_user_guide_command_is_real(where, argv):
    global_options = options()
    args = list(argv)
    while args and args[0].startswith("-"):  # options before the command: sda --disable-plugin X train
        option = args.pop(0).split("=")[0]
        assert option in global_options, f"{where}: `sda --help` lists no option {option}"
        if option == "--disable-plugin":
            args.pop(0)
    if not args:
        assert argv, f"{where}: no command"
        return  # e.g. `sda --version`
    command = args.pop(0)
    assert command in subcommands(), f"{where}: `sda --help` lists no command {command!r}"
    allowed = options(command)
    for token in args:
        if token.startswith("-") and token != "-":
            option = token.split("=")[0]
            assert option in allowed, f"{where}: `sda {command} --help` lists no option {option}"
    try:
        build_parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"{where}: the sda parser rejects it (exit {exit_.code})")


# -- docs/plugin-authors.md and docs/host-apps.md ----------------------------------------------------


PYTHON_BLOCKS = [
    (f"{name}:{line}", body)
    for name in ("plugin-authors.md", "host-apps.md", "user-guide.md")
    for line, body in code_blocks(DOCS / name, "python")
]
TOML_BLOCKS = [
    (f"{name}:{line}", body)
    for name in ("plugin-authors.md", "user-guide.md")
    for line, body in code_blocks(DOCS / name, "toml")
]


def test_the_guides_have_code():
    assert sum(where.startswith("plugin-authors") for where, _ in PYTHON_BLOCKS) >= 4
    assert sum(where.startswith("host-apps") for where, _ in PYTHON_BLOCKS) >= 4


@pytest.mark.parametrize(("where", "code"), PYTHON_BLOCKS, ids=[where for where, _ in PYTHON_BLOCKS])
def test_a_python_block_compiles(where, code):
    compile(code, where, "exec")


@pytest.mark.parametrize(("where", "text"), TOML_BLOCKS, ids=[where for where, _ in TOML_BLOCKS])
def test_a_toml_block_parses(where, text):
    tomllib.loads(text)


def test_the_plugin_authors_guide_builds_a_working_plugin(tmp_path):
    files = guide_plugin_files(DOCS)
    assert {
        "sda-loss-table/pyproject.toml",
        "sda-loss-table/sda_loss_table/__init__.py",
        "sda-loss-table/sda_loss_table/plugin.py",
        "sda-loss-table/tests/test_loss_table.py",
    } <= set(files)
    project = write_guide_plugin(DOCS, tmp_path)
    pyproject = tomllib.loads(files["sda-loss-table/pyproject.toml"])
    entry_points = pyproject["project"]["entry-points"]["sda"]
    assert entry_points == {"loss_table": "sda_loss_table:LossTable"}
    assert [(project / name).is_dir() for name in pyproject["tool"]["setuptools"]["packages"]] == [True]

    site = install_project(project, tmp_path / "site")  # as pip lays an installed distribution out
    listed = run_python("-m", "sda_core", "plugins", "--json", env={"PYTHONPATH": str(site)})
    assert listed.returncode == 0, listed.stderr
    plugins = {entry["name"]: entry for entry in json.loads(listed.stdout)["plugins"]}
    assert plugins["loss_table"]["status"] == "loaded"
    assert plugins["loss_table"]["distribution"] == "sda-loss-table"
    assert "sda_should_stop" in plugins["loss_table"]["hooks"]

    # Its own tests, with the kit, pass (installed: its entry-point and command-line tests need that).
    tested = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", env={"PYTHONPATH": str(site)}, cwd=project)
    assert tested.returncode == 0, tested.stdout + tested.stderr
