"""Smoke tests on the 36 real recordings from ../shared/corpus/real-sounds.sh."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sda_core import Engine
from sda_core.data.scan import scan_folder


def test_scan_accounts_for_every_real_file(real_sounds: Path):
    on_disk = sorted(p.name for p in real_sounds.iterdir() if p.is_file())
    summary = scan_folder(real_sounds)
    assert len(on_disk) == 36
    assert sorted([info.path for info in summary.files] + [s.path for s in summary.skipped]) == on_disk
    assert summary.file_count == 36, [s.to_dict() for s in summary.skipped]
    assert len(summary.sample_rates) >= 3 and set(summary.channel_counts) == {1, 2}
    assert all(info.frames > 0 and info.duration > 0 for info in summary.files)


def test_cli_scan_and_config_on_the_real_corpus(real_sounds: Path):
    result = subprocess.run(
        [sys.executable, "-m", "sda_core", "scan", str(real_sounds), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["usable_count"] + report["skipped_count"] == 36
    config = Engine().resolve_config(scan_folder(real_sounds), {})
    assert config.preset.value == report["config"]["preset"] == "balanced"
