"""`sda new-plugin NAME` writes a plugin distribution whose own tests pass out of the box.

The distribution is generated into a temporary folder by the command, installed the way pip lays
an installed distribution out (its package beside a ``.dist-info`` with its entry points, on
PYTHONPATH), and its tests run with pytest in a subprocess, exactly as its author runs them after
``pip install -e '.[test]'``: the kit's fixtures, the conformance checks, the entry-point check and
the ``sda`` command runner included.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

from conftest import install_project

from sda_core.cli.new_plugin import TEMPLATE, PluginNames


def test_new_plugin_writes_a_distribution_whose_tests_pass(sda_cli, tmp_path):
    made = sda_cli("new-plugin", "sda-loop-marker", "--dest", tmp_path).assert_ok()
    project = tmp_path / "sda-loop-marker"
    written = sorted(path.relative_to(project).as_posix() for path in project.rglob("*") if path.is_file())
    assert written == [
        "README.md",
        "pyproject.toml",
        "sda_loop_marker/__init__.py",
        "sda_loop_marker/plugin.py",
        "sda_loop_marker/settings.py",
        "sda_loop_marker/transforms.py",
        "tests/test_loop_marker.py",
    ]
    assert f"next: cd {project}" in made.stdout
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "sda-loop-marker"
    assert pyproject["project"]["entry-points"]["sda"] == {"loop_marker": "sda_loop_marker:LoopMarker"}
    assert not any("$" in path.read_text() for path in project.rglob("*") if path.is_file())  # all filled in

    # lint-clean and formatted as generated, by the rules sda's own code keeps (pyproject.toml)
    rules = ["--isolated", "--line-length", "120"]
    for command in (["check", "--no-cache", "--select", "E,F,W,I,B,UP"], ["format", "--check"]):
        linted = subprocess.run(
            [sys.executable, "-m", "ruff", *command, *rules, "."], capture_output=True, text=True, cwd=project
        )
        assert linted.returncode == 0, linted.stdout + linted.stderr

    site = install_project(project, tmp_path / "site")
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(site)},
        timeout=600,
    )
    summary = tested.stdout.strip().splitlines()[-1] if tested.stdout.strip() else ""
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert re.match(r"10 passed", summary), summary  # every test ran: none skipped, none deselected


def test_new_plugin_refuses_a_bad_name_and_an_existing_folder(sda_cli, tmp_path):
    assert PluginNames.of("Loop-Marker") == PluginNames(
        "loop_marker", "sda-loop-marker", "sda_loop_marker", "LoopMarker"
    )
    for name, reason in [
        ("9lives", "cannot name a plugin"),
        ("loop__marker", "cannot name a plugin"),
        ("loop marker", "cannot name a plugin"),
        ("wave_vae", "is the name of a reference plugin of sda"),
    ]:
        refused = sda_cli("new-plugin", name, "--dest", tmp_path)
        assert refused.exit_code == 2 and reason in refused.error, refused.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "cli"]  # the runner's own folder only: nothing written

    (tmp_path / "sda-taken").mkdir()
    (tmp_path / "sda-taken" / "notes.txt").write_text("mine")
    refused = sda_cli("new-plugin", "taken", "--dest", tmp_path)
    assert refused.exit_code == 2 and "already exists and is not empty" in refused.error
    assert [path.name for path in (tmp_path / "sda-taken").iterdir()] == ["notes.txt"]


def test_the_template_folder_holds_only_templates():
    files = [path for path in TEMPLATE.rglob("*") if path.is_file()]
    assert files and all(path.suffix == ".tmpl" for path in files), files
