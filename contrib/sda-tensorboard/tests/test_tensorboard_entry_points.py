"""The installed distribution, discovered only through sda's entry-point group."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import warnings

import pytest
import sda_tensorboard
from sda_tensorboard import TensorBoardLogger

from sda_core import Engine


def entry_point_engine(**kwargs) -> Engine:
    """An Engine loading the real entry points, whatever SDA_* variables the shell has."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # another installed plugin failing to import is not our test
        return Engine(environ={}, **kwargs)


def info_of(engine: Engine, name: str = "tensorboard"):
    return next(info for info in engine.plugin_infos() if info.name == name)


def test_the_entry_point_names_the_logger_class():
    (entry_point,) = [ep for ep in importlib.metadata.entry_points(group="sda") if ep.name == "tensorboard"]
    assert entry_point.value == "sda_tensorboard:TensorBoardLogger"
    assert entry_point.dist.name == "sda-tensorboard"
    assert entry_point.load() is TensorBoardLogger
    assert sda_tensorboard.__version__ == "0.1.0"


def test_an_engine_loads_it_with_its_distribution_and_version():
    engine = entry_point_engine()
    info = info_of(engine)
    assert (info.status, info.distribution, info.version) == ("loaded", "sda-tensorboard", "0.1.0")
    assert {
        "sda_on_train_start",
        "sda_on_step",
        "sda_on_epoch",
        "sda_on_preview",
        "sda_on_overfitting",
        "sda_on_train_end",
    } <= set(info.hooks)


def test_each_engine_gets_its_own_instance():
    first, second = entry_point_engine(), entry_point_engine()
    one, other = first.pm.get_plugin("tensorboard"), second.pm.get_plugin("tensorboard")
    assert isinstance(one, TensorBoardLogger) and isinstance(other, TensorBoardLogger)
    assert one is not other


@pytest.mark.parametrize("name", ["tensorboard", "sda-tensorboard"])
def test_disabling_it_by_plugin_or_distribution_name(name):
    engine = entry_point_engine(disable=[name])
    assert engine.pm.get_plugin("tensorboard") is None
    assert info_of(engine).status == "blocked"
    assert "mel_vae" in {info.name for info in engine.plugin_infos() if info.status == "loaded"}


def test_nothing_in_sda_core_imports_it():
    code = (
        "import sys, sda_core, sda_core.engine, sda_core.training.trainer, sda_core.cli; "
        "print(any(name.startswith('sda_tensorboard') for name in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sda_plugins_lists_it_and_disable_plugin_blocks_it():
    env = {key: value for key, value in os.environ.items() if not key.startswith("SDA_")}
    listed = subprocess.run(
        [sys.executable, "-m", "sda_core", "plugins", "--json"], capture_output=True, text=True, env=env, check=True
    )
    plugins = {item["name"]: item for item in json.loads(listed.stdout)["plugins"]}
    assert plugins["tensorboard"]["distribution"] == "sda-tensorboard"
    assert plugins["tensorboard"]["version"] == "0.1.0"
    assert plugins["tensorboard"]["status"] == "loaded"
    blocked = subprocess.run(
        [sys.executable, "-m", "sda_core", "plugins", "--json", "--disable-plugin", "tensorboard"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    plugins = {item["name"]: item for item in json.loads(blocked.stdout)["plugins"]}
    assert plugins["tensorboard"]["status"] == "blocked"
