"""The reference model: shapes, loss terms, KL warm-up and free bits, checkpoints, generation, learning."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest
import torch

from sda_core import Engine, hookimpl
from sda_core.config import RegularizationConfig, TrainingConfig
from sda_core.errors import ConfigError
from sda_core.training.model import CodeFitting, GenerativeModel, objective_of
from sda_plugins import mel_vae
from sda_plugins.mel_vae import MelVAE, fft_size_for, kl_weight_at, peak_limit

LOSS_KEYS = {"loss", "objective", "recon", "kl", "kl_nats"}


@pytest.fixture(autouse=True)
def _one_thread():
    """Run torch on one thread: when other processes load the cores (a parallel test run, data
    workers), two intra-op threads make these small convolutions 5 to 20 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tones(count: int, seed: int, *, sample_rate: int = 22050, channels: int = 1, seconds: float = 1.0) -> torch.Tensor:
    """Harmonic tones (8 partials, 1/k amplitudes) with exponential decays, random pitches 110-880 Hz.

    Returns (count, channels, samples); the channels of a stereo tone differ in level.
    """
    generator = torch.Generator().manual_seed(seed)
    samples = round(seconds * sample_rate)
    t = torch.arange(samples, dtype=torch.float64) / sample_rate
    items = []
    for _ in range(count):
        f0 = 110.0 * 2 ** (3 * torch.rand(1, generator=generator).item())
        decay = 2.0 + 6.0 * torch.rand(1, generator=generator).item()
        tone = sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in range(1, 9) if f0 * k < sample_rate / 2)
        tone = 0.5 * tone / tone.abs().max() * torch.exp(-decay * t)
        levels = torch.linspace(1.0, 0.6, channels, dtype=torch.float64)[:, None]
        items.append(levels * tone)
    return torch.stack(items).float()


def config(**changes) -> TrainingConfig:
    return TrainingConfig(**changes)


def model_for(cfg: TrainingConfig | None = None, seed: int = 0) -> MelVAE:
    torch.manual_seed(seed)
    return MelVAE.from_config(cfg or config())


def set_posterior(model: MelVAE, mean: float, logvar: float = 0.0) -> None:
    """Make the encoder answer the same posterior N(mean, exp(logvar)) in every dimension."""
    with torch.no_grad():
        model.to_posterior.weight.zero_()
        model.to_posterior.bias[: model.latent_dim] = mean
        model.to_posterior.bias[model.latent_dim :] = logvar


# -- shapes -------------------------------------------------------------------------------------

SHAPE_CONFIGS = {
    "mono-22k": config(),
    "stereo-22k": config(channels=2),
    "mono-44k": config(sample_rate=44100),
    "stereo-48k-half-second": config(sample_rate=48000, channels=2, chunk_seconds=0.5, latent_dim=8),
}


@pytest.mark.parametrize("cfg", SHAPE_CONFIGS.values(), ids=SHAPE_CONFIGS.keys())
def test_shapes_of_every_method(cfg: TrainingConfig) -> None:
    model = model_for(cfg)
    samples = round(cfg.chunk_seconds * cfg.sample_rate)
    audio = tones(3, 1, sample_rate=cfg.sample_rate, channels=cfg.channels, seconds=cfg.chunk_seconds)
    assert isinstance(model, GenerativeModel)
    assert (model.sample_rate, model.channels, model.chunk_samples) == (cfg.sample_rate, cfg.channels, samples)

    losses = model.loss(audio, epoch=1)
    assert set(losses) == LOSS_KEYS
    for name, value in losses.items():
        assert value.shape == (), name
        assert torch.isfinite(value), name
    losses["loss"].backward()

    latent = model.encode(audio)
    assert latent.shape == (3, cfg.latent_dim)
    decoded = model.decode(latent)
    assert decoded.shape == (3, cfg.channels, samples)
    assert model.reconstruct(audio).shape == (3, cfg.channels, samples)
    assert model.generate(2, seconds=cfg.chunk_seconds).shape == (2, cfg.channels, samples)


def test_the_mel_transform_scales_with_the_sample_rate() -> None:
    assert [fft_size_for(rate) for rate in (11025, 16000, 22050, 44100, 48000, 96000)] == [
        512,
        1024,
        1024,
        2048,
        2048,
        4096,
    ]
    reference, double = model_for(config()), model_for(config(sample_rate=44100))
    assert (reference.n_fft, reference.hop_length, reference.n_mels, reference.frames) == (1024, 256, 64, 87)
    assert (double.n_fft, double.hop_length, double.frames) == (2048, 512, 87)
    # The transform is a submodule, so it follows the model's device and dtype.
    assert isinstance(reference.mel, torch.nn.Module) and reference.mel in list(reference.modules())


