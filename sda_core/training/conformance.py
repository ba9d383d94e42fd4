"""Conformance checks: does a model a plugin made follow the interface sda trains and samples through?

:func:`check_model` checks a model against :class:`~sda_core.training.model.GenerativeModel` for a
config: its members (without calling anything, :func:`check_model_interface`), then one call of
each method on a small batch: ``loss`` (its answer checked by :func:`check_losses`), ``encode``,
``decode``, ``reconstruct`` and ``generate``. A failure is one :class:`~sda_core.errors.ConformanceError`
whose sentence says what came and what was expected.

The training loop runs :func:`check_model` on a few real chunks right after ``sda_make_model``
answers, before anything is written to the run folder, and ``sda generate`` / ``sda evaluate`` /
``sda export`` run :func:`check_model_interface` on the model they rebuild; there the error
becomes a :class:`~sda_core.errors.PluginError` naming the plugin that answered and the hook. A
plugin author calls :func:`check_model` in one line of a test.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

import torch

from sda_core.config import TrainingConfig
from sda_core.data.chunks import chunk_frames
from sda_core.errors import ConformanceError
from sda_core.training.model import LOSS_KEY, GenerativeModel, evaluating

#: The data members of the protocol (``sample_rate``, ``channels``), read from the Protocol itself.
MODEL_ATTRIBUTES: tuple[str, ...] = tuple(GenerativeModel.__annotations__)
#: Its methods (``loss``, ``encode``, ``decode``, ``reconstruct``, ``generate``).
MODEL_METHODS: tuple[str, ...] = tuple(
    name for name, value in vars(GenerativeModel).items() if inspect.isfunction(value) and not name.startswith("_")
)
#: What a model is expected to be, in the words of the errors.
EXPECTED_MODEL = (
    "a torch.nn.Module with the members of sda_core.training.model.GenerativeModel ("
    + ", ".join([*MODEL_ATTRIBUTES, *(f"{name}()" for name in MODEL_METHODS)])
    + ")"
)
#: What ``loss`` is expected to answer, in the words of the errors.
EXPECTED_LOSSES = (
    f"loss(audio, *, epoch) to return a dict of scalar tensors holding {LOSS_KEY!r}, a tensor that requires "
    "grad (other values: numbers or scalar tensors)"
)
#: Chunks in the batch :func:`check_model` synthesises when it is given none.
CHECK_BATCH = 2


def check_model_interface(model: Any, config: TrainingConfig | None = None) -> None:
    """Check, without calling it, that ``model`` has the members of ``GenerativeModel``.

    A ``torch.nn.Module`` with ``sample_rate`` and ``channels`` (integers, equal to ``config``'s
    when a config is given) and callable ``loss``, ``encode``, ``decode``, ``reconstruct`` and
    ``generate``. Raises :class:`~sda_core.errors.ConformanceError` listing everything missing.
    """
    this = named(model)
    if not isinstance(model, torch.nn.Module):
        raise ConformanceError(f"{this}, not a torch.nn.Module", EXPECTED_MODEL)
    missing = [member for member in MODEL_ATTRIBUTES if not hasattr(model, member)]
    missing += [member for member in MODEL_METHODS if not callable(getattr(model, member, None))]
    if missing:
        raise ConformanceError(f"{this}, which lacks {_and(missing)}", EXPECTED_MODEL)
    for member in MODEL_ATTRIBUTES:
        value = getattr(model, member)
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ConformanceError(f"{this} whose {member} is {value!r}", f"{member} to be a positive integer")
        wanted = getattr(config, member, None) if config is not None else None
        if wanted is not None and value != wanted:
            raise ConformanceError(
                f"{this} whose {member} is {value} while the config's is {wanted}",
                f"the model to be built from the config (config.{member})",
            )


def check_losses(losses: Any, *, model: str = "the model", requires_grad: bool = True) -> dict[str, float]:
    """Check one answer of ``model.loss`` and return its values as floats.

    The answer must be a mapping holding ``"loss"``: a tensor of one element that requires grad
    (``requires_grad=False`` where it was computed under ``torch.no_grad``, as validation is); its
    other values numbers or one-element tensors. Finite or not: a loss that becomes NaN is the
    training loop's to report. Raises :class:`~sda_core.errors.ConformanceError`; ``model`` names
    the model in its sentence ("a TinyVAE").
    """
    if not isinstance(losses, Mapping):
        raise ConformanceError(f"{model} whose loss() returned {_kind(losses)}, not a dict", EXPECTED_LOSSES)
    if LOSS_KEY not in losses:
        keys = ", ".join(repr(key) for key in losses) or "none"
        raise ConformanceError(
            f"{model} whose loss() returned a dict without the key {LOSS_KEY!r} (its keys: {keys})", EXPECTED_LOSSES
        )
    loss = losses[LOSS_KEY]
    if not isinstance(loss, torch.Tensor):
        raise ConformanceError(f"{model} whose loss()[{LOSS_KEY!r}] is {_kind(loss)}, not a tensor", EXPECTED_LOSSES)
    values: dict[str, float] = {}
    for key, value in losses.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ConformanceError(
                    f"{model} whose loss()[{key!r}] is a tensor of shape {tuple(value.shape)}, not a scalar",
                    EXPECTED_LOSSES,
                )
            values[str(key)] = float(value.detach())
        elif isinstance(value, Real) and not isinstance(value, bool):
            values[str(key)] = float(value)
        else:
            raise ConformanceError(
                f"{model} whose loss()[{key!r}] is {_kind(value)}, not a number or a scalar tensor", EXPECTED_LOSSES
            )
    if requires_grad and not loss.requires_grad:
        raise ConformanceError(
            f"{model} whose loss()[{LOSS_KEY!r}] does not require grad (it was detached, or computed without the "
            "model's parameters)",
            EXPECTED_LOSSES,
        )
    return values


def check_model(model: Any, config: TrainingConfig, audio: torch.Tensor | None = None, *, epoch: int = 1) -> None:
    """Check that ``model`` follows ``GenerativeModel`` for ``config``, calling each method once.

    Args:
        model: what ``sda_make_model(config)`` answered.
        config: the config it was built from.
        audio: a batch of chunks (batch, channels, samples) to call it on; by default
            :data:`CHECK_BATCH` chunks of quiet noise at ``config``'s rate, channels and chunk length.
        epoch: the epoch passed to ``loss``.

    Checks :func:`check_model_interface`, that it has trainable parameters, that ``loss`` (with
    gradients on, in eval mode) answers what :func:`check_losses` accepts, that ``encode``
    answers one code per chunk which ``decode`` turns into chunks (batch, channels, samples),
    that ``reconstruct`` does the same, and that ``generate(2, seconds=config.chunk_seconds)``
    answers (2, channels, chunk samples). The model's mode, and torch's random number
    generators, are as they were afterwards. Raises :class:`~sda_core.errors.ConformanceError`.
    """
    check_model_interface(model, config)
    this = named(model)
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise ConformanceError(f"{this} with no trainable parameters", "parameters for the optimiser to train")
    device = next(model.parameters()).device
    samples = chunk_frames(config)
    if audio is None:
        noise = torch.Generator(device="cpu").manual_seed(0)
        audio = 0.1 * torch.randn(CHECK_BATCH, config.channels, samples, generator=noise)
    audio = audio.to(device)
    batch = audio.shape[0]
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices), evaluating(model):
        with torch.enable_grad():
            losses = _call(this, "loss", lambda: model.loss(audio, epoch=epoch), audio)
            check_losses(losses, model=this)
            del losses
        with torch.no_grad():
            codes = _call(this, "encode", lambda: model.encode(audio), audio)
            if not isinstance(codes, torch.Tensor) or codes.dim() < 2 or codes.shape[0] != batch:
                raise ConformanceError(
                    f"{this} whose encode() of {batch} chunks returned {_described(codes)}",
                    f"encode(audio) to return one code per chunk, a tensor (batch, latent...) with batch = {batch}",
                )
            decoded = _call(this, "decode", lambda: model.decode(codes), codes)
            _check_audio(this, f"decode() of the codes of {batch} chunks", decoded, batch, config.channels, None)
            rebuilt = _call(this, "reconstruct", lambda: model.reconstruct(audio), audio)
            _check_audio(this, f"reconstruct() of {batch} chunks", rebuilt, batch, config.channels, None)
            draw = torch.Generator(device="cpu").manual_seed(0)
            generated = _call(
                this,
                "generate",
                lambda: model.generate(CHECK_BATCH, seconds=config.chunk_seconds, generator=draw),
                None,
            )
            call = f"generate({CHECK_BATCH}, seconds={config.chunk_seconds})"
            _check_audio(this, call, generated, CHECK_BATCH, config.channels, samples)


def _call(this: str, method: str, call: Callable[[], Any], given: torch.Tensor | None) -> Any:
    """``call()``, with an exception it raises turned into a ConformanceError naming ``method``."""
    try:
        return call()
    except ConformanceError:
        raise
    except Exception as error:
        text = (str(error).strip().splitlines() or [""])[0]
        on = f" on a batch of shape {tuple(given.shape)}" if given is not None else ""
        raise ConformanceError(
            f"{this} whose {method}(){on} raised {type(error).__name__}" + (f": {text}" if text else ""),
            f"{method}() to work as sda_core.training.model.GenerativeModel describes",
        ) from error


def _check_audio(this: str, call: str, audio: Any, batch: int, channels: int, samples: int | None) -> None:
    """Raise unless ``audio``, what ``call`` answered, is a tensor (batch, channels, samples) (any
    positive length when ``samples`` is None)."""
    ok = (
        isinstance(audio, torch.Tensor)
        and audio.dim() == 3
        and tuple(audio.shape[:2]) == (batch, channels)
        and audio.shape[2] > 0
        and (samples is None or audio.shape[2] == samples)
    )
    if not ok:
        length = "samples" if samples is None else str(samples)
        raise ConformanceError(
            f"{this} whose {call} returned {_described(audio)}",
            f"audio shaped (batch, channels, samples) = ({batch}, {channels}, {length})",
        )


def named(model: Any) -> str:
    """The model as the errors name it: ``a WaveVAE``, ``an Autoencoder``."""
    name = type(model).__name__
    return f"{_article(name)} {name}"


def _described(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return _kind(value)


def _kind(value: Any) -> str:
    name = type(value).__name__
    return "None" if value is None else f"{_article(name)} {name}"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
