"""Bad inputs: every entry of the corpus (tests/bad_inputs.py) is used, repaired or skipped as
docs/reliability.md says, ``sda scan`` says which and why, and ``sda train`` completes on the good
files without dropping one.

The table in docs/reliability.md, the expectations in ``bad_inputs.CASES`` and what the code does
are checked against each other, so none of the three can drift.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import bad_inputs
import pytest
from bad_inputs import CASES, REPAIRED, REPLACED, SKIPPED, TRAINED, USED, Case

from sda_core import hookimpl
from sda_core.config.dataset import FileSplit
from sda_core.errors import DatasetError
from sda_core.testing import make_engine
from sda_core.training.checkpoints import load_checkpoint

DOCS = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
TABLE_HEADING = "## Bad inputs"
COLUMNS = ("case", "file", "scan", "code", "training")
#: Warning codes that mean training leaves the file out although the scan lists it as usable.
TRAINING_SKIPS = ("non_finite", "read_error")

needs_posix = pytest.mark.skipif(os.name == "nt", reason="the corpus needs POSIX symlinks and file names")
pytestmark = needs_posix


def run_cli(*args: str) -> SimpleNamespace:
    """``sda ARGS`` in this process: returncode, stdout and stderr."""
    from sda_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


# -- the table --------------------------------------------------------------------------------


def table_rows() -> list[dict[str, str]]:
    """The rows of the bad-input table of docs/reliability.md, cells stripped of backticks."""
    text = DOCS.read_text(encoding="utf-8")
    assert TABLE_HEADING in text, f"{DOCS} has no '{TABLE_HEADING}' section"
    body = text.split(TABLE_HEADING, 1)[1]
    lines = [line.strip() for line in body.splitlines()]
    start = next(index for index, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    header = [cell.lower() for cell in table[0]]
    assert all(column in header for column in COLUMNS), header
    assert set(table[1][0]) <= set("-: "), "the second line of the table is its separator"
    rows = []
    for cells in table[2:]:
        assert len(cells) == len(header), cells
        row = dict(zip(header, cells, strict=True))
        rows.append({key: value.strip("`").strip() for key, value in row.items()})
    return rows


def test_the_table_has_a_row_for_every_case_and_says_what_the_cases_expect():
    rows = table_rows()
    assert len(rows) >= 20
    by_name = {row["case"]: row for row in rows}
    assert len(by_name) == len(rows), "two rows describe the same case"
    assert sorted(by_name) == sorted(case.name for case in CASES)
    for case in CASES:
        row = by_name[case.name]
        assert row["file"] == bad_inputs.display(case.path), case.name
        assert (row["scan"], row["training"]) == (case.scan, case.training), case.name
        assert frozenset(part.strip() for part in row["code"].split(",") if part.strip() != "-") == case.codes, (
            case.name
        )


def test_every_code_in_the_table_is_a_real_reason_or_warning_code():
    from sda_core.config.dataset import SkipReason
    from sda_core.data.analysis import WarningCode

    known = set(SkipReason.ALL) | set(WarningCode.ALL)
    for case in CASES:
        assert case.codes <= known, case.name
        assert case.scan in (USED, REPAIRED, SKIPPED) and case.training in (TRAINED, REPLACED, bad_inputs.ABSENT)


# -- scanning ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reliability") / "my sounds"
    bad_inputs.build_corpus(folder)
    return folder


@pytest.fixture(scope="module")
def scan_json(corpus: Path) -> dict:
    result = run_cli("scan", str(corpus), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def scan_text(corpus: Path, scan_json: dict) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", "240")  # rich wraps table cells to the console's width
        result = run_cli("scan", str(corpus), "--all")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def verdict(report: dict, path: str) -> tuple[str, frozenset[str]]:
    """What ``sda scan --json`` says about one entry: (used / repaired / skipped, its codes)."""
    skipped = {item["path"]: item["reason"] for item in report["skipped"]}
    if path in skipped:
        return SKIPPED, frozenset({skipped[path]})
    assert path in {entry["path"] for entry in report["files"]}, f"the scan does not mention {path!r}"
    codes = frozenset(item["code"] for item in report["dataset_warnings"] if path in item["paths"])
    if codes & set(TRAINING_SKIPS):
        return SKIPPED, codes
    if "truncated" in codes:
        return REPAIRED, codes
    return USED, codes


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_sda_scan_says_whether_each_input_is_used_repaired_or_skipped_and_why(case: Case, scan_json: dict):
    assert verdict(scan_json, case.path) == (case.scan, case.codes)


def test_every_entry_on_disk_is_accounted_for(corpus: Path, scan_json: dict):
    reported = {entry["path"] for entry in scan_json["files"]} | {item["path"] for item in scan_json["skipped"]}
    assert reported == {case.path for case in CASES}
    assert all(item["detail"] for item in scan_json["skipped"])


def test_the_report_for_people_names_each_skipped_entry_with_its_reason(scan_text: str):
    lines = scan_text.splitlines()
    for case in CASES:
        name = bad_inputs.display(case.path)
        if "\\x" in name:  # rich shows an undecodable byte as U+FFFD
            name = name.split("\\x")[1][2:]
        row = [line for line in lines if name in line and "│" in line]
        assert row, f"{case.name}: {name!r} is not in the report"
        if case.scan == SKIPPED and case.codes <= set(bad_inputs.SKIP_REASONS):
            assert any(next(iter(case.codes)) in line for line in row), row
        elif case.scan == REPAIRED:
            assert any("truncated" in line for line in row), row
        elif "non_finite" in case.codes:
            assert any("NaN/Inf: training skips it" in line for line in row), row
    warnings = scan_text[scan_text.index("Warnings") :]
    for code in sorted({code for case in CASES for code in case.codes} - set(bad_inputs.SKIP_REASONS)):
        assert f"{code}:" in warnings


def test_a_wrong_mp3_length_is_corrected_from_what_decodes(scan_json: dict):
    files = {entry["path"]: entry for entry in scan_json["files"]}
    good = files["good.mp3"]
    for path in ("mp3_count_x10.mp3", "mp3_count_absurd.mp3", "mp3_cut.mp3"):
        analysis = scan_json["analysis"][path]
        assert files[path]["frames"] == analysis["frames_read"] < analysis["frames_expected"], path
        assert files[path]["duration"] < 3.0, path
    assert good["frames"] == scan_json["analysis"]["good.mp3"]["frames_read"]
    assert scan_json["total_duration"] < 120  # no header's claim inflates the dataset


# -- training ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(corpus: Path, scan_json: dict, scan_text: str, tmp_path_factory: pytest.TempPathFactory):
    """``sda train`` on the corpus (after the scans: it changes the files that change after one)."""
    work = tmp_path_factory.mktemp("train")
    site = bad_inputs.install_plugin(
        work / "site",
        "sda-reliability-mutate",
        "reliability_mutate",
        "sda_reliability_mutate",
        bad_inputs.MUTATE_PLUGIN,
    )
    run = work / "run"
    env = bad_inputs.sda_env(bad_inputs.reference_plugins("reliability_mutate"), site)
    # enough samples per epoch that every training chunk is read (the sampler draws whole
    # permutations before repeating), so a file that vanished is certainly come across
    chunks = sum(entry["chunks"] for entry in scan_json["files"])
    settings = bad_inputs.fast_set(samples_per_epoch=4 * (chunks // 4 + 2))
    result = subprocess.run(
        [sys.executable, "-m", "sda_core", "train", str(corpus), "--out", str(run), *settings, "--max-epochs", "2"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    return SimpleNamespace(
        result=result,
        run=run,
        dataset=json.loads((run / "dataset.json").read_text()) if (run / "dataset.json").exists() else None,
    )


def test_sda_train_completes_on_the_corpus(trained):
    result = trained.result
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "max_epochs after epoch 2" in result.stdout
    history = json.loads((trained.run / "history.json").read_text())
    assert [epoch["epoch"] for epoch in history["epochs"]] == [1, 2]


def test_no_good_file_is_dropped(trained):
    split = trained.dataset["split"]
    used = set(split["train"]) | set(split["validation"])
    assert bad_inputs.good_paths() <= used
    assert not set(split["train"]) & set(split["validation"])
    assert split["train"], "the training set is empty"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_training_does_with_each_input_what_the_table_says(case: Case, trained):
    split = trained.dataset["split"]
    in_split = case.path in set(split["train"]) | set(split["validation"])
    warned = [
        line
        for line in trained.result.stderr.splitlines()
        if "its chunks are replaced" in line and bad_inputs.display(case.path) in line
    ]
    if case.training == bad_inputs.ABSENT:
        assert not in_split
    elif case.training == TRAINED:
        assert in_split and not warned, warned
    else:
        assert in_split and len(warned) == 1, trained.result.stderr


def test_each_training_warning_is_one_sentence_naming_its_file(trained):
    warnings = [line for line in trained.result.stderr.splitlines() if line.startswith("warning:")]
    replaced = [line for line in warnings if "its chunks are replaced" in line]
    assert len(replaced) == sum(case.training == REPLACED for case in CASES)
    assert all(re.search(r"'[^']+'", line) for line in replaced)


# -- when a whole side of the split cannot be read ----------------------------------------------


class ForcedSplit:
    """A split provider that holds out exactly the given files."""

    name = "forced_split"

    def __init__(self, validation: tuple[str, ...]) -> None:
        self.validation = validation

    @hookimpl
    def sda_split_files(self, files, config):
        paths = sorted(info.path for info in files)
        return FileSplit(train=[path for path in paths if path not in self.validation], validation=self.validation)


def small_folder(folder: Path, *bad: str) -> Path:
    for index in range(4):
        bad_inputs.good(1.5 + 0.3 * index, seed=index)(folder / f"good_{index}.wav")
    for name in bad:
        bad_inputs.nan_and_inf(folder / name)
    return folder


@pytest.mark.parametrize("how", ["NaN samples", "vanished"])
def test_training_goes_on_without_validation_when_no_validation_file_can_be_read(how, tmp_path: Path):
    data = small_folder(tmp_path / "data", "held_out.wav")

    class Vanish:
        @hookimpl
        def sda_resolve_config(self, summary, overrides):
            if how == "vanished":
                (data / "held_out.wav").unlink()

    engine = make_engine(ForcedSplit(("held_out.wav",)), Vanish(), reference=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = engine.train(data, tmp_path / "run", {**bad_inputs.FAST, "max_epochs": 2})
    assert result.reason == "max_epochs" and result.epochs_completed == 2
    assert result.initial_val_loss is None and result.best_val_loss is None
    messages = [str(item.message) for item in caught]
    assert sum("held_out.wav" in message for message in messages) == 1
    assert sum("not one validation file can be read" in message for message in messages) == 1
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 2


@pytest.mark.filterwarnings("ignore")
def test_when_no_training_file_can_be_read_sda_train_says_so_in_one_sentence(tmp_path: Path):
    data = tmp_path / "data"
    bad_inputs.good(2.0)(data / "good.wav")
    for index in range(3):
        bad_inputs.nan_and_inf(data / f"bad_{index}.wav")

    engine = make_engine(ForcedSplit(("good.wav",)), reference=True)
    with pytest.raises(DatasetError, match=r"none of the 3 train files under .* could be read"):
        engine.train(data, tmp_path / "run", {**bad_inputs.FAST, "max_epochs": 1})
