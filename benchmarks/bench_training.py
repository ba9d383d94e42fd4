"""Training throughput: the engine's loop against a hand-written PyTorch loop.

* engine vs hand loop: optimiser steps per second of ``Engine.train`` (the reference model, the
  default loaders and workers, events, history) against a bare loop written by hand over the
  same DataLoader (same data, batch size, workers and augmentation), model and AdamW optimiser:
  what the engine adds on top of the loop itself. Measured in the second epoch of each run, from
  step timestamps, so start-up, validation and checkpoints are outside it.
  Target: the engine reaches at least 0.95x the hand loop (time ratio hand/engine >= 0.95, shown
  as engine/hand time <= 1/0.95).
* 10 consumers: the same engine with 10 consumer plugins subscribed to every event, against
  none. Whole runs differ by more than 1% from noise alone, so the ratio comes from the time
  spent delivering events (``engine.hooks.emit``) during the training steps of each real run (timed around every
  call): steps/s with consumers relative to none = (1 - share with 10) / (1 - share with none).
  Target: at least 0.99x. The whole-run step rates are printed beside it.
* data wait: the share of step time the loop waited for a batch, default workers, per epoch:
  every epoch of every engine run (epoch 1 holds the workers' start, epoch 2 an epoch boundary).
  Target: the median epoch and the worst epoch both < 5%.
* previews: the time to render one round of previews, as a fraction of an epoch (informational).

Runs alternate (engine, hand loop, engine + consumers) and the medians are compared.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from benchmarks.timing import Result
from sda_core import Engine, hookimpl
from sda_core.data.loaders import create_data_loaders, default_num_workers

NAME = "training"
BATCH = 16
STEPS_PER_EPOCH = 24
CONSUMERS = 10
#: The largest acceptable share of step time spent waiting for a batch, in any epoch.
WAIT_TARGET = 0.05


class NullConsumer:
    """A consumer of every event that does what a cheap real one does: look at the event."""

    def __init__(self, number: int) -> None:
        self.name = f"null_consumer_{number}"
        self.seen = 0

    @hookimpl
    def sda_on_step(self, event):
        self.seen += event.step > 0

    @hookimpl
    def sda_on_epoch(self, event):
        self.seen += 1

    @hookimpl
    def sda_on_train_start(self, event):
        self.seen += 1

    @hookimpl
    def sda_on_train_end(self, event):
        self.seen += 1


def _corpus(folder: Path) -> None:
    rng = np.random.default_rng(11)
    for index in range(24):
        seconds = rng.uniform(2.0, 6.0)
        t = np.arange(int(44100 * seconds)) / 44100
        tone = np.sin(2 * np.pi * rng.uniform(80, 800) * t) * np.exp(-t * rng.uniform(0.3, 2.0))
        soundfile.write(
            folder / f"take_{index:02d}.wav",
            (0.3 * tone + 0.02 * rng.standard_normal(len(t))).astype(np.float32),
            44100,
        )


def _overrides(run: int) -> dict:
    return {
        "max_epochs": 2,
        "batch_size": BATCH,
        "samples_per_epoch": BATCH * STEPS_PER_EPOCH,
        "preview_interval": 2,
        "early_stopping": False,
        "seed": 1000 + run,
        "device": "cpu",
    }


def _engine_run(data: Path, out: Path, consumers: int, run: int) -> dict:
    """One fresh 2-epoch run; rates measured in epoch 2.

    ``emit_share`` is the share of epoch 2's step time spent delivering events to every consumer,
    timed around each call of ``engine.hooks.emit`` (what the training loop calls) in the real run.
    """
    steps, epochs, previews = [], [], []
    emit_seconds = [0.0]

    def record(event) -> None:
        {"step": steps, "epoch": epochs, "preview": previews}.get(event.kind, []).append(event)

    engine = Engine(plugins=[NullConsumer(i) for i in range(consumers)], disable=["progress"])
    deliver = engine.hooks.emit  # the training loop emits through the facade, not Engine.emit

    def timed_emit(event, history=None):
        started = time.perf_counter()
        deliver(event, history)
        if getattr(event, "epoch", 0) == 2 and event.kind == "step":
            emit_seconds[0] += time.perf_counter() - started

    engine.hooks.emit = timed_emit
    engine.train(data, out / f"run_{consumers}_{run}", _overrides(run), callback=record)
    second = [event for event in steps if event.epoch == 2]
    span = second[-1].timestamp - second[0].timestamp
    return {
        "step_seconds": span / (len(second) - 1),
        "emit_share": emit_seconds[0] / (span * len(second) / (len(second) - 1)),
        "wait_shares": [
            _wait_share([e for e in steps if e.epoch == epoch]) for epoch in sorted({e.epoch for e in steps})
        ],
        "preview_share": previews[-1].render_seconds / epochs[-1].duration if previews else float("nan"),
    }


def _wait_share(steps: list) -> float:
    """The share of these steps' time spent waiting for a batch."""
    return sum(e.data_wait for e in steps) / sum(e.duration for e in steps)


