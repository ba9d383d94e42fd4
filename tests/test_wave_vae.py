"""The default reference model, ``wave_vae``: shapes, loss, fixed-basis (i)STFT, sampler, output."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sda_core.config import TrainingConfig, apply_overrides
from sda_core.errors import ConfigError
from sda_core.training.generation import load_trained_model
from sda_core.training.model import CodeFitting, GenerativeModel, SamplerFitting
from sda_plugins import mel_vae, wave_vae
from sda_plugins.wave_vae import (
    CODE_CAPACITY,
    DOWNSAMPLING,
    GATE_CEILING_DB,
    PEAK_LIMIT,
    BasisISTFT,
    BasisSTFT,
    WaveVAE,
    code_kernels,
    finish_audio,
    fit_diagonal_mixture,
    gate_quiet_blocks,
    hann_window,
    mixture_components_for,
)

SMALL = {"hidden_channels": 16, "decoder_channels": 16, "decoder_layers": 1}


def config(**changes) -> TrainingConfig:
    values = {"sample_rate": 8000, "chunk_seconds": 0.5, "latent_dim": 8, "plugins": {"wave_vae": dict(SMALL)}}
    return TrainingConfig(**{**values, **changes})


def tone(count: int, model: WaveVAE, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(model.chunk_samples) / model.sample_rate
    pitches = 110 * 2 ** (4 * torch.rand(count, 1, generator=generator))
    audio = 0.5 * torch.sin(2 * math.pi * pitches * t) * torch.exp(-4 * t)
    return audio.unsqueeze(1).repeat(1, model.channels, 1)


@pytest.mark.parametrize("sample_rate,channels", [(8000, 1), (16000, 2), (22050, 1), (44100, 2)])
def test_shapes_for_rates_and_channels(sample_rate, channels):
    model = WaveVAE.from_config(config(sample_rate=sample_rate, channels=channels))
    assert isinstance(model, GenerativeModel) and isinstance(model, SamplerFitting)
    audio = torch.randn(3, channels, model.chunk_samples) * 0.1
    latent = model.encode(audio)
    assert latent.shape == (3, model.code_size)
    assert model.decode(latent).shape == (3, channels, model.chunk_samples)
    assert model.reconstruct(audio).shape == audio.shape
    assert model.generate(2, seconds=0.3).shape == (2, channels, round(0.3 * sample_rate))
    assert model.generate(2, seconds=1.3).shape == (2, channels, round(1.3 * sample_rate))
    losses = model.loss(audio, epoch=1)
    assert {"loss", "objective", "recon", "stft", "mel", "envelope", "kl", "kl_nats"} <= set(losses)
    assert torch.allclose(losses["recon"], losses["stft"] + losses["mel"] + losses["envelope"])
    assert all(value.dim() == 0 and torch.isfinite(value) for value in losses.values())
    with pytest.raises(ValueError, match="expects audio"):
        model.encode(torch.zeros(1, channels + 1, model.chunk_samples))
    with pytest.raises(ValueError, match="expects latents"):
        model.decode(torch.zeros(1, model.code_size + 1))


def test_loss_decreases_on_a_tone():
    torch.manual_seed(0)
    model = WaveVAE.from_config(config())
    audio = tone(4, model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    first = None
    for _ in range(30):
        losses = model.loss(audio, epoch=5)
        optimiser.zero_grad()
        losses["loss"].backward()
        optimiser.step()
        first = float(losses["recon"]) if first is None else first
    model.eval()
    with torch.no_grad():
        assert float(model.loss(audio, epoch=5)["recon"]) < 0.8 * first


@pytest.mark.parametrize("local_codes", [False, True])
def test_codes_and_the_decoder_head_stay_float32_under_mixed_precision(local_codes):
    """Under bf16 autocast (CUDA's ``precision = "auto"``; the CPU's autocast stands in here) the
    convolutions may run in bf16, but the codes, the head's log-magnitudes and phase steps (summed
    over every frame) and the loss stay float32, and close to the float32 model's."""
    torch.manual_seed(0)
    model = WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, "local_codes": local_codes}})).eval()
    audio = tone(2, model)
    with torch.no_grad():
        exact_mean, _ = model.posterior(model.features(audio))
        exact_magnitude, exact_phase = model.decoder.frames_of(exact_mean)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mean, logvar = model.posterior(model.features(audio))
            log_magnitude, phase = model.decoder.frames_of(mean)
            losses = model.loss(audio, epoch=5)
    for tensor in (mean, logvar, log_magnitude, phase, losses["loss"]):
        assert tensor.dtype == torch.float32
    # bf16 convolutions before them: close, not equal
    assert torch.allclose(mean, exact_mean, atol=0.05, rtol=0.05)
    assert torch.allclose(log_magnitude, exact_magnitude, atol=0.1, rtol=0.05)
    assert torch.allclose(phase, exact_phase, atol=0.1, rtol=0.05)


