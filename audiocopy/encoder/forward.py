"""The fingerprint encoder's forward pass on an array module: no TensorFlow at serving time.

Place in the pipeline: between the cut, standardised sub-windows
(``encoder.artifact.window_subwindows`` / ``track_subwindows``) and the
vector index. The network is defined and trained in Keras
(``training.models.build_encoder``); its trained weights ship as plain
arrays (``weights/fingerprint_encoder.npz``). This module runs the same
computation with NumPy on the CPU or CuPy on a GPU, written once against an
array module ``xp`` like ``signal.features``, so serving never imports
TensorFlow: TensorFlow is only needed to train.

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
* On NumPy every convolution product is cut into one product per
  sub-window's worth of rows (``_products``). Each is then small enough that
  OpenBLAS runs it in the calling thread: its own threads, handed work 6
  times per chunk, made the pass 7-10x slower whenever another process
  held a core. The chunks run on ``CPU_THREADS`` threads of ours instead
  (NumPy and BLAS release the GIL); the dense head then runs as one
  product over all their features (up to ``HEAD_BLOCK``) in the calling
  thread.
* Padding costs no pass: each ReLU writes straight into the interior of the
  next layer's input buffer, whose zero ring is never written.
* Work arrays are reused between chunks and calls (``_Scratch``): fresh
  multi-megabyte arrays cost page faults, about half of a small call.

Speed, on the 2-core development machine (Xeon, AVX-512), median of
interleaved calls against ``Encoder.embed`` (TensorFlow, same weights):
TIMINGS
"""
from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ..errors import ParamsMismatch

log = logging.getLogger(__name__)

#: Keras' BatchNormalization default epsilon (the encoder does not change it).
BN_EPSILON = 1e-3
#: Keras' UnitNormalization epsilon: a zero vector stays zero instead of NaN.
NORM_EPSILON = 1e-12
#: Sub-windows per NumPy pass. The work arrays are ~0.38 MB per sub-window,
#: so 32 keeps a pass's largest activations within a core's 2 MB L2 cache
#: (measured: 32 and 64 within a few %, 24 and 128 slower).
CPU_CHUNK = 32
#: Threads for the NumPy chunks by default (at most the CPU count).
CPU_THREADS = 2
#: Sub-windows per pass on other array modules (GPU): ~0.4 GB of work
#: arrays, while every kernel still spans millions of elements.
DEVICE_CHUNK = 1024
#: Sub-windows whose features are kept for one pass of the dense head
#: (4096 x 768 floats is 12 MB).
HEAD_BLOCK = 4096
#: Taps of every convolution (3x3), and conv0's column count (taps + bias).
KERNEL = 3
_CONV0_COLS = KERNEL * KERNEL + 1


@dataclass(frozen=True, eq=False)  # arrays: identity, not elementwise ==
class EncoderWeights:
    """The encoder's weights prepared for inference (``prepare_weights``).

    All arrays are float32 on one array module's device; BN is folded in.
    conv0: (10, widths[0]): rows are the 3x3 taps (time-major) of the first
        convolution, scaled by its BN, and last the folded BN bias.
    depthwise: per separable block, (3, 3, C_in) depthwise kernels.
    pointwise, pointwise_bias: per block, (C_in, C_out) and (C_out,), BN folded.
    hidden, hidden_bias: (flat, hidden_dim), (hidden_dim,); ``flat`` is the
        final grid flattened as Keras does (time, band, channel).
    embedding, embedding_bias: (hidden_dim, embedding_dim), (embedding_dim,).
    The shape parameters are those of ``prepare_weights``.
    """

    frames: int
    bands: int
    widths: tuple[int, ...]
    hidden_dim: int
    embedding_dim: int
    conv0: object
    depthwise: tuple
    pointwise: tuple
    pointwise_bias: tuple
    hidden: object
    hidden_bias: object
    embedding: object
    embedding_bias: object

    @property
    def dim(self) -> int:
        """Length of one embedding."""
        return self.embedding_dim


