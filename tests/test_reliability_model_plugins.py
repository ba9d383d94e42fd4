"""Model plugins from strangers, through real installed distributions.

* A model that does not follow the interface (an ``nn.Linear``, a ``loss`` answering a tensor, a
  dict without ``"loss"`` ...) ends ``sda train`` with one sentence naming the plugin and the
  hook, before any run folder is made.
* A run remembers which plugin (distribution, version) built its model, datasets and split;
  resuming, generating, evaluating or exporting without that plugin is one sentence, another
  version of it a warning.
* A consumer failing in strict mode leaves a run whose summary matches its files, and resumes.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import bad_inputs
import pytest
import torch
from audio_factory import make_folder

from sda_core import ConformanceError, PluginError, TrainingConfig, hookimpl
from sda_core.testing import make_engine
from sda_core.training.checkpoints import load_checkpoint, save_checkpoint
from sda_core.training.conformance import check_losses, check_model, check_model_interface

DOCS = Path(__file__).resolve().parent.parent / "docs"
#: The minimal model of docs/model.md, as a plugin author copies it into a module.
(TINY_MODEL,) = [
    block
    for block in re.findall(r"^```python\n(.*?)^```", (DOCS / "model.md").read_text(encoding="utf-8"), re.M | re.S)
    if "class TinyAutoencoder" in block
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("model_plugins") / "data", [0.6, 1.4, 2.2, 0.9, 1.8, 3.0], rates=(8000,))


def run_cli(*args: str) -> SimpleNamespace:
    """``sda ARGS`` in this process: returncode, stdout and stderr."""
    from sda_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def lines_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def error_sentence(result: SimpleNamespace | subprocess.CompletedProcess) -> str:
    """The one line of an `sda` that failed: no traceback, no other line."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = lines_of(result.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("sda: error: ")
    return lines[0]


# -- finding 1: a model that does not follow the interface -----------------------------------------

SKETCH_MODEL = """
import torch
from sda_core import hookimpl
from sda_core.data.chunks import chunk_frames


class Sketch(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.sample_rate, self.channels = config.sample_rate, config.channels
        self.samples = chunk_frames(config)
        self.gain = torch.nn.Parameter(torch.ones(()))

    def loss(self, audio, *, epoch):
        error = ((audio * self.gain - audio) ** 2).mean()
        return LOSS

    def encode(self, audio):
        return audio.mean(dim=-1)

    def decode(self, latent):
        return latent[..., None].expand(-1, self.channels, self.samples) * self.gain

    def reconstruct(self, audio):
        return self.decode(self.encode(audio))

    def generate(self, count, *, seconds=1.0, generator=None):
        return torch.zeros(count, self.channels, round(seconds * self.sample_rate))


@hookimpl
def sda_make_model(config):
    return ANSWER
"""


def sketch(answer: str = "Sketch(config)", loss: str = '{"loss": error}') -> str:
    return SKETCH_MODEL.replace("ANSWER", answer).replace("LOSS", loss)


#: case: (module source, what the sentence says came)
WRONG_MODELS = {
    "an nn.Linear": (
        sketch(answer="torch.nn.Linear(2, 2)"),
        "with a Linear, which lacks sample_rate, channels, loss, encode, decode, reconstruct and generate; "
        "expected a torch.nn.Module with the members of sda_core.training.model.GenerativeModel",
    ),
    "a loss answering a tensor": (
        sketch(loss="error"),
        "with a Sketch whose loss() returned a Tensor, not a dict; expected loss(audio, *, epoch) to return a dict",
    ),
    "a loss dict without 'loss'": (
        sketch(loss='{"recon": error}'),
        "with a Sketch whose loss() returned a dict without the key 'loss' (its keys: 'recon')",
    ),
}


@pytest.mark.parametrize("case", sorted(WRONG_MODELS))
def test_a_model_that_breaks_the_interface_is_one_sentence_and_leaves_no_run(case, data, tmp_path, make_distribution):
    source, said = WRONG_MODELS[case]
    site = make_distribution("sda-sketch", {"sketch": "sda_sketch"}, {"sda_sketch": source})
    run = tmp_path / "runs" / "sketch"
    result = subprocess.run(
        [sys.executable, "-m", "sda_core", "train", str(data), "--out", str(run), *bad_inputs.fast_set()],
        capture_output=True,
        text=True,
        timeout=300,
        env=bad_inputs.sda_env(load=bad_inputs.reference_plugins("sketch"), site=site),
    )
    sentence = error_sentence(result)
    assert sentence.startswith("sda: error: plugin 'sketch' answered sda_make_model ")
    assert said in sentence
    assert not run.exists() and not (tmp_path / "runs").exists()  # nothing was written


