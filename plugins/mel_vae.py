"""Reference plugin for ``sda_make_model``: a small VAE on log-mel spectrograms.

:class:`MelVAE` implements the model interface of :mod:`sda_core.training.model`. It takes raw waveforms of
one chunk (``config.chunk_seconds`` at ``config.sample_rate``, ``config.channels`` channels),
computes their log-mel spectrogram inside the model (so the transform runs on the training
device), encodes it to one latent vector per chunk and decodes that vector back to a log-mel
spectrogram. Audio comes back through the pseudo-inverse of the mel filter bank and Griffin-Lim.

It is deliberately small (about 1.2 M parameters at the defaults) so that it trains on a laptop
CPU; docs/model.md describes the architecture, the loss and the decoding path with measured costs.

Settings (all optional) come from the ``[plugins.mel_vae]`` table:

* ``hidden_channels`` (int, default 192): width of the convolutional layers.
* ``griffin_lim_iters`` (int, default 32): Griffin-Lim iterations when decoding to audio.
* ``fit_steps`` (int, default 50): gradient steps :meth:`MelVAE.fit_codes` takes from the encoder's
  code of a sound toward the code whose log-mel is closest to the sound's (0: the encoder's code).
"""

from __future__ import annotations

import math

import attrs
import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

from sda_core import hookimpl, plugin_settings
from sda_core import validators as v
from sda_core.config import TrainingConfig
from sda_core.training.model import evaluating, full_precision, model_arguments, refine_codes

#: The plugin's name: its entry point and its ``[plugins.mel_vae]`` settings table.
PLUGIN_NAME = "mel_vae"

#: Mel bands, FFT size and hop at the reference rate; other rates scale the FFT size and hop.
N_MELS = 64
REFERENCE_RATE = 22050
REFERENCE_N_FFT = 1024
HOP_FRACTION = 4  # hop = n_fft / 4

#: Mel amplitudes are divided by half the window's sum, so a full-scale sine at the centre of a
#: mel band reads about 1.0; the log is taken above this floor (-80 dB re full scale).
LOG_FLOOR = 1e-4
#: Fixed normalisation of the natural-log mel amplitude: (log_mel - LOG_CENTER) / LOG_SCALE maps
#: the floor (-9.2) to about -1.7 and full scale (0) to 2.0.
LOG_CENTER = -5.0
LOG_SCALE = 2.5
#: Decoded log-mels are clamped to this many normalised units above full scale before ``exp``,
#: so latents far from the prior cannot overflow; the output is peak-limited anyway.
MAX_NORMALISED = (math.log(10.0) - LOG_CENTER) / LOG_SCALE

#: Time-axis downsampling of the encoder (three stride-2 convolutions).
DOWNSAMPLING = 8
#: Longest crossfade between successive chunks of :meth:`MelVAE.generate`, in seconds.
CROSSFADE_SECONDS = 0.05

DEFAULT_HIDDEN_CHANNELS = 192
DEFAULT_GRIFFIN_LIM_ITERS = 32
DEFAULT_FIT_STEPS = 50


def fft_size_for(sample_rate: int) -> int:
    """The FFT size for a sample rate: 1024 at 22.05 kHz, scaled with the rate to a power of two.

    The window therefore stays about 46 ms long: 2048 at 44.1 and 48 kHz, 512 at 11.025 kHz.
    """
    return 2 ** max(6, round(math.log2(REFERENCE_N_FFT * sample_rate / REFERENCE_RATE)))


def kl_weight_at(epoch: int, kl_weight: float, warmup_epochs: int) -> float:
    """The KL weight of the optimised loss at a 1-based ``epoch``: a linear warm-up.

    ``kl_weight * epoch / warmup_epochs`` until ``warmup_epochs``, then ``kl_weight``; with no
    warm-up (0 epochs) always ``kl_weight``. Epoch 0 (an evaluation before training) gives 0.
    """
    if warmup_epochs <= 0:
        return float(kl_weight)
    return float(kl_weight) * min(1.0, max(0, epoch) / warmup_epochs)


