"""Content checks after the header scan: each warning fires on a crafted file and not on a clean one."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sda_core.config import TrainingConfig
from sda_core.data import analysis as audio_checks
from sda_core.data.analysis import (
    BLOCK_FRAMES,
    DatasetAnalysis,
    DatasetWarning,
    FileAnalysis,
    WarningCode,
    analyse_dataset,
    analyse_file,
    clip_level,
)
from sda_core.data.chunks import file_chunk_count
from sda_core.data.scan import scan_folder

RATE = 22050
CONFIG = TrainingConfig(sample_rate=RATE)


def tone(
    seconds: float,
    rate: int = RATE,
    amplitude: float = 0.3,
    freq: float = 220.0,
    channels: int = 1,
    offset: float = 0.0,
) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = amplitude * np.sin(2 * np.pi * freq * t) + offset
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def write(path: Path, data: np.ndarray, rate: int = RATE, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype=subtype)
    return path


def analyse(folder: Path, config: TrainingConfig = CONFIG, **kwargs) -> DatasetAnalysis:
    return analyse_dataset(scan_folder(folder), config, **kwargs)


def with_clean_padding(folder: Path) -> None:
    """Enough clean audio (40 s at the project rate) that no dataset-wide warning fires."""
    write(folder / "clean_a.wav", tone(20.0, freq=330.0))
    write(folder / "clean_b.wav", tone(20.0, freq=440.0))


def warning(result: DatasetAnalysis, code: str) -> DatasetWarning:
    found = [item for item in result.warnings if item.code == code]
    assert len(found) == 1, result.warnings
    return found[0]


def assert_one_sentence(message: str) -> None:
    assert message.endswith(".") and "\n" not in message
    assert message.count(". ") == 0, message  # no second sentence (decimals have no space after the dot)


# -- a clean dataset ------------------------------------------------------------------------------


def test_a_clean_dataset_has_no_warnings(tmp_path: Path):
    with_clean_padding(tmp_path)
    write(tmp_path / "stereo.flac", tone(3.0, channels=2), subtype="PCM_24")
    write(tmp_path / "float.wav", tone(2.0, amplitude=0.9), subtype="FLOAT")
    result = analyse(tmp_path)
    assert result.warnings == ()
    assert result.content_checked and len(result.files) == 4
    for item in result.files:
        assert item.flags == () and item.error is None and not item.truncated
        assert item.frames_read == item.frames_expected
    clean = result.file("clean_a.wav")
    assert clean.peak == pytest.approx(0.3, abs=1e-3)
    assert clean.rms_dbfs == pytest.approx(20 * math.log10(0.3 / math.sqrt(2)), abs=0.05)
    assert abs(clean.dc_offset) < 1e-3 and clean.clipped_fraction == 0 and clean.non_finite == 0


def test_chunk_counts_and_training_seconds_follow_file_chunk_count(tmp_path: Path):
    with_clean_padding(tmp_path)
    write(tmp_path / "short.wav", tone(0.3))
    write(tmp_path / "hi.wav", tone(2.6, rate=44100), rate=44100)
    summary = scan_folder(tmp_path)
    config = TrainingConfig(sample_rate=RATE, chunk_seconds=0.5)
    result = analyse_dataset(summary, config)
    expected = {info.path: file_chunk_count(info, config) for info in summary.files}
    assert result.chunk_counts == expected
    assert result.chunk_count == sum(expected.values())
    assert result.training_seconds == pytest.approx(result.chunk_count * 0.5)
    assert result.total_duration == pytest.approx(summary.total_duration)
    assert result.chunk_counts["short.wav"] == 1  # short one-shots are padded and kept


# -- each warning ---------------------------------------------------------------------------------


def test_clipping_square_wave(tmp_path: Path):
    with_clean_padding(tmp_path)
    square = np.sign(tone(2.0, amplitude=1.0))
    write(tmp_path / "square.wav", square, subtype="PCM_16")
    write(tmp_path / "loud_but_clean.wav", tone(2.0, amplitude=0.98), subtype="PCM_16")
    result = analyse(tmp_path)
    item = warning(result, WarningCode.CLIPPING)
    assert item.paths == ("square.wav",)
    assert "square.wav" in item.message and "loud_but_clean" not in item.message
    assert_one_sentence(item.message)
    assert result.file("square.wav").clipped_fraction > 0.9
    assert result.file("square.wav").flags == (WarningCode.CLIPPING,)
    assert result.file("loud_but_clean.wav").clipped_fraction == 0


def test_integer_full_scale_counts_as_clipping_even_below_0_999(tmp_path: Path):
    # 8-bit PCM cannot reach 0.999: its full scale is 127/128.
    with_clean_padding(tmp_path)
    write(tmp_path / "u8.wav", np.sign(tone(1.0, amplitude=1.0)), subtype="PCM_U8")
    result = analyse(tmp_path)
    assert warning(result, WarningCode.CLIPPING).paths == ("u8.wav",)
    assert clip_level("PCM_U8") < 0.999 <= clip_level("PCM_16") + 1e-9


def test_a_few_clipped_samples_do_not_warn(tmp_path: Path):
    with_clean_padding(tmp_path)
    data = tone(2.0)
    data[:20] = 1.0  # 20 of 44100 samples: under 0.1 %
    write(tmp_path / "spike.wav", data, subtype="FLOAT")
    result = analyse(tmp_path)
    assert WarningCode.CLIPPING not in result.codes
    assert 0 < result.file("spike.wav").clipped_fraction < 0.001


def test_dc_offset_tone(tmp_path: Path):
    with_clean_padding(tmp_path)
    write(tmp_path / "offset.wav", tone(2.0, offset=0.1))
    stereo = tone(2.0, channels=2)
    stereo[:, 1] -= 0.2  # one channel only
    write(tmp_path / "offset_right.wav", stereo, subtype="FLOAT")
    write(tmp_path / "slight.wav", tone(2.0, offset=0.02))
    result = analyse(tmp_path)
    item = warning(result, WarningCode.DC_OFFSET)
    assert item.paths == ("offset.wav", "offset_right.wav")
    assert_one_sentence(item.message)
    assert result.file("offset.wav").dc_offset == pytest.approx(0.1, abs=1e-3)
    assert result.file("offset_right.wav").dc_offset == pytest.approx(-0.2, abs=1e-3)
    assert not result.file("slight.wav").has_dc_offset


def test_near_silent_files(tmp_path: Path):
    with_clean_padding(tmp_path)
    write(tmp_path / "whisper.wav", tone(2.0, amplitude=0.001), subtype="PCM_24")  # -60 dBFS
    write(tmp_path / "zeros.wav", np.zeros(RATE))
    write(tmp_path / "quiet_but_fine.wav", tone(2.0, amplitude=0.05))  # about -29 dBFS RMS
    result = analyse(tmp_path)
    item = warning(result, WarningCode.NEAR_SILENT)
    assert item.paths == ("whisper.wav", "zeros.wav")
    assert "whisper.wav" in item.message and "zeros.wav" in item.message
    assert_one_sentence(item.message)
    zeros = result.file("zeros.wav")
    assert zeros.rms_dbfs == audio_checks.FLOOR_DBFS and zeros.peak == 0.0
    assert result.file("whisper.wav").rms_dbfs == pytest.approx(-63.0, abs=0.5)


def test_non_finite_samples_in_a_float_wav(tmp_path: Path):
    with_clean_padding(tmp_path)
    data = tone(2.0).astype(np.float32)
    data[100] = np.nan
    data[200] = np.inf
    data[300] = -np.inf
    write(tmp_path / "nan.wav", data, subtype="FLOAT")
    result = analyse(tmp_path)
    item = warning(result, WarningCode.NON_FINITE)
    assert item.paths == ("nan.wav",)
    assert "training skips them" in item.message and "3 samples" in item.message
    assert_one_sentence(item.message)
    nan = result.file("nan.wav")
    assert nan.non_finite == 3 and math.isfinite(nan.peak) and nan.peak == pytest.approx(0.3, abs=1e-3)
    assert math.isfinite(nan.rms_dbfs) and math.isfinite(nan.dc_offset)
    # still counted per file, but not in what training will use
    assert result.chunk_counts["nan.wav"] == 2
    assert result.chunk_count == sum(count for path, count in result.chunk_counts.items() if path != "nan.wav")
    json.dumps(result.to_dict(), allow_nan=False)


def test_truncated_wav_cut_short(tmp_path: Path):
    with_clean_padding(tmp_path)
    full = write(tmp_path / "source.wav", tone(2.0), subtype="PCM_16")
    data = full.read_bytes()
    full.unlink()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    result = analyse(tmp_path)
    item = warning(result, WarningCode.TRUNCATED)
    assert item.paths == ("cut.wav",)
    assert "used up to where the data ends" in item.message
    assert_one_sentence(item.message)
    cut = result.file("cut.wav")
    assert cut.truncated and cut.error is None
    assert cut.frames_expected == pytest.approx(2 * RATE, abs=2)
    assert cut.frames_read == pytest.approx(RATE, abs=30)
    assert cut.flags == (WarningCode.TRUNCATED,)


def test_truncated_flac_reports_the_decoder_error(tmp_path: Path):
    with_clean_padding(tmp_path)
    full = write(tmp_path / "source.flac", np.random.default_rng(0).uniform(-0.3, 0.3, 3 * RATE))
    data = full.read_bytes()
    full.unlink()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    result = analyse(tmp_path)
    cut = result.file("cut.flac")
    assert cut.truncated and cut.error and cut.frames_read < cut.frames_expected == 3 * RATE
    item = warning(result, WarningCode.TRUNCATED)
    assert item.paths == ("cut.flac",) and cut.error in item.message


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0x7FFFFFFF])
def test_a_streamed_wav_with_a_placeholder_size_is_not_truncated(tmp_path: Path, size: int):
    path = write(tmp_path / "streamed.wav", tone(1.0), subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack("<I", size)
    at = data.find(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", size)
    path.write_bytes(bytes(data))
    info = scan_folder(tmp_path).file("streamed.wav")
    assert not analyse_file(tmp_path, info).truncated


def test_a_file_gone_since_the_scan_is_a_read_error(tmp_path: Path):
    with_clean_padding(tmp_path)
    write(tmp_path / "gone.wav", tone(1.0))
    summary = scan_folder(tmp_path)
    (tmp_path / "gone.wav").unlink()
    result = analyse_dataset(summary, CONFIG)
    item = warning(result, WarningCode.READ_ERROR)
    assert item.paths == ("gone.wav",) and WarningCode.TRUNCATED not in result.codes
    assert result.file("gone.wav").error


def test_mixed_sample_rates(tmp_path: Path):
    with_clean_padding(tmp_path)
    write(tmp_path / "hi.wav", tone(2.0, rate=44100), rate=44100)
    write(tmp_path / "higher.flac", tone(2.0, rate=48000), rate=48000)
    result = analyse(tmp_path)
    item = warning(result, WarningCode.MIXED_SAMPLE_RATES)
    for text in ("22050 Hz x2", "44100 Hz x1", "48000 Hz x1", f"resampled to {RATE} Hz"):
        assert text in item.message
    assert item.paths == ("hi.wav", "higher.flac")
    assert WarningCode.LOW_SAMPLE_RATE not in result.codes
    assert_one_sentence(item.message)


def test_files_below_the_project_rate(tmp_path: Path):
    with_clean_padding(tmp_path)
    write(tmp_path / "phone.wav", tone(2.0, rate=8000), rate=8000)
    result = analyse(tmp_path)
    item = warning(result, WarningCode.LOW_SAMPLE_RATE)
    assert item.paths == ("phone.wav",) and "phone.wav (8000 Hz)" in item.message
    assert_one_sentence(item.message)
    one_rate = tmp_path / "one_rate"
    write(one_rate / "a.wav", tone(40.0, rate=44100), rate=44100)
    assert analyse(one_rate).warnings == ()  # one rate, above the project rate: nothing to say


def test_little_audio(tmp_path: Path):
    for index in range(5):
        write(tmp_path / f"shot{index}.wav", tone(0.4))
    result = analyse(tmp_path)
    item = warning(result, WarningCode.LITTLE_AUDIO)
    assert "2.0 s" in item.message and "5 s of training chunks" in item.message
    assert item.paths == ()
    assert_one_sentence(item.message)
    assert result.codes == (WarningCode.LITTLE_AUDIO,)


def test_many_files_are_named_first_few_and_n_more(tmp_path: Path):
    with_clean_padding(tmp_path)
    for index in range(7):
        write(tmp_path / f"square{index}.wav", np.sign(tone(0.5, amplitude=1.0)))
    item = warning(analyse(tmp_path), WarningCode.CLIPPING)
    assert len(item.paths) == 7 and "and 4 more" in item.message
    assert "7 files clip" in item.message and "square3" not in item.message


def test_header_only_analysis_keeps_header_warnings_and_chunk_counts(tmp_path: Path):
    write(tmp_path / "phone.wav", np.sign(tone(2.0, rate=8000, amplitude=1.0)), rate=8000)
    result = analyse(tmp_path, content=False)
    assert not result.content_checked and result.files == ()
    assert result.codes == (WarningCode.LITTLE_AUDIO, WarningCode.LOW_SAMPLE_RATE)
    assert result.chunk_counts == {"phone.wav": 2}
    assert WarningCode.CLIPPING in analyse(tmp_path).codes


def test_threads_give_the_same_result_as_one(tmp_path: Path):
    with_clean_padding(tmp_path)
    write(tmp_path / "offset.wav", tone(1.0, offset=0.2))
    write(tmp_path / "square.wav", np.sign(tone(1.0, amplitude=1.0)))
    summary = scan_folder(tmp_path)
    assert analyse_dataset(summary, CONFIG, workers=1) == analyse_dataset(summary, CONFIG, workers=4)


# -- values and streaming -------------------------------------------------------------------------


def test_file_analysis_json_round_trip(tmp_path: Path):
    data = tone(1.0).astype(np.float32)
    data[5] = np.nan
    write(tmp_path / "nan.wav", data, subtype="FLOAT")
    write(tmp_path / "zeros.wav", np.zeros(100))
    result = analyse(tmp_path)
    for item in result.files:
        text = json.dumps(item.to_dict(), allow_nan=False)
        assert FileAnalysis.from_dict(json.loads(text)) == item
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert DatasetAnalysis.from_dict(json.loads(text)) == result
    warning_ = result.warnings[0]
    assert DatasetWarning.from_dict(json.loads(json.dumps(warning_.to_dict()))) == warning_


def test_file_analysis_rejects_unknown_keys():
    data = FileAnalysis(path="a.wav", frames_expected=10, frames_read=10).to_dict()
    data["bogus"] = 1
    with pytest.raises(Exception, match="bogus"):
        FileAnalysis.from_dict(data)


def test_reads_are_streamed_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(7)
    data = (0.2 * rng.standard_normal((10_000, 2)) + [0.01, -0.03]).astype(np.float32)
    data[1234, 1] = 1.0
    data[5000, 0] = -1.0
    write(tmp_path / "long.wav", data, subtype="FLOAT")
    info = scan_folder(tmp_path).file("long.wav")

    requested: list[int] = []
    real_read = sf.SoundFile.read

    def spy(self, frames=-1, dtype="float64", always_2d=False, fill_value=None, out=None):
        size = len(out) if out is not None and (frames < 0 or frames > len(out)) else frames
        assert size >= 0, "an unbounded read (frames=-1 without a buffer) decodes the whole file"
        requested.append(size)
        return real_read(self, frames, dtype, always_2d, fill_value, out)

    def whole_file(*_args, **_kwargs):
        raise AssertionError("soundfile.read decodes a whole file")

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    monkeypatch.setattr(sf, "read", whole_file)
    result = analyse_file(tmp_path, info, block_frames=1024)
    assert len(requested) >= 10 and max(requested) <= 1024

    assert result.frames_read == 10_000 and result.non_finite == 0
    assert result.peak == pytest.approx(float(np.abs(data).max()))
    assert result.dc_offset == pytest.approx(float(data.mean(axis=0)[1]), abs=1e-6)
    rms = math.sqrt(float(np.mean(data.astype(np.float64) ** 2)))
    assert result.rms_dbfs == pytest.approx(20 * math.log10(rms), abs=1e-4)
    assert result.clipped_fraction == pytest.approx(2 / data.size)

    requested.clear()
    analyse_file(tmp_path, info)
    assert max(requested) <= BLOCK_FRAMES
