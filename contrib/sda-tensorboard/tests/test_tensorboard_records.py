"""The event files at the byte level, and the writer used through its public API only.

The records are parsed here by hand (length, masked CRC-32C of the length, data, masked CRC-32C
of the data) and checked with TensorBoard's own pure-Python checksum, independent of the native
``crc32c`` that tensorboardX writes them with; the data are TensorBoard ``Event`` protos.
"""

from __future__ import annotations

import ast
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sda_tensorboard
from sda_tensorboard import TensorBoardLogger
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

from sda_core.config.events import EpochMetrics, StepMetrics, TrainingCompleteEvent, TrainingStartEvent

LOSSES = {"loss": 1.5, "recon": 1.25, "kl": 0.25}


def read_records(path: Path) -> list[Event]:
    """Every record of one event file, its checksums verified, parsed as an ``Event``."""
    data = path.read_bytes()
    events, offset = [], 0
    while offset < len(data):
        header = data[offset : offset + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[offset + 8 : offset + 12])
        assert header_crc == masked_crc32c(header), f"bad length checksum at byte {offset} of {path.name}"
        payload = data[offset + 12 : offset + 12 + length]
        assert len(payload) == length, f"truncated record at byte {offset} of {path.name}"
        (payload_crc,) = struct.unpack("<I", data[offset + 12 + length : offset + 16 + length])
        assert payload_crc == masked_crc32c(payload), f"bad data checksum at byte {offset} of {path.name}"
        events.append(Event.FromString(payload))
        offset += 16 + length
    return events


def scalars(events: list[Event]) -> dict[str, list[tuple[int, float]]]:
    """``tag -> [(step, value), ...]`` of the simple scalar values, in file order."""
    found: dict[str, list[tuple[int, float]]] = {}
    for event in events:
        for value in event.summary.value:
            if value.WhichOneof("value") == "simple_value":
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_records_are_well_formed_and_hold_every_step_and_epoch(tmp_path):
    logger = TensorBoardLogger()
    began = time.time()
    logger.sda_on_train_start(
        TrainingStartEvent(run_dir=tmp_path, config={"plugins": {}}, steps_per_epoch=3, timestamp=began)
    )
    for step in range(1, 7):
        logger.sda_on_step(
            StepMetrics(
                epoch=(step - 1) // 3 + 1,
                step=step,
                epoch_step=(step - 1) % 3 + 1,
                steps_per_epoch=3,
                loss=1.0 / step,
                losses=LOSSES,
                learning_rate=1e-3 * step,
                items_per_second=10.0 * step,
                timestamp=began + step,
            )
        )
        if step % 3 == 0:
            logger.sda_on_epoch(
                EpochMetrics(
                    epoch=step // 3,
                    step=step,
                    train_loss=2.0 / step,
                    val_loss=None if step == 3 else 0.5,  # no validation value: left out
                    learning_rate=1e-3,
                    train_losses={"recon": 0.75},
                    timestamp=began + step,
                )
            )
    logger.sda_on_train_end(TrainingCompleteEvent(reason="max_epochs", epochs_completed=2, steps=6))

    (path,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    events = read_records(path)
    assert events[0].file_version == "brain.Event:2"
    assert any(event.session_log.status == event.session_log.START and event.step == 0 for event in events)
    found = scalars(events)
    assert found["step/loss"] == [(step, pytest.approx(1.0 / step)) for step in range(1, 7)]
    assert found["step/learning_rate"] == [(step, pytest.approx(1e-3 * step)) for step in range(1, 7)]
    assert found["step/items_per_second"] == [(step, pytest.approx(10.0 * step)) for step in range(1, 7)]
    for name, value in LOSSES.items():
        assert found[f"step_losses/{name}"] == [(step, value) for step in range(1, 7)]
    assert found["epoch/train_loss"] == [(1, pytest.approx(2.0 / 3)), (2, pytest.approx(2.0 / 6))]
    assert found["epoch/val_loss"] == [(2, 0.5)]
    assert found["epoch_train_losses/recon"] == [(1, 0.75), (2, 0.75)]
    step_events = [event for event in events if any(v.tag == "step/loss" for v in event.summary.value)]
    assert [event.wall_time for event in step_events] == [began + step for step in range(1, 7)]


def test_the_writer_is_used_through_its_public_api_only():
    """No ``_name`` attribute of anything but the logger itself (``self``) in the plugin's code."""
    offences = []
    for path in sorted(Path(sda_tensorboard.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    offences.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert offences == []


def test_records_are_checksummed_natively():
    """tensorboardX takes the crc32c package's native CRC-32C when it is installed (a dependency)."""
    import crc32c
    import tensorboardX.crc32c

    assert tensorboardX.crc32c.crc32c is crc32c.crc32c
    assert masked_crc32c(b"sda") == tensorboardX.record_writer.masked_crc32c(b"sda")


def test_loading_the_plugin_imports_no_writer():
    code = "import sda_tensorboard, sys; print(sorted({'tensorboardX', 'tensorboard', 'torch'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