# --------------------------------------------------------------------------
# geometry


def same_padding(size: int, stride: int, kernel: int = KERNEL) -> tuple[int, int, int]:
    """TensorFlow's "same" padding along one axis.

    size: input cells; stride, kernel: of the convolution along this axis.
    Returns (output cells, zeros before, zeros after).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _grid(frames: int, bands: int, n_blocks: int) -> list[tuple[int, int]]:
    """(time, band) cells after conv0 and after each separable block."""
    grid = [(same_padding(frames, 1)[0], same_padding(bands, 2)[0])]
    for _ in range(n_blocks):
        t, b = grid[-1]
        grid.append((same_padding(t, 2)[0], same_padding(b, 2)[0]))
    return grid


def weight_layout(*, widths, hidden_dim: int, embedding_dim: int, frames: int,
                  bands: int) -> list[tuple[str, tuple[int, ...]]]:
    """Name and shape of every weight of ``build_encoder``, in ``model.get_weights()`` order.

    The names are the Keras variable paths the artifact's record lists
    (``conv0/kernel``, ``bn0/gamma``, ...). Raises ``ParamsMismatch`` for an
    architecture this code cannot run (fewer than two blocks, a size < 1).
    """
    widths = tuple(int(w) for w in widths)
    sizes = {"frames": frames, "bands": bands, "hidden_dim": hidden_dim, "embedding_dim": embedding_dim}
    if len(widths) < 2:
        raise ParamsMismatch(f"the encoder needs at least two convolution blocks, got widths={widths}")
    bad = {k: v for k, v in {**sizes, "widths": min(widths)}.items() if int(v) < 1}
    if bad:
        raise ParamsMismatch(f"encoder sizes must be positive, got {bad}")
    t, b = _grid(frames, bands, len(widths) - 1)[-1]

    def bn(i: int, width: int) -> list[tuple[str, tuple[int, ...]]]:
        return [(f"bn{i}/{p}", (width,)) for p in ("gamma", "beta", "moving_mean", "moving_variance")]

    layout = [("conv0/kernel", (KERNEL, KERNEL, 1, widths[0])), *bn(0, widths[0])]
    for i in range(1, len(widths)):
        layout += [(f"sep{i}/depthwise_kernel", (KERNEL, KERNEL, widths[i - 1], 1)),
                   (f"sep{i}/pointwise_kernel", (1, 1, widths[i - 1], widths[i])), *bn(i, widths[i])]
    layout += [("hidden/kernel", (t * b * widths[-1], int(hidden_dim))), ("hidden/bias", (int(hidden_dim),)),
               ("embedding/kernel", (int(hidden_dim), int(embedding_dim))),
               ("embedding/bias", (int(embedding_dim),))]
    return layout


# --------------------------------------------------------------------------
# weights


def _as_list(arrays, layout) -> list[np.ndarray]:
    """The arrays in layout order, from a sequence or an npz-style mapping (w000, w001, ...)."""
    if isinstance(arrays, Mapping) or hasattr(arrays, "files"):
        keys = [f"w{i:03d}" for i in range(len(layout))]
        missing = [f"{k} ({name})" for k, (name, _) in zip(keys, layout) if k not in arrays]
        if missing:
            raise ParamsMismatch(f"encoder weights lack {', '.join(missing[:3])}"
                                 f"{' ...' if len(missing) > 3 else ''}: the architecture needs "
                                 f"{len(layout)} arrays w000..w{len(layout) - 1:03d}")
        extra = sorted(set(arrays.keys()) - set(keys))
        if extra:
            raise ParamsMismatch(f"encoder weights hold arrays the architecture does not have: {extra[:3]} "
                                 f"(it needs {len(layout)}: w000..w{len(layout) - 1:03d})")
        return [np.asarray(arrays[k]) for k in keys]
    if not isinstance(arrays, Sequence):
        arrays = list(arrays)
    if len(arrays) < len(layout):
        raise ParamsMismatch(f"encoder weights are {len(arrays)} arrays, the architecture needs {len(layout)} "
                             f"(the first missing is {layout[len(arrays)][0]})")
    if len(arrays) > len(layout):
        raise ParamsMismatch(f"encoder weights are {len(arrays)} arrays, the architecture needs only "
                             f"{len(layout)}: they belong to another encoder")
    return [np.asarray(a) for a in arrays]


def prepare_weights(arrays, *, widths, hidden_dim: int, embedding_dim: int, frames: int, bands: int,
                    xp: ModuleType = np) -> EncoderWeights:
    """Check the encoder's trained weights against its architecture and fold them for inference.

    arrays: the weights in ``model.get_weights()`` order (the order of the
        record's ``weights`` list): a sequence of arrays, or a mapping with
        the npz keys ``w000``, ``w001``, ... (an opened ``np.load``).
    widths, hidden_dim, embedding_dim, frames, bands: the architecture, as in
        the record's ``encoder`` entry (``build_encoder``'s arguments; frames
        x bands is one sub-window).
    xp: array module whose device receives the prepared weights.
    Returns ``EncoderWeights`` (float32 on ``xp``). Raises ``ParamsMismatch``
    naming the first array whose shape differs from the architecture's, or
    the missing/extra arrays; and for non-finite values or a negative BN
    variance (a corrupt file, which would embed to NaN).
    """
    widths = tuple(int(w) for w in widths)
    layout = weight_layout(widths=widths, hidden_dim=hidden_dim, embedding_dim=embedding_dim,
                           frames=frames, bands=bands)
    host = _as_list(arrays, layout)
    arch = (f"widths={widths}, hidden_dim={hidden_dim}, embedding_dim={embedding_dim}, "
            f"frames={frames}, bands={bands}")
    for i, (a, (name, shape)) in enumerate(zip(host, layout)):
        if tuple(a.shape) != shape:
            raise ParamsMismatch(f"encoder weight {i} ({name}) has shape {tuple(a.shape)}, the architecture "
                                 f"({arch}) needs {shape}: the weights belong to another encoder")
        if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)):
            raise ParamsMismatch(f"encoder weight {i} ({name}) is not finite floating point ({a.dtype}): "
                                 "the weights file is corrupt")
    # Folding in float64 so that the only float32 rounding is the final cast.
    it = iter(np.asarray(a, dtype=np.float64) for a in host)

    def bn_affine(i: int) -> tuple[np.ndarray, np.ndarray]:
        gamma, beta, mean, var = (next(it) for _ in range(4))
        if np.any(var < 0):
            raise ParamsMismatch(f"encoder weight bn{i}/moving_variance is negative: the weights file is corrupt")
        scale = gamma / np.sqrt(var + BN_EPSILON)
        return scale, beta - mean * scale

    kernel0 = next(it).reshape(KERNEL * KERNEL, widths[0])
    scale, bias = bn_affine(0)
    conv0 = np.concatenate([kernel0 * scale, bias[None]], axis=0)
    depthwise, pointwise, pointwise_bias = [], [], []
    for i in range(1, len(widths)):
        depthwise.append(next(it)[:, :, :, 0])
        kernel = next(it)[0, 0]
        scale, bias = bn_affine(i)
        pointwise.append(kernel * scale)
        pointwise_bias.append(bias)
    hidden, hidden_bias, embedding, embedding_bias = (next(it) for _ in range(4))

    def dev(a: np.ndarray):
        return xp.asarray(np.ascontiguousarray(a, dtype=np.float32))

    log.debug("encoder weights prepared for %s: %s", getattr(xp, "__name__", xp), arch)
    return EncoderWeights(
        frames=int(frames), bands=int(bands), widths=widths, hidden_dim=int(hidden_dim),
        embedding_dim=int(embedding_dim), conv0=dev(conv0), depthwise=tuple(map(dev, depthwise)),
        pointwise=tuple(map(dev, pointwise)), pointwise_bias=tuple(map(dev, pointwise_bias)),
        hidden=dev(hidden), hidden_bias=dev(hidden_bias), embedding=dev(embedding),
        embedding_bias=dev(embedding_bias))


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

    OpenBLAS computes a product with M N K <= 262144 in the calling thread
    and hands bigger ones to its own threads. Those hand-offs made
    whole-chunk products 7-10x slower on a busy machine (a BLAS thread
    waiting for a core), and they compete with the chunk threads. On NumPy
    the blocks are one sub-window's worth of rows each, so every product of
    the shipped encoder stays under that size and the chunk threads use the
    cores instead; elsewhere (GPU) one block, one large product.
    """
    return a.reshape(blocks, -1, k)


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


