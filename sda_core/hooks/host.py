"""Plugin loading and hook calling with the guarantees of the sda plugin layer.

One :class:`PluginHost` per Engine (never a module global). It

* loads the ``sda`` entry-point group, blocking disabled plugins *before* importing them and
  skipping (with one warning naming the distribution) any that fails to import or register;
* checks each plugin before registering it and says what is wrong in plain words (the closest
  hook name, the hook's real arguments; :mod:`sda_core.hooks.validation`), and warns about
  ``sda_*`` routines without the ``@hookimpl`` marker;
* remembers what a skipped plugin declares, so that a run which depends on it stops
  (:meth:`PluginHost.require_intact`) instead of falling back to another plugin;
* registers plugin objects a host application passes explicitly;
* calls provider hooks so that an exception or a wrongly typed answer names the plugin;
* calls consumer hooks one implementation at a time, so that one raising consumer neither stops
  the others nor the run, and is reported once, by name.
"""

from __future__ import annotations

import importlib.metadata
import os
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import pluggy

from sda_core.errors import ConfigError, PluginError, PluginLoadWarning, PluginRuntimeWarning
from sda_core.hooks import specs as hookspecs
from sda_core.hooks import validation
from sda_core.hooks.markers import EVERY_RANK_ATTRIBUTE
from sda_core.hooks.tracing import HookTracer

ENTRYPOINT_GROUP = "sda"
#: Distribution whose entry points are the reference plugins.
REFERENCE_DISTRIBUTION = "small-dataset-audio"
#: The reference plugins: entry-point name -> target, as pyproject.toml registers them. The
#: testing kit loads them from here, and the host falls back to this list when sda runs from a
#: source tree that was never installed (no entry points of its own are found).
REFERENCE_PLUGINS: dict[str, str] = {
    "adaptive_presets": "sda_plugins.adaptive_presets",
    "augmentations": "sda_plugins.augmentations",
    "chunk_dataset": "sda_plugins.lazy:ChunkDatasetPlugin",
    "file_split": "sda_plugins.file_split",
    "mel_vae": "sda_plugins.lazy:MelVAEPlugin",
    "overfitting_detector": "sda_plugins.overfitting_detector",
    "previews": "sda_plugins.lazy:PreviewsPlugin",
    "progress": "sda_plugins.progress:ProgressDisplay",
    "wave_vae": "sda_plugins.lazy:WaveVAEPlugin",
}


def reference_entry_points() -> list[importlib.metadata.EntryPoint]:
    """:data:`REFERENCE_PLUGINS` as entry points (without a distribution)."""
    return [importlib.metadata.EntryPoint(name, target, ENTRYPOINT_GROUP) for name, target in REFERENCE_PLUGINS.items()]


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    found = list(importlib.metadata.entry_points(group=ENTRYPOINT_GROUP))
    if not any(ep.dist is not None and ep.dist.name == REFERENCE_DISTRIBUTION for ep in found):
        found += [ep for ep in reference_entry_points() if ep.name not in {other.name for other in found}]
    return found


LOADED = "loaded"
EXPLICIT = "explicit"
BLOCKED = "blocked"
FAILED = "failed"


def _names(value: str | None) -> frozenset[str]:
    return frozenset(part.strip() for part in (value or "").split(",") if part.strip())


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


#: Consumer hooks in which a ConfigError is a veto of the run (it propagates), not an isolated fault.
VETO_CONSUMER_HOOKS = frozenset({"sda_on_train_start"})


