"""``sda generate``: new sounds, variations of a sound and morphs, from a trained run's best checkpoint.

Three modes, each a function usable from Python (and by a host such as a web studio) and a
``sda generate`` option; all seeded, so the same seed gives the same bytes:

- :func:`generate_sounds` / :func:`generate_files`: new sounds drawn from the model's sampler
  (``model.generate``), with an optional sampling ``temperature`` for models that take one.
- :func:`like_sounds` / :func:`like_files` (``--like FILE``): variations of a given sound. Its
  loudest chunk is encoded (:func:`encode_sound`: fitted, where the model can fit codes) and each
  variation is decoded from a point part of the way from that code toward a fresh draw of the
  model's sampler (``sample_latents`` when the model has it, else N(0, I)); the part is
  :data:`LIKE_AMOUNT` times the temperature (default 1).
- :func:`morph_sounds` / :func:`morph_files` (``--morph A B --steps K``): ``K`` sounds on the
  straight line (or the great circle, ``spherical``) between the codes of two sounds, endpoints
  included, plus one joined file with equal-power crossfades.

Every sound written is finished by :func:`finish_sound`: finite, without DC offset, peaks at most
-1 dBFS, 5 ms fades at both ends (no click when a player starts or stops it); ``trim`` cuts leading and trailing silence of one-shots with short fades
(:func:`trim_silence`). Only the model interface of :mod:`sda_core.training.model` is used.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sda_core.audio.reading import read_file
from sda_core.audio.wav import write_wav
from sda_core.config import TrainingConfig
from sda_core.config.training_config import stored_config
from sda_core.data.chunks import chunk_frames
from sda_core.errors import GenerationError
from sda_core.hooks.facade import as_hooks
from sda_core.training.checkpoints import CheckpointError, load_checkpoint
from sda_core.training.conformance import check_model_interface
from sda_core.training.model import CodeFitting
from sda_core.training.provenance import (
    check_provider,
    load_model_weights,
    provider_record,
    recorded_providers,
    require_provider,
)
from sda_core.training.run_folder import RunLock, RunPaths

#: Written peaks stay at or below -1 dBFS.
PEAK_LIMIT = 10 ** (-1 / 20)
#: How far (0..1) a ``--like`` variation moves from the sound's code toward a sampler draw, at
#: temperature 1 (the part scales with the temperature, at most 1).
LIKE_AMOUNT = 0.3
#: Longest crossfade between the steps of a joined morph, in seconds (at most a quarter chunk).
CROSSFADE_SECONDS = 0.05
#: ``trim``: what is quieter than this, relative to the sound's peak, is silence (dB).
TRIM_THRESHOLD_DB = -50.0
#: ``trim``: silence kept before the onset (faded in) and after the last sound (faded out), seconds.
TRIM_LEAD_SECONDS = 0.005
TRIM_TAIL_SECONDS = 0.02
#: Fades at the two ends of every written sound (one-shots, variations, a joined morph), in seconds.
EDGE_FADE_SECONDS = 0.005
#: Exact zeros at least this long (1 ms) are digital silence, which DC removal leaves alone.
SILENCE_RUN_SECONDS = 0.001


def load_trained_model(
    engine: Any, run_dir: str | Path, device: str | torch.device = "cpu", *, action: str = "generate from it"
) -> tuple[Any, TrainingConfig, Path]:
    """The model of a run with its best weights (``best.pt``, else ``last.pt``), in eval mode.

    The model is rebuilt through ``sda_make_model`` (``engine``: an Engine or its hooks) and
    checked against the interface; the plugin the run recorded as the model's maker must be the
    one that answers (:mod:`sda_core.training.provenance`), else one :class:`PluginError` sentence
    ending "... to ``action``". Weights that do not fit are a :class:`CheckpointError`.
    """
    hooks = as_hooks(engine)
    folder = Path(run_dir)
    if not folder.is_dir():
        raise CheckpointError(f"run folder '{folder}' does not exist")
    checkpoint = RunPaths(folder).weights()
    state = load_checkpoint(checkpoint, map_location=device)
    config = stored_config(state["config"])
    recorded = recorded_providers(state)
    require_provider(recorded, "model", hooks, folder, action)
    model = hooks.make_model(config, check=lambda answer: check_model_interface(answer, config))
    check_provider(recorded, "model", hooks, folder, action)
    load_model_weights(model, state["model"], checkpoint, provider_record(hooks, "model"))
    return model.to(device).eval(), config, checkpoint


# -- finishing ---------------------------------------------------------------------------------


def finish_audio(audio: Any, sample_rate: int | None = None) -> np.ndarray:
    """One sound (channels, samples) as float32: finite, without DC and scaled down whole when its
    peak is above -1 dBFS (never up).

    DC removal leaves digital silence alone: with ``sample_rate`` given, runs of exact zeros at
    least :data:`SILENCE_RUN_SECONDS` long stay zeros and the mean of the other samples is removed
    from them (a model that ends a sound in silence keeps it, instead of getting a constant offset
    there); without it, each channel's mean is removed from every sample.
    """
    data = audio.detach().float().cpu().numpy() if hasattr(audio, "detach") else np.asarray(audio, dtype=np.float32)
    data = np.nan_to_num(data.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    data = _remove_dc(data, None if sample_rate is None else max(1, round(SILENCE_RUN_SECONDS * int(sample_rate))))
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > PEAK_LIMIT:
        data = data * np.float32(PEAK_LIMIT / peak)
    return np.ascontiguousarray(data, dtype=np.float32)


def _remove_dc(data: np.ndarray, silence_run: int | None) -> np.ndarray:
    """``data`` (channels, samples) less each channel's mean, outside runs of at least
    ``silence_run`` exact zeros (None: everywhere)."""
    if silence_run is None or data.shape[-1] == 0:
        return data - data.mean(axis=-1, keepdims=True)
    from scipy.ndimage import binary_opening  # here: only finishing needs it

    out = data.copy()
    for channel in range(data.shape[0]):
        silent = binary_opening(data[channel] == 0, structure=np.ones(silence_run, dtype=bool))
        sounding = ~silent
        if sounding.any():
            out[channel, sounding] -= data[channel, sounding].mean()
    return out


def finish_sound(audio: Any, sample_rate: int) -> np.ndarray:
    """A generated sound (channels, samples) ready to write: :func:`finish_audio`, then raised-cosine
    fades of :data:`EDGE_FADE_SECONDS` at both ends (at most a quarter of the sound each).

    A decoded chunk starts and stops wherever its waveform happens to be, often at a sizeable
    fraction of its level (measured on trained demo runs: first and last samples up to 1.9 times
    the sound's RMS), which clicks when a player starts from silence; 5 ms is too short to soften
    an attack audibly.
    """
    data = finish_audio(audio, sample_rate)
    edge = min(round(EDGE_FADE_SECONDS * int(sample_rate)), data.shape[-1] // 4)
    if edge > 0:
        data[..., :edge] *= _fade(edge, rising=True)
        data[..., data.shape[-1] - edge :] *= _fade(edge, rising=False)
    return finish_audio(data, sample_rate)  # the fades moved the mean a little


def _fade(length: int, rising: bool) -> np.ndarray:
    ramp = (np.arange(length, dtype=np.float64) + 0.5) / max(1, length)
    curve = np.sin(ramp * np.pi / 2) ** 2  # raised cosine: no corner at either end
    return (curve if rising else curve[::-1]).astype(np.float32)


def trim_silence(audio: np.ndarray, sample_rate: int, *, threshold_db: float = TRIM_THRESHOLD_DB) -> np.ndarray:
    """A one-shot (channels, samples) without its leading and trailing silence.

    Silence is what stays below ``threshold_db`` relative to the sound's peak (over all channels).
    :data:`TRIM_LEAD_SECONDS` before the onset and :data:`TRIM_TAIL_SECONDS` after the last
    sound are kept and faded (raised cosine), so the cut makes no click. A silent sound is kept as is.
    """
    data = np.asarray(audio, dtype=np.float32)
    envelope = np.abs(data).max(axis=0)
    peak = float(envelope.max()) if envelope.size else 0.0
    if peak <= 0.0:
        return data
    loud = np.flatnonzero(envelope >= peak * 10 ** (threshold_db / 20))
    lead, tail = round(TRIM_LEAD_SECONDS * sample_rate), round(TRIM_TAIL_SECONDS * sample_rate)
    start = max(0, int(loud[0]) - lead)
    end = min(data.shape[-1], int(loud[-1]) + 1 + tail)
    out = data[:, start:end].copy()
    fade_in = min(lead, int(loud[0]) - start, out.shape[-1] // 2)
    fade_out = min(tail, end - int(loud[-1]) - 1, out.shape[-1] // 2)
    if start > 0 and fade_in > 0:
        out[:, :fade_in] *= _fade(fade_in, rising=True)
    if end < data.shape[-1] and fade_out > 0:
        out[:, -fade_out:] *= _fade(fade_out, rising=False)
    return out


def crossfade_join(pieces: list[np.ndarray], fade: int, *, edge_fade: int = 0) -> np.ndarray:
    """Pieces (channels, samples) joined end to start with equal-power crossfades of ``fade``
    samples (at most half the shortest piece); ``edge_fade`` samples are faded in and out at the
    two ends."""
    if not pieces:
        raise ValueError("nothing to join")
    fade = max(0, min(int(fade), min(piece.shape[-1] for piece in pieces) // 2))
    channels = pieces[0].shape[0]
    total = sum(piece.shape[-1] for piece in pieces) - fade * (len(pieces) - 1)
    out = np.zeros((channels, total), dtype=np.float32)
    ramp = (np.arange(fade, dtype=np.float64) + 0.5) / max(1, fade)
    fade_in, fade_out = np.sin(ramp * np.pi / 2).astype(np.float32), np.cos(ramp * np.pi / 2).astype(np.float32)
    position = 0
    for index, piece in enumerate(pieces):
        piece = piece.astype(np.float32).copy()
        if index > 0 and fade:
            piece[:, :fade] *= fade_in
        if index < len(pieces) - 1 and fade:
            piece[:, piece.shape[-1] - fade :] *= fade_out
        out[:, position : position + piece.shape[-1]] += piece
        position += piece.shape[-1] - fade
    edge = min(int(edge_fade), total // 2)
    if edge > 0:
        out[:, :edge] *= _fade(edge, rising=True)
        out[:, total - edge :] *= _fade(edge, rising=False)
    return out


# -- the model, generically ---------------------------------------------------------------------


def accepts_keyword(function: Any, name: str) -> bool:
    """Whether ``function`` takes the keyword argument ``name`` (or any keyword)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def model_device(model: Any) -> torch.device:
    """Where the model's weights are (CPU for a model without any)."""
    parameter = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return parameter.device if parameter is not None else torch.device("cpu")


def latent_shape(model: Any, config: TrainingConfig) -> tuple[int, ...]:
    """The shape of one latent code (without the batch axis), from encoding a silent chunk."""
    silence = torch.zeros(1, config.channels, chunk_frames(config), device=model_device(model))
    with torch.no_grad():
        return tuple(model.encode(silence).shape[1:])


def sample_codes(
    model: Any,
    config: TrainingConfig,
    count: int,
    *,
    generator: torch.Generator | None = None,
    temperature: float | None = None,
) -> torch.Tensor:
    """``count`` latent codes from the model's sampler: its ``sample_latents`` (see
    :class:`sda_core.training.model.LatentSampling`) when it has one, else N(0, temperature^2 I)."""
    sampler = getattr(model, "sample_latents", None)
    if callable(sampler):
        options: dict[str, Any] = {"generator": generator}
        if temperature is not None:
            if not accepts_keyword(sampler, "temperature"):
                raise GenerationError(f"this run's model ({type(model).__name__}) takes no sampling temperature")
            options["temperature"] = temperature
        with torch.no_grad():
            return sampler(count, **options)
    shape = latent_shape(model, config)
    noise = torch.randn(count, *shape, generator=generator, device=generator.device if generator else "cpu")
    scale = 1.0 if temperature is None else float(temperature)
    return (noise * scale).to(model_device(model))


def read_chunk(path: str | Path, config: TrainingConfig) -> np.ndarray:
    """The loudest chunk of an audio file (channels, chunk samples) at the run's rate and channels.

    Chunks are taken on a grid of quarter chunks (the earliest wins a tie); a file shorter than a
    chunk is padded with silence at its end. Raises :class:`~sda_core.errors.AudioReadError` for a
    file that cannot be read.
    """
    audio = read_file(path, target_rate=config.sample_rate, channels=config.channels)
    size = chunk_frames(config)
    if audio.shape[-1] <= size:
        return np.pad(audio, ((0, 0), (0, size - audio.shape[-1]))).astype(np.float32)
    hop = max(1, size // 4)
    starts = list(range(0, audio.shape[-1] - size + 1, hop))
    energy = np.cumsum(np.concatenate([[0.0], np.square(audio, dtype=np.float64).sum(axis=0)]))
    best = max(starts, key=lambda start: (energy[start + size] - energy[start], -start))
    return np.ascontiguousarray(audio[:, best : best + size], dtype=np.float32)


def encode_sound(model: Any, config: TrainingConfig, path: str | Path) -> torch.Tensor:
    """The latent code (1, latent...) of a file's loudest chunk (:func:`read_chunk`): the model's
    ``fit_codes`` where it has one (:class:`~sda_core.training.model.CodeFitting`), else ``encode``."""
    chunk = torch.from_numpy(read_chunk(path, config)).unsqueeze(0).to(model_device(model))
    with torch.no_grad():
        return model.fit_codes(chunk) if isinstance(model, CodeFitting) else model.encode(chunk)


def _decode(model: Any, codes: torch.Tensor, sample_rate: int) -> list[np.ndarray]:
    with torch.no_grad():
        audio = model.decode(codes.to(model_device(model)))
    return [finish_audio(sound, sample_rate) for sound in audio]


# -- the three modes, in memory -------------------------------------------------------------------


def generate_sounds(
    model: Any,
    config: TrainingConfig,
    count: int,
    *,
    seconds: float | None = None,
    seed: int = 0,
    temperature: float | None = None,
    trim: bool = False,
) -> list[np.ndarray]:
    """``count`` new sounds (channels, samples) of ``seconds`` each (default one chunk), finished.

    ``temperature`` goes to ``model.generate`` only when given; a model whose ``generate`` takes
    none raises :class:`~sda_core.errors.GenerationError`.
    """
    seconds = config.chunk_seconds if seconds is None else seconds
    options: dict[str, Any] = {"seconds": seconds, "generator": torch.Generator(device="cpu").manual_seed(seed)}
    if temperature is not None:
        if not accepts_keyword(model.generate, "temperature"):
            raise GenerationError(f"this run's model ({type(model).__name__}) takes no sampling temperature")
        options["temperature"] = float(temperature)
    with torch.no_grad():
        audio = model.generate(count, **options)
    return [_finished(sound, config, trim) for sound in audio]


def like_sounds(
    model: Any,
    config: TrainingConfig,
    like: str | Path,
    count: int,
    *,
    seed: int = 0,
    temperature: float | None = None,
    trim: bool = False,
) -> list[np.ndarray]:
    """``count`` variations of the sound in ``like`` (its loudest chunk), one chunk each, finished.

    Each is decoded from ``code + a * (draw - code)``: ``code`` the sound's latent, ``draw`` a
    fresh draw of the model's sampler (:func:`sample_codes`, seeded), ``a = min(1, LIKE_AMOUNT *
    temperature)`` (temperature default 1; 0 gives the reconstruction ``count`` times).
    """
    temperature = 1.0 if temperature is None else float(temperature)
    if temperature < 0:
        raise ValueError(f"temperature must be 0 or more, got {temperature}")
    code = encode_sound(model, config, like)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    draws = sample_codes(model, config, count, generator=generator).to(code.device, code.dtype)
    amount = min(1.0, LIKE_AMOUNT * temperature)
    codes = code + amount * (draws - code)
    return [_finished(sound, config, trim) for sound in _decode(model, codes, config.sample_rate)]


def morph_codes(start: torch.Tensor, end: torch.Tensor, steps: int, *, spherical: bool = False) -> torch.Tensor:
    """``steps`` codes evenly spaced from ``start`` to ``end`` (each (1, latent...)), endpoints
    included: on the straight line, or with ``spherical`` on the great circle (slerp, which keeps
    the codes' norm where they are far apart)."""
    if steps < 2:
        raise ValueError(f"a morph needs at least 2 steps, got {steps}")
    t = torch.linspace(0.0, 1.0, steps, dtype=torch.float64).view(-1, *([1] * (start.dim() - 1)))
    a, b = start.double(), end.double()
    if spherical:
        norm_a, norm_b = a.flatten().norm(), b.flatten().norm()
        cosine = float((a.flatten() @ b.flatten()) / (norm_a * norm_b).clamp_min(1e-12))
        omega = math.acos(max(-1.0, min(1.0, cosine)))
        if omega > 1e-4 and norm_a > 0 and norm_b > 0:
            weights_a, weights_b = torch.sin((1 - t) * omega) / math.sin(omega), torch.sin(t * omega) / math.sin(omega)
            return (weights_a * a + weights_b * b).to(start.dtype)
    return ((1 - t) * a + t * b).to(start.dtype)


def morph_sounds(
    model: Any, config: TrainingConfig, start: str | Path, end: str | Path, steps: int, *, spherical: bool = False
) -> tuple[list[np.ndarray], np.ndarray]:
    """A path of ``steps`` sounds from the sound in ``start`` to the one in ``end`` (their loudest
    chunks; the endpoints are the model's reconstructions of them), and the steps joined into one
    sound with equal-power crossfades of ``min(50 ms, chunk / 4)``; every sound has short fades at
    its ends."""
    if steps < 2:
        raise ValueError(f"a morph needs at least 2 steps, got {steps}")
    codes = morph_codes(
        encode_sound(model, config, start), encode_sound(model, config, end), steps, spherical=spherical
    )
    sounds = _decode(model, codes, config.sample_rate)
    size = sounds[0].shape[-1]
    fade = min(round(CROSSFADE_SECONDS * config.sample_rate), size // 4)
    joined = crossfade_join(sounds, fade, edge_fade=round(EDGE_FADE_SECONDS * config.sample_rate))
    return [finish_sound(sound, config.sample_rate) for sound in sounds], finish_audio(joined, config.sample_rate)


def _finished(sound: Any, config: TrainingConfig, trim: bool) -> np.ndarray:
    audio = finish_sound(sound, config.sample_rate)
    return finish_audio(trim_silence(audio, config.sample_rate), config.sample_rate) if trim else audio


# -- the three modes, as files ------------------------------------------------------------------


@contextmanager
def _target(run_dir: str | Path, out_dir: str | Path | None, action: str) -> Iterator[Path]:
    """The output folder (default ``RUN/generated``), holding the run's lock when inside the run."""
    target = Path(out_dir) if out_dir is not None else RunPaths(Path(run_dir)).generated
    inside_run = target.resolve().is_relative_to(Path(run_dir).resolve())
    with RunLock(run_dir, action=action) if inside_run else nullcontext():
        target.mkdir(parents=True, exist_ok=True)
        yield target


def _write(target: Path, names: list[str], sounds: list[np.ndarray], sample_rate: int) -> list[Path]:
    paths = []
    for name, sound in zip(names, sounds):
        path = target / name
        write_wav(path, sound, sample_rate)
        paths.append(path)
    return paths


def generate_files(
    engine: Any,
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    count: int = 4,
    seconds: float | None = None,
    seed: int = 0,
    temperature: float | None = None,
    trim: bool = False,
    device: str | torch.device = "cpu",
) -> list[Path]:
    """Write ``count`` WAV files of ``seconds`` each (default one chunk) and return their paths
    (``generated_SSSS_NN.wav``, ``SSSS`` the seed); see :func:`generate_sounds`.

    Writing into the run folder (the default, ``RUN/generated``) holds the run's lock, so it is
    refused while the run trains; another ``out_dir`` needs no lock (checkpoints are read whole).
    """
    model, config, _checkpoint = load_trained_model(engine, run_dir, device)
    with _target(run_dir, out_dir, "generating") as target:
        sounds = generate_sounds(model, config, count, seconds=seconds, seed=seed, temperature=temperature, trim=trim)
        names = [f"generated_{seed:04d}_{number:02d}.wav" for number in range(1, len(sounds) + 1)]
        return _write(target, names, sounds, config.sample_rate)


def like_files(
    engine: Any,
    run_dir: str | Path,
    like: str | Path,
    out_dir: str | Path | None = None,
    *,
    count: int = 4,
    seed: int = 0,
    temperature: float | None = None,
    trim: bool = False,
    device: str | torch.device = "cpu",
) -> list[Path]:
    """Write ``count`` variations of ``like`` (``like_<name>_SSSS_NN.wav``); see :func:`like_sounds`."""
    model, config, _checkpoint = load_trained_model(engine, run_dir, device)
    with _target(run_dir, out_dir, "generating") as target:
        sounds = like_sounds(model, config, like, count, seed=seed, temperature=temperature, trim=trim)
        stem = Path(like).stem
        names = [f"like_{stem}_{seed:04d}_{number:02d}.wav" for number in range(1, len(sounds) + 1)]
        return _write(target, names, sounds, config.sample_rate)


def morph_files(
    engine: Any,
    run_dir: str | Path,
    start: str | Path,
    end: str | Path,
    out_dir: str | Path | None = None,
    *,
    steps: int = 8,
    spherical: bool = False,
    device: str | torch.device = "cpu",
) -> list[Path]:
    """Write the ``steps`` sounds of a morph in order (``morph_<A>_<B>_NN.wav``) and the joined one
    (``morph_<A>_<B>_joined.wav``, last in the list); see :func:`morph_sounds`."""
    if steps < 2:
        raise ValueError(f"a morph needs at least 2 steps, got {steps}")
    model, config, _checkpoint = load_trained_model(engine, run_dir, device)
    with _target(run_dir, out_dir, "generating") as target:
        sounds, joined = morph_sounds(model, config, start, end, steps, spherical=spherical)
        stem = f"morph_{Path(start).stem}_{Path(end).stem}"
        names = [f"{stem}_{number:02d}.wav" for number in range(1, steps + 1)] + [f"{stem}_joined.wav"]
        return _write(target, names, [*sounds, joined], config.sample_rate)
