"""What ``sda_on_step`` costs the training loop.

    python contrib/sda-tensorboard/benchmarks/step_cost.py [--steps 20000] [--work-us 1000]

Feeds synthetic StepMetrics (five loss components, like the reference mel VAE) to a
TensorBoardLogger, with ``--work-us`` of GIL-free sleep between steps standing in for the
optimiser step (torch releases the GIL inside its kernels), and reports:

* the cost of one call: median and 99th percentile (the buffered path) and the mean including
  the calls that write a batch of buffered steps;
* the whole loop against the same loop without the plugin, i.e. the time the plugin really adds
  per step, tensorboardX's writer thread included, and the CPU time the process spends per
  step with and without it (all threads: what the plugin costs a machine that is busy);
* the time ``sda_on_train_end`` takes to write what is left and close the file.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from sda_tensorboard import TensorBoardLogger

from sda_core.config.events import StepMetrics, TrainingCompleteEvent, TrainingStartEvent

COMPONENTS = {"loss": 1.0, "objective": 1.0, "recon": 0.5, "kl": 0.1, "kl_nats": 3.0}


def events(count: int, spacing: float) -> list[StepMetrics]:
    """Steps timestamped ``spacing`` seconds apart (the logger's write-out clock follows them)."""
    now = time.time()
    return [
        StepMetrics(
            epoch=1,
            step=i + 1,
            epoch_step=i + 1,
            steps_per_epoch=count,
            loss=1.0 / (i + 1),
            losses=COMPONENTS,
            learning_rate=1e-3,
            items_per_second=100.0,
            timestamp=now + i * spacing,
        )
        for i in range(count)
    ]


def loop(steps: list[StepMetrics], work: float, logger: TensorBoardLogger | None) -> tuple[float, float, list[float]]:
    """Wall seconds and process CPU seconds of the loop, and the duration of each hook call."""
    clock = time.perf_counter
    calls = []
    started, cpu = clock(), time.process_time()
    for event in steps:
        time.sleep(work)
        if logger is not None:
            before = clock()
            logger.sda_on_step(event)
            calls.append(clock() - before)
    return clock() - started, time.process_time() - cpu, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--work-us", type=float, default=1000.0, help="simulated GIL-free work per step")
    args = parser.parse_args()
    work = args.work_us / 1e6
    with tempfile.TemporaryDirectory() as run_dir:
        steps = events(args.steps, work)
        baseline, baseline_cpu, _ = loop(steps, work, None)
        logger = TensorBoardLogger()
        logger.sda_on_train_start(
            TrainingStartEvent(
                run_dir=run_dir, config={"plugins": {}}, steps_per_epoch=args.steps, timestamp=steps[0].timestamp
            )
        )
        total, total_cpu, calls = loop(steps, work, logger)
        before = time.perf_counter()
        logger.sda_on_train_end(TrainingCompleteEvent(reason="max_epochs", epochs_completed=1, steps=args.steps))
        end = time.perf_counter() - before
    calls.sort()
    print(f"{args.steps} steps, {args.work_us:.0f} us of simulated work each")
    print(
        f"one call: median {statistics.median(calls) * 1e6:.2f} us, "
        f"p99 {calls[int(len(calls) * 0.99)] * 1e6:.2f} us, "
        f"mean with batch writes {statistics.fmean(calls) * 1e6:.1f} us, max {calls[-1] * 1e3:.1f} ms"
    )
    print(
        f"loop: {baseline:.2f} s without the plugin, {total:.2f} s with it: "
        f"+{(total - baseline) / args.steps * 1e6:.1f} us per step"
    )
    print(
        f"process CPU: {baseline_cpu / args.steps * 1e6:.1f} us per step without the plugin, "
        f"{total_cpu / args.steps * 1e6:.1f} us with it"
    )
    print(f"train end (write the rest, close): {end * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
