"""Reference plugin for ``sda_make_model``: a VAE whose decoder writes the waveform itself.

:class:`WaveVAE` implements the model interface of :mod:`sda_core.training.model` and is sda's default
model (``model = "wave_vae"``). Like :mod:`sda_plugins.mel_vae` it takes raw waveforms of one
chunk and computes a spectrogram inside the model; it encodes it to one code of ``latent_dim``
numbers per segment of 8 STFT frames (93 ms at 22.05 kHz, 11 segments per 1 s chunk; a chunk's
latent is the segments' codes one after another), or with ``local_codes = false`` to one code per
chunk; unlike the mel-VAE, the decoder predicts magnitude *and phase* per STFT frame (a small ConvNeXt stack with
an inverse-STFT head, as in Vocos), so audio comes out without Griffin-Lim, and training compares
waveforms (multi-resolution STFT and multi-scale mel losses). Sampling draws from a kernel density
on the training chunks' posterior means (one Gaussian per training code, a shared per-dimension
bandwidth; :meth:`WaveVAE.fit_sampler`, called by the training loop), so new sounds land where the
data is; a fitted diagonal Gaussian mixture (EM) and the isotropic prior stay available.

Both the analysis STFT of the encoder and the inverse STFT of the decoder use fixed DFT bases as
``conv1d`` / ``conv_transpose1d`` (with window-square normalisation), not ``torch.stft``, so the
decode path (:class:`WaveDecoder`, latent -> audio) exports to ONNX (opset 17) and TorchScript.

docs/model.md describes the architecture, the loss, the sampler and the measured costs.

Settings (all optional) come from the ``[plugins.wave_vae]`` table:

* ``hidden_channels`` (int, default 128): width of the encoder's convolutions.
* ``decoder_channels`` (int, default 128): width of the decoder's ConvNeXt blocks.
* ``decoder_layers`` (int, default 4): number of ConvNeXt blocks.
* ``sampler`` (``"codes"``, ``"mixture"`` or ``"prior"``, default ``"codes"``): where ``generate``
  draws: around the training codes (kernel density), from an EM-fitted mixture, or from N(0, I).
* ``bandwidth`` (float, default 0.7): the ``"codes"`` sampler's kernel width, as a fraction of the
  training codes' spread (standard deviation) in each latent dimension.
* ``temperature`` (float, default 1.0): scale of the sampling spread (kernel or mixture stds, or
  the prior's).
* ``components`` (int, default 16): the most components the ``"mixture"`` sampler may fit.
* ``fit_steps`` (int, default 50): gradient steps :meth:`WaveVAE.fit_codes` takes from the
  encoder's code of a sound toward the code that decodes closest to it (``--like``, ``--morph`` and
  the evaluation's fitted reconstruction); 0 keeps the encoder's code.
* ``local_codes`` (bool, default true): one code per segment of 8 STFT frames (a latent of
  ``segments x latent_dim`` numbers per chunk); false: one code of ``latent_dim`` numbers per
  chunk, as every run before this setting was trained (such checkpoints load in that layout
  whatever the setting says).
* ``encoder_bands`` (int, default 96): the encoder hears this many mel bands of the STFT
  magnitudes (each band the mean of its bins); 0 (or at least the FFT's bins): every bin, as every
  run before this setting was trained (such checkpoints load that way whatever the setting says).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

from sda_core import hookimpl, plugin_settings
from sda_core import validators as v
from sda_core.config import TrainingConfig
from sda_core.training.model import evaluating, full_precision, model_arguments, refine_codes

#: The plugin's name: its entry point, its ``model`` name and its ``[plugins.wave_vae]`` table.
PLUGIN_NAME = "wave_vae"

REFERENCE_RATE = 22050
REFERENCE_N_FFT = 1024
HOP_FRACTION = 4  # hop = n_fft / 4
#: Magnitudes are divided by half the window's sum (a full-scale sine reads about 1); logs are
#: taken above this floor (-80 dB re full scale).
LOG_FLOOR = 1e-4
LOG_CENTER = -5.0
LOG_SCALE = 2.5
#: The decoder's log-magnitude is clamped here before ``exp`` (20 dB above full scale).
MAX_LOG_MAGNITUDE = math.log(10.0)
#: Time-axis downsampling of the encoder (three stride-2 convolutions).
DOWNSAMPLING = 8
#: KL nats per chunk are divided by this before weighting, to sit on the scale of the recon terms.
KL_NORMALISER = 512.0
#: Longest crossfade between successive chunks of :meth:`WaveVAE.generate`, in seconds.
CROSSFADE_SECONDS = 0.05
#: Output peaks are kept at or below -1 dBFS.
PEAK_LIMIT = 10 ** (-1 / 20)
#: The loss's log-magnitude floor in raw (unscaled Hann) STFT magnitudes: the floor of
#: ``sda_core.quality.mrstft_distance`` (1e-5), about -150 dB re full scale. With the encoder's
#: -80 dB floor instead, the loss did not see a noise floor 60 dB down that filled the silences
#: (digital zeros) of reconstructions and samples, which the metric and the ear both do.
LOSS_RAW_FLOOR = 1e-5
#: Bands of the decoder's direct envelope path (latent -> log-magnitude per band and frame).
ENVELOPE_BANDS = 24
#: Output multiplier of the envelope path (its weights start at 0): under Adam it learns this
#: many times faster than a plain linear layer would, so the latent shapes loudness over time and
#: the coarse spectrum within the first epochs instead of after a hundred.
ENVELOPE_GAIN = 4.0
#: Mel bands of the loss's band-envelope term (log band energies of short frames, in dB / 10).
#: Measured on the 36 real sounds (600 steps on their training chunks): without it the
#: reconstructions' loudest 23 ms came out 6-8 dB (median) below the originals', since log-L1
#: terms floored near -150 dB pull an uncertain prediction down; a broadband version fixed the level
#: but shifted energy to the bass (spectral centroid 1 std low), 8 bands fixed both.
ENVELOPE_LOSS_BANDS = 8
#: The band-envelope term's power floor, relative to a full-scale sine in one band (-125 dB).
ENVELOPE_LOSS_FLOOR_DB = -125.0
#: Mel bands of the multi-scale mel loss, per FFT size relative to the model's (1/2, 1, 2).
MEL_BANDS = (40, 80, 128)

# The output gate (:func:`gate_quiet_blocks`). Short recordings end in digital silence, and
# chunks of them are padded with it, but a decoder's output is never exactly zero: the generated
# sounds' tails and gaps sat at -70 to -100 dBFS where the data is silent. Measured on a default
# run on the 36 real sounds (20% of the training chunks' hop-sized blocks below -100 dB, under 4%
# of the generated ones'), the same weights with and without the gate (at -83 dB): 1-NN accuracy
# of the generated sounds 0.70 against 0.77 (mean of evaluation seeds 0-3); on the demo set
# (gate at the -60 dB cap) the validation reconstruction distance 2.86 against 3.07.
#: A hop-sized block below this level is digital silence (as ``sda_core.audio.quality``).
SILENCE_DB = -100.0
#: Level histogram of the training chunks' blocks: one bin below :data:`SILENCE_DB`, 1 dB bins
#: from there to 0 dBFS, one above.
LEVEL_BINS = 102
#: The gate works only for data with at least this share of digitally silent blocks.
GATE_MIN_SILENT_SHARE = 0.02
#: The gate closes below the level of the quietest this-percent of the data's sounding blocks...
GATE_PERCENTILE = 2.0
#: ...but never above this level, so it cannot cut into quiet material.
GATE_CEILING_DB = -60.0

SAMPLERS = ("codes", "mixture", "prior")
#: The most training codes the ``"codes"`` sampler keeps (sda_core hands it at most 512).
CODE_CAPACITY = 512
DEFAULTS: dict[str, Any] = {
    "hidden_channels": 128,
    "decoder_channels": 128,
    "decoder_layers": 4,
    "sampler": "codes",
    "bandwidth": 0.7,
    "temperature": 1.0,
    "components": 16,
    "fit_steps": 50,
    "local_codes": True,
    "encoder_bands": 96,
}


def _as_float(value: Any) -> Any:
    """An int setting given for a float one becomes a float; anything else is left to the validator."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def fft_size_for(sample_rate: int) -> int:
    """The FFT size for a sample rate: 1024 at 22.05 kHz, scaled with the rate to a power of two."""
    return 2 ** max(6, round(math.log2(REFERENCE_N_FFT * sample_rate / REFERENCE_RATE)))


