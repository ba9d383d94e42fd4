"""The ``sda`` command (an application on top of the Engine)."""

from sda_core.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
