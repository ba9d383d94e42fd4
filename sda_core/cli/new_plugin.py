"""``sda new-plugin NAME``: a plugin distribution whose own tests pass out of the box.

The files come from the template folder beside this module (``plugin-template/``): each
``*.tmpl`` file is a :class:`string.Template` whose ``${plugin}``, ``${distribution}``,
``${package}``, ``${class_name}`` and ``${sda_version}`` are filled in, and whose path has
``__package__`` replaced by the import package and ``__plugin__`` by the plugin's name. What it
makes is described in docs/plugin-authors.md.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import attrs

from sda_core import __version__
from sda_core.errors import UsageError
from sda_core.hooks.host import REFERENCE_PLUGINS

#: The template folder.
TEMPLATE = Path(__file__).resolve().parent / "plugin-template"
#: What a plugin's name may be, once a leading ``sda-`` is dropped and ``-`` read as ``_``.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")


@attrs.frozen
class PluginNames:
    """The names of one plugin, by the convention of docs/plugin-authors.md.

    Attributes:
        plugin: the entry-point name and the settings table (``loop_marker``).
        distribution: what ``pip install`` takes (``sda-loop-marker``).
        package: the import package (``sda_loop_marker``).
        class_name: the plugin class (``LoopMarker``).
    """

    plugin: str
    distribution: str
    package: str
    class_name: str

    @classmethod
    def of(cls, name: str) -> PluginNames:
        """The names for ``name`` (``loop_marker``, ``loop-marker`` or ``sda-loop-marker``);
        :class:`UsageError` for a name that cannot be one, or that a reference plugin has."""
        plugin = name.strip().lower().replace("-", "_")
        plugin = plugin.removeprefix("sda_")
        if not NAME_PATTERN.fullmatch(plugin) or plugin.endswith("_") or "__" in plugin:
            raise UsageError(
                f"{name!r} cannot name a plugin: use lower-case letters, digits and single underscores or "
                "hyphens, starting with a letter (e.g. loop_marker)"
            )
        if plugin in REFERENCE_PLUGINS:
            raise UsageError(
                f"{plugin!r} is the name of a reference plugin of sda; choose another name (to replace that "
                "plugin, answer its hook)"
            )
        return cls(
            plugin=plugin,
            distribution="sda-" + plugin.replace("_", "-"),
            package="sda_" + plugin,
            class_name="".join(part.capitalize() for part in plugin.split("_")),
        )


def create_plugin(name: str, dest: str | Path = ".") -> tuple[Path, list[Path]]:
    """Write the plugin distribution for ``name`` into ``dest/DISTRIBUTION``; returns that folder
    and the files written, sorted.

    Raises :class:`UsageError` for a bad name, or when the folder exists and is not empty
    (nothing is overwritten).
    """
    names = PluginNames.of(name)
    root = Path(dest) / names.distribution
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UsageError(f"'{root}' already exists and is not empty; choose another --dest, or remove it")
    values = {**attrs.asdict(names), "sda_version": __version__}
    written = []
    for source in sorted(TEMPLATE.rglob("*.tmpl")):
        relative = source.relative_to(TEMPLATE).as_posix().removesuffix(".tmpl")
        relative = relative.replace("__package__", names.package).replace("__plugin__", names.plugin)
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        text = string.Template(source.read_text(encoding="utf-8")).substitute(values)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return root, sorted(written)
