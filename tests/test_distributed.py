"""Training under torchrun: two CPU processes on gloo train, stop, resume, against one process.

Every distributed run here is a real ``python -m torch.distributed.run`` launch in a subprocess
(``sda train`` and a host script calling ``Engine.train``), with a throwaway plugin distribution
installed through real metadata that records, on every rank, the training keys each process reads
and the events it receives.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from sda_core import Engine
from sda_core.testing import fast_settings, set_options
from sda_core.testing.audio import write_audio_folder

pytest.importorskip("torch.distributed.run")

ROOT = Path(__file__).resolve().parents[1]
#: Batches of 3 and 14 samples per epoch: one process trains 4 batches (12 chunks; drop_last
#: leaves 2 out), two processes 2 steps each of a global batch of 6, the same 12 chunks.
SETTINGS = fast_settings(batch_size=3, samples_per_epoch=14, augmentation_probability=0.0)
#: Optimiser steps per epoch: one process, two processes (half).
SINGLE_STEPS, TWO_STEPS = 4, 2
#: events.jsonl is written by the sda-metrics-log plugin (contrib/sda-metrics-log, installed by make install).
METRICS_LOG = importlib.util.find_spec("sda_metrics_log") is not None
NEEDS_EVENTS_LOG = pytest.mark.skipif(not METRICS_LOG, reason="the sda-metrics-log plugin is not installed")
#: Where the second launch asks rank 1 to stop (SIGTERM to itself): the first step of epoch 4.
KILL_AT_STEP = 7

PROBE = '''
"""Records, per rank, the training keys read and the events received (tests/test_distributed.py)."""
import atexit
import hashlib
import importlib
import json
import os
import signal
from pathlib import Path

from sda_core import hookimpl


def _out(name):
    return Path(os.environ["SDA_TEST_RECORD"]) / name


def _rank():
    return os.environ.get("RANK", "0")


class RecordingDataset:
    """The reference training dataset, writing each key it is asked for."""

    def __init__(self, dataset, path):
        self.dataset, self.path = dataset, str(path)
        self.epoch_keys = getattr(dataset, "epoch_keys", False)
        self.repeat_keys = getattr(dataset, "repeat_keys", False)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        with open(self.path, "a") as stream:
            stream.write(json.dumps(list(key) if isinstance(key, tuple) else key) + "\\n")
        return self.dataset[key]


class KeyRecorder:
    @hookimpl(wrapper=True)
    def sda_make_dataset(self, role):
        dataset = yield
        if role != "train" or "SDA_TEST_RECORD" not in os.environ:
            return dataset
        return RecordingDataset(dataset, _out(f"keys.rank{_rank()}.jsonl"))


class EveryRank:
    """Asks for the events of every rank; rank 1 stops itself with SIGTERM at SDA_TEST_KILL_AT_STEP.
    At the end of a run it writes a digest of the parameters its rank trained."""

    sda_every_rank = True
    model = None

    @hookimpl(wrapper=True)
    def sda_make_model(self, config):
        EveryRank.model = yield
        return EveryRank.model

    @hookimpl
    def sda_on_train_start(self, event):
        _out(f"every.rank{_rank()}.json").write_text(json.dumps({"rank": event.rank, "world_size": event.world_size}))

    @hookimpl
    def sda_on_step(self, event):
        if _rank() == "1" and event.step == int(os.environ.get("SDA_TEST_KILL_AT_STEP", "0")):
            os.kill(os.getpid(), signal.SIGTERM)

    @hookimpl
    def sda_on_epoch(self, event):
        with open(_out(f"epochs.rank{_rank()}.jsonl"), "a") as stream:
            stream.write(json.dumps([event.epoch, event.val_loss, event.train_loss]) + "\\n")

    @hookimpl
    def sda_on_train_end(self, event):
        _out(f"end.rank{_rank()}.json").write_text(json.dumps([event.reason, event.epochs_completed]))
        digest = hashlib.sha256()
        for name, tensor in sorted(EveryRank.model.named_parameters()):
            digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
        _out(f"weights.rank{_rank()}.txt").write_text(digest.hexdigest())
        if "TORCHELASTIC_RUN_ID" not in os.environ:  # not a torchrun worker (the test's own process)
            return
        atexit.register(_out(f"exit-handlers.rank{_rank()}.txt").write_text, "ran")
        record, exit_now = _out(f"os-exit.rank{_rank()}.txt"), os._exit

        def record_exit(code):  # how the process ends: written, then ended as asked
            record.write_text(str(code))
            exit_now(code)

        os._exit = record_exit


class RankZero:
    """An ordinary consumer: it hears rank 0 only. It fails at epoch SDA_TEST_FAIL_AT_EPOCH, and
    stops the run early after epoch SDA_TEST_STOP_AT_EPOCH (sda_should_stop is asked on rank 0)."""

    @hookimpl
    def sda_should_stop(self, history):
        if history.last_epoch == int(os.environ.get("SDA_TEST_STOP_AT_EPOCH", "0")):
            return "the probe stops early"
        return None

    @hookimpl
    def sda_on_train_start(self, event):
        _out(f"plain.rank{_rank()}.json").write_text(json.dumps({"rank": event.rank}))

    @hookimpl
    def sda_on_epoch(self, event):
        if event.epoch == int(os.environ.get("SDA_TEST_FAIL_AT_EPOCH", "0")):
            raise RuntimeError("the probe fails on purpose")
'''

HOST_SCRIPT = """
import sys

