"""The studio's web page (Gradio Blocks): four tabs wired to :class:`~sda_studio.studio.Studio`.

Every handler goes through :func:`_guarded`: an error sda or the studio raises on purpose becomes
the red message line at the top of the page; anything else becomes one line naming the error (the
traceback goes to the studio's log, never to the page).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from sda_core import SdaError
from sda_studio import views
from sda_studio.root import StudioError
from sda_studio.studio import MODES, Studio, config_overrides

LOG = logging.getLogger("sda_studio")
#: Seconds between two refreshes of the Train tab in the browser.
POLL_SECONDS = 1.0

INTRO = """# sda studio
Train a generative model on a small folder of your own sounds, listen to it learn, and make new sounds.

**1 · Sounds**: choose a folder (or upload files) and press **Scan**. **2 · Train**: press **Start training**;
the curves and the preview sounds appear as it learns, and it goes on if you close this page.
**3 · Generate**: make new sounds from the best epoch. **Runs** lists every run in this folder."""

CSS = """
#sda-message { min-height: 1.5em; }
#sda-message p { font-weight: 600; }
#sda-message strong { color: #b42318; }
.sda-row { display: flex; flex-wrap: wrap; gap: 0.75rem; align-items: flex-end; margin: 0.25rem 0 0.5rem 0; }
.sda-sound { margin: 0; display: flex; flex-direction: column; gap: 0.15rem; font-size: 0.85rem; }
.sda-sound audio { width: 220px; height: 32px; }
.sda-spectrogram { max-width: 100%; border: 1px solid #ddd; }
.sda-curve { max-width: 100%; }
.sda-older summary { cursor: pointer; font-weight: 600; margin: 0.75rem 0; }
.sda-round h4 { margin: 0.75rem 0 0.25rem 0; }
.sda-note { font-size: 0.85rem; color: #555; }
"""


def _error_text(error: BaseException) -> str:
    if isinstance(error, SdaError):
        return str(error)
    LOG.exception("studio request failed")
    return f"something went wrong: {type(error).__name__}: {error} (details in the studio's log)"


def _guarded(outputs: int) -> Callable[[Callable[..., tuple[Any, ...]]], Callable[..., tuple[Any, ...]]]:
    """Turn a handler's error into (message, skip, skip ...): ``outputs`` counts the message."""

    def decorate(handler: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
        @functools.wraps(handler)
        def guarded(*args: Any) -> Any:
            try:
                answer = handler(*args)
            except Exception as error:
                answer = (f"**⚠ {views.escape_markdown(_error_text(error))}**", *[gr.skip()] * (outputs - 1))
            return answer[0] if outputs == 1 else answer  # one output takes the value itself

        return guarded

    return decorate


def _optional_number(text: str | None, what: str) -> float | None:
    """An optional number box: empty is None, anything else must be a number."""
    if text is None or not str(text).strip():
        return None
    try:
        return float(str(text).strip())
    except ValueError:
        raise StudioError(f"the {what} must be a number, not {str(text).strip()!r}") from None


def watch_update(studio: Studio, run_value: str, key: Any) -> tuple[Any, ...]:
    """What the Train tab's timer sends the page every :data:`POLL_SECONDS`: the status, and the
    loss curves and the previews only when they changed since ``key`` (else ``gr.skip()``, so an
    idle page costs a status line a second). Images are sent as addresses, never re-encoded."""
    try:
        seen = studio.watch(run_value)
    except Exception as error:
        return f"### {run_value}\n\n**⚠ {views.escape_markdown(_error_text(error))}**", gr.skip(), gr.skip(), key
    info = seen["info"]
    if seen["key"] == key and key is not None:
        return seen["status"], gr.skip(), gr.skip(), key
    if info is None:
        return seen["status"], views.curve_html(None), views.previews_html((), (), {}), seen["key"]
    html = views.previews_html(info.previews, info.references, studio.spectrograms(info, seen.get("training", False)))
    return seen["status"], views.curve_html(studio.loss_image(info)), html, seen["key"]


def build_page(studio: Studio) -> gr.Blocks:
    """The page of ``studio``."""
    with gr.Blocks(title="sda studio") as page:
        gr.Markdown(INTRO)
        message = gr.Markdown("", elem_id="sda-message")
        with gr.Tabs() as tabs:
            with gr.Tab("1 · Sounds", id="sounds"):
                with gr.Row():
                    folder = gr.Dropdown(
                        label="Sound folder (under the studio's folder)",
                        choices=[],
                        allow_custom_value=True,
                        elem_id="sda-folder",
                        scale=4,
                    )
                    scan_button = gr.Button("Scan", variant="primary", elem_id="sda-scan", scale=1)
                with gr.Accordion("…or upload sounds into a new folder", open=False):
                    uploads = gr.File(label="Audio files", file_count="multiple", elem_id="sda-upload")
                    with gr.Row():
                        upload_name = gr.Textbox(label="New folder name (optional)", elem_id="sda-upload-name")
                        upload_button = gr.Button("Upload", elem_id="sda-upload-button")
                overrides = gr.Textbox(
                    label="Settings to change, one key=value a line (e.g. max_epochs=40)",
                    lines=3,
                    elem_id="sda-overrides",
                )
                report = gr.Markdown(
                    "Choose a folder and press **Scan** to see what training will use.", elem_id="sda-report"
                )
                with gr.Accordion("Resolved settings", open=False):
                    config_view = gr.JSON(label="config", elem_id="sda-config")
            with gr.Tab("2 · Train", id="train"):
                with gr.Row():
                    run = gr.Textbox(label="Run folder", elem_id="sda-run", scale=4)
                    replace = gr.Checkbox(label="replace the run there", value=False, elem_id="sda-replace", scale=1)
                with gr.Row():
                    start_button = gr.Button("Start training", variant="primary", elem_id="sda-start")
                    resume_button = gr.Button("Resume", elem_id="sda-resume")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="sda-stop")
                status = gr.Markdown(elem_id="sda-status")
                curve = gr.HTML(elem_id="sda-plot")
                previews = gr.HTML(elem_id="sda-previews")
            with gr.Tab("3 · Generate", id="generate"):
                source = gr.Markdown("Choose a run first (Train or Runs tab).", elem_id="sda-source")
                with gr.Row():
                    mode = gr.Radio(list(MODES), value=MODES[0], label="What to make", elem_id="sda-mode")
                with gr.Row():
                    count = gr.Number(
                        value=4, precision=0, minimum=1, maximum=64, label="How many", elem_id="sda-count"
                    )
                    seconds = gr.Textbox(
                        label="Length in seconds", placeholder="empty: one chunk", elem_id="sda-seconds"
                    )
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="sda-seed")
                    temperature = gr.Textbox(
                        label="Temperature (0 to 10)", placeholder="empty: the model's own", elem_id="sda-temperature"
                    )
                    trim = gr.Checkbox(label="trim silence", elem_id="sda-trim")
                with gr.Row(visible=False) as like_row:
                    like = gr.Textbox(
                        label="Sound to vary (a file under the studio's folder)",
                        placeholder="e.g. sounds/kick.wav",
                        elem_id="sda-like",
                    )
                with gr.Row(visible=False) as morph_row:
                    morph_a = gr.Textbox(label="Morph from", placeholder="e.g. sounds/a.wav", elem_id="sda-morph-a")
                    morph_b = gr.Textbox(label="Morph to", placeholder="e.g. sounds/b.wav", elem_id="sda-morph-b")
                    steps = gr.Number(value=8, precision=0, minimum=2, label="Morph steps", elem_id="sda-steps")
                    slerp = gr.Checkbox(label="along the great circle", elem_id="sda-slerp")
                generate_button = gr.Button("Generate", variant="primary", elem_id="sda-generate")
                generated = gr.HTML(elem_id="sda-generated")
            with gr.Tab("Runs", id="runs"):
                runs_table = gr.Dataframe(
                    headers=views.RUNS_HEADERS, value=[], interactive=False, wrap=True, elem_id="sda-runs-table"
                )
                with gr.Row():
                    run_choice = gr.Dropdown(label="Run", choices=[], allow_custom_value=True, elem_id="sda-run-choice")
                    open_button = gr.Button("Open", elem_id="sda-open")
                    refresh_button = gr.Button("Refresh", elem_id="sda-refresh")
        watch_key = gr.State(None)
        timer = gr.Timer(POLL_SECONDS)

        # -- handlers ---------------------------------------------------------------------------

        def load() -> tuple[Any, ...]:
            folders = studio.audio_folders()
            current = studio.current_run()
            data = (studio.data_folder_of(current) if current else None) or (folders[0] if folders else None)
            infos = studio.runs()
            names = [studio.root.relative(info.folder) for info in infos]
            return (
                gr.update(choices=folders, value=data),
                current,
                views.runs_table(infos, studio.root.relative),
                gr.update(choices=names, value=current or None),
            )

        page.load(load, outputs=[folder, run, runs_table, run_choice])

        @_guarded(5)
        def scan(folder_value: str, overrides_value: str) -> tuple[Any, ...]:
            text, config = studio.scan(folder_value or "", overrides_value)
            filled = gr.skip() if (overrides_value or "").strip() else config_overrides(config)
            target = studio.default_run_folder(folder_value or "")  # a scan prepares a run of that folder
            return "", text, config, target, filled

        scan_button.click(lambda: "scanning …", outputs=[message]).then(
            scan, inputs=[folder, overrides], outputs=[message, report, config_view, run, overrides]
        )

        @_guarded(3)
        def upload(files: list[str] | None, name: str) -> tuple[Any, ...]:
            created = studio.upload(files or [], name)
            return (
                f"Uploaded {len(files or [])} files into {created}; press Scan.",
                gr.update(choices=studio.audio_folders(), value=created),
                f"Press **Scan** to see what training will use of {views.escape_markdown(created)}.",
            )

        upload_button.click(upload, inputs=[uploads, upload_name], outputs=[message, folder, report])

        def starter(resume: bool) -> Callable[..., tuple[Any, ...]]:
            @_guarded(3)
            def start(folder_value: str, run_value: str, overrides_value: str, replace_value: bool) -> tuple[Any, ...]:
                data = folder_value or (studio.data_folder_of(run_value) if run_value else None) or ""
                job = studio.start(
                    data, run_value, overrides_value if not resume else "", resume=resume, overwrite=replace_value
                )
                label = studio.root.relative(job.run_dir)
                verb = "Resumed" if resume else "Started"
                return (
                    f"{verb} training into {label}; it goes on if you close this page.",
                    label,
                    gr.Tabs(selected="train"),
                )

            return start

        inputs = [folder, run, overrides, replace]
        start_button.click(starter(False), inputs=inputs, outputs=[message, run, tabs])
        resume_button.click(starter(True), inputs=inputs, outputs=[message, run, tabs])

        @_guarded(1)
        def stop(run_value: str) -> tuple[Any, ...]:
            job = studio.stop(run_value)
            return (f"Stopping {studio.root.relative(job.run_dir)}: it saves its last epoch; Resume continues it.",)

        stop_button.click(stop, inputs=[run], outputs=[message])

        def watch(run_value: str, key: Any) -> tuple[Any, ...]:
            return watch_update(studio, run_value, key)

        timer.tick(watch, inputs=[run, watch_key], outputs=[status, curve, previews, watch_key], show_progress="hidden")
        run.change(lambda: None, outputs=[watch_key])

        def show_mode(mode_value: str) -> tuple[Any, ...]:
            return gr.update(visible=mode_value == MODES[1]), gr.update(visible=mode_value == MODES[2])

        mode.change(show_mode, inputs=[mode], outputs=[like_row, morph_row])
        run.change(
            lambda value: (
                f"Generating from the run **{views.escape_markdown(value)}**" if value else "Choose a run first."
            ),
            inputs=[run],
            outputs=[source],
        )

        @_guarded(2)
        def generate(*values: Any) -> tuple[Any, ...]:
            (run_value, mode_value, count_value, seconds_value, seed_value, temperature_value, trim_value) = values[:7]
            like_value, morph_a_value, morph_b_value, steps_value, slerp_value = values[7:]
            paths, note = studio.generate(
                run_value or "",
                count=count_value,
                seconds=_optional_number(seconds_value, "length"),
                seed=seed_value,
                temperature=_optional_number(temperature_value, "temperature"),
                trim=bool(trim_value),
                mode=mode_value,
                like=like_value or "",
                morph=(morph_a_value or "", morph_b_value or ""),
                steps=steps_value,
                slerp=bool(slerp_value),
            )
            return "", views.generated_html(paths, note)

        generate_button.click(lambda: "generating …", outputs=[message]).then(
            generate,
            inputs=[run, mode, count, seconds, seed, temperature, trim, like, morph_a, morph_b, steps, slerp],
            outputs=[message, generated],
        )

        def refresh() -> tuple[Any, ...]:
            infos = studio.runs()
            names = [studio.root.relative(info.folder) for info in infos]
            return views.runs_table(infos, studio.root.relative), gr.update(choices=names)

        refresh_button.click(refresh, outputs=[runs_table, run_choice])

        @_guarded(4)
        def open_run(choice: str) -> tuple[Any, ...]:
            label = studio.open_run(choice or "")
            data = studio.data_folder_of(label)
            return f"Opened {label}.", label, gr.update(value=data) if data else gr.skip(), gr.Tabs(selected="train")

        open_button.click(open_run, inputs=[run_choice], outputs=[message, run, folder, tabs])
    return page
