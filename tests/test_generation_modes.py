"""``sda generate`` modes: --temperature, --like, --morph, --trim; seeded, finished files, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sda_core.engine import Engine
from sda_core.errors import GenerationError
from sda_core.training import generation
from sda_core.training.generation import PEAK_LIMIT, load_trained_model

SDA = [sys.executable, "-m", "sda_core"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SDA, "generate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SDA_DISABLE_PLUGINS": "progress"},
    )


def sounds_of(run: Path) -> list[Path]:
    return sorted((run.parent / "data").glob("*.wav"))


def assert_finished(path: Path) -> np.ndarray:
    audio, _rate = sf.read(path, dtype="float32", always_2d=True)
    assert np.all(np.isfinite(audio))
    assert np.abs(audio).max() <= PEAK_LIMIT + 1e-4
    assert np.abs(audio.mean(axis=0)).max() < 1e-3
    # faded in and out: a player starting or stopping it from silence makes no click
    assert np.abs(audio[0]).max() < 1e-3 and np.abs(audio[-1]).max() < 1e-3, path.name
    return audio


def test_cli_modes_are_reproducible_and_finished(tiny_wave_run: Path, tmp_path: Path):
    a, b = sounds_of(tiny_wave_run)[:2]
    runs = {
        "temperature": ["-n", "2", "--temperature", "0.5", "--trim"],
        "like": ["-n", "3", "--like", str(a), "--seed", "4"],
        "morph": ["--morph", str(a), str(b), "--steps", "3"],
    }
    for name, args in runs.items():
        first = run_cli(str(tiny_wave_run), *args, "--out", str(tmp_path / name / "1"))
        second = run_cli(str(tiny_wave_run), *args, "--out", str(tmp_path / name / "2"))
        assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
        written = sorted((tmp_path / name / "1").glob("*.wav"))
        assert [p.name for p in written] == sorted(p.name for p in (tmp_path / name / "2").glob("*.wav"))
        for path in written:
            assert path.read_bytes() == (tmp_path / name / "2" / path.name).read_bytes(), path.name
            assert_finished(path)
    assert len(list((tmp_path / "temperature" / "1").glob("generated_0000_*.wav"))) == 2
    assert len(list((tmp_path / "like" / "1").glob(f"like_{a.stem}_0004_*.wav"))) == 3
    morph = sorted(p.name for p in (tmp_path / "morph" / "1").glob("*.wav"))
    stem = f"morph_{a.stem}_{b.stem}"
    assert morph == [f"{stem}_01.wav", f"{stem}_02.wav", f"{stem}_03.wav", f"{stem}_joined.wav"]
    joined = sf.info(tmp_path / "morph" / "1" / f"{stem}_joined.wav")
    assert joined.frames == 3 * 8000 - 2 * 400  # 50 ms crossfades at 8 kHz


def test_morph_endpoints_are_the_fitted_reconstructions(tiny_wave_run: Path):
    model, config, _ = load_trained_model(Engine(disable=["progress"]), tiny_wave_run)
    a, b = sounds_of(tiny_wave_run)[2:4]
    sounds, joined = generation.morph_sounds(model, config, a, b, 4)
    assert len(sounds) == 4 and joined.shape == (1, 4 * 8000 - 3 * 400)
    for sound, path in ((sounds[0], a), (sounds[-1], b)):
        chunk = torch.from_numpy(generation.read_chunk(path, config)).unsqueeze(0)
        reconstruction = generation.finish_sound(model.decode(model.fit_codes(chunk))[0], config.sample_rate)
        np.testing.assert_allclose(sound, reconstruction, atol=1e-5)
    middle = generation.morph_codes(torch.zeros(1, 3), torch.ones(1, 3), 3)
    np.testing.assert_allclose(middle.numpy(), [[0, 0, 0], [0.5, 0.5, 0.5], [1, 1, 1]])
    arc = generation.morph_codes(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), 3, spherical=True)
    np.testing.assert_allclose(arc.norm(dim=1).numpy(), [1, 1, 1], atol=1e-6)


def test_like_stays_near_the_sound_and_scales_with_temperature(tiny_wave_run: Path):
    model, config, _ = load_trained_model(Engine(disable=["progress"]), tiny_wave_run)
    like = sounds_of(tiny_wave_run)[0]
    frozen = generation.like_sounds(model, config, like, 2, temperature=0.0)
    chunk = torch.from_numpy(generation.read_chunk(like, config)).unsqueeze(0)
    fitted = generation.finish_sound(model.decode(model.fit_codes(chunk))[0], config.sample_rate)
    np.testing.assert_allclose(frozen[0], fitted, atol=1e-5)
    encoded = generation.finish_sound(model.reconstruct(chunk)[0], config.sample_rate)
    assert np.abs(fitted - chunk[0].numpy()).mean() != np.abs(encoded - chunk[0].numpy()).mean()
    near = generation.like_sounds(model, config, like, 3, seed=1, temperature=0.5)
    far = generation.like_sounds(model, config, like, 3, seed=1, temperature=3.0)
    spread = [np.mean([np.abs(s - frozen[0]).mean() for s in group]) for group in (near, far)]
    assert 0 < spread[0] < spread[1]


def test_generic_fallbacks_for_a_model_without_sampler_or_temperature(tiny_wave_run: Path):
    model, config, _ = load_trained_model(Engine(disable=["progress"]), tiny_wave_run)

    class Plain(torch.nn.Module):  # the bare protocol: no sample_latents, generate without temperature
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def encode(self, audio):
            return self.inner.encode(audio)

        def decode(self, latent):
            return self.inner.decode(latent) + 0.5  # a DC offset the finishing removes

        def generate(self, count, *, seconds=1.0, generator=None):
            return self.decode(torch.randn(count, self.inner.code_size, generator=generator)) * 4

    plain = Plain(model)
    codes = generation.sample_codes(plain, config, 5, generator=torch.Generator().manual_seed(0))
    assert codes.shape == (5, model.code_size)
    with pytest.raises(GenerationError, match="takes no sampling temperature"):
        generation.generate_sounds(plain, config, 1, temperature=0.5)
    for sound in generation.generate_sounds(plain, config, 2) + generation.like_sounds(
        plain, config, sounds_of(tiny_wave_run)[0], 2
    ):
        assert abs(sound.mean()) < 1e-5 and np.abs(sound).max() <= PEAK_LIMIT + 1e-6


def test_trim_cuts_silence_with_fades():
    rate = 8000
    tone = np.sin(2 * np.pi * 440 * np.arange(rate // 4) / rate).astype(np.float32)
    audio = np.concatenate([np.zeros(2000, np.float32), tone, np.zeros(3000, np.float32)])[None]
    trimmed = generation.trim_silence(audio, rate)
    lead, tail = round(generation.TRIM_LEAD_SECONDS * rate), round(generation.TRIM_TAIL_SECONDS * rate)
    assert trimmed.shape[-1] <= tone.size + lead + tail and trimmed.shape[-1] >= tone.size
    assert abs(trimmed[0, 0]) < 1e-3 and abs(trimmed[0, -1]) < 1e-3
    silent = np.zeros((1, 100), np.float32)
    assert generation.trim_silence(silent, rate).shape == (1, 100)


def test_cli_errors_are_one_sentence(tiny_wave_run: Path, tmp_path: Path, capsys):
    from sda_core.cli.app import main

    a = sounds_of(tiny_wave_run)[0]
    (tmp_path / "broken.wav").write_bytes(b"not audio at all")
    cases = [
        (["--like", str(tmp_path / "missing.wav")], 2, "does not exist"),
        (["--like", str(tmp_path / "broken.wav")], 1, "cannot read audio file"),
        (["--morph", str(a), str(a), "--steps", "1"], 2, "--steps must be at least 2"),
        (["--steps", "3"], 2, "go with --morph"),
        (["--like", str(a), "--morph", str(a), str(a)], 2, "not allowed with"),
        (["--temperature", "-1"], 2, "--temperature"),
    ]
    for args, code, text in cases[1:]:  # in this process (quick); the first through a real `sda`
        with pytest.raises(SystemExit) if "not allowed" in text else _no_exit() as caught:
            returned = main(["generate", str(tiny_wave_run), *args, "--out", str(tmp_path / "out")])
        returned = caught.value.code if caught is not None else returned
        stderr = capsys.readouterr().err
        assert returned == code, (args, stderr)
        assert text in stderr and len(stderr.strip().splitlines()) == 1 or "usage:" in stderr, stderr
    args, code, text = cases[0]
    result = run_cli(str(tiny_wave_run), *args, "--out", str(tmp_path / "out"))
    assert result.returncode == code and text in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(ValueError, match="at least 2 steps"):
        generation.morph_codes(torch.zeros(1, 2), torch.ones(1, 2), 1)


class _no_exit:  # noqa: N801
    def __enter__(self):
        return None

    def __exit__(self, *exc_info):
        return False


def test_preview_samples_are_finished_like_generated_files(tiny_wave_run: Path):
    samples = sorted((tiny_wave_run / "previews").glob("epoch_*/sample_*.wav"))
    assert samples, "the run wrote no preview samples"
    for path in samples:
        assert_finished(path)


def test_finishing_keeps_digital_silence_and_removes_the_sounds_offset():
    """A model's exact zeros stay exact zeros in written files: DC is removed from the sounding
    part only, so silence after a sound is not turned into a constant offset."""
    sound = np.zeros((2, 8000), dtype=np.float32)
    sound[:, 1000:3000] = 0.5 * np.sin(2 * np.pi * 15.5 * np.arange(2000) / 2000)  # a small mean
    sound[1, 1000:3000] += 0.2  # and a real DC offset on the second channel
    sound[1, 2000] = 0.0  # a lone zero inside a sound is not silence
    finished = generation.finish_sound(sound, 8000)
    assert np.array_equal(finished[:, 3000:], np.zeros((2, 5000), dtype=np.float32))
    assert np.array_equal(finished[:, 100:1000], np.zeros((2, 900), dtype=np.float32))
    assert abs(float(finished[1, 1000:3000].mean())) < 1e-4 and abs(float(finished[0, 1000:3000].mean())) < 1e-6
    assert abs(float(finished[1, 2000])) > 0.1  # the lone zero moved with its neighbours
    plain = generation.finish_audio(sound)  # without a rate: the whole channel's mean, as before
    assert abs(float(plain[1].mean())) < 1e-6 and abs(float(plain[1, 5000])) > 0.01


def test_a_run_fits_its_sampler_with_each_chunks_successor(tiny_wave_run: Path):
    """The training loop tells the sampler which training chunk follows which in its file (epoch
    0's grid), so a sound longer than a chunk goes on as a training file did, and stops with it."""
    from sda_core.data.chunks import chunk_successors
    from sda_core.training.evaluation import _run_datasets

    model, config, _ = load_trained_model(Engine(disable=["progress"]), tiny_wave_run)
    train, _ = _run_datasets(Engine(disable=["progress"]), tiny_wave_run, config)
    spans = train.chunk_spans(0)
    expected = chunk_successors(train, list(range(len(train))))
    assert expected is not None and len(expected) == len(spans)
    for index, following in enumerate(expected.tolist()):
        path, _start, end = spans[index]
        if following >= 0:
            assert spans[following][0] == path and spans[following][1] == end
        else:
            assert not any(p == path and s == end for p, s, _e in spans)
    files_with_chunks = len({path for path, _s, _e in spans})
    assert int((expected >= 0).sum()) == len(spans) - files_with_chunks > 0
    assert model.sampler_next[: len(spans)].tolist() == expected.tolist()
    assert model.continues_sounds
    assert chunk_successors(object(), [0, 1]) is None  # a dataset that cannot say
    long = model.generate(4, seconds=3 * config.chunk_seconds, generator=torch.Generator().manual_seed(0))
    assert long.shape[-1] == round(3 * config.chunk_seconds * config.sample_rate)
