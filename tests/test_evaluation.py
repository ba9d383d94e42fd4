"""``sda evaluate`` and evaluate_run on a tiny run trained here; the sda_evaluate_metrics hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sda_core import hookimpl
from sda_core.config import TrainingConfig
from sda_core.engine import Engine
from sda_core.errors import PluginError
from sda_core.testing import fast_settings, write_audio_folder
from sda_core.training.evaluation import EVALUATION_FILE, EvaluationError, _generate, evaluate_run

SDA = [sys.executable, "-m", "sda_core"]
FAST = fast_settings(samples_per_epoch=16, max_epochs=1, plugins={"wave_vae": {"fit_steps": 10}})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch on 12 short synthesised sounds at 8 kHz: a run folder with a checkpoint."""
    root = tmp_path_factory.mktemp("evaluation")
    data = write_audio_folder(root / "data", count=12, durations=(1.0, 2.2, 1.5, 3.1))
    Engine(disable=["progress"]).train(data, root / "run", FAST)
    return root / "run"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SDA, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "SDA_DISABLE_PLUGINS": "progress"},
    )


class MetricPlugin:
    def __init__(self, name: str, answer: object) -> None:
        self.name, self.answer = name, answer

    @hookimpl
    def sda_evaluate_metrics(self, generated, real, sample_rate, config):
        return self.answer


def test_evaluate_run_measures_and_writes_evaluation_json(tiny_run: Path):
    seen = {}

    class Recorder:
        @hookimpl
        def sda_evaluate_metrics(self, generated, real, sample_rate, config):
            seen.update(shape=generated.shape, real=real.shape, rate=sample_rate)
            return {"peak": float(np.abs(generated).max())}

    engine = Engine(plugins=[Recorder()], disable=["progress"])
    result = evaluate_run(tiny_run, hooks=engine, count=6, seed=3)
    assert result.count == 6 and result.training.generated_count == 6
    assert result.training_chunks >= 8 and result.training.real_count == result.training_chunks
    assert 0.0 <= result.training.nn_accuracy <= 1.0
    assert result.training.resemblance is not None
    assert result.reconstruction > 0 and result.reconstruction_source == "validation"
    assert result.reconstruction_fitted is not None and 0 < result.reconstruction_fitted < result.reconstruction
    assert seen == {"shape": (6, 8000), "real": (result.training_chunks, 8000), "rate": 8000}
    assert set(result.plugins) == {"peak"}
    written = json.loads((tiny_run / EVALUATION_FILE).read_text())
    assert written["training"]["nn_accuracy"] == result.training.nn_accuracy
    assert written["plugins"] == result.plugins and written["path"] == str(tiny_run / EVALUATION_FILE)
    again = evaluate_run(tiny_run, hooks=engine, count=6, seed=3, write=False)
    assert again.training == result.training and again.reconstruction == result.reconstruction


def test_cli_evaluate_json_and_table(tiny_run: Path):
    result = run_cli("evaluate", str(tiny_run), "-n", "4", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["count"] == 4 and report["training"]["generated_count"] == 4
    assert {"resemblance", "copying", "diversity", "nn_accuracy"} <= set(report["training"])
    table = run_cli("evaluate", str(tiny_run), "-n", "4", "--seed", "1")
    assert table.returncode == 0, table.stderr
    assert report["reconstruction_fitted"] < report["reconstruction"]
    for label in ("resemblance", "1-NN accuracy", "copying ratio", "diversity", "reconstruction", "fitted"):
        assert label in table.stdout
    assert EVALUATION_FILE in table.stdout


def test_cli_evaluate_errors_are_one_sentence(tmp_path: Path):
    missing = run_cli("evaluate", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = run_cli("evaluate", str(tmp_path / "empty"))
    assert empty.returncode == 1 and "checkpoint" in empty.stderr and "Traceback" not in empty.stderr
    too_few = run_cli("evaluate", str(tmp_path / "empty"), "-n", "1")
    assert too_few.returncode == 2


def test_plugin_metrics_are_merged_and_collisions_are_errors():
    config, audio = TrainingConfig(), np.zeros((2, 100), dtype=np.float32)
    engine = Engine(
        plugins=[MetricPlugin("a", {"x": 1}), MetricPlugin("b", {"y": np.float32(2.5)}), MetricPlugin("c", None)],
        load_entrypoints=False,
    )
    assert engine.evaluate_metrics(audio, audio, 8000, config) == {"x": 1.0, "y": 2.5}
    clash = Engine(plugins=[MetricPlugin("a", {"x": 1}), MetricPlugin("b", {"x": 2})], load_entrypoints=False)
    with pytest.raises(PluginError, match="both answered the metric 'x'"):
        clash.evaluate_metrics(audio, audio, 8000, config)
    for bad in ({"x": "high"}, {"x": True}, [1.0]):
        with pytest.raises(PluginError, match="plugin"):
            Engine(plugins=[MetricPlugin("a", bad)], load_entrypoints=False).evaluate_metrics(
                audio, audio, 8000, config
            )


def test_temperature_is_passed_only_when_given_and_only_to_models_that_take_it():
    class Plain:
        def generate(self, count, *, seconds=1.0, generator=None):
            return torch.zeros(count, 1, int(seconds * 100))

    class Tempered(Plain):
        def generate(self, count, *, seconds=1.0, generator=None, temperature=1.0):
            self.temperature = temperature
            return torch.zeros(count, 1, int(seconds * 100))

    config = TrainingConfig()
    assert _generate(Plain(), config, 3, 0, None, torch).shape == (3, 1, 100)
    with pytest.raises(EvaluationError, match="temperature"):
        _generate(Plain(), config, 3, 0, 0.5, torch)
    tempered = Tempered()
    _generate(tempered, config, 3, 0, 0.5, torch)
    assert tempered.temperature == 0.5