def trained_on_tones(seed: int = 0, steps: int = 30, **settings) -> WaveVAE:
    torch.manual_seed(seed)
    model = WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, **settings}}))
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(steps):
        losses = model.loss(tone(8, model, seed=seed), epoch=5)
        optimiser.zero_grad()
        losses["loss"].backward()
        optimiser.step()
    optimiser.zero_grad(set_to_none=True)
    return model.eval()


def test_per_item_losses_take_each_item_alone():
    model = WaveVAE.from_config(config(channels=2))
    target = tone(3, model) * torch.tensor([1.0, 0.01, 0.3]).view(3, 1, 1)  # loud, quiet, between
    prediction = torch.randn_like(target) * 0.05
    batch = model._loss_transforms(prediction, target, per_item=True)
    assert all(term.shape == (3,) for term in batch)
    for item in range(3):
        alone = model._loss_transforms(prediction[item : item + 1], target[item : item + 1])
        for together, single in zip(batch, alone):
            torch.testing.assert_close(together[item], single, rtol=1e-4, atol=1e-5)


def test_fit_codes_decode_closer_than_the_encoders_codes():
    model = trained_on_tones(fit_steps=25)
    assert isinstance(model, CodeFitting)
    unseen = tone(3, model, seed=7) * torch.tensor([1.0, 0.1, 0.5]).view(3, 1, 1)
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    codes = model.encode(unseen)
    with torch.no_grad():  # as callers hold it: fit_codes enables the gradients it needs
        fitted = model.fit_codes(unseen)
    assert fitted.shape == codes.shape and not fitted.requires_grad

    def distances(latents):
        return sum(model._loss_transforms(model.decode(latents), unseen, per_item=True))

    before, after = distances(codes), distances(fitted)
    assert bool((after < before).all()) and float(after.sum()) < 0.95 * float(before.sum()), (before, after)
    assert all(torch.equal(value, model.state_dict()[name]) for name, value in weights.items())
    assert all(parameter.grad is None for parameter in model.parameters())
    torch.testing.assert_close(model.fit_codes(unseen), fitted)  # deterministic
    # batch-free: the same codes up to float rounding of the batched convolutions, which Adam's
    # normalised steps amplify where a code's gradient is nearly zero (a silent segment)
    torch.testing.assert_close(model.fit_codes(unseen[1:2]), fitted[1:2], rtol=1e-3, atol=1e-2)
    torch.testing.assert_close(model.fit_codes(unseen, steps=0), codes)
    assert WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, "fit_steps": 0}})).fit_steps == 0
    with pytest.raises(ConfigError, match="fit_steps"):
        WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, "fit_steps": -1}}))


