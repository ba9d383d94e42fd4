"""The training loop: data and model from the hooks, events out, checkpoints you can resume.

One call of :func:`train` scans the data folder, resolves the config (or restores it from the
run's last checkpoint), builds the loaders and the model through the plugins, and trains until
``max_epochs``, an early stop, a signal or a host's stop request. Every epoch ends with
``checkpoints/last.pt`` (and ``best.pt`` on a new best validation loss) written atomically, so a
run killed at any moment resumes from its last complete epoch. Under torchrun the same call trains
one run on every process with DistributedDataParallel (:mod:`sda_core.training.distributed`).
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
import warnings
from collections.abc import Mapping
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import attrs
import torch

from sda_core.atomic import copy_atomic, remove_stale_temporaries, write_text_atomic
from sda_core.config import TrainingConfig, apply_overrides, get_effective_preview_interval
from sda_core.config.dataset import DatasetSummary, FileSplit
from sda_core.config.events import (
    EpochMetrics,
    EvaluationEvent,
    StepMetrics,
    TrainingCompleteEvent,
    TrainingStartEvent,
)
from sda_core.config.history import MetricsHistory
from sda_core.config.overrides import collect_overrides
from sda_core.config.training_config import WORLD_SIZE_KEY, stored_config
from sda_core.data.chunks import chunk_successors
from sda_core.data.loaders import create_data_loaders
from sda_core.data.prefetch import EpochPrefetcher
from sda_core.data.scan import require_usable, scan_folder
from sda_core.data.splits import reconcile_split
from sda_core.errors import ConfigError, DatasetError, PeerStopped, PluginError, TrainingError
from sda_core.hooks.facade import Hooks, as_hooks
from sda_core.serialization import to_jsonable
from sda_core.training.averaging import WeightAverage
from sda_core.training.checkpoints import BEST, LAST, CheckpointError, load_checkpoint, save_checkpoint
from sda_core.training.conformance import CHECK_BATCH, check_losses, check_model, check_model_interface, named
from sda_core.training.distributed import SINGLE, Distributed
from sda_core.training.generation import accepts_keyword
from sda_core.training.model import LOSS_KEY, SAMPLER_FIT_CHUNKS, SamplerFitting, objective_of
from sda_core.training.provenance import (
    PROVIDED,
    check_provider,
    load_model_weights,
    provider_record,
    record_providers,
    recorded_providers,
    require_provider,
    write_providers,
)
from sda_core.training.run_folder import RunLock, RunPaths, default_run_dir, holds_run, prepare_run_folder

#: Settings that shape the model or the data; a resumed run cannot change them.
FIXED_ON_RESUME = (
    "preset",
    "sample_rate",
    "channels",
    "chunk_seconds",
    "latent_dim",
    "validation_fraction",
    "split_seed",
    "model",
)
#: Validation chunks reconstructed at every preview.
PREVIEW_REFERENCES = 4
#: Share of all steps spent warming the learning rate up (then a cosine decay to 10%).
WARMUP_FRACTION = 0.05


@attrs.frozen(kw_only=True)
class TrainingResult:
    """What a call of :func:`train` achieved.

    Attributes:
        run_dir: the run folder.
        reason: why it ended ("max_epochs", "early stop: ...", "interrupted", "stop_requested").
        epochs_completed: the last fully completed epoch.
        steps: global optimiser steps so far (across resumes).
        best_epoch: epoch of the lowest validation loss (None without validation).
        best_val_loss: that loss.
        initial_val_loss: the untrained model's validation loss, measured before epoch 1.
        final_train_loss: training loss of the last epoch.
        final_val_loss: validation loss of the last epoch.
        checkpoints: "last" / "best" -> path.
        duration: seconds this call took.
        evaluation: the figures of the short evaluation that ended the run (the
            :class:`~sda_core.config.events.EvaluationEvent` sent to ``sda_on_evaluation``), or None
            when none ran (``evaluation_sounds = 0``, an interrupted run, a failed evaluation).
    """

    run_dir: str
    reason: str
    epochs_completed: int
    steps: int
    best_epoch: int | None
    best_val_loss: float | None
    initial_val_loss: float | None
    final_train_loss: float | None
    final_val_loss: float | None
    checkpoints: dict[str, str]
    duration: float
    evaluation: EvaluationEvent | None = None

    @property
    def interrupted(self) -> bool:
        return self.reason in ("interrupted", "stop_requested")

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def select_device(requested: str | torch.device) -> torch.device:
    """``auto``: cuda, then mps, then cpu. An explicit device must be available here."""
    name = str(requested)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        here = ", ".join(kind for kind, ok in available.items() if ok)
        raise ConfigError("device", name, f"a device available on this machine ({here}) or auto")
    return device


def resume_config(saved: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> TrainingConfig:
    """The saved config with the new overrides; settings that shape model or data cannot change."""
    config = stored_config(saved)
    updated = apply_overrides(config, overrides)
    for key in FIXED_ON_RESUME:
        if getattr(updated, key) != getattr(config, key):
            raise ConfigError(
                key,
                getattr(updated, key),
                f"{getattr(config, key)!r} as when the run started (start a new run to change it)",
            )
    return updated


def checkpoint_space(paths: RunPaths, parameter_bytes: int) -> int:
    """Free bytes a run's checkpoints need at their peak: last.pt, best.pt and the temporary file
    of the one being written (each holds the weights, their average and AdamW's two moments: four
    times the parameters), less the existing checkpoints they replace, plus 16 MB for previews and
    JSON."""
    checkpoint = 4 * parameter_bytes + 2**20
    existing = sum(path.stat().st_size for path in (paths.last, paths.best) if path.is_file())
    return max(3 * checkpoint - existing, checkpoint) + 16 * 2**20


def check_output_folder(paths: RunPaths, needed_bytes: int) -> None:
    """Fail before training, in one sentence, when the run folder is unwritable or too full."""
    try:
        paths.checkpoints.mkdir(parents=True, exist_ok=True)
        probe = paths.checkpoints / ".write-test"
        probe.write_bytes(b"sda")
        probe.unlink()
    except OSError as error:
        raise TrainingError(f"cannot write to the run folder '{paths.root}': {error.strerror or error}") from None
    remove_stale_temporaries(paths.checkpoints, (LAST, BEST))  # left by a run killed mid-write
    remove_stale_temporaries(
        paths.root, (paths.config.name, paths.dataset.name, paths.history.name, paths.providers.name)
    )
    free = shutil.disk_usage(paths.checkpoints).free
    if free < needed_bytes:
        raise TrainingError(
            f"the disk holding '{paths.root}' has {free / 2**20:.0f} MB free; checkpoints need about "
            f"{needed_bytes / 2**20:.0f} MB"
        )


def warmup_cosine(total_steps: int, warmup_steps: int, floor: float = 0.1):
    """Learning-rate factor per step: linear warm-up, then cosine decay to ``floor``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _resume_schedule(scheduler: Any, saved: dict, history: MetricsHistory, steps_per_epoch: int, schedule) -> None:
    """Load a resumed run's learning-rate schedule into ``scheduler`` (its optimizer loaded).

    The schedule is laid out over ``max_epochs * steps_per_epoch`` steps. When the steps per
    epoch changed (resumed under torchrun with another number of processes: N processes make
    about 1/N of one process's steps), the saved position is moved to the same point of the run
    in epochs (``position * now / before``) and the next step's learning rate taken from there;
    unchanged (always, in one process), the state loads as saved."""
    before = history.steps[-1].steps_per_epoch if history.steps else steps_per_epoch
    if before == steps_per_epoch or "last_epoch" not in saved:
        scheduler.load_state_dict(saved)
        return
    position = round(saved["last_epoch"] * steps_per_epoch / before)
    rates = [base * schedule(position) for base in saved["base_lrs"]]
    scheduler.load_state_dict({**saved, "last_epoch": position, "_last_lr": rates})
    for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
        group["lr"] = rate  # the loaded optimizer holds the rate of the old position


