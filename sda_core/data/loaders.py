"""DataLoaders for a run, built through the hooks.

:func:`create_data_loaders` asks the plugins for the split (``sda_split_files``), the
augmentations (``sda_augmentations``) and the two datasets (``sda_make_dataset``), then wraps
them in DataLoaders sized to the machine. The plugin manager stays in this process: only the
datasets and the augmentation pipeline are pickled into the workers.

A dataset that sets ``epoch_keys = True`` is addressed with ``(epoch, index)`` keys by
:class:`EpochSampler`, so it can move its training grid and seed its augmentation per epoch even
inside persistent workers, which never see attribute changes made in the main process. One that
also sets ``repeat_keys = True`` (the reference one does) gets ``(epoch, index, repeat)``: an epoch
longer than the dataset draws items again, and ``repeat`` counts an item's earlier draws in the
epoch, so each occurrence can be cut and augmented differently. Any other map-style dataset gets
plain integer indices.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from sda_core.config import TrainingConfig
from sda_core.config.dataset import DatasetSummary, FileSplit
from sda_core.data.augmentation import AugmentationPipeline
from sda_core.errors import ConfigError, DatasetError
from sda_core.hooks.facade import Hooks, as_hooks

#: Workers run at a lower priority, filling the gaps the training threads leave instead of
#: competing with them for the cores.
WORKER_NICENESS = 5


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys; call :meth:`set_epoch` before each epoch.

    With ``repeat_keys=True`` it yields ``(epoch, index, repeat)``, where ``repeat`` is how many
    times the epoch drew ``index`` before (0 the first time); with ``epoch_keys=False``, plain
    indices, for datasets that take only those. Training (``shuffle=True``):
    ``samples_per_epoch`` keys drawn as successive seeded permutations of the dataset, so every
    item appears before any repeats. Validation (``shuffle=False``): every index once, in order,
    with epoch 0, identical on every pass. With ``world_size > 1`` each rank takes a disjoint
    share of the epoch's keys (torch.distributed); repeats count over all ranks:

    - with ``batch_size`` (each rank's batch; training under DistributedDataParallel), the keys
      one process would train on (:func:`trained_keys`: its full batches, or one short batch) are
      cut into global batches of ``world_size * batch_size`` keys, one optimiser step of all
      ranks together, each cut into contiguous parts of :func:`rank_batch_sizes` keys, one per
      rank. The last global batch may be shorter (shared as evenly as possible); every rank has
      the same number of batches, as DDP needs, and the union of the ranks' keys is the
      single-process epoch's, none doubled. Only when ``batch_size`` is below ``world_size`` can
      the last global batch be too short to give every rank a key: those fewer than
      ``world_size`` keys are left out (:func:`global_batches`);
    - without it, keys are dealt out in turn, padded by wrapping to equal shares (``pad=False``:
      uneven shares, no key twice; what validation uses).
    """

    def __init__(
        self,
        dataset_len: int,
        *,
        samples_per_epoch: int | None = None,
        shuffle: bool = True,
        seed: int = 42,
        rank: int = 0,
        world_size: int = 1,
        epoch_keys: bool = True,
        repeat_keys: bool = False,
        batch_size: int | None = None,
        pad: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of size {world_size}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"a batch of {batch_size} chunks cannot be trained")
        self.dataset_len = dataset_len
        self.samples_per_epoch = samples_per_epoch or dataset_len
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch_keys = epoch_keys
        self.repeat_keys = repeat_keys and epoch_keys
        self.batch_size = batch_size
        self.pad = pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose keys the next iteration yields."""
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        """This rank's dataset indices for the current epoch."""
        return self._order()[self._positions()]

    def repeats(self) -> np.ndarray:
        """For each of :meth:`indices`, how many times the epoch drew that index before it
        (over all ranks' keys, in the epoch's order): 0 the first time, 1 the second, ..."""
        return _occurrences(self._order())[self._positions()]

    def _order(self) -> np.ndarray:
        """Every rank's dataset indices for the current epoch, in order (padded to equal shares
        when keys are dealt out in turn with ``pad``)."""
        if self.dataset_len == 0:
            return np.zeros(0, dtype=np.int64)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            passes = -(-self.samples_per_epoch // self.dataset_len)
            order = np.concatenate([rng.permutation(self.dataset_len) for _ in range(passes)])
            order = order[: self.samples_per_epoch]
        else:
            order = np.arange(self.dataset_len)
        if self.batch_size is not None or not self.pad:
            return order
        per_rank = -(-len(order) // self.world_size)
        return np.resize(order, per_rank * self.world_size)  # pad by wrapping, equal shares

    def _positions(self) -> np.ndarray | slice:
        """Where this rank's keys stand in :meth:`_order`."""
        if self.world_size == 1:
            return slice(None)
        if self.batch_size is None:
            return slice(self.rank, None, self.world_size)
        total = self.samples_per_epoch if self.shuffle else self.dataset_len
        full, rest = global_batches(total, self.batch_size, self.world_size)
        size = self.world_size * self.batch_size
        positions = (np.arange(full)[:, None] * size + self.rank * self.batch_size + np.arange(self.batch_size)).ravel()
        if not rest:
            return positions
        parts = rank_batch_sizes(rest, self.world_size)
        last = full * size + sum(parts[: self.rank]) + np.arange(parts[self.rank])
        return np.concatenate([positions, last])

    def __iter__(self) -> Iterator[tuple[int, int, int] | tuple[int, int] | int]:
        if not self.epoch_keys:
            return iter([int(index) for index in self.indices()])
        epoch = self.epoch if self.shuffle else 0
        if self.repeat_keys:
            return iter([(epoch, int(index), int(repeat)) for index, repeat in zip(self.indices(), self.repeats())])
        return iter([(epoch, int(index)) for index in self.indices()])

    def __len__(self) -> int:
        total = self.samples_per_epoch if self.shuffle else self.dataset_len
        if not total or self.world_size == 1:
            return total
        if self.batch_size is not None:
            full, rest = global_batches(total, self.batch_size, self.world_size)
            return full * self.batch_size + (rank_batch_sizes(rest, self.world_size)[self.rank] if rest else 0)
        if not self.pad:
            return len(range(self.rank, total, self.world_size))
        return -(-total // self.world_size)


def rank_batch_sizes(batch_size: int, world_size: int) -> list[int]:
    """How a global batch is shared by ``world_size`` ranks: as evenly as possible, the first
    ``batch_size % world_size`` ranks taking one item more (``rank_batch_sizes(10, 4)`` is
    ``[3, 3, 2, 2]``)."""
    return [batch_size // world_size + (rank < batch_size % world_size) for rank in range(world_size)]


def trained_keys(total: int, batch_size: int) -> int:
    """How many of an epoch's ``total`` keys one process trains on with batches of ``batch_size``:
    its full batches (``drop_last``), or all of them in one short batch when they are fewer."""
    return total if total < batch_size else total // batch_size * batch_size


def global_batches(total: int, batch_size: int, world_size: int) -> tuple[int, int]:
    """An epoch of ``total`` keys trained by ``world_size`` ranks of ``batch_size`` chunks each:
    ``(full, rest)``, ``full`` global batches of ``world_size * batch_size`` keys, then one of
    ``rest`` keys (0: none). Together they are the :func:`trained_keys` one process trains on, so
    the ranks make ``ceil(single-process steps / world_size)`` steps; only a rest of fewer than
    ``world_size`` keys (possible when ``batch_size < world_size``), which cannot give every
    rank one, is left out, and the ranks then make ``floor(single-process steps / world_size)``."""
    keys = trained_keys(total, batch_size)
    full, rest = divmod(keys, world_size * batch_size)
    return full, rest if rest >= world_size else 0


def _occurrences(order: np.ndarray) -> np.ndarray:
    """For each position of ``order``, how many earlier positions hold the same value."""
    positions = np.argsort(order, kind="stable")  # equal values keep their order
    ordered = order[positions]
    first = np.searchsorted(ordered, ordered, side="left")  # where each value's run starts
    counts = np.empty(len(order), dtype=np.int64)
    counts[positions] = np.arange(len(order)) - first
    return counts


def default_num_workers(cpu_count: int | None = None) -> int:
    """DataLoader workers for this machine: half the cores (the rest train), 1 to 4; 0 on 1 core."""
    cores = cpu_count or os.cpu_count() or 1
    return 0 if cores < 2 else max(1, min(4, cores // 2))


def samples_per_epoch(config: TrainingConfig, train_items: int) -> int:
    """The configured samples per epoch, or one pass over ``train_items`` but at least
    ``config.min_steps_per_epoch`` full batches."""
    if config.samples_per_epoch is not None:
        return config.samples_per_epoch
    return max(train_items, config.batch_size * config.min_steps_per_epoch)


def create_data_loaders(
    summary: DatasetSummary,
    config: TrainingConfig,
    engine: Hooks | Any = None,
    *,
    split: FileSplit | None = None,
    device: str | torch.device = "cpu",
    rank: int = 0,
    world_size: int = 1,
) -> tuple[DataLoader, DataLoader, FileSplit]:
    """Build ``(train_loader, val_loader, split)`` for a scanned dataset.

    Args:
        summary: the scan of the data folder.
        config: the resolved config.
        engine: the hooks whose plugins answer (``engine.hooks``, or an Engine, which holds
            them); when None, the plugins of the ``sda`` entry points.
        split: reuse a saved split (a resumed run) instead of asking ``sda_split_files``.
        device: the training device; memory is pinned for CUDA.
        rank, world_size: this process's share of the chunks under torch.distributed.

    The training loader's sampler is an :class:`EpochSampler`: call
    ``train_loader.sampler.set_epoch(epoch)`` before iterating each epoch.

    With ``world_size > 1``, ``batch_size`` is each rank's batch, as with PyTorch's
    DistributedSampler: every optimiser step trains on up to ``world_size * batch_size`` chunks
    (the global batch), and the ranks share out the chunks one process would train on in the
    epoch (:func:`global_batches`), so each makes about 1/``world_size`` of its steps. Each rank
    validates a disjoint part of the validation chunks (uneven when they do not divide evenly).
    """
    hooks = as_hooks(engine) if engine is not None else Hooks.from_entrypoints()
    if split is None:
        split = hooks.split_files(summary.files, config)
    by_path = {info.path: info for info in summary.files}
    unknown = sorted((set(split.train) | set(split.validation)) - set(by_path))
    if unknown:
        raise DatasetError(f"the split names {len(unknown)} file(s) the scan did not find, e.g. '{unknown[0]}'")
    train_files = tuple(by_path[path] for path in split.train)
    val_files = tuple(by_path[path] for path in split.validation)
    augment = None
    if config.augmentation_probability > 0 and config.augmentation_strength > 0:
        augment = AugmentationPipeline.from_hooks(hooks, config)
    train_set = hooks.make_dataset(train_files, config, "train", augment, root=summary.root)
    val_set = hooks.make_dataset(val_files, config, "validation", None, root=summary.root)

    workers = config.num_workers if config.num_workers is not None else default_num_workers()
    common: dict[str, Any] = {
        "batch_size": config.batch_size,
        "num_workers": workers,
        "persistent_workers": workers > 0,
        "pin_memory": torch.device(device).type == "cuda",
        "worker_init_fn": _seed_worker,
        "generator": torch.Generator().manual_seed(config.seed),
    }
    if workers > 0:
        common["prefetch_factor"] = 4
    epoch_samples = samples_per_epoch(config, len(train_set))
    shared = world_size > 1
    if shared and trained_keys(epoch_samples, config.batch_size) < world_size:
        raise ConfigError(
            "samples_per_epoch",
            epoch_samples,
            f"enough for a chunk per process ({world_size}) in an epoch of batches of {config.batch_size}: "
            "under torchrun the processes share out each epoch's chunks",
        )
    train_sampler = EpochSampler(
        len(train_set),
        samples_per_epoch=epoch_samples,
        shuffle=True,
        seed=config.seed,
        rank=rank,
        world_size=world_size,
        epoch_keys=getattr(train_set, "epoch_keys", False),
        repeat_keys=getattr(train_set, "repeat_keys", False),
        batch_size=config.batch_size if shared else None,
    )
    # shared: the sampler yields this rank's batches, the last one maybe short, nothing to drop
    train_loader = DataLoader(
        train_set, sampler=train_sampler, drop_last=not shared and len(train_sampler) >= config.batch_size, **common
    )
    val_sampler = EpochSampler(
        len(val_set),
        shuffle=False,
        rank=rank,
        world_size=world_size,
        epoch_keys=getattr(val_set, "epoch_keys", False),
        repeat_keys=getattr(val_set, "repeat_keys", False),
        pad=False,
    )
    val_loader = DataLoader(val_set, sampler=val_sampler, drop_last=False, **common)
    return train_loader, val_loader, split


def _seed_worker(worker_id: int) -> None:
    """Seed a worker's global RNGs (items do not depend on them) and leave Ctrl-C to the trainer.

    A terminal's Ctrl-C reaches the whole process group; workers ignore it so the main process
    can stop cleanly, save a checkpoint and shut them down itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