@pytest.mark.parametrize(
    ("loss", "said"),
    [
        ('{"loss": error.detach()}', "loss()['loss'] does not require grad"),
        ('{"loss": error * torch.ones(3)}', "loss()['loss'] is a tensor of shape (3,), not a scalar"),
        ('{"loss": error, "recon": "low"}', "loss()['recon'] is a str, not a number or a scalar tensor"),
        ('{"loss": error @ audio}', "raised RuntimeError: both arguments to matmul need to be at least 1D"),
    ],
)
def test_the_python_api_checks_the_losses_before_the_run_folder_is_made(
    loss, said, data, tmp_path, make_distribution, monkeypatch
):
    make_distribution("sda-sketch", {"sketch": "sda_sketch"}, {"sda_sketch": sketch(loss=loss)})
    monkeypatch.setenv("SDA_LOAD_PLUGINS", bad_inputs.reference_plugins("sketch"))
    from sda_core import Engine

    run = tmp_path / "run"
    with pytest.raises(PluginError, match=re.escape(said)) as caught:
        Engine().train(data, run, bad_inputs.FAST)
    assert caught.value.plugin == "sketch" and "answered sda_make_model" in str(caught.value)
    assert not run.exists()


def tiny_config(**changes) -> TrainingConfig:
    return TrainingConfig(**{"sample_rate": 8000, "chunk_seconds": 0.25, "latent_dim": 4, **changes})


def documented_model(config: TrainingConfig) -> torch.nn.Module:
    namespace: dict = {}
    exec(compile(TINY_MODEL, "docs/model.md", "exec"), namespace)  # noqa: S102 - our own docs
    return namespace["sda_make_model"](config)


def test_check_model_passes_the_reference_models_and_the_documented_one():
    from sda_plugins.mel_vae import MelVAE
    from sda_plugins.wave_vae import WaveVAE

    config = tiny_config(channels=2)
    small = {"hidden_channels": 16, "decoder_channels": 16, "decoder_layers": 1}
    models = [
        documented_model(config),
        WaveVAE.from_config(tiny_config(channels=2, plugins={"wave_vae": small})),
        MelVAE.from_config(tiny_config(channels=2, plugins={"mel_vae": {"hidden_channels": 16}})),
    ]
    for model in models:
        model.train()
        rng = torch.get_rng_state()
        check_model(model, config)
        assert model.training  # its mode, and torch's random numbers, are as they were
        assert torch.equal(torch.get_rng_state(), rng)


def test_check_model_names_what_came_and_what_was_expected():
    config = tiny_config()
    model = documented_model(config)
    with pytest.raises(ConformanceError, match="whose sample_rate is 8000 while the config's is 16000"):
        check_model_interface(model, tiny_config(sample_rate=16000))
    with pytest.raises(ConformanceError, match=r"^got a str, not a torch.nn.Module; expected a torch.nn.Module"):
        check_model_interface("a model", config)

    class NoGenerate(torch.nn.Module):
        sample_rate, channels = 8000, 1

        def __init__(self):
            super().__init__()
            self.inner = documented_model(config)
            self.loss, self.encode, self.decode = self.inner.loss, self.inner.encode, self.inner.decode
            self.reconstruct = self.inner.reconstruct

    with pytest.raises(ConformanceError, match="a NoGenerate, which lacks generate;"):
        check_model(NoGenerate(), config)

    model.decode = lambda latent: torch.zeros(len(latent), 2, 10)  # wrong channels
    with pytest.raises(ConformanceError, match=r"decode\(\) of the codes of 2 chunks returned a tensor of shape"):
        check_model(model, config)
    frozen = documented_model(config).requires_grad_(False)
    with pytest.raises(ConformanceError, match="with no trainable parameters"):
        check_model(frozen, config)

    named = documented_model(config)
    named.running_buffers = ("no_such_buffer",)
    with pytest.raises(ConformanceError, match="running_buffers names 'no_such_buffer', not a buffer of it"):
        check_model_interface(named, config)
    named.running_buffers = "level_histogram"  # a string, not a tuple of names
    with pytest.raises(ConformanceError, match="running_buffers to be a tuple"):
        check_model_interface(named, config)


