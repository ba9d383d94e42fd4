"""sda_core.audio: segment reads, resampling alignment, channel mapping, errors, the MP3 cache."""

from __future__ import annotations

import os
import pickle
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sda_core.audio.decoding as decoding
import sda_core.audio.resampling as resampling
from sda_core.audio.decode_cache import CacheUsage, DecodeCache, default_cache_directory, default_decode_cache
from sda_core.audio.formats import needs_decode_cache
from sda_core.audio.reading import AudioReadError, read_file, read_segment
from sda_core.audio.resampling import resampled_length
from sda_core.errors import SdaError

TARGET = 22050
_BLOCK = 8192  # one big Ogg write crashes libsndfile 1.2.2: write in blocks


def signal(frames: int, channels: int, rate: int, seed: int = 0) -> np.ndarray:
    """Tones (different per channel) plus a little noise, (frames, channels) float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / rate
    columns = [0.3 * np.sin(2 * np.pi * (110.0 * (c + 1)) * t + c) for c in range(channels)]
    data = np.stack(columns, axis=1) + 0.05 * rng.standard_normal((frames, channels))
    return data.astype(np.float32)


def write(path: Path, data: np.ndarray, rate: int, subtype: str | None = None, container: str | None = None) -> Path:
    with soundfile.SoundFile(path, "w", rate, data.shape[1], subtype=subtype, format=container) as out:
        for start in range(0, len(data), _BLOCK):
            out.write(data[start : start + _BLOCK])
    return path


def whole(path: Path) -> np.ndarray:
    """The whole file as soundfile decodes it, planar (channels, frames) float32."""
    data, _ = soundfile.read(path, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T)


def expected_slice(reference: np.ndarray, start: int, frames: int) -> np.ndarray:
    """``reference[:, start:start+frames]`` with zeros wherever that runs outside it."""
    out = np.zeros((reference.shape[0], frames), dtype=np.float32)
    low, high = max(start, 0), min(start + frames, reference.shape[1])
    if high > low:
        out[:, low - start : high - start] = reference[:, low:high]
    return out


def torchaudio_resample(planar: np.ndarray, source: int, target: int) -> np.ndarray:
    """Whole-file resampling by torchaudio with the reader's filter: the reference for chunk reads."""
    return torchaudio.functional.resample(
        torch.from_numpy(planar), source, target, **resampling.RESAMPLE_OPTIONS
    ).numpy()


def mp3_or_skip(path: Path, data: np.ndarray, rate: int) -> Path:
    try:
        return write(path, data, rate, container="MP3")
    except Exception as error:  # a libsndfile built without MPEG support
        pytest.skip(f"this libsndfile cannot write MP3: {error}")


# --------------------------------------------------------------------------------- basics


@pytest.mark.parametrize("start, frames", [(0, 22050), (1234, 22050), (0, 1), (-100, 500), (40000, 22050), (5, 0)])
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_shape_dtype_and_layout(tmp_path: Path, start: int, frames: int, channels: int) -> None:
    path = write(tmp_path / "a.wav", signal(44100, 2, 44100), 44100, "PCM_16")
    for target_rate in (44100, TARGET):
        out = read_segment(path, start, frames, target_rate=target_rate, channels=channels)
        assert out.shape == (channels, frames)
        assert out.dtype == np.float32
        assert out.flags.c_contiguous and out.flags.writeable


@pytest.mark.parametrize(
    "container, subtype, extension",
    [
        ("WAV", "PCM_16", "wav"),
        ("WAV", "PCM_24", "wav"),
        ("WAV", "PCM_32", "wav"),
        ("WAV", "PCM_U8", "wav"),
        ("WAV", "FLOAT", "wav"),
        ("WAV", "DOUBLE", "wav"),
        ("FLAC", "PCM_16", "flac"),
        ("FLAC", "PCM_24", "flac"),
        ("AIFF", "PCM_16", "aiff"),
    ],
)
def test_same_rate_read_equals_the_slice_of_a_whole_read(
    tmp_path: Path, container: str, subtype: str, extension: str
) -> None:
    path = write(tmp_path / f"a.{extension}", signal(30000, 2, 44100), 44100, subtype, container)
    reference = whole(path)
    for start, frames in [(0, 22050), (7777, 22050), (29000, 22050), (-300, 1000), (12345, 1)]:
        out = read_segment(path, start, frames, target_rate=44100, channels=2)
        # Bit-identical: integer PCM is read as integers and scaled exactly as libsndfile scales it.
        np.testing.assert_array_equal(out, expected_slice(reference, start, frames))


