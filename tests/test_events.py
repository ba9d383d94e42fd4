"""Events: frozen values, JSON round trip through event_to_dict / event_from_dict, no tensors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sda_core.config import TrainingConfig
from sda_core.config.events import (
    EVENT_TYPES,
    EpochMetrics,
    EvaluationEvent,
    MetricsCallback,
    OverfittingWarning,
    PreviewEvent,
    StepMetrics,
    TrainingCompleteEvent,
    TrainingStartEvent,
    event_from_dict,
    event_to_dict,
)
from sda_core.errors import ConfigError, RunDataError

ALL_EVENTS = (
    TrainingStartEvent,
    StepMetrics,
    EpochMetrics,
    PreviewEvent,
    OverfittingWarning,
    EvaluationEvent,
    TrainingCompleteEvent,
)

finite = st.floats(allow_nan=False, allow_infinity=False)
positive = st.floats(0.0, 1e9)
names = st.text(min_size=1, max_size=12)
loss_dicts = st.dictionaries(names, finite, max_size=3)
timestamps = st.floats(0.0, 4e9)
optional_finite = st.none() | finite

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), finite, st.text(max_size=6))
json_values = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=8,
)

start_events = st.builds(
    TrainingStartEvent,
    run_dir=st.text(max_size=20),
    config=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    train_files=st.integers(0, 10_000),
    validation_files=st.integers(0, 10_000),
    start_epoch=st.integers(1, 10_000),
    max_epochs=st.integers(1, 10_000),
    steps_per_epoch=st.integers(0, 10_000),
    device=st.sampled_from(["cpu", "cuda", "cuda:1", "mps"]),
    resumed=st.booleans(),
    timestamp=timestamps,
)
step_events = st.builds(
    StepMetrics,
    epoch=st.integers(1, 10_000),
    step=st.integers(1, 10**9),
    epoch_step=st.integers(1, 10_000),
    steps_per_epoch=st.integers(1, 10_000),
    loss=finite,
    losses=loss_dicts,
    learning_rate=positive,
    items_per_second=positive,
    duration=positive,
    data_wait=positive,
    timestamp=timestamps,
)
epoch_events = st.builds(
    EpochMetrics,
    epoch=st.integers(1, 10_000),
    step=st.integers(0, 10**9),
    train_loss=finite,
    val_loss=optional_finite,
    train_losses=loss_dicts,
    val_losses=loss_dicts,
    learning_rate=positive,
    duration=positive,
    train_duration=positive,
    val_duration=positive,
    eta_seconds=st.none() | positive,
    timestamp=timestamps,
)
preview_events = st.builds(
    PreviewEvent,
    epoch=st.integers(0, 10_000),
    directory=st.text(max_size=20),
    files=st.lists(st.text(max_size=12), max_size=4).map(tuple),
    kinds=st.lists(st.sampled_from(["sample", "reconstruction"]), max_size=4).map(tuple),
    sample_rate=st.integers(1, 384000),
    render_seconds=positive,
    timestamp=timestamps,
)
overfitting_events = st.builds(
    OverfittingWarning,
    epoch=st.integers(1, 10_000),
    gap=finite,
    threshold=st.floats(0.0, 10.0),
    consecutive_epochs=st.integers(1, 1000),
    train_loss=finite,
    val_loss=finite,
    message=st.text(max_size=30),
    timestamp=timestamps,
)
complete_events = st.builds(
    TrainingCompleteEvent,
    reason=st.sampled_from(["max_epochs", "early_stop: overfitting", "interrupted", "stop_requested"]),
    epochs_completed=st.integers(0, 10_000),
    steps=st.integers(0, 10**9),
    best_epoch=st.none() | st.integers(1, 10_000),
    best_val_loss=optional_finite,
    final_train_loss=optional_finite,
    final_val_loss=optional_finite,
    run_dir=st.text(max_size=20),
    checkpoints=st.dictionaries(st.sampled_from(["last", "best"]), st.text(max_size=20)),
    duration=positive,
    timestamp=timestamps,
)
evaluation_events = st.builds(
    EvaluationEvent,
    run_dir=st.text(max_size=20),
    epoch=st.none() | st.integers(0, 10_000),
    checkpoint=st.text(max_size=20),
    count=st.integers(0, 10_000),
    seed=st.integers(0, 2**31),
    resemblance=optional_finite,
    copying=optional_finite,
    diversity=optional_finite,
    nn_accuracy=st.none() | st.floats(0.0, 1.0),
    validation_resemblance=optional_finite,
    validation_copying=optional_finite,
    validation_diversity=optional_finite,
    validation_nn_accuracy=st.none() | st.floats(0.0, 1.0),
    reconstruction=optional_finite,
    reconstruction_source=st.sampled_from(["validation", "training"]),
    metrics=loss_dicts,
    duration=positive,
    path=st.text(max_size=20),
    timestamp=timestamps,
)
any_event = st.one_of(
    start_events, step_events, epoch_events, preview_events, overfitting_events, evaluation_events, complete_events
)


def minimal(cls):
    """A small valid instance of every event type."""
    return {
        TrainingStartEvent: lambda: TrainingStartEvent(run_dir="runs/x"),
        StepMetrics: lambda: StepMetrics(epoch=1, step=1, epoch_step=1, steps_per_epoch=4, loss=0.5),
        EpochMetrics: lambda: EpochMetrics(epoch=1, train_loss=1.0, val_loss=1.1),
        PreviewEvent: lambda: PreviewEvent(
            epoch=5, directory="previews/epoch_0005", files=("a.wav",), kinds=("sample",)
        ),
        OverfittingWarning: lambda: OverfittingWarning(epoch=4, gap=0.3, threshold=0.2),
        EvaluationEvent: lambda: EvaluationEvent(run_dir="runs/x", epoch=3, count=32, resemblance=0.4, nn_accuracy=0.9),
        TrainingCompleteEvent: lambda: TrainingCompleteEvent(reason="max_epochs", epochs_completed=3),
    }[cls]()


def assert_plain_json(value):
    """Only JSON types, all the way down (no tensors, arrays, paths or enums)."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), type(value)


