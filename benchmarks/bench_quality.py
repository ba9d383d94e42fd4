"""Sound quality of the default model: ``sda evaluate`` figures against the targets of issue 11.

Trains the default model with the default config on two data sets, the 36 real sounds of
``../shared/corpus/real-sounds.sh`` (``$SDA_REAL_SOUNDS`` when set, else fetched into a temporary
folder; skipped when neither is available) and the built-in demo set (synthesised), then evaluates
each run with :func:`sda_core.training.evaluation.evaluate_run` (64 sounds, seed 0) and prints every figure
beside its target, with the older mel-VAE's figures (trained the same way in the same run) beside
them:

=====================  ==============================  ======================================
figure                 ratio printed                   target
=====================  ==============================  ======================================
1-NN accuracy          the accuracy                    <= 0.75
resemblance            the score                       <= 0.25
diversity              1 / diversity                   <= 1/0.7 (diversity >= 0.7)
copying                1 / copying ratio               <= 2.0 (copying >= 0.5)
reconstruction         default / mel-VAE distance      <= 0.7
  fitted codes         the same for both models'       <= 0.7
                       ``fit_codes`` (what ``--like``
                       and ``--morph`` start from)
full default run       training seconds / 600          <= 1.0 (at most 10 minutes)
=====================  ==============================  ======================================

When the default model *is* the mel-VAE (no ``model`` setting), it is trained once and the
reconstruction ratio is 1. ``--quick`` caps training at 3 epochs and evaluates 16 sounds: a smoke
test of the benchmark, not a measurement. A full run takes two to four default trainings (minutes
each on 2 CPU cores): run it alone with ``python -m benchmarks --only quality``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import attrs

from benchmarks.timing import Result
from sda_core import Engine, TrainingConfig
from sda_core.data.demo import synthesize_demo_dataset
from sda_core.training.evaluation import evaluate_run

NAME = "quality"
COUNT = 64
QUICK_COUNT = 16
QUICK_EPOCHS = 3
FULL_RUN_SECONDS = 600.0
REFERENCE_MODEL = "mel_vae"
REAL_SOUNDS_SCRIPT = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "real-sounds.sh"


def _has_model_setting() -> bool:
    return any(field.name == "model" for field in attrs.fields(TrainingConfig))


def _real_sounds(scratch: Path) -> Path | None:
    """The real-sounds folder: ``$SDA_REAL_SOUNDS``, else fetched with the corpus script."""
    configured = os.environ.get("SDA_REAL_SOUNDS")
    if configured and Path(configured).is_dir():
        return Path(configured)
    if not REAL_SOUNDS_SCRIPT.is_file():
        return None
    target = scratch / "real-sounds"
    result = subprocess.run(["bash", str(REAL_SOUNDS_SCRIPT), str(target)], capture_output=True, text=True, timeout=600)
    return target if result.returncode == 0 and target.is_dir() else None


def _train_and_evaluate(data: Path, run_dir: Path, overrides: dict[str, Any], count: int) -> tuple[Any, float]:
    """One default training run and its evaluation; returns (EvaluationResult, training seconds)."""
    engine = Engine(disable=["progress"])
    training = engine.train(data, run_dir, overrides)
    return evaluate_run(run_dir, hooks=engine, count=count, seed=0), training.duration


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _figures(evaluation: Any) -> str:
    figures = evaluation.training
    return (
        f"1-NN {figures.nn_accuracy:.3f}, resemblance {_number(figures.resemblance)}, diversity {figures.diversity:.3f}, "
        f"copying {figures.copying:.3f}, reconstruction {evaluation.reconstruction:.3f}"
        + (
            ""
            if evaluation.reconstruction_fitted is None
            else f" (fitted codes {evaluation.reconstruction_fitted:.3f})"
        )
    )


def _rows(dataset: str, default: Any, default_seconds: float, reference: Any, reference_seconds: float) -> list[Result]:
    """The target rows of one data set, each with the mel-VAE's figure beside it."""
    ours, theirs = default.training, reference.training
    beside = f"(mel-VAE: {_figures(reference)}; {reference_seconds:.0f} s)"
    rows = [
        Result(
            f"quality {dataset}: 1-NN accuracy",
            ours.nn_accuracy,
            0.75,
            f"{ours.nn_accuracy:.3f} vs mel-VAE {theirs.nn_accuracy:.3f}; 0.5 = indistinguishable",
        ),
    ]
    if ours.resemblance is not None:
        rows.append(
            Result(
                f"quality {dataset}: resemblance",
                ours.resemblance,
                0.25,
                f"{ours.resemblance:.3f} vs mel-VAE {_number(theirs.resemblance)}; 0 = as real chunks, 1 = shaped noise",
            )
        )
    else:
        rows.append(Result(f"quality {dataset}: resemblance", float("nan"), None, ours.resemblance_note or ""))
    rows += [
        Result(
            f"quality {dataset}: 1/diversity (diversity >= 0.7)",
            1.0 / max(ours.diversity, 1e-9),
            1.0 / 0.7,
            f"diversity {ours.diversity:.3f} vs mel-VAE {theirs.diversity:.3f}",
        ),
        Result(
            f"quality {dataset}: 1/copying (copying >= 0.5)",
            1.0 / max(ours.copying, 1e-9),
            2.0,
            f"copying {ours.copying:.3f} vs mel-VAE {theirs.copying:.3f}",
        ),
        Result(
            f"quality {dataset}: reconstruction / mel-VAE's",
            default.reconstruction / reference.reconstruction,
            0.7,
            f"{default.reconstruction:.3f} vs mel-VAE {reference.reconstruction:.3f} (MR-STFT, lower is better)",
        ),
    ]
    if default.reconstruction_fitted is not None and reference.reconstruction_fitted is not None:
        rows.append(
            Result(
                f"quality {dataset}: reconstruction, fitted codes / mel-VAE's",
                default.reconstruction_fitted / reference.reconstruction_fitted,
                0.7,
                f"{default.reconstruction_fitted:.3f} vs mel-VAE {reference.reconstruction_fitted:.3f} "
                "(both models' fit_codes decoded, as --like and --morph start from)",
            )
        )
    rows += [
        Result(
            f"quality {dataset}: default run / 10 min",
            default_seconds / FULL_RUN_SECONDS,
            1.0,
            f"{default_seconds:.0f} s of training, {default.duration:.0f} s of evaluation {beside}",
        ),
    ]
    return rows


