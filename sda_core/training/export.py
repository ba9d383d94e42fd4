"""``sda export``: a trained run's generator and encoder as files that run without sda.

:func:`export_run` loads a run's best checkpoint and writes, from the model interface only
(``model.decode`` and ``model.encode`` wrapped in small modules, whatever the model is):

- ``onnx``: ``FILE`` (default ``RUN/export/generator.onnx``), the decoder, latent (batch,
  latent...) -> audio (batch, channels, samples), and ``FILE``'s name with ``.encoder`` before the
  suffix (``generator.encoder.onnx``), audio -> latent; opset :data:`ONNX_OPSET`, a dynamic batch
  axis; exported with PyTorch's TorchScript-based exporter (so ``torch.onnx.is_in_onnx_export()``
  holds and models switch to export-friendly paths, such as the reference model's fixed-basis
  STFT);
- ``torchscript``: ``FILE`` (default ``RUN/export/generator.pt``), one traced module whose
  ``forward`` decodes and whose ``encode`` method encodes; ``torch.jit.load`` runs it;
- beside each, ``FILE.json``: the sample rate, channels, samples per chunk, the latent layout,
  the tensors' names and shapes, and the sampler (the fitted mixture's weights, means and stds when
  the model keeps one in ``sampler_*`` buffers, else N(0, I)), so a host samples without torch.

Each file is checked before it is kept: run on fresh inputs (onnxruntime when it is installed,
``torch.jit.load`` for TorchScript), it must match the PyTorch model within :data:`TOLERANCE`.
docs/export.md describes the files for host applications.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sda_core.atomic import write_text_atomic
from sda_core.data.chunks import chunk_frames
from sda_core.errors import ExportError
from sda_core.hooks.facade import Hooks, as_hooks
from sda_core.training.generation import load_trained_model
from sda_core.training.run_folder import RunLock

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
#: The ONNX opset of exported graphs (onnxruntime 1.14 and later run it).
ONNX_OPSET = 17
#: Largest difference allowed between an exported file's output and the PyTorch model's.
TOLERANCE = 1e-4
#: Folder of a run that exports go to by default.
EXPORT_FOLDER = "export"
#: Version of the sidecar JSON layout.
SIDECAR_VERSION = 1


class _Decoder(nn.Module):
    """latent (batch, latent...) -> audio (batch, channels, samples): the model's ``decode``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.model.decode(latent)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        return self.model.encode(audio)


class _Encoder(nn.Module):
    """audio (batch, channels, samples) -> latent (batch, latent...): the model's ``encode``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.model.encode(audio)


def default_export_path(run_dir: str | Path, format: str) -> Path:  # noqa: A002 - the CLI's word
    """``RUN/export/generator.onnx`` or ``RUN/export/generator.pt``."""
    return Path(run_dir) / EXPORT_FOLDER / f"generator{SUFFIXES[_check_format(format)]}"


def encoder_path(path: str | Path) -> Path:
    """Where the ONNX encoder goes beside the decoder ``path``: ``NAME.encoder.onnx``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.encoder{path.suffix or '.onnx'}")


