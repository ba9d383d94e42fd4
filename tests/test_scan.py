from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from sda_core.config.dataset import DatasetSummary, SkipReason
from sda_core.data.scan import require_usable, scan_folder
from sda_core.errors import DatasetError

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")
not_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions")


def write_tone(path: Path, sample_rate: int = 16000, seconds: float = 0.25, channels: int = 1, **kwargs) -> int:
    frames = int(round(sample_rate * seconds))
    t = np.arange(frames) / sample_rate
    mono = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    data = np.stack([mono] * channels, axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, data, sample_rate, **kwargs)
    return frames


def reasons(summary: DatasetSummary) -> dict[str, str]:
    return {item.path: item.reason for item in summary.skipped}


def test_mixed_formats_record_header_facts(tmp_path: Path) -> None:
    expected = {
        "pcm16.wav": ("WAV", "PCM_16", 22050, 1, write_tone(tmp_path / "pcm16.wav", 22050, 1.0, 1, subtype="PCM_16")),
        "float.wav": ("WAV", "FLOAT", 44100, 2, write_tone(tmp_path / "float.wav", 44100, 0.5, 2, subtype="FLOAT")),
        "lossless.flac": ("FLAC", "PCM_16", 48000, 2, write_tone(tmp_path / "lossless.flac", 48000, 0.25, 2)),
        "voice.ogg": ("OGG", "VORBIS", 16000, 1, write_tone(tmp_path / "voice.ogg", 16000, 1.5, 1)),
        "old.aiff": ("AIFF", "PCM_16", 8000, 1, write_tone(tmp_path / "old.aiff", 8000, 0.75, 1)),
    }

    summary = scan_folder(tmp_path)

    assert summary.skipped == ()
    assert [info.path for info in summary.files] == sorted(expected)
    for path, (container, subtype, rate, channels, frames) in expected.items():
        info = summary.file(path)
        assert (info.format, info.subtype, info.sample_rate, info.channels) == (container, subtype, rate, channels)
        assert info.frames == frames
        assert info.size_bytes == (tmp_path / path).stat().st_size
    assert summary.file("pcm16.wav").duration == pytest.approx(1.0)
    assert summary.file("voice.ogg").duration == pytest.approx(1.5)
    assert summary.sample_rates == {8000: 1, 16000: 1, 22050: 1, 44100: 1, 48000: 1}
    assert summary.channel_counts == {1: 3, 2: 2}


def test_nested_folders_give_sorted_relative_posix_paths(tmp_path: Path) -> None:
    for relative in ("b/deep/er/x.wav", "a.wav", "b/y.wav", "c/z.flac"):
        write_tone(tmp_path / relative)

    summary = scan_folder(tmp_path)

    assert [info.path for info in summary.files] == ["a.wav", "b/deep/er/x.wav", "b/y.wav", "c/z.flac"]
    assert summary.root == str(tmp_path.resolve())
    assert Path(summary.root).is_absolute()


def test_relative_root_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tone(tmp_path / "data" / "a.wav")
    monkeypatch.chdir(tmp_path)

    summary = scan_folder("data")

    assert summary.root == str((tmp_path / "data").resolve())
    assert [info.path for info in summary.files] == ["a.wav"]


def test_bad_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    write_tone(tmp_path / "good.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio\n" * 10)
    (tmp_path / "noise.flac").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "notes.txt").write_text("recorded on a rainy day\n")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    (tmp_path / "Thumbs.db").write_bytes(bytes(64))
    (tmp_path / "._good.wav").write_bytes(b"\x00\x05\x16\x07" + bytes(80))
    soundfile.write(tmp_path / "silent.wav", np.zeros((0, 1)), 16000)

    summary = scan_folder(tmp_path)

    assert [info.path for info in summary.files] == ["good.wav"]
    assert reasons(summary) == {
        ".DS_Store": SkipReason.NOT_AUDIO,
        "._good.wav": SkipReason.NOT_AUDIO,
        "Thumbs.db": SkipReason.NOT_AUDIO,
        "empty.wav": SkipReason.EMPTY,
        "noise.flac": SkipReason.UNREADABLE,
        "notes.txt": SkipReason.NOT_AUDIO,
        "silent.wav": SkipReason.NO_FRAMES,
        "text.wav": SkipReason.UNREADABLE,
    }
    assert [item.path for item in summary.skipped] == sorted(reasons(summary))
    details = {item.path: item.detail for item in summary.skipped}
    assert "Format not recognised" in details["text.wav"]
    assert str(tmp_path) not in details["text.wav"]
    assert "libsndfile" in details["notes.txt"]
    assert all(item.detail for item in summary.skipped)