from sda_core import Engine

data, run, max_epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
result = Engine().train(data, run, {"max_epochs": max_epochs}, resume=True)
print(f"rank-result {result.reason} {result.epochs_completed}", flush=True)

# what sda's exit handler does; no thread of the process group may outlive it, or the
# interpreter's teardown races them (an abort, exit code -6, after a complete run)
import os
from pathlib import Path

import torch.distributed as dist

dist.destroy_process_group()
names = [Path(f"/proc/self/task/{task}/comm").read_text().strip() for task in os.listdir("/proc/self/task")]
print(f"gloo threads left {sum('gloo' in name for name in names)}", flush=True)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _records(folder: Path, name: str) -> list:
    path = folder / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _keys_by_epoch(folder: Path, rank: int) -> dict[int, list[tuple[int, ...]]]:
    """Training keys a rank read, by epoch (epoch 0 is the sampler fit's fixed grid: left out)."""
    keys: dict[int, list[tuple[int, ...]]] = {}
    for epoch, *item in _records(folder, f"keys.rank{rank}.jsonl"):
        if epoch:
            keys.setdefault(epoch, []).append(tuple(item))
    return keys


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]


def _torchrun(arguments: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        *arguments,
    ]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def launches(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One process, then two (``sda train`` under torchrun), then two resuming and stopped by a
    SIGTERM on rank 1 (a host script under torchrun), then one resuming the run again."""
    base = tmp_path_factory.mktemp("distributed")
    data = write_audio_folder(base / "data", count=6, durations=(1.5, 2.5, 3.0, 2.0, 1.2, 2.8), sample_rates=(8000,))
    site = base / "site-packages"
    site.mkdir()
    (site / "sda_rank_probe.py").write_text(textwrap.dedent(PROBE))
    info = site / "sda_rank_probe-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sda-rank-probe\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[sda]\nkey_recorder = sda_rank_probe:KeyRecorder\nevery_rank = sda_rank_probe:EveryRank\n"
        "rank_zero = sda_rank_probe:RankZero\n"
    )
    work = base / "work"  # the launches' working folder: one run folder may appear in it, no other
    work.mkdir()
    records = {name: base / name for name in ("single", "two", "stopped", "resumed", "failed")}
    for folder in records.values():
        folder.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SDA_DISABLE_PLUGINS", "SDA_LOAD_PLUGINS", "SDA_STRICT_PLUGINS"):
        env.pop(name, None)

    # one process, in this process, with the probe distribution on sys.path like the launches'
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SDA_TEST_RECORD", str(records["single"]))
            Engine(disable=["progress"]).train(data, base / "single-run", SETTINGS)
    finally:
        sys.path.remove(str(site))
        importlib.invalidate_caches()

    two = work / "runs" / "data"  # the default run folder, made where the launch started
    first = _torchrun(  # up to 3 epochs, stopped early after epoch 2 by a plugin on rank 0
        ["-m", "sda_core", "train", str(data), *set_options(SETTINGS, max_epochs=3)],
        work,
        {**env, "SDA_TEST_RECORD": str(records["two"]), "SDA_TEST_STOP_AT_EPOCH": "2"},
    )
    history_after_two = json.loads((two / "history.json").read_text())
    config_after_two = json.loads((two / "config.json").read_text())

    script = base / "host_app.py"
    script.write_text(textwrap.dedent(HOST_SCRIPT))
    second = _torchrun(
        [str(script), str(data), str(two), "4"],
        work,
        {**env, "SDA_TEST_RECORD": str(records["stopped"]), "SDA_TEST_KILL_AT_STEP": str(KILL_AT_STEP)},
    )
    history_after_stop = json.loads((two / "history.json").read_text())

    sys.path.insert(0, str(site))  # and on in one process: another number of processes
    importlib.invalidate_caches()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SDA_TEST_RECORD", str(records["resumed"]))
            final = Engine(disable=["progress"]).train(data, two, {"max_epochs": 4}, resume=True)
    finally:
        sys.path.remove(str(site))
        importlib.invalidate_caches()
        sys.modules.pop("sda_rank_probe", None)
    # a consumer failing in strict mode on rank 0, in epoch 1 of 2
    failing = _torchrun(
        ["-m", "sda_core", "train", str(data), "--out", str(base / "failed-run"), *set_options(SETTINGS)],
        work,
        {**env, "SDA_TEST_RECORD": str(records["failed"]), "SDA_TEST_FAIL_AT_EPOCH": "1", "SDA_STRICT_PLUGINS": "1"},
    )
    return {
        "failing": failing,
        "failed": base / "failed-run",
        "base": base,
        "work": work,
        "records": records,
        "single": base / "single-run",
        "two": two,
        "first": first,
        "second": second,
        "history_after_two": history_after_two,
        "config_after_two": config_after_two,
        "history_after_stop": history_after_stop,
        "final": final,
    }


@NEEDS_EVENTS_LOG
def test_two_processes_train_one_run_with_the_world_size_recorded(launches):
    first = launches["first"]
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    two = launches["two"]
    assert launches["config_after_two"]["world_size"] == 2
    assert "world_size" not in json.loads((launches["single"] / "config.json").read_text())
    assert [epoch["epoch"] for epoch in launches["history_after_two"]["epochs"]] == [1, 2]
    assert sorted(path.name for path in (two / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert first.stdout.count("Run ") == 1  # one summary: rank 0 reports for the run
    work = launches["work"]
    assert list(work.iterdir()) == [work / "runs"] and list((work / "runs").iterdir()) == [two]
    records = launches["records"]["two"]
    # an ordinary consumer hears rank 0 only; one with sda_every_rank = True every rank
    assert [path.name for path in records.glob("plain.rank*.json")] == ["plain.rank0.json"]
    for rank in (0, 1):
        assert json.loads((records / f"every.rank{rank}.json").read_text()) == {"rank": rank, "world_size": 2}
        # a worker ends without the interpreter's teardown (end_worker_process), its exit handlers run
        assert (records / f"exit-handlers.rank{rank}.txt").read_text() == "ran"
        assert (records / f"os-exit.rank{rank}.txt").read_text() == "0"  # without the teardown
    start = next(event for event in _events(two)[:1] if event["event"] == "train_start")
    assert (start["world_size"], start["rank"]) == (2, 0)


def test_the_split_and_the_chunks_of_each_epoch_match_one_process(launches):
    single, two = launches["single"], launches["two"]
    split = json.loads((single / "dataset.json").read_text())["split"]
    assert json.loads((two / "dataset.json").read_text())["split"] == split
    alone = _keys_by_epoch(launches["records"]["single"], 0)
    ranks = [_keys_by_epoch(launches["records"]["two"], rank) for rank in (0, 1)]
    assert sorted(alone) == sorted(ranks[0]) == sorted(ranks[1]) == [1, 2]
    for epoch, keys in alone.items():
        assert len(keys) == 12  # four batches of 3 of the 14 samples, as drop_last leaves them
        assert (len(ranks[0][epoch]), len(ranks[1][epoch])) == (6, 6)  # 3 chunks a step on each rank
        assert Counter(ranks[0][epoch]) + Counter(ranks[1][epoch]) == Counter(keys)  # none dropped or doubled


def _steps_per_epoch(history: dict) -> dict[int, int]:
    return dict(sorted(Counter(step["epoch"] for step in history["steps"]).items()))


@NEEDS_EVENTS_LOG
def test_two_processes_make_half_the_steps_per_epoch_of_one(launches):
    """batch_size is each process's batch: 2 processes train a global batch of 2 x batch_size, so
    the same epoch's chunks take half the steps (history.json and events.jsonl agree)."""
    single, two = launches["single"], launches["two"]
    single_history = json.loads((single / "history.json").read_text())
    assert _steps_per_epoch(single_history) == {1: SINGLE_STEPS, 2: SINGLE_STEPS}
    assert _steps_per_epoch(launches["history_after_two"]) == {1: TWO_STEPS, 2: TWO_STEPS}
    assert TWO_STEPS * 2 == SINGLE_STEPS
    for run, steps, world in ((single, SINGLE_STEPS, 1), (two, TWO_STEPS, 2)):
        events = _events(run)
        start = events[0]
        assert (start["event"], start["steps_per_epoch"], start["world_size"]) == ("train_start", steps, world)
        first_epoch = [event for event in events if event["event"] == "step" and event["epoch"] == 1]
        assert [event["epoch_step"] for event in first_epoch] == list(range(1, steps + 1))
        assert {event["steps_per_epoch"] for event in first_epoch} == {steps}


def test_every_rank_sees_the_same_validation_losses_and_stops_early_with_rank_0(launches):
    records = launches["records"]["two"]
    for rank in (0, 1):  # rank 0's plugin stopped the run after epoch 2 of 3, on both ranks
        assert json.loads((records / f"end.rank{rank}.json").read_text()) == ["the probe stops early", 2]
    losses = [_records(records, f"epochs.rank{rank}.jsonl") for rank in (0, 1)]
    assert [epoch for epoch, _val, _train in losses[0]] == [1, 2]
    assert losses[0] == losses[1]
    # each rank trained on its own batches, with the gradients averaged: the same weights on both
    assert (records / "weights.rank0.txt").read_text() == (records / "weights.rank1.txt").read_text()
    assert [
        [epoch["epoch"], epoch["val_loss"], epoch["train_loss"]] for epoch in launches["history_after_two"]["epochs"]
    ] == losses[0]


def test_a_stop_on_one_rank_stops_every_rank_with_one_checkpoint(launches):
    second = launches["second"]
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-4000:]
    assert out.count("rank-result interrupted 3") == 2, out[-4000:]  # both ranks stopped, in epoch 4
    if sys.platform == "linux":  # threads are named in /proc
        assert out.count("gloo threads left 0") == 2, out[-4000:]
    assert [epoch["epoch"] for epoch in launches["history_after_stop"]["epochs"]] == [1, 2, 3]
    records = launches["records"]["stopped"]
    for rank in (0, 1):  # resumed with the same split: keys of epochs 3 and 4 only
        assert sorted(_keys_by_epoch(records, rank)) == [3, 4]


