"""Through the real ``sda`` entry point of the installed distribution (``pip install -e
contrib/sda-metrics-log``), as `sda` and every embedding Engine find it."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
from metrics_log_checks import FAST, assert_one_run
from sda_metrics_log import MetricsLog

from sda_core import Engine
from sda_core.cli import main
from sda_core.testing import REFERENCE_DISTRIBUTION

DISTRIBUTION = "sda-metrics-log"
#: the settings check, then the consumer hooks
HOOKS = (
    "sda_check_config",
    "sda_on_epoch",
    "sda_on_evaluation",
    "sda_on_overfitting",
    "sda_on_preview",
    "sda_on_step",
    "sda_on_train_end",
    "sda_on_train_start",
)

# Other plugin distributions may be installed beside this one (and be broken while being written):
# their load warnings are not this package's business.
pytestmark = pytest.mark.filterwarnings("ignore::sda_core.PluginLoadWarning")


def allowlist(*extra: str) -> str:
    """SDA_LOAD_PLUGINS for: sda's reference plugins but the progress display and the (slow)
    previews, plus ``extra``; other installed plugin distributions stay out of the run."""
    names = [
        ep.name
        for ep in importlib.metadata.entry_points(group="sda")
        if ep.dist is not None and ep.dist.name == REFERENCE_DISTRIBUTION
    ]
    return ",".join(sorted({*names, *extra} - {"progress", "previews"}))


def info_of(engine: Engine, name: str = "metrics_log"):
    return next(info for info in engine.plugin_infos() if info.name == name)


def test_the_entry_point_names_the_class():
    (entry_point,) = [ep for ep in importlib.metadata.entry_points(group="sda") if ep.name == "metrics_log"]
    assert entry_point.value == "sda_metrics_log:MetricsLog"
    assert entry_point.dist.name == DISTRIBUTION and entry_point.dist.version == "0.1.0"
    assert entry_point.load() is MetricsLog


def test_an_engine_loads_it_with_its_distribution_and_version():
    engine = Engine(environ={})
    info = info_of(engine)
    assert (info.status, info.distribution, info.version) == ("loaded", DISTRIBUTION, "0.1.0")
    assert info.hooks == HOOKS
    plugin = engine.pm.get_plugin("metrics_log")
    assert isinstance(plugin, MetricsLog)
    assert Engine(environ={}).pm.get_plugin("metrics_log") is not plugin  # one instance per Engine


@pytest.mark.parametrize(
    "how",
    [
        {"disable": ["metrics_log"]},
        {"disable": [DISTRIBUTION]},
        {"environ": {"SDA_DISABLE_PLUGINS": "metrics_log"}},
    ],
)
def test_it_can_be_turned_off_by_name(how):
    engine = Engine(**{"environ": {}, **how})
    info = info_of(engine)
    assert info.status == "blocked" and info.distribution == DISTRIBUTION
    assert engine.pm.get_plugin("metrics_log") is None


def test_sda_plugins_lists_it(capsys):
    assert main(["plugins", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["plugins"]
    entry = next(item for item in listed if item["name"] == "metrics_log")
    assert (entry["status"], entry["distribution"], entry["version"]) == ("loaded", DISTRIBUTION, "0.1.0")


def test_a_run_through_entry_points_logs_and_a_disabled_one_does_not(data_dir, tmp_path):
    environ = {"SDA_LOAD_PLUGINS": allowlist("metrics_log")}
    Engine(environ=environ, strict=True).train(data_dir, tmp_path / "on", FAST)
    assert_one_run(tmp_path / "on", epochs=2)
    Engine(environ=environ, strict=True, disable=["metrics_log"]).train(data_dir, tmp_path / "off", FAST)
    assert (tmp_path / "off" / "checkpoints" / "last.pt").exists()
    assert not (tmp_path / "off" / "events.jsonl").exists() and not (tmp_path / "off" / "metrics.csv").exists()


def test_sda_train_reads_set_options(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SDA_LOAD_PLUGINS", allowlist("metrics_log"))
    run_dir = tmp_path / "run"
    options = [f"--set={key}={value}" for key, value in FAST.items()]
    code = main(
        [
            "train",
            str(data_dir),
            "--out",
            str(run_dir),
            *options,
            "--set",
            "plugins.metrics_log.steps=false",
            "--set",
            "plugins.metrics_log.filename=log.jsonl",
        ]
    )
    assert code == 0, capsys.readouterr().err
    kinds = [json.loads(line)["event"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert kinds == ["train_start", "epoch", "epoch", "train_end"]
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 3