def _hand_loop(data: Path, run: int) -> float:
    """Seconds per step of a bare AdamW loop over the same DataLoader, model and batch size."""
    engine = Engine(disable=["progress"])
    summary = engine.scan(data)
    config = engine.resolve_config(summary, _overrides(run))
    train_loader, _val, _split = create_data_loaders(summary, config, engine)
    torch.manual_seed(config.seed)
    model = engine.make_model(config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.regularization.weight_decay
    )
    model.train()
    for epoch in (1, 2):
        train_loader.sampler.set_epoch(epoch)
        ends = []
        for batch in train_loader:
            loss = model.loss(batch, epoch=epoch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.regularization.gradient_clip_norm)
            optimizer.step()
            ends.append(time.perf_counter())
    return (ends[-1] - ends[0]) / (len(ends) - 1)


def run(quick: bool = False) -> list[Result]:
    repeats = 2 if quick else 4
    engine_steps, hand_steps, busy_steps, waits, previews = [], [], [], [], []
    shares_none, shares_busy = [], []
    with tempfile.TemporaryDirectory(prefix="sda-bench-training-") as temp:
        data = Path(temp) / "data"
        data.mkdir()
        _corpus(data)
        for repetition in range(repeats):
            plain = _engine_run(data, Path(temp), 0, repetition)
            hand_steps.append(_hand_loop(data, repetition))
            busy = _engine_run(data, Path(temp), CONSUMERS, repetition)
            engine_steps.append(plain["step_seconds"])
            busy_steps.append(busy["step_seconds"])
            shares_none.append(plain["emit_share"])
            shares_busy.append(busy["emit_share"])
            waits.extend(plain["wait_shares"] + busy["wait_shares"])
            previews.append(plain["preview_share"])
    engine_s, hand_s, busy_s = (statistics.median(v) for v in (engine_steps, hand_steps, busy_steps))
    share_none, share_busy = statistics.median(shares_none), statistics.median(shares_busy)
    consumer_speed = (1 - share_busy) / (1 - share_none)
    workers = default_num_workers()
    return [
        Result(
            "training: engine steps/s vs hand-written loop (time ratio)",
            engine_s / hand_s,
            1 / 0.95,
            f"engine {1 / engine_s:.2f} steps/s, hand loop over the same loader {1 / hand_s:.2f} steps/s "
            f"({hand_s / engine_s:.3f}x); batch {BATCH}, n={repeats}",
        ),
        Result(
            f"training: {CONSUMERS} consumers vs none (time ratio)",
            1 / consumer_speed,
            1 / 0.99,
            f"event delivery takes {share_busy:.3%} of step time with {CONSUMERS} consumers, {share_none:.3%} "
            f"with none: {consumer_speed:.4f}x the steps/s (whole runs, noisier: {1 / busy_s:.2f} vs "
            f"{1 / engine_s:.2f} steps/s), n={repeats}",
        ),
        Result(
            f"training: data wait share of step time, median epoch, {workers} worker(s)",
            statistics.median(waits),
            WAIT_TARGET,
            f"median of {len(waits)} epochs ({2 * repeats} runs x 2) {statistics.median(waits):.1%}",
        ),
        Result(
            f"training: data wait share of step time, worst epoch, {workers} worker(s)",
            max(waits),
            WAIT_TARGET,
            f"worst {max(waits):.1%}; epochs 1, 2 of each run: {_pairs(waits)}",
        ),
        Result(
            "training: one round of previews / epoch time",
            statistics.median(previews),
            None,
            f"4 samples + 4 reconstructions; median {statistics.median(previews):.1%} of an epoch",
        ),
    ]


def _pairs(shares: list[float]) -> str:
    """'a/b, c/d, ...': the per-epoch shares of successive 2-epoch runs."""
    return ", ".join("/".join(f"{share:.1%}" for share in shares[i : i + 2]) for i in range(0, len(shares), 2))


if __name__ == "__main__":  # pragma: no cover - manual use
    for row in run():
        print(row)
