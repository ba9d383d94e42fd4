"""Helpers of ``sda_core.training.model`` that model plugins build on: ``refine_codes``."""

from __future__ import annotations

import torch

from sda_core.training.model import refine_codes


def test_refine_codes_moves_each_code_toward_its_own_target_only():
    targets = torch.tensor([[3.0, -2.0], [0.5, 0.5], [-4.0, 1.0]])
    scale = torch.nn.Parameter(torch.ones(2))  # a "model weight" the distance reads

    def distance(codes: torch.Tensor) -> torch.Tensor:
        return (scale * codes - targets[: codes.shape[0]]).square().sum(dim=1)

    start = torch.zeros(3, 2)
    with torch.no_grad():  # as evaluation and generation call it
        fitted = refine_codes(start, distance, steps=200, pull=0.0)
    torch.testing.assert_close(fitted, targets, atol=0.05, rtol=0.0)
    assert not fitted.requires_grad and scale.grad is None and torch.equal(scale.data, torch.ones(2))
    torch.testing.assert_close(refine_codes(start, distance, steps=200, pull=0.0), fitted)  # deterministic
    torch.testing.assert_close(refine_codes(start[:2], distance, steps=200, pull=0.0), fitted[:2])  # per item
    pulled = refine_codes(start, distance, steps=200, pull=1.0)  # the pull keeps codes nearer the start
    assert bool((pulled.norm(dim=1) < fitted.norm(dim=1)).all())
    assert torch.equal(refine_codes(start, distance, steps=0), start)
    assert refine_codes(torch.zeros(0, 2), distance, steps=5).shape == (0, 2)
