"""sda-studio: ``sda studio``, a web page to train, watch, listen and generate.

A host application on sda's public API (``Engine``, its events, the run-folder readers), built
with Gradio. Installed next to sda, it adds the ``studio`` command through the ``sda_cli_commands``
hook (entry point ``studio = "sda_studio.command"``); see README.md. Gradio is imported only when
the page is built, so loading the plugin costs the other commands nothing.
"""

from sda_studio.root import StudioError, StudioRoot

__all__ = ["StudioError", "StudioRoot"]
__version__ = "0.1.0"