# -- round trip ---------------------------------------------------------------------------------


def test_every_event_type_is_registered_by_kind():
    assert set(EVENT_TYPES.values()) == set(ALL_EVENTS)
    for kind, cls in EVENT_TYPES.items():
        assert cls.kind == kind
    assert len({cls.kind for cls in ALL_EVENTS}) == len(ALL_EVENTS)


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda c: c.__name__)
def test_minimal_event_round_trips(cls):
    event = minimal(cls)
    data = event_to_dict(event)
    assert data["event"] == cls.kind
    assert_plain_json(data)
    back = event_from_dict(json.loads(json.dumps(data, allow_nan=False)))
    assert type(back) is cls
    assert back == event


@settings(max_examples=150, deadline=None)
@given(any_event)
def test_any_event_round_trips_through_json(event):
    data = event_to_dict(event)
    assert_plain_json(data)
    text = json.dumps(data, allow_nan=False)
    back = event_from_dict(json.loads(text))
    assert back == event
    assert event_to_dict(back) == data


def test_event_from_dict_does_not_mutate_its_input():
    data = event_to_dict(minimal(StepMetrics))
    copy = dict(data)
    event_from_dict(data)
    assert data == copy


def test_unknown_event_kind_is_a_run_data_error_listing_kinds():
    with pytest.raises(RunDataError) as info:
        event_from_dict({"event": "epoc", "epoch": 1})
    message = str(info.value)
    for kind in EVENT_TYPES:
        assert kind in message


def test_missing_event_kind_is_a_run_data_error():
    with pytest.raises(RunDataError, match="event"):
        event_from_dict({"epoch": 1, "train_loss": 1.0})


def test_unknown_field_is_a_run_data_error():
    """Stored events are run data: damaged ones are a RunDataError, not a ConfigError."""
    data = event_to_dict(minimal(EpochMetrics))
    data["trian_loss"] = 3.0
    with pytest.raises(RunDataError, match="damaged epoch event: .*did you mean 'train_loss'"):
        event_from_dict(data)


# -- frozen, no tensors ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda c: c.__name__)
def test_events_are_frozen(cls):
    event = minimal(cls)
    field = attrs.fields(cls)[0].name
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(event, field, getattr(event, field))


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda c: c.__name__)
def test_events_have_a_timestamp_and_kind(cls):
    event = minimal(cls)
    assert isinstance(event.timestamp, float) and event.timestamp > 0
    assert isinstance(cls.kind, str)
    assert "kind" not in {f.name for f in attrs.fields(cls)}


class FakeTensor:
    """Stands in for a 0-d torch tensor: convertible with float() and nothing else JSON-able."""

    def __init__(self, value):
        self.value = value

    def __float__(self):
        return float(self.value)


def test_tensor_like_numbers_become_python_floats():
    step = StepMetrics(
        epoch=1,
        step=1,
        epoch_step=1,
        steps_per_epoch=1,
        loss=FakeTensor(0.25),
        losses={"kl": FakeTensor(0.1), "rec": np.float32(0.15)},
        learning_rate=np.float64(1e-3),
        duration=np.array(0.5),
    )
    epoch = EpochMetrics(
        epoch=1, train_loss=FakeTensor(1.0), val_loss=np.float32(1.5), val_losses={"kl": FakeTensor(2)}
    )
    for event in (step, epoch):
        data = event_to_dict(event)
        assert_plain_json(data)
        json.dumps(data, allow_nan=False)
    assert type(step.loss) is float and step.loss == 0.25
    assert type(step.losses["rec"]) is float
    assert type(epoch.val_loss) is float and epoch.val_loss == 1.5


