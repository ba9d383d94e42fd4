"""Augmentation of training chunks: the :class:`Transform` protocol and the pipeline.

Every plugin may contribute transforms through the ``sda_augmentations(config)`` hook. The engine
collects them once, in the main process, and composes them into one
:class:`AugmentationPipeline`, which the training dataset applies per item inside the DataLoader
workers::

    pipeline = AugmentationPipeline.from_engine(engine, config)
    audio = pipeline(audio, epoch=epoch, index=index)    # float32 (channels, samples)
    pipeline.parameters(epoch, index)                    # what that call applied, inspectable

How one item is augmented:

1. A generator ``np.random.default_rng([seed, epoch, index])`` is made for the item. It is the
   only source of randomness, so the result depends on ``(seed, epoch, index)`` alone: never on
   the number of workers, the order items are fetched in, or what ran before in the process.
2. With probability ``probability`` (``augmentation_probability``, 0.5 by default) the chunk is
   augmented at all; otherwise it is returned unchanged (the very same array).
3. Each transform, in order, is applied with its own ``transform.probability``; when it is, its
   :meth:`Transform.sample` draws its parameters from the item's generator.
4. The result keeps the input's shape, length and dtype exactly, is finite (NaN becomes 0, and
   everything is clipped to ``[-clip, clip]``) and C-contiguous. The input is never modified.

The pipeline holds plain attributes only (floats, ints and the transforms), so it pickles into
DataLoader workers; :meth:`AugmentationPipeline.from_engine` checks that it does and names the
transform that does not.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from sda_core.errors import TransformError
from sda_core.hooks.facade import as_hooks

if TYPE_CHECKING:
    from sda_core.config import TrainingConfig
    from sda_core.hooks.facade import Hooks

__all__ = ["AugmentationPipeline", "Params", "Transform", "TransformError", "check_transform", "protocol_problems"]


#: The parameters of one application of a transform: JSON-compatible scalars (numbers, short
#: strings) keyed by name, e.g. ``{"gain_db": -2.5}``. Drawn by :meth:`Transform.sample`,
#: consumed by :meth:`Transform.apply`, reported by :meth:`AugmentationPipeline.parameters`.
Params = dict[str, Any]


@runtime_checkable
class Transform(Protocol):
    """One augmentation, as contributed by a plugin's ``sda_augmentations(config)``.

    A transform is a small picklable object (a dataclass or attrs class; no lambdas, open files
    or torch modules that do not pickle). Its randomness comes only from the generator the
    pipeline hands to :meth:`sample`; :meth:`apply` is a pure function of its arguments. That
    split is what makes an item reproducible from ``(seed, epoch, index)`` and its parameters
    inspectable before (or without) touching the audio.

    Attributes:
        name: a short identifier, reported by :meth:`AugmentationPipeline.parameters`
            (``"gain"``, ``"noise"``, ``"tape_wobble"`` ...).
        probability: the chance, 0 to 1, that the transform is applied to a chunk the pipeline
            has decided to augment.
    """

    name: str
    probability: float

    def sample(self, rng: np.random.Generator, sample_rate: int) -> Params:
        """Draw the parameters of one application.

        Args:
            rng: the item's generator; draw every random number from it (and nothing else).
                A transform that needs many random numbers at apply time (noise) draws a seed
                here and makes its own generator from it in :meth:`apply`.
            sample_rate: the sample rate of the audio, in Hz.

        Returns:
            JSON-compatible scalars by name, passed unchanged to :meth:`apply`.
        """
        ...

    def apply(self, audio: np.ndarray, params: Params, sample_rate: int) -> np.ndarray:
        """Apply the transform with the parameters :meth:`sample` drew.

        Args:
            audio: float32, shape ``(channels, samples)``, C-contiguous. The pipeline owns this
                buffer: the transform may modify it in place and return it, or return a new
                array.
            params: what :meth:`sample` returned.
            sample_rate: the sample rate of the audio, in Hz.

        Returns:
            The transformed audio, same shape (a different length is cropped or zero-padded
            back by the pipeline).
        """
        ...


def check_transform(transform: object) -> None:
    """Raise ``TypeError``/``ValueError`` naming ``transform`` unless it follows :class:`Transform`.

    Checks the members only (``sample``, ``apply``, ``name``, ``probability``); every problem is
    in the one message. ``sda_core.testing.check_transform`` also calls the transform and pickles
    it (:func:`sda_core.training.conformance.check_transform`).
    """
    problems = protocol_problems(transform)
    if problems:
        kinds = {kind for kind, _found, _expected in problems}
        raise (ValueError if kinds == {ValueError} else TypeError)(
            "; ".join(f"{found}: expected {expected}" for _kind, found, expected in problems)
        )


def protocol_problems(transform: object) -> list[tuple[type[Exception], str, str]]:
    """What :func:`check_transform` finds wrong: ``(TypeError or ValueError, what came, what was
    expected)`` for each problem."""
    label = transform_label(transform)
    problems: list[tuple[type[Exception], str, str]] = []
    methods = "sample(rng, sample_rate) and apply(audio, params, sample_rate), see sda_core.data.augmentation.Transform"
    for method in ("sample", "apply"):
        if not callable(getattr(transform, method, None)):
            problems.append((TypeError, f"augmentation transform {label} with no {method}() method", methods))
    name = getattr(transform, "name", None)
    if not isinstance(name, str) or not name:
        problems.append(
            (TypeError, f"augmentation transform {label} whose name is {name!r}", "a non-empty string attribute 'name'")
        )
    probability = getattr(transform, "probability", None)
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0.0 <= probability <= 1.0:
        problems.append(
            (
                ValueError,
                f"augmentation transform {label} ({name!r}) with probability {probability!r}",
                "a probability from 0 to 1",
            )
        )
    return problems


def transform_label(transform: object) -> str:
    """``module.Class`` of a transform, as the messages name it."""
    return f"{type(transform).__module__}.{type(transform).__qualname__}"


#: What the messages say of a transform or a dataset that does not pickle.
UNPICKLABLE = "cannot be pickled into DataLoader workers"


def unpicklable_reason(value: object) -> str | None:
    """Why ``value`` (a transform, a dataset) does not pickle (``"TypeError: ..."``), or None."""
    try:
        pickle.dumps(value)
    except Exception as error:  # pickling raises many types (PicklingError, TypeError, AttributeError)
        return f"{type(error).__name__}: {error}"
    return None


def _check_pickles(transform: Transform) -> None:
    """Raise ``TypeError`` naming ``transform`` unless it pickles (into DataLoader workers)."""
    reason = unpicklable_reason(transform)
    if reason is not None:
        raise TypeError(
            f"augmentation transform {transform_label(transform)} ({transform.name!r}) {UNPICKLABLE}: {reason}"
        )


def _check_probability(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{what} must be a number from 0 to 1, got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be from 0 to 1, got {value!r}")
    return value


def _check_index(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {value!r}")
    return int(value)


class AugmentationPipeline:
    """Transforms composed into one picklable, reproducible per-chunk augmentation.

    Args:
        transforms: objects following :class:`Transform`, applied in this order.
        probability: the chance that a chunk is augmented at all (the seed value: 0.5).
        seed: the run's seed; with the epoch and the item's index it fixes every random choice.
        sample_rate: the sample rate of the audio the pipeline receives, in Hz.
        clip: augmented audio is clipped to ``[-clip, clip]`` (None: only non-finite values are
            replaced). Audio that is not augmented is returned untouched.
    """

    def __init__(
        self,
        transforms: Iterable[Transform] = (),
        *,
        probability: float = 0.5,
        seed: int = 42,
        sample_rate: int = 22050,
        clip: float | None = 1.0,
    ) -> None:
        self.transforms: tuple[Transform, ...] = tuple(transforms)
        for transform in self.transforms:
            check_transform(transform)
        self.probability = _check_probability(probability, "probability")
        self.seed = _check_index(seed, "seed")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        self.sample_rate = int(sample_rate)
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0):
            raise ValueError(f"clip must be a positive number or None, got {clip!r}")
        self.clip = None if clip is None else float(clip)

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_engine(cls, engine: Any, config: TrainingConfig) -> AugmentationPipeline:
        """:meth:`from_hooks` with an Engine's hooks (``engine.hooks``)."""
        return cls.from_hooks(engine, config)

    @classmethod
    def from_hooks(cls, hooks: Hooks, config: TrainingConfig) -> AugmentationPipeline:
        """The pipeline of a run: every plugin's ``sda_augmentations(config)``, composed.

        Uses ``config.augmentation_probability``, ``config.seed`` and ``config.sample_rate``.
        With ``augmentation_strength`` 0 the pipeline is empty (the hook is still called, so
        plugins validate their settings). Raises :class:`TransformError` (a ``TypeError``) naming
        the plugin and the transform that does not follow :class:`Transform` or does not pickle.
        """
        contributed = as_hooks(hooks).augmentations(config)
        for plugin, transform in contributed:
            try:
                check_transform(transform)
                _check_pickles(transform)
            except (TypeError, ValueError) as error:
                raise TransformError(
                    plugin, f"plugin {plugin!r} answered sda_augmentations with a bad transform: {error}"
                ) from error
        transforms = [transform for _plugin, transform in contributed]
        if config.augmentation_strength == 0:
            transforms = []
        return cls(
            transforms,
            probability=config.augmentation_probability,
            seed=config.seed,
            sample_rate=config.sample_rate,
        )

    def check_picklable(self) -> None:
        """Raise ``TypeError`` naming the first transform that cannot be pickled into a worker."""
        for transform in self.transforms:
            _check_pickles(transform)

    # -- the per-item plan -------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Whether the pipeline can change anything at all."""
        return bool(self.transforms) and self.probability > 0.0

    @property
    def names(self) -> tuple[str, ...]:
        """The transforms' names, in order."""
        return tuple(transform.name for transform in self.transforms)

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        """The item's generator: ``np.random.default_rng([seed, epoch, index])``."""
        return np.random.default_rng([self.seed, _check_index(epoch, "epoch"), _check_index(index, "index")])

    def _plan(self, epoch: int, index: int) -> list[tuple[Transform, Params]]:
        """The transforms applied to one item, with their parameters, in order."""
        if not self.enabled:
            _check_index(epoch, "epoch")
            _check_index(index, "index")
            return []
        rng = self.rng(epoch, index)
        if rng.random() >= self.probability:
            return []
        plan = []
        sample_rate = self.sample_rate
        for transform in self.transforms:
            if rng.random() < transform.probability:
                plan.append((transform, transform.sample(rng, sample_rate)))
        return plan

    def parameters(self, epoch: int, index: int) -> list[tuple[str, Params]]:
        """Exactly what ``self(audio, epoch=epoch, index=index)`` applies: ``[(name, params), ...]``.

        An empty list means the item is returned unchanged. The parameters do not depend on the
        audio, so they can be inspected (logged, plotted, tested) without it.
        """
        return [(transform.name, dict(params)) for transform, params in self._plan(epoch, index)]

    # -- application -------------------------------------------------------------------------

    def __call__(self, audio: Any, *, epoch: int, index: int) -> Any:
        """Augment one chunk (float32, ``(channels, samples)``; also ``(samples,)``).

        Returns the input itself when nothing is applied; otherwise a new C-contiguous array of
        the same shape and dtype, finite and clipped. A torch tensor is accepted and a tensor
        returned.
        """
        plan = self._plan(epoch, index)
        if not plan:
            return audio
        if not isinstance(audio, np.ndarray):
            import torch

            if isinstance(audio, torch.Tensor):
                result = self._apply(audio.detach().cpu().numpy(), plan)
                return torch.from_numpy(result).to(device=audio.device)
            audio = np.asarray(audio)
        return self._apply(audio, plan)

    def _apply(self, audio: np.ndarray, plan: list[tuple[Transform, Params]]) -> np.ndarray:
        if audio.ndim not in (1, 2):
            raise ValueError(
                f"augmentation expects audio of shape (channels, samples) or (samples,), got {audio.shape}"
            )
        if audio.shape[-1] == 0:
            return audio
        dtype = audio.dtype if np.issubdtype(audio.dtype, np.floating) else np.dtype(np.float32)
        # The pipeline's own buffer: transforms may work in place, the caller's array (perhaps a
        # dataset's cache) is never touched.
        work = np.array(audio, dtype=np.float32, order="C", copy=True)
        if work.ndim == 1:
            work = work[np.newaxis, :]
        shape = work.shape
        sample_rate = self.sample_rate
        # Input that is already out of range (or not finite) may overflow inside a transform; the
        # guard below cleans the result up, so numpy need not warn from every worker.
        with np.errstate(all="ignore"):
            for transform, params in plan:
                work = transform.apply(work, params, sample_rate)
                if not isinstance(work, np.ndarray):
                    work = np.asarray(work)
                if work.shape != shape:
                    work = _fit(work, shape, transform)
                if work.dtype != np.float32 or not work.flags.c_contiguous:
                    work = np.ascontiguousarray(work, dtype=np.float32)
        bound = self.clip if self.clip is not None else float(np.finfo(np.float32).max)
        np.nan_to_num(work, copy=False, nan=0.0, posinf=bound, neginf=-bound)
        if self.clip is not None:
            np.clip(work, -bound, bound, out=work)
        work = work.reshape(audio.shape)
        if work.dtype != dtype:
            work = work.astype(dtype)
        return work

    # -- conveniences ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return (
            f"AugmentationPipeline({list(self.names)!r}, probability={self.probability}, seed={self.seed}, "
            f"sample_rate={self.sample_rate})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AugmentationPipeline):
            return NotImplemented
        return (self.transforms, self.probability, self.seed, self.sample_rate, self.clip) == (
            other.transforms,
            other.probability,
            other.seed,
            other.sample_rate,
            other.clip,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable attributes: not hashable


def _fit(work: np.ndarray, shape: Sequence[int], transform: Transform) -> np.ndarray:
    """Crop or zero-pad a transform's output back to ``shape``; other shape changes are errors."""
    if work.ndim == 1 and shape[0] == 1:
        work = work[np.newaxis, :]
    if work.ndim != 2 or work.shape[0] != shape[0]:
        raise ValueError(
            f"augmentation transform {transform_label(transform)} ({transform.name!r}) changed the audio from {tuple(shape)} to "
            f"{work.shape}; a transform may change only the length, which is then fitted back"
        )
    length = shape[1]
    if work.shape[1] > length:
        return np.ascontiguousarray(work[:, :length])
    padded = np.zeros(shape, dtype=np.float32)
    padded[:, : work.shape[1]] = work
    return padded
