"""All per-track embedding heads as one batched computation, on NumPy or CuPy.

Place in the pipeline: inside the ``cnnbin`` engine when its tracks are of
kind ``"embedding"`` (``training.models.build_track_head``), between the shared
encoder's sub-window embeddings and the per-track logits. It is the
embedding-head counterpart of ``stacked_cnn``.

Every head is: similarities to K_t prototypes minus a bias per prototype,
masked, max-pooled over neighbouring prototypes, summed along diagonals
(sub-window j against prototype k0 + j), max-pooled over k0, then scaled.
Only K_t differs between tracks, so the catalogue is laid out side by side
on one prototype axis::

    [ track 0: K_0 columns | r separators | track 1: K_1 columns | r separators | ... ]

* the first layer of all tracks is **one matrix product**
  (batch x n_sub, dim) @ (dim, sum K_t + T r): a catalogue of 100 tracks of
  three minutes is 110,000 columns, 70 MFLOP per 2.5 s window;
* the separators are minus infinity after masking, so the neighbour max-pool
  never reaches into the next track, exactly as Keras' "same" padding does
  at the ends of one track;
* the diagonal sums are n_sub shifted adds over the whole axis; offsets
  whose diagonal would leave their track are discarded before the per-track
  maximum (``maximum.reduceat`` on NumPy; CuPy has none, so there each
  track's valid offsets are gathered as one padded row and maximised).

Everything is written against an array module ``xp`` (NumPy or CuPy), so on
a GPU the product and the pooling run there. A test checks the result
against each Keras model to 1e-4.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

#: Bias of a prototype cut from digital silence: it can never add evidence.
UNINFORMATIVE_BIAS = -4.0
#: A sub-window whose standardised features span less than this is constant
#: (digital silence standardises to zeros), and carries no information.
MIN_INFORMATIVE_RANGE = 1e-3
#: Bound on the similarity arrays of one pass (see ``StackedHeads.logits``).
ACTIVATION_BUDGET_BYTES = 256 * 2**20
_NEG = np.float32(-1e9)


def informative(subwindows) -> np.ndarray:
    """1.0 for sub-windows with content, 0.0 for constant ones.

    subwindows: (..., frames, bands) standardised features (NumPy).
    Returns (...) float32.
    """
    x = np.asarray(subwindows)
    return ((x.max(axis=(-2, -1)) - x.min(axis=(-2, -1))) >= MIN_INFORMATIVE_RANGE).astype(np.float32)


def embed_query_windows(encoder, features, *, hop_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The heads' input for a batch of query windows.

    encoder: an ``encoder.model.Encoder``. features: (batch, n_frames, bands)
    from ``features.log_spectrogram`` (NumPy or CuPy). hop_frames: the step
    between sub-windows, equal to the heads' prototype step.
    Returns embeddings (batch, n_sub, dim) float32 and the informative mask
    (batch, n_sub) float32. Training and scoring both call this, so the two
    can never cut or mask sub-windows differently.
    """
    from ...encoder.subwindows import subwindow_starts, window_subwindows

    starts = subwindow_starts(features.shape[1], frames=encoder.params.frames, hop_frames=hop_frames)
    sub = window_subwindows(features, starts, encoder.params.frames)
    return encoder.embed_subwindows(sub), informative(sub)