@attrs.frozen(kw_only=True)
class MelVAESettings:
    """The ``[plugins.mel_vae]`` settings.

    Attributes:
        hidden_channels: channels of the encoder's and decoder's hidden layers.
        griffin_lim_iters: Griffin-Lim iterations when decoding mel spectrograms to audio.
        fit_steps: gradient steps of :meth:`MelVAE.fit_codes` (0: the encoder's codes).
    """

    hidden_channels: int = attrs.field(default=DEFAULT_HIDDEN_CHANNELS, validator=v.integer(8, 2048))
    griffin_lim_iters: int = attrs.field(default=DEFAULT_GRIFFIN_LIM_ITERS, validator=v.integer(1, 1000))
    fit_steps: int = attrs.field(default=DEFAULT_FIT_STEPS, validator=v.integer(0, 1000))


def _settings(config: TrainingConfig) -> dict[str, int]:
    """The ``[plugins.mel_vae]`` table through ``plugin_settings``: unknown keys and bad values raise ConfigError."""
    return attrs.asdict(plugin_settings(config, PLUGIN_NAME, MelVAESettings))


@hookimpl
def sda_check_config(config: TrainingConfig) -> None:
    """Veto a bad ``[plugins.mel_vae]`` table before anything runs."""
    _settings(config)


