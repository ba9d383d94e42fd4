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

    The kernel (``torchaudio.transforms.Resample(source, target, **RESAMPLE_OPTIONS)``'s) is built
    once per pair of rates and process (:func:`_plan`, an LRU cache). Unusual pairs of rates (say
    44056 Hz to 22050 Hz, whose reduced ratio is 22028:11025) would need a kernel of hundreds of
    millions of taps; for those the same windowed sinc is evaluated directly at each output frame
    instead (slower per call, no giant kernel, same values).

The filter
    A Kaiser-windowed sinc (``LOWPASS_FILTER_WIDTH``, ``ROLLOFF``, ``KAISER_BETA``), not
    torchaudio's default Hann-windowed one: the default (6 zero crossings, rolloff 0.99) lets a
    tone at 1.03x the new Nyquist frequency fold back at -8 dB and loses 2.4 dB at 0.9x Nyquist.
    This one keeps aliases at or below -60 dB from 1.05x the new Nyquist up and the pass band
    within 0.5 dB up to 0.9x (figures in docs/audio-io.md).

Readers
    A reader ``(first, count) -> (rows, scale)`` returns ``count`` zero-padded ``(count, C)`` rows
    at the source rate: float32 rows with ``scale`` None, or integer rows (int16 or int32, read
    straight from integer PCM) that become float32 when multiplied by ``scale``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
import torch
import torchaudio

__all__ = [
    "KAISER_BETA",
    "LOWPASS_FILTER_WIDTH",
    "RESAMPLE_OPTIONS",
    "ROLLOFF",
    "Reader",
    "resampled_length",
    "segment",
]

Reader = Callable[[int, int], "tuple[np.ndarray, float | None]"]

# The anti-aliasing filter. Measured end to end (sine tones through torchaudio.functional.resample
# with these options, levels fitted by least squares; 44.1k, 48k -> 22.05k, 22.05k -> 16k, and
# 16k -> 22.05k): aliases of tones from 1.05x to 1.95x the new Nyquist at -75 dB or lower, pass
# band within 0.28 dB up to 0.9x Nyquist (-0.27 dB there), upsampling images at -69 dB or lower.
# Cost grows with the width: 16 never met -60 dB and 0.5 dB together (rolloff 0.94-0.96, beta 5-8),
# 20 only narrowly (rolloff 0.96, beta 5.5: -64 dB, 0.34 dB); 24 leaves 15 dB of margin. At width
# 24 and rolloff 0.96, beta 6 gives -65 dB and beta 8 widens the transition band into 1.05x (-54
# dB); beta 7 puts the stop-band floor near -75 dB.
LOWPASS_FILTER_WIDTH = 24  # zero crossings of the sinc on each side
ROLLOFF = 0.96  # cutoff as a fraction of the lower rate's Nyquist frequency
KAISER_BETA = 7.0

#: Keyword arguments for ``torchaudio.functional.resample`` / ``torchaudio.transforms.Resample``
#: that give exactly this module's filter (whole-file reference for :func:`segment`).
RESAMPLE_OPTIONS: Mapping[str, object] = MappingProxyType(
    {
        "lowpass_filter_width": LOWPASS_FILTER_WIDTH,
        "rolloff": ROLLOFF,
        "resampling_method": "sinc_interp_kaiser",
        "beta": KAISER_BETA,
    }
)

# torchaudio.functional.resample's defaults (the Hann-windowed sinc), for options that leave some out.
_TORCHAUDIO_DEFAULTS: Mapping[str, object] = MappingProxyType(
    {
        name: parameter.default
        for name, parameter in inspect.signature(torchaudio.functional.resample).parameters.items()
        if name in ("lowpass_filter_width", "rolloff", "resampling_method", "beta")
    }
)
_TORCHAUDIO_KAISER_BETA = 14.769656459379492  # torchaudio's beta for sinc_interp_kaiser when beta is None

# A polyphase kernel bigger than this (in float32 taps) is not built; the sinc is evaluated
# directly instead. 2**22 taps = 16 MiB; any pair of the common rates from 8 to 192 kHz needs
# under 650 000 (to 22.05 kHz: under 320 000).
_MAX_KERNEL_TAPS = 2**22


def resampled_length(frames: int, source_rate: int, target_rate: int) -> int:
    """Frames of a ``frames``-long signal after resampling (as torchaudio counts them: rounded up)."""
    if source_rate == target_rate:
        return frames
    return -(-frames * target_rate // source_rate)


class _Plan:
    """How to resample between two rates: reduced ratio, filter, filter width, and the kernel.

    ``kernel`` is ``torchaudio.transforms.Resample(source, target, **options).kernel``: shape
    ``(b, 1, 2 * width + a)``, one filter per output phase. It is None when too big to build
    (see ``_MAX_KERNEL_TAPS``); then :func:`_direct_resample` evaluates the same sinc directly.
    """

    __slots__ = ("source_rate", "target_rate", "down", "up", "width", "kernel", "rolloff", "zeros", "method", "beta")

    def __init__(self, source_rate: int, target_rate: int, options: Mapping[str, object] = RESAMPLE_OPTIONS) -> None:
        unknown = set(options) - set(_TORCHAUDIO_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown resampling options: {sorted(unknown)}")
        settings = {**_TORCHAUDIO_DEFAULTS, **options}
        self.method = str(settings["resampling_method"])
        if self.method not in ("sinc_interp_hann", "sinc_interp_kaiser"):
            raise ValueError(f"unknown resampling_method {self.method!r}")
        gcd = math.gcd(source_rate, target_rate)
        self.source_rate = source_rate
        self.target_rate = target_rate
        self.down = source_rate // gcd  # a: source frames per block
        self.up = target_rate // gcd  # b: output frames per block
        self.rolloff = float(settings["rolloff"])
        self.zeros = int(settings["lowpass_filter_width"])
        self.beta = _TORCHAUDIO_KAISER_BETA if settings["beta"] is None else float(settings["beta"])
        self.kernel: torch.Tensor | None = None
        base = min(self.down, self.up) * self.rolloff
        self.width = math.ceil(self.zeros * self.down / base)
        if self.up * (2 * self.width + self.down) <= _MAX_KERNEL_TAPS:
            resampler = torchaudio.transforms.Resample(source_rate, target_rate, **options)
            self.kernel = resampler.kernel.detach().contiguous()
            self.width = int(resampler.width)


@functools.lru_cache(maxsize=32)
def _plan(source_rate: int, target_rate: int, options: tuple[tuple[str, object], ...] | None = None) -> _Plan:
    """The cached plan for a pair of rates and a filter (``None``: :data:`RESAMPLE_OPTIONS`).

    ``options`` is given as sorted ``(name, value)`` pairs so that it can be a cache key.
    """
    return _Plan(source_rate, target_rate, RESAMPLE_OPTIONS if options is None else dict(options))


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
    *,
    options: Mapping[str, object] | None = None,
) -> np.ndarray:
    """Frames ``[start, start + frames)`` of the file resampled to ``target_rate``: ``(channels, frames)``.

    Args:
        reader: returns zero-padded source rows (see the module docstring).
        total: the file's length in source frames.
        source_rate: the file's rate.
        start: first output frame (at ``target_rate``); may be negative.
        frames: output frames to return.
        target_rate: the output rate.
        channels: output channels (mono: the mean; fewer: the first ones; more: repeated).
        options: the filter, as keyword arguments of ``torchaudio.functional.resample``; default
            :data:`RESAMPLE_OPTIONS`. ``{}`` is torchaudio's default Hann-windowed sinc (for
            comparisons; it lets aliases through).
    """
    if frames == 0:
        return np.zeros((channels, 0), dtype=np.float32)
    if source_rate == target_rate:
        return _finish_channels(_planar(*reader(start, frames), channels), channels)

    plan = _plan(source_rate, target_rate, None if options is None else tuple(sorted(options.items())))
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


# Evaluating I0 at every tap made the direct path ~4x slower than the rest of it; a table of
# 4096 points per zero crossing, linearly interpolated, is off by under 3e-8 (|h''| <= pi**2 / 3),
# below float32 rounding of the weights.
_TABLE_STEPS = 4096


@functools.lru_cache(maxsize=4)
def _windowed_sinc_table(zeros: int, method: str, beta: float) -> np.ndarray:
    """``sinc(t) * window(t)`` at ``t = k / _TABLE_STEPS`` for ``0 <= t <= zeros`` (the filter is even)."""
    grid = np.arange(zeros * _TABLE_STEPS + 1, dtype=np.float64) / _TABLE_STEPS
    if method == "sinc_interp_hann":
        window = np.cos(grid * math.pi / zeros / 2) ** 2
    else:
        window = np.i0(beta * np.sqrt(1.0 - (grid / zeros) ** 2)) / np.i0(beta)
    values = np.sinc(grid) * window  # np.sinc(x) = sin(pi x) / (pi x)
    values[-1] = 0.0  # sinc(zeros) is 0 up to rounding; torchaudio clamps t to +-zeros
    values.flags.writeable = False  # shared by every call through the cache
    return values


def _direct_resample(reader: Reader, plan: _Plan, start: int, frames: int, channels: int) -> np.ndarray:
    """The kernel's windowed sinc evaluated per output frame (for pairs with huge kernels).

    Output frame ``n`` sits at source position ``n * a / b``; its taps are the source frames within
    ``width`` of it, weighted by ``sinc(pi * base * dt) * window(dt) * base / a`` with
    ``dt = i / a - n / b`` (in units of reduced-rate periods) clamped to ``+-zeros / base``, where
    ``window(dt)`` is ``I0(beta * sqrt(1 - (base * dt / zeros)**2)) / I0(beta)`` (Kaiser) or
    ``cos(pi * base * dt / zeros / 2)**2`` (Hann): the formulas torchaudio builds its kernels
    from, looked up in :func:`_windowed_sinc_table`.
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
    # Linear interpolation in the table (a uniform grid: the index is computed, not searched for).
    table = _windowed_sinc_table(plan.zeros, plan.method, plan.beta)
    position = np.minimum(np.abs(t), plan.zeros) * _TABLE_STEPS
    index = np.minimum(position.astype(np.int64), table.size - 2)
    fraction = position - index
    lower = table[index]
    weights = ((lower + (table[index + 1] - lower) * fraction) * (base / a)).astype(np.float32)
    gathered = rows[source_index - first]  # (frames, taps, c)
    return np.einsum("ftc,ft->cf", gathered, weights, dtype=np.float32, optimize=False)