@pytest.mark.parametrize("n_fft,length", [(256, 4000), (512, 11025), (1024, 22050), (64, 999)])
def test_fixed_basis_istft_matches_torch_istft(n_fft, length):
    hop = n_fft // 4
    frames = length // hop + 1
    generator = torch.Generator().manual_seed(1)
    real = torch.randn(3, n_fft // 2 + 1, frames, generator=generator)
    imag = torch.randn(3, n_fft // 2 + 1, frames, generator=generator)
    window = hann_window(n_fft).float()
    expected = torch.istft(torch.complex(real, imag), n_fft, hop, window=window, center=True, length=length)
    inverse = BasisISTFT(n_fft, hop, length)
    inverse.use_bases = True
    assert (inverse(real, imag) - expected).abs().max() < 1e-5
    inverse.use_bases = False
    assert (inverse(real, imag) - expected).abs().max() < 1e-5


def test_fixed_basis_stft_matches_torch_stft():
    n_fft, hop = 512, 128
    audio = torch.randn(2, 4000, generator=torch.Generator().manual_seed(2))
    expected = torch.stft(
        audio, n_fft, hop, window=hann_window(n_fft).float(), center=True, pad_mode="reflect", return_complex=True
    )
    analysis = BasisSTFT(n_fft, hop)
    analysis.use_bases = True
    real, imag = analysis(audio)
    scale = expected.abs().max()
    assert (real - expected.real).abs().max() / scale < 1e-5 and (imag - expected.imag).abs().max() / scale < 1e-5


@pytest.mark.parametrize("size", [64, 63])
def test_the_loss_stft_magnitude_and_its_gradient_match_torch_stft(size):
    signal = torch.randn(3, 400, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    signal[1, :] = 0.0  # silence: zero magnitudes pass no gradient, as abs does
    window = torch.hann_window(size, dtype=torch.float64)
    ours = signal.clone().requires_grad_()
    theirs = signal.clone().requires_grad_()
    magnitude = wave_vae.stft_magnitude(ours, window)
    expected = torch.stft(theirs, size, size // 4, window=window, center=True, return_complex=True).abs()
    assert torch.allclose(magnitude, expected.transpose(1, 2), atol=1e-12)
    weights = torch.rand(magnitude.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    (magnitude * weights).sum().backward()
    (expected.transpose(1, 2) * weights).sum().backward()
    assert torch.allclose(ours.grad, theirs.grad, atol=1e-10)
    assert torch.autograd.gradcheck(
        lambda x: wave_vae.stft_magnitude(x, window), (signal[:1].clone().requires_grad_(),)
    )


def test_decode_paths_agree():
    """decode() (FFT) and the exported path (fixed bases) give the same audio."""
    model = WaveVAE.from_config(config())
    latent = torch.randn(2, model.code_size)
    fast = model.decode(latent)
    model.decoder.istft.use_bases = True
    assert (model.decode(latent) - fast).abs().max() < 1e-5


def test_generate_is_reproducible_and_respects_temperature():
    model = WaveVAE.from_config(config())
    model.fit_sampler(torch.randn(40, model.code_size) * 2 + 3)
    first = model.generate(3, generator=torch.Generator().manual_seed(7))
    again = model.generate(3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    cold = model.sample_latents(200, generator=torch.Generator().manual_seed(3), temperature=0.0)
    warm = model.sample_latents(200, generator=torch.Generator().manual_seed(3), temperature=1.0)
    hot = model.sample_latents(200, generator=torch.Generator().manual_seed(3), temperature=2.0)
    # at temperature 0 every latent is a component mean; the spread grows with the temperature
    assert all(any(torch.allclose(row, mean) for mean in model.sampler_means) for row in cold[:10])
    assert torch.allclose(hot - cold, 2 * (warm - cold), atol=1e-5)
    assert model.generate(1, seconds=0.5, generator=torch.Generator().manual_seed(7), temperature=0.5).shape == (
        1,
        1,
        4000,
    )


def test_prior_sampler_setting():
    model = WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, "sampler": "prior"}}))
    model.fit_sampler(torch.randn(40, model.code_size) + 100)
    latents = model.sample_latents(500, generator=torch.Generator().manual_seed(0))
    assert latents.mean().abs() < 0.2 and 0.8 < latents.std() < 1.2
    with pytest.raises(ConfigError, match="sampler"):
        WaveVAE.from_config(config(plugins={"wave_vae": {"sampler": "gan"}}))
    with pytest.raises(ConfigError, match="unknown|allowed|not_a_setting"):
        WaveVAE.from_config(config(plugins={"wave_vae": {"not_a_setting": 1}}))


@pytest.mark.parametrize("count", [1, 2, 5, 12, 100])
def test_mixture_fit_on_tiny_and_larger_sets(count):
    codes = torch.randn(count, 8, generator=torch.Generator().manual_seed(count)) * 3
    k = mixture_components_for(count, 8)
    assert 1 <= k <= min(8, count)
    weights, means, stds = fit_diagonal_mixture(codes, k)
    assert weights.shape == (k,) and means.shape == (k, 8) and stds.shape == (k, 8)
    assert torch.isfinite(means).all() and (stds > 0).all() and abs(float(weights.sum()) - 1) < 1e-5
    again = fit_diagonal_mixture(codes, k)
    assert all(torch.equal(a, b) for a, b in zip((weights, means, stds), again))  # seeded


def test_mixture_finds_separated_clusters():
    generator = torch.Generator().manual_seed(0)
    codes = torch.cat(
        [torch.randn(30, 4, generator=generator) * 0.1 + 5, torch.randn(30, 4, generator=generator) * 0.1 - 5]
    )
    weights, means, _stds = fit_diagonal_mixture(codes, 2)
    assert sorted(round(float(m)) for m in means[:, 0]) == [-5, 5]
    assert torch.allclose(weights, torch.tensor([0.5, 0.5]), atol=0.05)


def test_sampler_survives_a_state_dict_round_trip(tmp_path):
    model = WaveVAE.from_config(config())
    assert not model.sampler_fitted
    model.fit_sampler(torch.randn(5, model.code_size) + 2)
    assert model.sampler_fitted
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    other = WaveVAE.from_config(config())
    other.load_state_dict(torch.load(path, weights_only=True))
    assert other.sampler_fitted
    generator = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    assert torch.equal(model.generate(2, generator=generator()), other.generate(2, generator=generator()))


def test_output_peaks_and_dc():
    model = WaveVAE.from_config(config())
    with torch.no_grad():  # a loud decoder with a DC offset
        model.decoder.head.bias.view(1, 2, -1)[:, 0] = 1.0
        model.decoder.head.bias.view(1, 2, -1)[:, 1] = 0.0
    # each decoded chunk is DC-free; a long sound joins them with crossfades, whose fades weigh
    # this decoder's impulse at every chunk's start unevenly: a DC under -60 dBFS is left there
    for audio, most_dc in (
        (model.generate(3, seconds=2.0, generator=torch.Generator().manual_seed(0)), 1e-3),
        (model.decode(torch.randn(3, model.code_size) * 10), 1e-4),
    ):
        assert torch.isfinite(audio).all()
        assert audio.abs().max() <= PEAK_LIMIT + 1e-6
        assert audio.mean(dim=-1).abs().max() < most_dc


def test_long_sounds_join_without_clicks():
    """Successive chunks join by an equal-power crossfade: no jump at the joins."""
    model = WaveVAE.from_config(config())
    audio = model.generate(2, seconds=2.0, generator=torch.Generator().manual_seed(1))[:, 0]
    jumps = audio.diff(dim=-1).abs()
    assert jumps.max() <= 4 * jumps.quantile(0.999) + 1e-6


def test_model_setting_selects_the_reference_model():
    assert TrainingConfig().model == "wave_vae"
    assert isinstance(wave_vae.sda_make_model(config()), WaveVAE)
    assert mel_vae.sda_make_model(config()) is None
    chosen = apply_overrides(config(), {"model": "mel_vae", "plugins": {"mel_vae": {"hidden_channels": 16}}})
    assert wave_vae.sda_make_model(chosen) is None
    assert isinstance(mel_vae.sda_make_model(chosen), mel_vae.MelVAE)
    with pytest.raises(ConfigError, match="model"):
        TrainingConfig(model="")
    with pytest.raises(ConfigError, match="model"):
        TrainingConfig(model="a b")


def test_a_checkpoint_with_another_component_count_loads():
    small = WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, "sampler": "mixture", "components": 2}}))
    small.fit_sampler(torch.randn(40, small.code_size))
    large = WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, "sampler": "mixture", "components": 6}}))
    large.load_state_dict(small.state_dict())
    assert large.sampler_weights.shape == (6,) and torch.equal(large.sampler_weights[2:], torch.zeros(4))
    tiny = WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, "sampler": "mixture", "components": 1}}))
    tiny.load_state_dict(small.state_dict())
    assert tiny.sampler_fitted