@attrs.frozen(kw_only=True)
class PluginPolicy:
    """Which plugins may load and how faults are treated.

    Attributes:
        disabled: entry-point or distribution names never imported (``--disable-plugin``,
            ``SDA_DISABLE_PLUGINS``).
        allowlist: when not None, only these entry points load (``SDA_LOAD_PLUGINS``; an empty
            value allows none but the plugins passed explicitly).
        strict: load failures and consumer errors raise instead of warning
            (``SDA_STRICT_PLUGINS=1``).
        trace: write every hook call to stderr (``SDA_TRACE_HOOKS=1``).
    """

    disabled: frozenset[str] = frozenset()
    allowlist: frozenset[str] | None = None
    strict: bool = False
    trace: bool = False

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        disable: Iterable[str] = (),
        strict: bool | None = None,
        trace: bool | None = None,
    ) -> "PluginPolicy":
        """Read the ``SDA_*`` variables; explicit arguments add to or override them."""
        env = os.environ if environ is None else environ
        allow = env.get("SDA_LOAD_PLUGINS")
        return cls(
            disabled=_names(env.get("SDA_DISABLE_PLUGINS")) | frozenset(disable),
            allowlist=None if allow is None else _names(allow),
            strict=_flag(env.get("SDA_STRICT_PLUGINS")) if strict is None else strict,
            trace=_flag(env.get("SDA_TRACE_HOOKS")) if trace is None else trace,
        )


