"""The Python code blocks of a markdown page, and a runner that executes them as a reader would.

A block is every fenced block opened by a line of three backquotes and ``python`` (indented too:
a block inside a list item), with the line number of its first line of code. A block meant as
a fragment, not to be run, is preceded by an HTML comment ``<!-- not run: REASON -->`` (blank
lines between are allowed; the reason is required).

``python doc_blocks.py PAGE.md WORKDIR RESULTS.json`` runs the blocks of a page in order, like
the cells of a notebook: one namespace for the page (a block uses what an earlier one defined),
each block in a fresh folder of its own under WORKDIR holding ``my_sounds`` (copied from
``WORKDIR/my_sounds``), with its line numbers kept, so a traceback names ``PAGE.md`` and the
line of the page. It writes one result per block: ``{"line", "status" ("ok", "failed",
"not run"), "seconds", "error", "stdout"}`` (what the block printed).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import sys
import textwrap
import time
import traceback
import types
from pathlib import Path

import attrs

FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!--\s*not run:(?P<reason>.*?)-->\s*\Z", re.DOTALL)


@attrs.frozen
class Block:
    """One Python block of a page.

    Attributes:
        page: the page's file name (``host-apps.md``).
        line: the line number of its first line of code.
        code: the code, dedented.
        not_run: why it is not run (the ``<!-- not run: ... -->`` before it), or None.
    """

    page: str
    line: int
    code: str
    not_run: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The Python blocks of the page at ``path``, in order."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()]
        marker = NOT_RUN.search(before)
        reason = None
        if marker is not None:
            reason = marker.group("reason").strip()
            if not reason:
                raise ValueError(f"{path.name}:{before.count(chr(10)) + 1}: '<!-- not run: -->' needs a reason")
        first_line = text.count("\n", 0, match.start("body")) + 1
        found.append(Block(path.name, first_line, textwrap.dedent(match.group("body")), reason))
    return found


def guide_plugin_files(docs: Path) -> dict[str, str]:
    """The files of the plugin docs/plugin-authors.md builds: its python and toml blocks whose first
    line is ``# sda-loss-table/PATH``, by PATH (``sda-loss-table/pyproject.toml`` ...)."""
    text = (docs / "plugin-authors.md").read_text(encoding="utf-8")
    files = {}
    for match in re.finditer(r"^```(?:python|toml)[ \t]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        first, _, rest = match.group(1).partition("\n")
        named = re.fullmatch(r"# (sda-loss-table/\S+)", first.strip())
        if named:
            files[named.group(1)] = rest
    return files


def write_guide_plugin(docs: Path, dest: Path) -> Path:
    """Write the files of :func:`guide_plugin_files` under ``dest``, with a README; returns the
    plugin's folder, ``dest/sda-loss-table``."""
    for relative, text in guide_plugin_files(docs).items():
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    project = dest / "sda-loss-table"
    (project / "README.md").write_text("# sda-loss-table\n", encoding="utf-8")
    return project


def run_page(page: Path, workdir: Path) -> list[dict[str, object]]:
    """Run every block of ``page`` in order (see the module), returning one result per block."""
    # the page runs as a script would: its classes live in a module named __main__, so they pickle
    page_module = types.ModuleType("__main__")
    page_module.__file__ = str(page)
    sys.modules["__main__"] = page_module
    namespace = page_module.__dict__
    sounds = workdir / "my_sounds"
    results = []
    for number, block in enumerate(blocks(page), start=1):
        if block.not_run is not None:
            results.append({"line": block.line, "status": "not run", "seconds": 0.0, "error": block.not_run})
            continue
        folder = workdir / f"block_{number:02d}_line_{block.line}"
        folder.mkdir()
        if sounds.is_dir():
            shutil.copytree(sounds, folder / "my_sounds")
        # the block's own line numbers: blank lines before it, the page as the file name
        code = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
        started = time.perf_counter()
        here = os.getcwd()
        os.chdir(folder)
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                exec(code, namespace)  # noqa: S102 - the repository's own documentation
        except BaseException:  # noqa: BLE001 - every failure of a block is reported, with its traceback
            status, error = "failed", traceback.format_exc()
        else:
            status, error = "ok", None
        finally:
            os.chdir(here)
        seconds = round(time.perf_counter() - started, 2)
        results.append(
            {"line": block.line, "status": status, "seconds": seconds, "error": error, "stdout": printed.getvalue()}
        )
    return results


if __name__ == "__main__":
    page_path, work, out = (Path(arg) for arg in sys.argv[1:4])
    out.write_text(json.dumps(run_page(page_path.resolve(), work.resolve()), indent=1), encoding="utf-8")
