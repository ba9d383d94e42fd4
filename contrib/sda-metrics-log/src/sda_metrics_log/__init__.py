"""sda-metrics-log: an sda plugin that logs training runs to ``events.jsonl`` and ``metrics.csv``.

Installed, it registers through the ``sda`` entry-point group as ``metrics_log``; sda creates one
:class:`MetricsLog` per Engine. Nothing else is needed: every ``sda train`` (and every embedding
``Engine``) then writes both files into the run folder.
"""

from sda_metrics_log.plugin import (
    BASE_COLUMNS,
    PLUGIN_NAME,
    SETTINGS,
    MetricsLog,
    Settings,
    read_events,
    read_settings,
    repair_csv,
    repair_events,
)

__version__ = "0.1.0"

__all__ = [
    "BASE_COLUMNS",
    "PLUGIN_NAME",
    "SETTINGS",
    "MetricsLog",
    "Settings",
    "read_events",
    "read_settings",
    "repair_csv",
    "repair_events",
]