def test_same_rate_ogg_read_matches_a_whole_decode(tmp_path: Path) -> None:
    path = write(tmp_path / "a.ogg", signal(3 * 44100, 2, 44100), 44100, "VORBIS", "OGG")
    reference = whole(path)
    for start in (0, 1, 4097, 50000, 44100 * 2 + 5):
        out = read_segment(path, start, 22050, target_rate=44100, channels=2)
        np.testing.assert_allclose(out, expected_slice(reference, start, 22050), atol=1e-4)


def test_zero_frames_and_validation(tmp_path: Path) -> None:
    path = write(tmp_path / "a.wav", signal(1000, 1, 8000), 8000, "PCM_16")
    assert read_segment(path, 10, 0, target_rate=8000, channels=2).shape == (2, 0)
    with pytest.raises(ValueError, match="frames"):
        read_segment(path, 0, -1, target_rate=8000, channels=1)
    with pytest.raises(ValueError, match="channels"):
        read_segment(path, 0, 10, target_rate=8000, channels=0)
    with pytest.raises(ValueError, match="target_rate"):
        read_segment(path, 0, 10, target_rate=0, channels=1)
    with pytest.raises(ValueError, match="start"):
        read_segment(path, 0.5, 10, target_rate=8000, channels=1)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- resampling

RATES = (44100, 48000, 8000, 96000)
FILE_SECONDS = 1.5


@pytest.fixture(scope="module")
def resampling_files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, np.ndarray]]:
    """One stereo float WAV per source rate, and torchaudio's resampling of the whole file."""
    folder = tmp_path_factory.mktemp("resampling")
    files = {}
    for rate in RATES:
        path = write(folder / f"r{rate}.wav", signal(int(rate * FILE_SECONDS), 2, rate, seed=rate), rate, "FLOAT")
        files[rate] = (path, torchaudio_resample(whole(path), rate, TARGET))
    return files


