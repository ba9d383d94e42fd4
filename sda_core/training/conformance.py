"""Conformance checks: does what a plugin made follow the interface sda uses it through?

The model (:func:`check_model`), an augmentation transform (:func:`check_transform`) and a
dataset (:func:`check_dataset`). Each check raises one :class:`~sda_core.errors.ConformanceError`
listing every problem it found, each saying what came and what was expected.

:func:`check_model` checks a model against :class:`~sda_core.training.model.GenerativeModel` for a
config: its members (without calling anything, :func:`check_model_interface`), then one call of
each method on a small batch: ``loss`` (its answer checked by :func:`check_losses`), ``encode``,
``decode``, ``reconstruct`` and ``generate``. A failure is one :class:`~sda_core.errors.ConformanceError`
listing every problem found, each saying what came and what was expected.

The training loop runs :func:`check_model` on a few real chunks right after ``sda_make_model``
answers, before anything is written to the run folder, and ``sda generate`` / ``sda evaluate`` /
``sda export`` run :func:`check_model_interface` on the model they rebuild; there the error
becomes a :class:`~sda_core.errors.PluginError` naming the plugin that answered and the hook. A
plugin author calls :func:`check_model` in one line of a test.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import pickle
import random
from collections.abc import Callable, Iterator, Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, default_collate

from sda_core.config import TrainingConfig
from sda_core.data.augmentation import UNPICKLABLE, protocol_problems, transform_label, unpicklable_reason
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
#: What a dataset is expected to be, in the words of the errors.
EXPECTED_DATASET = "a map-style dataset (__len__ and __getitem__), as sda_make_dataset answers"


def check_model_interface(model: Any, config: TrainingConfig | None = None) -> None:
    """Check, without calling it, that ``model`` has the members of ``GenerativeModel``.

    A ``torch.nn.Module`` with ``sample_rate`` and ``channels`` (integers, equal to ``config``'s
    when a config is given) and callable ``loss``, ``encode``, ``decode``, ``reconstruct`` and
    ``generate``. Raises one :class:`~sda_core.errors.ConformanceError` listing every problem.
    """
    problems = interface_problems(model, config)
    if problems:
        raise ConformanceError.of(problems)


def interface_problems(model: Any, config: TrainingConfig | None = None) -> list[ConformanceError]:
    """What :func:`check_model_interface` finds wrong, one error per problem (empty: nothing)."""
    this = named(model)
    if not isinstance(model, torch.nn.Module):
        return [ConformanceError(f"{this}, not a torch.nn.Module", EXPECTED_MODEL)]
    problems = []
    missing = [member for member in MODEL_ATTRIBUTES if not hasattr(model, member)]
    missing += [member for member in MODEL_METHODS if not callable(getattr(model, member, None))]
    if missing:
        problems.append(ConformanceError(f"{this}, which lacks {_and(missing)}", EXPECTED_MODEL))
    for member in MODEL_ATTRIBUTES:
        if member in missing:
            continue
        value = getattr(model, member)
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            problems.append(
                ConformanceError(f"{this} whose {member} is {value!r}", f"{member} to be a positive integer")
            )
            continue
        wanted = getattr(config, member, None) if config is not None else None
        if wanted is not None and value != wanted:
            problems.append(
                ConformanceError(
                    f"{this} whose {member} is {value} while the config's is {wanted}",
                    f"the model to be built from the config (config.{member})",
                )
            )
    problems += _running_buffer_problems(model, this)
    return problems


def _running_buffer_problems(model: torch.nn.Module, this: str) -> list[ConformanceError]:
    """``running_buffers``, when a model has it, must be a tuple or list of its buffers' names."""
    names = getattr(model, "running_buffers", ())
    expected = "running_buffers to be a tuple of the model's buffer names (as named_buffers() gives them)"
    if isinstance(names, str) or not isinstance(names, (tuple, list)):
        return [ConformanceError(f"{this} whose running_buffers is {names!r}", expected)]
    buffers = {name for name, _ in model.named_buffers()}
    unknown = [repr(name) for name in names if name not in buffers]
    if unknown:
        return [ConformanceError(f"{this} whose running_buffers names {_and(unknown)}, not a buffer of it", expected)]
    return []


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
    answers (2, channels, chunk samples). Every method the model has is called, whatever the
    others did, so one :class:`~sda_core.errors.ConformanceError` lists every problem found (a
    model that is not a ``torch.nn.Module`` is not called at all). The model's mode, and torch's
    random number generators, are as they were afterwards.
    """
    problems = interface_problems(model, config)
    if not isinstance(model, torch.nn.Module):
        raise ConformanceError.of(problems)
    this = named(model)
    has = {name for name in MODEL_METHODS if callable(getattr(model, name, None))}
    trainable = any(parameter.requires_grad for parameter in model.parameters())
    if not trainable:
        problems.append(
            ConformanceError(f"{this} with no trainable parameters", "parameters for the optimiser to train")
        )
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    samples = chunk_frames(config)
    if audio is None:
        noise = torch.Generator(device="cpu").manual_seed(0)
        audio = 0.1 * torch.randn(CHECK_BATCH, config.channels, samples, generator=noise)
    audio = audio.to(device)
    batch = audio.shape[0]
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )

    def check_loss() -> None:
        with torch.enable_grad():
            losses = _call(this, "loss", lambda: model.loss(audio, epoch=epoch), audio)
            check_losses(losses, model=this, requires_grad=trainable)

    def check_codes() -> None:
        with torch.no_grad():
            codes = _call(this, "encode", lambda: model.encode(audio), audio)
            if not isinstance(codes, torch.Tensor) or codes.dim() < 2 or codes.shape[0] != batch:
                raise ConformanceError(
                    f"{this} whose encode() of {batch} chunks returned {_described(codes)}",
                    f"encode(audio) to return one code per chunk, a tensor (batch, latent...) with batch = {batch}",
                )
            if "decode" in has:
                decoded = _call(this, "decode", lambda: model.decode(codes), codes)
                _check_audio(this, f"decode() of the codes of {batch} chunks", decoded, batch, config.channels, None)

    def check_reconstruct() -> None:
        with torch.no_grad():
            rebuilt = _call(this, "reconstruct", lambda: model.reconstruct(audio), audio)
            _check_audio(this, f"reconstruct() of {batch} chunks", rebuilt, batch, config.channels, None)

    def check_generate() -> None:
        with torch.no_grad():
            draw = torch.Generator(device="cpu").manual_seed(0)
            generated = _call(
                this,
                "generate",
                lambda: model.generate(CHECK_BATCH, seconds=config.chunk_seconds, generator=draw),
                None,
            )
            call = f"generate({CHECK_BATCH}, seconds={config.chunk_seconds})"
            _check_audio(this, call, generated, CHECK_BATCH, config.channels, samples)

    checks = {"loss": check_loss, "encode": check_codes, "reconstruct": check_reconstruct, "generate": check_generate}
    with torch.random.fork_rng(devices=devices), evaluating(model):
        for method, check in checks.items():
            if method not in has:
                continue
            try:
                check()
            except ConformanceError as error:
                problems.append(error)
    if problems:
        raise ConformanceError.of(problems)


def check_transform(transform: Any, *, sample_rate: int = 22050, seconds: float = 1.0, draws: int = 8) -> None:
    """Check an augmentation transform against :class:`~sda_core.data.augmentation.Transform`.

    Args:
        transform: one item of what a plugin's ``sda_augmentations(config)`` answers.
        sample_rate: the rate of the synthetic chunks it is applied to, in Hz.
        seconds: their length.
        draws: how many parameter draws (seeds 0 to ``draws - 1``) are applied to each chunk.

    Checks its members (``name``, ``probability``, ``sample``, ``apply``); that it pickles into
    DataLoader workers and the copy draws and applies exactly what the original does; and, on a
    synthetic mono and a stereo chunk (float32, ``(channels, samples)``) for each draw: that
    ``sample(rng, sample_rate)`` returns a dict of JSON-compatible values and draws them from
    ``rng`` alone (the same seed gives the same parameters whatever Python's, numpy's and
    torch's global generators hold), that ``apply`` returns a float32 numpy array of the shape
    it was given, finite, and is a pure function of its arguments (the same parameters on the
    same audio give the same result). Raises one :class:`~sda_core.errors.ConformanceError`
    listing every problem (each kind once, with the first chunk and draw it showed on). The
    global generators are as they were afterwards.
    """
    with _global_generators_kept():
        problems = _transform_problems(transform, sample_rate, seconds, draws)
    if problems:
        raise ConformanceError.of(problems)


def _transform_problems(transform: Any, sample_rate: int, seconds: float, draws: int) -> list[ConformanceError]:
    label = transform_label(transform)
    this = f"augmentation transform {label} ({getattr(transform, 'name', None)!r})"
    problems: dict[str, ConformanceError] = {}

    def problem(kind: str, found: str, expected: str) -> None:
        problems.setdefault(kind, ConformanceError(found, expected))

    for _type, found, expected in protocol_problems(transform):
        problem(found, found, expected)
    unpicklable = unpicklable_reason(transform)
    if unpicklable is not None:
        problem(
            "pickle",
            f"{this}, which {UNPICKLABLE}: {unpicklable}",
            "a transform that pickles (a dataclass or attrs class of plain values)",
        )
    if not (callable(getattr(transform, "sample", None)) and callable(getattr(transform, "apply", None))):
        return list(problems.values())

    samples = max(1, round(seconds * sample_rate))
    chunks = {"mono": _synthetic_chunk(1, samples, sample_rate), "stereo": _synthetic_chunk(2, samples, sample_rate)}

    def draw(seed: int, noise: int, on: Any = transform) -> Any:
        _scramble_global_generators(noise)
        return on.sample(np.random.default_rng([seed]), sample_rate)

    def applied(params: Any, audio: np.ndarray, noise: int, on: Any = transform) -> Any:
        _scramble_global_generators(noise)
        return on.apply(audio.copy(), params, sample_rate)

    for layout, audio in chunks.items():
        shape = tuple(audio.shape)
        for seed in range(draws):
            where = f"on a {layout} chunk {shape} with the parameters of seed {seed}"
            try:
                params = draw(seed, 1)
            except Exception as error:  # noqa: BLE001 - a plugin's code: report, go on
                problem("sample", f"{this} whose sample() raised {_raised(error)}", "sample(rng, sample_rate) to work")
                break
            if not isinstance(params, dict) or not _json_compatible(params):
                problem(
                    "params",
                    f"{this} whose sample() returned {params!r}",
                    "a dict of JSON-compatible values (numbers, strings, booleans) by name",
                )
            try:
                again = draw(seed, 2)
            except Exception:  # noqa: BLE001 - reported by the first draw's kind of failure
                again = None
            if not _same(params, again):
                problem(
                    "sample-determinism",
                    f"{this} whose sample() gave {params!r}, then {again!r} from a generator of the same seed",
                    "every random number drawn from the generator it is given (not numpy's, Python's or torch's "
                    "global ones), so that an item depends on (seed, epoch, index) alone",
                )
            try:
                result = applied(params, audio, 1)
            except Exception as error:  # noqa: BLE001
                problem(
                    "apply",
                    f"{this} whose apply() {where} raised {_raised(error)}",
                    "apply(audio, params, rate) to work",
                )
                continue
            if not isinstance(result, np.ndarray):
                problem(
                    "array",
                    f"{this} whose apply() {where} returned {_kind(result)}",
                    "a numpy array (float32, channels x samples)",
                )
                continue
            if result.shape != shape:
                problem(
                    "shape",
                    f"{this} whose apply() {where} returned shape {result.shape}",
                    f"the shape it was given, {shape} (channels x samples)",
                )
            if result.dtype != np.float32:
                problem("dtype", f"{this} whose apply() {where} returned {result.dtype} audio", "float32 audio")
            if np.issubdtype(result.dtype, np.number) and not np.isfinite(result).all():
                problem(
                    "finite",
                    f"{this} whose apply() {where} returned NaN or infinite samples from finite audio",
                    "finite samples",
                )
            try:
                repeated = applied(params, audio, 2)
            except Exception:  # noqa: BLE001
                repeated = None
            if not (isinstance(repeated, np.ndarray) and np.array_equal(result, repeated, equal_nan=True)):
                problem(
                    "apply-determinism",
                    f"{this} whose apply() {where} gave a different result the second time",
                    "apply() to be a pure function of its arguments (draw random numbers in sample(), or make "
                    "a generator from a seed that sample() drew)",
                )
    if unpicklable is None and "sample" not in problems and "apply" not in problems:
        audio = chunks["stereo"]
        try:
            copy = _worker_copy(transform)
            params, copied = draw(0, 1), draw(0, 1, on=copy)
            same = _same(params, copied) and np.array_equal(
                applied(params, audio, 1), applied(params, audio, 1, on=copy), equal_nan=True
            )
        except Exception as error:  # noqa: BLE001
            problem(
                "pickled",
                f"{this} whose copy pickled into a worker raised {_raised(error)}",
                "the copy to work as the original",
            )
        else:
            if not same:
                problem(
                    "pickled",
                    f"{this} whose copy pickled into a worker draws or applies something else than the original",
                    "the copy to work exactly as the original (keep no state that pickling loses)",
                )
    return list(problems.values())


def check_dataset(dataset: Any, config: TrainingConfig, *, items: int = 3) -> None:
    """Check a dataset against the ``sda_make_dataset`` contract for ``config``.

    Args:
        dataset: what ``sda_make_dataset(files, config, role, augment, root)`` answered.
        config: the config it was built for.
        items: how many items to fetch (the first, the last and ones between).

    Checks that it is a map-style dataset with a length of at least one; that each item fetched
    (with ``(epoch, index)`` keys when it declares ``epoch_keys = True``, plain indices
    otherwise) is a raw waveform as the loader expects: a float32 ``torch.Tensor`` of
    ``config.channels`` x chunk samples (``chunk_frames(config)``), finite; that the same key
    gives the same item again (randomness from the seed, epoch and index alone); that the items
    collate into one batch; and that it pickles into DataLoader workers, where the copy gives the
    same items. Raises one :class:`~sda_core.errors.ConformanceError` listing every problem. The
    global generators are as they were afterwards.
    """
    with _global_generators_kept():
        problems = _dataset_problems(dataset, config, items)
    if problems:
        raise ConformanceError.of(problems)


def _dataset_problems(dataset: Any, config: TrainingConfig, items: int) -> list[ConformanceError]:
    this = named(dataset)
    problems: dict[str, ConformanceError] = {}

    def problem(kind: str, found: str, expected: str) -> None:
        problems.setdefault(kind, ConformanceError(found, expected))

    if isinstance(dataset, IterableDataset) or not callable(getattr(dataset, "__getitem__", None)):
        return [ConformanceError(f"{this}, not a map-style dataset", EXPECTED_DATASET)]
    unpicklable = unpicklable_reason(dataset)
    if unpicklable is not None:
        problem(
            "pickle",
            f"{this}, which {UNPICKLABLE}: {unpicklable}",
            "a dataset that pickles (plain attributes: the file list, the config, the augmentation pipeline)",
        )
    try:
        length = len(dataset)
    except Exception as error:  # noqa: BLE001
        problem("len", f"{this} whose len() raised {_raised(error)}", EXPECTED_DATASET)
        return list(problems.values())
    if isinstance(length, bool) or not isinstance(length, Integral) or length < 1:
        problem("len", f"{this} of {length!r} items", "at least one item for the files it was given")
        return list(problems.values())
    epoch_keys = getattr(dataset, "epoch_keys", False) is True
    indices = sorted({round(position * (length - 1) / max(items - 1, 1)) for position in range(max(items, 1))})
    keys = [(1, index) if epoch_keys else index for index in indices]
    shape = (config.channels, chunk_frames(config))
    fetched = {}
    for key in keys:
        try:
            _scramble_global_generators(1)
            item = dataset[key]
        except Exception as error:  # noqa: BLE001
            problem("getitem", f"{this} whose [{key!r}] raised {_raised(error)}", f"dataset[{key!r}] to give an item")
            continue
        where = f"{this} whose [{key!r}]"
        if not isinstance(item, torch.Tensor):
            problem(
                "tensor",
                f"{where} is {_kind(item)}",
                f"a raw waveform: a float32 torch.Tensor (channels, samples) = {shape}",
            )
            continue
        fetched[key] = item
        if tuple(item.shape) != shape:
            problem(
                "shape",
                f"{where} is a tensor of shape {tuple(item.shape)}",
                f"config.channels x chunk samples = {shape} (chunk_seconds {config.chunk_seconds} at "
                f"{config.sample_rate} Hz)",
            )
        if item.dtype != torch.float32:
            problem("dtype", f"{where} is a {item.dtype} tensor", "a float32 tensor")
        if item.is_floating_point() and not torch.isfinite(item).all():
            problem("finite", f"{where} holds NaN or infinite samples", "finite samples")
        try:
            _scramble_global_generators(2)
            again = dataset[key]
        except Exception:  # noqa: BLE001
            again = None
        if not _same_tensor(again, item):
            problem(
                "determinism",
                f"{where} is another item the second time",
                "items that depend on the seed, the epoch and the index alone (the same key gives the same item, "
                "in any worker and in any order)",
            )
    if fetched and "shape" not in problems and "dtype" not in problems:
        try:
            default_collate(list(fetched.values()))
        except Exception as error:  # noqa: BLE001
            problem("collate", f"{this} whose items do not collate into a batch: {_raised(error)}", EXPECTED_DATASET)
    try:
        pickled = _worker_copy(dataset) if unpicklable is None else None
    except Exception as error:  # noqa: BLE001 - unpickling runs the dataset's own code
        problem(
            "pickled",
            f"{this} whose copy pickled into a worker cannot be unpickled: {_raised(error)}",
            "the copy to give the items the original gives",
        )
        pickled = None
    if pickled is not None:
        for key, item in fetched.items():
            try:
                _scramble_global_generators(3)
                copied = pickled[key]
            except Exception as error:  # noqa: BLE001
                problem(
                    "pickled",
                    f"{this} whose copy pickled into a worker raised {_raised(error)} for [{key!r}]",
                    "the copy to give the items the original gives",
                )
                break
            if not _same_tensor(copied, item):
                problem(
                    "pickled",
                    f"{this} whose copy pickled into a worker gives another item for [{key!r}]",
                    "the copy to give the items the original gives (keep no state that pickling loses)",
                )
                break
    return list(problems.values())


def _worker_copy(value: Any) -> Any:
    """The copy of ``value`` a DataLoader worker gets: pickled and unpickled here, in memory (only
    what was pickled the line before is ever unpickled)."""
    return pickle.loads(pickle.dumps(value))


def _synthetic_chunk(channels: int, samples: int, sample_rate: int) -> np.ndarray:
    """A decaying two-partial tone with a little noise, float32 (channels, samples), the channels
    slightly different; deterministic."""
    t = np.arange(samples) / sample_rate
    tone = 0.4 * np.sin(2 * np.pi * 220.0 * t) + 0.2 * np.sin(2 * np.pi * 661.0 * t)
    noise = np.random.default_rng(0).standard_normal((channels, samples)) * 0.01
    audio = tone * np.exp(-2.0 * t) * np.linspace(1.0, 0.8, channels)[:, np.newaxis] + noise
    return np.ascontiguousarray(audio, dtype=np.float32)


@contextlib.contextmanager
def _global_generators_kept() -> Iterator[None]:
    """Restore Python's, numpy's and torch's (CPU) global generators after the block."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _scramble_global_generators(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators: a transform that draws from them
    gives different results for different ``seed`` (the checks seed them differently between
    two calls that must agree)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _json_compatible(params: dict[Any, Any]) -> bool:
    if not all(isinstance(key, str) for key in params):
        return False
    try:
        json.dumps(params, allow_nan=True)
    except (TypeError, ValueError):
        return False
    return True


def _same(first: Any, second: Any) -> bool:
    """Equal parameters (NaN equal to NaN)."""
    try:
        return first == second or repr(first) == repr(second)
    except Exception:  # noqa: BLE001 - an array in the parameters: compare its text
        return repr(first) == repr(second)


def _same_tensor(first: Any, second: torch.Tensor) -> bool:
    """``first`` is a tensor equal to ``second``, element for element (NaN equal to NaN)."""
    if not isinstance(first, torch.Tensor) or first.shape != second.shape or first.dtype != second.dtype:
        return False
    if first.is_floating_point() or first.is_complex():
        return bool(torch.equal(first.isnan(), second.isnan()) and torch.equal(first.nan_to_num(), second.nan_to_num()))
    return bool(torch.equal(first, second))


def _raised(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    return type(error).__name__ + (f": {text}" if text else "")


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