def test_code_kernels_sit_on_the_training_codes():
    """The default sampler: one kernel per training code, width = bandwidth x the codes' spread."""
    model = WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, "bandwidth": 0.5}}))
    spread = torch.linspace(1, 8, model.code_size)
    codes = torch.randn(30, model.code_size, generator=torch.Generator().manual_seed(0)) * spread
    assert model.sampler == "codes"
    model.fit_sampler(codes)
    assert int((model.sampler_weights > 0).sum()) == 30
    assert torch.equal(model.sampler_means[:30], codes)
    assert torch.allclose(model.sampler_stds[0], 0.5 * codes.std(0, unbiased=False) + 1e-4)
    cold = model.sample_latents(50, generator=torch.Generator().manual_seed(1), temperature=0.0)
    assert all(any(torch.equal(row, code) for code in codes) for row in cold)
    weights, means, _stds = code_kernels(torch.randn(CODE_CAPACITY + 40, 8), 0.3)
    assert weights.shape == (CODE_CAPACITY,) and means.shape == (CODE_CAPACITY, 8)
    assert abs(float(weights.sum()) - 1) < 1e-5


def test_a_checkpoint_from_before_the_envelope_path_loads():
    """State dicts saved before the decoder's envelope path load with the path at 0 (its start)."""
    model = WaveVAE.from_config(config())
    with torch.no_grad():
        model.decoder.to_envelope.weight.normal_()
    state = {key: value for key, value in model.state_dict().items() if "to_envelope" not in key}
    other = WaveVAE.from_config(config())
    other.load_state_dict(state)
    assert torch.equal(other.decoder.to_envelope.weight, torch.zeros_like(other.decoder.to_envelope.weight))
    latent = torch.randn(2, model.code_size)
    with torch.no_grad():
        model.decoder.to_envelope.weight.zero_()
    assert torch.allclose(model.decode(latent), other.decode(latent), atol=1e-6)


