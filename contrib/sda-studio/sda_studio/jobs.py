"""Training runs started from the page: one background thread of the studio process each.

Why a thread of the studio and not the browser: the run belongs to the server, so closing the
tab, reloading it or opening a second one changes nothing; every page reads the same
:class:`Job`. Why a thread and not a subprocess: the studio is a host application and takes the
engine's events as they happen (every step, epoch, preview), with no file to poll; the engine's
run-folder lock still guards the folder against every other writer, ``sda train`` in another
terminal included, and a stopped or crashed studio leaves ``last.pt`` to resume from.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sda_core import Engine, SdaError
from sda_core.config.events import EpochMetrics, PreviewEvent, StepMetrics, TrainingCompleteEvent, TrainingStartEvent
from sda_core.training.run_folder import holds_run, lock_holder, saved_an_epoch
from sda_studio.root import StudioError

LOG = logging.getLogger("sda_studio")
#: What a Job's ``status`` may be.
STATUSES = ("starting", "training", "stopping", "finished", "stopped", "failed")


def describe_holder(folder: Path, holder: Mapping[str, Any]) -> str:
    """One sentence: who is training in ``folder`` (from its lock holder record)."""
    who = f"process {holder['pid']}" if holder.get("pid") else "another process"
    since = f" since {holder['started']}" if holder.get("started") else ""
    command = f" ({holder['command']})" if holder.get("command") else ""
    return (
        f"'{folder.name}' is already {holder.get('action', 'training')} in {who}{since}{command}; "
        "stop that run first, or choose another run folder"
    )


class Job:
    """One training run started from the studio: its thread, engine and what its events said.

    Every attribute is written by the training thread (or a stop request) and read by page
    requests; each is replaced whole, so a reader sees the old value or the new one.
    """

    def __init__(self, data_dir: Path, run_dir: Path, overrides: Mapping[str, Any], resume: bool) -> None:
        self.data_dir = data_dir
        self.run_dir = run_dir
        self.overrides = dict(overrides)
        self.resume = resume
        self.status = "starting"
        self.started = time.time()
        self.start_event: TrainingStartEvent | None = None
        self.last_step: StepMetrics | None = None
        self.last_epoch: EpochMetrics | None = None
        self.previews: list[PreviewEvent] = []
        self.overfitting: list[str] = []
        self.end: TrainingCompleteEvent | None = None
        self.error: str | None = None
        self.engine: Engine | None = None
        self.thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        """Whether the training thread is still running."""
        return self.thread is not None and self.thread.is_alive()

    def on_event(self, event: Any) -> None:
        """The engine's callback (training thread): keep the event; nothing slow here."""
        kind = event.kind
        if kind == "step":
            self.last_step = event
        elif kind == "train_start":
            self.start_event = event
            if self.status == "starting":
                self.status = "training"
        elif kind == "epoch":
            self.last_epoch = event
        elif kind == "preview":
            self.previews.append(event)
        elif kind == "overfitting":
            self.overfitting.append(event.message)
        elif kind == "train_end":
            self.end = event

    def progress(self) -> dict[str, Any]:
        """Epoch, step within it, ETA and items per second, from the latest events."""
        start, step, epoch = self.start_event, self.last_step, self.last_epoch
        return {
            "max_epochs": None if start is None else start.max_epochs,
            "epoch": None if step is None else step.epoch,
            "epoch_step": None if step is None else step.epoch_step,
            "steps_per_epoch": None if step is None else step.steps_per_epoch,
            "items_per_second": None if step is None else step.items_per_second,
            "eta_seconds": None if epoch is None else epoch.eta_seconds,
            "epochs_done": 0 if epoch is None else epoch.epoch,
        }


