"""What the studio watching a run costs the training: steps per second with and without it.

Both variants start the run the way the studio's Start button does (``Studio.start``: a
background thread of this process, an Engine with the installed plugins). In the watched one the
studio's Gradio server runs in the same process (``serve``, as ``sda studio`` starts it) and a
"page" thread calls what the page's timer calls every :data:`sda_studio.page.POLL_SECONDS`
(``watch_update``: the status line every second; the loss curves and the previews with their
spectrograms whenever an epoch or a preview round is new). A preview round every epoch is the
studio's worst case. Steps/s come from the step events' timestamps within epochs 2 and 3, so
start-up, validation and checkpoints are outside it; the runs alternate (plain, watched, watched,
plain ...) and both are printed. Whole runs on a shared machine differ by more than the 3% to
measure from noise alone (another tenant's job slows one run and not the next), so, as
``bench_training``'s consumer row does, the target comes from what the studio does in the run
itself: the CPU time the process spends outside the training thread (``time.process_time`` minus
the training thread's ``time.thread_time``, read at the step events), as a share of the wall
time, watched minus plain. That is the time the studio's threads can take from the training
thread (the GIL), and more than they take on a machine with a core to spare. Target: the watched
run keeps at least 97% of the steps/s (time ratio 1/(1 - share) <= 1/0.97). Not included: the
HTTP messages of a real browser's refresh (one small JSON message a second).
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.bench_training import _corpus
from benchmarks.timing import Result

NAME = "studio"
BATCH = 8
STEPS_PER_EPOCH = 24
EPOCHS = 3
#: The least share of the plain run's steps/s the watched run must keep.
TARGET = 0.97


def _settings(run: int) -> str:
    return "\n".join(
        [
            f"max_epochs={EPOCHS}",
            f"batch_size={BATCH}",
            f"samples_per_epoch={BATCH * STEPS_PER_EPOCH}",
            "sample_rate=16000",
            "preview_interval=1",
            "early_stopping=false",
            "evaluation_sounds=0",
            f"seed={2000 + run}",
            'device="cpu"',
        ]
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _measure(steps: list) -> tuple[float, float]:
    """(seconds per step, share of wall time the process spent on CPU outside the training thread),
    over epochs 2.. (each epoch's own span, boundaries left out)."""
    seconds, count, others, wall = 0.0, 0, 0.0, 0.0
    for epoch in sorted({step.epoch for step, *_ in steps if step.epoch >= 2}):
        rows = [row for row in steps if row[0].epoch == epoch]
        (first, first_thread, first_process), (last, last_thread, last_process) = rows[0], rows[-1]
        seconds += last.timestamp - first.timestamp
        count += len(rows) - 1
        wall += last.timestamp - first.timestamp
        others += (last_process - first_process) - (last_thread - first_thread)
    return seconds / count, others / wall


def _one_run(studio, steps: list, run_folder: str, run: int, watched: bool) -> tuple[float, float, int]:
    """(seconds per step, CPU share of the process outside the training thread, page updates)."""
    from sda_studio.command import serve
    from sda_studio.page import POLL_SECONDS, watch_update

    steps.clear()
    server = serve(studio.root, port=_free_port(), engine_factory=studio.engine_factory) if watched else None
    job = studio.start("data", run_folder, _settings(run), overwrite=True)
    stop = threading.Event()
    redraws = [0]

    def page() -> None:
        key = None
        while not stop.wait(POLL_SECONDS):
            _status, curve, _previews, new_key = watch_update(studio, run_folder, key)
            redraws[0] += new_key != key and isinstance(curve, str)
            key = new_key

    watcher = threading.Thread(target=page, name="bench-page", daemon=True)
    if watched:
        watcher.start()
    job.thread.join()
    stop.set()
    if watched:
        watcher.join()
        server.close()
    if job.error:
        raise RuntimeError(job.error)
    seconds, others = _measure(steps)
    return seconds, others, redraws[0]


def run(quick: bool = False) -> list[Result]:
    try:
        from sda_studio.root import StudioRoot
        from sda_studio.studio import Studio
    except ImportError:
        return [Result("studio: sda-studio is not installed (pip install -e contrib/sda-studio)", 1.0, None)]
    from sda_core import Engine

    repeats = 2 if quick else 3
    plain, watched, plain_others, watched_others, redraws = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="sda-bench-studio-") as temp:
        root = Path(temp)
        (root / "data").mkdir()
        _corpus(root / "data")
        steps: list = []

        def record(event) -> None:  # in the training thread: its own CPU clock and the process's
            if event.kind == "step":
                steps.append((event, time.thread_time(), time.process_time()))

        studio = Studio(StudioRoot(root), engine_factory=lambda: Engine(disable=["progress"], callbacks=[record]))
        for repetition in range(repeats):
            order = (False, True) if repetition % 2 == 0 else (True, False)
            for with_page in order:
                seconds, others, redrawn = _one_run(
                    studio, steps, f"runs/run_{repetition}_{int(with_page)}", repetition, with_page
                )
                (watched if with_page else plain).append(seconds)
                (watched_others if with_page else plain_others).append(others)
                if with_page:
                    redraws.append(redrawn)
    plain_s, watched_s = statistics.median(plain), statistics.median(watched)
    share = max(0.0, statistics.median(watched_others) - statistics.median(plain_others))
    kept = 1 - share
    return [
        Result(
            "studio: training steps/s watched by the studio, from its CPU time (time ratio)",
            1 / kept,
            1 / TARGET,
            f"the studio (Gradio server + page updates) took {share:.3%} of a core beyond the training thread "
            f"(other threads {statistics.median(watched_others):.2%} watched, {statistics.median(plain_others):.2%} "
            f"plain): the watched run keeps >= {kept:.4f}x "
            f"the steps/s (target >= {TARGET}); {statistics.median(redraws):.0f} curve/preview updates a run; "
            f"batch {BATCH} at 16 kHz, {EPOCHS} epochs, a preview round each, n={repeats}",
        ),
        Result(
            "studio: whole runs watched vs not, steps/s (time ratio, noisy)",
            watched_s / plain_s,
            None,
            f"watched {1 / watched_s:.2f} steps/s, plain {1 / plain_s:.2f} steps/s ({plain_s / watched_s:.3f}x); "
            f"runs alternate in one process; on a shared machine they differ by more than 3% from noise alone",
        ),
    ]


if __name__ == "__main__":  # pragma: no cover - manual use
    for row in run():
        print(f"{row.name}: {row.ratio:.3f} (target <= {row.target:.3f}) {row.verdict}; {row.detail}")