def test_the_phase_starts_as_each_bins_centre_frequency():
    """With no deviation the decoder's phase is what a sinusoid at the bin's centre frequency has
    in each centred STFT frame, so a steady partial needs no learned wrapping."""
    decoder = WaveVAE.from_config(config()).decoder
    n_fft, hop = decoder.istft.n_fft, decoder.istft.hop_length
    bin_index = 40
    t = torch.arange(decoder.length, dtype=torch.float64)
    sine = torch.cos(2 * math.pi * bin_index / n_fft * t)
    spectrum = torch.stft(sine, n_fft, hop, window=torch.hann_window(n_fft, dtype=torch.float64), return_complex=True)
    inner = slice(n_fft // hop, decoder.frames - n_fft // hop)  # frames away from the reflected edges
    difference = spectrum[bin_index, inner].angle() - decoder.centre_phase[bin_index, inner].double()
    assert torch.remainder(difference + math.pi, 2 * math.pi).sub(math.pi).abs().max() < 1e-4


def test_a_checkpoint_from_before_the_integrated_phase_decodes_its_phase_directly():
    model = WaveVAE.from_config(config())
    state = {key: value for key, value in model.state_dict().items() if not key.endswith("phase_layout")}
    older = WaveVAE.from_config(config())
    older.load_state_dict(state)
    assert model.decoder.integrated_phase and not older.decoder.integrated_phase
    newer = WaveVAE.from_config(config())
    newer.load_state_dict(model.state_dict())
    assert newer.decoder.integrated_phase
    latent = torch.randn(2, model.code_size)
    assert torch.allclose(model.decode(latent), newer.decode(latent), atol=1e-6)


def one_shots(model: WaveVAE, count: int, sounding: float, tail_db: float | None = None) -> torch.Tensor:
    """Decaying tones that sound for ``sounding`` of the chunk, then digital silence (or, with
    ``tail_db``, a faint tail at that level instead of the silence)."""
    audio = tone(count, model)
    end = int(sounding * model.chunk_samples)
    audio[..., end:] = 0.0 if tail_db is None else 10 ** (tail_db / 20) * torch.sign(audio[..., end:])
    return audio


def test_the_gate_silences_quiet_blocks_and_leaves_sound_alone():
    block = 100
    t = torch.arange(1000) / 1000
    audio = torch.zeros(1, 2, 1000)
    audio[0, 0, :300] = 0.5 * torch.sin(2 * math.pi * 50 * t[:300])  # sound in the first 3 blocks
    audio[0, 1, :] = 1e-5  # -100 dB everywhere on the other channel
    gate = torch.tensor(10 ** (-80 / 10))
    gated = gate_quiet_blocks(audio, gate, block)
    assert torch.equal(gated[..., :350], audio[..., :350])  # sounding blocks and half the held one: untouched
    assert torch.equal(gated[..., 500:], torch.zeros_like(gated[..., 500:]))  # exact digital silence
    ramp = gated[0, 1, 350:450] / 1e-5
    assert bool((ramp.diff() <= 1e-6).all()) and float(ramp[0]) > 0.9 and float(ramp[-1]) < 0.1  # a one-block fade
    assert torch.equal(gate_quiet_blocks(audio, torch.tensor(0.0), block), audio)  # threshold 0: no gate


def test_dc_is_removed_from_the_sound_and_the_silence_stays_silent():
    """A chunk that sounds, with a DC offset, then is digitally silent: the sounding part loses its
    DC and the silence stays exact zeros (subtracting the whole chunk's mean would lay a constant
    of -54 dBFS over it here)."""
    block = 100
    audio = torch.zeros(2, 1, 2000)
    t = torch.arange(400) / 1000
    audio[:, 0, :400] = 0.3 * torch.sin(2 * math.pi * 20 * t) + 0.01  # sound with a DC of 0.01
    finished = finish_audio(audio, torch.tensor(10 ** (-90 / 10)), block)
    assert torch.equal(finished[..., 600:], torch.zeros_like(finished[..., 600:]))
    assert abs(float(finished[..., :400].mean())) < 2e-4
    assert float((finished[..., :400] - (audio[..., :400] - 0.01)).abs().max()) < 2e-3
    # without a gate (data with no digital silence) the whole chunk's mean goes, as before
    plain = finish_audio(audio, None, block)
    assert abs(float(plain.mean())) < 1e-6


def test_a_decoded_one_shot_keeps_its_digital_silence():
    """Through the model: a decoder whose output has DC under its sound and silence after it
    decodes (with the gate the data set) to exact zeros after the sound."""
    model = WaveVAE.from_config(config())
    model.train()
    for _ in range(3):
        model.loss(one_shots(model, 4, 0.5), epoch=1)  # half of every chunk silent: a gate
    model.eval()
    half = model.chunk_samples // 2
    sound = one_shots(model, 2, 0.5)
    sound[..., :half] += 0.02
    model.decoder.forward = lambda latent: sound.clone()  # type: ignore[method-assign]
    decoded = model.decode(torch.zeros(2, model.code_size))
    tail = decoded[..., half + 2 * model.hop_length :]
    assert torch.equal(tail, torch.zeros_like(tail))
    assert abs(float(decoded[..., :half].mean())) < 1e-3


def test_the_gate_follows_the_training_data():
    """The gate threshold comes from the training chunks' block levels, counted by ``loss`` in
    training mode; data without digital silence gets no gate, and the level stays under the ceiling."""
    model = WaveVAE.from_config(config())
    assert float(model.gate_power()) == 0.0  # untrained: no gate
    model.eval()
    model.loss(one_shots(model, 4, 0.5), epoch=1)
    assert float(model.level_histogram.sum()) == 0.0  # validation batches are not counted
    model.train()
    model.loss(tone(4, model), epoch=1)  # sound everywhere: no silence, no gate
    assert float(model.level_histogram.sum()) == 4 * math.ceil(model.chunk_samples / model.hop_length)
    assert float(model.gate_power()) == 0.0
    for _ in range(3):
        model.loss(one_shots(model, 4, 0.5), epoch=1)
    level = 10 * math.log10(float(model.gate_power()))
    assert -100 <= level <= GATE_CEILING_DB
    # a faint -90 dB tail is part of the data: the gate opens below it
    faint = WaveVAE.from_config(config())
    for _ in range(2):
        faint.loss(one_shots(faint, 4, 0.4, tail_db=None), epoch=1)
        faint.loss(one_shots(faint, 4, 0.4, tail_db=-90.0), epoch=1)
    assert 10 * math.log10(float(faint.gate_power())) <= -90


def test_generated_sounds_are_silent_where_the_data_is():
    """Trained on one-shots that end in digital silence, the model's quiet output is gated to zero
    in ``decode``, ``reconstruct`` and ``generate``; the histogram travels in the state dict."""
    model = WaveVAE.from_config(config())
    model.train()
    model.loss(one_shots(model, 8, 0.5), epoch=1)
    with torch.no_grad():  # a decoder whose output is quiet everywhere (about -70 dB)
        model.decoder.head.bias.view(1, 2, -1)[:, 0] = -12.0
    ungated = WaveVAE.from_config(config())
    ungated.load_state_dict({**model.state_dict(), "level_histogram": torch.zeros_like(model.level_histogram)})
    latent = torch.randn(2, model.code_size)
    assert float(ungated.decode(latent).abs().max()) > 0  # without the histogram: no gate
    for audio in (model.decode(latent), model.generate(2, seconds=1.2), model.reconstruct(tone(2, model))):
        assert torch.equal(audio, torch.zeros_like(audio))
    restored = WaveVAE.from_config(config())
    restored.load_state_dict(model.state_dict())
    assert torch.equal(restored.level_histogram, model.level_histogram)
    old = {key: value for key, value in model.state_dict().items() if key != "level_histogram"}
    restored.load_state_dict(old)  # saved before the gate: loads, with no gate
    assert float(restored.gate_power()) == 0.0


def test_long_sounds_continue_as_the_training_files_did():
    """Fitted with successors, the codes sampler walks from a chunk's kernel to the next chunk's
    kernel of the same file, keeping its noise draw, and falls silent where the file ended."""
    model = WaveVAE.from_config(config())
    codes = torch.randn(5, model.code_size, generator=torch.Generator().manual_seed(0))
    model.fit_sampler(codes, successors=torch.tensor([1, 2, -1, 4, -1]))  # files 0-1-2 and 3-4
    assert model.continues_sounds
    latents, sounding = model.sound_latents(40, 4, generator=torch.Generator().manual_seed(1), temperature=0.0)
    chains = {0: [0, 1, 2], 1: [1, 2], 2: [2], 3: [3, 4], 4: [4]}
    for sound, alive in zip(latents, sounding, strict=True):
        start = next(i for i, code in enumerate(codes) if torch.equal(sound[0], code))
        chain = chains[start]
        assert alive.tolist() == [True] * len(chain) + [False] * (4 - len(chain))
        for piece, index in enumerate(chain):
            assert torch.equal(sound[piece], codes[index])
    # warm: each sound keeps one noise draw along its chain (the kernels share their stds)
    warm, alive = model.sound_latents(20, 3, generator=torch.Generator().manual_seed(2), temperature=1.0)
    cold, _ = model.sound_latents(20, 3, generator=torch.Generator().manual_seed(2), temperature=0.0)
    offsets = warm - cold
    for sound in range(20):
        if bool(alive[sound, 1]):
            torch.testing.assert_close(offsets[sound, 1], offsets[sound, 0])
    assert float(offsets.abs().mean()) > 0
    # a sound of a file's first chunk and silence after the file: the silent part is exact zeros
    model.fit_sampler(codes, successors=torch.tensor([-1, -1, -1, -1, -1]))
    assert not model.continues_sounds  # no successors at all: chunks drawn anew, as before
    model.fit_sampler(codes, successors=torch.tensor([-1, 0, -1, -1, -1]))
    audio = model.generate(6, seconds=1.6, generator=torch.Generator().manual_seed(3), temperature=0.0)
    quiet_tails = [bool(torch.equal(a[..., -1000:], torch.zeros_like(a[..., -1000:]))) for a in audio]
    assert any(quiet_tails)  # the sounds that started on a chunk without a successor end silent
    assert model.generate(0, seconds=1.6).shape == (0, 1, round(1.6 * model.sample_rate))


def test_successors_are_checked_and_kept_only_by_the_codes_sampler():
    model = WaveVAE.from_config(config())
    codes = torch.randn(4, model.code_size)
    model.fit_sampler(codes, successors=torch.tensor([1, 9, -1, -1]))  # 9 is no code: ignored
    assert not model.continues_sounds and int(model.sampler_next.max()) == -1
    model.fit_sampler(codes, successors=torch.tensor([1, 2]))  # the wrong length: ignored
    assert not model.continues_sounds
    mixture = WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, "sampler": "mixture"}}))
    mixture.fit_sampler(codes, successors=torch.tensor([1, 2, -1, -1]))
    assert not mixture.continues_sounds
    model.fit_sampler(codes, successors=torch.tensor([1, 2, 3, -1]))
    old = {key: value for key, value in model.state_dict().items() if key != "sampler_next"}
    restored = WaveVAE.from_config(config())
    restored.load_state_dict(old)  # saved before successors: loads, chunks drawn anew
    assert restored.sampler_fitted and not restored.continues_sounds
    restored.load_state_dict(model.state_dict())
    assert restored.continues_sounds and restored.sampler_next[:4].tolist() == [1, 2, 3, -1]


