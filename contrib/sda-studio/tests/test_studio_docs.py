"""docs/studio.md says what the command does: its options and defaults, the hook, the make demo line."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from sda_studio.command import AUTH_VARIABLE, configure
from sda_studio.page import POLL_SECONDS

from sda_core.cli.app import main

REPO = Path(__file__).resolve().parents[3]
STUDIO_MD = (REPO / "docs" / "studio.md").read_text(encoding="utf-8")


def documented_options() -> dict[str, str]:
    table = STUDIO_MD.split("| option | default | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1:3] for line in table.strip().splitlines()[1:]]
    return {re.match(r"\s*`(--[a-z-]+)", option).group(1): default.strip().strip("`") for option, default in rows}


def test_the_options_table_is_the_command_s_options_with_their_defaults():
    parser = argparse.ArgumentParser()
    configure(parser)
    actual = {
        action.option_strings[0]: action.default for action in parser._actions if action.option_strings[0] != "-h"
    }  # noqa: SLF001
    documented = documented_options()
    assert set(documented) == set(actual)
    for option, default in actual.items():
        if option == "--auth":
            assert documented[option] == f"${AUTH_VARIABLE}"
        elif option == "--max-upload-mb":
            assert float(documented[option]) == default
        else:
            assert documented[option] == str(default), option


def test_the_page_polls_as_documented():
    assert POLL_SECONDS == 1.0 and "every second" in STUDIO_MD


def test_sda_studio_help_lists_what_the_docs_say(capsys):
    for argv, expected in ((["studio", "--help"], list(documented_options())), (["--help"], ["studio"])):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert all(word in out for word in expected), out
    assert re.search(r"^\s+studio\s+a web page", out, re.MULTILINE), out


def test_make_demo_prints_how_to_open_the_studio():
    recipe = (REPO / "Makefile").read_text(encoding="utf-8").split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "studio --root demo" in recipe and "@echo" in recipe
    assert "sda studio --root demo" in STUDIO_MD


def test_readme_and_hooks_doc_point_at_the_studio():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/studio.md" in readme and "sda studio" in readme
    hooks = (REPO / "docs" / "hooks.md").read_text(encoding="utf-8")
    assert "### sda_cli_commands()" in hooks and "(studio.md)" in hooks
