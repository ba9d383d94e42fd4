from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from sda_core.data.demo import synthesize_demo_dataset
from sda_core.data.scan import scan_folder


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    dest = tmp_path_factory.mktemp("demo")
    return dest, synthesize_demo_dataset(dest)


def test_writes_twelve_sorted_wav_files_and_nothing_else(demo: tuple[Path, list[Path]]) -> None:
    dest, files = demo
    assert len(files) == 12
    assert files == sorted(files)
    assert sorted(dest.iterdir()) == files
    assert all(path.suffix == ".wav" for path in files)


def test_output_is_byte_identical_across_runs(demo: tuple[Path, list[Path]], tmp_path: Path) -> None:
    _dest, files = demo
    again = synthesize_demo_dataset(tmp_path)
    assert [path.name for path in again] == [path.name for path in files]
    for first, second in zip(files, again):
        assert first.read_bytes() == second.read_bytes(), first.name


def test_mixed_durations_rates_and_channels(demo: tuple[Path, list[Path]]) -> None:
    _dest, files = demo
    infos = {path.name: soundfile.info(path) for path in files}
    durations = [info.frames / info.samplerate for info in infos.values()]
    assert all(0.5 <= duration <= 3.0 for duration in durations)
    assert any(duration == pytest.approx(0.5) for duration in durations)
    assert sum(2.0 <= duration <= 3.0 for duration in durations) >= 2
    assert sorted(info.samplerate for info in infos.values()) == [22050] * 11 + [44100]
    assert sorted(info.channels for info in infos.values()) == [1] * 11 + [2]
    assert {(info.format, info.subtype) for info in infos.values()} == {("WAV", "PCM_16")}
    names = set(infos)
    for family, count in (("pluck_", 3), ("bell_", 3), ("drum_", 4), ("pad_", 2)):
        assert sum(name.startswith(family) for name in names) == count
    assert {"drum_kick.wav", "drum_snare.wav", "drum_hat.wav"} <= names


def test_levels_are_normalised_without_clipping(demo: tuple[Path, list[Path]]) -> None:
    _dest, files = demo
    for path in files:
        audio, _rate = soundfile.read(path, dtype="float64")
        assert np.all(np.isfinite(audio)), path.name
        peak = np.max(np.abs(audio))
        assert 20 * np.log10(peak) == pytest.approx(-1.0, abs=0.1), path.name
        assert peak < 0.99, path.name
        assert np.sqrt(np.mean(audio**2)) > 0.01, path.name


def test_every_demo_file_scans_as_usable(demo: tuple[Path, list[Path]]) -> None:
    dest, files = demo
    summary = scan_folder(dest)
    assert summary.skipped == ()
    assert [info.path for info in summary.files] == [path.name for path in files]


def test_overwrites_existing_files_and_leaves_others_alone(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    first = synthesize_demo_dataset(tmp_path / "out")
    contents = [path.read_bytes() for path in first]
    second = synthesize_demo_dataset(tmp_path / "out")
    assert second == first
    assert [path.read_bytes() for path in second] == contents
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert len(list((tmp_path / "out").iterdir())) == 12


def test_custom_sample_rate(tmp_path: Path) -> None:
    files = synthesize_demo_dataset(tmp_path, sample_rate=16000)
    rates = sorted(soundfile.info(path).samplerate for path in files)
    assert rates == [16000] * 11 + [44100]
