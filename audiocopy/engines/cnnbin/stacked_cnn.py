"""All per-track CNNs as one batched computation.

Place in the pipeline: inside the ``cnnbin`` engine, between features and
the per-track logits. Calling ``model.predict`` once per track would cost a
hundred framework dispatches per window and leave the cores idle between
them. Because every track model has the same architecture
(``training.models.build_track_cnn``), their weights can be stacked and the whole
catalogue evaluated as one network that is T times wider:

* layer 1 shares its input, so all tracks' first convolutions are a single
  convolution with T*c1 output channels;
* every later 3x3 convolution is a *grouped* convolution with T groups:
  group t reads only track t's channels and applies only track t's kernel,
  which is exactly T independent networks, computed in one kernel call;
* global max/mean pooling and the final dense layers are one reduction and
  one ``einsum`` over the track axis.

The result is one compiled TensorFlow function per catalogue; on a GPU,
TensorFlow places it there. A test checks it against per-model Keras
``predict`` to 1e-4.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CnnWeights:
    """Weights of one track CNN in plain arrays.

    convs: per block (kernel (3, 3, c_in, c_out), bias (c_out,)).
    dense: (kernel (2*c_last, 1), bias (1,)).
    """

    convs: tuple[tuple[np.ndarray, np.ndarray], ...]
    dense: tuple[np.ndarray, np.ndarray]

    @classmethod
    def from_keras(cls, model) -> "CnnWeights":
        """Pull the weights out of a model built by ``training.models.build_track_cnn``."""
        convs = []
        names = {layer.name for layer in model.layers}
        i = 0
        while f"conv{i}" in names:
            kernel, bias = model.get_layer(f"conv{i}").get_weights()
            convs.append((np.asarray(kernel, np.float32), np.asarray(bias, np.float32)))
            i += 1
        kernel, bias = model.get_layer("logit").get_weights()
        return cls(tuple(convs), (np.asarray(kernel, np.float32), np.asarray(bias, np.float32)))

    def shapes(self) -> tuple:
        """Kernel shapes, used to check that models can be stacked."""
        return tuple(k.shape for k, _ in self.convs) + (self.dense[0].shape,)


#: Bound on the first block's activations per forward pass (see ``StackedCnn.logits``).
ACTIVATION_BUDGET_BYTES = 256 * 2**20


class StackedCnn:
    """The stacked weights of T track CNNs and their batched forward pass."""

    def __init__(self, weights: list[CnnWeights]):
        from ...quiet_imports import tensorflow

        tf = tensorflow()

        if not weights:
            raise ValueError("at least one track model is needed")
        shapes = {w.shapes() for w in weights}
        if len(shapes) != 1:
            raise ValueError(f"track models have different architectures: {sorted(map(str, shapes))}")
        self.n_tracks = len(weights)
        n_blocks = len(weights[0].convs)
        # Kernels concatenated on the output axis: group t of the output
        # channels belongs to track t, as TensorFlow's grouped convolution expects.
        self._kernels = [
            tf.constant(np.concatenate([w.convs[i][0] for w in weights], axis=-1)) for i in range(n_blocks)
        ]
        self._biases = [
            tf.constant(np.concatenate([w.convs[i][1] for w in weights])) for i in range(n_blocks)
        ]
        self._dense_w = tf.constant(np.stack([w.dense[0][:, 0] for w in weights]))  # (T, 2c)
        self._dense_b = tf.constant(np.stack([w.dense[1][0] for w in weights]))  # (T,)
        self._c_last = int(weights[0].convs[-1][0].shape[-1])
        # The dense layer's input size tells the pooling: 2c for global, bands*2c for time-only.
        self.pooling = "global" if weights[0].dense[0].shape[0] == 2 * self._c_last else "time"
        # One trace for every batch size: a server's micro-batches vary in size.
        self._fn = tf.function(self._forward, input_signature=[tf.TensorSpec([None, None, None], tf.float32)])

    def _forward(self, x):
        from ...quiet_imports import tensorflow

        tf = tensorflow()

        h = x[..., None]
        last = len(self._kernels) - 1
        for i, (kernel, bias) in enumerate(zip(self._kernels, self._biases)):
            h = tf.nn.relu(tf.nn.conv2d(h, kernel, strides=1, padding="SAME") + bias)
            if i < last:
                h = tf.nn.max_pool2d(h, 2, 2, padding="VALID")
        batch = tf.shape(h)[0]
        if self.pooling == "global":
            gmax = tf.reshape(tf.reduce_max(h, axis=(1, 2)), (batch, self.n_tracks, self._c_last))
            gavg = tf.reshape(tf.reduce_mean(h, axis=(1, 2)), (batch, self.n_tracks, self._c_last))
            pooled = tf.concat([gmax, gavg], axis=-1)  # (b, T, 2c), same order as Keras' Concatenate
        else:  # "time": keep the band axis; Keras flattens (band, [max | mean] channel)
            width = tf.shape(h)[2]
            tmax = tf.reshape(tf.reduce_max(h, axis=1), (batch, width, self.n_tracks, self._c_last))
            tavg = tf.reshape(tf.reduce_mean(h, axis=1), (batch, width, self.n_tracks, self._c_last))
            pooled = tf.transpose(tf.concat([tmax, tavg], axis=-1), (0, 2, 1, 3))  # (b, T, bands, 2c)
            pooled = tf.reshape(pooled, (batch, self.n_tracks, -1))
        return tf.einsum("btc,tc->bt", pooled, self._dense_w) + self._dense_b

    def logits(self, features) -> np.ndarray:
        """Logit of every track for every window.

        features: (batch, frames, bands) float32 (NumPy or CuPy).
        Returns (batch, n_tracks) float32 NumPy logits.
        """
        from ...signal.xp import to_numpy

        x = np.asarray(to_numpy(features), dtype=np.float32)
        if x.ndim != 3:
            raise ValueError(f"features must be (batch, frames, bands), got shape {x.shape}")
        # The first block's output holds every track's channels at full
        # resolution: frames x bands x (T x c0) floats per window, 17 MB per
        # window for 100 tracks. Big batches (calibration, file identification)
        # are therefore cut so that this stays under ACTIVATION_BUDGET_BYTES;
        # the cost per window hardly depends on the batch size beyond a few windows.
        per_window = x.shape[1] * x.shape[2] * int(self._kernels[0].shape[-1]) * 4
        step = max(1, ACTIVATION_BUDGET_BYTES // max(per_window, 1))
        if len(x) <= step:
            return self._fn(x).numpy()
        return np.concatenate([self._fn(x[i:i + step]).numpy() for i in range(0, len(x), step)])
