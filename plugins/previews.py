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

import attrs
import torch

from sda_core import hookimpl, plugin_settings
from sda_core import validators as v
from sda_core.audio.wav import write_wav
from sda_core.config import TrainingConfig
from sda_core.config.events import PreviewEvent
from sda_core.training.generation import finish_sound

PLUGIN_NAME = "previews"
DEFAULT_SAMPLES = 4


@attrs.frozen(kw_only=True)
class PreviewSettings:
    """The ``[plugins.previews]`` settings.

    Attributes:
        samples: how many samples from the prior to render (0 for none).
        seconds: length of each sample (default: the config's ``chunk_seconds``).
    """

    samples: int = attrs.field(default=DEFAULT_SAMPLES, validator=v.integer(0, 64))
    seconds: float | None = attrs.field(default=None, validator=v.number(0, 60, exclusive_minimum=True, optional=True))


def _settings(config: TrainingConfig) -> tuple[int, float]:
    """The ``[plugins.previews]`` table; unknown keys and bad values raise ConfigError."""
    settings = plugin_settings(config, PLUGIN_NAME, PreviewSettings)
    seconds = settings.seconds if settings.seconds is not None else config.chunk_seconds
    return settings.samples, float(seconds)


@hookimpl
def sda_check_config(config: TrainingConfig) -> None:
    """Veto a bad ``[plugins.previews]`` table before anything runs."""
    _settings(config)


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
            write_wav(path, finish_sound(audio, config.sample_rate), config.sample_rate)
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
        epoch=epoch,
        directory=str(folder),
        files=tuple(files),
        kinds=tuple(kinds),
        sample_rate=config.sample_rate,
        render_seconds=time.perf_counter() - started,
    )
