"""``sda generate``: new sounds from a trained run's best checkpoint."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from sda_core.audio.reading import write_wav
from sda_core.config import TrainingConfig
from sda_core.config.training_config import stored_config
from sda_core.training.checkpoints import CheckpointError, load_checkpoint
from sda_core.training.run_folder import RunLock, RunPaths


def load_trained_model(engine: Any, run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Any, TrainingConfig, Path]:
    """The model of a run with its best weights (``best.pt``, else ``last.pt``), in eval mode."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise CheckpointError(f"run folder '{folder}' does not exist")
    checkpoint = RunPaths(folder).weights()
    state = load_checkpoint(checkpoint, map_location=device)
    config = stored_config(state["config"])
    model = engine.make_model(config)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, checkpoint


def generate_files(
    engine: Any,
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    count: int = 4,
    seconds: float | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> list[Path]:
    """Write ``count`` WAV files of ``seconds`` each (default one chunk) and return their paths.

    Writing into the run folder (the default, ``RUN/generated``) holds the run's lock, so it is
    refused while the run trains; another ``out_dir`` needs no lock (checkpoints are read whole).
    """
    model, config, _checkpoint = load_trained_model(engine, run_dir, device)
    seconds = config.chunk_seconds if seconds is None else seconds
    target = Path(out_dir) if out_dir is not None else RunPaths(Path(run_dir)).generated
    inside_run = target.resolve().is_relative_to(Path(run_dir).resolve())
    with RunLock(run_dir, action="generating") if inside_run else nullcontext():
        return _write_generated(model, config, target, count=count, seconds=seconds, seed=seed)


def _write_generated(model: Any, config: TrainingConfig, target: Path, *, count: int, seconds: float,
                     seed: int) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        audio = model.generate(count, seconds=seconds, generator=generator)
    paths = []
    for number, sound in enumerate(audio, start=1):
        path = target / f"generated_{seed:04d}_{number:02d}.wav"
        write_wav(path, sound, config.sample_rate)
        paths.append(path)
    return paths
