"""Reference plugin for ``sda_check_overfitting`` and ``sda_should_stop``.

Overfitting is the validation loss pulling away from the training loss: the relative gap
``(val - train) / train`` above ``overfitting_threshold`` (0.20), counted from
``overfitting_min_epochs`` on. After ``overfitting_patience`` such epochs in a row the detector
emits one :class:`~sda_core.config.events.OverfittingWarning` for that streak.

Early stopping (``early_stopping = true``) ends the run when either

* the validation loss has not improved for ``early_stopping_patience`` epochs, or
* the model has overfit for ``overfitting_patience + early_stopping_patience // 2`` epochs in a
  row with no new best validation loss during that streak.

Both count from ``early_stopping_from`` (half) of ``max_epochs`` on
(:func:`early_stopping_start_epoch`): before that the learning rate is near its peak and the
validation loss swings, so no run stops in its first half.

Neither rule applies when the validation set has fewer than ``min_validation_chunks`` (8) chunks
(``MetricsHistory.validation_selects``): the warning still comes, but the loss of so few held-out
chunks is too noisy to stop by.

Every decision is derived from the run's :class:`~sda_core.config.history.MetricsHistory` alone, which
is saved in each checkpoint, so the detector's state survives a resume exactly. Whatever ends the
run, ``best.pt`` holds the weights of the best validation epoch.
"""

from __future__ import annotations

import math

from sda_core import hookimpl
from sda_core.config import TrainingConfig
from sda_core.config.events import OverfittingWarning
from sda_core.config.history import MetricsHistory


def overfitting_streak_limit(config: TrainingConfig) -> int:
    """Consecutive overfitting epochs (without a new best) after which early stopping stops."""
    return config.overfitting_patience + config.early_stopping_patience // 2


def early_stopping_start_epoch(config: TrainingConfig) -> int:
    """The first epoch that early stopping's patience and overfitting streaks count:
    ``early_stopping_from`` of ``max_epochs`` (at least 1).

    Measured on the 36 real sounds (wave_vae, 150 epochs, warm-up-cosine learning rate, averaged
    weights): the validation loss reached 6.52 at epoch 50, swung between 7.2 and 10.2 while the
    learning rate stayed above 80% of its peak, and improved again only from epoch 86 (learning
    rate 48% of the peak) to 6.15 by epoch 93; counting from epoch 1, early stopping had ended
    that run at epoch 64 with best.pt at epoch 50 (1-NN accuracy 0.93, reconstruction 3.00).
    """
    return max(1, math.ceil(config.max_epochs * config.early_stopping_from))


def _history_for(history: MetricsHistory, config: TrainingConfig) -> MetricsHistory:
    """The history judged with the config's threshold and minimum epochs."""
    if (history.overfitting_threshold, history.min_epochs, history.min_validation_chunks) == (
        config.overfitting_threshold,
        config.overfitting_min_epochs,
        config.min_validation_chunks,
    ):
        return history
    return MetricsHistory(
        overfitting_threshold=config.overfitting_threshold,
        min_epochs=config.overfitting_min_epochs,
        validation_chunks=history.validation_chunks,
        min_validation_chunks=config.min_validation_chunks,
        epochs=list(history.epochs),
    )


@hookimpl(trylast=True)
def sda_check_overfitting(history: MetricsHistory, config: TrainingConfig) -> OverfittingWarning | None:
    """Warn once per streak, when it reaches ``overfitting_patience`` epochs."""
    judged = _history_for(history, config)
    streak = judged.consecutive_overfitting_epochs()
    if streak != config.overfitting_patience:
        return None
    last = judged.epochs[-1]
    gap = last.overfitting_gap or 0.0
    return OverfittingWarning(
        epoch=last.epoch,
        gap=gap,
        threshold=config.overfitting_threshold,
        consecutive_epochs=streak,
        train_loss=last.train_loss,
        val_loss=last.val_loss or 0.0,
        message=(
            f"the validation loss has been more than {config.overfitting_threshold:.0%} above the training "
            f"loss for {streak} epochs (now {gap:.0%}): {_diagnosis(judged)}; to generalise better, "
            f"{_advice(config)}"
        ),
    )


def _diagnosis(history: MetricsHistory) -> str:
    """What the gap means now: harmless while validation still improves, memorising once not."""
    if not history.validation_selects:
        return (
            f"the model fits your training files better than the {history.validation_chunks} validation "
            "chunks, too few to choose a checkpoint by (best.pt follows the latest epoch; check "
            "the copying figure of `sda evaluate`)"
        )
    if history.epochs_since_best() == 0:
        return (
            "the model fits your training files faster than it generalises, though the validation "
            "loss is still improving"
        )
    return (
        f"the model is memorising your training files (validation best at epoch {history.best_epoch}, "
        "which best.pt keeps)"
    )


def _advice(config: TrainingConfig) -> str:
    """What to try next, given what the config already does."""
    steps = ["add files"]
    if config.preset.value != "conservative":
        steps.append("use a stronger preset (--set preset=conservative)")
    if config.augmentation_strength < 1.0:
        steps.append("augment more (--set augmentation_strength=1.0)")
    if config.regularization.dropout < 0.4:
        steps.append(
            f"raise dropout (--set regularization.dropout={min(0.5, config.regularization.dropout + 0.1):.1f})"
        )
    steps.append(f"shrink the latent (--set latent_dim={max(2, config.latent_dim // 2)})")
    return ", ".join(steps[:-1]) + " or " + steps[-1]


@hookimpl(trylast=True)
def sda_should_stop(history: MetricsHistory, config: TrainingConfig) -> str | None:
    """Stop on a long plateau of the validation loss or persistent overfitting (if enabled and the
    validation set is large enough to judge by: ``history.validation_selects``)."""
    history = _history_for(history, config)
    if not config.early_stopping or history.best_epoch is None or not history.validation_selects:
        return None
    since_best = history.epochs_since_best()
    # patience and streaks count from the start epoch on: before it the learning rate is near its
    # peak and the validation loss swings (see early_stopping_start_epoch)
    counted = history.last_epoch - max(history.best_epoch, early_stopping_start_epoch(config) - 1)
    if counted >= config.early_stopping_patience:
        return (
            f"early stop: no improvement in validation loss for {since_best} epochs (best: epoch {history.best_epoch})"
        )
    streak = min(history.consecutive_overfitting_epochs(), max(0, counted))
    if streak >= overfitting_streak_limit(config) and since_best >= streak:
        return f"early stop: overfitting for {streak} consecutive epochs (best: epoch {history.best_epoch})"
    return None