def test_local_codes_give_each_segment_a_code_that_shapes_its_own_time():
    """By default a chunk's latent is one code per DOWNSAMPLING frames (segment-major), and a
    segment's code shapes the magnitudes around its own frames, not the rest of the chunk."""
    model = WaveVAE.from_config(config())
    assert model.segments == model.reduced_frames > 1 and model.code_size == model.segments * 8
    single = WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, "local_codes": False}}))
    assert single.segments == 1 and single.code_size == 8
    with torch.no_grad():  # a decoder whose latent maps matter
        model.decoder.to_envelope.weight.normal_(std=0.5)
    latent = torch.randn(1, model.code_size, generator=torch.Generator().manual_seed(0))
    changed = latent.clone()
    changed[:, : model.latent_dim] += 3.0  # the first segment's code only
    with torch.no_grad():
        before, after = model.decoder.frames_of(latent), model.decoder.frames_of(changed)
    # per frame, how much the head's log-magnitudes and phase outputs moved
    moved = sum((b - a).abs().amax(dim=(0, 1, 2)) for a, b in zip(before, after, strict=True))
    reach = 2 * DOWNSAMPLING + 8  # the code's own segment and its neighbour, plus the k7 convolutions
    assert float(moved[:DOWNSAMPLING].min()) > 0.01  # the first segment's frames changed
    assert float(moved[reach:].max()) < 1e-5  # the frames beyond its reach did not
    assert model.decoder.frames > reach


