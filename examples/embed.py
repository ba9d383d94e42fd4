"""Embed the sda engine in an application: train in a background thread, show the events as they
arrive, stop the run early, print the result. The walk-through is docs/host-apps.md.

    python examples/embed.py [DATA_DIR] [--out RUN] [--stop-after-epochs N] [--max-epochs N]
                             [--set key=value ...] [--json]

Without DATA_DIR it synthesises sda's demo dataset into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sda_core import ConfigError, Engine, SdaError, event_to_dict
from sda_core.config.overrides import parse_set_options
from sda_core.data.demo import synthesize_demo_dataset

DONE = object()  # put on the queue when the training thread has finished
STEP_LINE_SECONDS = 1.0  # at most one step line per second: steps come much faster


def describe(event) -> str:
    """One line per event: its kind and the numbers that matter."""
    match event.kind:
        case "train_start":
            return (
                f"train_start  {event.run_dir} on {event.device}: epochs {event.start_epoch}-{event.max_epochs}, "
                f"{event.train_files} training / {event.validation_files} validation files"
            )
        case "step":
            return (
                f"step         epoch {event.epoch} step {event.epoch_step}/{event.steps_per_epoch} "
                f"loss {event.loss:.4f} ({event.items_per_second:.0f} items/s)"
            )
        case "epoch":
            val = "-" if event.val_loss is None else f"{event.val_loss:.4f}"
            gap = "" if event.overfitting_gap is None else f" gap {event.overfitting_gap:+.0%}"
            eta = "" if event.eta_seconds is None else f" ETA {event.eta_seconds:.0f}s"
            return f"epoch        {event.epoch}: train {event.train_loss:.4f} val {val}{gap}{eta}"
        case "preview":
            return f"preview      epoch {event.epoch}: {len(event.files)} WAV files in {event.directory}"
        case "overfitting":
            return f"overfitting  epoch {event.epoch}: {event.message}"
        case "train_end":
            return f"train_end    {event.reason} after epoch {event.epochs_completed}"
    return event.kind


def train_and_watch(
    engine: Engine, data_dir: Path, out: str | None, overrides: dict, stop_after_epochs: int | None, as_json: bool
):
    events: queue.Queue = queue.Queue()
    epochs_seen, last_step_line = 0, 0.0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sda-train") as pool:
        # The callback runs in the training thread: it only hands the event over.
        future = pool.submit(engine.train, data_dir, out, overrides, callback=events.put)
        future.add_done_callback(lambda _: events.put(DONE))
        try:
            for event in iter(events.get, DONE):
                if event.kind == "step" and not as_json:
                    if time.monotonic() - last_step_line < STEP_LINE_SECONDS:
                        continue
                    last_step_line = time.monotonic()
                print(json.dumps(event_to_dict(event)) if as_json else describe(event), flush=True)
                if event.kind == "epoch":
                    epochs_seen += 1
                    if epochs_seen == stop_after_epochs:
                        engine.request_stop()  # from this thread: the run stops after its current step
        except KeyboardInterrupt:
            engine.request_stop()  # Ctrl-C here: the training thread saves last.pt and returns
        return future.result()  # the TrainingResult, or the exception the training thread raised


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train with sda in a background thread, printing its events.")
    parser.add_argument(
        "data_dir",
        nargs="?",
        type=Path,
        metavar="DATA_DIR",
        help="folder of audio files (default: synthesise the demo dataset)",
    )
    parser.add_argument("--out", metavar="RUN", help="run folder (default: runs/<name of DATA_DIR>)")
    parser.add_argument(
        "--stop-after-epochs",
        type=int,
        default=3,
        metavar="N",
        help="ask the run to stop once N epochs have finished (default 3; 0: never)",
    )
    parser.add_argument("--max-epochs", type=int, metavar="N", help="upper bound on epochs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    parser.add_argument("--json", action="store_true", help="print every event as a JSON line (event_to_dict)")
    args = parser.parse_args(argv)

    try:
        overrides = parse_set_options(args.set)
        if args.max_epochs is not None:
            overrides["max_epochs"] = args.max_epochs
        # This app prints its own lines, so it switches off sda's progress display.
        engine = Engine(disable=["progress"])
        with tempfile.TemporaryDirectory(prefix="sda-embed-") as scratch:
            data_dir = args.data_dir
            if data_dir is None:
                data_dir = Path(scratch) / "demo_sounds"
                synthesize_demo_dataset(data_dir)
                print(f"synthesised the demo dataset in {data_dir}", flush=True)
            result = train_and_watch(engine, data_dir, args.out, overrides, args.stop_after_epochs or None, args.json)
    except ConfigError as error:  # a bad setting: the user can fix it
        print(f"embed.py: error: {error}", file=sys.stderr)
        return 2
    except SdaError as error:  # DatasetError, PluginError, CheckpointError, TrainingError ...
        print(f"embed.py: error: {error}", file=sys.stderr)
        return 1

    print(
        f"result: {result.reason} after epoch {result.epochs_completed} ({result.steps} steps, "
        f"{result.duration:.1f}s) in {result.run_dir}"
    )
    if result.best_epoch is not None:
        print(
            f"  validation loss: untrained {result.initial_val_loss:.4f}, "
            f"best {result.best_val_loss:.4f} at epoch {result.best_epoch}"
        )
    for name, path in sorted(result.checkpoints.items()):
        print(f"  {name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