@NEEDS_EVENTS_LOG
def test_a_resumed_run_continues_with_another_number_of_processes(launches):
    final, two = launches["final"], launches["two"]
    assert (final.reason, final.epochs_completed) == ("max_epochs", 4)
    history = json.loads((two / "history.json").read_text())
    assert [epoch["epoch"] for epoch in history["epochs"]] == [1, 2, 3, 4]
    # 3 epochs of 2 steps in 2 processes, then epoch 4 of 4 steps in one: the step count continues
    assert [step["step"] for step in history["steps"]] == list(range(1, 3 * TWO_STEPS + SINGLE_STEPS + 1))
    assert _steps_per_epoch(history) == {1: TWO_STEPS, 2: TWO_STEPS, 3: TWO_STEPS, 4: SINGLE_STEPS}
    # the schedule follows the run's progress in epochs, not the step count: with twice the steps
    # per epoch, epoch 4 goes on down the cosine from where epoch 3 ended (unscaled, it would jump
    # back up to the rate of step 7 of 16)
    before = [step["learning_rate"] for step in history["steps"] if step["epoch"] == 3]
    after = [step["learning_rate"] for step in history["steps"] if step["epoch"] == 4]
    assert max(after) < min(before)
    assert after == sorted(after, reverse=True)
    assert "world_size" not in json.loads((two / "config.json").read_text())  # one process now
    events = _events(two)
    for kind, key in (("step", "step"), ("epoch", "epoch"), ("preview", "epoch")):
        values = [event[key] for event in events if event["event"] == kind]
        assert len(values) == len(set(values)), f"a {kind} event twice in events.jsonl"
    assert [event["epoch"] for event in events if event["event"] == "epoch"] == [1, 2, 3, 4]
    starts = [(event["world_size"], event["resumed"]) for event in events if event["event"] == "train_start"]
    assert starts == [(2, False), (2, True), (1, True)]
    ends = [event["reason"] for event in events if event["event"] == "train_end"]
    assert ends == ["the probe stops early", "interrupted", "max_epochs"]


