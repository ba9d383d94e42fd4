"""The ``sda`` command line, run in a subprocess as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sda_core.testing import set_options

SDA = [sys.executable, "-m", "sda_core"]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SDA, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def write_tone(path: Path, seconds: float, rate: int = 22050, channels: int = 1, subtype: str | None = None) -> None:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * 220 * t)
    data = np.stack([mono] * channels, axis=1) if channels > 1 else mono
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype=subtype)


@pytest.fixture
def sounds(tmp_path: Path) -> Path:
    folder = tmp_path / "sounds"
    for i in range(6):
        write_tone(folder / f"tone{i}.wav", 0.5 + i * 0.3)
    write_tone(folder / "sub" / "stereo.flac", 1.2, rate=44100, channels=2)
    write_tone(folder / "sub" / "hi.ogg", 0.8, rate=48000)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.txt").write_text("recorded on a rainy day")
    (folder / "fake.wav").write_text("this is not audio")
    return folder


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("sda 0.")


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("sda")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_no_command_prints_help_and_is_a_usage_error():
    result = run()
    assert result.returncode == 2 and "scan" in result.stdout


def test_plugins_json_lists_the_reference_plugins_with_hooks():
    result = run("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {item["name"]: item for item in json.loads(result.stdout)["plugins"]}
    presets = plugins["adaptive_presets"]
    assert presets["status"] == "loaded"
    assert presets["distribution"] == "small-dataset-audio"
    assert "sda_resolve_config" in presets["hooks"]


def test_plugins_shows_blocked_plugins_with_the_reason():
    result = run("plugins", "--json", "--disable-plugin", "adaptive_presets")
    plugins = {item["name"]: item for item in json.loads(result.stdout)["plugins"]}
    assert plugins["adaptive_presets"]["status"] == "blocked"
    assert "disable" in plugins["adaptive_presets"]["reason"]
    table = run("--disable-plugin", "adaptive_presets", "plugins")
    assert "blocked" in table.stdout


def test_plugins_reports_a_broken_distribution(make_distribution):
    make_distribution(
        "sda-broken-dist", {"broken": "sda_cli_broken"}, {"sda_cli_broken": "raise ImportError('no such thing')"}
    )
    result = run("plugins", "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    broken = {item["name"]: item for item in data["plugins"]}["broken"]
    assert broken["status"] == "failed" and "no such thing" in broken["reason"]
    assert any("sda-broken-dist" in message for message in data["warnings"])
    strict = run("plugins", env={"SDA_STRICT_PLUGINS": "1"})
    assert strict.returncode == 1 and "sda-broken-dist" in strict.stderr
    assert "Traceback" not in strict.stderr


def test_scan_json_accounts_for_every_file(sounds: Path):
    result = run("scan", str(sounds), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    on_disk = {p.relative_to(sounds).as_posix() for p in sounds.rglob("*") if p.is_file()}
    usable = {item["path"] for item in report["files"]}
    skipped = {item["path"]: item["reason"] for item in report["skipped"]}
    assert usable | set(skipped) == on_disk and not usable & set(skipped)
    assert skipped == {"empty.wav": "empty", "notes.txt": "not_audio", "fake.wav": "unreadable"}
    assert report["sample_rates"] == {"22050": 6, "44100": 1, "48000": 1}
    assert report["channels"] == {"1": 7, "2": 1}
    assert report["total_duration"] == pytest.approx(sum(0.5 + i * 0.3 for i in range(6)) + 1.2 + 0.8, abs=1e-3)
    assert report["config"]["preset"] == "conservative"
    assert report["config"]["validation_fraction"] * report["usable_count"] >= 1


def test_scan_table_names_skipped_files_and_the_preset(sounds: Path):
    result = run("scan", str(sounds))
    assert result.returncode == 0, result.stderr
    for text in ("empty.wav", "fake.wav", "notes.txt", "conservative", "8 usable", "3 skipped"):
        assert text in result.stdout


def test_warns_about_a_dataset_smaller_than_the_presets_expect(tmp_path: Path):
    write_tone(tmp_path / "only.wav", 1.0)
    result = run("scan", str(tmp_path))
    assert result.returncode == 0
    assert "warning:" in result.stderr and "fewer than the 5" in result.stderr


def test_override_precedence_cli_over_sda_toml(sounds: Path):
    (sounds / "sda.toml").write_text("max_epochs = 30\nbatch_size = 2\n[regularization]\ndropout = 0.4\n")
    report = json.loads(run("scan", str(sounds), "--json", "--set", "max_epochs=12").stdout)
    assert report["config"]["max_epochs"] == 12
    assert report["config"]["batch_size"] == 2
    assert report["config"]["regularization"]["dropout"] == 0.4
    assert report["settings_file"] == "sda.toml"
    assert "sda.toml" not in {item["path"] for item in report["skipped"]}


def test_a_preset_override_resizes_everything(sounds: Path):
    report = json.loads(run("scan", str(sounds), "--json", "--set", "preset=aggressive").stdout)
    assert report["config"]["preset"] == "aggressive"
    assert report["config"]["max_epochs"] == 200


@pytest.mark.parametrize(
    ("option", "needle"),
    [("max_epoch=3", "did you mean 'max_epochs'"), ("max_epochs=-1", "max_epochs"), ("preset=wild", "conservative")],
)
def test_an_invalid_setting_is_a_usage_error_in_one_sentence(sounds: Path, option: str, needle: str):
    result = run("scan", str(sounds), "--set", option)
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_broken_sda_toml_is_reported(sounds: Path):
    (sounds / "sda.toml").write_text("max_epochs = = 3")
    result = run("scan", str(sounds))
    assert result.returncode == 2 and "sda.toml" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_folder_is_one_sentence(tmp_path: Path):
    result = run("scan", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"sda: error: folder '{tmp_path / 'nowhere'}' does not exist"


def test_an_empty_folder_is_one_sentence(tmp_path: Path):
    result = run("scan", str(tmp_path))
    assert result.returncode == 1
    assert "is empty" in result.stderr and "Traceback" not in result.stderr


def test_a_folder_without_audio_lists_why_and_fails(tmp_path: Path):
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    result = run("scan", str(tmp_path))
    assert result.returncode == 1
    assert "readme.txt" in result.stdout and "broken.wav" in result.stdout
    assert "holds no usable audio" in result.stderr and "Traceback" not in result.stderr


def test_scan_json_of_an_unusable_folder_is_still_valid_json(tmp_path: Path):
    (tmp_path / "readme.txt").write_text("hello")
    result = run("scan", str(tmp_path), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["usable_count"] == 0 and report["config"] is None


def test_a_file_instead_of_a_folder_is_a_usage_error(tmp_path: Path):
    write_tone(tmp_path / "one.wav", 0.5)
    result = run("scan", str(tmp_path / "one.wav"))
    assert result.returncode == 2 and "is a file, not a folder" in result.stderr


def test_demo_synthesises_trains_and_generates(tmp_path: Path):
    result = subprocess.run(
        [
            *SDA,
            "demo",
            "--out",
            str(tmp_path / "demo"),
            "--max-epochs",
            "2",
            *set_options(max_epochs=None, batch_size=None, evaluation_sounds=None),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SDA_DISABLE_PLUGINS": "progress"},
    )
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "demo" / "data").glob("*.wav"))) == 12
    assert "12 usable" in result.stdout and "conservative" in result.stdout
    assert "validation loss: first" in result.stdout
    assert (tmp_path / "demo" / "run" / "checkpoints" / "best.pt").is_file()
    generated = sorted((tmp_path / "demo" / "generated").glob("*.wav"))
    assert len(generated) == 4 and all(sf.info(p).duration == pytest.approx(1.0) for p in generated)  # one chunk
    assert "4 new sounds of 1 s (one chunk)" in result.stdout


def test_a_config_error_in_train_start_makes_train_exit_2_with_one_sentence(
    sounds: Path, tmp_path: Path, make_distribution
):
    """A plugin installed through entry points vetoes the run in ``sda_on_train_start``."""
    make_distribution(
        "sda-start-veto",
        {"start_veto": "sda_cli_start_veto"},
        {
            "sda_cli_start_veto": """
        from sda_core import ConfigError, hookimpl

        @hookimpl
        def sda_on_train_start(event):
            raise ConfigError("plugins.start_veto.mode", "loud", "'quiet' or 'off'")
    """
        },
    )
    result = run("train", str(sounds), "--out", str(tmp_path / "run"), "--max-epochs", "1", "--device", "cpu")
    assert result.returncode == 2, result.stderr
    assert "plugins.start_veto.mode" in result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr


# -- sda cache ------------------------------------------------------------------------------


def cache_env(**variables: str) -> dict[str, str]:
    """The environment without SDA_CACHE_DIR / XDG_CACHE_HOME, plus ``variables``."""
    env = {key: value for key, value in os.environ.items() if key not in ("SDA_CACHE_DIR", "XDG_CACHE_HOME")}
    return {**env, **variables}


def run_cache(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*SDA, "cache", *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def filled_cache(tmp_path: Path) -> Path:
    """A cache folder holding two real entries (MP3 files decoded through the cache) and foreign files."""
    from sda_core.audio.decode_cache import DecodeCache
    from sda_core.audio.reading import read_segment

    folder = tmp_path / "cache"
    for index, seconds in enumerate((0.5, 1.0)):
        path = tmp_path / f"song{index}.mp3"
        write_tone(path, seconds, rate=44100, channels=2)
        read_segment(path, 0, 1000, target_rate=22050, channels=1, cache=DecodeCache(folder))
    (folder / "notes.txt").write_text("mine")
    (folder / "keep.npy").write_bytes(b"not an entry")
    (folder / ".backup.npy.tmp").write_bytes(b"not a temporary of the cache either")
    return folder


def test_cache_shows_its_folder_entries_and_size(filled_cache: Path):
    from sda_core.audio.decode_cache import DecodeCache

    entries = DecodeCache(filled_cache).entries()
    assert len(entries) == 2
    size = sum(entry.stat().st_size for entry in entries)

    result = run_cache("--json", env=cache_env(SDA_CACHE_DIR=str(filled_cache)))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {
        "directory": str(filled_cache),
        "source": "$SDA_CACHE_DIR",
        "exists": True,
        "entries": 2,
        "bytes": size,
        "max_bytes": 2 * 1024**3,
        "other_files": 3,
        "cleared": None,
    }

    result = run_cache(env=cache_env(SDA_CACHE_DIR=str(filled_cache)))
    assert result.returncode == 0, result.stderr
    assert str(filled_cache) in result.stdout and "$SDA_CACHE_DIR" in result.stdout
    assert f"2 entries, {size / 1024:.1f} KiB of at most 2.0 GiB" in result.stdout
    assert "3 other files" in result.stdout
    assert len(DecodeCache(filled_cache).entries()) == 2  # showing deletes nothing


def test_cache_clear_deletes_only_the_entries_and_says_what_was_freed(filled_cache: Path):
    from sda_core.audio.decode_cache import DecodeCache

    size = DecodeCache(filled_cache).total_bytes()
    foreign = {name: (filled_cache / name).read_bytes() for name in ("notes.txt", "keep.npy", ".backup.npy.tmp")}

    result = run_cache("--clear", "--json", env=cache_env(SDA_CACHE_DIR=str(filled_cache)))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["cleared"] == {"entries": 2, "bytes": size}
    assert (report["entries"], report["bytes"], report["other_files"]) == (0, 0, 3)
    assert sorted(path.name for path in filled_cache.iterdir()) == sorted(foreign)
    assert all((filled_cache / name).read_bytes() == content for name, content in foreign.items())

    result = run_cache("--clear", env=cache_env(SDA_CACHE_DIR=str(filled_cache)))
    assert result.returncode == 0, result.stderr
    assert "cleared 0 entries, freed 0 bytes" in result.stdout
    assert sorted(path.name for path in filled_cache.iterdir()) == sorted(foreign)


def test_cache_without_the_variable_is_the_platform_folder(tmp_path: Path):
    # on Linux the platform's folder is $XDG_CACHE_HOME/sda (platformdirs), else ~/.cache/sda
    result = run_cache("--json", env=cache_env(XDG_CACHE_HOME=str(tmp_path / "xdg")))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["directory"] == str(tmp_path / "xdg" / "sda" / "decoded")
    assert report["source"] == "the platform's cache folder"
    assert (report["exists"], report["entries"], report["bytes"]) == (False, 0, 0)
    assert not (tmp_path / "xdg").exists()  # looking does not create it

    result = run_cache("--clear", env=cache_env(HOME=str(tmp_path / "home")))
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "home" / ".cache" / "sda" / "decoded") in result.stdout
    assert "cleared 0 entries" in result.stdout and "does not exist yet" in result.stdout


def test_cache_folder_that_is_a_file_is_a_usage_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cache("--clear", env=cache_env(SDA_CACHE_DIR=str(blocker)))
    assert result.returncode == 2
    assert "is a file" in result.stderr and "SDA_CACHE_DIR" in result.stderr and "Traceback" not in result.stderr
    assert blocker.read_text() == "x"
