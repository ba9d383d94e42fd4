"""Training on several processes with torch.distributed, as torchrun launches them.

``torchrun --nproc_per_node N -m sda_core train DIR`` (or a script calling ``Engine.train``) starts
N processes with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in their environment.
:meth:`Distributed.from_environment` joins them into one process group (gloo for CPU tensors, NCCL
for CUDA ones, one GPU per local rank) and the trainer then runs DistributedDataParallel:

- rank 0 scans the folder, resolves the config, splits the files (or loads the run it resumes)
  and sends that plan to the others (:meth:`Distributed.broadcast`), so every rank trains on the
  same split;
- ``batch_size`` is each rank's batch, as with PyTorch's DistributedSampler: every optimiser step
  trains on a global batch of ``world_size * batch_size`` chunks, and the sampler shares out the
  chunks one process would train on in the epoch (:func:`sda_core.data.loaders.global_batches`),
  so each rank makes about 1/N of one process's steps; DDP averages the gradients (weighted by
  :meth:`Distributed.loss_weight` in an epoch's last, unevenly shared global batch), and
  :meth:`Distributed.step` adds up the step's losses and every rank's stop request in one small
  all-reduce, so every rank records the same figures and stops at the same step;
- each rank validates its part of the validation chunks and the sums are gathered
  (:meth:`Distributed.gather`), so every rank sees the same numbers; rank 0 decides whether to
  stop early and tells the others at the end of the epoch, with every rank's stop request;
- a failure while setting up on any rank stops every rank (:meth:`Distributed.together`);
- only rank 0 holds the run folder's lock and writes there (checkpoints, history, previews, the
  evaluation) and only its events reach plugins, except plugins that set ``sda_every_rank``.

Without torchrun (``WORLD_SIZE`` unset or 1) :data:`SINGLE` stands in: nothing is initialised, no
collective runs and :meth:`Distributed.together` is a plain block.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn

import attrs
import torch
import torch.distributed as dist

from sda_core.errors import ConfigError, PeerStopped, TrainingError
from sda_core.training.model import LOSS_KEY

#: Seconds a rank waits for the others at a collective before it gives up (``SDA_DISTRIBUTED_TIMEOUT``
#: changes it): long enough for rank 0 to write checkpoints and previews while the others wait.
DEFAULT_TIMEOUT_SECONDS = 1800
TIMEOUT_VARIABLE = "SDA_DISTRIBUTED_TIMEOUT"
#: Stop requests carried by the per-step all-reduce, by the trainer's stop reason.
_STOP_SLOTS = ("interrupted", "stop_requested")


def launched_rank() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment; (0, 0, 1) outside it."""
    world = _int_variable("WORLD_SIZE", 1)
    return _int_variable("RANK", 0), _int_variable("LOCAL_RANK", 0), max(world, 1)


def timeout_seconds(environ: Mapping[str, str] | None = None) -> float:
    """How long a collective waits for the other ranks: ``SDA_DISTRIBUTED_TIMEOUT`` seconds, else
    :data:`DEFAULT_TIMEOUT_SECONDS`."""
    text = (os.environ if environ is None else environ).get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return float(DEFAULT_TIMEOUT_SECONDS)
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise ConfigError(TIMEOUT_VARIABLE, text, "a number of seconds above 0")
    return seconds


@attrs.frozen
class StepFigures:
    """One training step's figures over every rank (:meth:`Distributed.step`).

    Attributes:
        losses: the loss components, means over the global batch.
        items: chunks in the global batch.
        stop: the stop reason a rank asked for ("interrupted" wins over "stop_requested"), or None.
        nonfinite_ranks: ranks whose loss was NaN or infinite.
    """

    losses: dict[str, float]
    items: int
    stop: str | None
    nonfinite_ranks: tuple[int, ...]


