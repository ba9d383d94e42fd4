"""``sda export``: the ONNX and TorchScript files run without sda and match the PyTorch model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from sda_core.engine import Engine
from sda_core.errors import ExportError
from sda_core.training.export import describe_sampler, export_run
from sda_core.training.generation import load_trained_model

SDA = [sys.executable, "-m", "sda_core"]

#: Runs in `python -I -S` with only site-packages on the path (no .pth files, so no editable sda):
#: checks that sda cannot be imported, then runs the exported files on the inputs saved beside them.
HOST = r"""
import json, sys
sys.path.append(sys.argv[1])
try:
    import sda_core  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("sda is importable here")
import numpy as np
folder, kind = sys.argv[2], sys.argv[3]
latent = np.load(folder + "/latent.npy")
audio = np.load(folder + "/audio.npy")
if kind == "onnx":
    import onnxruntime
    decoder = onnxruntime.InferenceSession(folder + "/generator.onnx", providers=["CPUExecutionProvider"])
    encoder = onnxruntime.InferenceSession(folder + "/generator.encoder.onnx", providers=["CPUExecutionProvider"])
    decoded = decoder.run(None, {"latent": latent})[0]
    encoded = encoder.run(None, {"audio": audio})[0]
else:
    import torch
    module = torch.jit.load(folder + "/generator.pt")
    with torch.no_grad():
        decoded = module(torch.from_numpy(latent)).numpy()
        encoded = module.encode(torch.from_numpy(audio)).numpy()
np.save(folder + "/decoded.npy", decoded)
np.save(folder + "/encoded.npy", encoded)
print("ran", kind)
"""


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SDA, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SDA_DISABLE_PLUGINS": "progress"},
    )


def run_without_sda(folder: Path, kind: str) -> subprocess.CompletedProcess:
    site = sysconfig.get_paths()["purelib"]
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", HOST, site, str(folder), kind],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
    )


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_exported_files_match_the_model_without_sda(tiny_wave_run: Path, tmp_path: Path, kind: str):
    suffix = ".onnx" if kind == "onnx" else ".pt"
    result = run_cli("export", str(tiny_wave_run), "--format", kind, "--out", str(tmp_path / f"generator{suffix}"))
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((tmp_path / f"generator{suffix}.json").read_text())
    assert sidecar["format"] == kind and sidecar["sample_rate"] == 8000 and sidecar["channels"] == 1
    assert sidecar["chunk_samples"] == 8000 and sidecar["latent"]["dtype"] == "float32"
    model, config, _ = load_trained_model(Engine(disable=["progress"]), tiny_wave_run)
    shape = tuple(sidecar["latent"]["shape"])
    assert shape == (model.code_size,) and model.code_size == model.segments * config.latent_dim
    assert sidecar["decoder"]["input"]["shape"] == ["batch", *shape]
    assert sidecar["decoder"]["output"]["shape"] == ["batch", 1, 8000]
    generator = torch.Generator().manual_seed(5)
    latent = model.sample_latents(3, generator=generator).float()
    audio = (0.3 * torch.randn(2, 1, 8000, generator=generator)).float()
    np.save(tmp_path / "latent.npy", latent.numpy())
    np.save(tmp_path / "audio.npy", audio.numpy())
    host = run_without_sda(tmp_path, kind)
    assert host.returncode == 0, host.stderr + host.stdout
    decoded, encoded = np.load(tmp_path / "decoded.npy"), np.load(tmp_path / "encoded.npy")
    assert decoded.shape == (3, 1, 8000) and encoded.shape == (2, *shape)
    np.testing.assert_allclose(decoded, model.decode(latent).numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(encoded, model.encode(audio).numpy(), atol=1e-4, rtol=0)


def test_export_run_defaults_to_the_run_folder_and_describes_the_mixture(tiny_wave_run: Path, tmp_path: Path):
    engine = Engine(disable=["progress"])
    model, _config, _ = load_trained_model(engine, tiny_wave_run)
    sampler = describe_sampler(model, (model.code_size,))
    assert sampler["kind"] == "mixture" and sampler["temperature"] == 1.0  # fitted at the end of the run
    assert sum(sampler["weights"]) == pytest.approx(1.0)
    assert len(sampler["means"]) == len(sampler["stds"]) == len(sampler["weights"])
    assert all(len(mean) == model.code_size for mean in sampler["means"])
    # how sounds longer than a chunk go on: each component's successor in its training file, or -1
    assert len(sampler["next"]) == len(sampler["weights"]) and max(sampler["next"]) >= 0
    assert sampler["next"] == model.sampler_next[: len(sampler["weights"])].tolist()
    model.sampler = "prior"
    assert describe_sampler(model, (model.code_size,))["kind"] == "normal"
    # a copy of the run, so the shared run stays read-only
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_wave_run, run)
    paths = engine.export(run, "onnx")
    assert [p.name for p in paths] == ["generator.onnx", "generator.encoder.onnx", "generator.onnx.json"]
    assert all(p.parent == run / "export" for p in paths)
    assert json.loads(paths[-1].read_text())["sampler"]["weights"] == pytest.approx(sampler["weights"])


def test_export_errors_are_one_sentence(tiny_wave_run: Path, tmp_path: Path):
    missing = run_cli("export", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    unknown = run_cli("export", str(tiny_wave_run), "--format", "coreml")
    assert unknown.returncode == 2 and "unknown export format 'coreml'" in unknown.stderr
    assert "Traceback" not in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    empty = run_cli("export", str(tmp_path / "empty"), "--out", str(tmp_path / "x.onnx"))
    assert empty.returncode == 1 and "checkpoint" in empty.stderr and "Traceback" not in empty.stderr
    with pytest.raises(ValueError, match="unknown export format"):
        export_run(tiny_wave_run, "coreml")


def test_a_model_that_cannot_be_exported_says_so(tiny_wave_run: Path, tmp_path: Path, monkeypatch):
    engine = Engine(disable=["progress"])
    model, _config, _ = load_trained_model(engine, tiny_wave_run)
    original = type(model).decode

    def numpy_decode(self, latent):  # leaves the graph: nothing a tracer can follow
        return torch.from_numpy(original(self, latent).numpy() * np.float32(0.5) + np.random.rand())

    monkeypatch.setattr(type(model), "decode", numpy_decode)
    with pytest.raises(ExportError, match="gives shape|differs from the model|cannot be exported"):
        export_run(tiny_wave_run, "torchscript", tmp_path / "g.pt", hooks=engine)
    assert not (tmp_path / "g.pt").exists()
