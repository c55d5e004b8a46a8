"""The fingerprint encoder's forward pass on an array module: no TensorFlow at serving time.

Place in the pipeline: between the cut, standardised sub-windows
(``encoder.subwindows``) and what searches or scores the vectors (the
fingerprint index, cnnbin's embedding heads). The network is defined and
trained in Keras (``training.models.build_encoder``); its trained weights
ship as plain arrays (``weights/fingerprint_encoder.npz``). This module
runs the same computation with NumPy on the CPU or CuPy on a GPU, written
once against an array module ``xp`` like ``signal.features``, so serving
never imports TensorFlow: TensorFlow is only needed to train.

The network, for one (frames, bands) sub-window::

    conv0   3x3, strides (1, 2), 1 -> widths[0] channels
    sep_i   3x3 depthwise, stride 2  ->  1x1 pointwise to widths[i]   (i >= 1)
            each followed by batch normalisation and ReLU
    flatten (time, band, channel) -> dense(hidden, ReLU) -> dense(dim) -> L2 unit

Ideas:

* **Batch normalisation folded away.** At inference a BN layer is a fixed
  per-channel affine map, ``y = g (z - m) / sqrt(v + eps) + b``, and ``z`` is
  linear in the preceding kernel's output columns. So ``scale = g / sqrt(v +
  eps)`` multiplies into those columns and ``b - m scale`` becomes a bias:
  the same function in exact arithmetic, with one fewer pass over the
  activations (only float rounding differs, ~1e-7). In a separable block
  the BN channels are the *pointwise* outputs, so it folds into the
  pointwise kernel; the depthwise kernel, one filter per input channel,
  cannot absorb a per-output-channel scale.
* **TensorFlow's "same" padding** (``same_padding``): with stride s an axis of
  n cells gives ceil(n / s) outputs and is padded by
  ``max((out - 1) s + k - n, 0)`` zeros, the smaller half *before*. With
  stride 2 and an even n that is one zero after and none before, so a
  symmetric pad would shift every output by one cell.
* **Why separable convolutions are cheap.** A 3x3 convolution from C to O
  channels costs 9 C O multiply-adds per output cell; a depthwise 3x3 (9 C)
  followed by a 1x1 pointwise (C O) costs 9 C + C O, 7-8x less for the
  widths used here. The encoder is ~1 M multiply-adds per sub-window.

How it is computed (each choice measured against its alternatives on NumPy):

* Activations are laid out as ``(height, width, batch * channels)``: batch
  and channels form one long contiguous row, so a 3x3 tap is a plain 2-D
  slice and every elementwise pass runs over long rows (with channels or
  batch innermost alone, NumPy's inner loops are 16-64 elements long and
  their overhead dominated).
* ``conv0`` has one input channel, so it is an im2col matrix product:
  (cells * batch, 9 taps + a ones column for the folded bias) @ (10, widths[0]).
* Depthwise: the weighted sum of 9 strided taps. On NumPy it is one
  ``einsum`` over a strided view of the padded activation, which copies no
  tap (3x faster than 9 slice multiply-adds, which each rewrite the output);
  on other modules (CuPy) it is the 9 shifted-slice multiply-adds.
* Pointwise: a matrix product (cells * batch, C_in) @ (C_in, C_out).
* On NumPy every matrix product is cut into pieces small enough that
  OpenBLAS runs them in the calling thread (``_products``, ``_matmul``):
  its own threads, woken for every product, made the pass 7-10x slower
  whenever another process held a core. The chunks run on ``CPU_THREADS``
  threads of ours instead (NumPy and BLAS release the GIL), each through
  the whole network, dense head included.
* Padding costs no pass: each ReLU writes straight into the interior of the
  next layer's input buffer, whose zero ring is never written.
* Work arrays are reused between chunks and calls (``_Scratch``): fresh
  multi-megabyte arrays cost page faults, about half of a small call.

Speed on the 2-core development machine (Xeon, AVX-512), as medians of
calls interleaved with the TensorFlow path it replaces (a ``tf.function``
over the Keras model; the machine was shared with other jobs, so only the
ratios are meaningful): 10 sub-windows (one query window) in 0.2-0.4x
TensorFlow's time, about 1.2 ms; 320 and 2048 sub-windows in 0.9-1.2x.
"""
from __future__ import annotations

import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import numpy as np

from .weights import KERNEL, EncoderWeights, block_grid, same_padding

log = logging.getLogger(__name__)

