"""An exponential moving average of a model's weights: the weights a run validates, previews,
samples from and saves as ``checkpoint["model"]``.

The averaged copy follows the trained model after every optimiser step (``ema_decay`` per step,
warmed up so a short run is not held at its initial weights). Validation on it is far steadier:
measured on the 36 real sounds (wave_vae, 600 steps), the standard deviation of the validation
loss over the last 20 evaluations was 0.35 on the trained weights and 0.08 on the average (epoch to
epoch changes 0.55 and 0.02), so best.pt and early stopping follow the trend instead of one lucky
epoch, and its mean was lower (6.44 against 6.63).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch.nn.modules.batchnorm import _BatchNorm

#: Steps over which the decay warms up: ``min(decay, (1 + step) / (WARMUP + step))``.
WARMUP = 10


def decay_at(step: int, decay: float) -> float:
    """The averaging decay after ``step`` optimiser steps (1-based): 0.18 after one step, 0.55
    after 10, 0.92 after 100, then ``decay``."""
    return min(float(decay), (1.0 + step) / (WARMUP + step))


class WeightAverage:
    """An exponential moving average of ``model``'s parameters, in a copy of the model.

    Buffers are the copy's own (a model's fitted sampler is fitted on the copy), except running
    statistics of the training batches, which are copied from the trained model at each update:
    those of BatchNorm layers, and the buffers a model names in its ``running_buffers`` attribute
    (a tuple of names as ``named_buffers()`` gives them; see docs/model.md).
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be between 0 and 1 (exclusive), got {decay}")
        self.decay = float(decay)
        self.model: Any = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Move the average towards ``model``'s weights after optimiser step ``step``."""
        weight = 1.0 - decay_at(step, self.decay)
        for averaged, current in zip(self.model.parameters(), model.parameters(), strict=True):
            averaged.lerp_(current.detach().to(averaged.dtype), weight)
        for averaged, current in zip(self.model.modules(), model.modules(), strict=True):
            if isinstance(current, _BatchNorm):
                for mine, theirs in zip(averaged.buffers(recurse=False), current.buffers(recurse=False), strict=True):
                    mine.copy_(theirs)
        for name in getattr(model, "running_buffers", ()):
            self.model.get_buffer(name).copy_(model.get_buffer(name))
