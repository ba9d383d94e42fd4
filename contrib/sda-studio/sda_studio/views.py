"""What the page shows, as Markdown and HTML built from sda's values (no Gradio here).

Audio and images are served by Gradio from the studio's root (``allowed_paths``), at
``/gradio_api/file=PATH``; :func:`file_url` builds those addresses.
"""

from __future__ import annotations

import html
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sda_core.config.history import format_duration

#: Where Gradio serves files from its allowed paths.
FILE_ROUTE = "/gradio_api/file="
#: Most rows of the scan report's file table (the rest are counted).
MAX_FILE_ROWS = 40


def file_url(path: str | Path) -> str:
    """The address at which the page's browser fetches ``path`` (inside the studio's root)."""
    return FILE_ROUTE + urllib.parse.quote(str(Path(path).resolve()))


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def escape_markdown(value: Any) -> str:
    """Text for a Markdown table cell: no pipes, no markup."""
    return str(value).replace("|", "\\|").replace("*", "\\*").replace("\n", " ")


def loss_text(value: float | None) -> str:
    """A loss as the page writes it ("-" for none)."""
    return "-" if value is None else f"{value:.4f}"


def scan_report(summary: Any, config: Any, analysis: Any, folder_label: str) -> str:
    """The scan report: files used (with length and rate), files skipped with the reason,
    warnings, and the resolved preset; Markdown."""
    lines = [
        f"### {escape_markdown(folder_label)}: {summary.file_count} file{'s' * (summary.file_count != 1)} used, "
        f"{len(summary.skipped)} skipped, {format_duration(summary.total_duration)} of audio",
    ]
    if config is not None:
        lines.append(
            f"Preset **{escape_markdown(getattr(config.preset, 'value', config.preset))}**, up to {config.max_epochs} epochs, batch size {config.batch_size}, "
            f"{config.sample_rate} Hz, {config.validation_fraction:.0%} of the files held out for validation."
        )
    if analysis is not None and analysis.warnings:
        lines += ["", "**Warnings**", ""]
        lines += [f"- {escape_markdown(warning.message)}" for warning in analysis.warnings]
    if summary.files:
        lines += ["", "**Files used**", "", "| file | length | rate | channels |", "|---|---:|---:|---:|"]
        for info in summary.files[:MAX_FILE_ROWS]:
            seconds = info.frames / info.sample_rate
            lines.append(
                f"| {escape_markdown(info.path)} | {seconds:.1f} s | {info.sample_rate} Hz | {info.channels} |"
            )
        if summary.file_count > MAX_FILE_ROWS:
            lines.append(f"| and {summary.file_count - MAX_FILE_ROWS} more | | | |")
    if summary.skipped:
        lines += ["", "**Files skipped**", "", "| file | reason |", "|---|---|"]
        for skipped in summary.skipped[:MAX_FILE_ROWS]:
            reason = skipped.detail or skipped.reason
            lines.append(f"| {escape_markdown(skipped.path)} | {escape_markdown(reason)} |")
        if len(summary.skipped) > MAX_FILE_ROWS:
            lines.append(f"| and {len(summary.skipped) - MAX_FILE_ROWS} more | |")
    return "\n".join(lines)


def status_text(
    run_label: str,
    status: str,
    progress: Mapping[str, Any] | None,
    info: Any | None,
    error: str | None = None,
    overfitting: Sequence[str] = (),
) -> str:
    """The run's state line, progress, best epoch and warnings; Markdown."""
    lines = [f"### Run {escape_markdown(run_label)}: {status}"]
    if error:
        lines.append(f"**Error:** {escape_markdown(error)}")
    if progress and progress.get("epoch") is not None and status in ("starting", "training", "stopping"):
        parts = [f"epoch {progress['epoch']} of {progress.get('max_epochs') or '?'}"]
        if progress.get("epoch_step") is not None:
            parts.append(f"step {progress['epoch_step']} of {progress.get('steps_per_epoch') or '?'}")
        if progress.get("eta_seconds") is not None:
            parts.append(f"about {format_duration(progress['eta_seconds'])} left")
        if progress.get("items_per_second"):
            parts.append(f"{progress['items_per_second']:.0f} chunks/s")
        lines.append(" · ".join(parts))
    if info is not None and info.history is not None and info.history.epochs:
        history = info.history
        best = history.best_epoch
        lines.append(
            f"{history.last_epoch} epoch{'s' * (history.last_epoch != 1)} saved · last validation loss "
            f"{loss_text(history.epochs[-1].val_loss)} · best {loss_text(history.best_val_loss)}"
            + (f" at epoch {best}" if best is not None else "")
        )
        if history.overfitting_epochs:
            lines.append(
                f"**Overfitting** in epoch{'s' * (len(history.overfitting_epochs) != 1)} "
                f"{', '.join(map(str, history.overfitting_epochs[-8:]))}: the validation loss is more than "
                f"{history.overfitting_threshold:.0%} above the training loss. The best epoch's weights are kept."
            )
    for message in list(dict.fromkeys(overfitting))[-3:]:
        lines.append(f"> {escape_markdown(message)}")
    return "\n\n".join(lines)