@pytest.mark.parametrize("rate", RATES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_resampled_segment_matches_whole_file_resampling(resampling_files, rate: int, data) -> None:
    path, reference = resampling_files[rate]
    length = reference.shape[1]
    assert length == resampled_length(int(rate * FILE_SECONDS), rate, TARGET)
    frames = data.draw(st.integers(1, 6000), label="frames")
    # Mostly away from the edges (the brief's claim), sometimes across them (zeros there too).
    inside = st.integers(200, length - frames - 200)
    start = data.draw(st.one_of(inside, st.integers(-frames - 50, length + 50)), label="start")
    out = read_segment(path, start, frames, target_rate=TARGET, channels=2)
    np.testing.assert_allclose(out, expected_slice(reference, start, frames), atol=1e-4, rtol=0)


def test_resampled_mono_mixdown_commutes_with_resampling(resampling_files) -> None:
    path, reference = resampling_files[48000]
    out = read_segment(path, 1000, 5000, target_rate=TARGET, channels=1)
    np.testing.assert_allclose(out[0], reference[:, 1000:6000].mean(axis=0), atol=1e-5)


def test_read_file_equals_torchaudio_resampling_of_the_whole_file(resampling_files, tmp_path: Path) -> None:
    for _rate, (path, reference) in resampling_files.items():
        out = read_file(path, target_rate=TARGET, channels=2)
        assert out.shape == reference.shape and out.dtype == np.float32 and out.flags.c_contiguous
        np.testing.assert_allclose(out, reference, atol=1e-5, rtol=0)
    same = write(tmp_path / "same.wav", signal(5000, 2, TARGET), TARGET, "PCM_16")
    np.testing.assert_array_equal(read_file(same, target_rate=TARGET, channels=2), whole(same))
    np.testing.assert_allclose(read_file(same, target_rate=TARGET, channels=1)[0], whole(same).mean(axis=0), atol=1e-7)


def test_rates_with_huge_kernels_use_the_direct_sinc(resampling_files, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback for awkward rate pairs computes the same values as the polyphase kernel."""
    monkeypatch.setattr(resampling, "_MAX_KERNEL_TAPS", 0)
    resampling._plan.cache_clear()
    try:
        for rate in (48000, 8000):
            path, reference = resampling_files[rate]
            assert resampling._plan(rate, TARGET).kernel is None
            for start in (-30, 0, 777, reference.shape[1] - 1000):
                out = read_segment(path, start, 2000, target_rate=TARGET, channels=2)
                np.testing.assert_allclose(out, expected_slice(reference, start, 2000), atol=1e-4, rtol=0)
    finally:
        resampling._plan.cache_clear()


def array_reader(data: np.ndarray) -> resampling.Reader:
    """A segment reader over ``(frames, C)`` float32 rows, zero-padded outside them."""

    def read(first: int, count: int) -> tuple[np.ndarray, None]:
        rows = np.zeros((count, data.shape[1]), dtype=np.float32)
        low, high = max(first, 0), min(first + count, len(data))
        if high > low:
            rows[low - first : high - first] = data[low:high]
        return rows, None

    return read


@pytest.mark.parametrize("kernel_taps", [resampling._MAX_KERNEL_TAPS, 0])  # polyphase kernel, direct sinc
def test_segment_takes_other_filters(monkeypatch: pytest.MonkeyPatch, kernel_taps: int) -> None:
    """``options={}`` is torchaudio's default Hann-windowed sinc, on either path (the benchmark's baseline)."""
    monkeypatch.setattr(resampling, "_MAX_KERNEL_TAPS", kernel_taps)
    resampling._plan.cache_clear()
    try:
        data = signal(48000, 1, 48000, seed=3)
        reference = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(data.T)), 48000, TARGET)
        length = resampled_length(len(data), 48000, TARGET)
        for start in (-40, 3000, length - 500):
            out = resampling.segment(array_reader(data), len(data), 48000, start, 1000, TARGET, 1, options={})
            np.testing.assert_allclose(out, expected_slice(reference.numpy(), start, 1000), atol=1e-4, rtol=0)
        kaiser = resampling.segment(array_reader(data), len(data), 48000, 3000, 1000, TARGET, 1)
        assert np.abs(kaiser - reference.numpy()[:, 3000:4000]).max() > 1e-3  # a different filter
    finally:
        resampling._plan.cache_clear()
    with pytest.raises(ValueError, match="unknown resampling options"):
        resampling.segment(array_reader(data), len(data), 48000, 0, 10, TARGET, 1, options={"width": 3})


def test_an_awkward_rate_pair_works_without_a_giant_kernel(tmp_path: Path) -> None:
    # 44056 -> 22050 reduces to 22028:11025: the polyphase kernel would hold ~243 million taps.
    tone = (0.5 * np.sin(2 * np.pi * 110.0 * np.arange(44056) / 44056)).astype(np.float32)[:, None]
    path = write(tmp_path / "odd.wav", tone, 44056, "FLOAT")
    assert resampling._plan(44056, TARGET).kernel is None
    full = read_file(path, target_rate=TARGET, channels=1)
    assert full.shape == (1, TARGET)
    segment = read_segment(path, 5000, 3000, target_rate=TARGET, channels=1)
    np.testing.assert_allclose(segment, full[:, 5000:8000], atol=1e-6)
    # A 110 Hz tone stays a 110 Hz tone at the new rate.
    reference = 0.5 * np.sin(2 * np.pi * 110.0 * np.arange(TARGET) / TARGET)
    np.testing.assert_allclose(full[0, 100:-100], reference[100:-100], atol=1e-3)


def test_resampling_kernels_are_cached_per_pair_of_rates() -> None:
    assert resampling._plan(48000, TARGET) is resampling._plan(48000, TARGET)
    plan = resampling._plan(48000, TARGET)
    assert (plan.down, plan.up) == (320, 147)
    expected = torchaudio.transforms.Resample(48000, TARGET, **resampling.RESAMPLE_OPTIONS)
    torch.testing.assert_close(plan.kernel, expected.kernel)


# --------------------------------------------------------------------------------- frequency response


def tone_file(folder: Path, rate: int, frequency: float, amplitude: float = 0.5, seconds: float = 1.0) -> Path:
    """A mono float WAV of one sine tone."""
    t = np.arange(int(rate * seconds)) / rate
    data = (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)[:, None]
    return write(folder / f"tone-{rate}-{frequency:.1f}.wav", data, rate, "FLOAT")


def fit_tone(audio: np.ndarray, frequency: float, rate: int) -> tuple[float, np.ndarray]:
    """Amplitude of the ``frequency`` component (least squares) and what is left without it."""
    phase = 2 * np.pi * frequency / rate * np.arange(audio.size)
    basis = np.stack([np.sin(phase), np.cos(phase)], axis=1)
    coefficients, *_ = np.linalg.lstsq(basis, audio.astype(np.float64), rcond=None)
    return float(np.hypot(*coefficients)), audio - basis @ coefficients


def decibels(ratio: float) -> float:
    return 20 * np.log10(max(ratio, 1e-12))


def middle_of_a_read(path: Path, target_rate: int) -> np.ndarray:
    """Half a second from the middle of a 1 s file, read as a training chunk (away from the file's edges)."""
    return read_segment(path, target_rate // 4, target_rate // 2, target_rate=target_rate, channels=1)[0]


DOWNSAMPLING = ((44100, 22050), (48000, 22050), (22050, 16000))


@pytest.mark.parametrize(("source", "target"), DOWNSAMPLING)
@pytest.mark.parametrize("multiple", [1.05, 1.1, 1.25, 1.5, 1.9])
def test_tones_above_the_new_nyquist_do_not_fold_back(tmp_path: Path, source: int, target: int, multiple: float):
    frequency = multiple * target / 2
    if frequency >= source / 2:
        pytest.skip("not representable at the source rate")
    amplitude = 0.5
    out = middle_of_a_read(tone_file(tmp_path, source, frequency, amplitude), target)
    # Whatever comes out is aliasing (it folds to target - frequency): all of it must be <= -60 dB.
    rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
    assert decibels(rms / (amplitude / np.sqrt(2))) <= -60.0


@pytest.mark.parametrize(("source", "target"), (*DOWNSAMPLING, (16000, 22050)))
@pytest.mark.parametrize("multiple", [0.5, 0.8, 0.9])
def test_the_pass_band_keeps_its_level(tmp_path: Path, source: int, target: int, multiple: float):
    frequency = multiple * min(source, target) / 2
    amplitude = 0.5
    out = middle_of_a_read(tone_file(tmp_path, source, frequency, amplitude), target)
    level, rest = fit_tone(out, frequency, target)
    assert abs(decibels(level / amplitude)) <= 0.5
    # Nothing else comes out: no alias, and when upsampling no image at source - frequency.
    assert decibels(float(np.sqrt(np.mean(rest**2))) / (amplitude / np.sqrt(2))) <= -60.0


# --------------------------------------------------------------------------------- padding


def test_padding_past_the_end_and_before_the_start(tmp_path: Path) -> None:
    data = signal(44100, 2, 44100)
    path = write(tmp_path / "a.wav", data, 44100, "FLOAT")
    out = read_segment(path, 44100 - 100, 1000, target_rate=44100, channels=2)
    np.testing.assert_array_equal(out[:, :100], data[-100:].T)
    assert not out[:, 100:].any()
    out = read_segment(path, -250, 1000, target_rate=44100, channels=2)
    assert not out[:, :250].any()
    np.testing.assert_array_equal(out[:, 250:], data[:750].T)
    assert not read_segment(path, 10**7, 500, target_rate=44100, channels=2).any()
    assert not read_segment(path, -(10**7), 500, target_rate=TARGET, channels=2).any()


@pytest.mark.parametrize("target_rate", [8000, TARGET])
def test_a_file_shorter_than_a_chunk_is_padded(tmp_path: Path, target_rate: int) -> None:
    data = signal(800, 1, 8000)  # 0.1 s
    path = write(tmp_path / "short.flac", data, 8000, "PCM_16")
    out = read_segment(path, 0, target_rate, target_rate=target_rate, channels=1)
    assert out.shape == (1, target_rate)
    valid = resampled_length(800, 8000, target_rate)
    reference = read_file(path, target_rate=target_rate, channels=1)
    assert reference.shape == (1, valid)
    np.testing.assert_allclose(out[:, :valid], reference, atol=1e-6)
    assert not out[:, valid:].any()
    assert np.abs(out[:, :valid]).max() > 0.1


# --------------------------------------------------------------------------------- channels


def test_mono_to_stereo_repeats_the_channel(tmp_path: Path) -> None:
    path = write(tmp_path / "mono.wav", signal(20000, 1, 44100), 44100, "PCM_16")
    for rate in (44100, TARGET):
        out = read_segment(path, 100, 5000, target_rate=rate, channels=2)
        np.testing.assert_array_equal(out[0], out[1])
        np.testing.assert_array_equal(out[:1], read_segment(path, 100, 5000, target_rate=rate, channels=1))


def test_stereo_to_mono_is_the_mean(tmp_path: Path) -> None:
    path = write(tmp_path / "stereo.wav", signal(20000, 2, 44100), 44100, "PCM_16")
    stereo = read_segment(path, 300, 5000, target_rate=44100, channels=2)
    mono = read_segment(path, 300, 5000, target_rate=44100, channels=1)
    np.testing.assert_allclose(mono[0], stereo.mean(axis=0), atol=1e-7)


def test_six_channels_mix_down(tmp_path: Path) -> None:
    data = signal(20000, 6, 48000)
    path = write(tmp_path / "surround.wav", data, 48000, "FLOAT")
    mono = read_segment(path, 0, 20000, target_rate=48000, channels=1)
    np.testing.assert_allclose(mono[0], data.mean(axis=1), atol=1e-6)
    stereo = read_segment(path, 0, 20000, target_rate=48000, channels=2)  # the first two channels
    np.testing.assert_array_equal(stereo, data[:, :2].T)
    resampled = read_segment(path, 1000, 4000, target_rate=TARGET, channels=1)
    reference = torchaudio_resample(np.ascontiguousarray(data.T), 48000, TARGET).mean(axis=0)
    np.testing.assert_allclose(resampled[0], reference[1000:5000], atol=1e-5)


def test_up_mixing_repeats_channels_cyclically(tmp_path: Path) -> None:
    data = signal(5000, 2, 44100)
    path = write(tmp_path / "stereo.wav", data, 44100, "FLOAT")
    out = read_segment(path, 0, 5000, target_rate=44100, channels=5)
    np.testing.assert_array_equal(out, data.T[[0, 1, 0, 1, 0]])


# --------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_raise_naming_the_file(tmp_path: Path, bad: float) -> None:
    data = signal(20000, 2, 44100)
    data[12345, 1] = bad
    path = write(tmp_path / "broken.wav", data, 44100, "FLOAT")
    for target_rate, start in ((44100, 10000), (TARGET, 5000)):  # both cover source frame 12345
        with pytest.raises(AudioReadError, match="NaN or Inf") as caught:
            read_segment(path, start, 5000, target_rate=target_rate, channels=2)
        assert str(path) in str(caught.value)
        assert caught.value.path == str(path)
        assert "frame 12345" in str(caught.value)
        assert isinstance(caught.value, SdaError)
    with pytest.raises(AudioReadError, match="NaN or Inf"):
        read_file(path, target_rate=44100, channels=1)
    # Frames that are all finite read fine: the check covers the frames a chunk reads.
    assert read_segment(path, 0, 5000, target_rate=44100, channels=2).shape == (2, 5000)


def test_unreadable_files_raise_naming_the_file_and_the_reason(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(AudioReadError) as caught:
        read_segment(text, 0, 100, target_rate=TARGET, channels=1)
    assert str(text) in str(caught.value)
    assert "Format not recognised" in str(caught.value)
    missing = tmp_path / "gone.flac"
    with pytest.raises(AudioReadError, match="No such file") as caught:
        read_segment(missing, 0, 100, target_rate=TARGET, channels=1)
    assert str(missing) in str(caught.value)
    with pytest.raises(AudioReadError, match="gone.flac"):
        read_file(missing, target_rate=TARGET, channels=1)


def test_audio_read_error_pickles() -> None:
    error = AudioReadError.non_finite("/data/x.wav", 7)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.path, copy.reason, str(copy)) == (AudioReadError, error.path, error.reason, str(error))


def test_a_truncated_wav_yields_zeros(tmp_path: Path) -> None:
    data = signal(44100, 2, 44100)
    path = write(tmp_path / "cut.wav", data, 44100, "PCM_16")
    with open(path, "r+b") as stream:  # the header still says 44100 frames
        stream.truncate(44 + 20000 * 4 + 2)  # and half a frame at the end
    kept = 20000
    out = read_segment(path, 15000, 22050, target_rate=44100, channels=2)
    np.testing.assert_allclose(out[:, : kept - 15000], data[15000:kept].T, atol=1 / 32768)
    assert not out[:, kept - 15000 :].any()
    assert not read_segment(path, 30000, 10000, target_rate=44100, channels=2).any()  # claimed, not there
    assert read_segment(path, 30000, 5000, target_rate=TARGET, channels=1).shape == (1, 5000)
    assert read_file(path, target_rate=44100, channels=2).shape == (2, kept)


def test_a_truncated_flac_yields_zeros_past_what_decodes(tmp_path: Path) -> None:
    data = signal(3 * 44100, 2, 44100)
    path = write(tmp_path / "cut.flac", data, 44100, "PCM_16")
    size = path.stat().st_size
    with open(path, "r+b") as stream:
        stream.truncate(size // 2)  # STREAMINFO still promises 3 s
    assert soundfile.info(path).frames == 3 * 44100
    decoded = read_file(path, target_rate=44100, channels=2)
    assert 0 < decoded.shape[1] < 3 * 44100
    np.testing.assert_allclose(decoded, data[: decoded.shape[1]].T, atol=1 / 32768)
    out = read_segment(path, 0, 44100, target_rate=44100, channels=2)  # wholly inside what decodes
    np.testing.assert_array_equal(out, decoded[:, :44100])
    assert not read_segment(path, 2 * 44100, 44100, target_rate=44100, channels=2).any()
    straddling = read_segment(path, decoded.shape[1] - 2000, 44100, target_rate=44100, channels=2)
    np.testing.assert_array_equal(straddling[:, :1000], decoded[:, -2000:-1000])
    assert not straddling[:, 5000:].any()
    assert read_segment(path, 60000, 22050, target_rate=TARGET, channels=1).shape == (1, 22050)


def test_a_read_failure_midway_never_crashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "a.wav", signal(10000, 1, 8000), 8000, "PCM_16")

    def broken_read(self, *args, **kwargs):
        raise soundfile.LibsndfileError(1, "simulated: ")

    monkeypatch.setattr(soundfile.SoundFile, "read", broken_read)
    assert not read_segment(path, 0, 4000, target_rate=8000, channels=1).any()


# --------------------------------------------------------------------------------- only what is needed


class ReadRecorder:
    """Wraps soundfile.SoundFile.read to record how many frames each call asked for."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.frames: list[int] = []
        original = soundfile.SoundFile.read
        recorder = self

        def read(handle, frames=-1, *args, **kwargs):
            out = kwargs.get("out")
            recorder.frames.append(len(out) if frames < 0 and out is not None else frames)
            return original(handle, frames, *args, **kwargs)

        monkeypatch.setattr(soundfile.SoundFile, "read", read)


@pytest.mark.parametrize(
    "container, subtype, extension", [("WAV", "PCM_16", "wav"), ("FLAC", "PCM_24", "flac"), ("OGG", "VORBIS", "ogg")]
)
def test_only_the_needed_frames_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, container: str, subtype: str, extension: str
) -> None:
    rate, seconds = 48000, 20
    path = write(tmp_path / f"long.{extension}", signal(rate * seconds, 2, rate), rate, subtype, container)
    recorder = ReadRecorder(monkeypatch)
    read_segment(path, 10 * rate, rate, target_rate=rate, channels=2)
    assert recorder.frames == [rate]
    recorder.frames.clear()
    read_segment(path, 7 * TARGET, TARGET, target_rate=TARGET, channels=1)
    (asked,) = recorder.frames
    plan = resampling._plan(rate, TARGET)
    assert rate <= asked <= rate + 2 * plan.width + 2 * plan.down  # one second plus the filter's context
    assert asked < rate * seconds / 10


# --------------------------------------------------------------------------------- MP3 and the decode cache


def test_needs_decode_cache() -> None:
    assert needs_decode_cache("MP3") and needs_decode_cache("mp3")
    for name in ("WAV", "FLAC", "OGG", "AIFF", "", None):
        assert not needs_decode_cache(name)


class DecodeCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = decoding.decode_all

        def counting(handle, path):
            self.calls += 1
            return original(handle, path)

        monkeypatch.setattr(decoding, "decode_all", counting)


def test_mp3_is_decoded_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = mp3_or_skip(tmp_path / "song.mp3", signal(3 * 44100, 2, 44100), 44100)
    reference = whole(path)  # soundfile's own decode of the MP3
    cache = DecodeCache(tmp_path / "cache", max_bytes=10**8)
    counter = DecodeCounter(monkeypatch)
    first = read_segment(path, 50000, 22050, target_rate=44100, channels=2, cache=cache)
    second = read_segment(path, 90000, 22050, target_rate=44100, channels=2, cache=cache, source_rate=44100)
    third = read_segment(path, 1000, 11025, target_rate=TARGET, channels=1, cache=cache, format="MP3")
    assert counter.calls == 1
    np.testing.assert_array_equal(first, expected_slice(reference, 50000, 22050))
    np.testing.assert_array_equal(second, expected_slice(reference, 90000, 22050))
    resampled = torchaudio_resample(reference, 44100, TARGET).mean(axis=0)
    np.testing.assert_allclose(third[0], resampled[1000:12025], atol=1e-5)
    (entry,) = cache.entries()
    assert entry.name.endswith("-44100.npy")
    stored = np.load(entry, mmap_mode="r")
    assert stored.dtype == np.float32 and stored.shape == (reference.shape[1], 2)
    assert cache.total_bytes() == entry.stat().st_size
    # Another process (a fresh cache object on the same folder) finds the entry too.
    read_segment(path, 0, 100, target_rate=44100, channels=2, cache=DecodeCache(tmp_path / "cache"))
    assert counter.calls == 1


def test_mp3_without_the_extension_is_recognised_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = mp3_or_skip(tmp_path / "song.mp3", signal(44100, 1, 44100), 44100)
    hidden = path.rename(tmp_path / "song.bin")
    cache = DecodeCache(tmp_path / "cache")
    counter = DecodeCounter(monkeypatch)
    out = read_segment(hidden, 100, 1000, target_rate=44100, channels=1, cache=cache)
    np.testing.assert_array_equal(out, expected_slice(whole(hidden), 100, 1000))
    assert counter.calls == 1 and len(cache.entries()) == 1


def test_the_default_cache_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SDA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_directory() == tmp_path / "xdg" / "sda" / "decoded"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_directory() == tmp_path / "home" / ".cache" / "sda" / "decoded"
    monkeypatch.setenv("SDA_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_directory() == tmp_path / "mine"
    assert default_decode_cache().directory == tmp_path / "mine"
    assert default_decode_cache() is default_decode_cache()
    assert DecodeCache().directory == tmp_path / "mine"

    path = mp3_or_skip(tmp_path / "song.mp3", signal(44100, 1, 44100), 44100)
    read_segment(path, 0, 1000, target_rate=44100, channels=1)  # no cache given: the default one
    assert len(DecodeCache(tmp_path / "mine").entries()) == 1


def test_an_edited_file_is_decoded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "a.wav", signal(4000, 1, 8000), 8000, "PCM_16")
    cache = DecodeCache(tmp_path / "cache")
    counter = DecodeCounter(monkeypatch)
    first, _ = cache.get(path)
    write(path, signal(6000, 1, 8000, seed=5), 8000, "PCM_16")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second, rate = cache.get(path)
    assert counter.calls == 2 and rate == 8000
    assert first.shape == (4000, 1) and second.shape == (6000, 1)


def _age(path: Path, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def test_the_cache_evicts_least_recently_used_entries_over_budget(tmp_path: Path) -> None:
    sources = [write(tmp_path / f"s{i}.wav", signal(10000, 1, 8000, seed=i), 8000, "PCM_16") for i in range(4)]
    entry_bytes = 10000 * 4 + 128  # float32 frames + the .npy header
    cache = DecodeCache(tmp_path / "cache", max_bytes=3 * entry_bytes)
    entries = []
    for index, source in enumerate(sources[:3]):
        cache.get(source)
        entries.append(cache.entry_path(cache.key(source), 8000))
        _age(entries[-1], 100 - index)  # s0 oldest, s2 newest
    assert all(entry.exists() for entry in entries)
    cache.get(sources[0])  # used again: now the most recent; s1 is the least recently used
    cache.get(sources[3])  # over budget: one entry must go
    assert not entries[1].exists()
    assert entries[0].exists() and entries[2].exists()
    assert cache.total_bytes() <= cache.max_bytes
    assert len(cache.entries()) == 3

    tiny = DecodeCache(tmp_path / "cache", max_bytes=0)  # an entry over the budget is kept while newest
    data, _ = tiny.get(sources[1])
    assert data.shape == (10000, 1)
    assert [entry.name for entry in tiny.entries()] == [tiny.entry_path(tiny.key(sources[1]), 8000).name]
    size = tiny.total_bytes()
    assert tiny.clear() == CacheUsage(entries=1, bytes=size) and tiny.entries() == []


def test_eviction_leaves_other_files_alone(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "notes.npy").write_bytes(b"x" * 10**6)
    (folder / "readme.txt").write_text("mine")
    cache = DecodeCache(folder, max_bytes=0)
    cache.get(write(tmp_path / "a.wav", signal(1000, 1, 8000), 8000, "PCM_16"))
    cache.evict()
    assert (folder / "notes.npy").exists() and (folder / "readme.txt").exists()


def test_clear_deletes_entries_and_their_temporaries_only(tmp_path: Path) -> None:
    cache = DecodeCache(tmp_path / "cache")
    cache.get(write(tmp_path / "a.wav", signal(1000, 1, 8000), 8000, "PCM_16"))
    cache.get(write(tmp_path / "b.wav", signal(3000, 2, 8000), 8000, "PCM_16"))
    (entry, *_) = cache.entries()
    leftover = cache.directory / f".{entry.name}.k3j4h5.tmp"  # a writer that died mid-write
    leftover.write_bytes(b"x" * 100)
    foreign = ["notes.npy", ".notes.npy.abc.tmp", "readme.txt", f"{'a' * 32}-8000.npy.bak"]
    for name in foreign:
        (cache.directory / name).write_bytes(b"mine")
    held = cache.usage()
    assert held == CacheUsage(entries=2, bytes=cache.total_bytes()) and held.bytes > 3000 * 2 * 4
    assert cache.clear() == CacheUsage(entries=2, bytes=held.bytes + 100)
    assert sorted(path.name for path in cache.directory.iterdir()) == sorted(foreign)
    assert cache.usage() == CacheUsage(entries=0, bytes=0)


def test_the_default_cache_is_the_platform_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs
    import platformdirs.macos

    monkeypatch.delenv("SDA_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(platformdirs, "PlatformDirs", platformdirs.macos.MacOS)  # as on a Mac
    assert default_cache_directory() == tmp_path / "home" / "Library" / "Caches" / "sda" / "decoded"
    monkeypatch.setattr(platformdirs, "user_cache_path", lambda *args, **kwargs: tmp_path / "platform" / "sda")
    assert default_cache_directory() == tmp_path / "platform" / "sda" / "decoded"
    assert DecodeCache().directory == tmp_path / "platform" / "sda" / "decoded"
    monkeypatch.setenv("SDA_CACHE_DIR", str(tmp_path / "mine"))  # the variable wins
    assert default_cache_directory() == tmp_path / "mine"
    assert not (tmp_path / "home").exists() and not (tmp_path / "platform").exists()


def test_the_cache_pickles_as_its_folder_and_limit(tmp_path: Path) -> None:
    cache = DecodeCache(tmp_path / "cache", max_bytes=12345)
    cache.get(write(tmp_path / "a.wav", signal(1000, 1, 8000), 8000, "PCM_16"))
    copy = pickle.loads(pickle.dumps(cache))
    assert copy == cache and copy.directory == cache.directory and copy.max_bytes == 12345
    assert vars(copy) == {"directory": tmp_path / "cache", "max_bytes": 12345}
    assert len(pickle.dumps(cache)) < 500


def test_racing_readers_decode_safely(tmp_path: Path) -> None:
    path = write(tmp_path / "a.flac", signal(30000, 2, 44100), 44100, "PCM_16")
    cache = DecodeCache(tmp_path / "cache")
    results, errors = [], []

    def worker() -> None:
        try:
            results.append(np.array(cache.get(path)[0]))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for result in results:
        np.testing.assert_array_equal(result, results[0])
    assert len(cache.entries()) == 1
    assert [name for name in os.listdir(tmp_path / "cache") if name.endswith(".tmp")] == []


def test_a_damaged_entry_is_decoded_again(tmp_path: Path) -> None:
    path = write(tmp_path / "a.wav", signal(2000, 1, 8000), 8000, "PCM_16")
    cache = DecodeCache(tmp_path / "cache")
    good, _ = cache.get(path)
    expected = np.array(good)
    entry = cache.entry_path(cache.key(path), 8000)
    entry.write_bytes(b"\x93NUMPY garbage")
    again, _ = cache.get(path)
    np.testing.assert_array_equal(again, expected)


def test_an_unwritable_cache_folder_falls_back_to_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    cache = DecodeCache(blocker / "cache")
    path = write(tmp_path / "a.wav", signal(2000, 1, 8000), 8000, "PCM_16")
    counter = DecodeCounter(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, _ = cache.get(path)
        second, _ = cache.get(path)
    assert counter.calls == 1
    np.testing.assert_array_equal(first, second)
    assert any("SDA_CACHE_DIR" in str(warning.message) for warning in caught)


def test_an_unreadable_mp3_raises_naming_it(tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp3"
    fake.write_bytes(b"ID3 nothing here")
    with pytest.raises(AudioReadError, match="fake.mp3"):
        read_segment(fake, 0, 100, target_rate=TARGET, channels=1, cache=DecodeCache(tmp_path / "cache"))
    with pytest.raises(AudioReadError, match="missing.mp3"):
        read_segment(
            tmp_path / "missing.mp3", 0, 100, target_rate=TARGET, channels=1, cache=DecodeCache(tmp_path / "c")
        )