class MelVAE(nn.Module):
    """A VAE on log-mel spectrograms of one chunk, with one latent vector per chunk.

    Audio tensors are (batch, channels, samples) with exactly ``chunk_samples`` samples. The
    channels of a chunk are stacked as input channels of the first convolution (channels x mels
    rows), so one latent vector describes all channels together and a generated stereo sound has
    a coherent left and right magnitude; Griffin-Lim then decodes each channel separately.

    Encoder: Conv1d over time with mels as channels (kernel 5), then three stride-2 Conv1d
    (kernel 4), each followed by GELU and dropout; the (hidden, frames / 8) map is flattened and
    a linear layer gives the posterior mean and log-variance. The decoder mirrors it: a linear
    layer to (hidden, frames / 8), three stride-2 ConvTranspose1d with GELU and dropout, and a
    Conv1d (kernel 5) to the normalised log-mel.

    Build it with :meth:`from_config`; everything it needs is in the config, so a state dict
    saved from one instance loads into another built from the same config.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 22050,
        channels: int = 1,
        chunk_samples: int = 22050,
        latent_dim: int = 32,
        dropout: float = 0.2,
        kl_weight: float = 0.5,
        kl_warmup_epochs: int = 10,
        free_bits: float = 0.1,
        hidden_channels: int = DEFAULT_HIDDEN_CHANNELS,
        n_mels: int = N_MELS,
        griffin_lim_iters: int = DEFAULT_GRIFFIN_LIM_ITERS,
        fit_steps: int = DEFAULT_FIT_STEPS,
    ) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.chunk_samples = int(chunk_samples)
        self.latent_dim = int(latent_dim)
        self.kl_weight = float(kl_weight)
        self.kl_warmup_epochs = int(kl_warmup_epochs)
        self.free_bits = float(free_bits)
        self.n_mels = int(n_mels)
        self.fit_steps = int(fit_steps)
        self.n_fft = fft_size_for(self.sample_rate)
        self.hop_length = self.n_fft // HOP_FRACTION
        #: Spectrogram frames of one chunk (centred STFT).
        self.frames = self.chunk_samples // self.hop_length + 1
        #: Frames after the encoder's downsampling (the input is zero-padded to a multiple of 8).
        self.reduced_frames = -(-self.frames // DOWNSAMPLING)
        rows = self.channels * self.n_mels

        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            f_min=0.0,
            f_max=self.sample_rate / 2,
            power=1.0,
            center=True,
            pad_mode="reflect",
            norm=None,
            mel_scale="htk",
        )
        #: Half the window's sum: a full-scale sinusoid's STFT magnitude.
        self.amplitude_scale = float(self.mel.spectrogram.window.sum()) / 2
        filterbank = self.mel.mel_scale.fb  # (n_freqs, n_mels): mel = spectrum @ fb
        self.register_buffer("mel_pinv", torch.linalg.pinv(filterbank), persistent=False)  # (n_mels, n_freqs)
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=self.n_fft,
            n_iter=int(griffin_lim_iters),
            hop_length=self.hop_length,
            power=1.0,
            length=self.chunk_samples,
            rand_init=False,  # deterministic: generate() with a seeded generator repeats exactly
        )

        hidden = int(hidden_channels)
        self.encoder = nn.Sequential(
            nn.Conv1d(rows, hidden, 5, padding=2),
            nn.GELU(),
            nn.Dropout(dropout),
            *self._strided(hidden, dropout, nn.Conv1d),
        )
        self.to_posterior = nn.Linear(hidden * self.reduced_frames, 2 * self.latent_dim)
        self.from_latent = nn.Linear(self.latent_dim, hidden * self.reduced_frames)
        self.decoder = nn.Sequential(
            nn.GELU(),
            nn.Dropout(dropout),
            *self._strided(hidden, dropout, nn.ConvTranspose1d),
            nn.Conv1d(hidden, rows, 5, padding=2),
        )
        self._hidden = hidden
        self._initialise()

    def _initialise(self) -> None:
        """He (Kaiming) initialisation of the convolutions and of the latent-to-decoder layer.

        PyTorch's default initialisation shrinks the signal at every layer of this plain stack,
        and the untrained network then spends its first few hundred steps learning only the
        average spectrogram; with He initialisation the same model memorises 8 chunks about ten
        times faster. The posterior layer keeps the small default weights, so the posterior
        starts near the prior.
        """
        layers = [*self.encoder.modules(), self.from_latent, *self.decoder.modules()]
        for layer in layers:
            if isinstance(layer, (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)

    @staticmethod
    def _strided(hidden: int, dropout: float, conv: type[nn.Module]) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(DOWNSAMPLING))):
            layers += [conv(hidden, hidden, 4, stride=2, padding=1), nn.GELU(), nn.Dropout(dropout)]
        return layers

    @classmethod
    def from_config(cls, config: TrainingConfig) -> MelVAE:
        """Build the model a run with ``config`` trains.

        Reads ``sample_rate``, ``channels``, ``chunk_seconds``, ``latent_dim`` and
        ``regularization.dropout``, ``kl_weight``, ``kl_warmup_epochs``, ``free_bits``, plus the
        optional ``[plugins.mel_vae]`` settings ``hidden_channels`` and ``griffin_lim_iters``.
        ``regularization.weight_decay`` belongs to the optimiser, not to the model.
        """
        return cls(**model_arguments(config), **_settings(config))

    # -- features -----------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """The device the weights live on."""
        return self.mel_pinv.device

    def _check_audio(self, audio: torch.Tensor) -> None:
        expected = ("batch", self.channels, self.chunk_samples)
        if audio.dim() != 3 or audio.shape[1] != self.channels or audio.shape[2] != self.chunk_samples:
            raise ValueError(
                f"MelVAE expects audio shaped (batch, channels, samples) = {expected}, got {tuple(audio.shape)}"
            )

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel spectrograms of chunks: (batch, channels * n_mels, frames).

        Computed in float32 (outside any autocast region) on the audio's device.
        """
        self._check_audio(audio)
        with full_precision(audio.device):
            mel = self.mel(audio.float()) / self.amplitude_scale  # (batch, channels, n_mels, frames)
            log_mel = torch.log(mel.clamp_min(LOG_FLOOR))
            normalised = (log_mel - LOG_CENTER) / LOG_SCALE
        return normalised.reshape(audio.shape[0], self.channels * self.n_mels, self.frames)

    # -- the networks -------------------------------------------------------------------------

    def posterior(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance, each (batch, latent_dim), of normalised log-mels."""
        padded = F.pad(features, (0, self.reduced_frames * DOWNSAMPLING - self.frames))
        hidden = self.encoder(padded).flatten(1)
        mean, logvar = self.to_posterior(hidden).chunk(2, dim=1)
        return mean, logvar.clamp(-12.0, 8.0)

    def decode_features(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised log-mels (batch, channels * n_mels, frames) from latents (batch, latent_dim)."""
        hidden = self.from_latent(latent).view(latent.shape[0], self._hidden, self.reduced_frames)
        return self.decoder(hidden)[..., : self.frames]

    # -- the model interface ------------------------------------------------------------------

    def loss(self, audio: torch.Tensor, *, epoch: int) -> dict[str, torch.Tensor]:
        """The losses of a batch of chunks (batch, channels, samples) at a 1-based ``epoch``.

        Both terms are per spectrogram value, so they compare across chunk lengths and channel
        counts: ``recon`` is the mean squared error of the normalised log-mel; ``kl`` is the KL
        divergence from the prior in nats, taken per latent dimension and averaged over the
        batch, minus ``free_bits`` nats per dimension (floored at 0, so a dimension carrying less
        than that is free), summed over dimensions and divided by the values of one spectrogram.

        Returns scalar tensors: ``loss = recon + w(epoch) * kl`` (backpropagated; ``w`` warms up
        linearly to ``kl_weight`` over ``kl_warmup_epochs``), ``objective = recon + kl_weight *
        kl`` (comparable across epochs), ``recon``, ``kl`` and ``kl_nats`` (the raw KL per chunk,
        in nats, without free bits: how much the latent carries).
        """
        target = self.features(audio)
        mean, logvar = self.posterior(target)
        if self.training:
            latent = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        else:
            latent = mean  # validation compares epochs without sampling noise
        prediction = self.decode_features(latent)
        with full_precision(audio.device):
            recon = F.mse_loss(prediction.float(), target)
            mean, logvar = mean.float(), logvar.float()
            kl_per_dim = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean(dim=0)
            values = target.shape[1] * target.shape[2]
            kl = (kl_per_dim - self.free_bits).clamp_min(0.0).sum() / values
            weight = kl_weight_at(epoch, self.kl_weight, self.kl_warmup_epochs)
            return {
                "loss": recon + weight * kl,
                "objective": recon + self.kl_weight * kl,
                "recon": recon,
                "kl": kl,
                "kl_nats": kl_per_dim.sum().detach(),
            }

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Posterior means (batch, latent_dim) of chunks (batch, channels, samples)."""
        with evaluating(self), torch.no_grad():
            mean, _ = self.posterior(self.features(audio.to(self.device)))
        return mean

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Audio chunks (batch, channels, chunk_samples) from latents (batch, latent_dim).

        Log-mel -> mel amplitude -> linear magnitude through the pseudo-inverse of the mel filter
        bank (clamped at 0) -> Griffin-Lim, one channel at a time. Dropout is off whatever the
        mode; the result is finite and peak-limited to 1 (a louder chunk is scaled down whole).
        """
        if latent.dim() != 2 or latent.shape[1] != self.latent_dim:
            raise ValueError(
                f"MelVAE.decode expects latents shaped (batch, {self.latent_dim}), got {tuple(latent.shape)}"
            )
        with evaluating(self), torch.no_grad():
            features = self.decode_features(latent.to(self.device))
            return self.features_to_audio(features)

    def features_to_audio(self, features: torch.Tensor) -> torch.Tensor:
        """Audio (batch, channels, chunk_samples) from normalised log-mels (batch, channels * n_mels, frames)."""
        batch = features.shape[0]
        with torch.no_grad(), full_precision(features.device):
            normalised = features.float().clamp(max=MAX_NORMALISED)
            mel = (torch.exp(normalised * LOG_SCALE + LOG_CENTER) - LOG_FLOOR).clamp_min(0.0)
            mel = mel.reshape(batch * self.channels, self.n_mels, self.frames) * self.amplitude_scale
            magnitude = (self.mel_pinv.T @ mel).clamp_min(0.0)  # (batch * channels, n_freqs, frames)
            audio = self.griffin_lim(magnitude).reshape(batch, self.channels, self.chunk_samples)
            return peak_limit(audio)

    def reconstruct(self, audio: torch.Tensor) -> torch.Tensor:
        """Encode chunks to their posterior means and decode them: (batch, channels, chunk_samples)."""
        return self.decode(self.encode(audio))

    def fit_codes(self, audio: torch.Tensor, *, steps: int | None = None) -> torch.Tensor:
        """Codes (batch, latent_dim) whose decoded log-mels are closer to those of chunks (batch,
        channels, samples) than their posterior means': ``steps`` (None: the ``fit_steps`` setting)
        of :func:`~sda_core.training.model.refine_codes` on each chunk's own training loss (the
        mean squared error of the normalised log-mel). Griffin-Lim is not in the loop. MR-STFT
        distance of the decoded codes of the validation chunks, 50 steps: demo set 3.49 -> 3.36,
        36 real sounds 3.25 -> 3.26 (a closer log-mel, no closer sound after Griffin-Lim).
        Deterministic; the weights are not changed."""
        with evaluating(self), torch.no_grad():
            target = self.features(audio.to(self.device)).float()

        def distance(codes: torch.Tensor) -> torch.Tensor:
            return (self.decode_features(codes).float() - target).square().mean(dim=(1, 2))

        with evaluating(self), full_precision(self.device):
            return refine_codes(self.encode(audio), distance, steps=self.fit_steps if steps is None else steps)

    def generate(self, count: int, *, seconds: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` new sounds from the prior: (count, channels, round(seconds * sample_rate)).

        Each chunk decodes a latent drawn from N(0, I) with ``generator`` (on the generator's
        device; the same seed gives the same sounds). Sounds shorter than a chunk are its
        beginning; longer ones join successive chunks, each from its own latent, with
        equal-power crossfades (sine/cosine fades of ``min(50 ms, chunk / 4)``), and are cut to
        the exact length. The result is finite and peak-limited to 1.
        """
        if count < 0:
            raise ValueError(f"count must be 0 or more, got {count}")
        total = round(seconds * self.sample_rate)
        if total < 1:
            raise ValueError(f"seconds must give at least one sample at {self.sample_rate} Hz, got {seconds}")
        chunk = self.chunk_samples
        fade = min(round(CROSSFADE_SECONDS * self.sample_rate), chunk // 4)
        step = chunk - fade
        pieces = 1 if total <= chunk else 1 + math.ceil((total - chunk) / step)
        noise_device = generator.device if generator is not None else self.device
        latents = torch.randn(count * pieces, self.latent_dim, generator=generator, device=noise_device)
        if count == 0:
            return torch.zeros(0, self.channels, total, device=self.device)
        chunks = self.decode(latents).view(count, pieces, self.channels, chunk)
        if pieces == 1:
            return chunks[:, 0, :, :total].contiguous()
        out = torch.zeros(count, self.channels, step * (pieces - 1) + chunk, device=chunks.device)
        ramp = (torch.arange(fade, device=chunks.device, dtype=torch.float32) + 0.5) / fade
        fade_in, fade_out = torch.sin(ramp * math.pi / 2), torch.cos(ramp * math.pi / 2)
        for index in range(pieces):
            piece = chunks[:, index].clone()
            if index > 0:
                piece[..., :fade] *= fade_in
            if index < pieces - 1:
                piece[..., chunk - fade :] *= fade_out
            out[..., index * step : index * step + chunk] += piece
        return peak_limit(out[..., :total].contiguous())


def peak_limit(audio: torch.Tensor) -> torch.Tensor:
    """``audio`` (batch, channels, samples) made finite and scaled so each item peaks at most at 1."""
    audio = torch.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
    peak = audio.abs().amax(dim=(1, 2), keepdim=True)
    return audio / peak.clamp_min(1.0)


@hookimpl(trylast=True)
def sda_make_model(config: TrainingConfig) -> MelVAE | None:
    """The older reference model, when ``config.model`` selects it (``--set model=mel_vae``)."""
    if config.model != PLUGIN_NAME:
        return None
    return MelVAE.from_config(config)