#: Keras' UnitNormalization epsilon: a zero vector stays zero instead of NaN.
NORM_EPSILON = 1e-12
#: Most sub-windows per NumPy pass: the work arrays are ~0.38 MB per
#: sub-window, and at 32-48 a pass's largest activation is about a core's
#: 2 MB L2 cache (measured, CPU time per sub-window: 24 to 48 within 3 %, 16
#: and 64 10 % slower). A call is cut into equal chunks of at most this many
#: (``_chunks``): a server cycle's ~33 sub-windows are one pass in the calling
#: thread, not a pass of 32 and one of 1 handed to two threads, which cost
#: 0.081 instead of 0.058 ms of CPU per sub-window.
CPU_CHUNK = 48
#: Threads for the NumPy chunks by default (at most the CPU count), except in
#: threads that called ``embed_in_calling_thread``.
CPU_THREADS = 2
#: Sub-windows per pass on other array modules (GPU): ~0.4 GB of work
#: arrays, while every kernel still spans millions of elements.
DEVICE_CHUNK = 1024
#: Multiply-adds per matrix product that OpenBLAS (NumPy's wheels) was
#: measured to run in the calling thread; bigger products wake its own
#: threads (see ``_products``).
SERIAL_PRODUCT = 2**19
_CONV0_COLS = KERNEL * KERNEL + 1


# --------------------------------------------------------------------------
# geometry


# --------------------------------------------------------------------------
# weights


# --------------------------------------------------------------------------
# forward pass


def _tap(k: int, stride: int, out: int) -> slice:
    """Input cells read by tap k of a convolution with ``out`` outputs (padded input)."""
    return slice(k, k + stride * (out - 1) + 1, stride)


class _Scratch:
    """Work arrays of the forward pass, reused from chunk to chunk and from call to call.

    Allocating a chunk's activations afresh (~12 MB for 32 sub-windows)
    costs page faults: measured, about half the time of a 10-sub-window
    call. So each named buffer is one flat array, grown to the largest size
    asked for and handed out as a reshaped prefix. A buffer with a ``ring``
    (zero padding around an activation) has that ring zeroed whenever its
    shape changes; the forward pass only ever writes the interior, so the
    ring stays zero while the shape stays the same.
    """

    def __init__(self, xp: ModuleType):
        self.xp = xp
        self._flat: dict[str, object] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}

    def get(self, name: str, shape: tuple[int, ...], ring: tuple[tuple[int, int], ...] | None = None):
        """A float32 array of ``shape``; ``ring``: (before, after) cells kept zero, per leading axis."""
        size = math.prod(shape)
        flat = self._flat.get(name)
        if flat is None or flat.size < size:
            flat = self._flat[name] = self.xp.empty(size, dtype=self.xp.float32)
            self._shapes.pop(name, None)
        a = flat[:size].reshape(shape)
        if ring is not None and self._shapes.get(name) != shape:
            for axis, (before, after) in enumerate(ring):
                lead = (slice(None),) * axis
                a[(*lead, slice(0, before))] = 0
                a[(*lead, slice(shape[axis] - after, shape[axis]))] = 0
            self._shapes[name] = shape
        return a


_local = threading.local()


def _scratch(xp: ModuleType) -> _Scratch:
    """The calling thread's scratch on NumPy; a fresh one elsewhere (CuPy pools its memory)."""
    if xp is not np:
        return _Scratch(xp)
    if not hasattr(_local, "scratch"):
        _local.scratch = _Scratch(np)
    return _local.scratch


def _products(a, blocks: int, k: int):
    """An array of m * k values as (blocks, m / blocks, k): ``matmul`` then runs one product per block.

    OpenBLAS hands a product bigger than about ``SERIAL_PRODUCT``
    multiply-adds to its own threads. Those hand-offs made the pass 7-10x
    slower whenever another process held a core (a BLAS thread waiting for
    its turn while the caller waits for it), and they compete with our chunk
    threads. On NumPy the blocks are one sub-window's rows each: every
    convolution product of the shipped encoder is then under 0.2 M
    multiply-adds and runs in the calling thread. Elsewhere (GPU): one
    block, one large product.
    """
    return a.reshape(blocks, -1, k)


