"""The interface every generative model trained by sda implements.

``sda_make_model(config)`` returns a ``torch.nn.Module`` with these methods. The engine only
calls :meth:`GenerativeModel.loss` while training; previews and ``sda generate`` call
:meth:`~GenerativeModel.reconstruct` and :meth:`~GenerativeModel.generate`. Audio tensors are
raw waveforms shaped (batch, channels, samples) at ``config.sample_rate``, on the model's device;
any spectrogram transform happens inside the model, on the training device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import torch

from sda_core.data.chunks import chunk_frames

#: The key of ``loss()``'s dict that is backpropagated.
LOSS_KEY = "loss"
#: The optional key whose value the curves, best epoch and overfitting detection use; it should
#: be comparable between epochs (e.g. a KL term at its final weight while the optimised loss
#: still warms it up). Falls back to ``LOSS_KEY``.
OBJECTIVE_KEY = "objective"


@runtime_checkable
class GenerativeModel(Protocol):
    """What the engine needs from a model (implemented by a ``torch.nn.Module``)."""

    sample_rate: int
    channels: int

    def loss(self, audio: torch.Tensor, *, epoch: int) -> dict[str, torch.Tensor]:
        """Losses of one batch: scalar tensors; ``"loss"`` is backpropagated.

        ``epoch`` (1-based) lets a model schedule terms such as a KL warm-up. Add
        ``"objective"`` when the optimised loss is not comparable across epochs. Other keys
        (``"recon"``, ``"kl"`` ...) are reported as named components.
        """
        ...

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Latent codes (the posterior means) of a batch of chunks: (batch, latent...)."""
        ...

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Audio chunks (batch, channels, samples) from latent codes."""
        ...

    def reconstruct(self, audio: torch.Tensor) -> torch.Tensor:
        """Encode then decode: how well the model reproduces what it heard."""
        ...

    def generate(self, count: int, *, seconds: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` new sounds of ``seconds`` each, drawn from the prior: (count, channels, samples).

        A model may also take a keyword ``temperature: float | None`` (the spread of its
        sampling); ``sda generate --temperature`` and ``sda evaluate --temperature`` pass it only
        to a ``generate`` that accepts it and refuse otherwise.
        """
        ...


@runtime_checkable
class SamplerFitting(Protocol):
    """An optional model method: fit where ``generate`` draws to the training data.

    A model that has ``fit_sampler`` (for example a VAE that samples from a density fitted to its
    training codes instead of from the prior) is handed the posterior means of the training
    chunks, **unaugmented** and at most :data:`SAMPLER_FIT_CHUNKS` of them (evenly spread), as
    ``model.encode`` returns them: before the checkpoints of an epoch that is a new best or
    renders previews, and before the previews that close a run. Store what it fits in the state
    dict (buffers), so checkpoints and ``sda generate`` keep it. Models without it are unaffected.

    A ``fit_sampler`` that takes a keyword ``successors`` also gets, where the dataset provider can
    say (its dataset has ``chunk_spans``, as the reference one has), a long tensor (count,): for
    each code the index of the code of the chunk that follows it in the same file on that grid,
    or -1, so the model can continue a sound past one chunk as the training files went on.
    """

    def fit_sampler(self, latents: torch.Tensor) -> None:
        """Fit the sampler to ``latents`` (count, latent...), the codes of the training chunks."""
        ...


@runtime_checkable
class LatentSampling(Protocol):
    """An optional model method: draw latent codes from where ``generate`` samples.

    ``sda generate --like FILE`` moves a sound's code toward such draws to make variations of it.
    A model without ``sample_latents`` gets the generic fallback of
    :func:`sda_core.training.generation.sample_codes`: N(0, I) shaped like ``encode``'s codes
    (the isotropic prior of a VAE). ``sda export`` describes the sampler in its sidecar JSON: a
    model that keeps a diagonal Gaussian mixture in buffers named ``sampler_weights`` (K,),
    ``sampler_means`` and ``sampler_stds`` (K, latent...) (weights all 0: not fitted) has the
    mixture written there, any other the N(0, I) prior.
    """

    def sample_latents(
        self, count: int, *, generator: torch.Generator | None = None, temperature: float | None = None
    ) -> torch.Tensor:
        """``count`` codes (count, latent...) as ``decode`` takes them, drawn with ``generator``
        (seeded: same generator state, same codes); ``temperature`` None: the model's default
        spread. ``temperature`` is optional: a model may leave it out of its signature."""
        ...


