"""Augmentation: the reference pipeline versus audiomentations, and speed/pitch versus pitch_shift.

Two targets (and one informational row), all per 1-second chunk of 22050 Hz mono audio; the
pipeline at the default strength of a BALANCED run (``get_adaptive_config(50)``:
augmentation_strength 0.7, probability 0.5).

* **pipeline**: ``AugmentationPipeline.from_engine(engine, config)`` built from the reference
  ``augmentations`` plugin alone, applied to 100 items (each its own ``(epoch, index)``, so about
  half are augmented, as in training), versus audiomentations' nearest equivalent ``Compose`` with
  the same probabilities and ranges, applied to the same 100 chunks: ``PitchShift`` (ours changes
  speed and pitch together by resampling; audiomentations has no tape-style speed change, its
  pitch shift is the nearest), ``Shift`` (rollover, no fade), ``OneOf([LowPassFilter,
  HighPassFilter, HighShelfFilter])`` (12 dB/octave, like our biquads), ``Gain``,
  ``PolarityInversion`` and ``AddGaussianSNR`` (white noise; their ``AddColorNoise`` would be the
  nearer match to our white-or-pink noise, but it is slower, so it would flatter us). Target: at
  most 0.5 (at least 2x faster). Skipped, with the reason, when audiomentations is not installed
  (``pip install -e .[bench]``).
* **speed/pitch**: our ``SpeedPitch.apply`` versus ``torchaudio.functional.pitch_shift`` for the
  same change on the same chunk. pitch_shift's cost is set by its resampling step, from
  ``int(sample_rate / rate)`` to ``sample_rate`` Hz: a kernel whose size is the ratio reduced by
  their gcd. Measured here on 1 s of 22050 Hz mono: -2 semitones 1.1 s (3274/3675), -1: 12 s,
  +1: 4.4 s, +-0.5: 8-10 s, but +2 only 40 ms, because 24750/22050 reduces to 55/49 (at 48 kHz
  +1 and +2 took 63 and 34 s). Target row: -2 semitones, the cheapest change in our range
  apart from that lucky one: 1000 x (ours / theirs) at most 1.0 (at least 1000x faster); pitch_shift
  runs only a few times, after one untimed call on the cheap case (its start-up); ours 200 times
  per sample after warm-up. An info row (no target) reports +2 semitones, the lucky case, where
  the margin is far smaller and swings with the machine's load (58x to 4000x here).
"""

from __future__ import annotations

import random

import numpy as np

from benchmarks.timing import Result, compare, describe, format_seconds
from sda_core.data.augmentation import AugmentationPipeline
from sda_core.engine import Engine
from sda_plugins import augmentations as reference
from sda_plugins.adaptive_presets import get_adaptive_config

NAME = "augment"
SAMPLE_RATE = 22050
ITEMS = 100
PIPELINE_TARGET = 0.5
PITCH_TARGET = 1.0  # 1000 * ours / theirs
PITCH_SEMITONES = -2
LUCKY_SEMITONES = 2
PITCH_CALLS = 200


def make_chunks(count: int = ITEMS, seed: int = 7) -> list[np.ndarray]:
    """``count`` different 1-second float32 chunks (channels=1): decaying tones plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE
    chunks = []
    for _ in range(count):
        tone = np.sin(2 * np.pi * rng.uniform(60, 2000) * t) * np.exp(-t * rng.uniform(0.5, 8))
        noise = rng.standard_normal(SAMPLE_RATE).astype(np.float32) * 0.02
        chunks.append(np.ascontiguousarray((0.5 * tone + noise)[np.newaxis, :], dtype=np.float32))
    return chunks


def balanced_config():
    """The config of a BALANCED run (50 files) at 22050 Hz mono."""
    return get_adaptive_config(50)


def our_pipeline(config) -> AugmentationPipeline:
    """The reference plugin's pipeline, through a real Engine holding only that plugin."""
    engine = Engine(plugins=[reference], load_entrypoints=False, strict=True, trace=False, environ={})
    return AugmentationPipeline.from_engine(engine, config)


def their_compose(config):
    """audiomentations' nearest equivalent of :func:`our_pipeline`, same probabilities and ranges."""
    import audiomentations as am

    transforms = {type(t).__name__: t for t in reference.reference_transforms(config)}
    speed, shift, filt = transforms["SpeedPitch"], transforms["TimeShift"], transforms["Filter"]
    gain, polarity, noise = transforms["Gain"], transforms["PolarityFlip"], transforms["AddNoise"]
    lowpass_high = min(filt.lowpass_max_hz, reference.MAX_CUTOFF_FRACTION * SAMPLE_RATE)
    return am.Compose(
        [
            am.PitchShift(min_semitones=-speed.max_semitones, max_semitones=speed.max_semitones, p=speed.probability),
            am.Shift(
                min_shift=-shift.max_seconds,
                max_shift=shift.max_seconds,
                shift_unit="seconds",
                rollover=True,
                fade_duration=0.0,
                p=shift.probability,
            ),
            am.OneOf(
                [
                    am.LowPassFilter(
                        min_cutoff_freq=lowpass_high * 2.0**-filt.lowpass_octaves,
                        max_cutoff_freq=lowpass_high,
                        min_rolloff=12,
                        max_rolloff=12,
                    ),
                    am.HighPassFilter(
                        min_cutoff_freq=filt.highpass_min_hz,
                        max_cutoff_freq=filt.highpass_max_hz,
                        min_rolloff=12,
                        max_rolloff=12,
                    ),
                    am.HighShelfFilter(
                        min_center_freq=filt.tilt_pivot_hz,
                        max_center_freq=filt.tilt_pivot_hz,
                        min_gain_db=-filt.max_tilt_db,
                        max_gain_db=filt.max_tilt_db,
                    ),
                ],
                p=filt.probability,
            ),
            am.Gain(min_gain_db=gain.min_db, max_gain_db=gain.max_db, p=gain.probability),
            am.PolarityInversion(p=polarity.probability),
            am.AddGaussianSNR(min_snr_db=noise.min_snr_db, max_snr_db=noise.max_snr_db, p=noise.probability),
        ],
        p=config.augmentation_probability,
        shuffle=False,
    )


