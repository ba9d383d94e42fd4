"""Reference plugin for ``sda_render_previews``: hear the model while it learns.

Every effective preview interval the model renders, as 16-bit WAV at the project sample rate:

* ``sample_NN.wav``: sounds drawn from the prior with a fixed seed, so successive previews
  differ only by what the model learnt (what it *invents*);
* ``reconstruction_NN.wav``: fixed validation chunks passed through the model (how well it
  *reproduces* audio it never trained on); the untouched chunks are written once to
  ``previews/references/original_NN.wav`` for comparison.

Settings (``[plugins.previews]``): ``samples`` (4), ``seconds`` (length of each sample, default
one chunk).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from sda_core import hookimpl
from sda_core.audio.reading import write_wav
from sda_core.config import TrainingConfig
from sda_core.config.events import PreviewEvent
from sda_core.errors import ConfigError

PLUGIN_NAME = "previews"
DEFAULT_SAMPLES = 4


def _settings(config: TrainingConfig) -> tuple[int, float]:
    settings = config.plugin_settings(PLUGIN_NAME)
    unknown = set(settings) - {"samples", "seconds"}
    if unknown:
        raise ConfigError.unknown_key(sorted(unknown)[0], ["samples", "seconds"], owner=f"[plugins.{PLUGIN_NAME}]")
    samples = settings.get("samples", DEFAULT_SAMPLES)
    seconds = settings.get("seconds", config.chunk_seconds)
    if isinstance(samples, bool) or not isinstance(samples, int) or not 0 <= samples <= 64:
        raise ConfigError(f"plugins.{PLUGIN_NAME}.samples", samples, "an integer from 0 to 64")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 60:
        raise ConfigError(f"plugins.{PLUGIN_NAME}.seconds", seconds, "a number of seconds above 0, at most 60")
    return samples, float(seconds)


@hookimpl(trylast=True)
def sda_render_previews(
    model: Any, config: TrainingConfig, epoch: int, directory: str, references: Any
) -> PreviewEvent:
    """Samples from the prior and reconstructions of the reference chunks, as WAV files."""
    started = time.perf_counter()
    count, seconds = _settings(config)
    folder = Path(directory)
    files: list[str] = []
    kinds: list[str] = []
    if count:
        generator = torch.Generator(device="cpu").manual_seed(config.seed)
        samples = model.generate(count, seconds=seconds, generator=generator)
        for number, audio in enumerate(samples, start=1):
            path = folder / f"sample_{number:02d}.wav"
            write_wav(path, audio, config.sample_rate)
            files.append(str(path))
            kinds.append("sample")
    if references is not None and len(references):
        device = next(model.parameters()).device
        rebuilt = model.reconstruct(references.to(device))
        originals = folder.parent / "references"
        originals.mkdir(parents=True, exist_ok=True)
        for number, (original, audio) in enumerate(zip(references, rebuilt), start=1):
            path = folder / f"reconstruction_{number:02d}.wav"
            write_wav(path, audio, config.sample_rate)
            files.append(str(path))
            kinds.append("reconstruction")
            reference_path = originals / f"original_{number:02d}.wav"
            if not reference_path.exists():
                write_wav(reference_path, original, config.sample_rate)
    return PreviewEvent(
        epoch=epoch, directory=str(folder), files=tuple(files), kinds=tuple(kinds),
        sample_rate=config.sample_rate, render_seconds=time.perf_counter() - started,
    )
