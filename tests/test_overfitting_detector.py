"""The reference overfitting detector on constructed histories."""

from __future__ import annotations

from sda_core import EpochMetrics, MetricsHistory, TrainingConfig
from sda_plugins.overfitting_detector import (
    early_stopping_start_epoch,
    overfitting_streak_limit,
    sda_check_overfitting,
    sda_should_stop,
)

CONFIG = TrainingConfig(
    overfitting_patience=2, early_stopping_patience=6, overfitting_min_epochs=3, early_stopping_from=0
)


def history(pairs) -> MetricsHistory:
    return MetricsHistory(
        epochs=[EpochMetrics(epoch=i, train_loss=t, val_loss=v) for i, (t, v) in enumerate(pairs, start=1)]
    )


def warnings_over(pairs, config=CONFIG):
    return [sda_check_overfitting(history(pairs[:n]), config) for n in range(1, len(pairs) + 1)]


def test_one_warning_per_streak_at_the_patience():
    pairs = [(1.0, 1.0), (0.9, 1.0), (0.8, 1.0), (0.7, 1.0), (0.6, 1.0), (0.9, 1.0), (0.5, 1.0), (0.4, 1.0)]
    fired = [w.epoch for w in warnings_over(pairs) if w is not None]
    assert fired == [4, 8]


def test_no_warning_before_the_minimum_epochs_or_below_the_threshold():
    assert not any(warnings_over([(1.0, 1.5), (1.0, 1.5), (1.0, 1.19), (1.0, 1.19)]))


def test_the_message_says_whether_validation_still_improves():
    improving = warnings_over([(1.0, 1.3), (0.9, 1.2), (0.8, 1.1), (0.7, 1.0)])[-1]
    assert "still improving" in improving.message
    worsening = warnings_over([(1.0, 0.9), (0.9, 0.95), (0.7, 1.0), (0.6, 1.1)])[-1]
    assert "memorising" in worsening.message and "epoch 1" in worsening.message


def test_the_threshold_comes_from_the_config():
    pairs = [(1.0, 1.15)] * 4
    assert not any(warnings_over(pairs))
    assert any(warnings_over(pairs, TrainingConfig(overfitting_threshold=0.1, overfitting_patience=2)))


def test_early_stop_on_a_plateau_and_on_persistent_overfitting():
    plateau = [(1.0, 1.0)] + [(0.9, 1.05)] * 6
    assert sda_should_stop(history(plateau), CONFIG).startswith("early stop: no improvement")
    patient = TrainingConfig(
        overfitting_patience=2, early_stopping_patience=30, overfitting_min_epochs=3, early_stopping_from=0
    )
    limit = overfitting_streak_limit(patient)
    overfit = [(1.0, 1.0), (0.9, 0.95), (0.8, 0.9)] + [(0.5, 0.95)] * limit
    assert sda_should_stop(history(overfit[:-1]), patient) is None
    assert "overfitting" in sda_should_stop(history(overfit), patient)
    assert sda_should_stop(history(plateau), TrainingConfig(early_stopping=False)) is None


def test_a_healthy_run_never_stops():
    healthy = [(1.0 / n, 1.1 / n) for n in range(1, 30)]
    assert all(sda_should_stop(history(healthy[:n]), CONFIG) is None for n in range(1, 30))


def test_too_few_validation_chunks_never_stop_the_run_but_still_warn():
    plateau = [(1.0, 1.0)] + [(0.5, 1.05)] * 12
    few = history(plateau)
    few.validation_chunks = 5
    assert sda_should_stop(few, CONFIG) is None
    warning = [w for w in (sda_check_overfitting(history(plateau[:n]), CONFIG) for n in range(1, 6)) if w]
    assert warning  # the same curve with a large enough validation set warns ...
    few_warnings = []
    for n in range(1, len(plateau) + 1):
        partial = history(plateau[:n])
        partial.validation_chunks = 5
        few_warnings.append(sda_check_overfitting(partial, CONFIG))
    message = next(w for w in few_warnings if w).message  # ... and so does the small one, saying why
    assert "5 validation chunks, too few to choose a checkpoint by" in message
    assert sda_should_stop(
        few,
        TrainingConfig(
            overfitting_patience=2, early_stopping_patience=6, min_validation_chunks=5, early_stopping_from=0
        ),
    )


def test_early_stopping_counts_from_its_start_epoch():
    """Patience and overfitting streaks count from early_stopping_from x max_epochs on: a plateau in
    the first half (the learning rate near its peak) does not stop the run."""
    config = TrainingConfig(max_epochs=40, early_stopping_patience=6, overfitting_patience=2)
    assert early_stopping_start_epoch(config) == 20
    plateau = [(1.0, 1.0)] + [(1.0, 1.05)] * 24  # best at epoch 1, no overfitting
    assert all(sda_should_stop(history(plateau[:n]), config) is None for n in range(1, 25))
    stopped = sda_should_stop(history(plateau), config)  # epoch 25: six epochs counted from epoch 20
    assert stopped and "no improvement in validation loss for 24 epochs (best: epoch 1)" in stopped
    overfit = [(1.0, 1.0)] + [(0.5, 1.05)] * 23  # overfitting from epoch 3: the streak counts from 20
    assert all(sda_should_stop(history(overfit[:n]), config) is None for n in range(1, 24))
    assert sda_should_stop(history(overfit), config).startswith("early stop: overfitting for 5 consecutive")
    later = [(1.0, 1.0)] * 21 + [(0.9, 0.9)] + [(1.0, 1.05)] * 5  # a new best at 22, after the start
    assert sda_should_stop(history(later), config) is None
    assert sda_should_stop(history([*later, (1.0, 1.05)]), config).startswith("early stop: no improvement")
    assert early_stopping_start_epoch(TrainingConfig(max_epochs=40, early_stopping_from=0)) == 1
