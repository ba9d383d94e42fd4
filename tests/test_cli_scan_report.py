"""``sda scan``: chunk counts, training seconds, content warnings and ``--no-analysis``.

Most tests call :func:`sda_core.cli.main` in-process (a subprocess pays the start-up of the
plugins on every call); the table test runs ``python -m sda_core`` as a user runs it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from sda_core.config import TrainingConfig
from sda_core.config.dataset import AudioFileInfo
from sda_core.data.chunks import file_chunk_count

SDA = [sys.executable, "-m", "sda_core"]


def run(*args: str) -> SimpleNamespace:
    """``sda ARGS`` in this process: returncode, stdout and stderr."""
    from sda_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def run_subprocess(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SDA, *args], capture_output=True, text=True, timeout=120, env={**os.environ})


def tone(seconds: float, rate: int = 22050, amplitude: float = 0.3, offset: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * 220 * t) + offset


@pytest.fixture(scope="module")
def flawed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one file of each kind of problem, next to clean ones."""
    folder = tmp_path_factory.mktemp("flawed")
    for index in range(5):
        sf.write(folder / f"clean{index}.wav", tone(2.5 + index), 22050)
    sf.write(folder / "hi.flac", tone(2.2, rate=44100), 44100)
    sf.write(folder / "phone.wav", tone(2.0, rate=8000), 8000)
    sf.write(folder / "square.wav", np.sign(tone(1.0, amplitude=1.0)), 22050)
    sf.write(folder / "offset.wav", tone(1.0, offset=0.2), 22050)
    sf.write(folder / "whisper.wav", tone(1.0, amplitude=0.0005), 22050, subtype="PCM_24")
    bad = tone(2.5).astype(np.float32)
    bad[10:20] = np.nan
    sf.write(folder / "nan.wav", bad, 22050, subtype="FLOAT")
    sf.write(folder / "whole.wav", tone(2.0), 22050)
    data = (folder / "whole.wav").read_bytes()
    (folder / "whole.wav").unlink()
    (folder / "cut.wav").write_bytes(data[: len(data) // 2])
    (folder / "readme.txt").write_text("not audio")
    return folder


@pytest.fixture(scope="module")
def report(flawed: Path) -> dict:
    result = run("scan", str(flawed), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_json_has_chunk_counts_consistent_with_file_chunk_count(report: dict):
    config = TrainingConfig.from_dict(report["config"])
    counts = {}
    for entry in report["files"]:
        info = AudioFileInfo.from_dict(
            {
                key: entry[key]
                for key in ("path", "format", "subtype", "sample_rate", "channels", "frames", "size_bytes")
            }
        )
        counts[info.path] = file_chunk_count(info, config)
        assert entry["chunks"] == counts[info.path]
        assert report["analysis"][info.path]["chunks"] == counts[info.path]
    assert set(report["analysis"]) == set(counts)
    # training skips the file with NaN samples; everything else counts
    assert report["chunk_count"] == sum(n for path, n in counts.items() if path != "nan.wav")
    assert report["chunk_seconds"] == pytest.approx(config.chunk_seconds)
    assert report["training_seconds"] == pytest.approx(report["chunk_count"] * config.chunk_seconds)


def test_json_lists_every_warning_with_code_message_and_paths(report: dict):
    warnings = {item["code"]: item for item in report["dataset_warnings"]}
    assert all(set(item) == {"code", "message", "paths"} for item in report["dataset_warnings"])
    expected = {
        "clipping": ["square.wav"],
        "dc_offset": ["offset.wav"],
        "near_silent": ["whisper.wav"],
        "non_finite": ["nan.wav"],
        "truncated": ["cut.wav"],
        "low_sample_rate": ["phone.wav"],
        "mixed_sample_rates": ["hi.flac", "phone.wav"],
    }
    for code, paths in expected.items():
        assert warnings[code]["paths"] == paths, code
        for path in paths:
            assert path in warnings[code]["message"]
    assert "little_audio" not in warnings  # 33.2 s of audio
    assert "training skips them" in warnings["non_finite"]["message"]
    assert "used up to where the data ends" in warnings["truncated"]["message"]


def test_flagged_files_stay_usable(report: dict):
    usable = {entry["path"] for entry in report["files"]}
    assert {"nan.wav", "cut.wav", "square.wav"} <= usable
    assert report["skipped"] == [
        {"path": "readme.txt", "reason": "not_audio", "detail": "not an audio format libsndfile can open"}
    ]
    analysis = report["analysis"]
    assert analysis["nan.wav"]["flags"] == ["non_finite"] and analysis["nan.wav"]["non_finite"] == 10
    assert analysis["cut.wav"]["flags"] == ["truncated"]
    assert analysis["cut.wav"]["frames_read"] < analysis["cut.wav"]["frames_expected"]
    assert analysis["clean0.wav"]["flags"] == [] and analysis["clean0.wav"]["error"] is None
    assert analysis["square.wav"]["clipped_fraction"] > 0.9


def test_no_analysis_reads_headers_only(flawed: Path, report: dict):
    result = run("scan", str(flawed), "--json", "--no-analysis")
    assert result.returncode == 0, result.stderr
    quick = json.loads(result.stdout)
    assert quick["analysis"] is None
    assert [entry["chunks"] for entry in quick["files"]] == [entry["chunks"] for entry in report["files"]]
    assert {item["code"] for item in quick["dataset_warnings"]} == {"low_sample_rate", "mixed_sample_rates"}
    assert quick["chunk_count"] == sum(entry["chunks"] for entry in quick["files"])  # nothing known to skip
    assert quick["config"] == report["config"] and quick["files"] == report["files"]


def test_table_has_a_chunks_column_notes_and_a_warnings_section(flawed: Path):
    result = run_subprocess("scan", str(flawed))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "chunks" in out and "notes" in out and "training:" in out
    for note in ("clipping", "DC offset", "near-silent", "NaN/Inf", "truncated"):
        assert note in out
    warnings_at = out.index("Warnings")
    assert warnings_at > out.index("usable files") and warnings_at > out.index("Resolved config")
    section = out[warnings_at:]
    for code in (
        "clipping",
        "dc_offset",
        "near_silent",
        "non_finite",
        "truncated",
        "low_sample_rate",
        "mixed_sample_rates",
    ):
        assert f"{code}:" in section


def test_table_without_analysis_keeps_chunks_but_no_notes(flawed: Path):
    result = run("scan", str(flawed), "--no-analysis")
    assert result.returncode == 0, result.stderr
    assert "chunks" in result.stdout and "notes" not in result.stdout
    assert "content not checked" in result.stdout
    assert "clipping:" not in result.stdout and "low_sample_rate:" in result.stdout


def test_little_audio_is_reported(tmp_path: Path):
    for index in range(5):
        sf.write(tmp_path / f"shot{index}.wav", tone(0.5), 22050)
    result = run("scan", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [item["code"] for item in report["dataset_warnings"]] == ["little_audio"]
    assert "2.5 s" in report["dataset_warnings"][0]["message"]
    assert report["chunk_count"] == 5 and report["training_seconds"] == pytest.approx(5.0)


def test_unusable_folder_json_has_empty_analysis_fields(tmp_path: Path):
    (tmp_path / "readme.txt").write_text("hello")
    result = run("scan", str(tmp_path), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["chunk_count"] == 0 and report["training_seconds"] == 0
    assert report["dataset_warnings"] == [] and report["analysis"] is None