def _features(x, w: EncoderWeights, scratch: _Scratch, out) -> None:
    """The convolution stack for one chunk: x (n, frames, bands) -> out (n, flat), ReLU applied."""
    xp = scratch.xp
    n = x.shape[0]
    grid = _grid(w.frames, w.bands, len(w.widths) - 1)
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
    xp.maximum(z.reshape(height * width, n, -1).transpose(1, 0, 2), 0,
               out=out.reshape(n, height * width, w.widths[-1]))


def _head(flat, w: EncoderWeights, xp: ModuleType):
    """(n, flat) features -> (n, embedding_dim) unit vectors."""
    h = xp.matmul(flat, w.hidden)
    h += w.hidden_bias
    xp.maximum(h, 0, out=h)
    e = xp.matmul(h, w.embedding)
    e += w.embedding_bias
    norm = xp.sqrt((e * e).sum(axis=1, keepdims=True))
    return e / xp.maximum(norm, NORM_EPSILON)


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="encoder")
        return _pools[workers]


def embed(x, weights: EncoderWeights, *, xp: ModuleType = np, chunk: int | None = None,
          threads: int | None = None):
    """Unit embeddings of standardised sub-windows.

    x: (n, frames, bands) float32 sub-windows, each standardised (zero mean,
        unit variance: ``encoder`` ``standardize``); host or ``xp`` arrays
        (host arrays are copied to the device).
    weights: from ``prepare_weights`` with the same ``xp``.
    chunk: sub-windows per pass of the convolutions (default ``CPU_CHUNK`` on
        NumPy, ``DEVICE_CHUNK`` otherwise).
    threads: NumPy only, threads that run the chunks (default
        ``CPU_THREADS``, at most the CPU count); a single chunk runs in the
        calling thread.
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
    chunk = max(1, int(chunk or (CPU_CHUNK if on_cpu else DEVICE_CHUNK)))
    if threads is None:
        threads = min(CPU_THREADS, os.cpu_count() or 1)
    flat_dim = weights.hidden.shape[0]
    # The dense head runs once per block, in the calling thread, as one
    # product (where BLAS may use its own threads); blocks bound the
    # features held between the two stages.
    block = -(-HEAD_BLOCK // chunk) * chunk
    workers = min(max(1, int(threads)), -(-min(n, block) // chunk)) if on_cpu else 1

    def run(group: range, flat, start: int, stop: int) -> None:
        scratch = _scratch(xp)
        for lo in group:
            hi = min(lo + chunk, stop)
            _features(x[lo:hi], weights, scratch, flat[lo - start:hi - start])

    for start in range(0, n, block):
        stop = min(start + block, n)
        flat = xp.empty((stop - start, flat_dim), dtype=xp.float32)
        starts = range(start, stop, chunk)
        if workers == 1 or len(starts) == 1:
            run(starts, flat, start, stop)
        else:
            # Round-robin, so the threads' shares differ by one chunk at most.
            futures = [_pool(workers).submit(run, starts[k::workers], flat, start, stop) for k in range(workers)]
            for f in futures:
                f.result()
        out[start:stop] = _head(flat, weights, xp)
    return out
