"""The hook contract of sda: every extension point a plugin can implement.

Plugins implement these with ``@sda_core.hookimpl``. A hook implementation may accept any
subset of a hook's arguments, so hooks evolve only by adding arguments.

Two kinds of hook:

* **Providers** (``firstresult``): the first implementation that returns something other than
  ``None`` wins. Reference plugins are ``trylast``, so a third-party plugin replaces one simply by
  answering. A provider that raises, or answers with the wrong type, is fatal and the error names
  the plugin. A provider may also be wrapped (``wrapper=True``), typically to adjust the
  config ``sda_resolve_config`` answers; behind a wrapper a wrong-typed answer cannot be
  attributed to one plugin, so the error says so.
* **Checks** (``sda_check_config``): every implementation is called with the resolved config
  and may veto it by raising :class:`~sda_core.errors.ConfigError`, which stops the command
  before anything runs; any other exception is fatal, with the plugin's name.
* **Collectors** (``sda_augmentations``, ``sda_evaluate_metrics``, ``sda_cli_commands``): every
  implementation contributes (a list of transforms, a dict of metrics, a list of commands); one that raises or answers something of
  the wrong type is fatal, with the plugin's name.
* **Consumers** (notifications): every implementation is called. The engine calls them one by
  one and isolates them: one that raises is reported once, by name, and neither stops the others
  nor the run (``SDA_STRICT_PLUGINS=1`` makes it fatal). Collector and consumer hooks take no
  wrappers: a plugin that wraps one is rejected when it is registered.

Every hook is called in the main process of the engine. None is ever called per sample inside a
DataLoader worker; the plugin manager never crosses a process boundary.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from sda_core.config.events import EVENT_CLASSES

if TYPE_CHECKING:
    from numpy import ndarray

    from sda_core.config import TrainingConfig
    from sda_core.config.commands import CliCommand
    from sda_core.config.dataset import AudioFileInfo, DatasetSummary, FileSplit
    from sda_core.config.events import (
        EpochMetrics,
        EvaluationEvent,
        OverfittingWarning,
        PreviewEvent,
        StepMetrics,
        TrainingCompleteEvent,
        TrainingStartEvent,
    )
    from sda_core.config.history import MetricsHistory
    from sda_core.data.augmentation import Transform

from sda_core.hooks.markers import PROJECT_NAME, hookimpl, hookspec  # noqa: F401 (public here too)

# -- providers ------------------------------------------------------------------------------


@hookspec(firstresult=True)
def sda_resolve_config(summary: DatasetSummary, overrides: dict[str, Any]) -> TrainingConfig | None:
    """Size a :class:`~sda_core.config.TrainingConfig` to a dataset.

    :param summary: the scan of the data folder (headers only; nothing decoded).
    :param overrides: the user's merged overrides (Python API < sda.toml < ``--set``) as a
        nested dict. The provider should honour them; the engine re-applies them to the answer
        anyway, so user settings always win.
    :return: a TrainingConfig, or None to let the next plugin answer.

    firstresult. Reference: ``adaptive_presets`` (trylast). A ``wrapper=True`` implementation
    may adjust the answer. Called once per run, in the main process, before the split.
    """


@hookspec(firstresult=True)
def sda_split_files(files: tuple[AudioFileInfo, ...], config: TrainingConfig) -> FileSplit | None:
    """Split the usable files into training and validation sets, at file boundaries.

    :param files: the usable files of the scan, sorted by path.
    :param config: the resolved config (``validation_fraction``, ``split_seed``).
    :return: a :class:`~sda_core.config.dataset.FileSplit` (no file in both sets), or None.

    firstresult. Reference: ``file_split`` (trylast). Called once per fresh run in the main
    process; a resumed run reuses the split saved in its run folder and does not call it.
    """


@hookspec(firstresult=True)
def sda_make_dataset(
    files: tuple[AudioFileInfo, ...],
    config: TrainingConfig,
    role: str,
    augment: Any,
    root: str,
) -> Any | None:
    """Build the dataset for one side of the split.

    :param files: the files of this side, sorted (paths relative to ``root``).
    :param config: the resolved config (chunk length, sample rate, channels ...).
    :param role: ``"train"`` or ``"validation"``.
    :param augment: the picklable augmentation pipeline for training, or None (validation, or
        augmentation off). The dataset applies it per item, inside DataLoader workers.
    :param root: absolute path of the data folder the file paths are relative to.
    :return: a ``torch.utils.data.Dataset`` yielding raw waveforms (channels x samples), or None.

    firstresult. Reference: ``chunk_dataset`` (trylast). Called twice per run (train, then
    validation) in the main process; the dataset object is then pickled into workers, the
    plugin manager is not.
    """


@hookspec(firstresult=True)
def sda_make_model(config: TrainingConfig) -> Any | None:
    """Build the generative model to train.

    :param config: the resolved config (``latent_dim``, ``regularization`` ...).
    :return: a ``torch.nn.Module`` following :class:`sda_core.training.model.GenerativeModel`
        (``sample_rate``, ``channels``, ``loss``, ``encode``, ``decode``, ``reconstruct``,
        ``generate``), or None. Checked where it enters the engine
        (:func:`sda_core.training.conformance.check_model`): a model that does not follow it is
        a PluginError naming the plugin, before anything is written.

    firstresult. Reference: ``wave_vae`` and ``mel_vae`` (trylast). Called once per run in the
    main process, before weights are restored on resume, and once by ``sda generate``,
    ``sda evaluate`` and ``sda export`` before they load a run's weights.
    """


@hookspec(firstresult=True)
def sda_check_overfitting(history: MetricsHistory, config: TrainingConfig) -> OverfittingWarning | None:
    """Decide whether the epoch just finished warrants an overfitting warning.

    :param history: the run's history, the just-finished epoch included. Read-only.
    :param config: the resolved config (``overfitting_threshold``, ``overfitting_patience`` ...).
    :return: an :class:`~sda_core.config.events.OverfittingWarning`, which the engine then delivers to
        every ``sda_on_overfitting`` consumer, or None.

    firstresult. Reference: ``overfitting_detector`` (trylast). Called once per epoch in the
    main process, after ``sda_on_epoch``.
    """


@hookspec(firstresult=True)
def sda_render_previews(
    model: Any, config: TrainingConfig, epoch: int, directory: str, references: Any
) -> PreviewEvent | None:
    """Render preview audio of the model as it learns and write it under ``directory``.

    :param model: the model being trained (in eval mode, gradients off, on the training device).
    :param config: the resolved config (sample rate, ``[plugins.previews]`` settings).
    :param epoch: the epoch just finished.
    :param directory: the folder to write into (``previews/epoch_NNNN``), already created.
    :param references: fixed validation chunks (a CPU tensor, batch x channels x samples, the
        same every time) to reconstruct, so successive previews are comparable.
    :return: a :class:`~sda_core.config.events.PreviewEvent` naming the files written, or None.

    firstresult. Reference: ``previews`` (trylast). Called every effective preview interval and
    after the last epoch, in the main process; the engine then calls ``sda_on_preview``.
    """


@hookspec(firstresult=True)
def sda_should_stop(history: MetricsHistory, config: TrainingConfig) -> str | None:
    """Decide whether training stops early, after each epoch.

    :param history: the run's history, the just-finished epoch included. Read-only.
    :param config: the resolved config (``early_stopping``, patience ...).
    :return: a short reason string to stop (it becomes TrainingCompleteEvent.reason), or None
        to go on.

    firstresult. Reference: ``overfitting_detector`` (trylast). Called once per epoch in the
    main process, after the epoch event and before the checkpoint is written.
    """


# -- collectors -----------------------------------------------------------------------------


@hookspec
def sda_augmentations(config: TrainingConfig) -> list[Transform] | None:
    """Contribute augmentation transforms for training chunks.

    :param config: the resolved config (``augmentation_strength``, preset, plugin settings).
    :return: a list of picklable transforms (or None for none). Every plugin's list is
        concatenated in call order and composed into one pipeline.

    Not firstresult: every implementation contributes. Called once per run in the main process;
    the transforms themselves then run inside DataLoader workers, per chunk, with randomness
    derived from (seed, epoch, index).
    """


@hookspec
def sda_evaluate_metrics(
    generated: ndarray, real: ndarray, sample_rate: int, config: TrainingConfig
) -> dict[str, float] | None:
    """Add quality metrics of a trained model's generated sounds to ``sda evaluate``.

    :param generated: the generated sounds, a float32 numpy array (count x samples), mono (channels
        averaged), one chunk each, at ``sample_rate``. Read-only.
    :param real: the run's real training chunks in the same layout (at most a few hundred, drawn
        with the evaluation's seed). Read-only.
    :param sample_rate: the run's sample rate in Hz.
    :param config: the run's resolved TrainingConfig (read your ``[plugins.NAME]`` settings from it).
    :return: a dict of metric name -> number (for example ``{"fad_vggish": 3.2}``), or None for
        nothing. Every plugin's dict is merged into ``evaluation.json``'s ``"plugins"`` table and
        the printed table; a name two plugins both answer is a PluginError naming both, and a value
        that is not a real number is a PluginError naming the plugin.

    Not firstresult: every implementation contributes. Called once per ``sda evaluate`` (and
    :func:`sda_core.training.evaluation.evaluate_run`) in the main process, after the weights-free figures
    (resemblance, copying, diversity, 1-NN accuracy, reconstruction), which sda computes itself.
    """


@hookspec
def sda_cli_commands() -> list[CliCommand] | None:
    """Add subcommands to the ``sda`` command line (``sda studio``, ``sda loop-marker`` ...).

    :return: a list of :class:`~sda_core.config.commands.CliCommand` (name, help, ``run`` called
        with the parsed arguments, ``configure`` adding the command's arguments), or None for
        none. A name that is one of sda's own commands or that another plugin already added is a
        PluginError naming the plugin.

    Not firstresult: every implementation contributes. Called in the main process by the ``sda``
    command, only when the command line names a command sda does not have itself, or asks for
    ``--help`` without a command: the built-in commands never pay for it.
    """


# -- checks -------------------------------------------------------------------------------


@hookspec
def sda_check_config(config: TrainingConfig) -> None:
    """Check the resolved config (typically the plugin's own ``[plugins.NAME]`` table).

    :param config: the resolved config of the run or scan, user overrides applied.
    :return: nothing; veto by raising :class:`~sda_core.errors.ConfigError` (the user sees it as a
        settings error, exit code 2). Any other exception is a plugin fault and names the plugin.

    Not firstresult: every implementation is called, each may veto. Called once in the main
    process after the config is resolved, before anything is read or written: on fresh and
    resumed runs of ``sda train`` / ``Engine.train`` and in ``sda scan``.
    """


# -- consumers ------------------------------------------------------------------------------


@hookspec
def sda_on_train_start(event: TrainingStartEvent) -> None:
    """Training is about to begin (or resume).

    :param event: run folder, resolved config, file counts, epochs and device.

    Consumer: every implementation is called, isolated from the others. Once per invocation of
    training, in the main process, after data and model are ready. A ConfigError raised here is
    not isolated: it vetoes the run (check settings in ``sda_check_config``, which runs earlier).
    """


@hookspec
def sda_on_step(event: StepMetrics) -> None:
    """One optimiser step finished.

    :param event: losses, learning rate, throughput and timing of the step.

    Consumer, isolated. Called after every training step in the main process; keep it cheap.
    """


@hookspec
def sda_on_epoch(event: EpochMetrics, history: MetricsHistory) -> None:
    """One epoch finished, validation included.

    :param event: train and validation losses, durations and the whole-run ETA.
    :param history: the run's history, this epoch included. Read-only.

    Consumer, isolated. Called once per epoch in the main process, before the epoch's
    checkpoints are written and ``sda_should_stop`` is asked; in strict mode a consumer raising
    here ends the run once the epoch is saved.
    """


@hookspec
def sda_on_preview(event: PreviewEvent) -> None:
    """Preview audio was written to disk.

    :param event: the epoch and the WAV files written (samples and reconstructions).

    Consumer, isolated. Called every effective preview interval in the main process.
    """


@hookspec
def sda_on_overfitting(event: OverfittingWarning) -> None:
    """The validation loss has exceeded the training loss by more than the threshold.

    :param event: the gap, the threshold, how many epochs in a row, and advice.

    Consumer, isolated. Called in the main process after the epoch that triggered it.
    """


@hookspec
def sda_on_evaluation(event: EvaluationEvent) -> None:
    """A run that finished training was evaluated: how close its generated sounds are to its data.

    :param event: the figures of ``sda evaluate`` (resemblance, copying, diversity, 1-NN accuracy
        against the training chunks and, where present, the validation chunks; reconstruction;
        plugin metrics), the checkpoint and its epoch, the sounds generated, the seconds it took
        and the ``evaluation.json`` written.

    Consumer, isolated. Called at most once per invocation of training, in the main process, after
    the final checkpoint is on disk and before ``sda_on_train_end``: only when the run completed
    at least one epoch and ended by ``max_epochs`` or an early stop (not interrupted, not asked to
    stop), ``evaluation_sounds`` is above 0 and the evaluation succeeded (a failure is a warning
    and no event). Hosts that call ``evaluate_run`` themselves may emit it too.
    """


@hookspec
def sda_on_train_end(event: TrainingCompleteEvent) -> None:
    """The run ended (finished, stopped early, interrupted or asked to stop).

    :param event: why it ended, the best epoch, final losses and checkpoint paths.

    Consumer, isolated. Called once per invocation in the main process, after the final
    checkpoint is on disk.
    """


# -- the kinds, derived from the specs above and the events ------------------------------------


def _specs() -> dict[str, Any]:
    return {
        name: fn
        for name, fn in globals().items()
        if name.startswith("sda_") and inspect.isfunction(fn) and hasattr(fn, PROJECT_NAME + "_spec")
    }


#: Notification hooks, one per event class (its ``hook`` ClassVar), called one implementation at
#: a time with failure isolation.
CONSUMER_HOOKS: tuple[str, ...] = tuple(cls.hook for cls in EVENT_CLASSES)
#: Hooks whose first non-None answer wins (the ``firstresult`` specs).
PROVIDER_HOOKS: tuple[str, ...] = tuple(
    name for name, fn in _specs().items() if getattr(fn, PROJECT_NAME + "_spec")["firstresult"]
)
#: Hooks every implementation of which may veto the config by raising ConfigError.
CHECK_HOOKS: tuple[str, ...] = ("sda_check_config",)
#: Hooks every implementation of which contributes (a list of transforms, a dict of metrics).
COLLECTOR_HOOKS: tuple[str, ...] = tuple(
    name for name in _specs() if name not in PROVIDER_HOOKS + CONSUMER_HOOKS + CHECK_HOOKS
)