def kl_weight_at(epoch: int, kl_weight: float, warmup_epochs: int) -> float:
    """The KL weight at a 1-based ``epoch``: linear warm-up to ``kl_weight`` (0 at epoch 0)."""
    if warmup_epochs <= 0:
        return float(kl_weight)
    return float(kl_weight) * min(1.0, max(0, epoch) / warmup_epochs)


@attrs.frozen
class WaveVAESettings:
    """The ``[plugins.wave_vae]`` settings (read through ``sda_core.plugin_settings``).

    Attributes:
        hidden_channels: channels of the encoder's convolutions.
        decoder_channels: channels of the decoder's ConvNeXt blocks.
        decoder_layers: ConvNeXt blocks in the decoder.
        sampler: where ``generate`` draws codes: ``"codes"`` (a kernel density on the training
            codes), ``"mixture"`` (a diagonal Gaussian mixture fitted by EM) or ``"prior"`` (N(0, I)).
        bandwidth: the ``codes`` sampler's width, in units of the codes' per-dimension spread.
        temperature: scales the sampler's spread (0: the training codes / component means).
        components: the most components of the ``mixture`` sampler.
        fit_steps: gradient steps of :meth:`WaveVAE.fit_codes` (0: the encoder's codes).
        local_codes: a code per segment of ``DOWNSAMPLING`` STFT frames (True) or per chunk.
        encoder_bands: mel bands the encoder hears (0, or at least the STFT's bins: every bin).
    """

    hidden_channels: int = attrs.field(default=DEFAULTS["hidden_channels"], validator=v.integer(8, 2048))
    decoder_channels: int = attrs.field(default=DEFAULTS["decoder_channels"], validator=v.integer(8, 2048))
    decoder_layers: int = attrs.field(default=DEFAULTS["decoder_layers"], validator=v.integer(1, 32))
    sampler: str = attrs.field(default=DEFAULTS["sampler"], validator=v.one_of(SAMPLERS))
    bandwidth: float = attrs.field(default=DEFAULTS["bandwidth"], converter=_as_float, validator=v.number(0, 10))
    temperature: float = attrs.field(default=DEFAULTS["temperature"], converter=_as_float, validator=v.number(0, 10))
    components: int = attrs.field(default=DEFAULTS["components"], validator=v.integer(1, 64))
    fit_steps: int = attrs.field(default=DEFAULTS["fit_steps"], validator=v.integer(0, 1000))
    local_codes: bool = attrs.field(default=DEFAULTS["local_codes"], validator=v.instance_of(bool, "true or false"))
    encoder_bands: int = attrs.field(default=DEFAULTS["encoder_bands"], validator=v.integer(0, 4096))


def _settings(config: TrainingConfig) -> dict[str, Any]:
    """The ``[plugins.wave_vae]`` table through ``plugin_settings``: unknown keys and bad values raise
    ConfigError naming ``plugins.wave_vae.KEY``."""
    return attrs.asdict(plugin_settings(config, PLUGIN_NAME, WaveVAESettings))


def hann_window(size: int) -> torch.Tensor:
    """The periodic Hann window (torch.stft's usual window), float64."""
    return torch.hann_window(size, periodic=True, dtype=torch.float64)


# -- fixed-basis STFT and inverse STFT ---------------------------------------------------------


class BasisSTFT(nn.Module):
    """Centred STFT (reflect padding, periodic Hann window, one-sided) as one ``conv1d``.

    ``forward(x)`` takes (batch, samples) and returns the real and imaginary parts, each
    (batch, n_fft // 2 + 1, samples // hop + 1): the same numbers as ``torch.stft(x, n_fft, hop,
    window=hann, center=True, pad_mode="reflect", return_complex=True)``, built from ops that
    ONNX opset 17 and TorchScript have.
    """

    def __init__(self, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft, self.hop_length = int(n_fft), int(hop_length)
        self.bins = self.n_fft // 2 + 1
        n = torch.arange(self.n_fft, dtype=torch.float64)
        k = torch.arange(self.bins, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * n[None, :] / self.n_fft
        window = hann_window(self.n_fft)
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])  # (2 * bins, n_fft)
        self.register_buffer("basis", basis.float().unsqueeze(1), persistent=False)
        self.register_buffer("fft_window", window.float(), persistent=False)
        #: Force the fixed-basis path (it is taken anyway while exporting or scripting).
        self.use_bases = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not _use_bases(self):  # the same numbers through the FFT: much cheaper
            spectrum = torch.stft(
                x,
                self.n_fft,
                self.hop_length,
                window=self.fft_window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            )
            return spectrum.real, spectrum.imag
        half = self.n_fft // 2
        padded = F.pad(x.unsqueeze(1), (half, half), mode="reflect")
        out = F.conv1d(padded, self.basis, stride=self.hop_length)
        return out[:, : self.bins], out[:, self.bins :]


