"""The Engine: one plugin host plus the typed calls a run makes through it.

Host applications embed sda through this class::

    engine = Engine(callbacks=[print])          # reference plugins from entry points
    summary = engine.scan("my_sounds")
    config = engine.resolve_config(summary, overrides={"max_epochs": 20})

``Engine(plugins=[...], load_entrypoints=False)`` builds an engine with exactly the given plugins.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sda_core.config import TrainingConfig
from sda_core.config.dataset import DatasetSummary, FileSplit
from sda_core.config.events import EVENT_CLASSES, Event, MetricsCallback
from sda_core.config.history import MetricsHistory
from sda_core.config.overrides import collect_overrides
from sda_core.errors import PluginError
from sda_core.hooks.facade import REQUIRED_PROVIDERS, Hooks
from sda_core.hooks.host import PluginHost, PluginInfo, PluginPolicy
from sda_core.hooks.markers import hookimpl


def _forward(hook_name: str) -> Any:
    def forward(self: CallbackPlugin, event: Event) -> None:
        self.callback(event)

    forward.__name__ = forward.__qualname__ = hook_name
    return hookimpl(forward)


class CallbackPlugin:
    """Adapts a plain :class:`MetricsCallback` into a consumer plugin receiving every event.

    Its hook implementations are derived from the event classes (``EVENT_CLASSES``, each naming
    its ``hook``): one method per event, each handing the event to the callback.
    """

    def __init__(self, callback: MetricsCallback) -> None:
        self.callback = callback
        self.name = "callback:" + getattr(callback, "__qualname__", type(callback).__name__)


for _event_class in EVENT_CLASSES:
    setattr(CallbackPlugin, _event_class.hook, _forward(_event_class.hook))
del _event_class


class Engine:
    """One sda engine: its own plugin manager and the typed hook calls of a run.

    Args:
        plugins: plugin objects (modules, classes' instances) registered explicitly; they are
            called before entry-point plugins, so they override the reference ones.
        load_entrypoints: load the ``sda`` entry-point group (reference and third-party plugins).
        disable: plugin or distribution names never imported (adds to ``SDA_DISABLE_PLUGINS``).
        callbacks: plain callables that receive every event.
        strict: fail on plugin faults instead of warning (default: ``SDA_STRICT_PLUGINS``).
        trace: trace hook calls to stderr (default: ``SDA_TRACE_HOOKS``).
        environ: environment to read ``SDA_*`` variables from (default: ``os.environ``).
        require_providers: refuse, here, a plugin set that leaves a provider a run needs
            (``sda_split_files``, ``sda_make_dataset``, ``sda_make_model``) unanswered, with a
            :class:`PluginError` naming the hook. Off by default because partial engines are
            legitimate: a host that only scans or only displays events, a test of one plugin, an
            ``SDA_LOAD_PLUGINS`` allowlist. :meth:`train` always checks before anything runs, and
            ``sda train`` / ``sda demo`` build their engine with it on.

    Every hook call goes through :attr:`hooks`, the typed facade (:class:`~sda_core.hooks.facade.Hooks`).
    """

    def __init__(
        self,
        plugins: Iterable[object] = (),
        *,
        load_entrypoints: bool = True,
        disable: Iterable[str] = (),
        callbacks: Iterable[MetricsCallback] = (),
        strict: bool | None = None,
        trace: bool | None = None,
        environ: Mapping[str, str] | None = None,
        require_providers: bool = False,
    ) -> None:
        self._stop_event = threading.Event()
        policy = PluginPolicy.from_environment(environ, disable=disable, strict=strict, trace=trace)
        self.host = PluginHost(policy)
        self.hooks = Hooks(self.host)
        if load_entrypoints:
            self.host.load_entrypoints()
        for plugin in plugins:
            self.host.register(plugin)
        for callback in callbacks:
            self.subscribe(callback)
        self.host.check_pending()
        if require_providers:
            self.require_providers()

    def require_providers(self) -> None:
        """Raise :class:`PluginError` naming the first provider hook a run needs that nobody answers."""
        for hook_name in self.hooks.unanswered_providers(REQUIRED_PROVIDERS):
            raise PluginError(
                hook_name,
                f"no plugin answers {hook_name}, which a run needs; is its reference "
                "plugin disabled? (see `sda plugins`)",
            )

    # -- plugins ---------------------------------------------------------------------------

    @property
    def pm(self):  # noqa: ANN201 - pluggy.PluginManager, for advanced hosts and tests
        """The underlying pluggy PluginManager."""
        return self.host.pm

    def plugin_infos(self) -> list[PluginInfo]:
        """Every plugin seen, with status, distribution, version and hooks."""
        return self.host.plugin_infos()

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register one more plugin object; returns the name it was registered under."""
        name = self.host.register(plugin, name)
        self.host.check_pending()
        return name

    def subscribe(self, callback: MetricsCallback) -> str:
        """Subscribe a plain callable to every event; returns a name for :meth:`unsubscribe`."""
        if not callable(callback):
            raise TypeError(f"a MetricsCallback must be callable, got {type(callback).__name__}")
        return self.host.register(CallbackPlugin(callback))

    def unsubscribe(self, name: str) -> None:
        """Remove a callback or plugin by the name :meth:`subscribe` or :meth:`register` gave."""
        self.host.unregister(name)

    # -- configuration ---------------------------------------------------------------------

    @staticmethod
    def collect_overrides(
        data_dir: str | Path | None,
        api: Mapping[str, Any] | None = None,
        cli: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Merge overrides: ``sda.toml`` in ``data_dir`` < the Python API dict < ``--set``.

        ``api`` wins over ``sda.toml`` exactly as the ``overrides`` of :meth:`train` do, so
        ``resolve_config(scan(data_dir), collect_overrides(data_dir, api=overrides))`` is the
        config ``train(data_dir, out_dir, overrides)`` trains with.
        """
        return collect_overrides(data_dir, api, cli)

    def scan(self, data_dir: str | Path) -> DatasetSummary:
        """Scan a data folder (headers only)."""
        from sda_core.data.scan import scan_folder

        return scan_folder(data_dir)

    def resolve_config(self, summary: DatasetSummary, overrides: Mapping[str, Any] | None = None) -> TrainingConfig:
        """Ask the ``sda_resolve_config`` provider, then re-apply the user's overrides."""
        return self.hooks.resolve_config(summary, overrides)

    def check_config(self, config: TrainingConfig) -> None:
        """Let every plugin veto the config (``sda_check_config``): a :class:`ConfigError` if one does."""
        self.hooks.check_config(config)

    # -- data and model providers ----------------------------------------------------------

    def split_files(self, files: tuple, config: TrainingConfig) -> FileSplit:
        """Ask the ``sda_split_files`` provider for the file-level split."""
        return self.hooks.split_files(files, config)

    def make_dataset(self, files: tuple, config: TrainingConfig, role: str, augment: Any = None, root: str = "") -> Any:
        """Ask the ``sda_make_dataset`` provider for the dataset of one side of the split."""
        return self.hooks.make_dataset(files, config, role, augment, root=root)

    def augmentations(self, config: TrainingConfig) -> list[Any]:
        """Every plugin's augmentation transforms, concatenated in call order."""
        return [item for _plugin, item in self.hooks.augmentations(config)]

    def evaluate_metrics(self, generated: Any, real: Any, sample_rate: int, config: TrainingConfig) -> dict[str, float]:
        """Every plugin's ``sda_evaluate_metrics`` answer merged into one dict of floats."""
        return self.hooks.evaluate_metrics(generated, real, sample_rate, config)

    def cli_commands(self, reserved: Iterable[str] = ()) -> list[Any]:
        """The ``sda`` subcommands plugins add (``sda_cli_commands``), as
        :class:`~sda_core.config.commands.CliCommand` values; a name in ``reserved`` or added
        twice is a :class:`PluginError` naming the plugin."""
        return [command for _plugin, command in self.hooks.cli_commands(reserved)]

    def evaluate(self, run_dir: str | Path, **options: Any) -> Any:
        """``sda evaluate`` from Python: :func:`sda_core.training.evaluation.evaluate_run` with this
        engine's plugins; returns its :class:`~sda_core.training.evaluation.EvaluationResult`."""
        from sda_core.training.evaluation import evaluate_run

        return evaluate_run(run_dir, hooks=self.hooks, **options)

    def export(
        self,
        run_dir: str | Path,
        format: str = "onnx",
        out: str | Path | None = None,  # noqa: A002
        **options: Any,
    ) -> list[Path]:
        """``sda export`` from Python: :func:`sda_core.training.export.export_run` with this engine's
        plugins; returns the paths written (the generator first, the sidecar JSON last)."""
        from sda_core.training.export import export_run

        return export_run(run_dir, format, out, hooks=self.hooks, **options)

    def make_model(self, config: TrainingConfig) -> Any:
        """Ask the ``sda_make_model`` provider for the model."""
        return self.hooks.make_model(config)

    def should_stop(self, history: MetricsHistory, config: TrainingConfig) -> str | None:
        """Ask the ``sda_should_stop`` providers whether to stop; a reason string or None."""
        return self.hooks.should_stop(history, config)

    # -- training --------------------------------------------------------------------------

    def train(
        self,
        data_dir: str | Path,
        out_dir: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        callback: MetricsCallback | None = None,
        *,
        resume: bool = False,
        overwrite: bool = False,
        device: str | None = None,
    ) -> Any:
        """Train on a folder of audio and return a :class:`~sda_core.training.trainer.TrainingResult`.

        Args:
            data_dir: the folder of recordings (searched recursively).
            out_dir: the run folder (default ``runs/<data folder name>``).
            overrides: settings, as with ``--set`` (``sda.toml`` in ``data_dir`` is read too;
                these win over it).
            callback: a plain callable receiving every event of this run.
            resume: continue the run in ``out_dir`` from its last checkpoint, with the same split
                and history (``overrides`` may raise ``max_epochs``).
            overwrite: a fresh run into a folder that already holds a run deletes that run first;
                without it such a folder raises :class:`~sda_core.RunExistsError` and nothing is
                touched.
            device: "cpu", "cuda", "mps" or "auto" (the config's ``device`` by default).

        The run holds the folder's lock (:class:`~sda_core.RunLock`) throughout: a second writer,
        in this process or another, gets :class:`~sda_core.RunFolderBusyError`.

        Called from the main thread, SIGINT and SIGTERM stop the run cleanly after the current
        step, with a checkpoint; from any thread, :meth:`request_stop` does the same.
        """
        from sda_core.training.trainer import Trainer

        self.require_providers()
        trainer = Trainer(
            self.hooks,
            data_dir,
            out_dir,
            overrides,
            resume=resume,
            overwrite=overwrite,
            device=device,
            stop_event=self._stop_event,
        )
        self._stop_event.clear()
        subscription = self.subscribe(callback) if callback is not None else None
        try:
            with _StopOnSignals(trainer):
                return trainer.run()
        finally:
            if subscription is not None:
                self.unsubscribe(subscription)

    def request_stop(self) -> None:
        """Ask a running :meth:`train` (in any thread) to stop after its current step and save."""
        self._stop_event.set()

    # -- events ----------------------------------------------------------------------------

    def emit(self, event: Event, history: MetricsHistory | None = None) -> None:
        """Deliver an event to every consumer of its hook, each isolated from the others.

        ``history`` accompanies an EpochMetrics (the training loop always passes the run's).
        """
        self.hooks.emit(event, history)


class _StopOnSignals:
    """In the main thread, turn SIGINT / SIGTERM into a clean stop (a second SIGINT aborts)."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopOnSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.trainer.stop_event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for the clean stop
        self.trainer.stop_reason = "interrupted"
        self.trainer.stop_event.set()