def test_the_parameter_count_is_modest() -> None:
    count = sum(parameter.numel() for parameter in model_for().parameters())
    assert 500_000 <= count <= 2_000_000


def test_wrong_shapes_are_refused_with_a_clear_message() -> None:
    model = model_for()
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        model.loss(torch.zeros(2, 22050), epoch=1)
    with pytest.raises(ValueError, match="22050"):
        model.encode(torch.zeros(2, 1, 1000))
    with pytest.raises(ValueError, match="channels"):
        model.encode(torch.zeros(2, 2, 22050))
    with pytest.raises(ValueError, match=r"\(batch, 32\)"):
        model.decode(torch.zeros(2, 16))
    with pytest.raises(ValueError, match="seconds"):
        model.generate(1, seconds=0.0)


# -- the loss -----------------------------------------------------------------------------------


def test_loss_terms_add_up() -> None:
    cfg = config(regularization=RegularizationConfig(kl_weight=0.5, kl_warmup_epochs=4, free_bits=0.1))
    model = model_for(cfg).eval()
    set_posterior(model, mean=1.0)
    losses = model.loss(tones(4, 3), epoch=2)
    assert all(torch.isfinite(value) for value in losses.values())
    assert losses["recon"] > 0 and losses["kl"] > 0
    torch.testing.assert_close(losses["loss"], losses["recon"] + 0.25 * losses["kl"])
    torch.testing.assert_close(losses["objective"], losses["recon"] + 0.5 * losses["kl"])
    assert objective_of(losses) is losses["objective"]


def test_kl_warm_up_grows_the_loss_weight_and_leaves_the_objective_alone() -> None:
    cfg = config(regularization=RegularizationConfig(kl_weight=0.8, kl_warmup_epochs=5, free_bits=0.0))
    model = model_for(cfg).eval()  # eval: the latent is the posterior mean, so epochs compare exactly
    set_posterior(model, mean=1.5)
    audio = tones(2, 4)
    weights, objectives = [], []
    for epoch in range(1, 9):
        losses = model.loss(audio, epoch=epoch)
        weights.append(((losses["loss"] - losses["recon"]) / losses["kl"]).item())
        objectives.append(losses["objective"].item())
    assert weights == pytest.approx([0.16, 0.32, 0.48, 0.64, 0.8, 0.8, 0.8, 0.8], rel=1e-4)
    assert objectives == pytest.approx([objectives[0]] * 8, rel=1e-6)
    assert kl_weight_at(0, 0.8, 5) == 0.0
    assert kl_weight_at(1, 0.8, 0) == 0.8  # no warm-up: the final weight from the first epoch


def test_free_bits_make_a_posterior_within_them_free() -> None:
    cfg = config(latent_dim=8, regularization=RegularizationConfig(free_bits=0.1))
    model = model_for(cfg).eval()
    audio = tones(2, 5)
    values = model.channels * model.n_mels * model.frames

    set_posterior(model, mean=0.4)  # KL per dimension: 0.4**2 / 2 = 0.08 nats, within 0.1
    model.zero_grad()
    losses = model.loss(audio, epoch=100)
    assert losses["kl"].item() == 0.0
    assert losses["kl_nats"].item() == pytest.approx(8 * 0.08, rel=1e-5)
    torch.testing.assert_close(losses["loss"], losses["recon"])
    losses["kl"].backward()
    assert model.to_posterior.bias.grad is None or not model.to_posterior.bias.grad.any()

    set_posterior(model, mean=1.0)  # 0.5 nats per dimension, 0.4 above the free bits
    losses = model.loss(audio, epoch=100)
    assert losses["kl"].item() == pytest.approx(8 * 0.4 / values, rel=1e-5)


# -- weights ------------------------------------------------------------------------------------


def test_state_dict_round_trips_through_a_weights_only_load(tmp_path: Path) -> None:
    cfg = config(channels=2)
    trained, fresh = model_for(cfg, seed=1), model_for(cfg, seed=2)
    path = tmp_path / "model.pt"
    torch.save({"model": trained.state_dict(), "config": cfg.to_dict()}, path)
    payload = torch.load(path, weights_only=True)
    rebuilt = MelVAE.from_config(TrainingConfig.from_dict(payload["config"]))
    rebuilt.load_state_dict(payload["model"])
    audio = tones(2, 6, channels=2)
    assert not torch.equal(fresh.encode(audio), trained.encode(audio))
    torch.testing.assert_close(rebuilt.encode(audio), trained.encode(audio))
    trained.eval(), rebuilt.eval()
    torch.testing.assert_close(rebuilt.loss(audio, epoch=3), trained.loss(audio, epoch=3))