def test_paths_become_strings():
    preview = PreviewEvent(
        epoch=5,
        directory=Path("runs/x/previews/epoch_0005"),
        files=[Path("runs/x/previews/epoch_0005/sample_0.wav")],
        kinds=["sample"],
    )
    assert preview.directory == "runs/x/previews/epoch_0005"
    assert preview.files == ("runs/x/previews/epoch_0005/sample_0.wav",)
    done = TrainingCompleteEvent(
        reason="max_epochs",
        epochs_completed=1,
        run_dir=Path("runs/x"),
        checkpoints={"last": Path("runs/x/checkpoints/last.pt")},
    )
    start = TrainingStartEvent(run_dir=Path("runs/x"))
    for event in (preview, done, start):
        assert_plain_json(event_to_dict(event))
        assert event_from_dict(json.loads(json.dumps(event_to_dict(event)))) == event


def test_start_event_accepts_a_training_config():
    config = TrainingConfig(max_epochs=7, plugins={"plots": {"dpi": 1}})
    event = TrainingStartEvent(run_dir="runs/x", config=config, max_epochs=7)
    assert event.config == config.to_dict()
    assert TrainingConfig.from_dict(event.config) == config
    assert_plain_json(event_to_dict(event))


def test_preview_event_names_files_not_audio():
    event = minimal(PreviewEvent)
    assert all(isinstance(path, str) for path in event.files)
    assert event.kinds == ("sample",)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (StepMetrics, dict(epoch=0, step=1, epoch_step=1, steps_per_epoch=1, loss=1.0), "epoch"),
        (StepMetrics, dict(epoch=1, step=0, epoch_step=1, steps_per_epoch=1, loss=1.0), "step"),
        (StepMetrics, dict(epoch=True, step=1, epoch_step=1, steps_per_epoch=1, loss=1.0), "epoch"),
        (EpochMetrics, dict(epoch=-1, train_loss=1.0), "epoch"),
        (PreviewEvent, dict(epoch=-1, directory="d"), "epoch"),
        (TrainingCompleteEvent, dict(reason="x", epochs_completed=-1), "epochs_completed"),
        (TrainingCompleteEvent, dict(reason="x", epochs_completed=1, best_epoch=0), "best_epoch"),
        (TrainingStartEvent, dict(run_dir="r", start_epoch=0), "start_epoch"),
        (OverfittingWarning, dict(epoch=1, gap=0.3, threshold=0.2, consecutive_epochs=0), "consecutive_epochs"),
    ],
)
def test_invalid_event_fields_raise_config_error(cls, kwargs, field):
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    assert str(info.value).startswith(field + ":")


# -- overfitting gap ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("train", "val", "gap"),
    [(1.0, 1.5, 0.5), (2.0, 1.0, -0.5), (1.0, 1.0, 0.0), (4.0, 5.0, 0.25)],
)
def test_overfitting_gap(train, val, gap):
    assert EpochMetrics(epoch=1, train_loss=train, val_loss=val).overfitting_gap == pytest.approx(gap)


@pytest.mark.parametrize(("train", "val"), [(1.0, None), (0.0, 1.0), (-1.0, 1.0)])
def test_overfitting_gap_undefined(train, val):
    assert EpochMetrics(epoch=1, train_loss=train, val_loss=val).overfitting_gap is None


@settings(max_examples=100, deadline=None)
@given(st.floats(1e-6, 1e6), st.floats(0.0, 1e6))
def test_overfitting_gap_property(train, val):
    gap = EpochMetrics(epoch=1, train_loss=train, val_loss=val).overfitting_gap
    assert gap is not None and math.isfinite(gap)
    assert gap == pytest.approx((val - train) / train)
    assert (gap > 0) == (val > train)


# -- callbacks -----------------------------------------------------------------------------------------


def test_plain_callables_are_metrics_callbacks():
    received = []
    callback = received.append
    assert isinstance(callback, MetricsCallback)
    assert isinstance(lambda event: None, MetricsCallback)
    callback(minimal(StepMetrics))
    assert received and received[0].kind == "step"
    assert not isinstance(3, MetricsCallback)


def test_evaluation_event_undefined_figures_are_none_and_figures_lists_the_present_ones():
    event = EvaluationEvent(
        run_dir=Path("runs/x"),
        resemblance=float("nan"),
        copying=math.inf,
        diversity=0.5,
        nn_accuracy=np.float64(0.75),
        reconstruction=2.0,
        metrics={"fad": 3},
    )
    assert event.run_dir == "runs/x" and event.resemblance is None and event.copying is None
    assert type(event.nn_accuracy) is float
    assert event.figures() == {"diversity": 0.5, "nn_accuracy": 0.75, "reconstruction": 2.0, "plugins/fad": 3.0}
    assert event_from_dict(json.loads(json.dumps(event_to_dict(event), allow_nan=False))) == event
