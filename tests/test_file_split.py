"""The reference file-level split: leak-free, seeded, order-independent, balanced by duration."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sda_core.atomic
from sda_core import ConfigError, DatasetError, Engine, FileSplit, PluginError, RunDataError, TrainingConfig
from sda_core.config.dataset import AudioFileInfo
from sda_plugins import file_split as fs
from sda_plugins.file_split import (
    SplitReconciliation,
    load_split,
    reconcile_split,
    save_split,
    split_files,
    split_seconds,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RATES = (22050, 44100, 48000, 96000)


def info(path: str, seconds: float, sample_rate: int = 44100) -> AudioFileInfo:
    return AudioFileInfo(
        path=path,
        format="WAV",
        subtype="PCM_16",
        sample_rate=sample_rate,
        channels=1,
        frames=max(1, round(seconds * sample_rate)),
        size_bytes=0,
    )


def library(one_shots=(), loops=(), long=(), rates=RATES) -> list[AudioFileInfo]:
    """A realistic small-data folder: one-shots, loops and a few long recordings, mixed rates."""
    files = []
    for kind, durations in (("one_shots", one_shots), ("loops", loops), ("recordings", long)):
        for index, seconds in enumerate(durations):
            files.append(info(f"{kind}/{index:03d}.wav", seconds, rates[index % len(rates)]))
    return files


def error_seconds(split: FileSplit, files, fraction: float) -> tuple[float, float]:
    """(validation seconds - target, target), the target counted as the plugin counts it."""
    units = {f.path: fs._duration_units(f) for f in files}
    target = max(1, round(fraction * sum(units.values())))
    val = sum(units[p] for p in split.validation)
    return (val - target) / fs.UNITS_PER_SECOND, target / fs.UNITS_PER_SECOND


def tolerance(target: float) -> float:
    return max(fs.TOLERANCE_SECONDS, fs.TOLERANCE_RELATIVE * target)


def quantum_bound(files, target_seconds: float) -> float:
    """The documented n * q bound, in seconds (q = 2 x target / DP_BITS, at least 1 us)."""
    target = target_seconds * fs.UNITS_PER_SECOND
    q = max(1, -(-int(2 * target) // fs.DP_BITS))
    return len(files) * q / fs.UNITS_PER_SECOND + 2e-6


# -- strategies ---------------------------------------------------------------------------------


@st.composite
def any_files(draw, min_size: int = 0, max_size: int = 40) -> list[AudioFileInfo]:
    names = draw(
        st.lists(
            st.from_regex(r"[a-z]{1,6}(/[a-z0-9_ ]{1,8})?\.wav", fullmatch=True),
            min_size=min_size,
            max_size=max_size,
            unique=True,
        )
    )
    return [
        AudioFileInfo(
            path=name,
            format="WAV",
            subtype="PCM_16",
            sample_rate=draw(st.sampled_from(RATES)),
            channels=1,
            frames=draw(st.integers(1, 48000 * 120)),
            size_bytes=0,
        )
        for name in names
    ]


@st.composite
def realistic_files(draw) -> list[AudioFileInfo]:
    one_shots = draw(st.lists(st.floats(0.05, 2.0), min_size=3, max_size=80))
    loops = draw(st.lists(st.floats(2.0, 16.0), max_size=30))
    long = draw(st.lists(st.floats(30.0, 600.0), max_size=4))
    return library(one_shots, loops, long)


fractions = st.floats(0.0, 0.9)
positive_fractions = st.floats(0.01, 0.9)
seeds = st.integers(0, 2**32)


# -- leak-free, complete, order-independent -----------------------------------------------------


@FAST
@given(any_files(), fractions, seeds)
def test_never_a_file_in_both_sets_and_every_file_exactly_once(files, fraction, seed):
    split = split_files(files, fraction, seed)
    assert not set(split.train) & set(split.validation)
    assert sorted(split.train + split.validation) == sorted(f.path for f in files)
    assert list(split.train) == sorted(split.train) and list(split.validation) == sorted(split.validation)
    assert split.seed == seed


@FAST
@given(st.data(), any_files(max_size=30), fractions, seeds)
def test_the_split_does_not_depend_on_input_order(data, files, fraction, seed):
    shuffled = data.draw(st.permutations(files))
    assert split_files(shuffled, fraction, seed) == split_files(files, fraction, seed)
    assert split_files(tuple(reversed(files)), fraction, seed) == split_files(files, fraction, seed)


@FAST
@given(any_files(), fractions, seeds)
def test_the_same_split_on_repeated_calls(files, fraction, seed):
    assert split_files(files, fraction, seed) == split_files(list(files), fraction, seed)


def test_the_same_split_in_other_processes_whatever_their_hash_seed():
    files = library(one_shots=np.linspace(0.1, 1.9, 25), loops=np.linspace(2.5, 14, 10), long=(95.0, 240.0))
    expected = split_files(files, 0.2).to_dict()
    script = textwrap.dedent("""
        import json, sys
        from sda_core.config.dataset import AudioFileInfo
        from sda_plugins.file_split import split_files
        files = [AudioFileInfo.from_dict(d) for d in json.loads(sys.stdin.read())]
        print(json.dumps(split_files(files[::-1], 0.2).to_dict()))
    """)
    payload = json.dumps([f.to_dict() for f in files])
    for hash_seed in ("0", "1", "4242", "random"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", script],
            input=payload,
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=120,
        )
        assert json.loads(done.stdout) == expected


def test_a_known_split_is_pinned():
    """A golden value: changing the algorithm changes the split of every existing dataset."""
    files = library(one_shots=(0.3, 0.5, 0.8, 1.2, 1.9, 0.25), loops=(4.0, 8.0, 6.0), long=(60.0,))
    split = split_files(files, 0.2)
    assert split == GOLDEN
    assert split_files(files, 0.2, seed=42) == split


GOLDEN = FileSplit(
    train=("loops/000.wav", "one_shots/001.wav", "one_shots/004.wav", "recordings/000.wav"),
    validation=(
        "loops/001.wav",
        "loops/002.wav",
        "one_shots/000.wav",
        "one_shots/002.wav",
        "one_shots/003.wav",
        "one_shots/005.wav",
    ),
    seed=42,
)


# -- small cases ----------------------------------------------------------------------------------


@FAST
@given(any_files(min_size=2), positive_fractions, seeds)
def test_two_or_more_files_always_give_a_validation_and_a_training_file(files, fraction, seed):
    split = split_files(files, fraction, seed)
    assert len(split.validation) >= 1 and len(split.train) >= 1


def test_one_file_trains_and_there_is_no_validation():
    assert split_files([info("a.wav", 3.0)], 0.5) == FileSplit(train=("a.wav",), validation=(), seed=42)
    assert split_files([], 0.2) == FileSplit(train=(), validation=(), seed=42)


@given(any_files(max_size=20), seeds)
@FAST
def test_fraction_zero_turns_validation_off(files, seed):
    split = split_files(files, 0.0, seed)
    assert split.validation == () and split.train == tuple(sorted(f.path for f in files))


def test_two_equal_files_and_a_large_fraction_still_keep_one_for_training():
    files = [info("a.wav", 10.0), info("b.wav", 10.0)]
    split = split_files(files, 0.9)
    assert len(split.train) == 1 and len(split.validation) == 1


def test_files_all_longer_than_the_target_hold_out_the_shortest():
    files = [info("a.wav", 100.0), info("b.wav", 80.0), info("c.wav", 120.0)]
    assert split_files(files, 0.1).validation == ("b.wav",)


def test_a_file_longer_than_the_whole_target_is_not_chosen_when_shorter_ones_fit():
    files = library(one_shots=[1.0] * 20, long=(25.0,))  # 45 s in all, target 9 s
    split = split_files(files, 0.2)
    assert "recordings/000.wav" in split.train
    assert error_seconds(split, files, 0.2)[0] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize(
    ("fraction", "seed", "files"),
    [
        (1.0, 42, []),
        (-0.1, 42, []),
        (float("nan"), 42, []),
        (True, 42, []),
        ("0.2", 42, []),
        (0.2, -1, []),
        (0.2, 1.5, []),
        (0.2, 42, [info("a.wav", 1.0), info("a.wav", 2.0)]),
    ],
)
def test_bad_arguments_are_config_errors(fraction, seed, files):
    with pytest.raises(ConfigError):
        split_files(files, fraction, seed)


# -- balanced by duration -----------------------------------------------------------------------


def _single_moves_and_swaps(split: FileSplit):
    train, val = set(split.train), set(split.validation)
    if len(train) >= 2:
        for path in train:
            yield val | {path}
    if len(val) >= 2:
        for path in val:
            yield val - {path}
    for out, into in itertools.product(val, train):
        yield (val - {out}) | {into}


@FAST
@given(any_files(min_size=2, max_size=25), positive_fractions, seeds)
def test_no_single_move_or_swap_brings_the_validation_seconds_closer(files, fraction, seed):
    split = split_files(files, fraction, seed)
    units = {f.path: fs._duration_units(f) for f in files}
    target = max(1, round(fraction * sum(units.values())))
    error = abs(sum(units[p] for p in split.validation) - target)
    for validation in _single_moves_and_swaps(split):
        assert abs(sum(units[p] for p in validation) - target) >= error


@FAST
@given(any_files(min_size=2, max_size=11), positive_fractions, seeds)
def test_within_the_documented_bound_of_the_best_possible_set(files, fraction, seed):
    split = split_files(files, fraction, seed)
    error, target = error_seconds(split, files, fraction)
    durations = [fs._duration_units(f) / fs.UNITS_PER_SECOND for f in files]
    best = min(
        abs(sum(d for d, chosen in zip(durations, mask) if chosen) - target)
        for mask in itertools.product((False, True), repeat=len(files))
        if any(mask) and not all(mask)
    )
    assert abs(error) <= best + quantum_bound(files, target)


def _best_reachable(files, target: float, resolution: float = 0.001) -> float:
    """Reference subset-sum at ``resolution``: an upper bound on the best achievable |error|."""
    sizes = [max(1, round(f.duration / resolution)) for f in files]
    cap = int(2 * target / resolution) + 1
    reach = 1
    for size in sizes:
        reach = (reach | (reach << size)) & ((1 << (cap + 1)) - 1)
    bits = bin(reach)[:1:-1]
    full, centre = sum(sizes), round(target / resolution)
    near = [bits.rfind("1", 1, centre + 1), bits.find("1", centre + 1)]
    near += [bits.rfind("1", 1, max(1, near[0])), bits.find("1", near[1] + 1) if near[1] > 0 else -1]
    sums = [t for t in near if 0 < t != full]
    if not sums:
        return min(f.duration for f in files) - target
    best_units = min(sums, key=lambda t: abs(t * resolution - target))
    return abs(best_units * resolution - target) + len(files) * resolution / 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(realistic_files(), st.sampled_from([0.1, 0.15, 0.2, 0.25, 0.3]), seeds)
def test_realistic_mixes_hold_the_target_to_the_tolerance_or_the_best_possible(files, fraction, seed):
    split = split_files(files, fraction, seed)
    error, target = error_seconds(split, files, fraction)
    assert abs(error) <= max(tolerance(target), _best_reachable(files, target) + quantum_bound(files, target))


def test_a_batch_of_generated_libraries_is_within_tolerance_whenever_it_can_be():
    rng = np.random.default_rng(2024)
    checked = 0
    for _ in range(120):
        files = library(
            one_shots=rng.uniform(0.05, 2.0, rng.integers(5, 100)),
            loops=rng.uniform(2.0, 16.0, rng.integers(0, 40)),
            long=rng.uniform(30.0, 600.0, rng.integers(0, 5)),
        )
        fraction = float(rng.choice([0.1, 0.15, 0.2, 0.3]))
        error, target = error_seconds(split_files(files, fraction), files, fraction)
        if _best_reachable(files, target) <= tolerance(target) / 2:
            checked += 1
            assert abs(error) <= tolerance(target), (len(files), fraction, error, target)
    assert checked >= 90


@pytest.mark.parametrize("fraction", [0.1, 0.15, 0.2, 0.3])
def test_a_typical_library_is_balanced_by_seconds_not_by_file_count(fraction):
    rng = np.random.default_rng(7)
    files = library(one_shots=rng.uniform(0.1, 1.5, 40), loops=rng.uniform(2, 12, 15), long=(180.0, 95.0, 240.0))
    split = split_files(files, fraction)
    train_s, val_s = split_seconds(split, files)
    assert abs(val_s - fraction * (train_s + val_s)) <= tolerance(fraction * (train_s + val_s))
    assert abs(val_s - fraction * (train_s + val_s)) <= 0.05


# -- seeds ------------------------------------------------------------------------------------------


def test_seed_42_is_the_default_and_other_seeds_give_other_splits():
    rng = np.random.default_rng(3)
    files = library(one_shots=rng.uniform(0.1, 2.0, 30), loops=rng.uniform(2, 10, 10))
    default = split_files(files, 0.2)
    assert default.seed == 42 and default == split_files(files, 0.2, seed=42)
    others = {split_files(files, 0.2, seed=seed).validation for seed in range(20)}
    assert len(others) >= 15
    assert split_files(files, 0.2, seed=43).validation != default.validation


# -- resuming -----------------------------------------------------------------------------------------


SAVED = FileSplit(train=("a.wav", "b.wav", "c.wav"), validation=("d.wav", "e.wav"), seed=42)


def test_a_resumed_run_with_unchanged_files_reuses_the_saved_split():
    result = reconcile_split(SAVED, [info(p, 1.0) for p in ("e.wav", "a.wav", "d.wav", "c.wav", "b.wav")])
    assert result == SplitReconciliation(split=SAVED, added=(), missing=())
    assert not result.changed and result.describe() == []


def test_missing_files_are_dropped_and_reported():
    result = reconcile_split(SAVED, ["a.wav", "c.wav", "e.wav"])
    assert result.missing == ("b.wav", "d.wav") and result.added == ()
    assert result.split == FileSplit(train=("a.wav", "c.wav"), validation=("e.wav",), seed=42)
    assert "b.wav" in result.describe()[0]


def test_added_files_are_reported_and_left_out_by_default():
    result = reconcile_split(SAVED, ["a.wav", "b.wav", "c.wav", "d.wav", "e.wav", "new.wav", "0.wav"])
    assert result.added == ("0.wav", "new.wav") and result.missing == ()
    assert result.split == SAVED  # nothing moved, the validation set keeps its meaning
    assert not result.added_to_training and "left out" in result.describe()[0]


def test_added_files_join_training_only_when_asked():
    result = reconcile_split(SAVED, ["a.wav", "b.wav", "d.wav", "new.wav"], include_added=True)
    assert result.split == FileSplit(train=("a.wav", "b.wav", "new.wav"), validation=("d.wav",), seed=42)
    assert result.added == ("new.wav",) and result.missing == ("c.wav", "e.wav") and result.added_to_training


@FAST
@given(any_files(min_size=2, max_size=25), st.data())
def test_reconciling_never_moves_a_file_between_sets(files, data):
    saved = split_files(files, 0.3)
    kept = data.draw(st.lists(st.sampled_from([f.path for f in files]), unique=True, min_size=1))
    new = data.draw(st.lists(st.from_regex(r"new/[a-z]{1,5}\.wav", fullmatch=True), unique=True, max_size=5))
    include = data.draw(st.booleans())
    if not set(saved.train) & set(kept) and not (include and new):
        with pytest.raises(DatasetError):
            reconcile_split(saved, kept + new, include_added=include)
        return
    result = reconcile_split(saved, kept + new, include_added=include)
    assert set(result.split.validation) == set(saved.validation) & set(kept)
    assert set(result.split.train) - set(new) == set(saved.train) & set(kept)
    assert set(result.missing) == set(saved.train + saved.validation) - set(kept)
    assert set(result.added) == set(new)
    assert set(result.split.train) & set(new) == (set(new) if include else set())


def test_no_training_file_left_is_an_error_that_says_what_to_do():
    with pytest.raises(DatasetError, match="start a fresh run"):
        reconcile_split(SAVED, ["d.wav", "e.wav"])


# -- saving ----------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path: Path):
    path = tmp_path / "run" / "split.json"
    assert save_split(SAVED, path) == path
    assert load_split(path) == SAVED
    other = FileSplit(train=("x.wav",), validation=("y.wav",), seed=7)
    save_split(other, path)  # replaces the old one
    assert load_split(path) == other
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]  # no temporary file left


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch):
    path = tmp_path / "split.json"
    save_split(SAVED, path)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sda_core.atomic.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        save_split(FileSplit(train=("x.wav",), validation=(), seed=1), path)
    assert load_split(path) == SAVED and [p.name for p in tmp_path.iterdir()] == ["split.json"]


def test_load_accepts_the_split_entry_of_a_dataset_file_and_rejects_garbage(tmp_path: Path):
    dataset = tmp_path / "dataset.json"
    dataset.write_text(json.dumps({"scan": {}, "split": SAVED.to_dict()}))
    assert load_split(dataset) == SAVED
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")  # a damaged stored split is run data, not configuration
    with pytest.raises(RunDataError, match="split file"):
        load_split(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(RunDataError, match="split file"):
        load_split(bad)
    bad.write_text(json.dumps({"train": ["a.wav"], "validation": ["a.wav"], "seed": 42}))
    with pytest.raises(RunDataError, match="a file that is not also in the training set"):
        load_split(bad)


# -- through the engine ------------------------------------------------------------------------------------


def test_the_reference_split_answers_through_entry_points():
    engine = Engine()
    assert engine.pm.get_plugin("file_split") is not None
    files = tuple(library(one_shots=np.linspace(0.2, 1.8, 12), loops=(3.0, 6.0, 9.0)))
    config = TrainingConfig(validation_fraction=0.25, split_seed=9)
    assert engine.split_files(files, config) == split_files(files, 0.25, seed=9)
    assert engine.split_files(files, TrainingConfig(validation_fraction=0.0)).validation == ()


def test_disabling_the_reference_split_leaves_no_answer():
    engine = Engine(disable=["file_split"])
    with pytest.raises(PluginError, match="no plugin answered sda_split_files"):
        engine.split_files(tuple(library(one_shots=(1.0, 2.0))), TrainingConfig())