class Trainer:
    """One training invocation. Use :func:`train` (or ``Engine.train``) rather than this class."""

    def __init__(
        self,
        hooks: Hooks,
        data_dir: str | Path,
        run_dir: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        resume: bool = False,
        overwrite: bool = False,
        device: str | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.hooks = as_hooks(hooks)
        self.data_dir = Path(data_dir)
        self.paths = RunPaths(Path(run_dir) if run_dir is not None else default_run_dir(data_dir))
        self.overrides = dict(overrides or {})
        self.resume = resume
        self.overwrite = overwrite
        self.requested_device = device
        self.stop_event = stop_event or threading.Event()
        self.stop_reason = "stop_requested"
        self.validation_unreadable = False
        self._lock: RunLock | None = None
        self.dist = SINGLE  # this process's place in a torchrun launch, set by run()
        self._agreed_stop = False

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> TrainingResult:
        """Train while holding the run folder's lock; a fresh run checks that the folder holds no
        other run (or empties it, with ``overwrite``) once its data and settings are usable.

        Under torchrun (:mod:`sda_core.training.distributed`) every process trains, and rank 0
        alone holds the lock, writes the run folder and emits events."""
        if self.resume and self.overwrite:
            raise TrainingError(
                "resume and overwrite exclude each other: resume continues the run, overwrite deletes it"
            )
        self.dist = Distributed.from_environment()
        self.hooks.rank = self.dist.rank
        try:
            with ExitStack() as closing:
                with self.dist.together():
                    if self.dist.is_main:
                        self._lock = closing.enter_context(self._acquire_lock())
                return self._run(closing)
        finally:
            self._lock = None
            self.hooks.rank = 0

    def _acquire_lock(self) -> RunLock:
        lock = RunLock(self.paths.root, action="resuming" if self.resume else "training")
        try:
            return lock.acquire()
        except OSError as error:
            raise TrainingError(
                f"cannot write to the run folder '{self.paths.root}': {error.strerror or error}"
            ) from None

    def _prepare_fresh_folder(self) -> None:
        """Refuse a folder holding another run, or empty it with ``overwrite``; called once the
        data and settings are known to be usable, before anything is written."""
        if self.overwrite and _inside(self.data_dir, self.paths.root):
            raise TrainingError(
                f"the data folder '{self.data_dir}' is inside the run folder "
                f"'{self.paths.root}'; --overwrite would delete it"
            )
        prepare_run_folder(self.paths.root, overwrite=self.overwrite)

    def _plan(self) -> tuple[DatasetSummary, dict[str, Any] | None, TrainingConfig, FileSplit | None, MetricsHistory]:
        """What a run starts from, decided once (by rank 0 under torchrun): the scan, the state of
        the run it resumes, the config, the split (None: asked of the plugins with the loaders)
        and the history; a fresh run's folder is made ready for it."""
        summary = scan_folder(self.data_dir)
        require_usable(summary)
        state = self._load_resume_state()
        if state is not None:
            # the plugin that built the model must be here before anything is built
            require_provider(recorded_providers(state), "model", self.hooks, self.paths.root, "resume it")
            # the saved config, changed only by the overrides passed now (an edited sda.toml is not
            # read again: docs/user-guide.md)
            config = resume_config(state["config"], self.overrides)
            split = self._reconciled_split(state, summary)
            history = MetricsHistory.from_dict(state["history"])
        else:
            config = self.hooks.resolve_config(summary, collect_overrides(self.data_dir, api=self.overrides))
            split, history = None, MetricsHistory.for_config(config)
        # every plugin may veto the settings before anything runs
        self.hooks.check_config(config, resumed_from=None if state is None else str(self.paths.root))
        if state is None:
            self._prepare_fresh_folder()
            if self.dist.active:  # split once, here, for every rank
                split = self.hooks.split_files(summary.files, config)
        return summary, state, config, split, history

    def _run(self, closing: ExitStack) -> TrainingResult:
        """The run; ``closing`` releases what it started (the batch prefetcher) when it ends."""
        started = time.perf_counter()
        dist = self.dist
        plan = None
        with dist.together():
            if dist.is_main:
                plan = self._plan()
        summary, state, config, split, history = dist.broadcast(plan)
        recorded = recorded_providers(state) if state is not None else {}
        with dist.together():
            if not dist.is_main:
                self.hooks.check_config(config)  # what plugins set up there, they set up on every rank
            device = dist.device(select_device(self.requested_device or config.device))
            amp = _Precision(device, config.precision)  # a precision this device lacks stops here
            # initialisation, dropout and the model's sampling draw from torch's global generator: seed
            # it, so a seed gives one run (a resumed run restores the generator from its checkpoint)
            torch.manual_seed(config.seed)
            train_loader, val_loader, split = create_data_loaders(
                summary, config, self.hooks, split=split, device=device, rank=dist.rank, world_size=dist.world_size
            )
            if state is not None:
                check_provider(recorded, "dataset", self.hooks, self.paths.root, "resume it")
            # whether the validation loss chooses best.pt (also after a resume, with the resumed config)
            history.validation_chunks = len(val_loader.dataset)
            history.min_validation_chunks = config.min_validation_chunks
            model = self.hooks.make_model(config, check=lambda answer: check_model_interface(answer, config))
            if state is not None:
                check_provider(recorded, "model", self.hooks, self.paths.root, "resume it")
            model = model.to(device)
            references = _references(val_loader.dataset, train_loader.dataset)
            # one call of each method on real chunks, before anything is written: a model that does
            # not follow the interface is one sentence naming its plugin, and leaves no run behind
            self.hooks.verify("sda_make_model", check_model, model, config, references[:CHECK_BATCH])
            providers = {
                **recorded,
                **record_providers(self.hooks, ("model", "dataset") if state is not None else tuple(PROVIDED)),
            }
            parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
            if dist.is_main:
                check_output_folder(self.paths, needed_bytes=checkpoint_space(self.paths, parameter_bytes))

            steps_per_epoch = len(train_loader)
            if steps_per_epoch == 0:
                raise TrainingError("the training set yields no batch; lower batch_size")
            if state is not None:
                # "model" holds the averaged weights (what generation uses), "training_model" the
                # trained ones; a checkpoint without the latter (ema_decay = 0, or an older run) has
                # one. Loaded before the optimiser is made: a model may take its layout from the
                # checkpoint (an older layout of the same model), and the optimiser must hold the
                # parameters that layout has.
                load_model_weights(
                    model,
                    state.get("training_model", state["model"]),
                    self.paths.last,
                    provider_record(self.hooks, "model"),
                )
            optimizer = torch.optim.AdamW(
                model.parameters(), lr=config.learning_rate, weight_decay=config.regularization.weight_decay
            )
            total_steps = config.max_epochs * steps_per_epoch
            schedule = warmup_cosine(total_steps, max(1, int(total_steps * WARMUP_FRACTION)))
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
            start_epoch = history.last_epoch + 1
            # the first epoch's batches are made while the run validates and sets up; each next epoch's
            # while the epoch before ends (its last steps, validation, checkpoints)
            batches = closing.enter_context(EpochPrefetcher(train_loader, range(start_epoch, config.max_epochs + 1)))
            if state is not None:
                optimizer.load_state_dict(state["optimizer"])
                _resume_schedule(scheduler, state["scheduler"], history, steps_per_epoch, schedule)
                amp.load_state_dict(state.get("scaler"))
                torch.set_rng_state(state["rng"]["torch"])
                initial_val_loss = state.get("initial_val_loss")
                step = int(state["step"])
                if dist.is_main:
                    with _writing(self.paths.providers):
                        write_providers(self.paths.root, providers)
                    self._record_world_size()
            else:
                if dist.is_main:
                    self._write_run_files(config, summary, split, providers)
                initial_val_loss, step = None, 0
            if not dist.is_main:  # dropout and sampling noise of its own on every rank
                torch.manual_seed(hash((config.seed, dist.rank, start_epoch)) % 2**63)
        if state is None:
            initial_val_loss = self._validate(model, val_loader, epoch=1, amp=amp)[0]
        average = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
        if average is not None and state is not None:
            average.model.load_state_dict(state["model"])
        run = _RunState(
            config=config,
            split=split,
            history=history,
            model=model,
            average=average,
            optimizer=optimizer,
            scheduler=scheduler,
            amp=amp,
            step=step,
            initial_val_loss=initial_val_loss,
            train_files=tuple(info for info in summary.files if info.path in set(split.train)),
            root=str(summary.root),
            providers=providers,
            saved_epoch=history.last_epoch,
            saved_step=step,
            batches=batches,
            forward=dist.wrap(model, device, references[:CHECK_BATCH], start_epoch),
        )

        with dist.together():  # a plugin may veto the run as it starts (docs/hooks.md)
            self.hooks.emit(
                TrainingStartEvent(
                    run_dir=str(self.paths.root),
                    config=config.to_dict(),
                    train_files=len(split.train),
                    validation_files=len(split.validation),
                    validation_chunks=history.validation_chunks,
                    start_epoch=min(start_epoch, config.max_epochs),
                    max_epochs=config.max_epochs,
                    steps_per_epoch=steps_per_epoch,
                    device=str(device),
                    resumed=state is not None,
                    world_size=dist.world_size,
                    rank=dist.rank,
                )
            )
        reason = "max_epochs"
        last_preview = ran = 0
        try:
            for epoch in range(start_epoch, config.max_epochs + 1):
                ran += 1
                completed = self._train_epoch(run, val_loader, epoch, steps_per_epoch, device)
                if not completed:
                    reason = self.stop_reason
                    break
                stop = self._end_of_epoch(run, epoch)
                if epoch % get_effective_preview_interval(config) == 0:
                    with dist.together():  # a preview that fails on rank 0 stops every rank
                        if dist.is_main:
                            self._preview(run, epoch, references)
                    last_preview = epoch
                if stop:
                    reason = stop
                    break
                if self._stop_agreed():
                    reason = self.stop_reason
                    break
            if ran and history.last_epoch and last_preview != history.last_epoch and reason != self.stop_reason:
                with dist.together():
                    if dist.is_main:
                        self._fit_sampler(run)
                        self._preview(run, history.last_epoch, references)
        except BaseException as error:
            # the summary reports what is on disk: the history as last.pt holds it
            history.truncate_to_epoch(run.saved_epoch)
            run.step = run.saved_step
            self._emit_despite_strict(self._complete_event(run, f"error: {type(error).__name__}: {error}", started))
            raise
        batches.close()  # before the evaluation: an early stop leaves batches of a next epoch unused
        with dist.together():  # no rank ends (and has torchrun end the others) before the run is saved
            if dist.is_main and (not self.paths.last.exists() or reason == self.stop_reason):
                self._save_last(run)  # an interrupted epoch keeps its weights, not its steps
        evaluation = None
        # every rank waits for rank 0's closing work: a rank that ended first and tore down its
        # process group while rank 0 still had it aborted ("terminate called without an active
        # exception", exit -6) in one CI run
        with dist.together():
            if (
                dist.is_main
                and ran
                and history.last_epoch
                and reason != self.stop_reason
                and not self.stop_event.is_set()
            ):
                try:
                    evaluation = self._evaluate(run, device)
                except BaseException:  # a second Ctrl-C: the checkpoints are on disk, the run ended
                    self.hooks.emit(self._complete_event(run, reason, started))
                    raise
            event = self._complete_event(run, reason, started)
            self.hooks.emit(event)
        return TrainingResult(
            run_dir=event.run_dir,
            reason=event.reason,
            epochs_completed=event.epochs_completed,
            steps=event.steps,
            best_epoch=event.best_epoch,
            best_val_loss=event.best_val_loss,
            initial_val_loss=run.initial_val_loss,
            final_train_loss=event.final_train_loss,
            final_val_loss=event.final_val_loss,
            checkpoints=event.checkpoints,
            duration=event.duration,
            evaluation=evaluation,
        )

    def _evaluate(self, run: "_RunState", device: torch.device) -> EvaluationEvent | None:
        """The short evaluation that ends a finished run: ``evaluation_sounds`` sounds from best.pt
        (``sda evaluate RUN -n COUNT``, seed 0, without the fitted reconstruction, whose gradient
        steps would cost up to a minute more), ``evaluation.json`` written under the lock this run
        holds, then an EvaluationEvent. A stop request skips it; a failure is a warning."""
        count = run.config.evaluation_sounds
        if count == 0:
            return None
        from sda_core.training.evaluation import EvaluationStopped, evaluate_run

        try:
            result = evaluate_run(
                self.paths.root,
                hooks=self.hooks,
                count=count,
                device=device,
                lock=self._lock,
                stop=self.stop_event.is_set,
                fitted=False,
            )
        except EvaluationStopped:
            return None
        except Exception as error:  # the run is complete and saved: its evaluation must not fail it
            warnings.warn(
                f"the evaluation at the end of the run failed ({type(error).__name__}: {error}); the run "
                f"itself is complete. Measure it later with `sda evaluate {self.paths.root}`, or set "
                "evaluation_sounds = 0 to skip it",
                UserWarning,
                stacklevel=2,
            )
            return None
        event = result.to_event()
        self.hooks.emit(event)
        return event

    # -- one epoch -------------------------------------------------------------------------

    def _train_epoch(
        self,
        run: "_RunState",
        val_loader: Any,
        epoch: int,
        steps_per_epoch: int,
        device: torch.device,
    ) -> bool:
        """Train one epoch and validate; False when a stop request cut it short."""
        model, history = run.model, run.history
        model.train()
        batches = run.batches.epoch(epoch)
        epoch_started = time.perf_counter()
        totals = _Totals()
        wait_started = time.perf_counter()
        for epoch_step, batch in enumerate(batches, start=1):
            fetched = time.perf_counter()
            batch = batch.to(device, non_blocking=True)
            with run.amp.autocast():
                losses = model.loss(batch, epoch=epoch) if run.forward is None else run.forward(batch, epoch)
            values = self.hooks.verify("sda_make_model", check_losses, losses, model=named(model))
            loss = losses[LOSS_KEY]
            items = len(batch)
            stopping = False
            if run.forward is not None:  # under torchrun: the step's figures and stop requests of every rank
                shared = self.dist.step(values, items, finite=bool(torch.isfinite(loss)), stop=self._local_stop())
                if shared.nonfinite_ranks:
                    if self.dist.rank not in shared.nonfinite_ranks:
                        raise PeerStopped(shared.nonfinite_ranks, "had a loss that is not finite")
                    raise TrainingError(
                        f"the loss became {loss.item()} at epoch {epoch}, step {epoch_step} (rank {self.dist.rank}); "
                        "last.pt keeps the last good epoch: resume with a lower learning_rate (--set learning_rate=...)"
                    )
                stopping = self._adopt_stop([shared.stop])
                if items * self.dist.world_size != shared.items:  # an epoch's last batch, shared unevenly
                    loss = loss * self.dist.loss_weight(items, shared.items)
                values, items = shared.losses, shared.items
            elif not torch.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss.item()} at epoch {epoch}, step {epoch_step}; last.pt keeps "
                    "the last good epoch: resume with a lower learning_rate (--set learning_rate=...)"
                )
            run.optimizer.zero_grad(set_to_none=True)
            run.amp.backward(loss)
            if model_clip := run.config.regularization.gradient_clip_norm:
                run.amp.unscale(run.optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), model_clip)
            run.amp.step(run.optimizer)
            run.scheduler.step()
            run.step += 1
            if run.average is not None:
                run.average.update(model, run.step)
            objective = objective_of(values)
            totals.add(objective, values, items)
            finished = time.perf_counter()
            metrics = StepMetrics(
                epoch=epoch,
                step=run.step,
                epoch_step=epoch_step,
                steps_per_epoch=steps_per_epoch,
                loss=objective,
                losses=values,
                learning_rate=run.optimizer.param_groups[0]["lr"],
                items_per_second=items / max(finished - wait_started, 1e-9),
                duration=finished - wait_started,
                data_wait=fetched - wait_started,
            )
            history.record_step(metrics)
            self.hooks.emit(metrics)
            if stopping if run.forward is not None else self.stop_event.is_set():
                history.truncate_to_epoch(epoch - 1)
                run.step = history.steps[-1].step if history.steps else run.step - epoch_step
                return False
            wait_started = time.perf_counter()
        train_seconds = time.perf_counter() - epoch_started
        val_started = time.perf_counter()
        val_loss, val_losses = self._validate(run.inference_model, val_loader, epoch=epoch, amp=run.amp)
        now = time.perf_counter()
        metrics = EpochMetrics(
            epoch=epoch,
            step=run.step,
            train_loss=totals.mean(),
            val_loss=val_loss,
            train_losses=totals.components(),
            val_losses=val_losses,
            learning_rate=run.optimizer.param_groups[0]["lr"],
            duration=now - epoch_started,
            train_duration=train_seconds,
            val_duration=now - val_started,
        )
        history.record_epoch(metrics)
        history.epochs[-1] = attrs.evolve(metrics, eta_seconds=history.eta_seconds(run.config.max_epochs))
        return True

    def _end_of_epoch(self, run: "_RunState", epoch: int) -> str | None:
        """Events, checkpoints, then the overfitting check and the stop decision, after an epoch.

        A consumer that fails in strict mode ends the run, but only once the epoch is saved: the
        run stays consistent (what the summary reports is on disk) and resumes from that epoch."""
        history, config = run.history, run.config
        failure: Exception | None = None
        try:
            self.hooks.emit(history.epochs[-1], history=history)
        except PluginError as error:  # only strict mode lets a consumer's error through
            failure = error
        decision = None
        if self.dist.is_main:
            try:
                if (
                    history.best_epoch in (epoch, None)
                    or epoch % get_effective_preview_interval(config) == 0
                    or epoch == config.max_epochs
                ):
                    self._fit_sampler(run)  # so best.pt, last.pt and the previews sample from these weights' codes
                self._save_last(run)  # before asking plugins anything: a faulty one cannot cost this epoch
                if history.best_epoch == epoch or history.best_epoch is None:
                    self._save_best(run)
                if failure is not None:
                    raise failure
                warning = self.hooks.check_overfitting(history, config)
                if warning is not None:
                    self.hooks.emit(warning)
                decision = self.hooks.should_stop(history, config)
            except Exception as error:
                if not self.dist.active:
                    raise
                failure = error
        if not self.dist.active:
            return decision
        # rank 0's decision, and every rank's failure or stop request, reach every rank
        answers = self.dist.gather((self._local_stop(), decision, failure is not None))
        if failure is not None:
            raise failure
        failed = [rank for rank, (_stop, _decision, fault) in enumerate(answers) if fault]
        if failed:
            raise PeerStopped(failed)
        self._adopt_stop([stop for stop, _decision, _fault in answers])
        return answers[0][1]

    def _local_stop(self) -> str | None:
        """This process's stop request: its stop reason once asked to stop, else None."""
        return self.stop_reason if self.stop_event.is_set() else None

    def _adopt_stop(self, requests: list[str | None]) -> bool:
        """Under torchrun, take up the stop the ranks asked for together ("interrupted" first):
        every rank then stops at the same step. Returns whether any rank asked."""
        asked = [request for request in requests if request]
        self._agreed_stop = bool(asked)
        if asked:
            self.stop_reason = "interrupted" if "interrupted" in asked else asked[0]
            self.stop_event.set()
        return self._agreed_stop

    def _stop_agreed(self) -> bool:
        """Whether to stop between epochs: a stop request here, or (under torchrun) on any rank as
        the ranks last agreed, so no rank stops alone."""
        return self._agreed_stop if self.dist.active else self.stop_event.is_set()

    @torch.no_grad()
    def _validate(self, model: Any, loader: Any, *, epoch: int, amp: "_Precision") -> tuple[float | None, dict]:
        """Mean objective and components over the fixed validation grid (None without one)."""
        if len(loader.dataset) == 0 or self.validation_unreadable:
            return None, {}
        was_training = model.training
        model.eval()
        totals = _Totals()
        device = next(model.parameters()).device
        unreadable = False
        try:
            for batch in loader:
                with amp.autocast():
                    losses = model.loss(batch.to(device, non_blocking=True), epoch=epoch)
                values = self.hooks.verify(
                    "sda_make_model", check_losses, losses, model=named(model), requires_grad=False
                )
                totals.add(objective_of(values), values, len(batch))
        except DatasetError:  # not one validation file can be read (each is named by its own warning)
            unreadable = True
        finally:
            model.train(was_training)
        if self.dist.active:  # each rank validated its part: add them up, so every rank has the same figures
            parts = self.dist.gather((unreadable, totals.items, totals.objective, totals.parts))
            unreadable = any(part[0] for part in parts)
            totals = _Totals()
            for _unreadable, items, objective, components in parts:
                totals.merge(items, objective, components)
        if unreadable:
            self.validation_unreadable = True
            warnings.warn(
                "not one validation file can be read, so training goes on without validation (no validation "
                "loss, and no early stopping or best checkpoint by it); fix or remove those files and start a "
                "fresh run",
                UserWarning,
                stacklevel=2,
            )
            return None, {}
        return totals.mean(), totals.components()

    @torch.no_grad()
    def _fit_sampler(self, run: "_RunState") -> None:
        """Hand a model with ``fit_sampler`` (:class:`sda_core.training.model.SamplerFitting`) the posterior
        means of the unaugmented training chunks (epoch 0's grid, at most SAMPLER_FIT_CHUNKS evenly
        spread), read once through the dataset provider and kept in memory for the run."""
        model = run.inference_model
        if not isinstance(model, SamplerFitting):
            return
        if run.fit_chunks is None:
            dataset = self.hooks.make_dataset(run.train_files, run.config, "train", None, root=run.root)
            count = len(dataset)
            picks = sorted(
                {round(i * count / SAMPLER_FIT_CHUNKS) for i in range(SAMPLER_FIT_CHUNKS)} & set(range(count))
            )
            keyed = getattr(dataset, "epoch_keys", False)
            run.fit_chunks = torch.stack([dataset[(0, i)] if keyed else dataset[i] for i in picks]) if picks else None
            if run.fit_chunks is None:
                return
            run.fit_successors = chunk_successors(dataset, picks)
        device = next(model.parameters()).device
        codes = torch.cat([model.encode(batch.to(device)) for batch in run.fit_chunks.split(64)])
        if run.fit_successors is not None and accepts_keyword(model.fit_sampler, "successors"):
            model.fit_sampler(codes, successors=run.fit_successors)
        else:
            model.fit_sampler(codes)

    @torch.no_grad()
    def _preview(self, run: "_RunState", epoch: int, references: torch.Tensor) -> None:
        directory = self.paths.previews / f"epoch_{epoch:04d}"
        directory.mkdir(parents=True, exist_ok=True)
        model = run.inference_model
        was_training = model.training
        model.eval()
        event = self.hooks.render_previews(model, run.config, epoch, str(directory), references)
        model.train(was_training)
        if event is not None:
            self.hooks.emit(event)

    # -- files -----------------------------------------------------------------------------

    def _load_resume_state(self) -> dict[str, Any] | None:
        if not self.resume:
            return None
        if not self.paths.last.exists():
            if holds_run(self.paths.root):  # a start that ended before its first epoch was saved
                raise CheckpointError(
                    f"nothing to resume: the run in '{self.paths.root}' saved no epoch ('{self.paths.last}' does not "
                    f"exist); train it afresh with --out {self.paths.root}"
                )
            raise CheckpointError(f"nothing to resume: '{self.paths.last}' does not exist")
        return load_checkpoint(self.paths.last)

    def _reconciled_split(self, state: Mapping[str, Any], summary: DatasetSummary) -> FileSplit:
        reconciliation = reconcile_split(FileSplit.from_dict(state["split"]), summary.files)
        for sentence in reconciliation.describe():
            warnings.warn(sentence, UserWarning, stacklevel=3)
        return reconciliation.split

    def _write_run_files(
        self, config: TrainingConfig, summary: DatasetSummary, split: FileSplit, providers: Mapping[str, Any]
    ) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        dataset = {"data_dir": str(self.data_dir.resolve()), "scan": summary.to_dict(), "split": split.to_dict()}
        recorded = config.to_dict()
        if self.dist.active:
            recorded[WORLD_SIZE_KEY] = self.dist.world_size
        with _writing(self.paths.config):
            write_text_atomic(self.paths.config, json.dumps(recorded, indent=2) + "\n")
        with _writing(self.paths.dataset):
            write_text_atomic(self.paths.dataset, json.dumps(dataset, indent=2) + "\n")
        with _writing(self.paths.providers):
            write_providers(self.paths.root, providers)

    def _record_world_size(self) -> None:
        """Keep ``world_size`` in config.json that of the latest start (resumed with another number
        of processes); absent for one process, so a run that never ran under torchrun is unchanged."""
        try:
            recorded = json.loads(self.paths.config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # a damaged or missing config.json is not this step's to mend
        if not isinstance(recorded, dict) or recorded.get(WORLD_SIZE_KEY, 1) == self.dist.world_size:
            return
        recorded.pop(WORLD_SIZE_KEY, None)
        if self.dist.active:
            recorded[WORLD_SIZE_KEY] = self.dist.world_size
        with _writing(self.paths.config):
            write_text_atomic(self.paths.config, json.dumps(recorded, indent=2) + "\n")

    def _save_last(self, run: "_RunState") -> None:
        """last.pt, then history.json (the checkpoint holds the history too)."""
        history = run.history.to_dict()  # once for both files: it grows with every step
        self._save(run, self.paths.last, history)
        run.saved_epoch, run.saved_step = run.history.last_epoch, run.step
        with _writing(self.paths.history):
            write_text_atomic(self.paths.history, run.history.to_json(history))

    def _save_best(self, run: "_RunState") -> None:
        """best.pt, once last.pt holds the same epoch: a byte copy of it (0.05 s for the 19 MB of a
        default real-sound run, where serialising the same state again took 0.13 s)."""
        with _writing(self.paths.best):
            copy_atomic(self.paths.last, self.paths.best)

    def _save(self, run: "_RunState", path: Path, history: dict[str, Any]) -> None:
        state = {
            "model": run.inference_model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.amp.state_dict(),
            "rng": {"torch": torch.get_rng_state()},
            "epoch": run.history.last_epoch,
            "step": run.step,
            "config": run.config.to_dict(),
            "split": run.split.to_dict(),
            "history": history,
            "initial_val_loss": run.initial_val_loss,
            "model_class": f"{type(run.model).__module__}.{type(run.model).__qualname__}",
            "providers": run.providers,
        }
        if run.average is not None:
            state["training_model"] = run.model.state_dict()
        with _writing(path):
            save_checkpoint(path, state)

    def _emit_despite_strict(self, event: Any) -> None:
        """Emit an event on the way out of a failed run: a consumer failing again (strict mode)
        must not replace the error that ended the run."""
        try:
            self.hooks.emit(event)
        except PluginError:
            pass

    def _complete_event(self, run: "_RunState | None", reason: str, started: float) -> TrainingCompleteEvent:
        checkpoints = {
            name: str(path) for name, path in (("last", self.paths.last), ("best", self.paths.best)) if path.exists()
        }
        if run is None:
            return TrainingCompleteEvent(
                reason=reason,
                epochs_completed=0,
                run_dir=str(self.paths.root),
                checkpoints=checkpoints,
                duration=time.perf_counter() - started,
            )
        history = run.history
        last = history.epochs[-1] if history.epochs else None
        return TrainingCompleteEvent(
            reason=reason,
            epochs_completed=history.last_epoch,
            steps=run.step,
            best_epoch=history.best_epoch,
            best_val_loss=history.best_val_loss,
            final_train_loss=last.train_loss if last else None,
            final_val_loss=last.val_loss if last else None,
            run_dir=str(self.paths.root),
            checkpoints=checkpoints,
            duration=time.perf_counter() - started,
        )


@attrs.define(kw_only=True)
class _RunState:
    config: TrainingConfig
    split: FileSplit
    history: MetricsHistory
    model: Any
    average: WeightAverage | None
    optimizer: Any
    scheduler: Any
    amp: "_Precision"
    step: int
    initial_val_loss: float | None
    batches: Any = None  # the EpochPrefetcher of the training batches
    train_files: tuple = ()
    root: str = ""
    fit_chunks: Any = None  # the unaugmented training chunks handed to fit_sampler, read once
    fit_successors: Any = None  # for each of them, the position of the chunk that follows it, or -1
    providers: dict = attrs.Factory(dict)  # role -> the plugin that answered (sda_core.training.provenance)
    saved_epoch: int = 0  # the last epoch last.pt holds, and its step
    saved_step: int = 0
    forward: Any = None  # under torchrun: model.loss through DistributedDataParallel (Distributed.wrap)

    @property
    def inference_model(self) -> Any:
        """The weights a run validates, previews, fits its sampler on and saves as "model": the
        average (``ema_decay`` > 0), else the trained model."""
        return self.model if self.average is None else self.average.model


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (symbolic links resolved)."""
    return path.resolve().is_relative_to(folder.resolve())


@contextmanager
def _writing(path: Path):
    """Turn a failed write of a run file (a full disk, a vanished mount) into one sentence; the
    write is atomic, so the file written before stays whole."""
    try:
        yield
    except OSError as error:
        raise TrainingError(
            f"cannot write '{path}' ({error.strerror or error}); the files saved before are intact, so "
            "the run resumes from its last saved epoch (--resume) once that is fixed"
        ) from None


class _Totals:
    """Batch-size-weighted means of the objective and the named loss components."""

    def __init__(self) -> None:
        self.items = 0
        self.objective = 0.0
        self.parts: dict[str, float] = {}

    def add(self, objective: float, parts: Mapping[str, float], items: int) -> None:
        self.items += items
        self.objective += objective * items
        for key, value in parts.items():
            self.parts[key] = self.parts.get(key, 0.0) + value * items

    def merge(self, items: int, objective: float, parts: Mapping[str, float]) -> None:
        """Add the sums of another ``_Totals`` (another rank's)."""
        self.items += items
        self.objective += objective
        for key, value in parts.items():
            self.parts[key] = self.parts.get(key, 0.0) + value

    def mean(self) -> float:
        return self.objective / max(self.items, 1)

    def components(self) -> dict[str, float]:
        return {key: value / max(self.items, 1) for key, value in self.parts.items()}


class _Precision:
    """The ``precision`` setting on a device: autocast and, for fp16, the gradient scaler.

    ``auto`` is mixed precision on CUDA (bf16 where supported, else fp16 with a grad scaler) and
    fp32 elsewhere; ``fp32`` never autocasts; ``bf16`` and ``fp16`` need CUDA (bf16 a GPU that
    supports it), else :class:`~sda_core.errors.ConfigError`.
    """

    def __init__(self, device: torch.device, precision: str = "auto") -> None:
        cuda = device.type == "cuda"
        if precision in ("bf16", "fp16") and not cuda:
            raise ConfigError(
                "precision", precision, f"auto or fp32 when training on {device.type} (bf16 and fp16 need cuda)"
            )
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise ConfigError("precision", precision, "fp16, fp32 or auto: this GPU has no bf16")
        self.enabled = cuda and precision != "fp32"
        bf16 = precision == "bf16" or (precision == "auto" and self.enabled and torch.cuda.is_bf16_supported())
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.enabled and self.dtype == torch.float16 else None

    def autocast(self):
        return torch.autocast("cuda", dtype=self.dtype) if self.enabled else nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def unscale(self, optimizer: Any) -> None:
        if self.scaler:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: Any) -> None:
        if self.scaler:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler and state:
            self.scaler.load_state_dict(state)


def _references(validation: Any, train: Any) -> torch.Tensor:
    """The first chunks of the validation set (the training set's when it has none, or none of its
    files can be read), stacked, for reconstructions."""
    dataset = validation if len(validation) else train
    try:
        return _first_chunks(dataset)
    except DatasetError:
        if dataset is train:
            raise
        return _first_chunks(train)


def _first_chunks(dataset: Any) -> torch.Tensor:
    """The first chunks of a dataset (epoch 0: the fixed grid), stacked."""
    count = min(PREVIEW_REFERENCES, len(dataset))
    return torch.stack(
        [dataset[(0, index)] if getattr(dataset, "epoch_keys", False) else dataset[index] for index in range(count)]
    )