@attrs.frozen
class Distributed:
    """This process's place in a distributed run: its rank, its local rank (which GPU) and the
    number of processes. ``world_size == 1`` is the ordinary single-process run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        """Whether several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes the run folder and emits events."""
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> Distributed:
        """The distributed context of this process: the process group a host already initialised,
        else torchrun's variables (the group is then initialised here, once per process, and
        destroyed when the process exits), else :data:`SINGLE`."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), launched_rank()[1], dist.get_world_size())
        rank, local_rank, world_size = launched_rank()
        if world_size == 1:
            return SINGLE
        if not dist.is_available():
            raise ConfigError("WORLD_SIZE", world_size, "1: this PyTorch build has no torch.distributed")
        _import_before_the_group()
        cuda = torch.cuda.is_available()
        if cuda and local_rank < torch.cuda.device_count():
            torch.cuda.set_device(local_rank)
        try:
            dist.init_process_group(
                "cpu:gloo,cuda:nccl" if cuda else "gloo",
                timeout=datetime.timedelta(seconds=timeout_seconds()),
            )
        except (ValueError, RuntimeError) as error:  # no MASTER_ADDR (WORLD_SIZE set by hand), a rendezvous timeout
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise TrainingError(
                f"rank {rank} of {world_size} cannot join the other processes ({first}); start several processes "
                "with torchrun (docs/scale-out.md), or unset WORLD_SIZE to train in one process"
            ) from None
        global _owned_group
        _owned_group = True
        atexit.register(_destroy_process_group)
        return cls(dist.get_rank(), local_rank, dist.get_world_size())

    # -- devices and the model --------------------------------------------------------------

    def device(self, device: torch.device) -> torch.device:
        """The device this rank trains on: its own GPU (``cuda:LOCAL_RANK``) when training on CUDA."""
        if not self.active:
            return device
        if device.type == "cuda":
            gpus = torch.cuda.device_count()
            if self.local_rank >= gpus:
                raise ConfigError(
                    "--nproc_per_node",
                    self.local_rank + 1,
                    f"at most the {gpus} GPU(s) of this machine: each process trains on a GPU of its own",
                )
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        if device.type != "cpu":
            raise ConfigError("device", str(device), "cuda or cpu when training under torchrun")
        return device

    def wrap(self, model: torch.nn.Module, device: torch.device, probe: torch.Tensor, epoch: int) -> Any:
        """What a training step calls as ``forward(batch, epoch)`` for the losses under torchrun:
        ``model.loss`` through DistributedDataParallel, which averages the gradients of every rank
        in ``backward``. None in one process, where the step calls ``model.loss`` itself.

        A plugin's model may leave parameters out of its loss (a part used only to generate); DDP
        must then look for them after every step, which costs time, so one loss on ``probe`` (a
        few chunks) tells whether any is left out, on any rank.
        """
        if not self.active:
            return None
        from torch.nn.parallel import DistributedDataParallel

        unused = self.combine([float(_leaves_parameters_out(model, probe.to(device), epoch))])[0] > 0
        return DistributedDataParallel(
            _LossOf(model),
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=unused,
        )

    def loss_weight(self, items: int, global_items: int) -> float:
        """The factor on this rank's batch-mean loss that makes DDP's average of the ranks'
        gradients the gradient of the global batch's mean: 1 when the ranks' batches are equal
        (every step but, sometimes, an epoch's last, whose chunks may not divide evenly)."""
        return self.world_size * items / global_items

    # -- collectives ------------------------------------------------------------------------

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.active:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.active:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def step(self, losses: Mapping[str, float], items: int, *, finite: bool, stop: str | None) -> StepFigures:
        """Add up one step over the ranks in one all-reduce: the loss components (weighted by each
        rank's chunks), the chunks, the ranks whose loss is not finite and the stop requests."""
        names = sorted(losses)
        nonfinite = torch.zeros(self.world_size, dtype=torch.float64)
        nonfinite[self.rank] = 0.0 if finite else 1.0
        stops = [float(stop == slot) for slot in _STOP_SLOTS]
        values = [float(losses[name]) * items if finite else 0.0 for name in names]
        figures = torch.tensor([*stops, float(items), *values], dtype=torch.float64)
        packed = torch.cat([figures, nonfinite])
        if self.active:
            dist.all_reduce(packed)
        total = int(packed[len(stops)].item())
        means = {name: packed[len(stops) + 1 + i].item() / max(total, 1) for i, name in enumerate(names)}
        reason = next((slot for slot, count in zip(_STOP_SLOTS, packed[: len(stops)].tolist()) if count), None)
        bad = tuple(int(rank) for rank in torch.nonzero(packed[len(figures) :]).flatten().tolist())
        return StepFigures(losses=means, items=total, stop=reason, nonfinite_ranks=bad)

    @contextlib.contextmanager
    def together(self, what: str = "failed") -> Iterator[None]:
        """Run a block on every rank; when it raises on any rank, every rank raises after it, so no
        rank is left waiting at a collective: the rank that failed its own error, the others
        :class:`~sda_core.errors.PeerStopped`; when rank 0 failed, only rank 0 its own (a bad setting
        fails every rank alike, and one message is enough). A second Ctrl-C (KeyboardInterrupt) is
        not waited for."""
        if not self.active:
            yield
            return
        error: Exception | None = None
        try:
            yield
        except Exception as raised:
            error = raised
        failed = [rank for rank, flag in enumerate(self.gather(error is not None)) if flag]
        if error is not None and (self.is_main or failed[0] != 0):
            raise error
        if failed:
            raise PeerStopped(failed, what) from error

    def combine(self, parts: Sequence[float]) -> list[float]:
        """Element-wise sums of ``parts`` over the ranks."""
        if not self.active:
            return list(parts)
        total = torch.tensor(list(parts), dtype=torch.float64)
        dist.all_reduce(total)
        return total.tolist()