def test_a_checkpoint_with_one_code_per_chunk_loads_in_its_own_layout():
    """Runs trained before local codes (one code per chunk) keep their layout whatever the
    setting says, and the reverse."""
    single = WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, "local_codes": False}}))
    single.fit_sampler(torch.randn(6, 8))
    model = WaveVAE.from_config(config())
    model.load_state_dict(single.state_dict())
    assert model.segments == 1 and model.code_size == 8 and model.sampler_fitted
    latent = torch.randn(2, 8)
    assert torch.equal(model.decode(latent), single.decode(latent))
    audio = tone(2, model)
    torch.testing.assert_close(model.encode(audio), single.encode(audio))
    generator = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    assert torch.equal(model.generate(2, generator=generator()), single.generate(2, generator=generator()))
    single.load_state_dict(WaveVAE.from_config(config()).state_dict())
    assert single.segments == single.reduced_frames and single.code_size == single.segments * 8


def test_the_encoder_hears_mel_bands_each_the_mean_of_its_bins():
    """By default the encoder's input is ``encoder_bands`` mel bands of the STFT magnitudes; a
    sine lands in the band around its frequency, at about the level its bins have."""
    model = WaveVAE.from_config(config(sample_rate=22050))
    assert model.input_bands == 96 < model.bins
    assert torch.allclose(model.input_basis.sum(dim=0), torch.ones(96))  # a mean per band
    every_bin = WaveVAE.from_config(config(sample_rate=22050, plugins={"wave_vae": {**SMALL, "encoder_bands": 0}}))
    assert every_bin.input_bands == every_bin.bins and every_bin.input_basis is None
    t = torch.arange(model.chunk_samples) / model.sample_rate
    sine = (0.5 * torch.sin(2 * math.pi * 1000.0 * t)).view(1, 1, -1)
    bands, bins = model.features(sine), every_bin.features(sine)
    assert bands.shape == (1, 96, model.frames) and bins.shape == (1, model.bins, model.frames)
    middle = model.frames // 2
    loudest = int(bands[0, :, middle].argmax())
    centre = float((model.input_basis[:, loudest] * torch.linspace(0, 11025, model.bins)).sum())
    assert abs(math.log2(centre / 1000.0)) < 0.1
    # the band's mean magnitude is within a few dB of the sine's own bins (log units / LOG_SCALE)
    level_db = lambda feature: 20 * math.log10(math.e) * float(feature) * wave_vae.LOG_SCALE  # noqa: E731
    assert abs(level_db(bands[0, loudest, middle]) - level_db(bins[0, :, middle].max())) < 10.0
    with pytest.raises(ConfigError, match="encoder_bands"):
        WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, "encoder_bands": -1}}))


