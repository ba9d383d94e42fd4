"""The augmentation pipeline (sda_core.data.augmentation) and the reference transforms (sda_plugins.augmentations)."""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass

import attrs
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sda_core import ConfigError, Engine, OverfittingPreset, PluginError, TrainingConfig, hookimpl
from sda_core.data.augmentation import AugmentationPipeline, Transform, check_transform
from sda_plugins import augmentations as ref
from sda_plugins.adaptive_presets import get_adaptive_config

SR = 22050
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def always(transforms):
    """The same transforms, each with probability 1 (so every one is applied)."""
    import dataclasses

    return [dataclasses.replace(t, probability=1.0) for t in transforms]


def full_pipeline(
    strength: float = 1.0, sample_rate: int = SR, probability: float = 1.0, **kwargs
) -> AugmentationPipeline:
    """Every reference transform, each always applied (to the chunks the pipeline augments)."""
    config = TrainingConfig(
        augmentation_strength=strength,
        sample_rate=sample_rate,
        plugins={"augmentations": {"enabled": list(ref.TRANSFORM_NAMES)}},
    )
    return AugmentationPipeline(
        always(ref.reference_transforms(config)), probability=probability, sample_rate=sample_rate, **kwargs
    )


def chunk(channels: int = 1, length: int = SR, seed: int = 0, amplitude: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length) / SR
    tone = np.sin(2 * np.pi * 440.0 * t) * amplitude
    return (tone + rng.standard_normal((channels, length)) * amplitude * 0.1).astype(np.float32)


# -- a third-party plugin -------------------------------------------------------------------


@dataclass(frozen=True)
class DCOffset:
    """A third-party transform: add a constant."""

    offset: float = 0.25
    probability: float = 1.0
    name: str = "dc_offset"

    def sample(self, rng, sample_rate):
        return {"offset": float(rng.uniform(0.5, 1.0) * self.offset)}

    def apply(self, audio, params, sample_rate):
        audio += np.float32(params["offset"])
        return audio


class DCOffsetPlugin:
    """Contributes DCOffset through the hook, as a package on PyPI would."""

    @hookimpl
    def sda_augmentations(self, config):
        return [DCOffset()]


@dataclass(frozen=True)
class Lengthen:
    probability: float = 1.0
    name: str = "lengthen"
    channels: int = 0

    def sample(self, rng, sample_rate):
        return {}

    def apply(self, audio, params, sample_rate):
        extra = np.ones((audio.shape[0] + self.channels, 10), dtype=np.float32)
        return np.concatenate([np.pad(audio, ((0, self.channels), (0, 0))), extra], axis=1)


class Unpicklable:
    probability = 1.0
    name = "unpicklable"

    def __init__(self):
        self.fn = lambda x: x

    def sample(self, rng, sample_rate):
        return {}

    def apply(self, audio, params, sample_rate):
        return audio


class PluginOf:
    def __init__(self, *transforms):
        self.transforms = list(transforms)

    @hookimpl
    def sda_augmentations(self, config):
        return self.transforms


# -- shape, dtype, finiteness ---------------------------------------------------------------