def test_check_losses_accepts_numbers_and_returns_floats():
    weight = torch.nn.Parameter(torch.tensor(2.0))
    values = check_losses({"loss": weight * 3, "kl": 0.5, "recon": torch.tensor([1.5])})
    assert values == {"loss": 6.0, "kl": 0.5, "recon": 1.5}
    assert check_losses({"loss": torch.tensor(float("nan"))}, requires_grad=False)["loss"] != 0  # NaN passes
    with pytest.raises(ConformanceError, match="returned None, not a dict"):
        check_losses(None)


# -- finding 2: the run remembers which plugin built its model --------------------------------------

OTHER_MODEL = TINY_MODEL.replace("@hookimpl\ndef sda_make_model", "@hookimpl(tryfirst=True)\ndef sda_make_model")


def reinstall(site: Path, dist: str, old: str, new: str) -> None:
    """The distribution ``dist`` at version ``new`` in place of ``old`` (as `pip install -U` does)."""
    info = site / f"{dist.replace('-', '_')}-{old}.dist-info"
    moved = info.rename(site / f"{dist.replace('-', '_')}-{new}.dist-info")
    (moved / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {new}\n")
    importlib.invalidate_caches()


def uninstall(site: Path, dist: str, version: str) -> None:
    shutil.rmtree(site / f"{dist.replace('-', '_')}-{version}.dist-info")
    importlib.invalidate_caches()


@pytest.fixture
def my_vae_run(data, tmp_path, make_distribution, monkeypatch) -> tuple[Path, Path]:
    """A run trained one epoch with the documented model from the distribution sda-my-vae 1.0."""
    site = make_distribution("sda-my-vae", {"my_vae": "sda_my_vae"}, {"sda_my_vae": TINY_MODEL})
    monkeypatch.setenv("SDA_LOAD_PLUGINS", bad_inputs.reference_plugins("my_vae", "other_vae"))
    run = tmp_path / "run"
    result = run_cli("train", str(data), "--out", str(run), *bad_inputs.fast_set(), "--max-epochs", "1")
    assert result.returncode == 0, result.stderr
    return run, site


def test_a_run_records_the_plugins_that_made_its_model_data_and_split(my_vae_run):
    from sda_core import __version__

    run, _site = my_vae_run
    recorded = json.loads((run / "providers.json").read_text())
    assert recorded["model"] == {
        "hook": "sda_make_model",
        "plugin": "my_vae",
        "distribution": "sda-my-vae",
        "version": "1.0",
    }
    for role, hook, plugin in (
        ("dataset", "sda_make_dataset", "chunk_dataset"),
        ("split", "sda_split_files", "file_split"),
    ):
        assert recorded[role]["hook"] == hook and recorded[role]["plugin"] == plugin
        assert (recorded[role]["distribution"], recorded[role]["version"]) in (
            ("small-dataset-audio", __version__),
            (None, None),  # a source tree that was never installed
        )
    for checkpoint in ("last.pt", "best.pt"):
        assert load_checkpoint(run / "checkpoints" / checkpoint)["providers"] == recorded


def test_resume_and_generate_without_the_model_plugin_say_so_in_one_sentence(my_vae_run, data, tmp_path):
    run, site = my_vae_run
    made = f"the model of run '{run}' was made by plugin 'my_vae' (sda-my-vae 1.0), which is not loaded now"
    resumed = run_cli("train", str(data), "--resume", str(run), "--disable-plugin", "my_vae", "--max-epochs", "2")
    assert (
        error_sentence(resumed) == f"sda: error: {made} (disabled or not installed); install or enable it to resume it"
    )
    generated = run_cli("generate", str(run), "-n", "1", "--out", str(tmp_path / "gen"), "--disable-plugin", "my_vae")
    assert error_sentence(generated).endswith(
        f"{made} (disabled or not installed); install or enable it to generate from it"
    )

    from sda_core import Engine

    for call, action in (
        (lambda engine: engine.evaluate(run, count=2, write=False), "evaluate it"),
        (lambda engine: engine.export(run, "torchscript", tmp_path / "export" / "g.pt"), "export it"),
    ):
        with pytest.raises(
            PluginError, match=re.escape(f"{made} (disabled or not installed); install or enable it to {action}")
        ):
            call(Engine(disable=["my_vae"]))
    assert not (tmp_path / "gen").exists() and not (tmp_path / "export").exists()

    uninstall(site, "sda-my-vae", "1.0")
    generated = run_cli("generate", str(run), "-n", "1", "--out", str(tmp_path / "gen"))
    assert made in error_sentence(generated)


def test_another_plugin_answering_first_is_one_sentence_and_another_version_a_warning(
    my_vae_run, data, tmp_path, make_distribution
):
    run, site = my_vae_run
    make_distribution("sda-other-vae", {"other_vae": "sda_other_vae"}, {"sda_other_vae": OTHER_MODEL}, version="3.1")
    generated = run_cli("generate", str(run), "-n", "1", "--out", str(tmp_path / "gen"))
    assert error_sentence(generated) == (
        f"sda: error: the model of run '{run}' was made by plugin 'my_vae' (sda-my-vae 1.0), but plugin "
        "'other_vae' (sda-other-vae 3.1) answers sda_make_model now, ahead of it; disable that one "
        "(--disable-plugin other_vae) to generate from it"
    )
    uninstall(site, "sda-other-vae", "3.1")

    reinstall(site, "sda-my-vae", "1.0", "1.1")
    generated = run_cli("generate", str(run), "-n", "1", "--out", str(tmp_path / "gen"))
    assert generated.returncode == 0, generated.stderr
    (warning,) = lines_of(generated.stderr)
    assert warning == (
        f"warning: the model of run '{run}' was made by plugin 'my_vae' (sda-my-vae 1.0); plugin 'my_vae' "
        "(sda-my-vae 1.1) answers sda_make_model now, so it may differ from the one the run was trained with"
    )
    resumed = run_cli("train", str(data), "--resume", str(run), "--max-epochs", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "sda-my-vae 1.1" in resumed.stderr
    assert load_checkpoint(run / "checkpoints" / "last.pt")["providers"]["model"]["version"] == "1.1"
    assert json.loads((run / "providers.json").read_text())["model"]["version"] == "1.1"


def test_a_run_without_the_record_still_works_and_weights_that_do_not_fit_are_one_sentence(my_vae_run, tmp_path):
    run, _site = my_vae_run
    (run / "providers.json").unlink()
    for name in ("last.pt", "best.pt"):  # as written before the record existed
        state = load_checkpoint(run / "checkpoints" / name)
        del state["providers"]
        save_checkpoint(run / "checkpoints" / name, {k: v for k, v in state.items() if k not in ("format", "version")})
    generated = run_cli("generate", str(run), "-n", "1", "--out", str(tmp_path / "gen"))
    assert generated.returncode == 0 and not generated.stderr, generated.stderr
    without = run_cli("generate", str(run), "-n", "1", "--out", str(tmp_path / "gen2"), "--disable-plugin", "my_vae")
    sentence = error_sentence(without)
    assert sentence.startswith(f"sda: error: the weights in '{run / 'checkpoints' / 'best.pt'}' do not fit the WaveVAE")
    assert "plugin 'wave_vae'" in sentence and "Missing key(s)" in sentence


LOOP_DATASET = """
from sda_core import hookimpl
from sda_plugins import chunk_dataset


@hookimpl(tryfirst=True)
def sda_make_dataset(files, config, role, augment, root):
    return chunk_dataset.sda_make_dataset(files, config, role, augment, root)
"""


def test_resuming_without_the_dataset_plugin_warns_and_goes_on(data, tmp_path, make_distribution, monkeypatch):
    make_distribution("sda-loops", {"loops": "sda_loops"}, {"sda_loops": LOOP_DATASET}, version="0.2")
    monkeypatch.setenv("SDA_LOAD_PLUGINS", bad_inputs.reference_plugins("loops"))
    run = tmp_path / "run"
    assert run_cli("train", str(data), "--out", str(run), *bad_inputs.fast_set(), "--max-epochs", "1").returncode == 0
    assert json.loads((run / "providers.json").read_text())["dataset"]["plugin"] == "loops"
    resumed = run_cli("train", str(data), "--resume", str(run), "--disable-plugin", "loops", "--max-epochs", "2")
    assert resumed.returncode == 0, resumed.stderr
    (warning,) = lines_of(resumed.stderr)
    assert warning.startswith(
        f"warning: the dataset of run '{run}' was made by plugin 'loops' (sda-loops 0.2), which is not loaded now "
        "(disabled or not installed), and plugin 'chunk_dataset' ("
    )
    assert warning.endswith(
        "answers sda_make_dataset in its place; install or enable it to resume it with the same dataset"
    )
    assert load_checkpoint(run / "checkpoints" / "last.pt")["providers"]["dataset"]["plugin"] == "chunk_dataset"


# -- finding 5: a strict-mode failure leaves a consistent run -----------------------------------------


class FailsAt:
    """A consumer that raises in one hook, at one epoch."""

    name = "fragile_logger"

    def __init__(self, hook: str, epoch: int) -> None:
        self.hook, self.epoch = hook, epoch

    def _maybe_fail(self, hook: str, event) -> None:
        if hook == self.hook and event.epoch == self.epoch:
            raise RuntimeError(f"disk quota in {hook}")

    @hookimpl
    def sda_on_step(self, event):
        self._maybe_fail("sda_on_step", event)

    @hookimpl
    def sda_on_epoch(self, event):
        self._maybe_fail("sda_on_epoch", event)


@pytest.mark.parametrize(("hook", "saved"), [("sda_on_epoch", 2), ("sda_on_step", 1)])
def test_a_strict_consumer_failure_leaves_a_summary_that_matches_the_files(hook, saved, data, tmp_path):
    run, events = tmp_path / "run", []
    engine = make_engine(FailsAt(hook, epoch=2), reference=True, strict=True, callbacks=[events.append])
    with pytest.raises(PluginError, match=f"'fragile_logger' raised in {hook}"):
        engine.train(data, run, {**bad_inputs.FAST, "max_epochs": 3, "early_stopping": False})

    (summary,) = [event for event in events if event.kind == "train_end"]
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert summary.epochs_completed == last["epoch"] == saved
    assert summary.reason.startswith("error: PluginError")
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert summary.best_epoch == best["epoch"] <= saved
    history = json.loads((run / "history.json").read_text())
    assert [epoch["epoch"] for epoch in history["epochs"]] == list(range(1, saved + 1))
    assert set(summary.checkpoints) == {"last", "best"}

    resumed = make_engine(reference=True).train(data, run, {"max_epochs": 3}, resume=True)
    assert resumed.epochs_completed == 3


FAILING_CONSUMER = """
from sda_core import hookimpl


class Uploader:
    @hookimpl
    def sda_on_epoch(self, event):
        raise RuntimeError("the upload server is down")

    @hookimpl
    def sda_on_train_end(self, event):
        raise RuntimeError("the upload server is still down")
"""


def test_sda_train_in_strict_mode_keeps_the_epoch_a_consumer_failed_on_and_resumes(
    data, tmp_path, make_distribution, monkeypatch
):
    make_distribution("sda-uploader", {"uploader": "sda_uploader:Uploader"}, {"sda_uploader": FAILING_CONSUMER})
    monkeypatch.setenv("SDA_LOAD_PLUGINS", bad_inputs.reference_plugins("uploader"))
    monkeypatch.setenv("SDA_STRICT_PLUGINS", "1")
    run = tmp_path / "run"
    result = run_cli("train", str(data), "--out", str(run), *bad_inputs.fast_set(), "--max-epochs", "2")
    assert error_sentence(result) == (  # the failure that ended the run, not the one reporting it
        "sda: error: plugin 'uploader' raised in sda_on_epoch: RuntimeError: the upload server is down "
        "(SDA_STRICT_PLUGINS=1)"
    )
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    resumed = run_cli("train", str(data), "--resume", str(run), "--disable-plugin", "uploader")
    assert resumed.returncode == 0, resumed.stderr
    assert "max_epochs after epoch 2" in resumed.stdout


def test_resuming_a_run_that_saved_no_epoch_says_so(data, tmp_path):
    class FailsAtStart:
        name = "fails_at_start"

        @hookimpl
        def sda_on_train_start(self, event):
            raise RuntimeError("no")

    run = tmp_path / "run"
    with pytest.raises(PluginError, match="sda_on_train_start"):
        make_engine(FailsAtStart(), reference=True, strict=True).train(data, run, bad_inputs.FAST)
    resumed = run_cli("train", str(data), "--resume", str(run))
    assert error_sentence(resumed) == (
        f"sda: error: nothing to resume: the run in '{run}' saved no epoch ('{run / 'checkpoints' / 'last.pt'}' "
        f"does not exist); train it afresh with --out {run}"
    )