def run(quick: bool = False) -> list[Result]:
    """Train and evaluate the default model and the mel-VAE on the real and demo sets."""
    count = QUICK_COUNT if quick else COUNT
    base: dict[str, Any] = {"max_epochs": QUICK_EPOCHS} if quick else {}
    separate_reference = _has_model_setting() and TrainingConfig().model != REFERENCE_MODEL
    scratch = Path(tempfile.mkdtemp(prefix="sda-bench-quality-"))
    try:
        datasets: list[tuple[str, Path]] = []
        real = _real_sounds(scratch)
        if real is not None:
            datasets.append(("real sounds", real))
        demo = scratch / "demo"
        synthesize_demo_dataset(demo)
        datasets.append(("demo", demo))
        results: list[Result] = []
        if real is None:
            results.append(
                Result(
                    "quality real sounds",
                    float("nan"),
                    None,
                    "skipped: set SDA_REAL_SOUNDS or put ../shared/corpus/real-sounds.sh beside the repo",
                )
            )
        for label, data in datasets:
            slug = label.replace(" ", "-")
            default, default_seconds = _train_and_evaluate(data, scratch / f"{slug}-default", dict(base), count)
            if separate_reference:
                reference, reference_seconds = _train_and_evaluate(
                    data, scratch / f"{slug}-{REFERENCE_MODEL}", {**base, "model": REFERENCE_MODEL}, count
                )
            else:
                reference, reference_seconds = default, default_seconds
            results += _rows(label, default, default_seconds, reference, reference_seconds)
        return results
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
