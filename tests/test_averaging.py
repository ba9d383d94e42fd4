"""The moving average of the weights (ema_decay): the unit, and a run that validates and saves it."""

from __future__ import annotations

import pytest
import torch
from audio_factory import make_folder

from sda_core import Engine
from sda_core.testing import fast_settings
from sda_core.training.averaging import WeightAverage, decay_at
from sda_core.training.checkpoints import load_checkpoint


def test_the_decay_warms_up_then_holds():
    assert decay_at(1, 0.99) == pytest.approx(2 / 11)
    assert decay_at(10, 0.99) == pytest.approx(11 / 20)
    assert decay_at(100, 0.99) == pytest.approx(101 / 110)
    assert decay_at(5000, 0.99) == 0.99
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(torch.nn.Linear(2, 2), 1.0)


def test_the_average_follows_the_weights_and_copies_batchnorm_statistics():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    average = WeightAverage(model, 0.5)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model(torch.randn(8, 3))  # training mode: BatchNorm updates its running statistics
    average.update(model, step=1000)  # past the warm-up: decay 0.5
    torch.testing.assert_close(average.model[0].weight, start + 0.5)
    torch.testing.assert_close(average.model[1].running_mean, model[1].running_mean)
    assert not any(p.requires_grad for p in average.model.parameters())


class CountingModel(torch.nn.Module):
    """Counts the batches it sees in a buffer it names in ``running_buffers``."""

    running_buffers = ("seen",)

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)
        self.register_buffer("seen", torch.zeros(()))
        self.register_buffer("fitted", torch.zeros(()))  # fitted on the average itself: not copied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += 1
        return self.layer(x)


def test_the_average_copies_the_buffers_a_model_names_as_running():
    model = CountingModel()
    average = WeightAverage(model, 0.9)
    average.model.fitted.fill_(7.0)
    for step in range(1, 4):
        model(torch.randn(4, 2))
        average.update(model, step)
    assert float(average.model.seen) == 3.0 and float(average.model.fitted) == 7.0


def test_a_run_saves_the_models_running_buffers_with_the_average(tmp_path):
    """The reference model's output-gate histogram, counted in ``loss`` on the trained model, is in
    the saved (averaged) weights."""
    data = make_folder(tmp_path / "data", [1.0, 1.5, 2.0, 1.2, 0.8], rates=(8000,))
    Engine(disable=["progress"]).train(data, tmp_path / "run", fast_settings(model="wave_vae"))
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    counted = state["model"]["level_histogram"]
    assert float(counted.sum()) > 0
    assert torch.equal(counted, state["training_model"]["level_histogram"])


def test_a_run_saves_the_average_as_the_model_and_the_trained_weights_beside_it(tmp_path):
    data = make_folder(tmp_path / "data", [1.0, 1.5, 2.0, 1.2, 0.8], rates=(8000,))
    overrides = fast_settings(model="mel_vae")
    Engine(disable=["progress"]).train(data, tmp_path / "run", overrides)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert set(state["model"]) == set(state["training_model"])
    differs = [key for key, value in state["model"].items() if not torch.equal(value, state["training_model"][key])]
    assert differs  # the average lags the trained weights

    plain = Engine(disable=["progress"]).train(data, tmp_path / "plain", {**overrides, "ema_decay": 0})
    assert "training_model" not in load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt")
    assert plain.epochs_completed == 2
