"""The studio in a real headless browser: Debian's chromium driven by Playwright.

One server and one browser for the module; the tests run in order, as a first-time user would:
load the page, scan a folder, start a short training, reload while it trains, try a second start,
stop, generate and play a sound. Each step saves a screenshot (``tmp_path``, and a copy in the
folder ``$SDA_STUDIO_SHOTS`` names).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from studio_helpers import chromium_path, shots_copy, studio_settings

CHROMIUM = chromium_path()
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - playwright is in the dev extra
    sync_playwright = None

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or sync_playwright is None,
    reason="no chromium for the studio's browser tests (apt-get install chromium; pip install playwright)",
)
if sync_playwright is not None:
    expect.set_options(timeout=20_000)

#: Seconds a step may take on a loaded 2-core machine.
WAIT_MS = 60_000
#: A run that keeps training until it is stopped: tiny epochs, a preview every epoch.
LONG_RUN = studio_settings(max_epochs=400, preview_interval=1, plugins=None) + "\nplugins.previews.samples=2"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shots")
    return folder


@pytest.fixture(scope="module")
def page(studio_server: Any, shots: Path) -> Iterator[Any]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(studio_server.local_url)
        yield page
        context.close()
        browser.close()
    copy = shots_copy()
    if copy is not None:
        copy.mkdir(parents=True, exist_ok=True)
        for shot in sorted(shots.glob("*.png")):
            shutil.copy(shot, copy / shot.name)


def snap(page: Any, shots: Path, name: str) -> Path:
    path = shots / f"{len(list(shots.glob('*.png'))) + 1:02d}-{name}.png"
    page.screenshot(path=path, full_page=True)
    assert path.stat().st_size > 10_000
    return path


def message(page: Any) -> Any:
    return page.locator("#sda-message")


def tab(page: Any, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_page_loads(page: Any, shots: Path) -> None:
    expect(page.get_by_role("heading", name="sda studio")).to_be_visible()
    expect(page.locator("#sda-folder input")).to_have_value("sounds")  # the folder with audio, preselected
    snap(page, shots, "loaded")


def test_scan_lists_the_files(page: Any, shots: Path) -> None:
    page.locator("#sda-folder input").fill("empty")
    page.locator("#sda-scan").click()
    expect(message(page)).to_contain_text("holds no usable audio")
    snap(page, shots, "scan-empty-folder")

    page.locator("#sda-folder input").fill("sounds")
    page.locator("#sda-overrides textarea").fill("max_epochs=banana")
    page.locator("#sda-scan").click()
    expect(message(page)).to_contain_text("max_epochs")
    expect(message(page)).not_to_contain_text("Traceback")

    page.locator("#sda-overrides textarea").fill(LONG_RUN)
    page.locator("#sda-scan").click()
    report = page.locator("#sda-report")
    expect(report).to_contain_text("6 files used")
    for number in range(6):
        expect(report).to_contain_text(f"sound_{number:03d}.wav")
    expect(report).to_contain_text("notes.txt")  # skipped, with its reason
    snap(page, shots, "scanned")
    tab(page, "2 · Train")
    expect(page.locator("#sda-run textarea, #sda-run input").first).to_have_value("runs/sounds")


def test_an_upload_makes_a_new_folder_of_audio_only(page: Any, shots: Path, tmp_path: Path) -> None:
    from sda_core.testing.audio import write_audio_folder

    incoming = write_audio_folder(tmp_path / "incoming", count=2, sample_rates=(8000,))
    (incoming / "notes.txt").write_text("not audio")
    tab(page, "1 · Sounds")
    page.get_by_text("…or upload sounds into a new folder").click()
    chooser = page.locator("#sda-upload input[type=file]")
    chooser.set_input_files([str(incoming / "sound_000.wav"), str(incoming / "notes.txt")])
    page.locator("#sda-upload-name input, #sda-upload-name textarea").first.fill("mine")
    page.locator("#sda-upload-button").click()
    expect(message(page)).to_contain_text("'notes.txt' is not an audio file")
    page.locator("#sda-upload button[aria-label='Clear']").first.click()
    chooser.set_input_files([str(incoming / "sound_000.wav"), str(incoming / "sound_001.wav")])
    page.locator("#sda-upload-button").click()
    expect(message(page)).to_contain_text("Uploaded 2 files into uploads/mine")
    expect(page.locator("#sda-folder input")).to_have_value("uploads/mine")
    snap(page, shots, "uploaded")
    page.locator("#sda-folder input").fill("sounds")
    tab(page, "2 · Train")


def test_training_shows_a_curve_and_a_preview(page: Any, shots: Path) -> None:
    page.locator("#sda-start").click()
    expect(message(page)).to_contain_text("Started training into runs/sounds")
    expect(page.locator("#sda-status")).to_contain_text("training", timeout=WAIT_MS)
    expect(page.locator("#sda-plot img, #sda-plot canvas, #sda-plot svg").first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#sda-previews audio").first).to_be_attached(timeout=WAIT_MS)
    expect(page.locator("#sda-previews img.sda-spectrogram").first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#sda-status")).to_contain_text("epoch")
    snap(page, shots, "training")


def test_a_reload_shows_the_same_run(page: Any, shots: Path) -> None:
    page.reload()
    tab(page, "2 · Train")
    expect(page.locator("#sda-run textarea, #sda-run input").first).to_have_value("runs/sounds")
    expect(page.locator("#sda-status")).to_contain_text("runs/sounds: training", timeout=WAIT_MS)
    expect(page.locator("#sda-previews audio").first).to_be_attached(timeout=WAIT_MS)
    snap(page, shots, "reloaded")


def test_a_second_start_is_refused(page: Any, shots: Path) -> None:
    page.locator("#sda-start").click()
    expect(message(page)).to_contain_text("already training")
    snap(page, shots, "second-start-refused")


def test_stop_and_resume(page: Any, shots: Path) -> None:
    page.locator("#sda-stop").click()
    expect(message(page)).to_contain_text("Stopping runs/sounds")
    expect(page.locator("#sda-status")).to_contain_text("runs/sounds: stopped", timeout=WAIT_MS)
    snap(page, shots, "stopped")
    page.locator("#sda-resume").click()
    expect(message(page)).to_contain_text("Resumed training into runs/sounds")
    expect(page.locator("#sda-status")).to_contain_text("runs/sounds: training", timeout=WAIT_MS)
    page.locator("#sda-stop").click()
    expect(page.locator("#sda-status")).to_contain_text("runs/sounds: stopped", timeout=WAIT_MS)


def test_generate_plays_a_sound(page: Any, shots: Path) -> None:
    tab(page, "3 · Generate")
    page.locator("#sda-count input").fill("2")
    expect(page.locator("#sda-source")).to_contain_text("runs/sounds")
    page.locator("#sda-seconds input, #sda-seconds textarea").first.fill("1.5")
    page.locator("#sda-generate").click()
    players = page.locator("#sda-generated audio")
    expect(players).to_have_count(2, timeout=WAIT_MS)
    expect(page.locator("#sda-generated")).to_contain_text("2 new sounds of 1.5 s")
    played = page.evaluate(
        """async () => {
            const audio = document.querySelector('#sda-generated audio');
            audio.preload = 'auto';
            await audio.play();
            await new Promise(resolve => setTimeout(resolve, 400));
            return {time: audio.currentTime, duration: audio.duration, error: audio.error && audio.error.code};
        }"""
    )
    assert played["error"] is None and played["time"] > 0, played
    assert abs(played["duration"] - 1.5) < 0.05, played
    snap(page, shots, "generated")


def test_the_runs_tab_lists_and_opens_the_run(page: Any, shots: Path) -> None:
    tab(page, "Runs")
    page.locator("#sda-refresh").click()
    table = page.locator("#sda-runs-table")
    expect(table).to_contain_text("runs/sounds")
    snap(page, shots, "runs")
    page.locator("#sda-run-choice input").fill("sounds")
    page.locator("#sda-open").click()
    expect(message(page)).to_contain_text("is not an sda run folder")
    page.locator("#sda-run-choice input").fill("runs/sounds")
    page.locator("#sda-open").click()
    expect(message(page)).to_contain_text("Opened runs/sounds")
    expect(page.locator("#sda-status")).to_contain_text("runs/sounds: stopped")
    expect(page.locator("#sda-previews details.sda-older")).to_be_attached()  # older rounds folded
    snap(page, shots, "opened")