@NEEDS_EVENTS_LOG
def test_a_consumer_failing_in_strict_mode_stops_every_rank_after_saving_the_epoch(launches):
    failing, run = launches["failing"], launches["failed"]
    out = failing.stdout + failing.stderr
    assert failing.returncode != 0
    errors = [line for line in out.splitlines() if ": error: " in line and line.startswith("sda")]
    assert len(errors) == 1 and "rank_zero" in errors[0], out[-4000:]  # rank 0 says why; rank 1 is quiet
    assert [epoch["epoch"] for epoch in json.loads((run / "history.json").read_text())["epochs"]] == [1]
    assert (run / "checkpoints" / "last.pt").exists()
    ends = [event["reason"] for event in _events(run) if event["event"] == "train_end"]
    assert len(ends) == 1 and ends[0].startswith("error: PluginError"), ends


@pytest.mark.parametrize(
    ("items", "samples", "batch", "ranks"),
    [(10, 12, 5, 2), (7, 32, 8, 4), (9, 30, 7, 3), (5, 3, 4, 2), (40, 40, 16, 3), (10, 10, 3, 2), (10, 9, 1, 4)],
)
def test_ranks_share_out_the_single_process_epoch(items, samples, batch, ranks):
    """Each rank trains batches of ``batch``: the ranks make ceil (floor only when ``batch`` is
    below the ranks and a last key per rank is missing) of one process's steps / ranks, the same
    number on every rank, each step's global batch a contiguous run of the single-process epoch."""
    import math

    from torch.utils.data import BatchSampler

    from sda_core.data.loaders import EpochSampler

    alone = EpochSampler(items, samples_per_epoch=samples, seed=4, repeat_keys=True)
    shares = [
        EpochSampler(
            items, samples_per_epoch=samples, seed=4, rank=r, world_size=ranks, repeat_keys=True, batch_size=batch
        )
        for r in range(ranks)
    ]
    for sampler in (alone, *shares):
        sampler.set_epoch(3)
    # what one process trains on: full batches only (drop_last), or one short batch
    single = [key for keys in BatchSampler(list(alone), batch, drop_last=samples >= batch) for key in keys]
    single_steps = -(-len(single) // batch)
    per_rank = [list(BatchSampler(list(sampler), batch, drop_last=False)) for sampler in shares]
    steps = len(per_rank[0])
    assert [len(batches) for batches in per_rank] == [steps] * ranks  # DDP: the same steps on every rank
    exact = batch >= ranks or len(single) % (batch * ranks) == 0 or len(single) % (batch * ranks) >= ranks
    assert steps == (math.ceil(single_steps / ranks) if exact else single_steps // ranks)
    trained = [key for step in range(steps) for batches in per_rank for key in batches[step]]
    if exact:
        assert trained == single  # every chunk of the epoch once, none dropped or doubled
    else:  # fewer than `ranks` keys would be left for a last step: left out
        assert trained == single[: len(trained)] and len(single) - len(trained) < ranks
    assert [len(sampler) for sampler in shares] == [sum(map(len, batches)) for batches in per_rank]
    assert max(max(map(len, batches)) for batches in per_rank) <= batch


def test_validation_is_shared_without_padding():
    from sda_core.data.loaders import EpochSampler

    shares = [list(EpochSampler(7, shuffle=False, rank=r, world_size=3, pad=False)) for r in range(3)]
    assert sorted(key for share in shares for key in share) == [(0, index) for index in range(7)]
    assert [len(share) for share in shares] == [
        len(EpochSampler(7, shuffle=False, rank=r, world_size=3, pad=False)) for r in range(3)
    ]


def test_an_epoch_without_a_chunk_for_every_process_is_refused(tmp_path):
    from sda_core.data.loaders import create_data_loaders
    from sda_core.errors import ConfigError

    data = write_audio_folder(tmp_path / "data", sample_rates=(8000,))
    engine = Engine(disable=["progress"])
    summary = engine.scan(data)
    config = engine.resolve_config(summary, {**SETTINGS, "samples_per_epoch": 3})
    with pytest.raises(ConfigError, match="samples_per_epoch"):
        create_data_loaders(summary, config, engine, rank=0, world_size=4)


def test_one_process_leaves_the_loaders_as_they_were(tmp_path):
    """WORLD_SIZE unset: no sharding, drop_last as before, nothing initialised; two ranks each
    load batches of batch_size, half the batches of one process."""
    import torch.distributed as dist

    from sda_core.data.loaders import create_data_loaders
    from sda_core.training.distributed import SINGLE, Distributed

    assert Distributed.from_environment() is SINGLE and not dist.is_initialized()
    data = write_audio_folder(tmp_path / "data", sample_rates=(8000,))
    engine = Engine(disable=["progress"])
    summary = engine.scan(data)
    config = engine.resolve_config(summary, SETTINGS)
    train, _val, _split = create_data_loaders(summary, config, engine)
    assert train.sampler.batch_size is None and train.batch_size == 3 and train.drop_last
    assert len(train) == SINGLE_STEPS
    for rank in (0, 1):
        shared, _val, _split = create_data_loaders(summary, config, engine, rank=rank, world_size=2)
        assert shared.batch_size == 3 and not shared.drop_last and len(shared) == TWO_STEPS


def test_other_commands_refuse_torchrun(tmp_path):
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "sda_core", "demo", "--out", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "sda demo runs in one process" in done.stderr and "torchrun" in done.stderr
    assert not (tmp_path / "demo").exists()


def test_plugins_hear_other_ranks_only_when_they_ask():
    """On a rank other than 0, events reach only plugins with ``sda_every_rank = True``."""
    from sda_core import hookimpl
    from sda_core.config.events import TrainingStartEvent

    heard: list[str] = []

    class Plain:
        @hookimpl
        def sda_on_train_start(self, event):
            heard.append(f"plain {event.rank}")

    class Every:
        sda_every_rank = True

        @hookimpl
        def sda_on_train_start(self, event):
            heard.append(f"every {event.rank}")

    engine = Engine(plugins=[Plain(), Every()], load_entrypoints=False)
    engine.hooks.emit(TrainingStartEvent(run_dir="run", world_size=2, rank=0))
    engine.hooks.rank = 1
    engine.hooks.emit(TrainingStartEvent(run_dir="run", world_size=2, rank=1))
    assert sorted(heard) == ["every 0", "every 1", "plain 0"]


def test_the_collective_timeout_is_read_from_the_environment():
    from sda_core.errors import ConfigError
    from sda_core.training.distributed import DEFAULT_TIMEOUT_SECONDS, timeout_seconds

    assert timeout_seconds({}) == DEFAULT_TIMEOUT_SECONDS
    assert timeout_seconds({"SDA_DISTRIBUTED_TIMEOUT": "90"}) == 90.0
    with pytest.raises(ConfigError, match="SDA_DISTRIBUTED_TIMEOUT"):
        timeout_seconds({"SDA_DISTRIBUTED_TIMEOUT": "soon"})


def test_weighted_shares_average_to_the_gradient_of_the_global_batch():
    """DDP averages the ranks' gradients; with uneven shares (an epoch's last global batch of 5
    chunks on 2 ranks: 3 + 2) each rank's batch-mean loss is weighted by
    ``Distributed.loss_weight``, so the average is the gradient of the mean over that global
    batch."""
    import torch

    from sda_core.data.loaders import rank_batch_sizes
    from sda_core.training.distributed import Distributed

    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 1)
    batch, target = torch.randn(5, 4), torch.randn(5, 1)

    def gradient(rows: slice, weight: float = 1.0) -> torch.Tensor:
        layer.zero_grad()
        (torch.nn.functional.mse_loss(layer(batch[rows]), target[rows]) * weight).backward()
        return layer.weight.grad.clone()

    whole = gradient(slice(None))
    sizes = rank_batch_sizes(5, 2)
    assert sizes == [3, 2]
    world = Distributed(rank=0, world_size=2)
    shares = [gradient(slice(0, 3), world.loss_weight(3, 5)), gradient(slice(3, 5), world.loss_weight(2, 5))]
    assert torch.allclose((shares[0] + shares[1]) / 2, whole, atol=1e-6)
    unweighted = (gradient(slice(0, 3)) + gradient(slice(3, 5))) / 2
    assert not torch.allclose(unweighted, whole, atol=1e-6)


def test_a_world_size_without_torchrun_is_one_sentence(tmp_path):
    data = write_audio_folder(tmp_path / "data", sample_rates=(8000,))
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "OMP_NUM_THREADS": "1"}
    for name in ("MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "sda_core", "train", str(data), "--out", str(tmp_path / "run"), *set_options(SETTINGS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "rank 0 of 2 cannot join the other processes" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_resumed_schedule_keeps_its_place_in_epochs_when_the_steps_per_epoch_change():
    """3 epochs of 2 steps (2 processes), resumed with 4 steps per epoch (1 process): the next
    learning rate is the one a run of 4 steps per epoch has after 3 epochs; unchanged steps per
    epoch load the saved state as it is."""
    import torch

    from sda_core.config.events import StepMetrics
    from sda_core.config.history import MetricsHistory
    from sda_core.training.trainer import _resume_schedule, warmup_cosine

    def scheduler(steps_per_epoch: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
        total = 5 * steps_per_epoch
        made = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, max(1, total // 10)))
        for _ in range(steps):
            optimizer.step()
            made.step()
        return made

    history = MetricsHistory()
    history.record_step(StepMetrics(epoch=3, step=6, epoch_step=2, steps_per_epoch=2, loss=1.0))
    saved = scheduler(2, 6).state_dict()
    resumed = scheduler(4, 0)
    _resume_schedule(resumed, saved, history, 4, resumed.lr_lambdas[0])
    reference = scheduler(4, 12)
    assert resumed.last_epoch == 12
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(reference.optimizer.param_groups[0]["lr"])
    assert resumed.get_last_lr() == pytest.approx(reference.get_last_lr())

    same = scheduler(2, 0)
    _resume_schedule(same, saved, history, 2, same.lr_lambdas[0])
    assert same.state_dict() == saved