class Jobs:
    """The training runs of one studio process, by run folder.

    Args:
        engine_factory: makes the Engine of each run (one per run: the stop request and the
            callbacks belong to an engine). Default: the reference and installed plugins, no
            terminal progress display.
    """

    def __init__(self, engine_factory: Callable[[], Engine] | None = None) -> None:
        self._engine_factory = engine_factory or (lambda: Engine(disable=["progress"]))
        self._jobs: dict[Path, Job] = {}
        self._lock = threading.Lock()

    def job(self, run_dir: Path) -> Job | None:
        """The studio's latest job in ``run_dir``, running or ended, or None."""
        return self._jobs.get(Path(run_dir))

    def running(self) -> list[Job]:
        """The jobs whose thread still runs, oldest first."""
        return [job for job in self._jobs.values() if job.alive]

    def preflight(
        self, data_dir: Path, overrides: Mapping[str, Any], engine: Engine | None = None
    ) -> tuple[Any, Any, Any]:
        """Scan ``data_dir`` and resolve its config with ``overrides``, as a run would: (engine,
        summary, config). Raises the engine's DatasetError or ConfigError for the page."""
        engine = engine or self._engine_factory()
        summary = engine.scan(data_dir)
        if not summary.files:
            raise StudioError(
                f"'{data_dir.name}' holds no usable audio file ({len(summary.skipped)} skipped); "
                "add WAV, FLAC, OGG or MP3 files, or upload some"
            )
        config = engine.resolve_config(summary, engine.collect_overrides(data_dir, api=dict(overrides)))
        engine.check_config(config)
        return engine, summary, config

    def start(
        self,
        data_dir: Path,
        run_dir: Path,
        overrides: Mapping[str, Any],
        *,
        resume: bool = False,
        overwrite: bool = False,
    ) -> Job:
        """Start training ``data_dir`` into ``run_dir`` in a background thread and return its Job.

        Refused with a StudioError when the folder is training (from this studio or any other
        process: the run folder's lock says), when a fresh start meets a run already there (resume
        it or overwrite it), or when resuming a folder without a saved epoch. Scan and settings
        errors come before the thread starts.
        """
        run_dir = Path(run_dir)
        with self._lock:
            current = self._jobs.get(run_dir)
            if current is not None and current.alive:
                raise StudioError(f"'{run_dir.name}' is already training (started from this studio); stop it first")
            holder = lock_holder(run_dir)
            if holder is not None:
                raise StudioError(describe_holder(run_dir, holder))
            if resume and not saved_an_epoch(run_dir):
                raise StudioError(f"'{run_dir.name}' has no saved epoch to resume; start a new run instead")
            if not resume and not overwrite and holds_run(run_dir):
                raise StudioError(
                    f"'{run_dir.name}' already holds a run; press Resume to continue it, tick "
                    "'replace the run' to start again from scratch, or choose another run folder"
                )
            engine, _summary, _config = self.preflight(data_dir, overrides)
            job = Job(data_dir, run_dir, overrides, resume)
            job.engine = engine
            engine.subscribe(job.on_event)
            job.thread = threading.Thread(
                target=self._train, args=(job, overwrite), name=f"sda-studio-train-{run_dir.name}", daemon=True
            )
            self._jobs[run_dir] = job
            job.thread.start()
            return job

    def stop(self, run_dir: Path) -> Job:
        """Ask the studio's run in ``run_dir`` to stop (it saves ``last.pt`` and ends)."""
        job = self._jobs.get(Path(run_dir))
        if job is None or not job.alive:
            raise StudioError(f"'{Path(run_dir).name}' is not training from this studio; nothing to stop")
        job.status = "stopping"
        assert job.engine is not None
        job.engine.request_stop()
        return job

    def stop_all(self, timeout: float = 30.0) -> None:
        """Ask every run to stop and wait up to ``timeout`` seconds for them (the studio closing)."""
        for job in self.running():
            if job.engine is not None:
                job.engine.request_stop()
        deadline = time.monotonic() + timeout
        for job in self.running():
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))

    @staticmethod
    def _train(job: Job, overwrite: bool) -> None:
        assert job.engine is not None
        try:
            result = job.engine.train(
                job.data_dir, job.run_dir, job.overrides, resume=job.resume, overwrite=overwrite and not job.resume
            )
            job.status = "stopped" if result.interrupted else "finished"
        except SdaError as error:  # RunFolderBusyError too: another writer took the folder since the check
            job.error = str(error)
            job.status = "failed"
        except Exception as error:  # a bug; the page shows one line, the studio's log the rest
            job.error = f"training failed: {type(error).__name__}: {error}"
            job.status = "failed"
            LOG.exception("training of %s failed", job.run_dir)