@dataclass(frozen=True)
class HeadWeights:
    """Weights of one track head in plain arrays.

    prototypes: (K, dim) kernels of the ``prototypes`` layer (its Dense kernel
    transposed); bias: (K,); scale, offset: the ``logit`` layer;
    n_sub: sub-windows per window (the ``diagonal`` kernel size);
    tolerance: the ``align`` max-pool radius.
    """

    prototypes: np.ndarray
    bias: np.ndarray
    scale: float
    offset: float
    n_sub: int
    tolerance: int

    @classmethod
    def from_keras(cls, model) -> "HeadWeights":
        """Pull the weights out of a model built by ``training.models.build_track_head``."""
        kernel, bias = model.get_layer("prototypes").get_weights()
        w, c = model.get_layer("logit").get_weights()
        n_sub = int(model.get_layer("diagonal").get_weights()[0].shape[0])
        pool = model.get_layer("align").pool_size
        pool = pool[0] if isinstance(pool, (tuple, list)) else pool
        return cls(np.ascontiguousarray(np.asarray(kernel, np.float32).T), np.asarray(bias, np.float32),
                   float(w[0, 0]), float(c[0]), n_sub, (int(pool) - 1) // 2)


class StackedHeads:
    """The stacked weights of T track heads and their batched forward pass."""

    def __init__(self, heads: list[HeadWeights], *, xp: ModuleType = np):
        if not heads:
            raise ValueError("at least one track head is needed")
        shapes = {(h.n_sub, h.tolerance, h.prototypes.shape[1]) for h in heads}
        if len(shapes) != 1:
            raise ValueError(f"track heads differ in (n_sub, tolerance, dim): {sorted(shapes)}")
        self.n_sub, self.tolerance, self.dim = shapes.pop()
        if min(len(h.bias) for h in heads) < self.n_sub:
            raise ValueError(f"every head needs at least n_sub = {self.n_sub} prototypes")
        self.xp = xp
        self.n_tracks = len(heads)
        gap = max(1, self.tolerance)
        kernels, biases, separator, starts = [], [], [], []
        column = 0
        for h in heads:
            k = len(h.bias)
            starts.append(column)
            kernels += [h.prototypes, np.zeros((gap, self.dim), np.float32)]
            biases += [h.bias, np.zeros(gap, np.float32)]
            separator += [np.zeros(k, np.float32), np.full(gap, _NEG)]
            column += k + gap
        self.columns = column
        self._starts = np.asarray(starts, dtype=np.int64)
        # Offsets k0 whose diagonal k0 .. k0 + n_sub - 1 stays inside its track.
        valid = np.zeros(column - self.n_sub + 1, dtype=bool)
        for s, h in zip(starts, heads):
            valid[s:s + len(h.bias) - self.n_sub + 1] = True
        # Each track's valid offsets as a row of indices, padded by repeating
        # its last one (a repeat cannot change a maximum, and argmax returns
        # the first): for array modules without ``maximum.reduceat`` (CuPy),
        # and wherever the best offset itself is wanted.
        first = np.asarray(starts, dtype=np.int64)
        n_valid = np.asarray([len(h.bias) - self.n_sub + 1 for h in heads], dtype=np.int64)
        steps = np.minimum(np.arange(n_valid.max())[None, :], (n_valid - 1)[:, None])
        self._gather = xp.asarray(first[:, None] + steps)  # (T, max offsets)
        self._kernel = xp.asarray(np.concatenate(kernels).T.copy())  # (dim, C)
        self._bias = xp.asarray(np.concatenate(biases))
        self._separator = xp.asarray(np.concatenate(separator))
        self._invalid = xp.asarray(np.where(valid, np.float32(0), _NEG))
        self._scale = np.asarray([h.scale for h in heads], dtype=np.float32)
        self._offset = np.asarray([h.offset for h in heads], dtype=np.float32)

    def _best_offsets(self, emb, mask, *, with_where: bool = False):
        """(b, n_sub, dim), (b, n_sub) on ``xp`` -> (b, T) best diagonal sums (NumPy).

        with_where: also return (b, T) int64, the prototype index k0 (within
        each track) of the best diagonal: query sub-window j matched
        prototype k0 + j, so the window starts k0 prototypes into the track.
        """
        from ...signal.xp import to_numpy

        xp = self.xp
        b = emb.shape[0]
        sims = (emb.reshape(b * self.n_sub, self.dim) @ self._kernel).reshape(b, self.n_sub, self.columns)
        sims = (sims + self._bias) * mask[:, :, None] + self._separator
        pooled = sims.copy()
        for d in range(1, self.tolerance + 1):
            xp.maximum(pooled[..., d:], sims[..., :-d], out=pooled[..., d:])
            xp.maximum(pooled[..., :-d], sims[..., d:], out=pooled[..., :-d])
        width = self.columns - self.n_sub + 1
        diag = pooled[:, 0, :width].copy()
        for j in range(1, self.n_sub):
            diag += pooled[:, j, j:j + width]
        # Per-track maximum over its own offsets, on the device: only (b, T) comes back.
        if with_where or self.xp is not np:
            per_track = diag[:, self._gather]  # (b, T, max offsets)
            best = to_numpy(per_track.max(axis=2))
            return (best, to_numpy(per_track.argmax(axis=2)).astype(np.int64)) if with_where else best
        diag += self._invalid
        return np.maximum.reduceat(diag, self._starts, axis=1)

    def logits(self, embeddings, mask, *, with_where: bool = False):
        """Logit of every track for every window.

        embeddings: (batch, n_sub, dim) float32 from ``embed_query_windows``;
        mask: (batch, n_sub) float32 informative flags.
        Returns (batch, n_tracks) float32 NumPy logits; with ``with_where``
        also (batch, n_tracks) int64, the prototype each window's best
        diagonal starts at (``_best_offsets``).
        """
        xp = self.xp
        emb = xp.asarray(embeddings, dtype=xp.float32)
        msk = xp.asarray(mask, dtype=xp.float32)
        if emb.ndim != 3 or emb.shape[1:] != (self.n_sub, self.dim):
            raise ValueError(f"embeddings must be (batch, {self.n_sub}, {self.dim}), got {tuple(emb.shape)}")
        if len(emb) == 0:
            empty = np.zeros((0, self.n_tracks), dtype=np.float32)
            return (empty, empty.astype(np.int64)) if with_where else empty
        # Two (n_sub x columns) float32 arrays per window: 8.8 MB for 100
        # three-minute tracks. Big batches are cut to stay under the budget.
        per_window = 2 * self.n_sub * self.columns * 4
        step = max(1, ACTIVATION_BUDGET_BYTES // per_window)
        parts = [self._best_offsets(emb[i:i + step], msk[i:i + step], with_where=with_where)
                 for i in range(0, len(emb), step)]
        best = np.concatenate([p[0] for p in parts]) if with_where else np.concatenate(parts)
        logits = (best * self._scale + self._offset).astype(np.float32)
        return (logits, np.concatenate([p[1] for p in parts])) if with_where else logits
