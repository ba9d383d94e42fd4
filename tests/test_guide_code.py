"""Every Python code block of docs/plugin-authors.md and docs/host-apps.md runs.

Each page runs once, in a subprocess (tests/doc_blocks.py), block after block like the cells of
a notebook: one namespace per page, each block in a fresh folder holding ``my_sounds`` (six
synthesised sounds at 8 kHz whose ``sda.toml`` holds the kit's fast settings and a narrow model,
so a block that trains takes seconds), with sda's reference plugins and the guide's own plugin (built from the
blocks of plugin-authors.md and installed) as the installed plugins. A block marked
``<!-- not run: REASON -->`` is reported as skipped; a failing block fails its test with the
page's line numbers in the traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import bad_inputs
import pytest
from conftest import install_project
from doc_blocks import Block, blocks, run_page, write_guide_plugin

from sda_core.testing import FAST_SETTINGS, write_audio_folder

TESTS = Path(__file__).resolve().parent
DOCS = TESTS.parent / "docs"
PAGES = ("plugin-authors.md", "host-apps.md")
BLOCKS = [block for page in PAGES for block in blocks(DOCS / page)]
#: sda.toml of my_sounds: the kit's fast settings, rare previews and a narrow model, so that the
#: guides' runs of 10 and 40 epochs take seconds (the overrides a block passes still win).
SOUNDS_SETTINGS = (
    "".join(f"{key} = {value}\n" for key, value in FAST_SETTINGS.items())
    + "preview_interval = 10\n[plugins.wave_vae]\nhidden_channels = 16\ndecoder_channels = 16\ndecoder_layers = 1\n"
)


@pytest.fixture(scope="module")
def page_results(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[int, dict]]:
    """``page_results(page)``: the result of each block of the page by line, the page run once."""
    site = install_project(write_guide_plugin(DOCS, tmp_path_factory.mktemp("guide")), tmp_path_factory.mktemp("site"))
    done: dict[str, dict[int, dict]] = {}

    def results(page: str) -> dict[int, dict]:
        if page not in done:
            work = tmp_path_factory.mktemp(page.removesuffix(".md"))
            sounds = write_audio_folder(work / "my_sounds", count=6, sample_rates=(8000,))
            (sounds / "sda.toml").write_text(SOUNDS_SETTINGS)
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
                "SDA_LOAD_PLUGINS": bad_inputs.reference_plugins("loss_table"),
                "SDA_CACHE_DIR": str(work / "cache"),
            }
            out = work / "results.json"
            ran = subprocess.run(
                [sys.executable, str(TESTS / "doc_blocks.py"), str(DOCS / page), str(work), str(out)],
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
            )
            assert ran.returncode == 0 and out.is_file(), ran.stderr
            done[page] = {result["line"]: result for result in json.loads(out.read_text())}
        return done[page]

    return results


def test_the_guides_have_blocks_to_run():
    for page in PAGES:
        assert sum(block.page == page and block.not_run is None for block in BLOCKS) >= 5, page


@pytest.mark.parametrize("block", BLOCKS, ids=[block.where for block in BLOCKS])
def test_a_guide_block_runs(block: Block, page_results):
    result = page_results(block.page)[block.line]
    if result["status"] == "not run":
        pytest.skip(f"docs/{block.where} is marked not run: {block.not_run}")
    assert result["status"] == "ok", f"the block at docs/{block.where} failed:\n{result['error']}"


def test_the_documented_conformance_report_is_what_check_transform_prints(page_results):
    """The ``text`` block after the check_transform example of plugin-authors.md is its output."""
    text = (DOCS / "plugin-authors.md").read_text(encoding="utf-8")
    (block,) = [block for block in BLOCKS if "class Careless(Tremolo)" in block.code]
    after = text.split("\n")[block.line - 1 :]
    shown = "\n".join(after).split("```text\n", 1)[1].split("```\n", 1)[0]
    assert page_results(block.page)[block.line]["stdout"] == shown


PAGE = """# A page

```python
x = 1
```

- a list item with a block:

  ```python
  y = x + 1
  ```

<!-- not run: a fragment, shown for its shape -->

```python
undefined_name
```

```python
assert y == 2
missing = {}["key"]
```
"""


def test_blocks_report_their_line_and_fragments_are_skipped(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    found = blocks(page)
    assert [(block.line, block.not_run) for block in found] == [
        (4, None),
        (10, None),
        (16, "a fragment, shown for its shape"),
        (20, None),
    ]
    (tmp_path / "work").mkdir()
    results = run_page(page, tmp_path / "work")
    assert [result["status"] for result in results] == ["ok", "ok", "not run", "failed"]
    assert f'File "{page}", line 21' in results[3]["error"] and "KeyError: 'key'" in results[3]["error"]

    page.write_text("<!-- not run: -->\n```python\nx = 1\n```\n")
    with pytest.raises(ValueError, match="needs a reason"):
        blocks(page)
