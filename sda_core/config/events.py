"""Events the engine emits while training; host apps and consumer plugins receive them.

Events are frozen attrs values that carry no tensors or audio (a :class:`PreviewEvent` names the
WAV files it wrote), so they can be logged, sent over a socket or stored as JSON. Each has a
``kind`` string; :func:`event_to_dict` adds it, :func:`event_from_dict` dispatches on it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import attrs

from sda_core import validators as v
from sda_core.errors import RunDataError
from sda_core.serialization import from_stored, to_jsonable


def _now() -> float:
    return time.time()


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _finite_or_none(value: Any) -> float | None:
    """A finite float, or None (for None, NaN and infinities: an undefined figure)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _float_dict(value: Mapping[str, Any] | None) -> dict[str, float]:
    return {str(key): float(item) for key, item in (value or {}).items()}


def _path(value: Any) -> str:
    """A path as a string (``pathlib.Path`` and other path-likes are accepted)."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _paths(value: Any) -> tuple[str, ...]:
    return tuple(_path(item) for item in value)


def _path_dict(value: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(key): _path(item) for key, item in (value or {}).items()}


def _config_dict(value: Any) -> dict[str, Any]:
    """A TrainingConfig (or any attrs value) as its JSON dict; a dict is copied."""
    if attrs.has(type(value)):
        return to_jsonable(value)
    return dict(value or {})


@attrs.frozen(kw_only=True)
class TrainingStartEvent:
    """Training is about to run its first step (also after a resume).

    Attributes:
        run_dir: the run folder.
        config: the resolved TrainingConfig as a dict.
        train_files: number of training files.
        validation_files: number of validation files.
        validation_chunks: chunks in the validation set; below ``MIN_VALIDATION_CHUNKS`` (8) the
            validation loss neither chooses best.pt nor stops the run early (None: not given).
        start_epoch: first epoch that will run (1 for a fresh run, later on resume).
        max_epochs: last epoch the run may reach.
        steps_per_epoch: optimiser steps per epoch (under torchrun, of every process together:
            about 1/N of one process's, each step training N x ``batch_size`` chunks).
        device: the torch device training runs on.
        resumed: whether the run continues from a checkpoint.
        world_size: processes training together (torchrun's ``WORLD_SIZE``; 1 without torchrun).
        rank: the process this event comes from (0 unless a plugin asks for every rank's events).
        timestamp: wall-clock time (seconds since the epoch).
    """

    kind: ClassVar[str] = "train_start"
    #: The consumer hook that delivers this event (declared once, here; the spec is in hooks.specs).
    hook: ClassVar[str] = "sda_on_train_start"
    run_dir: str = attrs.field(converter=_path)
    config: dict[str, Any] = attrs.field(factory=dict, converter=_config_dict)
    train_files: int = attrs.field(default=0, validator=v.integer(0))
    validation_files: int = attrs.field(default=0, validator=v.integer(0))
    validation_chunks: int | None = attrs.field(default=None, validator=v.integer(0, optional=True))
    start_epoch: int = attrs.field(default=1, validator=v.integer(1))
    max_epochs: int = attrs.field(default=1, validator=v.integer(1))
    steps_per_epoch: int = attrs.field(default=0, validator=v.integer(0))
    device: str = "cpu"
    resumed: bool = False
    world_size: int = attrs.field(default=1, validator=v.integer(1))
    rank: int = attrs.field(default=0, validator=v.integer(0))
    timestamp: float = attrs.field(factory=_now)


@attrs.frozen(kw_only=True)
class StepMetrics:
    """One optimiser step finished.

    Attributes:
        epoch: the epoch (1-based).
        step: global step count across the run (1-based, continuous across resumes).
        epoch_step: step within the epoch (1-based).
        steps_per_epoch: steps this epoch will take.
        loss: total training loss of the step.
        losses: named loss components (e.g. reconstruction, kl).
        learning_rate: learning rate used for the step.
        items_per_second: training items processed per second in this step (under torchrun, by
            every process together).
        duration: seconds the step took, data wait included.
        data_wait: seconds of ``duration`` spent waiting for the batch.
        timestamp: wall-clock time at the end of the step.
    """

    kind: ClassVar[str] = "step"
    #: The consumer hook that delivers this event (declared once, here; the spec is in hooks.specs).
    hook: ClassVar[str] = "sda_on_step"
    epoch: int = attrs.field(validator=v.integer(1))
    step: int = attrs.field(validator=v.integer(1))
    epoch_step: int = attrs.field(validator=v.integer(1))
    steps_per_epoch: int = attrs.field(validator=v.integer(1))
    loss: float = attrs.field(converter=float)
    losses: dict[str, float] = attrs.field(factory=dict, converter=_float_dict)
    learning_rate: float = attrs.field(default=0.0, converter=float)
    items_per_second: float = attrs.field(default=0.0, converter=float)
    duration: float = attrs.field(default=0.0, converter=float)
    data_wait: float = attrs.field(default=0.0, converter=float)
    timestamp: float = attrs.field(factory=_now)


@attrs.frozen(kw_only=True)
class EpochMetrics:
    """One epoch finished, validation included.

    Attributes:
        epoch: the epoch (1-based).
        step: global step count at the end of the epoch.
        train_loss: mean training loss over the epoch.
        val_loss: mean validation loss (None when there is no validation set).
        train_losses: named training loss components (means).
        val_losses: named validation loss components (means).
        learning_rate: learning rate at the end of the epoch.
        duration: seconds the whole epoch took.
        train_duration: seconds spent training.
        val_duration: seconds spent validating.
        eta_seconds: estimated seconds until the whole run ends (None until known).
        timestamp: wall-clock time at the end of the epoch.
    """

    kind: ClassVar[str] = "epoch"
    #: The consumer hook that delivers this event (declared once, here; the spec is in hooks.specs).
    hook: ClassVar[str] = "sda_on_epoch"
    epoch: int = attrs.field(validator=v.integer(1))
    step: int = attrs.field(default=0, validator=v.integer(0))
    train_loss: float = attrs.field(converter=float)
    val_loss: float | None = attrs.field(default=None, converter=_optional_float)
    train_losses: dict[str, float] = attrs.field(factory=dict, converter=_float_dict)
    val_losses: dict[str, float] = attrs.field(factory=dict, converter=_float_dict)
    learning_rate: float = attrs.field(default=0.0, converter=float)
    duration: float = attrs.field(default=0.0, converter=float)
    train_duration: float = attrs.field(default=0.0, converter=float)
    val_duration: float = attrs.field(default=0.0, converter=float)
    eta_seconds: float | None = attrs.field(default=None, converter=_optional_float)
    timestamp: float = attrs.field(factory=_now)

    @property
    def overfitting_gap(self) -> float | None:
        """(val_loss - train_loss) / train_loss, or None without validation or train loss <= 0."""
        if self.val_loss is None or self.train_loss <= 0:
            return None
        return (self.val_loss - self.train_loss) / self.train_loss


@attrs.frozen(kw_only=True)
class PreviewEvent:
    """Preview audio was rendered and written.

    Attributes:
        epoch: the epoch the previews belong to.
        directory: folder holding the files (``previews/epoch_NNNN``).
        files: paths of the WAV files written.
        kinds: what each file is, parallel to ``files`` ("sample" or "reconstruction").
        sample_rate: sample rate of the files.
        render_seconds: time taken to render and write them.
    """

    kind: ClassVar[str] = "preview"
    #: The consumer hook that delivers this event (declared once, here; the spec is in hooks.specs).
    hook: ClassVar[str] = "sda_on_preview"
    epoch: int = attrs.field(validator=v.integer(0))
    directory: str = attrs.field(converter=_path)
    files: tuple[str, ...] = attrs.field(converter=_paths, default=())
    kinds: tuple[str, ...] = attrs.field(converter=tuple, default=())
    sample_rate: int = attrs.field(default=22050, validator=v.integer(1))
    render_seconds: float = attrs.field(default=0.0, converter=float)
    timestamp: float = attrs.field(factory=_now)


@attrs.frozen(kw_only=True)
class OverfittingWarning:
    """Validation loss has exceeded training loss by more than the threshold for a while.

    Attributes:
        epoch: the epoch that triggered the warning.
        gap: (val_loss - train_loss) / train_loss at that epoch.
        threshold: the configured threshold (0.20 by default).
        consecutive_epochs: epochs in a row above the threshold.
        train_loss: training loss of the epoch.
        val_loss: validation loss of the epoch.
        message: one sentence for the user, with what to do about it.
    """

    kind: ClassVar[str] = "overfitting"
    #: The consumer hook that delivers this event (declared once, here; the spec is in hooks.specs).
    hook: ClassVar[str] = "sda_on_overfitting"
    epoch: int = attrs.field(validator=v.integer(1))
    gap: float = attrs.field(converter=float)
    threshold: float = attrs.field(converter=float)
    consecutive_epochs: int = attrs.field(default=1, validator=v.integer(1))
    train_loss: float = attrs.field(default=0.0, converter=float)
    val_loss: float = attrs.field(default=0.0, converter=float)
    message: str = ""
    timestamp: float = attrs.field(factory=_now)


@attrs.frozen(kw_only=True)
class TrainingCompleteEvent:
    """The run ended, for whatever reason; checkpoints are on disk.

    Attributes:
        reason: why it ended ("max_epochs", "early stop: ...", "interrupted", "stop_requested", "error: ...").
        epochs_completed: last epoch fully completed.
        steps: global step count at the end.
        best_epoch: epoch with the lowest validation loss (None without validation).
        best_val_loss: that validation loss.
        final_train_loss: training loss of the last epoch.
        final_val_loss: validation loss of the last epoch.
        run_dir: the run folder.
        checkpoints: checkpoint name ("last", "best") -> path.
        duration: seconds this invocation trained.
    """

    kind: ClassVar[str] = "train_end"
    #: The consumer hook that delivers this event (declared once, here; the spec is in hooks.specs).
    hook: ClassVar[str] = "sda_on_train_end"
    reason: str
    epochs_completed: int = attrs.field(validator=v.integer(0))
    steps: int = attrs.field(default=0, validator=v.integer(0))
    best_epoch: int | None = attrs.field(default=None, validator=v.integer(1, optional=True))
    best_val_loss: float | None = attrs.field(default=None, converter=_optional_float)
    final_train_loss: float | None = attrs.field(default=None, converter=_optional_float)
    final_val_loss: float | None = attrs.field(default=None, converter=_optional_float)
    run_dir: str = attrs.field(default="", converter=_path)
    checkpoints: dict[str, str] = attrs.field(factory=dict, converter=_path_dict)
    duration: float = attrs.field(default=0.0, converter=float)
    timestamp: float = attrs.field(factory=_now)


@attrs.frozen(kw_only=True)
class EvaluationEvent:
    """A finished run was evaluated (``sda evaluate``'s figures, measured at the end of training).

    The figures are those of :func:`sda_core.training.evaluation.evaluate_run` (docs/evaluation.md):
    generated sounds against the training chunks, and against the validation chunks where the
    run has at least two. A figure that cannot be computed (too few chunks, an undefined ratio) is
    None.

    Attributes:
        run_dir: the run folder.
        epoch: the epoch of the checkpoint evaluated (None when it does not say).
        checkpoint: the checkpoint evaluated (``best.pt``, else ``last.pt``).
        count: sounds generated.
        seed: seed of generation, the noise baseline and subsampling.
        resemblance: 0 = as close to the training chunks as their own halves, 1 = shaped noise.
        copying: nearest-real distance over the real chunks' own (well under 1: replaying).
        diversity: spread of the generated sounds over that of the real chunks.
        nn_accuracy: 1-NN two-sample accuracy (0.5 indistinguishable, 1.0 told apart).
        validation_resemblance, validation_copying, validation_diversity, validation_nn_accuracy:
            the same against the validation chunks (None without at least two).
        reconstruction: multi-resolution STFT distance of reconstructions (lower is better).
        reconstruction_source: ``"validation"`` or ``"training"`` chunks reconstructed.
        reconstruction_fitted: the same distance for the model's fitted codes (``fit_codes``),
            None when it has none.
        metrics: figures added by ``sda_evaluate_metrics`` plugins.
        duration: seconds the evaluation took.
        path: the ``evaluation.json`` written ("" when none was).
        timestamp: wall-clock time when the evaluation finished.
    """

    kind: ClassVar[str] = "evaluation"
    #: The consumer hook that delivers this event (declared once, here; the spec is in hooks.specs).
    hook: ClassVar[str] = "sda_on_evaluation"
    run_dir: str = attrs.field(converter=_path)
    epoch: int | None = attrs.field(default=None, validator=v.integer(0, optional=True))
    checkpoint: str = attrs.field(default="", converter=_path)
    count: int = attrs.field(default=0, validator=v.integer(0))
    seed: int = attrs.field(default=0, validator=v.integer(0))
    resemblance: float | None = attrs.field(default=None, converter=_finite_or_none)
    copying: float | None = attrs.field(default=None, converter=_finite_or_none)
    diversity: float | None = attrs.field(default=None, converter=_finite_or_none)
    nn_accuracy: float | None = attrs.field(default=None, converter=_finite_or_none)
    validation_resemblance: float | None = attrs.field(default=None, converter=_finite_or_none)
    validation_copying: float | None = attrs.field(default=None, converter=_finite_or_none)
    validation_diversity: float | None = attrs.field(default=None, converter=_finite_or_none)
    validation_nn_accuracy: float | None = attrs.field(default=None, converter=_finite_or_none)
    reconstruction: float | None = attrs.field(default=None, converter=_finite_or_none)
    reconstruction_source: str = ""
    reconstruction_fitted: float | None = attrs.field(default=None, converter=_finite_or_none)
    metrics: dict[str, float] = attrs.field(factory=dict, converter=_float_dict)
    duration: float = attrs.field(default=0.0, converter=float)
    path: str = attrs.field(default="", converter=_path)
    timestamp: float = attrs.field(factory=_now)

    def figures(self) -> dict[str, float]:
        """Every figure that is present, by name (``validation_...`` and plugin metrics included)."""
        names = (
            "resemblance",
            "copying",
            "diversity",
            "nn_accuracy",
            "validation_resemblance",
            "validation_copying",
            "validation_diversity",
            "validation_nn_accuracy",
            "reconstruction",
            "reconstruction_fitted",
        )
        present = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
        return {**present, **{f"plugins/{name}": value for name, value in self.metrics.items()}}


Event = (
    TrainingStartEvent
    | StepMetrics
    | EpochMetrics
    | PreviewEvent
    | OverfittingWarning
    | EvaluationEvent
    | TrainingCompleteEvent
)

#: Every event class, in the order of a run. The callback adapter, the event table and the
#: consumer hooks (``hooks.specs.CONSUMER_HOOKS``) all derive from this tuple and each class's
#: ``kind`` and ``hook``: adding an event touches its class, this tuple and its hookspec.
EVENT_CLASSES: tuple[type, ...] = (
    TrainingStartEvent,
    StepMetrics,
    EpochMetrics,
    PreviewEvent,
    OverfittingWarning,
    EvaluationEvent,
    TrainingCompleteEvent,
)

EVENT_TYPES: dict[str, type] = {cls.kind: cls for cls in EVENT_CLASSES}
#: Event class -> the consumer hook that delivers it.
EVENT_HOOKS: dict[type, str] = {cls: cls.hook for cls in EVENT_CLASSES}


@runtime_checkable
class MetricsCallback(Protocol):
    """A plain callable that receives every event; the engine adapts it into a consumer plugin.

    Example::

        engine = Engine(callbacks=[lambda event: print(event.kind, event)])
    """

    def __call__(self, event: Event) -> None: ...


def event_to_dict(event: Event) -> dict[str, Any]:
    """The event as JSON-compatible data, with its ``kind`` under the key ``"event"``."""
    return {"event": event.kind, **to_jsonable(event)}


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Rebuild an event from :func:`event_to_dict` output.

    Raises :class:`RunDataError` for data without a known ``"event"`` kind, with unknown fields
    or with bad values (stored events are run data, not configuration).
    """
    if not isinstance(data, Mapping):
        raise RunDataError("event", f"{data!r} is not a table with an 'event' key")
    payload = dict(data)
    kind = payload.pop("event", None)
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise RunDataError("event", f"the kind {kind!r} is not one of " + ", ".join(EVENT_TYPES))
    return from_stored(EVENT_TYPES[kind], payload, f"{kind} event")
