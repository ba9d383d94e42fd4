"""The TensorBoard logger: an sda consumer plugin writing one event folder per run.

Everything goes through the public API of tensorboardX's ``SummaryWriter`` (and the ``FileWriter``
it exposes as ``writer.file_writer``) into ``<run>/tensorboard`` (or ``[plugins.tensorboard]
log_dir``); records are checksummed natively (the ``crc32c`` package):

=================================  =======================  ==========================================
tag                                x axis                   what
=================================  =======================  ==========================================
``step/loss``                      global step              the objective of each optimiser step
``step_losses/<name>``             global step              each named loss component of the step
``step/learning_rate``             global step              learning rate used for the step
``step/items_per_second``          global step              training throughput of the step
``epoch/train_loss``               epoch                    mean training loss
``epoch/val_loss``                 epoch                    validation loss (when there is a split)
``epoch/overfitting_gap``          epoch                    (val - train) / train
``epoch/learning_rate``            epoch                    learning rate at the end of the epoch
``epoch_train_losses/<name>``      epoch                    training loss components (means)
``epoch_val_losses/<name>``        epoch                    validation loss components (means)
``time/epoch_seconds`` ...         epoch                    epoch, training and validation durations
``time/eta_seconds``               epoch                    whole-run ETA
``overfitting`` (text)             epoch                    every overfitting warning, with its advice
``preview/<kind>/<file>`` (audio)  epoch                    each preview WAV (mono mix)
``spectrogram/<kind>/<file>``      epoch                    its mel spectrogram (image)
``run/config`` (text), hparams     0 (resumed: first step)  the resolved config
``evaluation/<figure>``             last epoch               the short evaluation that ends a finished
                                                            run: resemblance, nn_accuracy, copying,
                                                            diversity, reconstruction, validation_...,
                                                            plugins/<metric>
``run/end`` (text)                 last epoch               why the run ended, best epoch, checkpoints
=================================  =======================  ==========================================
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from sda_core import TrainingConfig, hookimpl, plugin_settings
from sda_core import validators as v
from sda_core.errors import ConfigError

if TYPE_CHECKING:  # tensorboardX, torch and numpy load when a run starts writing, not with the plugin
    import numpy as np
    from tensorboardX import SummaryWriter

    from sda_core.config.events import (
        EpochMetrics,
        EvaluationEvent,
        OverfittingWarning,
        PreviewEvent,
        StepMetrics,
        TrainingCompleteEvent,
        TrainingStartEvent,
    )

#: The plugin's name: its entry point, ``--disable-plugin`` name and ``[plugins.NAME]`` table.
PLUGIN_NAME = "tensorboard"
#: Folder inside the run folder the event files go to, unless ``log_dir`` says otherwise.
DEFAULT_SUBDIR = "tensorboard"
#: Buffered steps are written at the latest after this many seconds (by the events' clocks) ...
DRAIN_SECONDS = 5.0
#: ... or once this many are waiting, whichever comes first (and always at each epoch's end).
MAX_PENDING = 512
#: Records tensorboardX's writer thread may hold, so writing a batch of steps never waits for it.
MAX_QUEUE = 4096
#: Seconds between the writer thread's own flushes: tensorboardX's ``flush()`` writes out what its
#: thread has written so far, not what is still queued, so this bounds how late TensorBoard sees
#: the end of an epoch.
FLUSH_SECONDS = 2
#: Metrics the hparams dashboard shows beside each run's settings.
HPARAM_METRICS = ("epoch/val_loss", "epoch/train_loss", "epoch/overfitting_gap")
#: Charts of the Custom Scalars dashboard: training and validation loss on one plot.
LAYOUT = {
    "sda": {
        "loss per epoch (train vs validation)": ["Multiline", ["epoch/train_loss", "epoch/val_loss"]],
        "loss per step": ["Multiline", ["step/loss"]],
    }
}


def _folder_path(_instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(attribute.name, value, "a folder path (a non-empty string)")


@attrs.frozen(kw_only=True)
class Settings:
    """The ``[plugins.tensorboard]`` table, validated.

    Attributes:
        steps: log per-step scalars (default true); epoch scalars are always logged.
        audio: log preview audio and their mel spectrograms (default true).
        log_dir: where the event files go (default ``<run folder>/tensorboard``); a relative path
            is taken relative to the run folder, ``~`` is expanded.
    """

    steps: bool = attrs.field(default=True, validator=v.instance_of(bool, "true or false"))
    audio: bool = attrs.field(default=True, validator=v.instance_of(bool, "true or false"))
    log_dir: str | None = attrs.field(default=None, validator=_folder_path)

    def resolve_log_dir(self, run_dir: str | os.PathLike[str]) -> Path:
        """The event-file folder for a run in ``run_dir``."""
        if self.log_dir is None:
            return Path(run_dir) / DEFAULT_SUBDIR
        chosen = Path(self.log_dir).expanduser()
        return chosen if chosen.is_absolute() else Path(run_dir) / chosen


SETTING_KEYS = tuple(field.name for field in attrs.fields(Settings))


def settings_from_config(config: TrainingConfig | Mapping[str, Any]) -> Settings:
    """The ``[plugins.tensorboard]`` settings of a config (a TrainingConfig, or the dict of
    ``TrainingStartEvent.config``), through :func:`sda_core.plugin_settings`: an unknown key or a
    bad value raises :class:`~sda_core.errors.ConfigError` naming it."""
    if not isinstance(config, TrainingConfig):
        config = TrainingConfig.from_dict(config)
    return plugin_settings(config, PLUGIN_NAME, Settings)


class TensorBoardLogger:
    """Writes a run's curves, preview audio and spectrograms as TensorBoard event files.

    A consumer plugin: sda's entry-point loader makes one instance per Engine, and all per-run
    state (the SummaryWriter above all) lives on it, so engines never share a writer and one
    instance may log several runs in a row. View the logs with
    ``tensorboard --logdir runs/NAME/tensorboard`` (or ``--logdir runs`` to compare runs).

    * **Per step** the event is only appended to a buffer (well under a microsecond of work);
      the buffer is written as one multi-value summary per step every few seconds, at every
      epoch's end and when the run ends, so the training loop never waits on protobufs.
    * **Per epoch** the buffer and the epoch scalars are written and the file is flushed;
      TensorBoard shows the epoch within ``FLUSH_SECONDS`` (2 s) of its end.
    * **Resume**: a fresh run writes a TensorBoard restart marker at step 0 (event files an
      earlier run left in the folder are hidden); a resumed run writes it at its first global
      step (``purge_step``), so the steps of an interrupted epoch that is run again replace the
      ones logged before, instead of appearing twice.
    * **End**: ``sda_on_train_end`` (emitted however the run ends, an error included) writes
      what is left and closes the writer.

    Settings, ``[plugins.tensorboard]`` in ``sda.toml`` or ``--set plugins.tensorboard.KEY=...``:
    ``steps`` (bool, default true), ``audio`` (bool, default true), ``log_dir`` (path). Unknown
    keys and bad values raise :class:`~sda_core.errors.ConfigError` from ``sda_check_config``,
    which vetoes the run (fresh or resumed) before anything runs.

    Loading the plugin imports neither torch nor tensorboardX: they are imported when a run opens
    its writer, so ``sda plugins`` and ``sda scan`` stay light.
    """

    name = PLUGIN_NAME

    def __init__(self) -> None:
        self.writer: SummaryWriter | None = None
        self.log_dir: Path | None = None
        self.settings = Settings()
        self._reset()

    # -- hooks -----------------------------------------------------------------------------

    @hookimpl
    def sda_check_config(self, config: TrainingConfig) -> None:
        """Veto a bad ``[plugins.tensorboard]`` table before anything runs (fresh or resumed run)."""
        settings_from_config(config)

    @hookimpl
    def sda_on_train_start(self, event: TrainingStartEvent) -> None:
        self._close()  # a writer left open by a run that never ended
        self._reset()
        self.settings = settings_from_config(event.config)  # checked already by sda_check_config
        self.log_dir = self.settings.resolve_log_dir(event.run_dir)
        self._config = dict(event.config)
        self._drained_at = event.timestamp
        self._active = True
        if event.resumed:
            # Opened at the first step, whose number is where TensorBoard purges from.
            self._on_step = self._open_at_first_step
            self._awaiting_first_step = True
        else:
            self._open(purge_step=0, walltime=event.timestamp)
            self._on_step = self._buffer if self.settings.steps else self._ignore

    @hookimpl
    def sda_on_step(self, event: StepMetrics) -> None:
        self._on_step(event)

    @hookimpl
    def sda_on_epoch(self, event: EpochMetrics) -> None:
        writer = self._writer()
        if writer is None:
            return
        self._drain()
        epoch, walltime = event.epoch, event.timestamp
        self._last_epoch = epoch
        values = {
            "epoch/train_loss": event.train_loss,
            "epoch/val_loss": event.val_loss,
            "epoch/overfitting_gap": event.overfitting_gap,
            "epoch/learning_rate": event.learning_rate,
            "time/epoch_seconds": event.duration,
            "time/train_seconds": event.train_duration,
            "time/validation_seconds": event.val_duration,
            "time/eta_seconds": event.eta_seconds,
        }
        values.update({f"epoch_train_losses/{key}": value for key, value in event.train_losses.items()})
        values.update({f"epoch_val_losses/{key}": value for key, value in event.val_losses.items()})
        self._write_scalars(values, epoch, walltime)
        writer.flush()

    @hookimpl
    def sda_on_overfitting(self, event: OverfittingWarning) -> None:
        writer = self._writer()
        if writer is None:
            return
        text = (
            f"**Epoch {event.epoch}**: the validation loss ({event.val_loss:.4g}) is {event.gap:.0%} above "
            f"the training loss ({event.train_loss:.4g}); threshold {event.threshold:.0%}, "
            f"{event.consecutive_epochs} epoch(s) in a row."
        )
        if event.message:
            text += f"\n\n{event.message}"
        writer.add_text("overfitting", text, global_step=event.epoch, walltime=event.timestamp)

    @hookimpl
    def sda_on_preview(self, event: PreviewEvent) -> None:
        writer = self._writer()
        if writer is None or not self.settings.audio:
            return
        items = [(path, event.kinds[i] if i < len(event.kinds) else "preview") for i, path in enumerate(event.files)]
        if not self._originals_logged:  # the untouched reference chunks, once per session
            self._originals_logged = True
            originals = Path(event.directory).parent / "references"
            if originals.is_dir():
                items += [(str(path), "original") for path in sorted(originals.glob("*.wav"))]
        import numpy as np
        import torch

        from sda_tensorboard.spectrogram import mel_image

        for path, kind in items:
            audio, rate = _read_mono(path)
            if audio is None:
                continue
            tag = f"{_tag_part(kind)}/{_tag_part(Path(path).stem)}"
            clipped = np.clip(audio, -1.0, 1.0)
            writer.add_audio(
                f"preview/{tag}", clipped, global_step=event.epoch, sample_rate=rate, walltime=event.timestamp
            )
            writer.add_image(
                f"spectrogram/{tag}",
                mel_image(torch.from_numpy(clipped), rate),
                global_step=event.epoch,
                walltime=event.timestamp,
                dataformats="CHW",
            )
        writer.flush()

    @hookimpl
    def sda_on_evaluation(self, event: EvaluationEvent) -> None:
        """The end-of-run evaluation's figures as ``evaluation/<name>`` scalars at the run's last epoch."""
        writer = self._writer()
        if writer is None:
            return
        step = self._last_epoch if self._last_epoch is not None else (event.epoch or 0)
        for name, value in event.figures().items():
            writer.add_scalar(f"evaluation/{name}", value, global_step=step, walltime=event.timestamp)
        writer.flush()

    @hookimpl
    def sda_on_train_end(self, event: TrainingCompleteEvent) -> None:
        if not self._active:
            return
        try:
            writer = self._writer()
            if writer is not None:
                self._drain()
                lines = [
                    (
                        f"**{event.reason}** after {event.epochs_completed} epoch(s), {event.steps} steps, "
                        f"{event.duration:.1f} s in this session."
                    )
                ]
                if event.best_epoch is not None and event.best_val_loss is not None:
                    lines.append(f"Best validation loss {event.best_val_loss:.4g} at epoch {event.best_epoch}.")
                for name, path in sorted(event.checkpoints.items()):
                    lines.append(f"Checkpoint {name}: `{path}`")
                writer.add_text(
                    "run/end", "\n\n".join(lines), global_step=event.epochs_completed, walltime=event.timestamp
                )
        finally:
            self._close()
            self._active = False

    # -- per-step paths (swapped at the start of a run) ---------------------------------------

    def _ignore(self, event: StepMetrics) -> None:
        pass

    def _buffer(self, event: StepMetrics) -> None:
        pending = self._pending
        pending.append(event)
        if len(pending) >= MAX_PENDING or event.timestamp - self._drained_at >= DRAIN_SECONDS:
            self._drain()

    def _open_at_first_step(self, event: StepMetrics) -> None:
        self._open(purge_step=event.step, walltime=event.timestamp)
        self._on_step = self._buffer if self.settings.steps else self._ignore
        self._on_step(event)

    # -- writing ---------------------------------------------------------------------------

    def _writer(self) -> SummaryWriter | None:
        """The open writer; a resumed run that has not stepped yet opens it now (no purge)."""
        if self.writer is None and self._active and self._awaiting_first_step:
            self._open(purge_step=None)
            self._on_step = self._buffer if self.settings.steps else self._ignore
        return self.writer

    def _open(self, purge_step: int | None, walltime: float | None = None) -> None:
        assert self.log_dir is not None
        self._awaiting_first_step = False
        self.log_dir.mkdir(parents=True, exist_ok=True)
        _wait_for_a_later_file_name(self.log_dir)
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams as hparams_summaries

        writer = SummaryWriter(
            logdir=str(self.log_dir),
            purge_step=purge_step,
            max_queue=MAX_QUEUE,
            flush_secs=FLUSH_SECONDS,
            # tensorboardX names a file by second and host only: the process and a counter keep
            # two writers opened in the same second (two engines, one folder) apart, as torch does
            filename_suffix=f".{os.getpid()}.{next(_FILE_NUMBERS)}",
        )
        self.writer = writer
        step = purge_step or 0
        writer.add_text(
            "run/config",
            "```json\n" + json.dumps(self._config, indent=2, sort_keys=True) + "\n```",
            global_step=step,
            walltime=walltime,
        )
        # The session's settings, in this run (add_hparams would open a run of its own, holding a
        # copy of each metric): the dashboard reads the metrics from this run's epoch scalars.
        for summary in hparams_summaries(_flat_hparams(self._config), {tag: 0.0 for tag in HPARAM_METRICS}):
            writer.file_writer.add_summary(summary, None, walltime)
        writer.add_custom_scalars(LAYOUT)

    def _drain(self) -> None:
        """Write the buffered steps, one multi-value summary per step.

        Through the writer's public ``FileWriter.add_summary``: ``add_scalar`` per value makes a
        record each (eight a step), which measured +0.6 to 0.9 ms per step in
        ``benchmarks/step_cost.py`` against about +0.1 ms for one record a step.
        """
        pending = self._pending
        if not pending or self.writer is None:
            return
        from tensorboardX.proto.summary_pb2 import Summary

        file_writer = self.writer.file_writer
        for event in pending:
            values = [
                Summary.Value(tag="step/loss", simple_value=event.loss),
                Summary.Value(tag="step/learning_rate", simple_value=event.learning_rate),
                Summary.Value(tag="step/items_per_second", simple_value=event.items_per_second),
            ]
            values += [
                Summary.Value(tag=f"step_losses/{key}", simple_value=value) for key, value in event.losses.items()
            ]
            file_writer.add_summary(Summary(value=values), event.step, event.timestamp)
        self._drained_at = pending[-1].timestamp
        pending.clear()

    def _write_scalars(self, values: Mapping[str, float | None], step: int, walltime: float) -> None:
        """The finite ones of ``values`` as scalars at ``step`` (a missing or NaN value is left out)."""
        assert self.writer is not None
        for tag, value in values.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(tag, value, global_step=step, walltime=walltime)

    def _close(self) -> None:
        writer = self.writer
        if writer is None:
            return
        try:
            self._drain()
        finally:
            self.writer = None
            writer.close()

    def _reset(self) -> None:
        self._pending: list[StepMetrics] = []
        self._drained_at = 0.0
        self._on_step = self._ignore
        self._active = False
        self._config: dict[str, Any] = {}
        self._originals_logged = False
        self._awaiting_first_step = False
        self._last_epoch: int | None = None


_FILE_NUMBERS = itertools.count()


def _wait_for_a_later_file_name(log_dir: Path) -> None:
    """Make sure the event file about to be created sorts after the ones already there.

    TensorBoard reads a folder's event files in name order, and a name starts with the second it
    was created in (``events.out.tfevents.<seconds>.<host>.<pid>.<n>``); within one second the
    order is arbitrary, and a restart marker read before the file it applies to purges nothing.
    A session that starts in the same second as the previous one's file (a quick resume) waits
    for the next second.
    """
    newest = -1
    for path in log_dir.glob("events.out.tfevents.*"):
        created = path.name.split(".")[3]
        if created.isdigit():
            newest = max(newest, int(created))
    delay = newest + 1 - time.time()
    if newest >= 0 and delay > 0:
        time.sleep(min(delay, 1.0))


def _read_mono(path: str) -> tuple[np.ndarray | None, int]:
    """A WAV file as float32 mono (channels averaged), or (None, 0) with a warning."""
    import numpy as np
    import soundfile

    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, ValueError) as error:  # soundfile.LibsndfileError is a RuntimeError
        warnings.warn(f"sda-tensorboard: cannot read preview {path}: {error}", RuntimeWarning, stacklevel=2)
        return None, 0
    if data.shape[0] < 2:
        return None, 0
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(np.nan_to_num(mono), dtype=np.float32), int(rate)


def _tag_part(text: str) -> str:
    """A tag component: no slashes or spaces."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text) or "_"


def _flat_hparams(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config as flat ``{"a.b": scalar}`` pairs the hparams dashboard accepts."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat_hparams(value, prefix=f"{name}."))
        elif isinstance(value, bool | str):
            flat[name] = value
        elif isinstance(value, int | float):
            flat[name] = value if math.isfinite(value) else str(value)
        elif value is None:
            flat[name] = "none"
        else:
            flat[name] = json.dumps(value, default=str)
    return flat
