"""Shared fixtures: throwaway plugin distributions installed through real metadata."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import textwrap
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from sda_core.testing import fast_settings


@pytest.fixture
def make_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Install a throwaway distribution into a temporary site dir on ``sys.path``.

    ``make_distribution(dist_name, {entry_point_name: module_name}, {module_name: source})``
    writes the modules and a ``.dist-info`` folder with real ``METADATA`` and
    ``entry_points.txt`` files, so ``importlib.metadata`` finds the plugins exactly as it finds
    an installed package. Returns the site dir (put it on PYTHONPATH for subprocesses).
    """
    site = tmp_path / "site-packages"
    site.mkdir(exist_ok=True)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    created_modules: list[str] = []

    def make(dist_name: str, entry_points: dict[str, str], modules: dict[str, str], version: str = "1.0") -> Path:
        for module_name, source in modules.items():
            (site / f"{module_name}.py").write_text(textwrap.dedent(source))
            created_modules.append(module_name)
        info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
        lines = ["[sda]"] + [f"{name} = {target}" for name, target in entry_points.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        importlib.invalidate_caches()
        return site

    yield make
    for module_name in created_modules:
        sys.modules.pop(module_name, None)


def install_project(project: Path, site: Path) -> Path:
    """ "Install" a plugin project (a folder with a setuptools pyproject.toml) into ``site`` as pip
    would lay it out: its packages copied beside a ``.dist-info`` folder made from its metadata and
    entry points, so ``importlib.metadata`` finds it. Returns ``site`` (put it on PYTHONPATH).

    pip itself would need the build backend and network access in the test environment.
    """
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    meta = pyproject["project"]
    site.mkdir(parents=True, exist_ok=True)
    for package in pyproject["tool"]["setuptools"]["packages"]:
        shutil.copytree(project / package.replace(".", "/"), site / package.replace(".", "/"))
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n", encoding="utf-8"
    )
    groups = meta.get("entry-points", {})
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in targets.items())
            for group, targets in groups.items()
        ),
        encoding="utf-8",
    )
    importlib.invalidate_caches()
    return site


@pytest.fixture(autouse=True)
def _clean_plugin_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test inherits plugin policy variables from the developer's shell."""
    for name in ("SDA_DISABLE_PLUGINS", "SDA_LOAD_PLUGINS", "SDA_STRICT_PLUGINS", "SDA_TRACE_HOOKS"):
        monkeypatch.delenv(name, raising=False)


REAL_SOUNDS_SCRIPT = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "real-sounds.sh"


@pytest.fixture(scope="session")
def real_sounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 36 real recordings of ``../shared/corpus/real-sounds.sh``, fetched once per session.

    Skips (with the reason) where the script is absent or cannot download, e.g. offline.
    ``SDA_REAL_SOUNDS=DIR`` points at an already fetched copy.
    """
    import subprocess

    existing = os.environ.get("SDA_REAL_SOUNDS")
    if existing and Path(existing).is_dir():
        return Path(existing)
    if not REAL_SOUNDS_SCRIPT.is_file():
        pytest.skip(f"{REAL_SOUNDS_SCRIPT} is not beside this checkout")
    dest = tmp_path_factory.mktemp("real-sounds")
    result = subprocess.run(["bash", str(REAL_SOUNDS_SCRIPT), str(dest)], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.skip(f"could not fetch the real corpus: {result.stderr.strip()[-200:]}")
    return dest


#: A tiny, quick run of the default model (a narrow wave_vae): one epoch at 8 kHz.
TINY_RUN_SETTINGS = fast_settings(
    samples_per_epoch=16,
    max_epochs=1,
    evaluation_sounds=None,  # the run evaluates itself as a user's does
    plugins={"wave_vae": {"hidden_channels": 16, "decoder_channels": 16, "decoder_layers": 1, "fit_steps": 10}},
)


@pytest.fixture(scope="session")
def tiny_wave_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of the default model trained one epoch on 8 short synthesised sounds (for the
    generation and export tests; treat it as read-only, write generated files elsewhere)."""
    from sda_core.engine import Engine
    from sda_core.testing import write_audio_folder

    root = tmp_path_factory.mktemp("tiny_wave_run")
    data = write_audio_folder(root / "data", count=8, durations=(1.0, 2.2, 1.5, 3.1))
    Engine(disable=["progress"]).train(data, root / "run", TINY_RUN_SETTINGS)
    return root / "run"
