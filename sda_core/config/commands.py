"""A ``sda`` subcommand a plugin adds (the answer of the ``sda_cli_commands`` hook)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

import attrs

#: What a command name may be: lower-case words joined by hyphens (``studio``, ``loop-marker``).
COMMAND_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def _check_name(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not COMMAND_NAME.match(value):
        raise ValueError(f"a command name is lower-case words joined by hyphens (like 'studio'), not {value!r}")


@attrs.frozen
class CliCommand:
    """One subcommand of ``sda``, contributed by a plugin through ``sda_cli_commands``.

    Attributes:
        name: the word after ``sda`` (``sda studio``); it may not be one of sda's own commands.
        help: one line for ``sda --help``.
        run: called with the parsed arguments (an ``argparse.Namespace``) when the command is
            given; returns the exit code (None means 0). An :class:`~sda_core.SdaError` it raises
            is printed as one ``sda: error: ...`` line, like sda's own commands' errors.
        configure: adds the command's arguments to its ``argparse.ArgumentParser`` (optional).
    """

    name: str = attrs.field(validator=_check_name)
    help: str = attrs.field(validator=attrs.validators.instance_of(str))
    run: Callable[[argparse.Namespace], int | None] = attrs.field(validator=attrs.validators.is_callable())
    configure: Callable[[argparse.ArgumentParser], None] | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.is_callable())
    )
