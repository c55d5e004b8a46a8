"""The encoder's trained weights, checked against its architecture and prepared for inference.

Place in the pipeline: under ``encoder.forward`` (which runs them) and
``encoder.model`` (which loads them once per array module). Keras stores a
convolution, then a batch normalisation with its own four arrays; at
inference a BN layer is a fixed per-channel affine map, ``y = g (z - m) /
sqrt(v + eps) + b``, and ``z`` is linear in the preceding kernel's output
columns, so ``scale = g / sqrt(v + eps)`` multiplies into those columns and
``b - m scale`` becomes a bias: the same function in exact arithmetic, with
one fewer pass over the activations. In a separable block the BN channels
are the *pointwise* outputs, so it folds into the pointwise kernel.

The geometry of TensorFlow's "same" padding lives here too
(``same_padding``): with stride s an axis of n cells gives ceil(n / s)
outputs and is padded by ``max((out - 1) s + k - n, 0)`` zeros, the smaller
half *before*. With stride 2 and an even n that is one zero after and none
before, so a symmetric pad would shift every output by one cell.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ..errors import ParamsMismatch

log = logging.getLogger(__name__)

#: Keras' BatchNormalization default epsilon (the encoder does not change it).
BN_EPSILON = 1e-3
#: Taps of every convolution (3x3), and conv0's column count (taps + bias).
KERNEL = 3


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


def same_padding(size: int, stride: int, kernel: int = KERNEL) -> tuple[int, int, int]:
    """TensorFlow's "same" padding along one axis.

    size: input cells; stride, kernel: of the convolution along this axis.
    Returns (output cells, zeros before, zeros after).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def block_grid(frames: int, bands: int, n_blocks: int) -> list[tuple[int, int]]:
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
    t, b = block_grid(frames, bands, len(widths) - 1)[-1]

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


def weights_list(arrays, layout) -> list[np.ndarray]:
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
    # Long: one pass over the architecture's arrays in order, each checked and
    # folded as it is read; splitting it would only pass the iterator around.
    widths = tuple(int(w) for w in widths)
    layout = weight_layout(widths=widths, hidden_dim=hidden_dim, embedding_dim=embedding_dim,
                           frames=frames, bands=bands)
    host = weights_list(arrays, layout)
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
