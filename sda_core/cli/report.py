"""Terminal and JSON renderings of scan reports, resolved configs and plugin lists (rich)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.filesize import pick_unit_and_suffix
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from sda_core.config import TrainingConfig, get_effective_preview_interval
from sda_core.config.dataset import DatasetSummary
from sda_core.config.history import format_duration
from sda_core.hooks.host import PluginInfo

#: Above this many usable files the terminal report lists the first ones only (``--all`` lists all).
FILE_LIST_LIMIT = 40

_CHANNEL_NAMES = {1: "mono", 2: "stereo"}

if TYPE_CHECKING:
    from sda_core.audio.decode_cache import CacheUsage, DecodeCache
    from sda_core.data.analysis import DatasetAnalysis

# How the "notes" column of the usable-files table names each per-file finding.
_FLAG_NOTES = {
    "clipping": "clipping",
    "dc_offset": "DC offset",
    "near_silent": "near-silent",
    "non_finite": "NaN/Inf: training skips it",
    "truncated": "truncated",
    "read_error": "cannot be decoded",
}


def scan_to_dict(
    summary: DatasetSummary,
    config: TrainingConfig | None,
    warnings: list[str],
    analysis: "DatasetAnalysis | None" = None,
) -> dict[str, Any]:
    """The machine-readable scan report of ``sda scan --json``.

    With an ``analysis`` (see :func:`sda_core.data.analysis.analyse_dataset`), every entry of
    ``files`` gains ``chunks``, and the report gains ``chunk_seconds``, ``chunk_count``,
    ``training_seconds``, ``dataset_warnings`` (``{code, message, paths}`` each) and ``analysis``:
    the content analysis of each file keyed by its path, with its ``chunks`` and its ``flags``
    (warning codes), or None when the content was not checked (``--no-analysis``).
    """
    counts = analysis.chunk_counts if analysis is not None else {}
    files = []
    for info in summary.files:
        entry = {**info.to_dict(), "duration": info.duration}
        if info.path in counts:
            entry["chunks"] = counts[info.path]
        files.append(entry)
    content = None
    if analysis is not None and analysis.content_checked:
        content = {
            item.path: {**item.to_dict(), "chunks": counts.get(item.path, 0), "flags": list(item.flags)}
            for item in analysis.files
        }
    return {
        "root": summary.root,
        "usable_count": summary.file_count,
        "skipped_count": len(summary.skipped),
        "total_duration": summary.total_duration,
        "sample_rates": {str(rate): count for rate, count in summary.sample_rates.items()},
        "channels": {str(channels): count for channels, count in summary.channel_counts.items()},
        "settings_file": summary.settings_file,
        "files": files,
        "skipped": [item.to_dict() for item in summary.skipped],
        "config": None if config is None else config.to_dict(),
        "preview_interval": None if config is None else get_effective_preview_interval(config),
        "warnings": list(warnings),
        "chunk_seconds": None if analysis is None else analysis.chunk_seconds,
        "chunk_count": 0 if analysis is None else analysis.chunk_count,
        "training_seconds": 0.0 if analysis is None else analysis.training_seconds,
        "dataset_warnings": [] if analysis is None else [item.to_dict() for item in analysis.warnings],
        "analysis": content,
    }


def print_scan(
    console: Console, summary: DatasetSummary, show_all: bool = False, analysis: "DatasetAnalysis | None" = None
) -> None:
    """Usable files, skipped files with reasons, totals, sample rates and channels.

    With an ``analysis`` the usable-files table gains a ``chunks`` column (and a ``notes`` column
    flagging clipped, silent, non-finite or truncated files when the content was checked), and the
    totals give the training chunks and seconds. Its warnings are printed by
    :func:`print_dataset_warnings`.
    """
    console.print(f"[bold]Scanned[/bold] {escape(summary.root)}")
    if summary.files:
        shown = summary.files if show_all else summary.files[:FILE_LIST_LIMIT]
        table = Table(title=f"{summary.file_count} usable files", title_justify="left")
        columns = [("file", "left"), ("format", "left"), ("rate", "right"), ("ch", "right"), ("duration", "right")]
        counts = analysis.chunk_counts if analysis is not None else None
        notes = _file_notes(analysis)
        if counts is not None:
            columns.append(("chunks", "right"))
        if notes:
            columns.append(("notes", "left"))
        for column, justify in columns:
            table.add_column(column, justify=justify)
        for info in shown:
            row = [
                escape(info.path),
                f"{info.format}/{info.subtype}",
                str(info.sample_rate),
                str(info.channels),
                format_duration(info.duration),
            ]
            if counts is not None:
                row.append(str(counts.get(info.path, 0)))
            if notes:
                row.append(escape(notes.get(info.path, "")))
            table.add_row(*row)
        console.print(table)
        hidden = summary.file_count - len(shown)
        if hidden:
            console.print(f"... and {hidden} more usable files (`sda scan --all` lists every one)")
    if summary.skipped:
        table = Table(title=f"{len(summary.skipped)} skipped", title_justify="left")
        table.add_column("file")
        table.add_column("reason")
        table.add_column("detail")
        for item in summary.skipped:
            table.add_row(escape(item.path), item.reason, escape(item.detail))
        console.print(table)
    rates = ", ".join(f"{rate} Hz x{count}" for rate, count in summary.sample_rates.items()) or "-"
    channels = (
        ", ".join(
            f"{_CHANNEL_NAMES.get(ch, f'{ch} channels')} x{count}" for ch, count in summary.channel_counts.items()
        )
        or "-"
    )
    console.print(
        f"[bold]{summary.file_count}[/bold] usable, [bold]{len(summary.skipped)}[/bold] skipped; "
        f"total {format_duration(summary.total_duration)}; sample rates: {rates}; channels: {channels}"
    )
    if analysis is not None:
        console.print(
            f"training: [bold]{analysis.chunk_count}[/bold] chunks of {analysis.chunk_seconds:g}s = "
            f"{format_duration(analysis.training_seconds)} at {analysis.sample_rate} Hz"
            + ("" if analysis.content_checked else " (content not checked: --no-analysis)")
        )
    if summary.settings_file:
        console.print(f"settings read from {escape(summary.settings_file)}")


def print_dataset_warnings(console: Console, analysis: "DatasetAnalysis | None") -> None:
    """The "Warnings" section: one line per finding, its code first."""
    if analysis is None or not analysis.warnings:
        return
    console.print(f"[bold]Warnings[/bold] ({len(analysis.warnings)})")
    for warning in analysis.warnings:
        line = Text("  ")
        line.append(warning.code, style="bold yellow")
        line.append(": " + warning.message)
        console.print(line)


def _file_notes(analysis: "DatasetAnalysis | None") -> dict[str, str]:
    """Relative path -> the findings of that file, for the notes column (empty: no column)."""
    if analysis is None or not analysis.content_checked:
        return {}
    notes = {}
    for item in analysis.files:
        if item.flags:
            notes[item.path] = ", ".join(_FLAG_NOTES.get(flag, flag) for flag in item.flags)
    return notes


def print_config(console: Console, config: TrainingConfig) -> None:
    """The resolved configuration, preset first."""
    table = Table(title=f"Resolved config (preset: {config.preset.value})", title_justify="left")
    table.add_column("setting")
    table.add_column("value", justify="right")
    for key, value in config.to_dict().items():
        if key == "regularization":
            for sub_key, sub_value in value.items():
                table.add_row(f"regularization.{sub_key}", _show(sub_value))
        elif key == "plugins":
            for name, settings in value.items():
                for sub_key, sub_value in settings.items():
                    table.add_row(f"plugins.{name}.{sub_key}", _show(sub_value))
        else:
            table.add_row(key, _show(value))
    table.add_row("effective preview interval", str(get_effective_preview_interval(config)))
    console.print(table)


def print_plugins(console: Console, infos: list[PluginInfo]) -> None:
    """Loaded plugins with their hooks (``sda_`` prefix dropped), then blocked or failed ones with why."""
    table = Table(title="sda plugins", title_justify="left")
    for column in ("name", "status", "distribution", "version"):
        table.add_column(column, no_wrap=True)
    table.add_column("hooks / reason", ratio=1, overflow="fold")
    for info in infos:
        if info.status in ("loaded", "explicit"):
            detail = " ".join(hook.removeprefix("sda_") for hook in info.hooks)
        else:
            detail = info.reason
        table.add_row(info.name, info.status, info.distribution or "-", info.version or "-", detail)
    console.print(table)


def _show(value: Any) -> str:
    return "auto" if value is None else str(value)


#: The figures of ``sda evaluate``: (field of QualityFigures, label, what good looks like).
_QUALITY_ROWS = (
    (
        "resemblance",
        "resemblance",
        "0 = as close as the real chunks are to each other; 1 = noise shaped to their spectrum",
    ),
    ("nn_accuracy", "1-NN accuracy", "0.5 = indistinguishable; 1.0 = every sound told apart; well under 0.5 = copying"),
    ("copying", "copying ratio", "about 1 or more; well under 1 = replaying the training chunks"),
    ("diversity", "diversity", "about 1 = as varied as the real chunks; low = all alike"),
)


def print_evaluation(console: Console, result: Any) -> None:
    """The figures of an :class:`~sda_core.training.evaluation.EvaluationResult`, each beside what good
    looks like; the validation column when the run has validation chunks."""
    epoch = f", epoch {result.epoch}" if result.epoch is not None else ""
    table = Table(
        title=f"Evaluation of {escape(result.run_dir)} ({result.count} sounds, seed {result.seed}{epoch})",
        title_justify="left",
    )
    table.add_column("figure", no_wrap=True)
    table.add_column(f"vs training ({result.training.real_count})", justify="right")
    if result.validation is not None:
        table.add_column(f"vs validation ({result.validation.real_count})", justify="right")
    table.add_column("what good looks like", ratio=1, overflow="fold")
    for field, label, meaning in _QUALITY_ROWS:
        cells = [_figure(getattr(result.training, field))]
        if result.validation is not None:
            cells.append(_figure(getattr(result.validation, field)))
        table.add_row(label, *cells, meaning)

    def reconstruction_cells(value: float) -> list[str]:  # in the column of the chunks reconstructed
        if result.validation is None:
            return [_figure(value)]
        return ["-", _figure(value)] if result.reconstruction_source == "validation" else [_figure(value), "-"]

    table.add_row(
        "reconstruction",
        *reconstruction_cells(result.reconstruction),
        f"multi-resolution STFT distance of {result.reconstruction_chunks} {result.reconstruction_source} "
        "chunks' reconstructions; lower is better (0 = exact)",
    )
    if result.reconstruction_fitted is not None:
        table.add_row(
            "reconstruction, fitted",
            *reconstruction_cells(result.reconstruction_fitted),
            "the same for the model's fitted codes (what --like and --morph start from)",
        )
    for name, value in sorted(result.plugins.items()):
        table.add_row(
            escape(name), _figure(value), *(["-"] if result.validation is not None else []), "added by a plugin"
        )
    console.print(table)
    for side, figures in (("training", result.training), ("validation", result.validation)):
        if figures is not None and figures.resemblance_note:
            console.print(
                f"resemblance vs {side}: not computed, {figures.resemblance_note}", markup=False, highlight=False
            )
    if result.path:
        console.print(f"wrote {result.path} ({format_duration(result.duration)})", markup=False, highlight=False)


def _figure(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


def cache_to_dict(
    cache: "DecodeCache", source: str, usage: "CacheUsage", cleared: "CacheUsage | None"
) -> dict[str, Any]:
    """The machine-readable report of ``sda cache --json``.

    ``directory``, ``source`` (``$SDA_CACHE_DIR`` or the platform's cache folder), ``exists``,
    ``entries`` and ``bytes`` (what it holds now), ``max_bytes`` (its limit), ``other_files``
    (names in the folder that are not the cache's own, left alone), and ``cleared`` (``{entries,
    bytes}`` freed by ``--clear``; None without it).
    """
    return {
        "directory": str(cache.directory),
        "source": source,
        "exists": cache.directory.is_dir(),
        "entries": usage.entries,
        "bytes": usage.bytes,
        "max_bytes": cache.max_bytes,
        "other_files": len(_other_files(cache)),
        "cleared": None if cleared is None else {"entries": cleared.entries, "bytes": cleared.bytes},
    }


def print_cache(
    console: Console, cache: "DecodeCache", source: str, usage: "CacheUsage", cleared: "CacheUsage | None"
) -> None:
    """The cache's folder (and where that came from), its entries and size, and what ``--clear`` freed."""
    console.print(
        f"[bold]Decoded-MP3 cache[/bold] {escape(str(cache.directory))} (from {escape(source)})", soft_wrap=True
    )
    if cleared is not None:
        console.print(f"cleared {_entries(cleared.entries)}, freed {_size(cleared.bytes)}")
    existing = "" if cache.directory.is_dir() else " (the folder does not exist yet)"
    console.print(f"{_entries(usage.entries)}, {_size(usage.bytes)} of at most {_size(cache.max_bytes)}{existing}")
    others = len(_other_files(cache))
    if others:
        console.print(f"{others} other file{'s' if others != 1 else ''} in the folder (not the cache's; left alone)")
    if cleared is None and usage.entries:
        console.print("sda cache --clear deletes the entries; the next run decodes its MP3 files again")


def _size(count: int) -> str:
    """Bytes in binary units, as the docs give the cache's limit (2 GiB)."""
    unit, suffix = pick_unit_and_suffix(count, ["bytes", "KiB", "MiB", "GiB", "TiB"], 1024)
    return f"{count} bytes" if unit == 1 else f"{count / unit:.1f} {suffix}"


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


def _other_files(cache: "DecodeCache") -> list[str]:
    try:
        names = set(os.listdir(cache.directory))
    except OSError:
        return []
    return sorted(names - {entry.name for entry in cache.entries()})