def sidecar_path(path: str | Path) -> Path:
    """The sidecar JSON of an exported file: ``FILE.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def export_run(
    run_dir: str | Path,
    format: str = "onnx",
    out: str | Path | None = None,
    *,  # noqa: A002
    hooks: Any = None,
    device: Any = "cpu",
) -> list[Path]:
    """Export a run's best checkpoint; return the paths written (the generator first, the sidecar last).

    Args:
        run_dir: a run folder written by ``sda train``.
        format: ``"onnx"`` or ``"torchscript"``.
        out: the generator's file (default :func:`default_export_path`); the encoder (ONNX) and the
            sidecar go beside it. Writing inside the run folder holds the run's lock.
        hooks: the plugins that build the model (``engine.hooks`` or an Engine; default: the
            installed plugins).
        device: where the model is loaded; the files are traced on the CPU.

    Raises:
        CheckpointError: no run folder, or no checkpoint in it.
        ExportError: the model cannot be exported to ``format``, or the exported file does not
            reproduce the model.
        ValueError: an unknown format.
    """
    format = _check_format(format)  # noqa: A001
    hooks = Hooks.from_entrypoints() if hooks is None else as_hooks(hooks)
    model, config, checkpoint = load_trained_model(hooks, run_dir, device, action="export it")
    model = copy.deepcopy(model).to("cpu").eval().requires_grad_(False)
    target = Path(out) if out is not None else default_export_path(run_dir, format)
    if target.exists() and target.is_dir():
        raise ExportError(
            f"'{target}' is a folder; give --out the file to write (e.g. {target / 'generator'}{SUFFIXES[format]})"
        )
    samples = chunk_frames(config)
    audio = _example_audio(2, config.channels, samples, seed=0)
    with torch.no_grad():
        latent = model.encode(audio)
    layout = {
        "format": format,
        "sidecar_version": SIDECAR_VERSION,
        "model": type(model).__name__,
        "checkpoint": Path(checkpoint).name,
        "sample_rate": int(config.sample_rate),
        "channels": int(config.channels),
        "chunk_samples": int(samples),
        "chunk_seconds": samples / config.sample_rate,
        "latent": {"shape": list(latent.shape[1:]), "dtype": "float32"},
        "sampler": describe_sampler(model, tuple(latent.shape[1:])),
    }
    inside_run = target.resolve().is_relative_to(Path(run_dir).resolve())
    with RunLock(run_dir, action="exporting") if inside_run else contextlib.nullcontext():
        target.parent.mkdir(parents=True, exist_ok=True)
        if format == "onnx":
            written = _export_onnx(model, target, audio, latent, layout)
        else:
            written = _export_torchscript(model, target, audio, latent, layout)
        sidecar = sidecar_path(target)
        write_text_atomic(sidecar, json.dumps(layout, indent=2, allow_nan=False) + "\n")
    return [*written, sidecar]


def describe_sampler(model: Any, shape: tuple[int, ...]) -> dict[str, Any]:
    """Where the model's ``generate`` draws codes, as JSON: a diagonal Gaussian mixture read from
    ``sampler_weights`` / ``sampler_means`` / ``sampler_stds`` buffers (fitted components only; a
    kernel density on the training codes is such a mixture), else N(0, I); with the model's default
    ``temperature`` (it scales the stds)."""
    temperature = getattr(model, "temperature", None)
    temperature = 1.0 if temperature is None else float(temperature)
    buffers = dict(model.named_buffers()) if hasattr(model, "named_buffers") else {}
    weights, means, stds = (buffers.get(f"sampler_{name}") for name in ("weights", "means", "stds"))
    # wave_vae's "codes" sampler (one kernel per training code) is stored as a mixture too
    use_mixture = getattr(model, "sampler", "mixture") in ("mixture", "codes")
    if use_mixture and weights is not None and means is not None and stds is not None and float(weights.sum()) > 0:
        keep = weights > 0
        total = float(weights[keep].sum())
        described = {
            "kind": "mixture",
            "temperature": temperature,
            "weights": [float(w) / total for w in weights[keep].tolist()],
            "means": means[keep].reshape(int(keep.sum()), *shape).tolist(),
            "stds": stds[keep].reshape(int(keep.sum()), *shape).tolist(),
            "how": "pick component k with probability weights[k]; latent = means[k] + temperature * stds[k] * N(0, I)",
        }
        following = buffers.get("sampler_next")
        if following is not None and following.shape == weights.shape and bool((following[keep] >= 0).any()):
            position = torch.cumsum(keep.long(), 0) - 1  # old row -> row among the kept ones
            described["next"] = [int(position[n]) if n >= 0 and bool(keep[n]) else -1 for n in following[keep].tolist()]
            described["how"] += (
                "; a sound longer than a chunk goes on with component next[k] and the same N(0, I) draw"
                " for each further chunk, silent from where next[k] is -1"
            )
        return described
    return {"kind": "normal", "temperature": temperature, "how": "latent = temperature * N(0, I)"}


# -- formats ------------------------------------------------------------------------------------


def _export_onnx(
    model: nn.Module, target: Path, audio: torch.Tensor, latent: torch.Tensor, layout: dict[str, Any]
) -> list[Path]:
    encoder = encoder_path(target)
    graphs = (
        (target, _Decoder(model), latent, "latent", "audio", "decoder"),
        (encoder, _Encoder(model), audio, "audio", "latent", "encoder"),
    )
    for path, module, example, input_name, output_name, role in graphs:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with _quiet():
                torch.onnx.export(
                    module,
                    (example,),
                    str(temporary),
                    dynamo=False,
                    opset_version=ONNX_OPSET,
                    input_names=[input_name],
                    output_names=[output_name],
                    dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                )
            _check_onnx(temporary, module, example, input_name, role)
            os.replace(temporary, path)
        except ExportError:
            raise
        except Exception as error:  # the exporter's many error types: one sentence
            raise ExportError(
                f"this run's model ({layout['model']}) cannot be exported to ONNX: {_first_line(error)}"
            ) from None
        finally:
            temporary.unlink(missing_ok=True)
    layout["opset"] = ONNX_OPSET
    layout["decoder"] = _tensor_io(target.name, "latent", latent, "audio", audio)
    layout["encoder"] = _tensor_io(encoder.name, "audio", audio, "latent", latent)
    return [target, encoder]


def _export_torchscript(
    model: nn.Module, target: Path, audio: torch.Tensor, latent: torch.Tensor, layout: dict[str, Any]
) -> list[Path]:
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with _quiet():
            traced = torch.jit.trace_module(
                _Decoder(model), {"forward": (latent,), "encode": (audio,)}, check_trace=False
            )
            torch.jit.save(traced, str(temporary))
            loaded = torch.jit.load(str(temporary), map_location="cpu")
        _compare(lambda x: loaded(x), _Decoder(model), latent.shape, "decoder", layout["model"], "TorchScript")
        _compare(lambda x: loaded.encode(x), _Encoder(model), audio.shape, "encoder", layout["model"], "TorchScript")
        os.replace(temporary, target)
    except ExportError:
        raise
    except Exception as error:
        raise ExportError(
            f"this run's model ({layout['model']}) cannot be exported to TorchScript: {_first_line(error)}"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
    layout["decoder"] = {**_tensor_io(target.name, "latent", latent, "audio", audio), "method": "forward"}
    layout["encoder"] = {**_tensor_io(target.name, "audio", audio, "latent", latent), "method": "encode"}
    return [target]


def _check_onnx(path: Path, module: nn.Module, example: torch.Tensor, input_name: str, role: str) -> None:
    """Run the graph in onnxruntime (when installed) on a fresh batch of 3 and compare."""
    try:
        import onnxruntime  # type: ignore[import-not-found]
    except ImportError:
        return
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model_name = type(getattr(module, "model", module)).__name__
    _compare(
        lambda x: torch.from_numpy(session.run(None, {input_name: x.numpy()})[0]),
        module,
        example.shape,
        role,
        model_name,
        "ONNX",
    )


def _compare(run: Any, module: nn.Module, shape: torch.Size, role: str, model_name: str, what: str) -> None:
    fresh = (
        _example_audio(3, shape[1], shape[2], seed=1)
        if role == "encoder"
        else torch.randn(3, *shape[1:], generator=torch.Generator().manual_seed(1))
    )
    with torch.no_grad():
        expected = module(fresh)
        got = run(fresh)
    if tuple(got.shape) != tuple(expected.shape):
        raise ExportError(
            f"the {what} {role} of this run's model ({model_name}) gives shape {tuple(got.shape)} "
            f"for a batch of 3, the model {tuple(expected.shape)}"
        )
    error = float((got.float() - expected.float()).abs().max())
    if not error <= TOLERANCE:
        raise ExportError(
            f"the {what} {role} of this run's model ({model_name}) differs from the model by "
            f"{error:.2g} (at most {TOLERANCE:g} allowed)"
        )


def _example_audio(batch: int, channels: int, samples: int, *, seed: int) -> torch.Tensor:
    """Decaying noise bursts: a plausible chunk whose spectrum has no exact zeros."""
    generator = torch.Generator().manual_seed(seed)
    envelope = torch.exp(-torch.linspace(0.0, 6.0, samples))
    return 0.3 * torch.randn(batch, channels, samples, generator=generator) * envelope


def _tensor_io(
    file: str, input_name: str, example_in: torch.Tensor, output_name: str, example_out: torch.Tensor
) -> dict[str, Any]:
    return {
        "file": file,
        "input": {"name": input_name, "shape": ["batch", *example_in.shape[1:]], "dtype": "float32"},
        "output": {"name": output_name, "shape": ["batch", *example_out.shape[1:]], "dtype": "float32"},
    }


def _check_format(format: str) -> str:  # noqa: A002
    if format not in FORMATS:
        raise ValueError(f"unknown export format '{format}'; use one of: {', '.join(FORMATS)}")
    return format


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__).rstrip(".")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' tracer and deprecation chatter (they are no news to a user)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