# -- audio out ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0.5, 1.0, 2.3])
def test_generate_gives_the_exact_length(seconds: float) -> None:
    model = model_for()
    audio = model.generate(2, seconds=seconds, generator=torch.Generator().manual_seed(0))
    assert audio.shape == (2, 1, round(seconds * 22050))
    assert torch.isfinite(audio).all() and audio.abs().max() <= 1.0


def test_generate_is_deterministic_with_a_seeded_generator() -> None:
    model = model_for(config(channels=2)).train()  # dropout must not make it random
    first = model.generate(2, seconds=2.3, generator=torch.Generator().manual_seed(7))
    again = model.generate(2, seconds=2.3, generator=torch.Generator().manual_seed(7))
    other = model.generate(2, seconds=2.3, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, other)
    assert model.training  # the mode is restored


def test_a_short_sound_is_the_beginning_of_one_decoded_chunk() -> None:
    model = model_for()
    latent = torch.randn(3, model.latent_dim, generator=torch.Generator().manual_seed(3))
    chunks = model.decode(latent)
    short = model.generate(3, seconds=0.5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(short, chunks[..., : round(0.5 * 22050)])


def test_long_sounds_join_chunks_with_equal_power_crossfades() -> None:
    model = model_for()
    chunk, total = model.chunk_samples, round(1.5 * 22050)
    fade = round(mel_vae.CROSSFADE_SECONDS * 22050)
    step = chunk - fade
    latent = torch.randn(2, model.latent_dim, generator=torch.Generator().manual_seed(4))
    first, second = model.decode(latent)
    ramp = (torch.arange(fade) + 0.5) / fade
    fade_out, fade_in = torch.cos(ramp * math.pi / 2), torch.sin(ramp * math.pi / 2)
    assert torch.allclose(fade_out.square() + fade_in.square(), torch.ones(fade))  # equal power
    expected = torch.zeros(1, step + chunk)
    expected[:, :chunk] += torch.cat([first[:, :step], first[:, step:] * fade_out], dim=1)
    expected[:, step:] += torch.cat([second[:, :fade] * fade_in, second[:, fade:]], dim=1)
    joined = model.generate(1, seconds=1.5, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(joined, peak_limit(expected[None, :, :total]))


def test_decoding_is_finite_and_peak_limited_even_far_from_the_prior() -> None:
    model = model_for()
    latent = torch.cat([torch.randn(2, 32), 1000 * torch.randn(2, 32)])
    audio = model.decode(latent)
    assert torch.isfinite(audio).all()
    assert audio.abs().max() <= 1.0
    assert model.generate(0, seconds=1.0).shape == (0, 1, 22050)


def test_the_decoding_path_keeps_the_spectrum() -> None:
    """log-mel -> pseudo-inverse -> Griffin-Lim -> log-mel comes back close where the sound is.

    (Near the -80 dB floor it does not: Griffin-Lim leaves low-level smearing there.)
    """
    model = model_for()
    audio = tones(2, 8)
    features = model.features(audio)
    resynthesised = model.features_to_audio(features)
    assert resynthesised.shape == audio.shape
    again = model.features(resynthesised)
    loud = features > 0  # mel bands above -43 dB re full scale: the partials and their decays
    assert loud.float().mean() > 0.05
    assert (again - features)[loud].square().mean() < 0.05
    assert torch.corrcoef(torch.stack([features.flatten(), again.flatten()]))[0, 1] > 0.8


# -- learning -----------------------------------------------------------------------------------


def test_the_model_learns() -> None:
    """A short AdamW loop on 8 synthetic tones halves the validation objective on held-out tones."""
    model = model_for(config())
    train, validation = tones(8, 11), tones(4, 12)

    def validation_objective() -> float:
        model.eval()
        with torch.no_grad():
            value = model.loss(validation, epoch=1)["objective"].item()
        model.train()
        return value

    before = validation_objective()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    started = time.perf_counter()
    for step in range(1, 201):  # one step per epoch: the KL warms up over the first 10
        optimiser.zero_grad(set_to_none=True)
        model.loss(train, epoch=step)["loss"].backward()
        optimiser.step()
    after = validation_objective()
    print(f"validation objective {before:.4f} -> {after:.4f} in {time.perf_counter() - started:.1f} s")
    assert after <= 0.5 * before
    # More than an average spectrogram: each training chunk's latent brings back that chunk.
    model.eval()
    with torch.no_grad():
        features = model.features(train)
        recon = model.loss(train, epoch=1)["recon"]
    average = (features - features.mean(dim=0, keepdim=True)).square().mean()
    assert recon < 0.8 * average


def test_fitted_codes_decode_closer_log_mels_than_the_encoders() -> None:
    model = model_for(config(sample_rate=8000, latent_dim=8, plugins={"mel_vae": {"fit_steps": 20}}))
    assert isinstance(model, CodeFitting) and model.fit_steps == 20
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(1, 21):
        optimiser.zero_grad(set_to_none=True)
        model.loss(tones(8, 11, sample_rate=8000), epoch=step)["loss"].backward()
        optimiser.step()
    optimiser.zero_grad(set_to_none=True)
    model.eval()
    unseen = tones(3, 12, sample_rate=8000)
    codes = model.encode(unseen)
    with torch.no_grad():
        fitted = model.fit_codes(unseen)
        target = model.features(unseen)

    def errors(latents: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (model.decode_features(latents) - target).square().mean(dim=(1, 2))

    assert bool((errors(fitted) < errors(codes)).all())
    assert all(parameter.grad is None for parameter in model.parameters())
    torch.testing.assert_close(model.fit_codes(unseen[2:]), fitted[2:], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.fit_codes(unseen, steps=0), codes)


# -- the plugin ---------------------------------------------------------------------------------


def test_the_engine_builds_it_through_its_entry_point() -> None:
    engine = Engine()
    assert "mel_vae" in {info.name for info in engine.plugin_infos()}
    cfg = config(latent_dim=8, regularization=RegularizationConfig(dropout=0.3), model="mel_vae")
    model = engine.make_model(cfg)
    assert isinstance(model, MelVAE)
    assert model.latent_dim == 8
    assert {module.p for module in model.modules() if isinstance(module, torch.nn.Dropout)} == {0.3}


def test_a_third_party_model_overrides_it() -> None:
    class Mine:
        name = "my_model"

        @hookimpl
        def sda_make_model(self, config):
            return torch.nn.Identity()

    assert isinstance(Engine(plugins=[Mine()]).make_model(config()), torch.nn.Identity)


def test_plugin_settings_are_read_and_checked() -> None:
    small = model_for(config(plugins={"mel_vae": {"hidden_channels": 64, "griffin_lim_iters": 4}}))
    assert small.encoder[0].out_channels == 64 and small.griffin_lim.n_iter == 4
    with pytest.raises(ConfigError, match="hidden_channel"):
        MelVAE.from_config(config(plugins={"mel_vae": {"hidden_channel": 64}}))
    with pytest.raises(ConfigError, match="griffin_lim_iters"):
        MelVAE.from_config(config(plugins={"mel_vae": {"griffin_lim_iters": 0}}))


# -- docs/model.md ------------------------------------------------------------------------------

MODEL_MD = (Path(__file__).resolve().parent.parent / "docs" / "model.md").read_text(encoding="utf-8")


def test_the_documented_minimal_model_fulfils_the_interface() -> None:
    (source,) = [
        block
        for block in re.findall(r"^```python\n(.*?)^```", MODEL_MD, re.MULTILINE | re.DOTALL)
        if "class TinyAutoencoder" in block
    ]
    namespace: dict = {}
    exec(compile(source, "docs/model.md", "exec"), namespace)  # noqa: S102 - our own docs
    cfg = config(channels=2, chunk_seconds=0.1, latent_dim=4)
    model = namespace["sda_make_model"](cfg)
    assert isinstance(model, GenerativeModel)
    audio = torch.zeros(3, 2, 2205)
    assert set(model.loss(audio, epoch=1)) >= {"loss"}
    assert model.reconstruct(audio).shape == audio.shape
    assert model.generate(2, seconds=0.25, generator=torch.Generator().manual_seed(0)).shape == (2, 2, 5512)


def test_the_documented_parameter_counts_are_true() -> None:
    model = model_for()
    parts = {
        "encoder": model.encoder,
        "posterior": model.to_posterior,
        "latent in": model.from_latent,
        "decoder": model.decoder,
        "**total**": model,
    }
    for row, module in parts.items():
        count = sum(parameter.numel() for parameter in module.parameters())
        assert re.search(rf"^\| {re.escape(row)} \|.*\| \**{count:,}\** \|$", MODEL_MD, re.MULTILINE), (row, count)