def test_every_entry_on_disk_is_accounted_for(tmp_path: Path) -> None:
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "sub" / "b.flac")
    write_tone(tmp_path / "sub" / "deeper" / "c.ogg")
    (tmp_path / "sub" / "empty.wav").write_bytes(b"")
    (tmp_path / "sub" / "deeper" / "readme.md").write_text("# notes")
    (tmp_path / "sub" / "deeper" / "bad.mp3").write_bytes(b"ID3" + bytes(50))
    (tmp_path / "sub" / "sda.toml").write_text("[train]\n")
    (tmp_path / "sda.toml").write_text("[train]\n")
    (tmp_path / "empty_folder").mkdir()

    summary = scan_folder(tmp_path)

    on_disk = {
        Path(folder, name).relative_to(tmp_path).as_posix()
        for folder, _dirs, names in os.walk(tmp_path)
        for name in names
    }
    used = {info.path for info in summary.files}
    skipped = {item.path for item in summary.skipped}
    assert used.isdisjoint(skipped)
    assert used | skipped | {summary.settings_file} == on_disk
    assert used == {"a.wav", "sub/b.flac", "sub/deeper/c.ogg"}


def test_settings_file_at_root_is_not_skipped_but_nested_one_is(tmp_path: Path) -> None:
    write_tone(tmp_path / "a.wav")
    (tmp_path / "sda.toml").write_text("[train]\nseed = 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "sda.toml").write_text("[train]\n")

    summary = scan_folder(tmp_path)

    assert summary.settings_file == "sda.toml"
    assert reasons(summary) == {"sub/sda.toml": SkipReason.SETTINGS_FILE}
    assert "top of the data folder" in summary.skipped[0].detail


def test_no_settings_file(tmp_path: Path) -> None:
    write_tone(tmp_path / "a.wav")
    assert scan_folder(tmp_path).settings_file is None


@needs_symlinks
def test_symlink_loop_terminates_and_is_reported(tmp_path: Path) -> None:
    write_tone(tmp_path / "a" / "x.wav")
    os.symlink("..", tmp_path / "a" / "up")
    os.symlink(".", tmp_path / "self")

    summary = scan_folder(tmp_path)

    assert [info.path for info in summary.files] == ["a/x.wav"]
    assert reasons(summary) == {"a/up": SkipReason.LINK_LOOP, "self": SkipReason.LINK_LOOP}


@needs_symlinks
def test_linked_folder_outside_root_is_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_tone(data / "own.wav")
    write_tone(tmp_path / "elsewhere" / "shared.wav")
    os.symlink(tmp_path / "elsewhere", data / "linked")

    summary = scan_folder(data)

    assert [info.path for info in summary.files] == ["linked/shared.wav", "own.wav"]
    assert summary.skipped == ()


@needs_symlinks
def test_link_to_folder_inside_root_does_not_scan_it_twice(tmp_path: Path) -> None:
    write_tone(tmp_path / "z_real" / "x.wav")
    os.symlink("z_real", tmp_path / "a_alias")

    summary = scan_folder(tmp_path)

    assert [info.path for info in summary.files] == ["z_real/x.wav"]
    assert reasons(summary) == {"a_alias": SkipReason.LINK_LOOP}


@needs_symlinks
def test_broken_and_looping_file_links(tmp_path: Path) -> None:
    write_tone(tmp_path / "real.wav")
    os.symlink("real.wav", tmp_path / "alias.wav")
    os.symlink("missing.wav", tmp_path / "broken.wav")
    os.symlink("loop_b", tmp_path / "loop_a")
    os.symlink("loop_a", tmp_path / "loop_b")

    summary = scan_folder(tmp_path)

    assert [info.path for info in summary.files] == ["alias.wav", "real.wav"]
    assert reasons(summary) == {
        "broken.wav": SkipReason.BROKEN_LINK,
        "loop_a": SkipReason.LINK_LOOP,
        "loop_b": SkipReason.LINK_LOOP,
    }
    assert "missing.wav" in {item.path: item.detail for item in summary.skipped}["broken.wav"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.wav")

    summary = scan_folder(tmp_path)

    assert reasons(summary) == {"pipe.wav": SkipReason.NOT_AUDIO}


@not_root
def test_permission_denied_file_and_folder(tmp_path: Path) -> None:
    write_tone(tmp_path / "ok.wav")
    locked_file = tmp_path / "locked.wav"
    write_tone(locked_file)
    locked_folder = tmp_path / "private"
    write_tone(locked_folder / "inside.wav")
    locked_file.chmod(0)
    locked_folder.chmod(0)
    try:
        summary = scan_folder(tmp_path)
    finally:
        locked_file.chmod(0o644)
        locked_folder.chmod(0o755)

    assert [info.path for info in summary.files] == ["ok.wav"]
    assert reasons(summary) == {"locked.wav": SkipReason.PERMISSION_DENIED, "private": SkipReason.PERMISSION_DENIED}


def test_unreadable_subfolder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tone(tmp_path / "ok.wav")
    write_tone(tmp_path / "private" / "inside.wav")
    real_scandir = os.scandir

    def scandir(path):
        if os.path.basename(path) == "private":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    summary = scan_folder(tmp_path)

    assert [info.path for info in summary.files] == ["ok.wav"]
    assert reasons(summary) == {"private": SkipReason.PERMISSION_DENIED}


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match="does not exist") as raised:
        scan_folder(missing)
    assert str(missing) in str(raised.value)


def test_file_instead_of_folder_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    write_tone(path)
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        scan_folder(path)


def test_empty_folder_and_require_usable(tmp_path: Path) -> None:
    summary = scan_folder(tmp_path)
    assert summary.files == () and summary.skipped == ()
    with pytest.raises(DatasetError, match="is empty"):
        require_usable(summary)


def test_require_usable_when_everything_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.wav").write_bytes(b"")

    summary = scan_folder(tmp_path)

    with pytest.raises(DatasetError, match=r"holds no usable audio: 2 files skipped \(see `sda scan ") as raised:
        require_usable(summary)
    assert summary.root in str(raised.value)


def test_require_usable_accepts_a_usable_folder(tmp_path: Path) -> None:
    write_tone(tmp_path / "a.wav")
    (tmp_path / "b.txt").write_text("x")
    require_usable(scan_folder(tmp_path))


def test_scan_reads_headers_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "b.flac")

    def refuse(*_args, **_kwargs):
        raise AssertionError("scan must not decode audio")

    monkeypatch.setattr(soundfile, "read", refuse)
    monkeypatch.setattr(soundfile, "blocks", refuse)
    monkeypatch.setattr(soundfile.SoundFile, "read", refuse)
    monkeypatch.setattr(soundfile.SoundFile, "buffer_read", refuse)
    monkeypatch.setattr(soundfile.SoundFile, "blocks", refuse)

    summary = scan_folder(tmp_path)

    assert [info.path for info in summary.files] == ["a.wav", "b.flac"]


def test_one_header_read_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(5):
        write_tone(tmp_path / f"{index}.wav")
    (tmp_path / "notes.txt").write_text("x")
    calls: list[str] = []
    real_info = soundfile.info

    def counting_info(path, *args, **kwargs):
        calls.append(os.fspath(path))
        return real_info(path, *args, **kwargs)

    monkeypatch.setattr(soundfile, "info", counting_info)
    scan_folder(tmp_path)

    assert sorted(os.path.basename(call) for call in calls) == sorted(
        [f"{index}.wav" for index in range(5)] + ["notes.txt"]
    )


def test_summary_round_trips_through_json(tmp_path: Path) -> None:
    write_tone(tmp_path / "a.wav")
    (tmp_path / "b.txt").write_text("x")
    (tmp_path / "sda.toml").write_text("")

    summary = scan_folder(tmp_path)

    assert DatasetSummary.from_dict(summary.to_dict()) == summary