class BasisISTFT(nn.Module):
    """Inverse of :class:`BasisSTFT` for a fixed output length, as one ``conv_transpose1d``.

    The inverse real DFT, the synthesis window and the overlap-add are folded into one transposed
    convolution with a fixed (2 * bins, 1, n_fft) kernel; the result is divided by the overlapped
    squared window (window-square normalisation) and the centring padding is cut off. On spectra
    of ``frames = length // hop + 1`` frames it matches ``torch.istft(..., window=hann,
    center=True, length=length)`` (to float32 rounding); the imaginary parts of the DC and
    Nyquist bins are ignored, as there.
    """

    def __init__(self, n_fft: int, hop_length: int, length: int) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.length = int(n_fft), int(hop_length), int(length)
        self.bins = self.n_fft // 2 + 1
        self.frames = self.length // self.hop_length + 1
        n = torch.arange(self.n_fft, dtype=torch.float64)
        k = torch.arange(self.bins, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * n[None, :] / self.n_fft
        weight = torch.full((self.bins, 1), 2.0, dtype=torch.float64)
        weight[0] = 1.0
        if self.n_fft % 2 == 0:
            weight[-1] = 1.0
        window = hann_window(self.n_fft)
        basis = torch.cat([weight * torch.cos(angle), -weight * torch.sin(angle)]) * window / self.n_fft
        self.register_buffer("basis", basis.float().unsqueeze(1), persistent=False)
        squared = (window**2).view(1, 1, -1)
        envelope = F.conv_transpose1d(
            torch.ones(1, 1, self.frames, dtype=torch.float64), squared, stride=self.hop_length
        )[0, 0]
        envelope = envelope[self.n_fft // 2 : self.n_fft // 2 + self.length]
        inverse = torch.where(envelope > 1e-11, 1.0 / envelope.clamp_min(1e-11), torch.zeros_like(envelope))
        self.register_buffer("inverse_envelope", inverse.float(), persistent=False)
        self.register_buffer("fft_window", window.float(), persistent=False)
        #: Force the fixed-basis path (it is taken anyway while exporting or scripting).
        self.use_bases = False

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        """(batch, bins, frames) real and imaginary parts -> (batch, length) audio.

        Outside export the same inverse goes through ``torch.istft`` (the FFT is far cheaper than
        the fixed-basis convolution, forward and backward); while exporting (ONNX, TorchScript),
        or with ``use_bases = True``, through the fixed bases. The two agree to float32 rounding.
        """
        if not _use_bases(self):
            return torch.istft(
                torch.complex(real, imag),
                self.n_fft,
                self.hop_length,
                window=self.fft_window,
                center=True,
                length=self.length,
            )
        frames = F.conv_transpose1d(torch.cat([real, imag], dim=1), self.basis, stride=self.hop_length)
        start = self.n_fft // 2
        return frames[:, 0, start : start + self.length] * self.inverse_envelope


def _use_bases(module: nn.Module) -> bool:
    """Whether a (i)STFT module takes its fixed-basis path: forced, or while exporting/scripting."""
    if torch.jit.is_scripting():
        return True
    return bool(module.use_bases) or torch.onnx.is_in_onnx_export()


# -- the networks ------------------------------------------------------------------------------


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (k7) -> LayerNorm -> pointwise expand x3 -> GELU -> project, scaled residual."""

    def __init__(self, channels: int, expansion: int = 3, layer_scale: float = 0.1) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, 7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.expand = nn.Linear(channels, expansion * channels)
        self.project = nn.Linear(expansion * channels, channels)
        self.scale = nn.Parameter(torch.full((channels,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, channels, frames)
        y = self.depthwise(x).transpose(1, 2)
        y = self.project(F.gelu(self.expand(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2)


class WaveDecoder(nn.Module):
    """Latent (batch, segments * latent_dim) -> audio (batch, channels, length): the whole decode path.

    The latent maps to a (seed_channels, frames) map, one column per STFT frame: with one code per
    chunk (``segments`` 1) through a linear layer (so the code places events in time), with a code
    per segment through a transposed convolution (each code shapes its own segment and blends into
    the next; :meth:`_latent_map`). A k7 convolution widens it to ``width``, ``layers``
    ConvNeXt blocks mix it over time, a LayerNorm and a linear head give, per channel and frame,
    the log-magnitude (clamped at +20 dB) and the phase of every bin, and :class:`BasisISTFT`
    turns them into audio. Self-contained (fixed bases as buffers), so it exports alone.
    """

    def __init__(
        self,
        *,
        latent_dim: int,
        channels: int,
        n_fft: int,
        hop_length: int,
        length: int,
        width: int,
        layers: int,
        seed_channels: int = 64,
        segments: int = 1,
    ) -> None:
        super().__init__()
        self.channels, self.length = int(channels), int(length)
        self.istft = BasisISTFT(n_fft, hop_length, length)
        self.bins, self.frames = self.istft.bins, self.istft.frames
        self.amplitude_scale = float(hann_window(n_fft).sum()) / 2
        self.seed_channels = int(seed_channels)
        self.segments, self.latent_dim = int(segments), int(latent_dim)
        self.from_latent = self._latent_map(self.seed_channels)
        self.embed = nn.Conv1d(self.seed_channels, width, 7, padding=3)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(width) for _ in range(int(layers))])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, self.channels * 2 * self.bins)
        nn.init.normal_(self.head.weight, std=0.01)
        # the envelope path: latent -> (frames, bands) log-magnitude, spread over the bins by fixed
        # overlapping mel-spaced triangles (each bin's weights sum to 1), added to the head's
        self.envelope_bands = ENVELOPE_BANDS
        self.to_envelope = self._latent_map(ENVELOPE_BANDS, zero=True)
        sample_rate = float(n_fft * REFERENCE_RATE / REFERENCE_N_FFT)  # only the shape of the bands matters
        bank = torchaudio.functional.melscale_fbanks(
            self.bins, 0.0, sample_rate / 2, ENVELOPE_BANDS + 2, sample_rate, norm=None, mel_scale="htk"
        )[:, 1:-1]
        bank[: int(bank[:, 0].argmax()) + 1, 0] = 1.0  # bins below the first band's peak and above the last's
        bank[int(bank[:, -1].argmax()) :, -1] = 1.0
        bank = bank / bank.sum(dim=1, keepdim=True).clamp_min(1e-8)
        self.register_buffer("envelope_basis", bank.T.contiguous(), persistent=False)  # (bands, bins)
        # phase by integrated instantaneous frequency: each bin starts at the phase a sinusoid at
        # the bin's centre frequency has in a centred STFT frame, and the head adds a deviation per
        # frame in (-pi, pi) that is summed over time (as GANSynth's IF spectrograms), so a steady
        # partial is a near-constant output rather than a phase that must wrap correctly frame
        # after frame. Measured (600 steps, 36 real sounds' training chunks): 1-NN accuracy of the
        # reconstructions 0.82 -> 0.70, MR-STFT 2.01 -> 1.87 over predicting the phase directly.
        bins = torch.arange(self.bins)[:, None]
        frames = torch.arange(self.frames)[None, :]
        turns = torch.remainder(bins * (frames * hop_length - n_fft // 2), n_fft).double() / n_fft  # exact
        self.register_buffer("centre_phase", (2 * math.pi * turns).float(), persistent=False)
        #: The phase layout: integrated deviations (True) or the phase itself (False: decoders
        #: trained before the integrated phase; set when such a checkpoint loads).
        self.integrated_phase = True
        self.register_buffer("phase_layout", torch.ones(()), persistent=True)
        with torch.no_grad():  # start quiet (-40 dB per bin) with small random phases
            self.head.bias.zero_()
            self.head.bias.view(self.channels, 2, self.bins)[:, 0] = -4.6

    def _latent_map(self, channels: int, *, zero: bool = False) -> nn.Module:
        """The map from the latent to ``channels`` rows per frame: for one code per chunk a linear
        layer to every frame; for a code per segment a transposed convolution (kernel of two
        segments, stride one segment), so each code shapes its own segment and blends into the
        next."""
        if self.segments == 1:
            layer: nn.Module = nn.Linear(self.latent_dim, channels * self.frames)
        else:
            layer = nn.ConvTranspose1d(
                self.latent_dim, channels, 2 * DOWNSAMPLING, stride=DOWNSAMPLING, padding=DOWNSAMPLING // 2
            )
        if zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        return layer

    def use_segments(self, segments: int) -> None:
        """Rebuild the latent maps for ``segments`` codes per chunk (fresh weights, on the
        decoder's device): how a checkpoint of the other layout loads (:class:`WaveVAE`)."""
        self.segments = int(segments)
        device = self.head.weight.device
        self.from_latent = self._latent_map(self.seed_channels).to(device)
        self.to_envelope = self._latent_map(self.envelope_bands, zero=True).to(device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        """A checkpoint saved before the integrated phase (no ``phase_layout``) decodes its phase
        directly, as it was trained."""
        self.integrated_phase = prefix + "phase_layout" in state_dict
        if not self.integrated_phase:
            state_dict[prefix + "phase_layout"] = torch.zeros(())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def frames_of(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's output per frame for latents (batch, code_size): the log-magnitudes (clamped,
        envelope path included) and the raw phase outputs (before ``pi * tanh`` and the sum over
        frames), each (batch, channels, bins, frames)."""
        batch = latent.shape[0]
        if self.segments == 1:
            x = self.from_latent(latent).view(batch, self.seed_channels, self.frames)
            envelope = self.to_envelope(latent).view(batch, self.frames, self.envelope_bands)
        else:
            codes = latent.view(batch, self.segments, self.latent_dim).transpose(1, 2)
            x = self.from_latent(codes)[..., : self.frames]
            envelope = self.to_envelope(codes)[..., : self.frames].transpose(1, 2)
        x = self.blocks(self.embed(x))
        # The head's outputs are log-magnitudes and phase steps summed over every frame: under
        # bf16 autocast their 8-bit mantissas would quantise each step and the sum would drift.
        with full_precision(x.device):
            x = self.head(self.norm(x.transpose(1, 2).float()))  # (batch, frames, channels * 2 * bins)
            # (batch, channels, 2, bins, frames)
            x = x.view(batch, self.frames, self.channels, 2, self.bins).permute(0, 2, 3, 4, 1)
            # (batch, 1, bins, frames)
            envelope = (ENVELOPE_GAIN * envelope.float() @ self.envelope_basis).transpose(1, 2).unsqueeze(1)
            return (x[:, :, 0] + envelope).clamp(max=MAX_LOG_MAGNITUDE), x[:, :, 1]

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        batch = latent.shape[0]
        log_magnitude, phase_output = self.frames_of(latent)
        if self.integrated_phase:
            phase = self.centre_phase + torch.cumsum(math.pi * torch.tanh(phase_output), dim=-1)
        else:
            phase = phase_output
        magnitude = torch.exp(log_magnitude) * self.amplitude_scale
        real = (magnitude * torch.cos(phase)).reshape(batch * self.channels, self.bins, self.frames)
        imag = (magnitude * torch.sin(phase)).reshape(batch * self.channels, self.bins, self.frames)
        return self.istft(real, imag).view(batch, self.channels, self.length)


def finish_audio(
    audio: torch.Tensor, gate_power: torch.Tensor | None = None, block: int = 256, *, remove_dc: bool = True
) -> torch.Tensor:
    """Audio (batch, channels, samples) made finite, gated (:func:`gate_gain`, when ``gate_power``
    is given), without DC (unless ``remove_dc`` is False: chunks joined after each was finished)
    and with each item's peak at most -1 dBFS (a louder item is scaled down whole).

    The DC is the mean of the blocks the gate finds sounding (all of them without a gate), and
    the silence it closes stays exact zeros: subtracting a whole chunk's mean would lay a constant
    over its silent stretches (measured on 36 real sounds: -74 to -84 dBFS in every gap and tail,
    where the decoder itself gives -150 dBFS).
    """
    audio = torch.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
    if gate_power is None:
        if remove_dc:
            audio = audio - audio.mean(dim=-1, keepdim=True)
    else:
        is_open = open_blocks(audio, gate_power, block)
        if remove_dc:
            sounding = F.interpolate(is_open, size=is_open.shape[-1] * block, mode="nearest")[..., : audio.shape[-1]]
            dc = (audio * sounding).sum(dim=-1, keepdim=True) / sounding.sum(dim=-1, keepdim=True).clamp_min(1.0)
            audio = audio - dc
        audio = audio * gate_gain(is_open, block, audio.shape[-1])
    peak = audio.abs().amax(dim=(1, 2), keepdim=True)
    return audio * (PEAK_LIMIT / peak.clamp_min(PEAK_LIMIT))


def block_power(audio: torch.Tensor, block: int) -> torch.Tensor:
    """Mean power of ``block``-sample blocks of audio (batch, channels, samples), the loudest
    channel's: (batch, ceil(samples / block)); a last partial block is zero-padded."""
    batch, channels, samples = audio.shape
    padded = F.pad(audio, (0, (-samples) % block))
    return padded.square().reshape(batch, channels, -1, block).mean(dim=-1).amax(dim=1)


def open_blocks(audio: torch.Tensor, gate_power: torch.Tensor, block: int) -> torch.Tensor:
    """Which ``block``-sample blocks of audio (batch, channels, samples) sound, by the output gate:
    (batch, 1, blocks), 1.0 where the block's power is above ``gate_power`` (a 0-d tensor; 0: every
    block that is not exact zeros), else 0.0."""
    return (block_power(audio, block) > gate_power).float().unsqueeze(1)


def gate_gain(is_open: torch.Tensor, block: int, samples: int) -> torch.Tensor:
    """The output gate's gain (batch, 1, samples) from :func:`open_blocks`: 0 over the blocks that
    do not sound and whose neighbours do not either, 1 elsewhere, with ramps one block long between
    them, so no sound is cut and no click is made. Built from ops that export to ONNX and
    TorchScript."""
    held = F.max_pool1d(is_open, 3, stride=1, padding=1)  # a block next to an open one stays open
    gain = F.interpolate(held, size=held.shape[-1] * block, mode="linear", align_corners=False)
    return gain[..., :samples]


def gate_quiet_blocks(audio: torch.Tensor, gate_power: torch.Tensor, block: int) -> torch.Tensor:
    """Audio (batch, channels, samples) through the output gate (:func:`gate_gain`), so the quiet
    blocks become exact zeros."""
    return audio * gate_gain(open_blocks(audio, gate_power, block), block, audio.shape[-1])


# -- the sampler -------------------------------------------------------------------------------


def mixture_components_for(count: int, most: int) -> int:
    """Mixture components for ``count`` codes: one per 4 codes, at least 1, at most ``most``.

    Measured on a trained demo-set run (18 training chunks): 1 component gave resemblance 0.69 and
    diversity 0.13, 4 components 0.57 and 0.23, 9 components 0.56 and 0.24 (the prior: 0.83).
    """
    return max(1, min(int(most), count // 4, count))


def code_kernels(
    codes: torch.Tensor, bandwidth: float, most: int = CODE_CAPACITY, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A kernel density on ``codes`` (count, dim): one equally weighted Gaussian per code (at most
    ``most``, a seeded subset when there are more), each with the same per-dimension std:
    ``bandwidth`` times the codes' std in that dimension (plus 1e-4). Returns ``(weights (K,),
    means (K, dim), stds (K, dim))`` as float32, like :func:`fit_diagonal_mixture`.

    Measured on trained runs (36 real sounds, 41 training chunks; sda evaluate's figures, 64
    sounds): kernels of 0.3 x the spread gave resemblance 0.27 and diversity 0.66 where the EM
    mixture gave 0.34 and 0.60 and the prior 0.46 and 0.31. With a later decoder a width of 0.7
    gave a mean 1-NN accuracy of 0.77 against 0.82 at 0.3 (four evaluation seeds), the default
    (docs/model.md, "Sampling").
    """
    x = codes.detach().to("cpu", torch.float32)
    if x.shape[0] > most:
        keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:most]
        x = x[torch.sort(keep).values]
    spread = x.std(dim=0, unbiased=False) if x.shape[0] > 1 else torch.ones(x.shape[1])
    stds = (float(bandwidth) * spread + 1e-4).expand(x.shape[0], -1).clone()
    return torch.full((x.shape[0],), 1.0 / x.shape[0]), x.clone(), stds


def fit_diagonal_mixture(
    codes: torch.Tensor, components: int, *, seed: int = 0, iterations: int = 100
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EM for a diagonal-covariance Gaussian mixture on ``codes`` (count, dim), in float64.

    Seeded k-means++ initialisation; each dimension's variance is floored at 1% of the codes'
    variance in that dimension (plus 1e-6), so a component of one code stays a small cloud, and a
    component that loses all its codes is re-seeded on the worst-explained code. Returns
    ``(weights (K,), means (K, dim), stds (K, dim))`` as float32.
    """
    x = codes.detach().to("cpu", torch.float64)
    count, dim = x.shape
    k = max(1, min(int(components), count))
    generator = torch.Generator().manual_seed(seed)
    floor = 0.01 * x.var(dim=0, unbiased=False) + 1e-6
    # k-means++ initialisation
    centres = [x[torch.randint(count, (1,), generator=generator)].squeeze(0)]
    for _ in range(1, k):
        distance = torch.cdist(x, torch.stack(centres)).min(dim=1).values.square()
        total = distance.sum()
        if total <= 0:
            index = torch.randint(count, (1,), generator=generator)
        else:
            index = torch.multinomial(distance / total, 1, generator=generator)
        centres.append(x[index].squeeze(0))
    means = torch.stack(centres)
    variances = (x.var(dim=0, unbiased=False) + floor).expand(k, dim).clone()
    weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
    previous = -math.inf
    for _ in range(iterations):
        log_prob = (
            -0.5 * (((x[:, None, :] - means[None]) ** 2) / variances[None] + torch.log(2 * math.pi * variances[None]))
        ).sum(-1) + torch.log(weights)[None]
        total = torch.logsumexp(log_prob, dim=1, keepdim=True)
        responsibility = torch.exp(log_prob - total)  # (count, k)
        mass = responsibility.sum(0)
        empty = mass < 1e-8
        if bool(empty.any()):
            worst = int(torch.argmin(total.squeeze(1)))
            for index in torch.nonzero(empty).flatten().tolist():
                responsibility[:, index] = 0.0
                responsibility[worst, index] = 1.0
            mass = responsibility.sum(0)
        means = (responsibility.T @ x) / mass[:, None]
        variances = (responsibility.T @ x.square()) / mass[:, None] - means.square()
        variances = variances.clamp_min(0.0) + floor
        weights = mass / mass.sum()
        likelihood = float(total.mean())
        if abs(likelihood - previous) < 1e-7 * max(1.0, abs(likelihood)):
            break
        previous = likelihood
    return weights.float(), means.float(), variances.sqrt().float()


# -- the model ---------------------------------------------------------------------------------


class WaveVAE(nn.Module):
    """A VAE on STFT log-magnitudes of one chunk with a waveform decoder and a fitted sampler.

    Audio tensors are (batch, channels, samples) with exactly ``chunk_samples`` samples. Channels
    are stacked as input rows of the encoder (one latent describes all channels) and the decoder's
    head predicts every channel's magnitude and phase, so stereo comes out coherent.

    Build it with :meth:`from_config`.
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
        hidden_channels: int = DEFAULTS["hidden_channels"],
        decoder_channels: int = DEFAULTS["decoder_channels"],
        decoder_layers: int = DEFAULTS["decoder_layers"],
        sampler: str = DEFAULTS["sampler"],
        temperature: float = DEFAULTS["temperature"],
        components: int = DEFAULTS["components"],
        bandwidth: float = DEFAULTS["bandwidth"],
        fit_steps: int = DEFAULTS["fit_steps"],
        local_codes: bool = DEFAULTS["local_codes"],
        encoder_bands: int = DEFAULTS["encoder_bands"],
    ) -> None:
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.chunk_samples = int(chunk_samples)
        self.latent_dim = int(latent_dim)
        self.kl_weight = float(kl_weight)
        self.kl_warmup_epochs = int(kl_warmup_epochs)
        self.free_bits = float(free_bits)
        self.sampler = str(sampler)
        self.temperature = float(temperature)
        self.max_components = int(components)
        self.bandwidth = float(bandwidth)
        self.fit_steps = int(fit_steps)
        self.n_fft = fft_size_for(self.sample_rate)
        self.hop_length = self.n_fft // HOP_FRACTION
        self.frames = self.chunk_samples // self.hop_length + 1
        self.reduced_frames = -(-self.frames // DOWNSAMPLING)
        self.bins = self.n_fft // 2 + 1
        #: Codes per chunk: one per ``DOWNSAMPLING`` STFT frames with ``local_codes``, else one.
        self.segments = self.reduced_frames if local_codes else 1

        self.stft = BasisSTFT(self.n_fft, self.hop_length)
        self.amplitude_scale = float(hann_window(self.n_fft).sum()) / 2
        hidden = int(hidden_channels)
        self.hidden_channels = hidden
        self._use_input_bands(int(encoder_bands))
        layers: list[nn.Module] = [
            self._input_layer(),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, 5, padding=2),
            nn.GELU(),
            nn.Dropout(dropout),
        ]
        for _ in range(int(math.log2(DOWNSAMPLING))):
            layers += [nn.Conv1d(hidden, hidden, 4, stride=2, padding=1), nn.GELU(), nn.Dropout(dropout)]
        self.encoder = nn.Sequential(*layers)
        self.to_posterior = self._posterior_head()
        for layer in self.encoder.modules():
            if isinstance(layer, nn.Conv1d):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        self.decoder = WaveDecoder(
            latent_dim=self.latent_dim,
            channels=self.channels,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            length=self.chunk_samples,
            width=int(decoder_channels),
            layers=int(decoder_layers),
            segments=self.segments,
        )
        self._loss_transforms = _LossSpectra(self.sample_rate, self.n_fft)
        # the sampler: kernels on the training codes or a fitted mixture (weights 0 = not fitted:
        # the prior); the "codes" sampler holds up to CODE_CAPACITY kernels, the mixture `components`
        k = self.max_components if self.sampler == "mixture" else CODE_CAPACITY
        self.register_buffer("sampler_weights", torch.zeros(k))
        self.register_buffer("sampler_means", torch.zeros(k, self.code_size))
        self.register_buffer("sampler_stds", torch.ones(k, self.code_size))
        # for each kernel of the "codes" sampler, the kernel of the chunk that follows its chunk in
        # the training file, or -1 (see sound_latents)
        self.register_buffer("sampler_next", torch.full((k,), -1, dtype=torch.long))
        # the output gate: counts of the training chunks' block levels (see gate_power)
        self.register_buffer("level_histogram", torch.zeros(LEVEL_BINS))

    def _use_input_bands(self, bands: int) -> None:
        """Set what the encoder hears: ``bands`` mel bands of the STFT magnitudes, or every bin
        (``bands`` 0 or at least the bins). Only sets the basis; see :meth:`_input_layer`."""
        self.input_bands = self.bins if bands <= 0 or bands >= self.bins else int(bands)
        basis = None
        if self.input_bands != self.bins:  # each band the weighted mean of its bins' magnitudes
            bank = torchaudio.functional.melscale_fbanks(
                self.bins, 0.0, self.sample_rate / 2, self.input_bands, self.sample_rate, norm=None, mel_scale="htk"
            )
            basis = (bank / bank.sum(dim=0, keepdim=True).clamp_min(1e-8)).to(self.stft.basis.device)
        self.register_buffer("input_basis", basis, persistent=False)

    def _input_layer(self) -> nn.Module:
        """The encoder's first layer: every channel's bands (or bins) of a frame -> ``hidden``."""
        return nn.Conv1d(self.channels * self.input_bands, self.hidden_channels, 1)

    def _posterior_head(self) -> nn.Module:
        """The encoder's last layer, to a mean and a log-variance per latent number: a linear layer
        on all reduced frames for one code per chunk, a k3 convolution (one code per reduced
        frame) for local codes."""
        if self.segments == 1:
            return nn.Linear(self.hidden_channels * self.reduced_frames, 2 * self.latent_dim)
        return nn.Conv1d(self.hidden_channels, 2 * self.latent_dim, 3, padding=1)

    def _use_segments(self, segments: int) -> None:
        """Switch the latent layout to ``segments`` codes per chunk: the posterior head, the
        decoder's latent maps and the sampler buffers are rebuilt (fresh weights, same device)."""
        self.segments = int(segments)
        device = self.sampler_means.device
        self.to_posterior = self._posterior_head().to(device)
        self.decoder.use_segments(self.segments)
        k = self.sampler_weights.shape[0]
        self.sampler_means = torch.zeros(k, self.code_size, device=device)
        self.sampler_stds = torch.ones(k, self.code_size, device=device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        """A checkpoint of the other latent layout (one code per chunk, as every run before local
        codes was trained, or the reverse) switches the model to its layout, whatever the
        ``local_codes`` setting says, so old runs keep generating, evaluating, exporting and
        resuming as they were trained. Sampler buffers saved with another ``components`` setting
        load too: padded with unused components (weight 0) or cut to the largest components, and a
        checkpoint saved before the decoder's envelope path gets it at 0 (its start). The encoder's
        input follows the checkpoint too: its first layer's width says how many bands (or every
        bin, as every run before ``encoder_bands``) it was trained on."""
        first = state_dict.get(prefix + "encoder.0.weight")
        if first is not None and first.shape[1] != self.channels * self.input_bands:
            self._use_input_bands(first.shape[1] // self.channels)
            self.encoder[0] = self._input_layer().to(self.stft.basis.device)
        head = state_dict.get(prefix + "to_posterior.weight")
        if head is not None:
            segments = 1 if head.dim() == 2 else self.reduced_frames
            if segments != self.segments:
                self._use_segments(segments)
        size = self.sampler_weights.shape[0]
        weights = state_dict.get(prefix + "sampler_weights")
        if weights is not None and weights.shape[0] != size:
            order = torch.argsort(weights, descending=True)[:size]
            for name, fill in (("sampler_weights", 0.0), ("sampler_means", 0.0), ("sampler_stds", 1.0)):
                value = state_dict[prefix + name][order]
                padding = value.new_full((size - value.shape[0], *value.shape[1:]), fill)
                state_dict[prefix + name] = torch.cat([value, padding])
        following = state_dict.get(prefix + "sampler_next")
        if following is None or following.shape != self.sampler_next.shape:  # saved before, or resized
            state_dict[prefix + "sampler_next"] = torch.full_like(self.sampler_next, -1)
        if prefix + "level_histogram" not in state_dict:  # saved before the gate: none, as then
            state_dict[prefix + "level_histogram"] = torch.zeros(LEVEL_BINS)
        for name in ("weight", "bias"):  # saved before the envelope path: it starts at 0, as then
            key = f"{prefix}decoder.to_envelope.{name}"
            if key not in state_dict:
                state_dict[key] = torch.zeros_like(getattr(self.decoder.to_envelope, name))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    #: Buffers that ``loss`` updates from the training batches: the weight average copies them
    #: from the trained model (sda_core.training.averaging), as it does BatchNorm statistics.
    running_buffers = ("level_histogram",)

    @classmethod
    def from_config(cls, config: TrainingConfig) -> WaveVAE:
        """Build the model a run with ``config`` trains (its fields and ``[plugins.wave_vae]``)."""
        return cls(**model_arguments(config), **_settings(config))

    @property
    def code_size(self) -> int:
        """Numbers in one chunk's latent: ``segments`` codes of ``latent_dim``, segment-major."""
        return self.segments * self.latent_dim

    @property
    def device(self) -> torch.device:
        return self.sampler_means.device

    @property
    def sampler_fitted(self) -> bool:
        """Whether :meth:`fit_sampler` has fitted the mixture (saved in the state dict)."""
        return bool(self.sampler_weights.sum() > 0)

    def _check_audio(self, audio: torch.Tensor) -> None:
        if audio.dim() != 3 or audio.shape[1] != self.channels or audio.shape[2] != self.chunk_samples:
            expected = ("batch", self.channels, self.chunk_samples)
            raise ValueError(
                f"WaveVAE expects audio shaped (batch, channels, samples) = {expected}, got {tuple(audio.shape)}"
            )

    # -- encoder ------------------------------------------------------------------------------

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Normalised log-magnitudes (batch, channels * input_bands, frames), in float32: of the
        ``input_bands`` mel bands (each the mean magnitude of its bins), or of every bin."""
        self._check_audio(audio)
        batch = audio.shape[0]
        with full_precision(audio.device):
            real, imag = self.stft(audio.float().reshape(batch * self.channels, self.chunk_samples))
            magnitude = torch.sqrt(real.square() + imag.square() + 1e-12) / self.amplitude_scale
            if self.input_basis is not None:
                magnitude = (magnitude.transpose(1, 2) @ self.input_basis).transpose(1, 2)
            normalised = (torch.log(magnitude.clamp_min(LOG_FLOOR)) - LOG_CENTER) / LOG_SCALE
        return normalised.reshape(batch, self.channels * self.input_bands, self.frames)

    def posterior(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance, each (batch, code_size)."""
        padded = F.pad(features, (0, self.reduced_frames * DOWNSAMPLING - self.frames))
        hidden = self.encoder(padded)
        with full_precision(hidden.device):  # the codes (and the KL term) in float32 under autocast too
            if self.segments == 1:
                mean, logvar = self.to_posterior(hidden.flatten(1).float()).chunk(2, dim=1)
            else:  # (batch, 2 * latent_dim, segments) -> segment-major codes
                mean, logvar = self.to_posterior(hidden.float()).transpose(1, 2).chunk(2, dim=2)
                mean, logvar = mean.flatten(1), logvar.flatten(1)
        return mean, logvar.clamp(-12.0, 8.0)

    # -- the model interface ------------------------------------------------------------------

    def loss(self, audio: torch.Tensor, *, epoch: int) -> dict[str, torch.Tensor]:
        """Losses of a batch of chunks at a 1-based ``epoch``.

        ``recon`` = ``stft`` (spectral convergence + log-magnitude L1, averaged over three FFT
        sizes) + ``mel`` (log-mel L1 averaged over the same three sizes) + ``envelope`` (L1 of
        8 mel bands' levels per short frame, in dB / 10); ``kl`` = KL nats per
        chunk above ``free_bits`` per dimension, over :data:`KL_NORMALISER`. ``loss = recon +
        w(epoch) * kl`` (linear warm-up), ``objective = recon + kl_weight * kl``.
        """
        if self.training:
            self.count_levels(audio)
        mean, logvar = self.posterior(self.features(audio))
        latent = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if self.training else mean
        prediction = self.decoder(latent)
        with full_precision(audio.device):
            stft, mel, envelope = self._loss_transforms(prediction.float(), audio.float())
            recon = stft + mel + envelope
            mean, logvar = mean.float(), logvar.float()
            kl_per_dim = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean(dim=0)
            kl = (kl_per_dim - self.free_bits).clamp_min(0.0).sum() / KL_NORMALISER
            weight = kl_weight_at(epoch, self.kl_weight, self.kl_warmup_epochs)
            return {
                "loss": recon + weight * kl,
                "objective": recon + self.kl_weight * kl,
                "recon": recon.detach(),
                "stft": stft.detach(),
                "mel": mel.detach(),
                "envelope": envelope.detach(),
                "kl": kl.detach(),
                "kl_nats": kl_per_dim.sum().detach(),
            }

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """Posterior means (batch, code_size) of chunks (batch, channels, samples)."""
        with evaluating(self), torch.no_grad():
            mean, _ = self.posterior(self.features(audio.to(self.device)))
        return mean

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Audio chunks (batch, channels, chunk_samples) from latents (batch, code_size): finite, no
        DC, peaks at most -1 dBFS."""
        if latent.dim() != 2 or latent.shape[1] != self.code_size:
            raise ValueError(
                f"WaveVAE.decode expects latents shaped (batch, {self.code_size}), got {tuple(latent.shape)}"
            )
        with evaluating(self), torch.no_grad():
            return finish_audio(self.decoder(latent.to(self.device)), self.gate_power(), self.hop_length)

    @torch.no_grad()
    def count_levels(self, audio: torch.Tensor) -> None:
        """Add the levels of a training batch's hop-sized blocks to ``level_histogram``."""
        level = 10.0 * torch.log10(block_power(audio.detach().float(), self.hop_length) + 1e-30)
        bins = (level - SILENCE_DB).floor().clamp(-1, LEVEL_BINS - 2).long() + 1
        ones = torch.ones(bins.numel(), dtype=self.level_histogram.dtype, device=self.level_histogram.device)
        self.level_histogram.index_add_(0, bins.flatten().to(self.level_histogram.device), ones)  # any device

    def gate_power(self) -> torch.Tensor:
        """The output gate's threshold (a 0-d tensor, mean block power): 0 (no gate) unless at least
        :data:`GATE_MIN_SILENT_SHARE` of the training blocks counted were digital silence; then the
        level below which lie the quietest :data:`GATE_PERCENTILE` percent of the sounding blocks,
        at most :data:`GATE_CEILING_DB`."""
        counts = self.level_histogram
        total = counts.sum()
        sounding = counts[1:]
        share = torch.cumsum(sounding, 0) / sounding.sum().clamp_min(1.0)
        level_db = SILENCE_DB + (share < GATE_PERCENTILE / 100).sum().float()
        power = 10.0 ** (torch.clamp(level_db, max=GATE_CEILING_DB) / 10.0)
        gated = (counts[0] >= GATE_MIN_SILENT_SHARE * total) & (total > 0)
        return torch.where(gated, power, torch.zeros_like(power))

    def reconstruct(self, audio: torch.Tensor) -> torch.Tensor:
        """Decode the posterior means of chunks: (batch, channels, chunk_samples)."""
        return self.decode(self.encode(audio))

    def fit_codes(self, audio: torch.Tensor, *, steps: int | None = None) -> torch.Tensor:
        """Codes (batch, code_size) that decode closer to chunks (batch, channels, samples) than
        their posterior means do: from :meth:`encode`'s means, ``steps`` (None: the ``fit_steps``
        setting) of :func:`~sda_core.training.model.refine_codes` on each chunk's own training
        reconstruction loss (its terms taken per chunk, so a code does not depend on the rest of the
        batch).

        The encoder guesses a code in one pass and guesses worst for sounds unlike the training
        files, the sounds ``--like`` and ``--morph`` are given: on the 36 real sounds its validation
        reconstructions came out 8 to 25 dB too quiet. Measured on the validation chunks of default
        runs, MR-STFT distance after 0 / 10 / 25 / 50 / 100 steps: 36 real sounds 2.41 / 2.06 /
        1.91 / 1.86 / -, demo set 2.86 / 2.76 / 2.70 / 2.58 / 2.57 (about 0.2 s per step for 11
        chunks on 2 CPU cores). Deterministic; the weights are not changed.
        """
        target = audio.to(self.device).float()

        def distance(codes: torch.Tensor) -> torch.Tensor:
            stft, mel, envelope = self._loss_transforms(self.decoder(codes), target, per_item=True)
            return stft + mel + envelope

        with evaluating(self), full_precision(self.device):
            return refine_codes(self.encode(audio), distance, steps=self.fit_steps if steps is None else steps)

    @torch.no_grad()
    def fit_sampler(self, latents: torch.Tensor, successors: torch.Tensor | None = None) -> None:
        """Fit the sampler to the training chunks' posterior means (count, code_size).

        ``successors`` (count,), when the training loop knows them: for each code, the index of
        the code of the chunk that follows it in its file, or -1. The ``"codes"`` sampler keeps
        them (``sampler_next``), so :meth:`generate` continues a sound past one chunk as its file
        did.

        ``sampler = "mixture"``: an EM mixture, one component per 4 codes, 1 to the ``components``
        setting (:func:`fit_diagonal_mixture`); otherwise kernels on the codes
        (:func:`code_kernels`). Seeded, so the same codes give the same sampler. Stored in buffers
        (``sampler_*``), hence in checkpoints.
        """
        codes = latents.detach().reshape(latents.shape[0], -1)
        if codes.shape[0] == 0 or codes.shape[1] != self.code_size or not bool(torch.isfinite(codes).all()):
            return
        if self.sampler == "mixture":
            k = mixture_components_for(codes.shape[0], self.max_components)
            weights, means, stds = fit_diagonal_mixture(codes, k)
        else:
            weights, means, stds = code_kernels(codes, self.bandwidth, self.sampler_weights.shape[0])
            k = weights.shape[0]
        self.sampler_next.fill_(-1)
        if successors is not None and self.sampler != "mixture" and k == codes.shape[0]:
            following = successors.detach().to("cpu", torch.long).reshape(-1)
            if following.shape[0] == k and bool(((following >= -1) & (following < k)).all()):
                self.sampler_next[:k] = following.to(self.sampler_next.device)
        self.sampler_weights.zero_()
        self.sampler_means.zero_()
        self.sampler_stds.fill_(1.0)
        self.sampler_weights[:k] = weights.to(self.device)
        self.sampler_means[:k] = means.to(self.device)
        self.sampler_stds[:k] = stds.to(self.device)

    def sample_latents(
        self, count: int, *, generator: torch.Generator | None = None, temperature: float | None = None
    ) -> torch.Tensor:
        """``count`` latents: from the fitted kernels or mixture (``sampler = "codes"`` or
        ``"mixture"``, once fitted) with their stds scaled by ``temperature``, else from
        N(0, temperature^2 I). Drawn on the generator's
        device, returned on the model's."""
        temperature = self.temperature if temperature is None else float(temperature)
        noise, choice = self._draw(count, generator)
        if choice is None:
            return (temperature * noise).to(self.device)
        means, stds = self.sampler_means.to(noise.device)[choice], self.sampler_stds.to(noise.device)[choice]
        return (means + temperature * stds * noise).to(self.device)

    def _draw(self, count: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The random numbers of ``count`` latents, on the generator's device: N(0, I) noise
        (count, code_size) and, from a fitted ``codes`` or ``mixture`` sampler, the kernels or
        components picked by weight (count,), else None."""
        device = generator.device if generator is not None else self.device
        noise = torch.randn(count, self.code_size, generator=generator, device=device)
        if self.sampler == "prior" or not self.sampler_fitted or count == 0:
            return noise, None
        weights = self.sampler_weights.to(device)
        return noise, torch.multinomial(weights / weights.sum(), count, replacement=True, generator=generator)

    @property
    def continues_sounds(self) -> bool:
        """Whether :meth:`generate` continues a sound chunk by chunk as the training files did
        (the ``"codes"`` sampler, fitted with successors), rather than drawing each chunk anew."""
        return self.sampler == "codes" and self.sampler_fitted and bool((self.sampler_next >= 0).any())

    def sound_latents(
        self,
        count: int,
        pieces: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents (count, pieces, code_size) of ``count`` sounds of ``pieces`` chunks each, and
        which chunks sound (count, pieces) bool.

        With :attr:`continues_sounds`, a sound starts at a kernel drawn as :meth:`sample_latents`
        draws and walks on to the kernel of the chunk that followed it in its training file,
        keeping its one noise draw (so a variation stays the same variation); where its file
        ended, the rest of the sound is silent, as the file was. Otherwise every chunk is drawn
        on its own and all sound.
        """
        if count == 0 or pieces <= 1 or not self.continues_sounds:
            latents = self.sample_latents(count * pieces, generator=generator, temperature=temperature)
            return latents.view(count, pieces, self.code_size), torch.ones(count, pieces, dtype=torch.bool)
        temperature = self.temperature if temperature is None else float(temperature)
        noise, current = self._draw(count, generator)  # a fitted codes sampler: current is not None
        device = noise.device
        following = self.sampler_next.to(device)
        means, stds = self.sampler_means.to(device), self.sampler_stds.to(device)
        rows, sounding = [], []
        alive = torch.ones(count, dtype=torch.bool, device=device)
        for _ in range(pieces):
            rows.append(means[current] + temperature * stds[current] * noise)
            sounding.append(alive.clone())
            successor = following[current]
            alive &= successor >= 0
            current = torch.where(successor >= 0, successor, current)
        latents = torch.stack(rows, dim=1).to(self.device)
        return latents, torch.stack(sounding, dim=1).cpu()

    def generate(
        self,
        count: int,
        *,
        seconds: float = 1.0,
        generator: torch.Generator | None = None,
        temperature: float | None = None,
    ) -> torch.Tensor:
        """``count`` new sounds (count, channels, round(seconds * sample_rate)).

        Latents come from :meth:`sample_latents` (``temperature`` None: the ``temperature``
        setting). Longer sounds join successive chunks (:meth:`sound_latents`: continued as the
        training files went on, or each drawn anew) with equal-power crossfades of
        ``min(50 ms, chunk / 4)``; the result has no DC and peaks at most -1 dBFS.
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
        latents, sounding = self.sound_latents(count, pieces, generator=generator, temperature=temperature)
        if count == 0:
            return torch.zeros(0, self.channels, total, device=self.device)
        chunks = self.decode(latents.reshape(count * pieces, -1)).view(count, pieces, self.channels, chunk)
        chunks = chunks * sounding.view(count, pieces, 1, 1).to(device=chunks.device, dtype=chunks.dtype)
        if pieces == 1:
            return finish_audio(chunks[:, 0, :, :total].contiguous(), self.gate_power(), self.hop_length)
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
        # each chunk lost its DC in decode; removing the joined sound's would turn silent stretches
        # (after a training file ended) into a constant
        return finish_audio(out[..., :total].contiguous(), self.gate_power(), self.hop_length, remove_dc=False)


class _RfftMagnitude(torch.autograd.Function):
    """``|rfft(frames)|`` over the last dimension, with the gradient through one inverse real FFT.

    Autograd's own path (``torch.fft.rfft(frames).abs()``) takes the gradient through a complex
    sign and a full-length complex FFT of a zero-padded spectrum; the adjoint of the real FFT is
    ``n * irfft`` of the spectrum's gradient with its interior bins halved (the DC and Nyquist
    bins appear once in the signal, the others twice), which is half the work. Measured on the
    loss's three sizes for a batch of 16 one-second chunks: magnitude, log and backward 81 ms ->
    57 ms. A zero magnitude passes no gradient (as ``abs`` does).
    """

    @staticmethod
    def forward(ctx: Any, frames: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(frames)
        magnitude = spectrum.abs()
        ctx.save_for_backward(spectrum, magnitude)
        ctx.size = frames.shape[-1]
        return magnitude

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        spectrum, magnitude = ctx.saved_tensors
        size = ctx.size
        weight = magnitude.new_full((magnitude.shape[-1],), size / 2)
        weight[0] = size
        if size % 2 == 0:
            weight[-1] = size
        scale = torch.where(magnitude > 0, grad * weight / magnitude, torch.zeros_like(magnitude))
        return torch.fft.irfft(spectrum * scale, n=size)


def stft_magnitude(signal: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Magnitudes (rows, frames, bins) of the centred STFT (reflect padding, hop = window / 4) of
    ``signal`` (rows, samples): ``torch.stft(..., center=True).abs()`` transposed, the same numbers,
    with a cheaper backward (:class:`_RfftMagnitude`)."""
    size = window.shape[0]
    padded = F.pad(signal.unsqueeze(1), (size // 2, size // 2), mode="reflect").squeeze(1)
    return _RfftMagnitude.apply(padded.unfold(-1, size, size // 4) * window)


class _LossSpectra(nn.Module):
    """Multi-resolution STFT loss and multi-scale log-mel L1 at FFT sizes n/2, n and 2n (hop n/4),
    and a band-envelope L1 (:data:`ENVELOPE_LOSS_BANDS` mel bands of the n/2 frames, in dB / 10).

    Magnitudes are normalised so a full-scale sine reads about 1; logs are floored at
    :data:`LOSS_RAW_FLOOR` in raw magnitudes (about -150 dB), so silence must come out silent.
    Spectral convergence is taken over the whole batch (a silent chunk cannot blow it up).
    """

    def __init__(self, sample_rate: int, n_fft: int) -> None:
        super().__init__()
        self.sizes = (n_fft // 2, n_fft, n_fft * 2)
        self.floors: dict[int, float] = {}
        for size, bands in zip(self.sizes, MEL_BANDS):
            window = torch.hann_window(size)
            self.register_buffer(f"window_{size}", window / (window.sum() / 2), persistent=False)
            self.floors[size] = LOSS_RAW_FLOOR / float(window.sum() / 2)
            bank = torchaudio.functional.melscale_fbanks(
                size // 2 + 1, 0.0, sample_rate / 2, bands, sample_rate, norm=None, mel_scale="htk"
            )
            self.register_buffer(f"mel_{size}", bank, persistent=False)
        # the band-envelope term works on the smallest size's magnitudes (already computed)
        size = self.sizes[0]
        bank = torchaudio.functional.melscale_fbanks(
            size // 2 + 1, 0.0, sample_rate / 2, ENVELOPE_LOSS_BANDS, sample_rate, norm=None, mel_scale="htk"
        )
        self.register_buffer("envelope_bands", bank, persistent=False)
        self.envelope_floor = 10 ** (ENVELOPE_LOSS_FLOOR_DB / 10)

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor, *, per_item: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(stft, mel, envelope)`` losses of ``prediction`` against ``target`` (same shapes,
        (batch, channels, samples)): scalars over the batch, or with ``per_item`` each (batch,),
        every term (spectral convergence too) taken over one item's channels alone."""
        batch = prediction.shape[0]
        prediction = prediction.reshape(-1, prediction.shape[-1])
        target = target.reshape(-1, target.shape[-1])
        dims = (1, 2) if per_item else None  # None: over everything
        stft_total = mel_total = envelope = prediction.new_zeros(())
        for size in self.sizes:
            window = getattr(self, f"window_{size}")  # pre-scaled: a full-scale sine reads about 1
            bank = getattr(self, f"mel_{size}")
            floor = self.floors[size]
            with torch.no_grad():  # (rows, frames, bins)
                real = stft_magnitude(target, window)
                real_log = torch.log(real.clamp_min(floor))
                real_mel = torch.log((real @ bank).clamp_min(floor))
                real_norm = torch.linalg.vector_norm(real, dim=dims) + 1e-6
            predicted = stft_magnitude(prediction, window)
            convergence = torch.linalg.vector_norm(real - predicted, dim=dims) / real_norm
            log_l1 = (torch.log(predicted.clamp_min(floor)) - real_log).abs().mean(dim=dims)
            mel_l1 = (torch.log((predicted @ bank).clamp_min(floor)) - real_mel).abs().mean(dim=dims)
            stft_total = stft_total + convergence + log_l1
            mel_total = mel_total + mel_l1
            if size == self.sizes[0]:
                envelope = (self._band_levels(predicted) - self._band_levels(real)).abs().mean(dim=dims)
        stft_total, mel_total = stft_total / len(self.sizes), mel_total / len(self.sizes)
        if per_item:  # rows are (item, channel) pairs: an item's terms are its channels' mean
            return tuple(term.view(batch, -1).mean(dim=1) for term in (stft_total, mel_total, envelope))  # type: ignore[return-value]
        return stft_total, mel_total, envelope

    def _band_levels(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Band energies (dB / 10) per frame of normalised magnitudes (rows, frames, bins): a
        full-scale sine in one band reads 0, the floor :data:`ENVELOPE_LOSS_FLOOR_DB` -12.5."""
        return torch.log10(magnitude.square() @ self.envelope_bands + self.envelope_floor)


@hookimpl(trylast=True)
def sda_make_model(config: TrainingConfig) -> WaveVAE | None:
    """The default reference model, when ``config.model`` selects it."""
    if config.model != PLUGIN_NAME:
        return None
    return WaveVAE.from_config(config)


@hookimpl
def sda_check_config(config: TrainingConfig) -> None:
    """Veto a bad ``[plugins.wave_vae]`` table before anything runs."""
    _settings(config)
