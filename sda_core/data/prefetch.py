"""Batches of successive training epochs, fetched ahead on a background thread.

A training loop takes one epoch's batches after another from the same DataLoader. Two waits hide
in that: taking a ready batch from a loader with workers costs milliseconds on the taking thread
(the batch arrives as a shared-memory handle that is received over a socket, unpickled and
mapped), and an epoch's first batches are asked for only when the epoch starts. An
:class:`EpochPrefetcher` moves both off the training thread: a background thread takes the
batches while the model computes, and starts the next epoch (``set_epoch``, then the persistent
workers' first batches) as soon as it has taken the current epoch's last batch, so the next epoch's
first batches are made while this epoch's last steps, its validation and its checkpoints run.

The batches, and their order, are exactly those of iterating the loader epoch by epoch: the
thread only moves where the waiting happens. A loader without workers is iterated on the calling
thread (there is nothing to overlap; its dataset's warnings then stay on that thread).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["EpochPrefetcher", "epoch_batches"]

#: Batches taken ahead of the training thread (beyond what the loader's workers prefetch).
DEFAULT_DEPTH = 2
#: How often a thread blocked on a full queue checks whether it was closed, in seconds.
_POLL_SECONDS = 0.1
#: How long :meth:`EpochPrefetcher.close` waits for the thread to finish a batch in progress.
_JOIN_SECONDS = 10.0


def epoch_batches(loader: Any, epoch: int) -> Iterator[Any]:
    """Start iterating one epoch of a loader whose sampler has ``set_epoch`` (an EpochSampler)."""
    loader.sampler.set_epoch(epoch)
    return iter(loader)


class _End:
    """Marks the end of one epoch's batches in the queue."""


class _Failure:
    """Carries an exception raised on the thread to the training thread."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class EpochPrefetcher:
    """The batches of ``epochs`` (in order) from ``loader``, taken ahead on a background thread.

    Args:
        loader: a DataLoader whose sampler has ``set_epoch`` (as ``create_data_loaders`` builds);
            with workers, they should be persistent, or each epoch restarts them.
        epochs: the epoch numbers to iterate, in the order they are asked for.
        depth: batches held ready in this process, beyond the loader's own prefetch.

    Creating it starts the first epoch at once (on the calling thread, which starts the
    workers), so its first batches are made while the caller does other work, e.g. validates.
    Use it as a context manager, or call :meth:`close`::

        with EpochPrefetcher(train_loader, range(1, max_epochs + 1)) as prefetcher:
            for epoch in range(1, max_epochs + 1):
                for batch in prefetcher.epoch(epoch):
                    ...

    An exception raised while fetching (a dataset error, a dead worker) is raised by
    :meth:`epoch`'s iterator at the batch where it occurred, with its own type and traceback.
    """

    def __init__(self, loader: Any, epochs: Iterable[int], *, depth: int = DEFAULT_DEPTH) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.loader = loader
        self.epochs = tuple(int(epoch) for epoch in epochs)
        self._position = 0
        self._queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        if self.epochs and getattr(loader, "num_workers", 0) > 0:
            first = epoch_batches(loader, self.epochs[0])
            self._thread = threading.Thread(target=self._fill, args=(first,), name="sda-prefetch", daemon=True)
            self._thread.start()

    def epoch(self, epoch: int) -> Iterator[Any]:
        """An iterator over one epoch's batches; epochs must be asked for in the given order.

        Batches of an earlier epoch that were left unconsumed (a loop that broke off) are skipped.
        """
        if self._closed.is_set():
            raise RuntimeError("the prefetcher is closed")
        if self._position >= len(self.epochs) or self.epochs[self._position] != epoch:
            expected = self.epochs[self._position] if self._position < len(self.epochs) else "none"
            raise ValueError(f"epoch {epoch} asked for, but the next epoch of this prefetcher is {expected}")
        self._position += 1
        if self._thread is None:
            return epoch_batches(self.loader, epoch)
        return self._take(epoch)

    def close(self) -> None:
        """Stop the thread (after the batch it is fetching, if any) and drop the batches held."""
        self._closed.set()
        if self._thread is None:
            return
        self._drain()
        self._thread.join(_JOIN_SECONDS)
        self._drain()

    def __enter__(self) -> EpochPrefetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the training thread's side ------------------------------------------------------------

    def _take(self, epoch: int) -> Iterator[Any]:
        while True:
            item_epoch, item = self._get()
            if isinstance(item, _Failure):
                raise item.error
            if item_epoch < epoch:
                continue
            if isinstance(item, _End):
                return
            yield item

    def _get(self) -> tuple[int, Any]:
        """The next queued item; an error once the thread has ended and left nothing."""
        while True:
            try:
                return self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._closed.is_set() or not self._thread.is_alive():
                    try:
                        return self._queue.get_nowait()  # put just before the thread ended
                    except queue.Empty:
                        raise RuntimeError("the prefetcher was closed while its batches were taken") from None

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    # -- the background thread's side ----------------------------------------------------------

    def _fill(self, first: Iterator[Any]) -> None:
        epoch = self.epochs[0]
        try:
            for position, epoch in enumerate(self.epochs):
                batches = first if position == 0 else epoch_batches(self.loader, epoch)
                for batch in batches:
                    if not self._put(epoch, batch):
                        return
                if not self._put(epoch, _End()):
                    return
        except BaseException as error:  # handed to the training thread, which raises it
            self._put(epoch, _Failure(error))

    def _put(self, epoch: int, item: Any) -> bool:
        """Queue an item, waiting for room; False once the prefetcher is closed."""
        while not self._closed.is_set():
            try:
                self._queue.put((epoch, item), timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False
