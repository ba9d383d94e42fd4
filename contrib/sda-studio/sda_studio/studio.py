"""What the page can do, as plain Python: scan, upload, start, stop, watch, generate, list runs.

:class:`Studio` holds no Gradio object, so every action is testable without a browser; the page
(:mod:`sda_studio.page`) only wires buttons to these methods. Each method raises a
:class:`~sda_studio.root.StudioError` or another :class:`~sda_core.SdaError` with a sentence for
the user, which the page shows as a message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from sda_core import Engine, generate_files, write_atomic
from sda_core.config.overrides import parse_set_options
from sda_core.data.analysis import analyse_dataset
from sda_core.data.scan import AUDIO_EXTENSIONS
from sda_core.errors import RunDataError, SdaError
from sda_core.training.generation import like_files, morph_files
from sda_core.training.run_folder import RunPaths, holds_run
from sda_core.training.run_info import RunInfo, find_runs, read_run
from sda_studio import views
from sda_studio.jobs import Job, Jobs
from sda_studio.root import StudioError, StudioRoot

#: The studio's own files (spectrograms it draws), under the root.
CACHE = ".sda-studio"
#: Modes of the generate form, as the page labels them.
MODES = ("new sounds", "variations of a file", "morph between two files")


class Studio:
    """The studio's state: its root, its runs folder and the training runs it started.

    Args:
        root: the folder the studio reads and writes under.
        runs_dir: where new runs go by default (``runs`` under the root).
        engine_factory: makes the Engine of each action (default: the reference and installed
            plugins, no terminal progress display).
    """

    def __init__(
        self,
        root: StudioRoot,
        runs_dir: str | os.PathLike[str] = "runs",
        engine_factory: Callable[[], Engine] | None = None,
    ) -> None:
        self.root = root
        self.runs_dir = root.resolve(runs_dir, "runs folder")
        self.engine_factory = engine_factory or (lambda: Engine(disable=["progress"]))
        self.jobs = Jobs(self.engine_factory)
        self._cache: dict[Path, tuple[tuple[int, int], RunInfo]] = {}

    # -- sounds ------------------------------------------------------------------------------

    def audio_folders(self, depth: int = 3) -> list[str]:
        """Folders under the root that hold audio files directly, as the page lists them."""
        found: list[str] = []

        def visit(folder: Path, level: int) -> None:
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                return
            if any(entry.suffix.lower() in AUDIO_EXTENSIONS and entry.is_file() for entry in entries):
                if not holds_run(folder) and folder.parent.name != "previews":
                    found.append(self.root.relative(folder))
            if level < depth:
                for entry in entries:
                    if entry.is_dir() and not entry.is_symlink() and not entry.name.startswith("."):
                        if entry.name not in ("previews", "generated", "checkpoints") and not holds_run(entry):
                            visit(entry, level + 1)

        visit(self.root.path, 0)
        return found

    @staticmethod
    def parse_overrides(text: str) -> dict[str, Any]:
        """The overrides box: one ``key=value`` per line (as ``--set``); ``#`` starts a comment."""
        lines = [line.split("#", 1)[0].strip() for line in (text or "").splitlines()]
        options = [line for line in lines if line]
        for line in options:
            if "=" not in line:
                raise StudioError(f"the override '{line}' is not key=value (for example max_epochs=20)")
        return parse_set_options(options)

    def scan(self, folder: str, overrides_text: str = "") -> tuple[str, dict[str, Any]]:
        """The scan report (Markdown) and the resolved config (a dict) of ``folder``."""
        data_dir = self.root.existing_folder(folder, "sound folder")
        overrides = self.parse_overrides(overrides_text)
        engine = self.engine_factory()
        summary = engine.scan(data_dir)
        if not summary.files:
            raise StudioError(
                f"'{self.root.relative(data_dir)}' holds no usable audio ({_count(len(summary.skipped), 'file')} skipped); "
                f"add WAV, FLAC, OGG or MP3 files or upload some. {_skipped_line(summary)}".strip()
            )
        config = engine.resolve_config(summary, engine.collect_overrides(data_dir, api=overrides))
        engine.check_config(config)
        analysis = analyse_dataset(summary, config, content=True)
        return views.scan_report(summary, config, analysis, self.root.relative(data_dir)), config.to_dict()

    def upload(self, files: Iterable[str], name: str = "") -> str:
        """Copy uploaded files (Gradio's temporary paths, named as the user's files) into a new
        folder under ``uploads/``; its path relative to the root."""
        items = [(Path(path).name, path) for path in files or []]
        return self.root.relative(self.root.upload(items, name))

    # -- training ----------------------------------------------------------------------------

    def default_run_folder(self, data_folder: str) -> str:
        """``runs/<name of the data folder>``, relative to the root."""
        name = Path(data_folder.strip() or "run").name or "run"
        return self.root.relative(self.runs_dir / name)

    def start(
        self,
        data_folder: str,
        run_folder: str,
        overrides_text: str = "",
        *,
        resume: bool = False,
        overwrite: bool = False,
    ) -> Job:
        """Start (or resume) training ``data_folder`` into ``run_folder`` in the background."""
        data_dir = self.root.existing_folder(data_folder, "sound folder")
        run_dir = self.root.resolve(run_folder or self.default_run_folder(data_folder), "run folder")
        overrides = self.parse_overrides(overrides_text)
        return self.jobs.start(data_dir, run_dir, overrides, resume=resume, overwrite=overwrite)

    def data_folder_of(self, run_folder: str) -> str | None:
        """The sound folder a run trained on (from its ``dataset.json``), relative to the root."""
        run_dir = self.root.resolve(run_folder, "run folder")
        job = self.jobs.job(run_dir)
        if job is not None:
            return self.root.relative(job.data_dir)
        try:
            saved = json.loads(RunPaths(run_dir).dataset.read_text(encoding="utf-8"))
            root = saved.get("data_dir") or (saved.get("scan") or {}).get("root")
        except (OSError, ValueError, AttributeError):
            return None
        if not root:
            return None
        try:
            return self.root.relative(self.root.existing_folder(root, "sound folder"))
        except StudioError:  # moved away, or outside the studio's folder
            return None

    def stop(self, run_folder: str) -> Job:
        """Ask the run in ``run_folder`` to stop; it saves ``last.pt`` and can be resumed."""
        return self.jobs.stop(self.root.resolve(run_folder, "run folder"))

    def run_info(self, run_dir: Path, check_lock: bool = False) -> RunInfo:
        """:func:`read_run`, cached until ``history.json`` or the previews change."""
        paths = RunPaths(run_dir)
        key = (_mtime(paths.history), _mtime(paths.previews))
        cached = self._cache.get(run_dir)
        if cached is not None and cached[0] == key and not check_lock:
            return cached[1]
        info = read_run(run_dir, check_lock=check_lock)
        self._cache[run_dir] = (key, info)
        return info

    def watch(self, run_folder: str) -> dict[str, Any]:
        """What the Train tab shows of ``run_folder`` now: ``status`` (Markdown), ``key`` (changes
        when the curve or the previews change), ``info`` (the RunInfo, or None)."""
        if not (run_folder or "").strip():
            return {
                "status": "### No run chosen yet\n\nScan a sound folder, then press **Start training**.",
                "key": None,
                "info": None,
            }
        run_dir = self.root.resolve(run_folder, "run folder")
        label = self.root.relative(run_dir)
        job = self.jobs.job(run_dir)
        info = None
        if holds_run(run_dir):
            try:
                info = self.run_info(run_dir)
            except RunDataError as error:
                return {"status": f"### {label}\n\n**Error:** {error}", "key": None, "info": None}
        training = False
        if job is not None:
            training = job.alive
            text = views.status_text(label, job.status, job.progress(), info, job.error, job.overfitting)
        elif self._busy(run_dir):
            training = True
            text = views.status_text(label, "training in another process", None, info)
        elif info is None:
            text = f"### {label}: no run yet\n\nPress **Start training** to train into this folder."
        else:
            text = views.status_text(label, "not training", None, info)
        key = None
        if info is not None:
            from sda_plots import SPECTROGRAM_FILENAME

            newest = info.previews[-1].directory / SPECTROGRAM_FILENAME if info.previews else None
            key = (info.last_epoch, len(info.previews), _mtime(RunPaths(run_dir).history), newest and newest.exists())
        return {"status": text, "key": key, "info": info, "training": training}

    def _busy(self, run_dir: Path) -> bool:
        from sda_core.training.run_folder import read_holder

        # the record alone (no OS lock probe on every poll); a crashed writer's record may remain
        holder = read_holder(run_dir)
        return bool(holder) and holder.get("action") == "training"

    def _cache_name(self, run_dir: Path) -> str:
        """A file name for a run in the studio's cache: its path under the root, '/' as '--'."""
        return self.root.relative(run_dir).replace("/", "--")

    def loss_image(self, info: RunInfo) -> Path | None:
        """A PNG of the loss curves of ``info`` (sda-plots' figure: overfitting shaded, the best
        epoch starred), or None before the first epoch.

        The one sda-plots writes beside the run after each epoch (``loss.png``) when it was written
        after the history's last epoch ended: the page then costs the training nothing to draw.
        Otherwise (sda-plots disabled in that run) the studio draws it once per change of the
        history, into its cache.
        """
        from sda_plots import LOSS_FILENAME
        from sda_plots.loss import loss_figure

        if info.history is None or not info.history.epochs:
            return None
        drawn = info.folder / LOSS_FILENAME
        if _mtime(drawn) / 1e9 >= info.history.epochs[-1].timestamp:
            return drawn
        history_changed = _mtime(RunPaths(info.folder).history)
        own = self.root.path / CACHE / "curves" / f"{self._cache_name(info.folder)}.png"
        if _mtime(own) < history_changed:
            figure = loss_figure(info.history, title=info.folder.name)
            write_atomic(own, lambda stream: figure.savefig(stream, format="png", dpi=100))
        return own

    def spectrograms(self, info: RunInfo, training: bool = False) -> dict[int, Path]:
        """A spectrogram PNG per preview round: sda-plots' when it drew one, else drawn here once.

        While the run trains, the newest round is not drawn here: sda-plots may still be drawing
        it (it does so right after the round is written), and drawing it twice would take the
        training's time; it shows on the next refresh, or is drawn here once the next round is out.
        """
        from sda_plots import SPECTROGRAM_FILENAME
        from sda_plots.spectrogram import write_spectrograms

        images: dict[int, Path] = {}
        for preview in info.previews:
            drawn = preview.directory / SPECTROGRAM_FILENAME
            if drawn.exists():
                images[preview.epoch] = drawn
                continue
            if training and preview is info.previews[-1]:
                continue
            own = (
                self.root.path
                / CACHE
                / "spectrograms"
                / self._cache_name(info.folder)
                / f"epoch_{preview.epoch:04d}.png"
            )
            if not own.exists():
                try:
                    write_spectrograms([str(path) for path in preview.files], list(preview.kinds), own)
                except Exception:  # an unreadable preview: the players still work
                    continue
            images[preview.epoch] = own
        return images

    # -- generation --------------------------------------------------------------------------

    def generate(
        self,
        run_folder: str,
        *,
        count: int = 4,
        seconds: float | None = None,
        seed: int = 0,
        temperature: float | None = None,
        trim: bool = False,
        mode: str = MODES[0],
        like: str = "",
        morph: tuple[str, str] = ("", ""),
        steps: int = 8,
        slerp: bool = False,
    ) -> tuple[list[Path], str]:
        """Generate from the run's best checkpoint (``last.pt`` before there is a best), into a
        new folder under ``studio-generated/``: the WAV paths and a sentence saying what they are."""
        run_dir = self.root.existing_folder(run_folder, "run folder")
        if not holds_run(run_dir):
            raise StudioError(f"'{self.root.relative(run_dir)}' is not an sda run folder; open one from the Runs tab")
        paths = RunPaths(run_dir)
        if not (paths.best.exists() or paths.last.exists()):
            raise StudioError(
                f"'{self.root.relative(run_dir)}' has no checkpoint yet; wait for its first epoch to finish"
            )
        count, steps, seed = int(count or 0), int(steps or 0), int(seed or 0)
        if mode not in MODES:
            raise StudioError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
        if not 1 <= count <= 64:
            raise StudioError("the count must be from 1 to 64")
        if seconds is not None and not 0 < float(seconds) <= 600:
            raise StudioError("the length must be above 0 and at most 600 seconds")
        if temperature is not None and not 0 <= float(temperature) <= 10:
            raise StudioError("the temperature must be from 0 to 10")
        engine = self.engine_factory()
        out = self.root.generated_folder(run_dir)
        checkpoint = "best" if paths.best.exists() else "last"
        if mode == MODES[1]:
            source = self._sound_file(like, "sound to vary")
            written = like_files(
                engine, run_dir, source, out, count=count, seed=seed, temperature=temperature, trim=trim
            )
            note = f"{count} variations of {source.name} from the {checkpoint} checkpoint (seed {seed})"
        elif mode == MODES[2]:
            if steps < 2:
                raise StudioError("a morph needs at least 2 steps")
            start, end = (self._sound_file(path, what) for path, what in zip(morph, ("first sound", "second sound")))
            written = morph_files(engine, run_dir, start, end, out, steps=steps, spherical=slerp)
            note = f"a morph of {steps} steps from {start.name} to {end.name}, and the steps joined"
        else:
            written = generate_files(
                engine, run_dir, out, count=count, seconds=seconds, seed=seed, temperature=temperature, trim=trim
            )
            length = f"{float(seconds):g} s" if seconds else "one chunk"
            note = f"{count} new sounds of {length} from the {checkpoint} checkpoint (seed {seed})"
        return written, note + f", in {self.root.relative(out)}"

    def _sound_file(self, value: str, what: str) -> Path:
        path = self.root.resolve(value, what)
        if not path.is_file():
            raise StudioError(f"the {what} '{value}' is not a file under {self.root.path}")
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            raise StudioError(f"the {what} '{value}' is not an audio file")
        return path

    # -- runs --------------------------------------------------------------------------------

    def runs(self) -> list[RunInfo]:
        """The runs under the root, newest first (those that cannot be read are left out)."""
        infos = []
        for folder in find_runs(self.root.path, depth=3):
            if CACHE in folder.parts:
                continue
            try:
                infos.append(self.run_info(folder, check_lock=True))
            except SdaError:  # damaged or vanished since it was found: left out of the list
                continue
        return infos

    def open_run(self, run_folder: str) -> str:
        """Check that ``run_folder`` holds a run and return it, relative to the root."""
        run_dir = self.root.existing_folder(run_folder, "run folder")
        if not holds_run(run_dir):
            raise StudioError(f"'{run_folder}' is not an sda run folder (no config.json, no checkpoints)")
        read_run(run_dir, check_lock=False)
        return self.root.relative(run_dir)

    def current_run(self) -> str:
        """The run a freshly opened page shows: one training from this studio, else the newest."""
        running = self.jobs.running()
        if running:
            return self.root.relative(running[-1].run_dir)
        for folder in find_runs(self.root.path, depth=3):
            if CACHE not in folder.parts:
                return self.root.relative(folder)
        return ""


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


def _skipped_line(summary: Any) -> str:
    if not summary.skipped:
        return ""
    first = summary.skipped[0]
    return f"First skipped: {first.path} ({first.detail or first.reason})."


def config_overrides(config: Mapping[str, Any]) -> str:
    """A few settings of a resolved config as override lines, to start editing from."""
    keys = ("max_epochs", "batch_size", "learning_rate", "sample_rate", "preview_interval", "seed")
    return "\n".join(f"{key}={config[key]}" for key in keys if config.get(key) is not None)
