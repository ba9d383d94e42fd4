"""The typed hook facade: the one way a run calls its plugins (the tox pattern).

:class:`Hooks` wraps a :class:`~sda_core.hooks.host.PluginHost` with one typed method per hook.
Each method calls the hook the way its kind requires (provider, check, collector, consumer) and
checks the answer, naming the plugin at fault. The training loop, the data loaders and the
augmentation pipeline receive a ``Hooks`` (``engine.hooks``), never an Engine, and never build one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sda_core.config.commands import CliCommand
from sda_core.config.dataset import DatasetSummary, FileSplit
from sda_core.config.events import EVENT_HOOKS, OverfittingWarning, PreviewEvent
from sda_core.config.history import MetricsHistory
from sda_core.config.plugin_settings import NEW_RUN_TABLES, check_plugin_tables
from sda_core.config.training_config import TrainingConfig, apply_overrides
from sda_core.errors import ConformanceError, PluginError
from sda_core.hooks.host import PluginHost, PluginInfo, PluginPolicy

#: Providers a run cannot do without: an Engine refuses, at construction, a plugin set that
#: leaves one of them unanswered (the others have a default: no answer is an answer).
REQUIRED_PROVIDERS: tuple[str, ...] = ("sda_split_files", "sda_make_dataset", "sda_make_model")


class Hooks:
    """Typed calls of every hook of one plugin host.

    Args:
        host: the plugin host whose plugins answer.
    """

    def __init__(self, host: PluginHost) -> None:
        self.host = host
        #: The rank of the distributed run this process trains in (0 outside one); on another rank,
        #: :meth:`emit` reaches only the plugins that set ``sda_every_rank = True``.
        self.rank = 0
        self._dataset_answered_by: dict[str, str | None] = {}  # role -> plugin, of the last make_dataset

    @classmethod
    def from_entrypoints(cls, environ: Mapping[str, str] | None = None) -> Hooks:
        """A facade over a fresh host that loaded the ``sda`` entry points (the default plugin set)."""
        host = PluginHost(PluginPolicy.from_environment(environ))
        host.load_entrypoints()
        host.check_pending()
        return cls(host)

    def unanswered_providers(self, names: Iterable[str] = REQUIRED_PROVIDERS) -> list[str]:
        """The provider hooks among ``names`` that no registered plugin implements."""
        return [name for name in names if not getattr(self.host.pm.hook, name).get_hookimpls()]

    def answered_by(self, hook_name: str) -> str | None:
        """The plugin whose answer the last call of a provider hook returned."""
        return self.host.answered_by(hook_name)

    # -- providers -------------------------------------------------------------------------

    def resolve_config(self, summary: DatasetSummary, overrides: Mapping[str, Any] | None = None) -> TrainingConfig:
        """``sda_resolve_config`` (default: ``TrainingConfig()``), then the user's overrides re-applied."""
        overrides = copy.deepcopy(dict(overrides or {}))
        config = self.host.call_provider("sda_resolve_config", TrainingConfig, summary=summary, overrides=overrides)
        if config is None:
            config = TrainingConfig()
        return apply_overrides(config, overrides)

    def split_files(self, files: Iterable[Any], config: TrainingConfig) -> FileSplit:
        """``sda_split_files``: the file-level split (a FileSplit)."""
        return self._require("sda_split_files", FileSplit, files=tuple(files), config=config)

    def make_dataset(
        self, files: Iterable[Any], config: TrainingConfig, role: str, augment: Any = None, root: str = ""
    ) -> Any:
        """``sda_make_dataset``: a map-style dataset (``__len__`` and ``__getitem__``) for one side."""
        dataset = self._require(
            "sda_make_dataset", None, files=tuple(files), config=config, role=role, augment=augment, root=str(root)
        )
        self._dataset_answered_by[str(role)] = self.answered_by("sda_make_dataset")
        kind = type(dataset)
        if hasattr(kind, "__getitem__") and hasattr(kind, "__len__") and not isinstance(dataset, (str, bytes, Mapping)):
            return dataset
        plugin = self.answered_by("sda_make_dataset") or "?"
        raise PluginError(
            plugin,
            f"plugin {plugin!r} answered sda_make_dataset with {kind.__name__}, expected a "
            "map-style torch.utils.data.Dataset (with __len__ and __getitem__)",
        )

    def make_model(self, config: TrainingConfig, *, check: Callable[[Any], None] | None = None) -> Any:
        """``sda_make_model``: the model, not checked unless ``check`` is given.

        ``check(model)`` (e.g. :func:`sda_core.training.conformance.check_model_interface`) may
        raise :class:`~sda_core.errors.ConformanceError`; it becomes a PluginError naming the
        plugin that answered and the hook (see :meth:`verify`).
        """
        model = self._require("sda_make_model", None, config=config)
        if check is not None:
            self.verify("sda_make_model", check, model)
        return model

    def check_overfitting(self, history: MetricsHistory, config: TrainingConfig) -> OverfittingWarning | None:
        """``sda_check_overfitting``: an OverfittingWarning for the epoch just finished, or None."""
        return self.host.call_provider("sda_check_overfitting", OverfittingWarning, history=history, config=config)

    def render_previews(
        self, model: Any, config: TrainingConfig, epoch: int, directory: str, references: Any
    ) -> PreviewEvent | None:
        """``sda_render_previews``: a PreviewEvent naming the files written, or None."""
        return self.host.call_provider(
            "sda_render_previews",
            PreviewEvent,
            model=model,
            config=config,
            epoch=epoch,
            directory=str(directory),
            references=references,
        )

    def should_stop(self, history: MetricsHistory, config: TrainingConfig) -> str | None:
        """``sda_should_stop``: a reason string to stop early, or None."""
        return self.host.call_provider("sda_should_stop", str, history=history, config=config)

    # -- checks and collectors -------------------------------------------------------------

    def check_config(self, config: TrainingConfig, *, resumed_from: str | None = None) -> None:
        """Whether a run may start with ``config`` and these plugins, before anything runs.

        A plugin that failed to load and that the run depends on (a provider or collector, or one
        with a ``[plugins.NAME]`` table in ``config``) is a :class:`PluginError`; a table for a
        plugin that is not installed is a ConfigError ("did you mean ..."); then every plugin may
        veto the config in ``sda_check_config`` by raising ConfigError. ``resumed_from`` (the run
        folder of a resumed run) makes the table error say the table is in that run's saved config.
        """
        self.host.require_intact(config.plugins)
        origin = (
            NEW_RUN_TABLES if resumed_from is None else f"saved in the config of the run {resumed_from}, which used it"
        )
        check_plugin_tables(config, self.host.installed_names(), self.host.loaded_names(), origin)
        self.host.call_check("sda_check_config", config=config)

    def augmentations(self, config: TrainingConfig) -> list[tuple[str, Any]]:
        """``sda_augmentations``: (plugin name, transform) pairs, in call order."""
        return self.host.call_collector("sda_augmentations", config=config)

    def evaluate_metrics(self, generated: Any, real: Any, sample_rate: int, config: TrainingConfig) -> dict[str, float]:
        """``sda_evaluate_metrics``: every plugin's answer merged into one dict of floats.

        A name answered by two plugins, an answer that is not a dict, or a value that is not a real
        number is a PluginError naming the plugin(s).
        """
        merged: dict[str, float] = {}
        owner: dict[str, str] = {}
        answers = self.host.call_each(
            "sda_evaluate_metrics", generated=generated, real=real, sample_rate=sample_rate, config=config
        )
        for plugin, answer in answers:
            if not isinstance(answer, Mapping):
                raise PluginError(
                    plugin,
                    f"plugin {plugin!r} answered sda_evaluate_metrics with "
                    f"{type(answer).__name__}, expected a dict of metric name -> number",
                )
            for name, value in answer.items():
                if name in owner:
                    raise PluginError(
                        plugin,
                        f"plugins {owner[name]!r} and {plugin!r} both answered the metric "
                        f"{name!r} in sda_evaluate_metrics; one of them must rename it",
                    )
                number = _real_number(value)
                if number is None:
                    raise PluginError(
                        plugin,
                        f"plugin {plugin!r} answered the metric {name!r} with "
                        f"{type(value).__name__}, expected a number",
                    )
                owner[str(name)] = plugin
                merged[str(name)] = number
        return merged

    def cli_commands(self, reserved: Iterable[str] = ()) -> list[tuple[str, CliCommand]]:
        """``sda_cli_commands``: (plugin name, command) pairs, in call order.

        An answer that is not a CliCommand, or a name in ``reserved`` (sda's own commands) or
        already added by another plugin, is a PluginError naming the plugin.
        """
        taken = {name: "sda" for name in reserved}
        commands = self.host.call_collector("sda_cli_commands")
        for plugin, command in commands:
            if not isinstance(command, CliCommand):
                raise PluginError(
                    plugin,
                    f"plugin {plugin!r} answered sda_cli_commands with {type(command).__name__}, expected CliCommand",
                )
            if command.name in taken:
                owner = (
                    "one of sda's own commands" if taken[command.name] == "sda" else f"added by {taken[command.name]!r}"
                )
                raise PluginError(
                    plugin, f"plugin {plugin!r} adds the command {command.name!r}, which is {owner}; it must rename it"
                )
            taken[command.name] = plugin
        return commands

    # -- consumers -------------------------------------------------------------------------

    def emit(self, event: Any, history: MetricsHistory | None = None) -> None:
        """Deliver an event to every consumer of its hook (``type(event).hook``), each isolated.

        ``history`` accompanies an EpochMetrics (the training loop always passes the run's). On a
        rank other than 0 (:attr:`rank`) only plugins with ``sda_every_rank = True`` receive it.
        """
        hook_name = EVENT_HOOKS.get(type(event))
        if hook_name is None:
            raise TypeError(f"not an sda event: {type(event).__name__}")
        if hook_name == "sda_on_epoch":
            if history is None:  # a host emitting a lone epoch: consumers still get a history
                history = MetricsHistory(epochs=[event])
            self.host.notify(hook_name, every_rank_only=self.rank != 0, event=event, history=history)
        else:
            self.host.notify(hook_name, every_rank_only=self.rank != 0, event=event)

    # -- what answered ---------------------------------------------------------------------

    def verify(self, hook_name: str, check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``check(*args, **kwargs)`` on what the last call of provider ``hook_name`` answered (a
        model, the losses of a model ...); returns what ``check`` returns.

        A :class:`~sda_core.errors.ConformanceError` it raises becomes one :class:`PluginError`:
        ``plugin 'NAME' answered HOOK with WHAT CAME; expected WHAT WAS EXPECTED``, or, for
        several problems, ``plugin 'NAME' answered HOOK with an answer that has N problems:`` and
        one line per problem.
        """
        try:
            return check(*args, **kwargs)
        except ConformanceError as error:
            plugin = self.answered_by(hook_name) or "?"
            if len(error.problems) == 1:
                message = f"plugin {plugin!r} answered {hook_name} with {error.found}; expected {error.expected}"
            else:
                message = (
                    f"plugin {plugin!r} answered {hook_name} with an answer that has {len(error.problems)} problems:"
                )
                message += "".join(
                    f"\n  {number}. {found}; expected {expected}"
                    for number, (found, expected) in enumerate(error.problems, start=1)
                )
            raise PluginError(plugin, message) from error

    def provider(self, hook_name: str, role: str | None = None) -> PluginInfo | None:
        """The plugin (name, distribution, version) whose answer the last call of provider
        ``hook_name`` returned (for ``sda_make_dataset``, the last call for ``role`` when given);
        None when nobody answered or wrappers hid who did."""
        if hook_name == "sda_make_dataset" and role is not None:
            return self.plugin(self._dataset_answered_by.get(role))
        return self.plugin(self.answered_by(hook_name))

    def plugin(self, name: str | None) -> PluginInfo | None:
        """The plugin registered under ``name`` now (loaded or explicit), or None."""
        if name is None or not self.host.pm.has_plugin(name):
            return None
        return next((info for info in self.host.plugin_infos() if info.name == name), None)

    def implements(self, plugin: str, hook_name: str) -> bool:
        """Whether the plugin registered under ``plugin`` implements ``hook_name``."""
        return any(impl.plugin_name == plugin for impl in getattr(self.host.pm.hook, hook_name).get_hookimpls())

    # -- internals -------------------------------------------------------------------------

    def _require(self, hook_name: str, expected: type | None, **kwargs: Any) -> Any:
        result = self.host.call_provider(hook_name, expected, **kwargs)
        if result is None:
            raise PluginError(
                hook_name,
                f"no plugin answered {hook_name}; is its reference plugin disabled? (see `sda plugins`)",
            )
        return result


def as_hooks(hooks: Any) -> Hooks:
    """A :class:`Hooks` from a Hooks or anything holding one as ``.hooks`` (an Engine)."""
    if isinstance(hooks, Hooks):
        return hooks
    inner = getattr(hooks, "hooks", None)
    if isinstance(inner, Hooks):
        return inner
    raise TypeError(f"expected sda hooks (engine.hooks) or an Engine, got {type(hooks).__name__}")


def _real_number(value: Any) -> float | None:
    """``value`` as a float when it is a real number (a Python or numpy scalar, not a bool or a
    string), else None."""
    if isinstance(value, (bool, str, bytes)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