def test_a_checkpoint_whose_encoder_hears_every_bin_loads_as_it_was_trained():
    """Runs trained before the mel-band input (every STFT bin) keep it whatever the setting
    says, and the reverse: the encoder's first layer and its basis follow the checkpoint."""
    every_bin = WaveVAE.from_config(config(plugins={"wave_vae": {**SMALL, "encoder_bands": 0}}))
    model = WaveVAE.from_config(config())
    assert model.input_bands < model.bins
    model.load_state_dict(every_bin.state_dict())
    assert model.input_bands == model.bins and model.input_basis is None
    audio = tone(2, model)
    torch.testing.assert_close(model.encode(audio), every_bin.encode(audio))
    torch.testing.assert_close(model.reconstruct(audio), every_bin.reconstruct(audio))
    banded = WaveVAE.from_config(config())
    every_bin.load_state_dict(banded.state_dict())
    assert every_bin.input_bands == banded.input_bands
    torch.testing.assert_close(every_bin.encode(audio), banded.encode(audio))


def test_a_run_trained_with_one_code_per_chunk_resumes_and_generates(tmp_path, monkeypatch):
    """A run folder from before local codes (its config does not name the setting) resumes with
    its own layout: the optimiser is made for the parameters the checkpoint has."""
    from sda_core.engine import Engine
    from sda_core.testing import fast_settings, write_audio_folder

    data = write_audio_folder(tmp_path / "data", count=6, durations=(0.6, 1.0))
    run = tmp_path / "run"
    tiny = {"hidden_channels": 16, "decoder_channels": 16, "decoder_layers": 1}
    settings = fast_settings(samples_per_epoch=8, max_epochs=1, plugins={"wave_vae": tiny})
    with monkeypatch.context() as older:  # an older release: one code per chunk, every bin, no settings for them
        defaults = wave_vae._settings
        older.setattr(
            wave_vae, "_settings", lambda config: {**defaults(config), "local_codes": False, "encoder_bands": 0}
        )
        Engine(disable=["progress"]).train(data, run, settings)
    saved = json.loads((run / "config.json").read_text())["plugins"]["wave_vae"]
    assert "local_codes" not in saved and "encoder_bands" not in saved
    result = Engine(disable=["progress"]).train(data, run, {"max_epochs": 2}, resume=True)
    assert result.epochs_completed == 2
    model, loaded, _ = load_trained_model(Engine(disable=["progress"]), run)
    assert "local_codes" not in loaded.plugin_settings("wave_vae")
    assert model.segments == 1 and model.code_size == loaded.latent_dim
    assert model.input_bands == model.bins
    assert model.generate(1, seconds=0.5).shape == (1, 1, round(0.5 * model.sample_rate))