@attrs.frozen(kw_only=True)
class PluginInfo:
    """One plugin as ``sda plugins`` reports it.

    Attributes:
        name: the entry-point name (or the name an explicit plugin was registered under).
        status: "loaded", "explicit", "blocked" or "failed".
        distribution: the distribution that provides it (None for explicit plugins).
        version: that distribution's version.
        hooks: the hooks it implements, sorted.
        reason: why it is blocked or failed.
    """

    name: str
    status: str
    distribution: str | None = None
    version: str | None = None
    hooks: tuple[str, ...] = ()
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class PluginHost:
    """The plugin manager of one Engine and the policy-aware ways to call its hooks."""

    def __init__(self, policy: PluginPolicy | None = None) -> None:
        self.policy = policy or PluginPolicy()
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._records: dict[str, PluginInfo] = {}
        # record key of a failed plugin -> the hooks it declares (None: nobody can tell)
        self._declared: dict[str, tuple[str, ...] | None] = {}
        self._entry_point_names: frozenset[str] | None = None  # read once, when first needed
        self._consumer_failures: dict[str, list[str]] = {}
        self._answered_by: dict[str, str] = {}
        self._tracer: HookTracer | None = None
        self._observers: list[Callable[[str, dict[str, Any], Any], None]] = []
        if self.policy.trace:
            self._tracer = HookTracer()
            self.pm.add_hookcall_monitoring(self._tracer.before, self._tracer.after)

    # -- loading ---------------------------------------------------------------------------

    def load_entrypoints(self) -> None:
        """Import and register every plugin of the ``sda`` entry-point group the policy allows.

        An entry point names a module or an object holding hook implementations, or a class,
        which is instantiated (without arguments) once per Engine so that per-run state never
        lives in a module global.
        """
        found = _entry_points()
        self._entry_point_names = frozenset(ep.name for ep in found)
        for entry_point in sorted(found, key=lambda ep: ep.name):
            dist = entry_point.dist
            dist_name = dist.name if dist is not None else None
            version = dist.version if dist is not None else None
            name = entry_point.name
            if name in self._records:
                if self._records[name].distribution != dist_name:
                    self._fail(
                        name,
                        dist_name,
                        version,
                        f"the name {name!r} is already taken by {self._records[name].distribution or 'another plugin'}",
                        key=f"{name} ({dist_name})",
                        hooks=validation.hooks_in_source(entry_point.module),
                    )
                continue
            blocked = self._block_reason(name, dist_name)
            if blocked:
                self.pm.set_blocked(name)
                self._records[name] = PluginInfo(
                    name=name, status=BLOCKED, distribution=dist_name, version=version, reason=blocked
                )
                continue
            try:
                plugin = entry_point.load()
            except Exception as error:  # a broken plugin must not take the engine down
                self._fail(
                    name,
                    dist_name,
                    version,
                    f"failed to import: {type(error).__name__}: {error}",
                    error,
                    hooks=validation.hooks_in_source(entry_point.module),
                )
                continue
            if isinstance(plugin, type):  # a class: one instance per Engine holds per-run state
                try:
                    plugin = plugin()
                except Exception as error:
                    self._fail(
                        name,
                        dist_name,
                        version,
                        f"failed to start: {type(error).__name__}: {error}",
                        error,
                        hooks=validation.declared_hooks(self.pm, plugin) or None,
                    )
                    continue
            self._register(plugin, name, LOADED, dist_name, version)

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object passed by a host application; returns its name."""
        name = name or self._default_name(plugin)
        if self._block_reason(name, None, explicit=True):
            self._records[name] = PluginInfo(name=name, status=BLOCKED, reason="disabled by name")
            return name
        self._register(plugin, name, EXPLICIT, None, None)
        return name

    def unregister(self, name: str) -> None:
        """Remove a plugin by name (no-op when it is not registered)."""
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self._records.pop(name, None)

    def check_pending(self) -> None:
        """Reject plugins that implement unknown hooks or wrap hooks that take no wrappers."""
        while True:
            try:
                self.pm.check_pending()
            except pluggy.PluginValidationError as error:
                name = self.pm.get_name(error.plugin) or "?"
                reasons = validation.problems(self.pm, error.plugin) or [_plain(str(error), error.plugin, name)]
                self._reject(name, "; ".join(reasons))
                continue
            break
        for hook_name in hookspecs.CONSUMER_HOOKS + hookspecs.COLLECTOR_HOOKS + hookspecs.CHECK_HOOKS:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.wrapper or impl.hookwrapper:
                    self._reject(impl.plugin_name, f"{hook_name} is a notification hook and takes no wrappers")

    # -- inspection ------------------------------------------------------------------------

    def plugin_infos(self) -> list[PluginInfo]:
        """Every plugin seen: loaded, explicit, blocked or failed, with the hooks it implements."""
        infos = []
        for name, record in self._records.items():
            plugin = self.pm.get_plugin(name)
            if plugin is not None:
                hooks = tuple(sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ()))
                record = attrs.evolve(record, hooks=hooks)
            infos.append(record)
        return sorted(infos, key=lambda info: (info.status in (BLOCKED, FAILED), info.name))

    def answered_by(self, hook_name: str) -> str | None:
        """The plugin whose answer the last call of a provider hook returned (None: nobody answered).

        For callers that check more of an answer than its type and must name the plugin at fault.
        """
        return self._answered_by.get(hook_name)

    @property
    def consumer_failures(self) -> dict[str, list[str]]:
        """Plugin name -> the errors its consumer hooks raised (reported once, counted all)."""
        return {name: list(errors) for name, errors in self._consumer_failures.items()}

    def installed_names(self) -> frozenset[str]:
        """The names a ``[plugins.NAME]`` table may use: every plugin registered, blocked, or
        installed as an ``sda`` entry point (loaded or not), and every name disabled by the
        policy (installed or not: a table kept for a plugin the user turned off); failed plugins
        are excluded."""
        failed = {key for key, info in self._records.items() if info.status == FAILED and key == info.name}
        names = {info.name for info in self._records.values() if info.status != FAILED}
        if self._entry_point_names is None:
            self._entry_point_names = frozenset(ep.name for ep in _entry_points())
        names.update(self._entry_point_names)
        return frozenset((names - failed) | self.policy.disabled)

    def loaded_names(self) -> tuple[str, ...]:
        """The names of the plugins registered now (from entry points or explicitly), sorted."""
        return tuple(sorted(name for name, info in self._records.items() if info.status in (LOADED, EXPLICIT)))

    def require_intact(self, tables: Iterable[str] = ()) -> None:
        """Raise :class:`PluginError` for the first plugin that failed to load and that a run depends
        on: one that declares a provider or collector hook, whose hooks cannot be told (its source
        could not be read), or that has a settings table among ``tables`` (the ``[plugins.NAME]``
        tables of the run's config). A failed plugin that only observes does not stop a run (it
        was reported when it failed). Nothing falls back to another plugin silently."""
        tables = set(tables)
        for key, info in self._records.items():
            if info.status != FAILED:
                continue
            needed = _needed_because(self._declared.get(key))
            if key == info.name and info.name in tables:
                needed = f"the settings table [plugins.{info.name}] is for it"
            if not needed:
                continue
            disable = info.distribution if key != info.name and info.distribution else info.name
            raise PluginError(
                info.name,
                f"{_origin(info.name, info.distribution)} {info.reason}; the run depends on it ({needed}) "
                f"and does not fall back to another plugin: fix it, or run without it with --disable-plugin {disable}",
            )

    # -- calling ---------------------------------------------------------------------------

    def call_provider(self, hook_name: str, expected: type | tuple[type, ...] | None = None, **kwargs: Any) -> Any:
        """Call a firstresult hook; the first non-None answer wins, or None if nobody answers.

        A raising provider, or an answer that is not an instance of ``expected``, raises
        :class:`PluginError` naming the plugin.
        """
        caller = getattr(self.pm.hook, hook_name)
        impls = caller.get_hookimpls()
        answered_by = None
        try:
            if any(impl.wrapper or impl.hookwrapper for impl in impls):
                result = caller(**kwargs)
                answered_by = "a plugin (the answer passed through wrappers)"
            else:
                result = None
                self._trace_before(hook_name, impls, kwargs)
                for impl in reversed(impls):
                    result = impl.function(*[kwargs[arg] for arg in impl.argnames])
                    if result is not None:
                        answered_by = impl.plugin_name
                        break
                self._trace_after(hook_name, impls, kwargs, result)
        except (PluginError, ConfigError):
            raise  # a ConfigError is about the user's settings, not a plugin fault
        except Exception as error:
            plugin = _plugin_in_traceback(error, impls)
            raise PluginError(
                plugin, f"plugin {plugin!r} failed in {hook_name}: {type(error).__name__}: {error}"
            ) from error
        if self._observers:
            self._observed(hook_name, kwargs, result)
        if answered_by is None or result is None:
            self._answered_by.pop(hook_name, None)
        else:
            self._answered_by[hook_name] = answered_by
        if result is not None and expected is not None and not isinstance(result, expected):
            raise PluginError(
                answered_by or "?",
                f"plugin {answered_by!r} answered {hook_name} with {type(result).__name__}, "
                f"expected {_type_names(expected)}",
            )
        return result

    def call_collector(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook every plugin contributes a list to; returns (plugin name, item) pairs."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        self._trace_before(hook_name, impls, kwargs)
        collected: list[tuple[str, Any]] = []
        for plugin_name, answer in self._answers(hook_name, impls, kwargs):
            if not isinstance(answer, (list, tuple)):
                raise PluginError(
                    plugin_name,
                    f"plugin {plugin_name!r} answered {hook_name} with {type(answer).__name__}, expected a list",
                )
            collected.extend((plugin_name, item) for item in answer)
        self._trace_after(hook_name, impls, kwargs, collected)
        if self._observers:
            self._observed(hook_name, kwargs, collected)
        return collected

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of a collector hook whose answers are not lists (a dict of
        metrics ...); returns (plugin name, answer) for each answer that is not None, in call
        order. One that raises is a PluginError naming it; checking the answers is the caller's."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        self._trace_before(hook_name, impls, kwargs)
        answers = self._answers(hook_name, impls, kwargs)
        self._trace_after(hook_name, impls, kwargs, answers)
        if self._observers:
            self._observed(hook_name, kwargs, answers)
        return answers

    @staticmethod
    def _answers(hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
        answers: list[tuple[str, Any]] = []
        for impl in reversed(impls):
            try:
                answer = impl.function(*[kwargs[arg] for arg in impl.argnames])
            except ConfigError:
                raise  # the user's settings are wrong, not the plugin
            except Exception as error:
                raise PluginError(
                    impl.plugin_name,
                    f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(error).__name__}: {error}",
                ) from error
            if answer is not None:
                answers.append((impl.plugin_name, answer))
        return answers

    def call_check(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of a check hook: a ConfigError vetoes (it propagates as it is),
        any other exception is a :class:`PluginError` naming the plugin; answers are ignored."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        self._trace_before(hook_name, impls, kwargs)
        for impl in reversed(impls):
            try:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            except (ConfigError, PluginError):
                raise  # the user's settings are wrong (a veto), or a plugin already named
            except Exception as error:
                raise PluginError(
                    impl.plugin_name,
                    f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(error).__name__}: {error}",
                ) from error
        self._trace_after(hook_name, impls, kwargs, None)
        if self._observers:
            self._observed(hook_name, kwargs, None)

    def notify(self, hook_name: str, *, every_rank_only: bool = False, **kwargs: Any) -> None:
        """Call every implementation of a consumer hook, isolating each from the others.

        ``every_rank_only`` (a rank other than 0 of a distributed run): only the plugins that set
        ``sda_every_rank = True`` are called.
        """
        if self._observers:
            self._observed(hook_name, kwargs, None)
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        if every_rank_only:
            impls = [impl for impl in impls if getattr(impl.plugin, EVERY_RANK_ATTRIBUTE, False) is True]
        if not impls:
            return
        if self._tracer is not None:
            self._trace_before(hook_name, impls, kwargs)
        for impl in reversed(impls):
            try:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as error:
                if isinstance(error, ConfigError) and hook_name in VETO_CONSUMER_HOOKS:
                    raise  # a plugin rejecting the user's settings as the run starts vetoes the run
                self._consumer_failed(impl.plugin_name, hook_name, error)
        if self._tracer is not None:
            self._trace_after(hook_name, impls, kwargs, None)

    def observe(self, observer: Callable[[str, dict[str, Any], Any], None]) -> Callable[[], None]:
        """Call ``observer(hook_name, kwargs, result)`` after every hook call; returns an undo.

        For test tools (see :mod:`sda_core.testing`); an observer must not raise.
        """
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    # -- internals -------------------------------------------------------------------------

    def _observed(self, hook_name: str, kwargs: dict[str, Any], result: Any) -> None:
        for observer in list(self._observers):
            observer(hook_name, kwargs, result)

    def _block_reason(self, name: str, dist_name: str | None, explicit: bool = False) -> str:
        disabled = self.policy.disabled
        if name in disabled or (dist_name is not None and dist_name in disabled):
            return "disabled (--disable-plugin or SDA_DISABLE_PLUGINS)"
        if not explicit and self.policy.allowlist is not None and name not in self.policy.allowlist:
            return "not in SDA_LOAD_PLUGINS"
        return ""

    def _register(self, plugin: object, name: str, status: str, dist_name: str | None, version: str | None) -> None:
        if name in self._records or self.pm.has_plugin(name):
            self._fail(
                name,
                dist_name,
                version,
                f"failed to register: the name {name!r} is already taken",
                key=f"{name} ({dist_name or 'duplicate'})",
                hooks=validation.declared_hooks(self.pm, plugin) or None,
            )
            return
        origin = _origin(name, dist_name)
        found = validation.declarations(self.pm, plugin)
        for sentence in validation.unmarked(self.pm, plugin, found):
            warnings.warn(f"{origin}: {sentence}", PluginLoadWarning, stacklevel=4)
        hooks = validation.declared_hooks(self.pm, plugin, found)
        reasons = validation.problems(self.pm, plugin, found)
        if not reasons and self.pm.get_name(plugin) is not None:
            reasons = [f"it is the object already registered as plugin {self.pm.get_name(plugin)!r}"]
        if not reasons:
            try:
                self.pm.register(plugin, name=name)
            except (pluggy.PluginValidationError, ValueError) as error:
                reasons = [_plain(str(error), plugin, name)]
        if reasons:
            self._fail(name, dist_name, version, "is invalid: " + "; ".join(reasons), hooks=hooks or None)
            return
        self._records[name] = PluginInfo(name=name, status=status, distribution=dist_name, version=version)

    def _reject(self, name: str, reason: str) -> None:
        record = self._records.get(name, PluginInfo(name=name, status=FAILED))
        plugin = self.pm.get_plugin(name)
        hooks = validation.declared_hooks(self.pm, plugin) if plugin is not None else ()
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self._fail(name, record.distribution, record.version, f"is invalid: {reason}", hooks=hooks or None)

    def _fail(
        self,
        name: str,
        dist_name: str | None,
        version: str | None,
        reason: str,
        error: BaseException | None = None,
        key: str | None = None,
        hooks: tuple[str, ...] | None = None,
    ) -> None:
        """Record a plugin that could not be loaded and warn (raise, in strict mode), saying what
        becomes of a run without it. ``hooks``: the hooks it declares (None: unknown)."""
        message = f"{_origin(name, dist_name)} {reason}"
        if self.policy.strict:
            raise PluginError(name, message + " (SDA_STRICT_PLUGINS=1)") from error
        key = key or name
        self._records[key] = PluginInfo(
            name=name, status=FAILED, distribution=dist_name, version=version, reason=reason
        )
        self._declared[key] = hooks
        needed = _needed_because(hooks)
        if needed:
            disable = dist_name if key != name and dist_name else name
            consequence = (
                f"it was skipped, and a run stops while it is broken, since {needed} "
                f"(fix it, or run without it with --disable-plugin {disable})"
            )
        else:
            consequence = f"it was skipped and a run goes on without it: it only observes ({', '.join(hooks or ())})"
        warnings.warn(f"{message}; {consequence}", PluginLoadWarning, stacklevel=3)

    def _consumer_failed(self, plugin: str, hook_name: str, error: Exception) -> None:
        if self.policy.strict:
            raise PluginError(
                plugin,
                f"plugin {plugin!r} raised in {hook_name}: {type(error).__name__}: {error} (SDA_STRICT_PLUGINS=1)",
            ) from error
        errors = self._consumer_failures.setdefault(plugin, [])
        errors.append(f"{hook_name}: {type(error).__name__}: {error}")
        if len(errors) > 1:
            return
        message = (
            f"plugin {plugin!r} raised in {hook_name}: {type(error).__name__}: {error}; "
            "it was isolated and the run goes on (further errors from it are counted, not repeated)"
        )
        try:
            warnings.warn(message, PluginRuntimeWarning, stacklevel=3)
        except Exception:  # warnings turned into errors by the host must not break isolation
            pass

    def _default_name(self, plugin: object) -> str:
        if isinstance(plugin, types.ModuleType):
            base = plugin.__name__
        else:
            declared = getattr(plugin, "name", None)
            base = declared if isinstance(declared, str) and declared else type(plugin).__name__
        name, counter = str(base), 2
        while name in self._records or self.pm.has_plugin(name):
            name, counter = f"{base}-{counter}", counter + 1
        return name

    def _trace_before(self, hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        if self._tracer is not None:
            self._tracer.before(hook_name, impls, kwargs)

    def _trace_after(self, hook_name: str, impls: list[Any], kwargs: dict[str, Any], result: Any) -> None:
        if self._tracer is not None:
            self._tracer.after(pluggy.Result(result, None), hook_name, impls, kwargs)


def _plugin_in_traceback(error: BaseException, impls: list[Any]) -> str:
    """The plugin whose hook implementation is the innermost one in the traceback."""
    owners = {impl.function.__code__: impl.plugin_name for impl in impls if hasattr(impl.function, "__code__")}
    found = None
    tb = error.__traceback__
    while tb is not None:
        owner = owners.get(tb.tb_frame.f_code)
        if owner is not None:
            found = owner
        tb = tb.tb_next
    return found or "unknown plugin"


def _type_names(expected: type | tuple[type, ...]) -> str:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(kind.__name__ for kind in kinds)


def _origin(name: str, dist_name: str | None) -> str:
    """How messages name a plugin: by its entry-point (or registered) name and its distribution."""
    return f"plugin {name!r} from distribution {dist_name!r}" if dist_name else f"plugin {name!r}"


def _needed_because(hooks: tuple[str, ...] | None) -> str:
    """Why a run cannot do without a plugin declaring ``hooks`` (None: unknown), or "" when it can."""
    if hooks is None:
        return "sda cannot tell which hooks it implements"
    shaping = validation.shaping(hooks)
    if shaping:
        return f"it implements {', '.join(shaping)}"
    return ""


def _plain(message: str, plugin: object = None, name: str = "?") -> str:
    """pluggy's message on one line, with the plugin object's repr replaced by its name."""
    if plugin is not None:
        message = message.replace(repr(plugin), repr(name))
    return " ".join(line.strip() for line in message.splitlines() if line.strip())