@runtime_checkable
class CodeFitting(Protocol):
    """An optional model method: codes fitted to given sounds, closer than ``encode``'s guess.

    An encoder guesses a code in one pass, and guesses worst for sounds unlike the training files:
    the files ``sda generate --like`` and ``--morph`` are given. A model with ``fit_codes`` (for
    example one that refines the encoder's code by gradient steps on its reconstruction loss) has
    those files encoded by it, and ``sda evaluate`` reports the reconstruction of its codes
    (``reconstruction_fitted``) beside that of ``reconstruct``. Exported encoders keep ``encode``.
    """

    def fit_codes(self, audio: torch.Tensor) -> torch.Tensor:
        """Codes shaped as ``encode``'s of chunks (batch, channels, samples); the same codes for
        the same audio (deterministic), each independent of the rest of the batch, the weights
        unchanged. Called under ``torch.no_grad()``: a method that needs gradients enables them."""
        ...


#: The most training chunks whose codes :meth:`SamplerFitting.fit_sampler` receives.
SAMPLER_FIT_CHUNKS = 512


#: :func:`refine_codes` defaults: Adam's step size on the codes and the weight of the squared
#: distance to the starting codes (keeps a fitted code near where the decoder was trained).
REFINE_RATE = 0.1
REFINE_PULL = 1e-3


def refine_codes(
    codes: torch.Tensor,
    distance: Callable[[torch.Tensor], torch.Tensor],
    *,
    steps: int,
    rate: float = REFINE_RATE,
    pull: float = REFINE_PULL,
) -> torch.Tensor:
    """Codes (batch, latent...) moved by ``steps`` Adam steps from ``codes`` toward lower
    ``distance(codes) + pull * |codes - start|^2``, each item on its own: ``distance`` takes codes
    and returns one value per item (batch,), each depending on that item's code alone (the
    decoding of the code against its target sound, say). A building block for
    :meth:`CodeFitting.fit_codes`: deterministic, and only the codes get gradients (the caller
    sets eval mode; the model's weights and their ``.grad`` stay as they are), also under
    ``torch.no_grad()``.
    """
    start = codes.detach().float()
    if steps <= 0 or start.shape[0] == 0:
        return codes.detach()
    with torch.enable_grad():
        fitted = start.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([fitted], lr=rate)
        for _ in range(int(steps)):
            pulled = distance(fitted) + pull * (fitted - start).flatten(1).square().sum(dim=1)
            (fitted.grad,) = torch.autograd.grad(pulled.sum(), fitted)
            optimiser.step()
    return fitted.detach().to(codes.dtype)


def objective_of(losses: Mapping[str, Any]) -> Any:
    """The value the curves use: ``"objective"`` when the model reports one, else ``"loss"``
    (from the loss tensors or from their float values)."""
    return losses.get(OBJECTIVE_KEY, losses[LOSS_KEY])


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Run a block with the model in eval mode (dropout off), then restore its training mode: what
    ``encode``, ``decode`` and ``generate`` need when previews call them in the middle of training."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def full_precision(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Leave any autocast region on ``device``: spectrograms and loss terms are computed in float32
    (the engine may run ``loss`` under mixed precision on CUDA)."""
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def model_arguments(config: Any) -> dict[str, Any]:
    """The constructor arguments a reference-style VAE reads from a TrainingConfig: the sample
    rate, channels, chunk length in samples, latent size and the model's regularisation (dropout,
    KL weight, warm-up epochs, free bits). ``regularization.weight_decay`` belongs to the optimiser."""
    reg = config.regularization
    return {
        "sample_rate": config.sample_rate,
        "channels": config.channels,
        "chunk_samples": chunk_frames(config),
        "latent_dim": config.latent_dim,
        "dropout": reg.dropout,
        "kl_weight": reg.kl_weight,
        "kl_warmup_epochs": reg.kl_warmup_epochs,
        "free_bits": reg.free_bits,
    }