def _player(path: Path, label: str) -> str:
    url = _escape(file_url(path))
    return (
        f'<figure class="sda-sound"><figcaption>{_escape(label)}</figcaption>'
        f'<audio controls preload="none" src="{url}"></audio>'
        f'<a href="{url}" download="{_escape(path.name)}">download</a></figure>'
    )


def _kind_label(kind: str) -> str:
    return {"sample": "New sounds (samples)", "reconstruction": "Reconstructions of the reference chunks"}.get(
        kind, f"{kind} files"
    )


def previews_html(rounds: Sequence[Any], references: Sequence[Path], spectrograms: Mapping[int, Path]) -> str:
    """The preview rounds, newest first: each round's players by kind and its spectrogram, the
    reference chunks beside the newest round's reconstructions; HTML."""
    if not rounds:
        return '<p class="sda-empty">No preview yet: the first one comes after the first preview interval.</p>'
    parts = ['<div class="sda-previews">']
    for index, preview in enumerate(reversed(rounds)):
        if index == 1:  # older rounds folded: a long run has dozens
            parts.append(f'<details class="sda-older"><summary>Earlier previews ({len(rounds) - 1} rounds)</summary>')
        newest = " (newest)" if index == 0 else ""
        parts.append(
            f'<section class="sda-round" data-epoch="{preview.epoch}"><h4>Previews of epoch {preview.epoch}{newest}</h4>'
        )
        for kind in dict.fromkeys(preview.kinds):
            files = [path for path, its in zip(preview.files, preview.kinds) if its == kind]
            parts.append(f'<p class="sda-note">{_escape(_kind_label(kind))}</p><div class="sda-row">')
            parts += [_player(path, f"{kind} {path.stem.rsplit('_', 1)[-1]}") for path in files]
            parts.append("</div>")
            if kind == "reconstruction" and index == 0 and references:
                parts.append(
                    '<p class="sda-note">The reference chunks they rebuild (from your sounds)</p><div class="sda-row">'
                )
                parts += [_player(path, f"original {path.stem.rsplit('_', 1)[-1]}") for path in references]
                parts.append("</div>")
        image = spectrograms.get(preview.epoch)
        if image is not None:
            parts.append(
                f'<img class="sda-spectrogram" alt="spectrograms of epoch {preview.epoch}" '
                f'src="{_escape(file_url(image))}?v={image.stat().st_mtime_ns}">'
            )
        parts.append("</section>")
    if len(rounds) > 1:
        parts.append("</details>")
    parts.append("</div>")
    return "".join(parts)


def curve_html(image: Path | None) -> str:
    """The loss-curve image (reloaded when the file changes), or a line saying it comes later."""
    if image is None:
        return '<p class="sda-empty">The loss curves appear after the first epoch.</p>'
    return (
        f'<img class="sda-curve" alt="loss curves: training and validation loss per epoch, the best epoch starred" '
        f'src="{_escape(file_url(image))}?v={image.stat().st_mtime_ns}">'
    )


def generated_html(paths: Iterable[Path], note: str) -> str:
    """Players and download links of generated sounds; HTML."""
    items = [_player(path, path.stem) for path in paths]
    return f'<p class="sda-note">{_escape(note)}</p><div class="sda-row sda-generated">{"".join(items)}</div>'


def runs_table(infos: Sequence[Any], label: Any) -> list[list[Any]]:
    """Rows of the runs table: run, state, epochs, best loss (epoch), evaluation figures, last change."""
    rows = []
    for info in infos:
        evaluation = info.evaluation or {}
        training = evaluation.get("training") or {}
        figures = ", ".join(
            f"{name} {training[name]:.2f}"
            for name in ("nn_accuracy", "diversity", "copying")
            if isinstance(training.get(name), (int, float))
        )
        best = info.best_epoch
        changed = info.folder.stat().st_mtime if info.folder.exists() else 0
        rows.append(
            [
                label(info.folder),
                "training" if info.training else ("trained" if info.checkpoints else "no checkpoint"),
                info.last_epoch,
                f"{loss_text(info.best_val_loss)}" + (f" (epoch {best})" if best is not None else ""),
                figures or "-",
                time.strftime("%Y-%m-%d %H:%M", time.localtime(changed)),
            ]
        )
    return rows


RUNS_HEADERS = ["run", "state", "epochs", "best validation loss", "evaluation", "changed"]