#: The context of a run outside torchrun.
SINGLE = Distributed()


class _LossOf(torch.nn.Module):
    """A module whose ``forward(batch, epoch)`` is ``model.loss(batch, epoch=epoch)``: DDP syncs the
    gradients of what runs inside ``forward``, and sda's models compute their losses in ``loss``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: torch.Tensor, epoch: int) -> Any:
        return self.model.loss(batch, epoch=epoch)


def _leaves_parameters_out(model: torch.nn.Module, batch: torch.Tensor, epoch: int) -> bool:
    """Whether the training loss of ``model`` on ``batch`` leaves a trainable parameter without a
    gradient; torch's random state is left as it was."""
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    with torch.random.fork_rng(devices=[batch.device] if batch.device.type == "cuda" else []):
        was_training = model.training
        model.train()
        try:
            loss = model.loss(batch, epoch=epoch)[LOSS_KEY]
            gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
        finally:
            model.train(was_training)
    return any(gradient is None for gradient in gradients)


def _int_variable(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(name, text, "a whole number (as torchrun sets it)") from None


def _import_before_the_group() -> None:
    """Import ``torch.distributed.nn.functional`` while no process group exists.

    Its functions take ``group=group.WORLD`` as a default argument, bound when the module is first
    imported, which DistributedDataParallel does on its first use. Imported after the group is
    initialised, those defaults hold the group for the life of the process:
    ``destroy_process_group`` then leaves gloo's threads running, and the interpreter's teardown
    racing them aborted a finished rank now and then ("terminate called without an active
    exception", exit code -6), so torchrun reported a complete, saved run as failed. Imported
    first, the defaults are None and destroying the group stops its threads.
    """
    import torch.distributed.nn.functional  # noqa: F401  (imported for its side effect)


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


#: Whether this process initialised the process group (from_environment), rather than a host.
_owned_group = False


def owns_process_group() -> bool:
    """Whether :meth:`Distributed.from_environment` initialised this process's process group (a
    torchrun launch of ``sda train``), so that sda also decides how the process ends."""
    return _owned_group and dist.is_initialized()


def end_worker_process(code: int) -> NoReturn:
    """End a torchrun worker whose command has finished as Python's exit would, up to the
    teardown: threads that are not daemons are waited for, the exit handlers run (the process
    group is destroyed, logs flushed) and the standard streams are flushed; then the process exits
    with ``code`` without tearing the interpreter down.

    The interpreter's teardown racing threads that outlive ``destroy_process_group`` (gloo's, when
    something imported after the group still holds it: see :func:`_import_before_the_group`, or
    a plugin's own) aborted a finished rank now and then ("terminate called without an active
    exception", exit code -6). torchrun then reported the launch as failed and stopped the other
    ranks, after a run that was complete and saved.
    """
    main = threading.main_thread()
    for thread in threading.enumerate():  # as Python's exit does: threads that are not daemons first
        if thread is not main and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or gone: nothing left to write
            pass
    os._exit(code)
