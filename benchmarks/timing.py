"""Side-by-side timing for ratio benchmarks on shared, noisy machines.

The variants being compared run *interleaved inside one process*: round 1 times A then B, round 2
times B then A, and so on. A burst of noise from another tenant (or a CPU frequency change) then
hits both variants roughly equally instead of landing on whichever happened to run in that
second. Each variant is warmed up first (imports, caches, the OS file cache, CPython's specialising
interpreter), every sample runs with the cyclic garbage collector paused (as :mod:`timeit` does),
and the comparison uses the **median** of the samples, which ignores the slow outliers noise
produces.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    """The samples (seconds per call of each variant's callable), by variant name."""

    samples: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def ratio(self, numerator: str, denominator: str) -> float:
        """median(numerator) / median(denominator)."""
        return self.median(numerator) / self.median(denominator)

    def pair_ratio_spread(self, numerator: str, denominator: str) -> tuple[float, float]:
        """The 25th and 75th percentile of the per-round ratios: how stable the ratio was."""
        ratios = sorted(a / b for a, b in zip(self.samples[numerator], self.samples[denominator]))
        if len(ratios) < 4:
            return ratios[0], ratios[-1]
        quartiles = statistics.quantiles(ratios, n=4)
        return quartiles[0], quartiles[2]


def compare(
    variants: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
) -> Comparison:
    """Time each variant ``repeats`` times, interleaved, after ``warmup`` untimed rounds.

    Args:
        variants: name -> a callable doing one sample's worth of work. Make a sample last at least
            a millisecond (loop inside the callable) so timer resolution does not matter.
        repeats: timed samples per variant.
        warmup: untimed rounds of every variant before timing.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    try:
        for round_index in range(repeats):
            # A,B then B,A: neither variant always runs first (or right after the other).
            order = names if round_index % 2 == 0 else names[::-1]
            for name in order:
                function = variants[name]
                gc.collect()
                gc.disable()
                start = time.perf_counter()
                function()
                elapsed = time.perf_counter() - start
                gc.enable()
                samples[name].append(elapsed)
    finally:
        if gc_was_enabled:
            gc.enable()
        else:
            gc.disable()
    return Comparison(samples)


@dataclass(frozen=True)
class Result:
    """One row of the benchmark table.

    Attributes:
        name: what was measured.
        ratio: median(measured variant) / median(baseline).
        target: the largest acceptable ratio; None for an informational row (never fails).
        detail: medians and spread, for humans.
    """

    name: str
    ratio: float
    target: float | None
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.target is None or self.ratio <= self.target

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        return "PASS" if self.passed else "FAIL"


def format_seconds(seconds: float) -> str:
    """A duration with a unit that keeps three significant digits readable."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.2f} µs"
    return f"{seconds * 1e9:.0f} ns"


def describe(comparison: Comparison, measured: str, baseline: str, per: int = 1, unit: str = "") -> str:
    """'measured X vs baseline Y per unit; per-round ratio IQR a-b, n=N'."""
    low, high = comparison.pair_ratio_spread(measured, baseline)
    per_text = f"/{unit}" if unit else ""
    return (
        f"{measured} {format_seconds(comparison.median(measured) / per)}{per_text}, "
        f"{baseline} {format_seconds(comparison.median(baseline) / per)}{per_text}; "
        f"round ratios IQR {low:.2f}-{high:.2f}, n={len(comparison.samples[measured])}"
    )
