"""Plugins add ``sda`` subcommands through ``sda_cli_commands`` (installed through entry points)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sda_core import CliCommand, Engine, PluginError, hookimpl
from sda_core.cli.app import BUILTIN_COMMANDS, build_parser, main

GREETER = """
from sda_core import CliCommand, hookimpl
from sda_core.errors import DatasetError


def configure(parser):
    parser.add_argument("who")
    parser.add_argument("--shout", action="store_true")


def run(args):
    if args.who == "nobody":
        raise DatasetError("nobody is there to greet")
    text = f"hello {args.who}"
    print(text.upper() if args.shout else text)
    return 3 if args.who == "three" else None


@hookimpl
def sda_cli_commands():
    return [CliCommand("greet", "say hello", run, configure)]
"""


@pytest.fixture
def greeter(make_distribution):
    return make_distribution("sda-greeter", {"greeter": "sda_greeter_plugin"}, {"sda_greeter_plugin": GREETER})


def test_an_installed_plugin_adds_a_command(greeter, capsys):
    assert main(["greet", "you", "--shout"]) == 0
    assert capsys.readouterr().out == "HELLO YOU\n"
    assert main(["greet", "three"]) == 3


def test_the_command_is_listed_in_help_and_its_errors_are_one_line(greeter):
    listed = subprocess.run([sys.executable, "-m", "sda_core", "--help"], capture_output=True, text=True)
    assert listed.returncode == 0 and "greet" in listed.stdout and "say hello" in listed.stdout
    failed = subprocess.run([sys.executable, "-m", "sda_core", "greet", "nobody"], capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr.strip() == "sda: error: nobody is there to greet"
    assert "Traceback" not in failed.stderr


def test_a_disabled_plugin_adds_no_command(greeter, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--disable-plugin", "greeter", "greet", "you"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'greet'" in capsys.readouterr().err


def test_builtin_commands_do_not_load_plugins(monkeypatch, capsys):
    def refuse(*_args, **_kwargs):
        raise AssertionError("sda's own commands must not build an engine for plugin commands")

    monkeypatch.setattr(Engine, "cli_commands", refuse)
    assert main(["cache", "--json"]) == 0
    capsys.readouterr()
    assert "plugins" in BUILTIN_COMMANDS and "new-plugin" in BUILTIN_COMMANDS
    parser_commands = {name for name in build_parser()._subparsers._group_actions[0].choices}  # noqa: SLF001
    assert parser_commands == set(BUILTIN_COMMANDS)


class Clashing:
    def __init__(self, name: str) -> None:
        self.name = name

    @hookimpl
    def sda_cli_commands(self):
        return [CliCommand(self.name, "clash", lambda args: 0)]


def test_a_command_named_like_sdas_own_or_added_twice_is_a_plugin_error():
    engine = Engine(plugins=[Clashing("scan")], load_entrypoints=False, environ={})
    with pytest.raises(PluginError, match="adds the command 'scan', which is one of sda's own commands"):
        engine.cli_commands(reserved=BUILTIN_COMMANDS)
    engine = Engine(load_entrypoints=False, environ={})
    engine.register(Clashing("twin"), "first")
    engine.register(Clashing("twin"), "second")
    with pytest.raises(PluginError, match="added by"):
        engine.cli_commands()


def test_a_wrong_answer_names_the_plugin():
    class Wrong:
        @hookimpl
        def sda_cli_commands(self):
            return ["studio"]

    engine = Engine(plugins=[Wrong()], load_entrypoints=False, environ={})
    with pytest.raises(PluginError, match="answered sda_cli_commands with str, expected CliCommand"):
        engine.cli_commands()


@pytest.mark.parametrize("name", ["Studio", "two words", "-x", "", "a_b"])
def test_command_names_are_checked(name):
    with pytest.raises(ValueError, match="lower-case words joined by hyphens"):
        CliCommand(name, "help", lambda args: 0)


def test_a_broken_plugin_command_fails_with_one_line(make_distribution, capsys):
    make_distribution(
        "sda-bad",
        {"bad": "sda_bad_commands"},
        {
            "sda_bad_commands": "from sda_core import hookimpl\n\n@hookimpl\ndef sda_cli_commands():\n    return 'oops'\n"
        },
    )
    assert main(["whatever"]) == 1
    assert "plugin 'bad' answered sda_cli_commands with str, expected a list" in capsys.readouterr().err
    assert main(["cache", "--json"]) == 0  # sda's own commands still work
