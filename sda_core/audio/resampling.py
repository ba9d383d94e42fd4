"""Resampling to the configured rate and mapping to the configured channels: the segment pipeline.

:func:`segment` turns rows read at the source rate (from any reader: a soundfile handle, a memory
map of a decoded MP3, an array) into exactly frames ``[start, start + frames)`` of the file at the
target rate, ``(channels, frames)`` float32, C-contiguous.

Segments line up with whole-file resampling
    ``torchaudio``'s resampler is a polyphase filter. With ``g = gcd(source, target)``,
    ``source = g * a`` and ``target = g * b``, output frames ``k*b ... k*b + b - 1`` are computed
    from source frames ``k*a - width ... k*a + a + width`` with the same ``b`` filters for every
    ``k``. A segment is therefore read from a source window that starts on a multiple of ``a``
    (minus the filter width), filtered block by block, and cropped exactly: segment ``[s, s+n)``
    of the target-rate signal equals frames ``s ... s+n-1`` of ``torchaudio.functional.resample``
    of the whole file (up to float rounding), including near the file's edges, because the file is
    zero-padded on both sides exactly as the whole-file resampler pads it. Frames outside the
    whole-file result (before 0, at or after ``ceil(frames * target / source)``) are zeros.

    The kernel (the same as ``torchaudio.transforms.Resample``'s) is built once per pair of rates
    and process (:func:`_plan`, an LRU cache). Unusual pairs of rates (say 44056 Hz to 22050 Hz,
    whose reduced ratio is 22028:11025) would need a kernel of hundreds of millions of taps; for
    those the same windowed sinc is evaluated directly at each output frame instead (slower per
    call, no giant kernel, same values).

Readers
    A reader ``(first, count) -> (rows, scale)`` returns ``count`` zero-padded ``(count, C)`` rows
    at the source rate: float32 rows with ``scale`` None, or integer rows (int16 or int32, read
    straight from integer PCM) that become float32 when multiplied by ``scale``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
import torchaudio

__all__ = ["Reader", "resampled_length", "segment"]

Reader = Callable[[int, int], "tuple[np.ndarray, float | None]"]

# A polyphase kernel bigger than this (in float32 taps) is not built; the sinc is evaluated
# directly instead. 2**22 taps = 16 MiB; every common pair of rates needs under 200 000.
_MAX_KERNEL_TAPS = 2**22


def resampled_length(frames: int, source_rate: int, target_rate: int) -> int:
    """Frames of a ``frames``-long signal after resampling (as torchaudio counts them: rounded up)."""
    if source_rate == target_rate:
        return frames
    return -(-frames * target_rate // source_rate)


class _Plan:
    """How to resample between two rates: reduced ratio, filter width, and the kernel.

    ``kernel`` is ``torchaudio.transforms.Resample(source, target).kernel``: shape
    ``(b, 1, 2 * width + a)``, one filter per output phase. It is None when too big to build
    (see ``_MAX_KERNEL_TAPS``); then :func:`_direct_resample` evaluates the same sinc directly.
    """

    __slots__ = ("source_rate", "target_rate", "down", "up", "width", "kernel", "rolloff", "zeros")

    def __init__(self, source_rate: int, target_rate: int) -> None:
        gcd = math.gcd(source_rate, target_rate)
        self.source_rate = source_rate
        self.target_rate = target_rate
        self.down = source_rate // gcd  # a: source frames per block
        self.up = target_rate // gcd  # b: output frames per block
        self.rolloff = 0.99  # torchaudio's defaults, so results equal its whole-file resampling
        self.zeros = 6  # lowpass_filter_width
        self.kernel: torch.Tensor | None = None
        base = min(self.down, self.up) * self.rolloff
        self.width = math.ceil(self.zeros * self.down / base)
        if self.up * (2 * self.width + self.down) <= _MAX_KERNEL_TAPS:
            resampler = torchaudio.transforms.Resample(source_rate, target_rate)
            self.kernel = resampler.kernel.detach().contiguous()
            self.width = int(resampler.width)


@functools.lru_cache(maxsize=32)
def _plan(source_rate: int, target_rate: int) -> _Plan:
    """The cached resampling plan for a pair of rates (one kernel per pair and process)."""
    return _Plan(source_rate, target_rate)


def _planar(rows: np.ndarray, scale: float | None, channels: int) -> np.ndarray:
    """``(count, C)`` rows -> ``(c, count)`` float32, C-contiguous, in one pass where possible.

    Mixing down happens here, at the source rate (before resampling, the cheaper side): mono is
    the mean of all channels; ``1 < channels < C`` keeps the first ``channels``. Up-mixing waits
    for :func:`_finish_channels`, after resampling.
    """
    source_channels = rows.shape[1]
    if channels == 1 and source_channels > 1:
        mono = rows.mean(axis=1, dtype=np.float32)
        if scale is not None:
            mono *= np.float32(scale)
        return mono[None, :]
    view = rows[:, :channels].T if 1 < channels < source_channels else rows.T
    if scale is None and view.flags.c_contiguous:  # mono float rows: already planar, our own buffer
        return view
    out = np.empty(view.shape, dtype=np.float32)
    if scale is None:
        np.copyto(out, view)
    else:
        np.multiply(view, np.float32(scale), out=out, dtype=np.float32)
    return out


def _finish_channels(planar: np.ndarray, channels: int) -> np.ndarray:
    """Up-mix (repeat the channels cyclically) and make the result C-contiguous float32."""
    have = planar.shape[0]
    if have < channels:
        planar = planar[[index % have for index in range(channels)]]
    return np.ascontiguousarray(planar, dtype=np.float32)


def segment(
    reader: Reader,
    total: int,
    source_rate: int,
    start: int,
    frames: int,
    target_rate: int,
    channels: int,
) -> np.ndarray:
    """Frames ``[start, start + frames)`` of the file resampled to ``target_rate``: ``(channels, frames)``."""
    if frames == 0:
        return np.zeros((channels, 0), dtype=np.float32)
    if source_rate == target_rate:
        return _finish_channels(_planar(*reader(start, frames), channels), channels)

    plan = _plan(source_rate, target_rate)
    if plan.kernel is None:
        planar = _direct_resample(reader, plan, start, frames, channels)
    else:
        a, b, width = plan.down, plan.up, plan.width
        first_block = start // b
        end_block = -(-(start + frames) // b)
        blocks = end_block - first_block
        source = _planar(*reader(first_block * a - width, blocks * a + 2 * width), channels)
        signal = torch.from_numpy(source).unsqueeze(1)  # (c, 1, source frames)
        with torch.no_grad():
            phases = torch.nn.functional.conv1d(signal, plan.kernel, stride=a)  # (c, b, blocks)
        offset = start - first_block * b
        planar = phases.transpose(1, 2).reshape(signal.shape[0], blocks * b)[:, offset : offset + frames].numpy()

    # Outside the whole-file result (before frame 0, past its last frame) the answer is silence,
    # not the filter's ringing into the padding.
    valid_end = resampled_length(total, source_rate, target_rate)
    if start < 0 or start + frames > valid_end:  # planar is this call's own buffer: edit in place
        planar[:, : min(max(-start, 0), frames)] = 0.0
        planar[:, max(valid_end - start, 0) :] = 0.0
    return _finish_channels(planar, channels)


def _direct_resample(reader: Reader, plan: _Plan, start: int, frames: int, channels: int) -> np.ndarray:
    """torchaudio's windowed sinc evaluated per output frame (for pairs of rates with huge kernels).

    Output frame ``n`` sits at source position ``n * a / b``; its taps are the source frames within
    ``width`` of it, weighted by ``sinc(pi * base * dt) * hann(dt) * base / a`` with
    ``dt = i / a - n / b`` (in units of reduced-rate periods) clamped to ``+-zeros / base``.
    """
    a, b, width = plan.down, plan.up, plan.width
    base = min(a, b) * plan.rolloff
    outputs = np.arange(start, start + frames, dtype=np.int64)
    first = (start * a) // b - width
    last = ((start + frames - 1) * a) // b + width + 1
    rows = _planar(*reader(first, last - first + 1), channels).T  # (count, c)
    centres = (outputs * a) // b
    taps = np.arange(-width, width + 2, dtype=np.int64)
    source_index = centres[:, None] + taps[None, :]  # (frames, taps) absolute source frames
    # i/a - n/b, exactly in integers, then scaled: t in units of base-frequency periods.
    t = (source_index * b - outputs[:, None] * a).astype(np.float64) / (a * b) * base
    t = np.clip(t, -plan.zeros, plan.zeros)
    window = np.cos(t * math.pi / plan.zeros / 2) ** 2
    weights = (np.sinc(t) * window * (base / a)).astype(np.float32)  # np.sinc(x) = sin(pi x)/(pi x)
    gathered = rows[source_index - first]  # (frames, taps, c)
    return np.einsum("ftc,ft->cf", gathered, weights, dtype=np.float32, optimize=False)