@FAST
@given(
    channels=st.integers(1, 3),
    length=st.integers(1, 6000),
    strength=st.floats(0.0, 1.0),
    sample_rate=st.sampled_from([4000, 16000, 22050, 44100, 48000]),
    epoch=st.integers(0, 1000),
    index=st.integers(0, 10**6),
    amplitude=st.sampled_from([0.0, 1e-6, 0.5, 1.0, 30.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_shape_dtype_length_and_finiteness_are_preserved(
    channels, length, strength, sample_rate, epoch, index, amplitude, seed
):
    audio = (np.random.default_rng(seed).standard_normal((channels, length)) * amplitude).astype(np.float32)
    original = audio.copy()
    for pipeline in (
        full_pipeline(strength, sample_rate),
        AugmentationPipeline(
            ref.reference_transforms(TrainingConfig(augmentation_strength=strength)), sample_rate=sample_rate
        ),
    ):
        out = pipeline(audio, epoch=epoch, index=index)
        assert out.shape == audio.shape
        assert out.dtype == np.float32
        assert out.flags.c_contiguous
        assert np.isfinite(out).all()
        assert np.abs(out).max(initial=0.0) <= 1.0 or out is audio
        np.testing.assert_array_equal(audio, original)  # the input is never modified


@FAST
@given(
    audio=arrays(np.float32, st.tuples(st.integers(1, 2), st.integers(1, 2000)), elements=st.floats(width=32)),
    index=st.integers(0, 1000),
)
def test_non_finite_or_huge_input_gives_finite_clipped_output(audio, index):
    out = full_pipeline(1.0)(audio, epoch=0, index=index)
    assert out.shape == audio.shape and out.dtype == audio.dtype
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0


def test_one_dimensional_input_float64_and_torch_tensors():
    pipeline = full_pipeline(0.7)
    mono = chunk()[0]
    out = pipeline(mono, epoch=1, index=2)
    assert out.shape == mono.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, pipeline(mono[np.newaxis], epoch=1, index=2)[0])
    as64 = pipeline(chunk().astype(np.float64), epoch=1, index=2)
    assert as64.dtype == np.float64
    tensor = pipeline(torch.from_numpy(chunk()), epoch=1, index=2)
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    np.testing.assert_array_equal(tensor.numpy(), pipeline(chunk(), epoch=1, index=2))


def test_empty_audio_is_returned_as_is():
    audio = np.zeros((1, 0), dtype=np.float32)
    assert full_pipeline()(audio, epoch=0, index=0) is audio


# -- determinism ----------------------------------------------------------------------------


@FAST
@given(epoch=st.integers(0, 10**4), index=st.integers(0, 10**6), seed=st.integers(0, 2**31))
def test_an_item_depends_only_on_seed_epoch_and_index(epoch, index, seed):
    audio = chunk(2, 3000)
    first = full_pipeline(seed=seed)(audio, epoch=epoch, index=index)
    fresh = full_pipeline(seed=seed)
    fresh(audio, epoch=epoch + 1, index=index + 1)  # call order does not matter
    np.testing.assert_array_equal(first, fresh(audio, epoch=epoch, index=index))
    assert not np.array_equal(first, fresh(audio, epoch=epoch, index=index + 1))
    assert not np.array_equal(first, fresh(audio, epoch=epoch + 1, index=index))
    assert not np.array_equal(first, full_pipeline(seed=seed + 1)(audio, epoch=epoch, index=index))


def test_rng_is_the_documented_generator():
    pipeline = full_pipeline(seed=7)
    assert pipeline.rng(3, 9).random() == np.random.default_rng([7, 3, 9]).random()


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_epoch_and_index_must_be_non_negative_integers(bad):
    with pytest.raises(ValueError):
        full_pipeline()(chunk(), epoch=bad, index=0)
    with pytest.raises(ValueError):
        AugmentationPipeline([]).parameters(0, bad)


# -- probabilities --------------------------------------------------------------------------


def _binomial_ok(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("probability", [0.5, 0.2])
def test_a_chunk_is_augmented_with_the_pipeline_probability(probability):
    pipeline = AugmentationPipeline([ref.Gain(probability=1.0)], probability=probability, seed=42)
    n = 4000
    augmented = sum(bool(pipeline.parameters(0, index)) for index in range(n))
    assert _binomial_ok(augmented, n, probability)
    assert 0.5 * n - 160 <= sum(bool(pipeline.parameters(3, i)) for i in range(n)) * 0.5 / probability <= 0.5 * n + 160


def test_the_seed_probability_is_one_half():
    assert AugmentationPipeline([]).probability == 0.5
    assert TrainingConfig().augmentation_probability == 0.5
    pipeline = AugmentationPipeline.from_engine(Engine(plugins=[ref], load_entrypoints=False), get_adaptive_config(10))
    assert pipeline.probability == 0.5
    n = 4000
    gated = sum(pipeline.rng(1, i).random() < 0.5 for i in range(n))
    assert _binomial_ok(gated, n, 0.5)


def test_each_transform_has_its_own_probability():
    transforms = [ref.Gain(probability=0.8), ref.PolarityFlip(probability=0.1)]
    pipeline = AugmentationPipeline(transforms, probability=1.0)
    n = 3000
    plans = [dict(pipeline.parameters(0, i)) for i in range(n)]
    assert _binomial_ok(sum("gain" in plan for plan in plans), n, 0.8)
    assert _binomial_ok(sum("polarity" in plan for plan in plans), n, 0.1)


# -- inspectable parameters -----------------------------------------------------------------


def test_gain_only_pipeline_applies_exactly_the_reported_gain():
    pipeline = AugmentationPipeline([ref.Gain(min_db=-6, max_db=6, probability=1.0)], probability=0.5)
    audio = chunk(amplitude=0.05)
    applied = 0
    for index in range(40):
        out = pipeline(audio, epoch=2, index=index)
        params = pipeline.parameters(2, index)
        if not params:
            assert out is audio
            continue
        applied += 1
        [(name, values)] = params
        assert name == "gain" and -6 <= values["gain_db"] <= 6
        np.testing.assert_allclose(out / audio, 10 ** (values["gain_db"] / 20), rtol=1e-5)
    assert 5 < applied < 35


@FAST
@given(index=st.integers(0, 10**6), strength=st.floats(0.05, 1.0))
def test_parameters_replayed_through_the_transforms_give_the_output(index, strength):
    pipeline = AugmentationPipeline(
        ref.reference_transforms(TrainingConfig(augmentation_strength=strength)), probability=1.0
    )
    audio = chunk(2, 4000)
    out = pipeline(audio, epoch=5, index=index)
    by_name = {t.name: t for t in pipeline.transforms}
    replay = audio.copy()
    for name, params in pipeline.parameters(5, index):
        replay = by_name[name].apply(replay, params, SR)
    np.testing.assert_array_equal(out, np.clip(replay, -1, 1))


def test_parameters_are_json_compatible_and_name_the_transforms():
    import json

    pipeline = full_pipeline()
    params = pipeline.parameters(0, 0)
    assert [name for name, _ in params] == list(ref.TRANSFORM_NAMES)
    json.dumps(params)
    assert set(dict(params)["speed"]) == {"semitones", "speed", "resample_from", "resample_to", "offset"}


# -- pickling and DataLoader workers --------------------------------------------------------


def test_the_pipeline_pickles_and_the_copy_gives_identical_output():
    pipeline = AugmentationPipeline.from_engine(Engine(plugins=[ref], load_entrypoints=False), get_adaptive_config(10))
    copy = pickle.loads(pickle.dumps(pipeline))
    assert copy == pipeline and copy is not pipeline
    audio = chunk(2)
    for index in range(20):
        np.testing.assert_array_equal(pipeline(audio, epoch=1, index=index), copy(audio, epoch=1, index=index))


class AugmentedItems(torch.utils.data.Dataset):
    """A tiny dataset applying the pipeline with (epoch, index), as the chunk dataset does."""

    def __init__(self, pipeline: AugmentationPipeline, count: int = 12) -> None:
        self.pipeline = pipeline
        self.items = [chunk(1, 2048, seed=i) for i in range(count)]
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        audio = self.pipeline(self.items[index], epoch=self.epoch, index=index)
        return torch.from_numpy(np.ascontiguousarray(audio))


def test_items_are_identical_with_zero_and_two_workers():
    pipeline = full_pipeline(0.8, probability=0.5)
    batches = {}
    for workers in (0, 2):
        dataset = AugmentedItems(pipeline)
        dataset.epoch = 3
        loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=workers, shuffle=False)
        batches[workers] = torch.cat(list(loader))
    assert torch.equal(batches[0], batches[2])
    originals = torch.from_numpy(np.stack(AugmentedItems(pipeline).items))
    assert not torch.equal(batches[0], originals)  # something was augmented


# -- strength and presets -------------------------------------------------------------------


def _ranges(config: TrainingConfig) -> dict[str, float]:
    every = attrs.evolve(config, plugins={"augmentations": {"enabled": list(ref.TRANSFORM_NAMES)}})
    t = {x.name: x for x in ref.reference_transforms(every)}
    return {
        "gain": t["gain"].max_db,
        "noise": -t["noise"].min_snr_db,
        "lowpass": t["filter"].lowpass_octaves,
        "highpass": t["filter"].highpass_max_hz,
        "tilt": t["filter"].max_tilt_db,
        "shift": t["shift"].max_seconds,
        "speed": t["speed"].max_semitones,
    }


def test_conservative_augments_more_than_balanced_more_than_aggressive():
    conservative, balanced, aggressive = (_ranges(get_adaptive_config(n)) for n in (10, 50, 300))
    assert get_adaptive_config(10).preset is OverfittingPreset.CONSERVATIVE
    for key in conservative:
        assert conservative[key] > balanced[key] > aggressive[key], key
    assert conservative["gain"] == pytest.approx(6.0) and conservative["speed"] == pytest.approx(2.0)


def test_strength_zero_is_the_identity():
    config = TrainingConfig(augmentation_strength=0.0)
    assert ref.reference_transforms(config) == []
    engine = Engine(plugins=[ref, DCOffsetPlugin()], load_entrypoints=False)
    pipeline = AugmentationPipeline.from_engine(engine, config)
    assert len(pipeline) == 0 and not pipeline.enabled
    audio = chunk()
    for index in range(20):
        assert pipeline(audio, epoch=0, index=index) is audio
        assert pipeline.parameters(0, index) == []


def test_an_empty_pipeline_is_the_identity():
    audio = chunk()
    pipeline = AugmentationPipeline([], probability=1.0)
    assert all(pipeline(audio, epoch=0, index=i) is audio for i in range(10))


# -- engine and plugins ---------------------------------------------------------------------


def test_a_real_engine_collects_the_reference_transforms():
    engine = Engine()
    assert "augmentations" in {info.name for info in engine.plugin_infos()}
    pipeline = AugmentationPipeline.from_engine(engine, get_adaptive_config(50))
    assert set(ref.DEFAULT_ENABLED) <= set(pipeline.names) and "noise" not in pipeline.names
    assert pipeline.seed == 42 and pipeline.sample_rate == 22050 and pipeline.probability == 0.5
    assert all(isinstance(t, Transform) for t in pipeline.transforms)


def test_a_third_party_plugin_adds_a_transform_that_is_applied():
    engine = Engine(plugins=[DCOffsetPlugin()])
    config = get_adaptive_config(50, preset="balanced")
    pipeline = AugmentationPipeline.from_engine(engine, config)
    assert "dc_offset" in pipeline.names and "gain" in pipeline.names
    audio = np.zeros((1, 1000), dtype=np.float32)
    hits = 0
    for index in range(40):
        params = dict(pipeline.parameters(0, index))
        out = pipeline(audio, epoch=0, index=index)
        if "dc_offset" in params:
            hits += 1
            assert out.mean() != 0.0  # silence plus an offset (gain, polarity, shift may follow)
        elif not params:
            assert out is audio
    assert hits > 5
    copy = pickle.loads(pickle.dumps(pipeline))
    np.testing.assert_array_equal(copy(audio, epoch=0, index=3), pipeline(audio, epoch=0, index=3))


def test_a_disabled_reference_plugin_leaves_only_third_party_transforms():
    engine = Engine(plugins=[DCOffsetPlugin()], disable=["augmentations"])
    pipeline = AugmentationPipeline.from_engine(engine, TrainingConfig())
    assert "gain" not in pipeline.names and "dc_offset" in pipeline.names


def test_bad_transforms_are_reported_by_name():
    with pytest.raises(TypeError, match="unpicklable"):
        AugmentationPipeline.from_engine(
            Engine(plugins=[PluginOf(Unpicklable())], load_entrypoints=False), TrainingConfig()
        )
    with pytest.raises(TypeError, match="sample"):
        AugmentationPipeline([object()])
    with pytest.raises(ValueError, match="probability"):
        check_transform(DCOffset(probability=2.0))
    with pytest.raises(ValueError):
        AugmentationPipeline([], probability=1.5)


def test_a_transform_that_changes_the_length_is_fitted_back_other_shape_changes_raise():
    audio = chunk(2, 500)
    out = AugmentationPipeline([Lengthen()], probability=1.0)(audio, epoch=0, index=0)
    np.testing.assert_array_equal(out, audio)
    with pytest.raises(ValueError, match="lengthen"):
        AugmentationPipeline([Lengthen(channels=1)], probability=1.0)(audio, epoch=0, index=0)


# -- settings -------------------------------------------------------------------------------


def _config(**table) -> TrainingConfig:
    return TrainingConfig(augmentation_strength=0.5, plugins={"augmentations": table})


def test_settings_select_transforms_and_override_probabilities():
    transforms = ref.reference_transforms(
        _config(enabled=["noise", "gain"], probability={"gain": 0.9}, noise_colors=["pink"], shift_mode="zero")
    )
    assert [t.name for t in transforms] == ["gain", "noise"]
    assert transforms[0].probability == 0.9 and transforms[1].colors == ("pink",)
    assert ref.reference_transforms(_config(enabled=[])) == []
    shift = {t.name: t for t in ref.reference_transforms(_config(shift_mode="zero", filter_modes=["tilt"]))}
    assert shift["shift"].mode == "zero" and shift["filter"].modes == ("tilt",)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"enabled": ["gain", "reverb"]}, "plugins.augmentations.enabled"),
        ({"enabled": 3}, "plugins.augmentations.enabled"),
        ({"probability": {"gain": 1.5}}, "plugins.augmentations.probability.gain"),
        ({"probability": {"gain": "high"}}, "plugins.augmentations.probability.gain"),
        ({"probability": 0.5}, "plugins.augmentations.probability"),
        ({"probability": {"reverb": 0.5}}, "reverb"),
        ({"noise_colors": []}, "plugins.augmentations.noise_colors"),
        ({"filter_modes": ["bandpass"]}, "plugins.augmentations.filter_modes"),
        ({"shift_mode": "wrap"}, "plugins.augmentations.shift_mode"),
        ({"strenght": 1}, "strenght"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_key(table, key):
    with pytest.raises(ConfigError) as caught:
        ref.reference_transforms(_config(**table))
    assert key in str(caught.value)


def test_bad_settings_raise_even_at_strength_zero():
    config = TrainingConfig(augmentation_strength=0.0, plugins={"augmentations": {"enabled": ["x"]}})
    # The engine reports a failing collector as a PluginError naming the plugin and the key.
    with pytest.raises((ConfigError, PluginError), match="plugins.augmentations.enabled"):
        AugmentationPipeline.from_engine(Engine(plugins=[ref], load_entrypoints=False), config)
    # and sda_check_config vetoes it before anything runs
    with pytest.raises(ConfigError, match="plugins.augmentations.enabled: .* expected a list of names from speed"):
        Engine(plugins=[ref], load_entrypoints=False).check_config(config)


# -- the transforms themselves --------------------------------------------------------------


@pytest.mark.parametrize("color", ["white", "pink"])
def test_noise_is_added_at_the_reported_snr_and_silence_stays_silent(color):
    noise = ref.AddNoise(min_snr_db=10, max_snr_db=30, colors=(color,))
    audio = chunk(2)
    params = noise.sample(np.random.default_rng(3), SR)
    out = noise.apply(audio.copy(), params, SR)
    added = out - audio
    snr = 10 * np.log10(np.mean(audio.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2))
    assert snr == pytest.approx(params["snr_db"], abs=0.01)
    silent = np.zeros((1, 1000), dtype=np.float32)
    assert not noise.apply(silent.copy(), params, SR).any()


@pytest.mark.parametrize("seed", range(6))
def test_a_noise_burst_starts_at_its_onset_at_its_level_in_its_band_and_decays(seed):
    burst = ref.NoiseBurst()
    audio = chunk(1)
    params = burst.sample(np.random.default_rng(seed), SR)
    added = (burst.apply(audio.copy(), params, SR) - audio)[0].astype(np.float64)
    start = int(params["onset"] * audio.shape[-1])
    assert not added[:start].any() and added[start : start + 10].any()
    # its level: the added noise over its envelope, where the envelope is above e^-3
    attack = int(ref.BURST_ATTACK_SECONDS * SR)
    span = added[start:][attack : attack + int(3 * params["decay_seconds"] * SR)]
    time = (attack + np.arange(len(span))) / SR
    envelope = np.exp(-time / params["decay_seconds"])
    reference = np.sqrt(np.mean(audio.astype(np.float64) ** 2))
    expected = min(reference * 10 ** (params["level_db"] / 20), ref.BURST_MAX_RMS)
    assert 20 * np.log10(np.sqrt(np.mean((span / envelope) ** 2)) / expected) == pytest.approx(0.0, abs=3.0)
    # most of its power lies within its band (2nd-order edges: an octave beyond them)
    power = np.abs(np.fft.rfft(added[start:])) ** 2
    freqs = np.fft.rfftfreq(len(added) - start, 1 / SR)
    inside = (freqs >= params["low_hz"] / 2) & (freqs <= params["high_hz"] * 2)
    assert power[inside].sum() > 0.9 * power.sum()


def test_a_noise_burst_in_silence_is_heard_and_each_channel_has_its_own_noise():
    burst = ref.NoiseBurst(min_level_db=0.0, max_level_db=0.0)
    params = burst.sample(np.random.default_rng(1), SR)
    out = burst.apply(np.zeros((2, SR), dtype=np.float32), params, SR)
    assert out.any() and np.isfinite(out).all()
    start = int(params["onset"] * SR)
    assert abs(np.corrcoef(out[:, start:])[0, 1]) < 0.2
    again = burst.apply(np.zeros((2, SR), dtype=np.float32), params, SR)
    assert np.array_equal(out, again)  # its noise comes from the params' seed


def test_the_burst_level_range_scales_with_the_strength():
    def burst(strength):
        config = TrainingConfig(augmentation_strength=strength, plugins={"augmentations": {"enabled": ["burst"]}})
        (transform,) = ref.reference_transforms(config)
        return transform

    assert burst(1.0).max_level_db == pytest.approx(ref.BURST_MIN_LEVEL_DB + ref.FULL_STRENGTH["burst_level_span_db"])
    assert burst(0.5).max_level_db < burst(1.0).max_level_db
    assert burst(0.5).min_level_db == burst(1.0).min_level_db == ref.BURST_MIN_LEVEL_DB


def test_pink_noise_has_equal_power_per_octave():
    noise = ref._pink_noise(np.random.default_rng(0), (4, 2**15), SR)
    power = np.mean(np.abs(np.fft.rfft(noise, axis=-1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(2**15, 1 / SR)
    bands = [power[(freqs >= f) & (freqs < 2 * f)].sum() for f in (100, 200, 400, 800, 1600, 3200)]
    assert max(bands) / min(bands) < 1.5


@pytest.mark.parametrize(
    ("mode", "hz"), [("lowpass", 3000.0), ("lowpass", 9900.0), ("highpass", 20.0), ("highpass", 400.0)]
)
def test_filters_equal_the_recursive_biquad(mode, hz):
    import torchaudio.functional as taf

    audio = chunk(2, 5000)
    b, a = ref._pass_coefficients(mode, hz, SR)
    expected = taf.lfilter(
        torch.from_numpy(audio).double(),
        torch.tensor(a, dtype=torch.float64),
        torch.tensor(b, dtype=torch.float64),
        clamp=False,
    ).numpy()
    np.testing.assert_allclose(ref.apply_biquad(audio, b, a), expected, atol=2e-6)


@pytest.mark.parametrize("tilt", [-6.0, 3.0])
def test_tilt_is_symmetric_around_the_pivot(tilt):
    b, a = ref._tilt_coefficients(tilt, 1000.0, SR)
    response = ref._response(b, a, 2 * SR)
    freqs = np.fft.rfftfreq(2 * SR, 1 / SR)
    db = lambda f: 20 * np.log10(abs(response[np.argmin(abs(freqs - f))]))  # noqa: E731
    assert db(20) == pytest.approx(-tilt / 2, abs=0.1)
    assert db(10000) == pytest.approx(tilt / 2, abs=0.1)
    assert db(1000) == pytest.approx(0.0, abs=0.05)


@pytest.mark.parametrize(("source", "target"), [(16, 17), (17, 16), (173, 172), (55, 49)])
def test_resampler_matches_torchaudio(source, target):
    import torchaudio.functional as taf

    audio = chunk(2, 3001)
    expected = taf.resample(torch.from_numpy(audio), source, target).numpy()
    np.testing.assert_allclose(ref.resample_poly(audio, source, target), expected, atol=2e-5)


@pytest.mark.parametrize("semitones", [2.0, -1.3, 0.7])
def test_speed_change_moves_the_pitch_by_the_reported_semitones(semitones):
    params = ref.speed_params(semitones, offset=0.5)
    assert params["semitones"] == pytest.approx(semitones, abs=0.005)
    assert params["speed"] == pytest.approx(params["resample_from"] / params["resample_to"])
    t = np.arange(SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)[np.newaxis]
    out = ref.SpeedPitch().apply(tone.copy(), params, SR)
    assert out.shape == tone.shape
    spectrum = np.abs(np.fft.rfft(out[0] * np.hanning(SR)))
    peak = np.argmax(spectrum) * SR / SR
    assert peak == pytest.approx(1000.0 * 2 ** (params["semitones"] / 12), abs=2.0)


def test_speed_draws_are_quantised_to_a_small_set_of_ratios():
    speed = ref.SpeedPitch(max_semitones=2.0)
    rng = np.random.default_rng(0)
    ratios = {(p["resample_from"], p["resample_to"]) for p in (speed.sample(rng, SR) for _ in range(2000))}
    assert len(ratios) <= 41
    assert all(max(pair) <= ref.MAX_RATIO_DENOMINATOR + 30 for pair in ratios)


@pytest.mark.parametrize("mode", ["circular", "zero"])
def test_time_shift(mode):
    audio = np.arange(1, 11, dtype=np.float32)[np.newaxis]
    shift = ref.TimeShift(max_seconds=1.0, mode=mode)
    out = shift.apply(audio.copy(), {"shift_samples": 3, "shift_seconds": 3 / SR, "mode": mode}, SR)
    expected = np.roll(audio, 3) if mode == "circular" else np.concatenate([[0, 0, 0], audio[0, :7]])[np.newaxis]
    np.testing.assert_array_equal(out, expected)
    back = shift.apply(audio.copy(), {"shift_samples": -3, "shift_seconds": -3 / SR, "mode": mode}, SR)
    assert back[0, 0] == 4.0


def test_reference_transforms_follow_the_protocol():
    for transform in ref.reference_transforms(TrainingConfig(augmentation_strength=1.0)):
        assert isinstance(transform, Transform)
        check_transform(transform)
        assert pickle.loads(pickle.dumps(transform)) == transform


@pytest.mark.parametrize("minimum", [1, 7, 22050, 22051, 24577, 100001])
def test_fft_sizes_are_the_smallest_5_smooth_numbers(minimum):
    size = ref._fast_length(minimum)
    assert size >= minimum
    rest = size
    for prime in (2, 3, 5):
        while rest % prime == 0:
            rest //= prime
    assert rest == 1
    assert all(ref._fast_length(m) == size for m in range(minimum, size + 1))


def test_noise_is_off_unless_enabled_and_bursts_are_on():
    assert [t.name for t in ref.reference_transforms(TrainingConfig())] == list(ref.DEFAULT_ENABLED)
    assert "noise" not in ref.DEFAULT_ENABLED and "burst" in ref.DEFAULT_ENABLED
    noisy = TrainingConfig(plugins={"augmentations": {"enabled": [*ref.DEFAULT_ENABLED, "noise"]}})
    assert [t.name for t in ref.reference_transforms(noisy)] == list(ref.TRANSFORM_NAMES)
