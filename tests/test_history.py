"""MetricsHistory: recording, curves, overfitting detection, best epoch, ETA and persistence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sda_core.config import TrainingConfig
from sda_core.config.events import EpochMetrics, StepMetrics
from sda_core.config.history import MetricsHistory
from sda_core.errors import ConfigError, RunDataError


def epoch(n, train=1.0, val=None, duration=10.0, val_duration=0.0, step=0, **kwargs):
    return EpochMetrics(
        epoch=n,
        step=step,
        train_loss=train,
        val_loss=val,
        duration=duration,
        val_duration=val_duration,
        timestamp=1000.0 + n,
        **kwargs,
    )


def step(epoch_number, global_step, epoch_step, steps_per_epoch=10, loss=1.0, duration=1.0):
    return StepMetrics(
        epoch=epoch_number,
        step=global_step,
        epoch_step=epoch_step,
        steps_per_epoch=steps_per_epoch,
        loss=loss,
        duration=duration,
        timestamp=2000.0 + global_step,
    )


def history_of(*epochs, **kwargs):
    history = MetricsHistory(**kwargs)
    for metrics in epochs:
        history.record_epoch(metrics)
    return history


# -- recording and curves ------------------------------------------------------------------------


def test_empty_history():
    history = MetricsHistory()
    assert history.last_epoch == 0
    assert history.train_losses == [] and history.val_losses == [] and history.step_losses == []
    assert history.best_epoch is None and history.best_val_loss is None
    assert history.gap() is None
    assert not history.is_overfitting()
    assert history.consecutive_overfitting_epochs() == 0
    assert history.epochs_since_best() == 0
    assert history.eta_seconds(10) is None
    assert history.smoothed_epoch_duration() is None


def test_records_steps_and_epochs_into_curves():
    history = MetricsHistory()
    for global_step in range(1, 4):
        history.record_step(step(1, global_step, global_step, steps_per_epoch=3, loss=1.0 / global_step))
    history.record_epoch(epoch(1, train=0.6, val=0.7, step=3))
    for global_step in range(4, 7):
        history.record_step(step(2, global_step, global_step - 3, steps_per_epoch=3, loss=0.5))
    history.record_epoch(epoch(2, train=0.5, val=None, step=6))
    assert history.last_epoch == 2
    assert history.epoch_numbers == [1, 2]
    assert history.train_losses == [0.6, 0.5]
    assert history.val_losses == [0.7, None]
    assert history.step_losses == [(1, 1.0), (2, 0.5), (3, 1.0 / 3), (4, 0.5), (5, 0.5), (6, 0.5)]


def test_a_resumed_history_may_start_after_epoch_one():
    history = history_of(epoch(5), epoch(6))
    assert history.epoch_numbers == [5, 6]


@pytest.mark.parametrize("next_epoch", [1, 2, 4, 10])
def test_non_contiguous_epochs_raise(next_epoch):
    history = history_of(epoch(1), epoch(2))
    with pytest.raises(ValueError, match="epoch"):
        history.record_epoch(epoch(next_epoch))
    assert history.epoch_numbers == [1, 2]


@pytest.mark.parametrize("next_step", [1, 4, 5])
def test_non_increasing_steps_raise(next_step):
    history = MetricsHistory()
    history.record_step(step(1, 4, 4))
    history.record_step(step(1, 5, 5))
    with pytest.raises(ValueError, match="step"):
        history.record_step(step(1, next_step, 6))
    assert [s.step for s in history.steps] == [4, 5]


def test_steps_may_skip_numbers():
    history = MetricsHistory()
    history.record_step(step(1, 1, 1))
    history.record_step(step(1, 10, 2))
    assert [s.step for s in history.steps] == [1, 10]


def test_truncate_to_epoch_forgets_later_epochs_and_steps():
    history = MetricsHistory()
    for n in (1, 2, 3):
        history.record_step(step(n, n, 1, steps_per_epoch=1))
        history.record_epoch(epoch(n, step=n))
    history.truncate_to_epoch(1)
    assert history.epoch_numbers == [1]
    assert [s.step for s in history.steps] == [1]
    history.record_epoch(epoch(2))  # continues cleanly
    assert history.epoch_numbers == [1, 2]


# -- overfitting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("val", "flagged"),
    [(1.19, False), (1.2, False), (1.21, True), (1.5, True), (0.9, False)],
)
def test_overfitting_threshold_is_twenty_percent(val, flagged):
    history = history_of(epoch(1), epoch(2), epoch(3, train=1.0, val=val))
    assert history.overfitting_threshold == pytest.approx(0.20)
    assert history.is_overfitting() is flagged
    assert (history.overfitting_epochs == [3]) is flagged


@pytest.mark.parametrize("train", [0.5, 2.0, 100.0, 1e-4])
def test_threshold_is_relative_to_train_loss(train):
    history = history_of(epoch(1), epoch(2), epoch(3, train=train, val=train * 1.19))
    assert not history.is_overfitting()
    history = history_of(epoch(1), epoch(2), epoch(3, train=train, val=train * 1.21))
    assert history.is_overfitting()


def test_threshold_is_configurable():
    history = history_of(epoch(1), epoch(2), epoch(3, train=1.0, val=1.4), overfitting_threshold=0.5)
    assert not history.is_overfitting()
    history = history_of(epoch(1), epoch(2), epoch(3, train=1.0, val=1.6), overfitting_threshold=0.5)
    assert history.is_overfitting()
    history = history_of(epoch(1), epoch(2), epoch(3, train=1.0, val=1.06), overfitting_threshold=0.05)
    assert history.is_overfitting()


def test_not_flagged_before_min_epochs():
    gaps = [epoch(n, train=1.0, val=2.0) for n in range(1, 6)]
    assert history_of(*gaps).overfitting_epochs == [3, 4, 5]
    assert history_of(*gaps, min_epochs=1).overfitting_epochs == [1, 2, 3, 4, 5]
    assert history_of(*gaps, min_epochs=5).overfitting_epochs == [5]
    assert not history_of(*gaps[:2]).is_overfitting()


def test_no_validation_or_nonpositive_train_loss_is_never_overfitting():
    history = history_of(
        epoch(1), epoch(2), epoch(3, train=1.0, val=None), epoch(4, train=0.0, val=5.0), epoch(5, train=-1.0, val=5.0)
    )
    assert history.overfitting_epochs == []
    assert history.gap(3) is None


def test_consecutive_overfitting_count():
    vals = [1.0, 1.0, 1.5, 1.0, 1.5, 1.6, 1.7]
    history = MetricsHistory()
    counts = []
    for n, val in enumerate(vals, start=1):
        history.record_epoch(epoch(n, train=1.0, val=val))
        counts.append(history.consecutive_overfitting_epochs())
    assert counts == [0, 0, 1, 0, 1, 2, 3]
    assert history.overfitting_epochs == [3, 5, 6, 7]


def test_gap_of_an_epoch():
    history = history_of(epoch(1, train=1.0, val=1.5), epoch(2, train=2.0, val=2.5))
    assert history.gap(1) == pytest.approx(0.5)
    assert history.gap() == pytest.approx(0.25)
    with pytest.raises(KeyError):
        history.gap(7)


def test_for_config_takes_threshold_and_min_epochs_from_the_config():
    config = TrainingConfig(overfitting_threshold=0.35, overfitting_min_epochs=7)
    history = MetricsHistory.for_config(config)
    assert history.overfitting_threshold == 0.35
    assert history.min_epochs == 7
    assert history.epochs == [] and history.steps == []


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(overfitting_threshold=0.0),
        dict(overfitting_threshold=float("nan")),
        dict(min_epochs=0),
        dict(eta_smoothing=0.0),
        dict(eta_smoothing=1.5),
        dict(min_epochs=True),
    ],
)
def test_invalid_settings_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        MetricsHistory(**kwargs)


# -- best epoch ------------------------------------------------------------------------------------


def test_best_epoch_is_lowest_val_loss_earliest_on_ties():
    history = history_of(epoch(1, val=3.0), epoch(2, val=1.0), epoch(3, val=2.0), epoch(4, val=1.0), epoch(5, val=None))
    assert history.best_epoch == 2
    assert history.best_val_loss == 1.0
    assert history.epochs_since_best() == 3


def test_best_epoch_none_without_validation():
    history = history_of(epoch(1), epoch(2))
    assert history.best_epoch is None
    assert history.epochs_since_best() == 0


# -- ETA ---------------------------------------------------------------------------------------------


def test_smoothed_epoch_duration():
    history = history_of(epoch(1, duration=10.0), epoch(2, duration=20.0), epoch(3, duration=10.0))
    # 10 -> 10 + 0.3 * (20 - 10) = 13 -> 13 + 0.3 * (10 - 13) = 12.1
    assert history.smoothed_epoch_duration() == pytest.approx(12.1)
    assert (
        history_of(epoch(1, duration=10.0), epoch(2, duration=20.0), eta_smoothing=1.0).smoothed_epoch_duration()
        == 20.0
    )


def test_whole_run_eta_from_smoothed_epoch_durations():
    history = history_of(epoch(1, duration=10.0), epoch(2, duration=20.0), epoch(3, duration=10.0))
    assert history.eta_seconds(10) == pytest.approx(7 * 12.1)
    assert history.eta_seconds(4) == pytest.approx(12.1)


def test_eta_is_zero_when_done_and_none_when_nothing_timed():
    history = history_of(epoch(1), epoch(2))
    assert history.eta_seconds(2) == 0.0
    assert history.eta_seconds(1) == 0.0
    assert MetricsHistory().eta_seconds(100) is None


def test_eta_refined_within_an_epoch_from_step_timing():
    history = MetricsHistory()
    global_step = 0
    for n, duration in ((1, 10.0), (2, 20.0), (3, 10.0)):
        for k in range(1, 11):
            global_step += 1
            history.record_step(step(n, global_step, k))
        history.record_epoch(epoch(n, duration=duration, val_duration=2.0, step=global_step))
    before = history.eta_seconds(10)
    assert before == pytest.approx(7 * 12.1)
    etas = []
    for k in range(1, 11):
        global_step += 1
        history.record_step(step(4, global_step, k, steps_per_epoch=10, duration=1.0))
        etas.append(history.eta_seconds(10))
    # the epoch in progress: (10 - k) steps of 1 s plus 2 s of validation; 6 more whole epochs
    assert etas == pytest.approx([(10 - k) * 1.0 + 2.0 + 6 * 12.1 for k in range(1, 11)])
    assert all(later < earlier for earlier, later in zip([before, *etas], etas))


def test_eta_from_steps_alone_before_the_first_epoch_ends():
    history = MetricsHistory()
    for k in range(1, 4):
        history.record_step(step(1, k, k, steps_per_epoch=10, duration=2.0))
    # 7 steps left at 2 s, then 4 whole epochs of 10 steps at 2 s
    assert history.eta_seconds(5) == pytest.approx(7 * 2.0 + 4 * 20.0)


def test_eta_uses_only_the_current_epochs_steps():
    history = MetricsHistory()
    for k in range(1, 11):
        history.record_step(step(1, k, k, duration=100.0))
    history.record_epoch(epoch(1, duration=50.0))
    history.record_step(step(2, 11, 1, duration=1.0))
    assert history.eta_seconds(3) == pytest.approx(9 * 1.0 + 1 * 50.0)


def test_eta_when_all_steps_of_the_epoch_are_done():
    history = history_of(epoch(1, duration=10.0, val_duration=3.0))
    history.record_step(step(2, 1, 10, steps_per_epoch=10))
    assert history.eta_seconds(2) == pytest.approx(3.0)


# -- persistence ---------------------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
nonneg = st.floats(0.0, 1e6)


@st.composite
def histories(draw):
    history = MetricsHistory(
        overfitting_threshold=draw(st.floats(0.01, 5.0)),
        min_epochs=draw(st.integers(1, 10)),
        eta_smoothing=draw(st.floats(0.01, 1.0)),
    )
    first = draw(st.integers(1, 50))
    global_step = draw(st.integers(0, 100))
    for n in range(first, first + draw(st.integers(0, 6))):
        steps_per_epoch = draw(st.integers(1, 4))
        for k in range(1, draw(st.integers(0, steps_per_epoch)) + 1):
            global_step += draw(st.integers(1, 3))
            history.record_step(
                StepMetrics(
                    epoch=n,
                    step=global_step,
                    epoch_step=k,
                    steps_per_epoch=steps_per_epoch,
                    loss=draw(finite),
                    losses=draw(st.dictionaries(st.sampled_from(["kl", "rec"]), finite)),
                    learning_rate=draw(nonneg),
                    duration=draw(nonneg),
                    timestamp=draw(nonneg),
                )
            )
        history.record_epoch(
            EpochMetrics(
                epoch=n,
                step=global_step,
                train_loss=draw(finite),
                val_loss=draw(st.none() | finite),
                train_losses=draw(st.dictionaries(st.sampled_from(["kl", "rec"]), finite)),
                duration=draw(nonneg),
                val_duration=draw(nonneg),
                eta_seconds=draw(st.none() | nonneg),
                timestamp=draw(nonneg),
            )
        )
    return history


@settings(max_examples=80, deadline=None)
@given(histories())
def test_to_dict_from_dict_is_lossless_through_json(history):
    data = json.loads(json.dumps(history.to_dict(), allow_nan=False))
    back = MetricsHistory.from_dict(data)
    assert back == history
    text = history.to_json()  # history.json: the same data, one step or epoch per line
    assert json.loads(text) == data
    assert text.count("\n") == 9 + len(history.steps) + len(history.epochs) + bool(history.steps) + bool(history.epochs)
    assert back.to_dict() == history.to_dict()
    assert back.eta_seconds(back.last_epoch + 3) == history.eta_seconds(history.last_epoch + 3)
    assert back.overfitting_epochs == history.overfitting_epochs
    assert back.best_epoch == history.best_epoch


def test_from_dict_restores_recording_rules():
    history = MetricsHistory.from_dict(json.loads(json.dumps(history_of(epoch(1), epoch(2)).to_dict())))
    history.record_epoch(epoch(3))
    with pytest.raises(ValueError):
        history.record_epoch(epoch(5))


def test_from_dict_rejects_unknown_keys_and_corrupt_data():
    with pytest.raises(RunDataError, match="did you mean 'epochs'"):
        MetricsHistory.from_dict({"epoch": []})
    with pytest.raises(RunDataError, match="epochs"):
        MetricsHistory.from_dict({"epochs": 3})
    bad = history_of(epoch(1)).to_dict()
    bad["epochs"].append({**bad["epochs"][0], "epoch": 3})
    with pytest.raises(RunDataError, match="epochs"):
        MetricsHistory.from_dict(bad)
    bad = MetricsHistory().to_dict()
    bad["steps"] = [_step_dict(2), _step_dict(2)]
    with pytest.raises(RunDataError, match="steps"):
        MetricsHistory.from_dict(bad)
    bad = history_of(epoch(1)).to_dict()
    bad["epochs"][0]["epoch"] = 0
    with pytest.raises(RunDataError, match="epoch"):
        MetricsHistory.from_dict(bad)


def test_constructing_an_inconsistent_history_raises():
    with pytest.raises(ConfigError, match="epochs"):
        MetricsHistory(epochs=[epoch(1), epoch(3)])
    with pytest.raises(ConfigError, match="steps"):
        MetricsHistory(steps=[step(1, 5, 1), step(1, 3, 2)])


def _step_dict(global_step):
    history = MetricsHistory()
    history.record_step(step(1, global_step, 1))
    return history.to_dict()["steps"][0]


def test_history_is_json_serialisable_and_small():
    history = MetricsHistory()
    for n in range(1, 4):
        history.record_step(step(n, n, 1, steps_per_epoch=1))
        history.record_epoch(epoch(n, val=1.0))
    text = json.dumps(history.to_dict(), allow_nan=False)
    assert "tensor" not in text
    assert set(json.loads(text)) == {
        "overfitting_threshold",
        "min_epochs",
        "eta_smoothing",
        "validation_chunks",
        "min_validation_chunks",
        "steps",
        "epochs",
    }


def test_too_few_validation_chunks_make_the_latest_validated_epoch_the_best():
    history = MetricsHistory(validation_chunks=5, min_validation_chunks=8)
    for n, val in enumerate([3.0, 1.0, 2.0, 2.5], start=1):
        history.record_epoch(epoch(n, val=val))
    assert not history.validation_selects
    assert history.best_epoch == 4 and history.best_val_loss == 2.5 and history.epochs_since_best() == 0
    history.min_validation_chunks = 5  # enough now: the lowest validation loss chooses again
    assert history.validation_selects and history.best_epoch == 2


def test_histories_without_a_validation_size_choose_by_the_validation_loss():
    # histories stored before the size was recorded load with it unknown: nothing changes for them
    history = MetricsHistory()
    for n, val in enumerate([3.0, 1.0, 2.0], start=1):
        history.record_epoch(epoch(n, val=val))
    data = history.to_dict()
    del data["validation_chunks"], data["min_validation_chunks"]
    stored = MetricsHistory.from_dict(data)
    assert stored.validation_chunks is None and stored.validation_selects and stored.best_epoch == 2


def test_the_config_sets_the_minimum_of_validation_chunks():
    history = MetricsHistory.for_config(TrainingConfig(min_validation_chunks=3))
    assert history.min_validation_chunks == 3
    with pytest.raises(ConfigError, match="min_validation_chunks"):
        TrainingConfig(min_validation_chunks=-1)
