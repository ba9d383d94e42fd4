"""Ratio benchmarks of the sda engine against the bare libraries it wraps.

Run them with ``make bench`` or ``python -m benchmarks [--quick] [--only NAME]`` from the
repository root. See ``benchmarks/README.md`` for how the ratios are measured.
"""