def _pipeline_row(quick: bool) -> Result:
    config = balanced_config()
    name = f"augment: pipeline per 1 s chunk vs audiomentations Compose (strength {config.augmentation_strength})"
    try:
        compose = their_compose(config)
    except ImportError as error:
        return Result(
            f"{name}: skipped, audiomentations not importable ({error}); pip install -e .[bench]",
            float("nan"),
            None,
            "skipped",
        )
    pipeline = our_pipeline(config)
    chunks = make_chunks()
    random.seed(1234)
    np.random.seed(1234)  # audiomentations draws from the global generators
    state = {"epoch": 0}

    def ours() -> None:
        epoch = state["epoch"]
        state["epoch"] += 1
        for index, chunk in enumerate(chunks):
            out = pipeline(chunk, epoch=epoch, index=index)
        assert out.shape == chunk.shape

    def theirs() -> None:
        for chunk in chunks:
            out = compose(chunk, sample_rate=SAMPLE_RATE)
        assert out.shape == chunk.shape

    comparison = compare({"sda pipeline": ours, "audiomentations": theirs}, repeats=5 if quick else 21, warmup=2)
    ratio = comparison.ratio("sda pipeline", "audiomentations")
    detail = describe(comparison, "sda pipeline", "audiomentations", per=ITEMS, unit="chunk")
    return Result(name, ratio, PIPELINE_TARGET, detail)


def _pitch_comparison(semitones: int, repeats: int) -> tuple[float, float, dict]:
    """Seconds per call of our SpeedPitch and of pitch_shift for ``semitones``, and our params."""
    import torch
    import torchaudio.functional as taf

    chunk = make_chunks(1)[0]
    params = reference.speed_params(float(semitones), offset=0.0)
    transform = reference.SpeedPitch(max_semitones=abs(semitones), probability=1.0)
    tensor = torch.from_numpy(chunk.copy())
    for _ in range(3):  # warm our kernel cache
        transform.apply(chunk.copy(), params, SAMPLE_RATE)

    def ours() -> None:
        for _ in range(PITCH_CALLS):
            transform.apply(chunk.copy(), params, SAMPLE_RATE)

    def theirs() -> None:
        taf.pitch_shift(tensor, SAMPLE_RATE, n_steps=semitones)

    comparison = compare({"SpeedPitch": ours, "pitch_shift": theirs}, repeats=repeats, warmup=0)
    return comparison.median("SpeedPitch") / PITCH_CALLS, comparison.median("pitch_shift"), params


def _pitch_rows(quick: bool) -> list[Result]:
    import torch
    import torchaudio.functional as taf

    # pitch_shift's one-time start-up (STFT window, dispatch) on its cheapest case, untimed.
    taf.pitch_shift(torch.zeros(1, SAMPLE_RATE), SAMPLE_RATE, n_steps=LUCKY_SEMITONES)
    rows = []
    for semitones, repeats, target in (
        (PITCH_SEMITONES, 2 if quick else 3, PITCH_TARGET),
        (LUCKY_SEMITONES, 3 if quick else 9, None),
    ):
        ours_each, theirs_each, params = _pitch_comparison(semitones, repeats)
        ratio = 1000.0 * ours_each / theirs_each
        detail = (
            f"SpeedPitch {format_seconds(ours_each)}, pitch_shift {format_seconds(theirs_each)} "
            f"({params['semitones']:+.4f} vs {semitones:+d} semitones): {theirs_each / ours_each:,.0f}x faster; "
            f"n={repeats}"
        )
        label = "" if target is not None else ", pitch_shift's cheapest case (ratio 55/49)"
        rows.append(
            Result(
                f"augment: speed/pitch {semitones:+d} st vs torchaudio pitch_shift{label} (ratio x 1000)",
                ratio,
                target,
                detail,
            )
        )
    return rows


def run(quick: bool = False) -> list[Result]:
    """The pipeline versus audiomentations, then speed/pitch versus pitch_shift (two rows)."""
    return [_pipeline_row(quick), *_pitch_rows(quick)]


if __name__ == "__main__":  # pragma: no cover - manual use
    for row in run():
        print(row)