def _matmul(a, b, out, *, xp: ModuleType) -> None:
    """out = a @ b for 2-D a and b; on NumPy as column blocks of at most ``SERIAL_PRODUCT`` multiply-adds."""
    if xp is not np or a.size * b.shape[1] <= SERIAL_PRODUCT:
        xp.matmul(a, b, out=out)
        return
    step = max(1, SERIAL_PRODUCT // a.size)
    for lo in range(0, b.shape[1], step):
        xp.matmul(a, b[:, lo:lo + step], out=out[:, lo:lo + step])


def _depthwise(act, kernel, out, *, xp: ModuleType) -> None:
    """Stride-2 3x3 depthwise convolution of a padded activation, written into ``out``.

    act: (2 Ho + 1, 2 Wo + 1, L) padded input; kernel: (3, 3, L) (the
    depthwise kernel tiled over the batch); out: (Ho, Wo, L).
    """
    ho, wo = out.shape[:2]
    if xp is np:
        # All 9 taps as one strided view: einsum sums them without copying
        # any tap (3x faster than 9 multiply-adds, which each write the output).
        s0, s1, s2 = act.strides
        view = np.lib.stride_tricks.as_strided(act, (ho, wo, KERNEL, KERNEL, act.shape[2]),
                                               (2 * s0, 2 * s1, s0, s1, s2), writeable=False)
        np.einsum("hwijc,ijc->hwc", view, kernel, out=out)
        return
    out[...] = act[_tap(0, 2, ho), _tap(0, 2, wo)] * kernel[0, 0]
    for i in range(KERNEL):
        for j in range(KERNEL):
            if i or j:
                out += act[_tap(i, 2, ho), _tap(j, 2, wo)] * kernel[i, j]


def _ring(height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Padding ((time before, after), (band before, after)) of a stride-2 3x3 convolution."""
    return same_padding(height, 2)[1:], same_padding(width, 2)[1:]


def _forward(x, w: EncoderWeights, scratch: _Scratch, out) -> None:
    """Embeddings of one chunk: x (n, frames, bands) float32 -> out (n, embedding_dim)."""
    xp = scratch.xp
    n = x.shape[0]
    grid = block_grid(w.frames, w.bands, len(w.widths) - 1)
    height, width = grid[0]

    # The input, transposed once to (time, band, batch) inside conv0's
    # padding (stride 1 in time, 2 in bands), so that every tap below copies
    # whole rows of the batch.
    (t0, t1), (b0, b1) = same_padding(w.frames, 1)[1:], same_padding(w.bands, 2)[1:]
    xpad = scratch.get("input", (w.frames + t0 + t1, w.bands + b0 + b1, n), ring=((t0, t1), (b0, b1)))
    xpad[t0:t0 + w.frames, b0:b0 + w.bands] = x.transpose(1, 2, 0)
    # conv0 as im2col: (10, cells * n) holds the 9 taps and a ones row (the
    # folded BN bias), used transposed (free for BLAS, unlike a copy).
    blocks = n if xp is np else 1
    cols = scratch.get("cols", (_CONV0_COLS, height, width, n))
    for i in range(KERNEL):
        for j in range(KERNEL):
            cols[KERNEL * i + j] = xpad[_tap(i, 1, height), _tap(j, 2, width)]
    cols[_CONV0_COLS - 1] = 1
    z = scratch.get("conv0", (height * width, n * w.widths[0]))
    xp.matmul(cols.reshape(_CONV0_COLS, blocks, -1).transpose(1, 2, 0), w.conv0,
              out=_products(z, blocks, w.widths[0]))

    for i in range(1, len(w.widths)):
        c_in, c_out = w.widths[i - 1], w.widths[i]
        # ReLU writes straight into the interior of the next layer's padded
        # input, whose ring was zeroed when it was made: padding costs no pass.
        ring = (t0, t1), (b0, b1) = _ring(height, width)
        act = scratch.get(f"act{i}", (height + t0 + t1, width + b0 + b1, n * c_in), ring=ring)
        xp.maximum(z.reshape(height, width, -1), 0, out=act[t0:t0 + height, b0:b0 + width])
        height, width = grid[i]
        d = scratch.get(f"dw{i}", (height * width, n * c_in))
        _depthwise(act, xp.tile(w.depthwise[i - 1], (1, 1, n)), d.reshape(height, width, -1), xp=xp)
        z = scratch.get(f"pw{i}", (height * width, n * c_out))
        xp.matmul(_products(d, blocks, c_in), w.pointwise[i - 1], out=_products(z, blocks, c_out))
        z += xp.tile(w.pointwise_bias[i - 1], n)  # tiled, so the add runs over whole rows

    # Flattened as Keras does: (time, band, channel) per sub-window.
    flat = scratch.get("flat", (n, height * width * w.widths[-1]))
    xp.maximum(z.reshape(height * width, n, -1).transpose(1, 0, 2), 0,
               out=flat.reshape(n, height * width, w.widths[-1]))
    h = scratch.get("hidden", (n, w.hidden_dim))
    _matmul(flat, w.hidden, h, xp=xp)
    h += w.hidden_bias
    xp.maximum(h, 0, out=h)
    e = scratch.get("embedding", (n, w.embedding_dim))
    _matmul(h, w.embedding, e, xp=xp)
    e += w.embedding_bias
    norm = xp.sqrt((e * e).sum(axis=1, keepdims=True))
    xp.divide(e, xp.maximum(norm, NORM_EPSILON), out=out)


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="encoder")
        return _pools[workers]


_serial = threading.local()


def embed_in_calling_thread() -> None:
    """From now on, ``embed`` called in this thread without ``threads`` runs every chunk in this thread.

    For threads that are already one of several running in parallel: the
    server's compute workers (``web.app``) each embed their own batch of
    streams, so handing half a batch to a helper thread only adds a thread
    that competes for the GIL and the cores. Measured with 300 streams of
    48 kHz against 100 fingerprint tracks on 2 shared cores (two compute
    workers, two runs each): p95 latency 140-145 ms in the calling thread,
    256-260 ms with ``CPU_THREADS`` helpers, at the same CPU.
    """
    _serial.on = True


def embeds_in_calling_thread() -> bool:
    """Whether this thread called ``embed_in_calling_thread``."""
    return getattr(_serial, "on", False)


def _chunk_size(n: int, most: int) -> int:
    """Sub-windows per pass when ``n`` are cut into equal chunks of at most ``most`` (the last may be smaller)."""
    return -(-n // -(-n // most))


def embed(x, weights: EncoderWeights, *, xp: ModuleType = np, chunk: int | None = None,
          threads: int | None = None):
    """Unit embeddings of standardised sub-windows.

    x: (n, frames, bands) float32 sub-windows, each standardised (zero mean,
        unit variance: ``encoder.subwindows.standardize``); host or ``xp``
        arrays (host arrays are copied to the device).
    weights: from ``prepare_weights`` with the same ``xp``.
    chunk: most sub-windows per pass of the convolutions (default
        ``CPU_CHUNK`` on NumPy, ``DEVICE_CHUNK`` otherwise); the call is cut
        into equal chunks of at most this many.
    threads: NumPy only, threads that run the chunks (default
        ``CPU_THREADS``, at most the CPU count; 1 in a thread that called
        ``embed_in_calling_thread``); a single chunk runs in the calling
        thread. Two threads pay on idle cores (measured with the
        same structure: 320 sub-windows in ~0.65x one thread's time); with
        both cores busy elsewhere one thread was 10-20 % faster.
    Returns (n, embedding_dim) float32 of module ``xp``, unit L2 norm per row
    (an all-zero embedding stays zero); n = 0 gives (0, embedding_dim).
    Raises ValueError for any other input shape.
    """
    x = xp.asarray(x, dtype=xp.float32)
    if x.ndim != 3 or tuple(x.shape[1:]) != (weights.frames, weights.bands):
        raise ValueError(f"sub-windows must be (n, {weights.frames}, {weights.bands}), got {tuple(x.shape)}")
    n = x.shape[0]
    out = xp.empty((n, weights.embedding_dim), dtype=xp.float32)
    if n == 0:
        return out
    on_cpu = xp is np
    chunk = _chunk_size(n, max(1, int(chunk or (CPU_CHUNK if on_cpu else DEVICE_CHUNK))))
    if threads is None:
        threads = 1 if embeds_in_calling_thread() else min(CPU_THREADS, os.cpu_count() or 1)
    starts = range(0, n, chunk)

    def run(group: range) -> None:
        scratch = _scratch(xp)
        for lo in group:
            _forward(x[lo:lo + chunk], weights, scratch, out[lo:lo + chunk])

    workers = min(max(1, int(threads)), len(starts)) if on_cpu else 1
    if workers == 1:
        run(starts)
    else:
        # Round-robin, so the threads' shares differ by one chunk at most.
        futures = [_pool(workers).submit(run, starts[k::workers]) for k in range(workers)]
        for f in futures:
            f.result()
    return out
