"""Keras model builders. Builders only: no training loops, no file I/O.

Place in the pipeline: above ``features`` (they fix the input shape) and
below ``engines`` (which train, save, load and batch the models). This is one
of the only modules that imports TensorFlow, and it is imported lazily by the
engines, so ``import audiocopy`` stays cheap.

The per-track classifier is deliberately small (about 20 k weights, ~100 kB
saved): a licensed catalog of a hundred tracks means a hundred of them run
on every 2.5 s window, and the scoring budget is tens of milliseconds on two
CPU cores. Its shape follows from the features:

* 3x3 convolutions see local time-frequency patterns (an onset, a chord, a
  vibrato), and 2x2 max-pooling between blocks makes them tolerant to small
  shifts in time and in log-frequency (that is, in tempo and pitch).
* The last block is pooled globally (max and mean over time and frequency),
  so the verdict does not depend on where in the window or how far up the
  log-frequency axis the evidence sits: a fragment cut anywhere from the
  track, played a semitone higher, gives the same kind of activations.
* One output logit: "is this window track X?". The engine turns it into a
  calibrated margin against the track's own threshold.

There is no batch normalisation, so the trained weights are the whole model
and ``engines.cnnbin`` can stack many tracks' weights into one batched pass.
"""
from __future__ import annotations

from .config import CnnParams


def build_track_cnn(input_shape: tuple[int, int], params: CnnParams, *, name: str = "track_cnn"):
    """Binary classifier for one track.

    input_shape: (frames, bands) of one window's features.
    params: channel widths of the convolution blocks.
    Returns an uncompiled ``keras.Model`` mapping (batch, frames, bands)
    float32 to (batch, 1) logits.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="features")
    x = layers.Reshape((*input_shape, 1))(inputs)
    for i, width in enumerate(params.widths):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        if i < len(params.widths) - 1:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    pooled = layers.Concatenate(name="pooled")([
        layers.GlobalMaxPooling2D(name="gmax")(x),
        layers.GlobalAveragePooling2D(name="gavg")(x),
    ])
    pooled = layers.Dropout(0.2, name="dropout")(pooled)
    logit = layers.Dense(1, name="logit")(pooled)
    return keras.Model(inputs, logit, name=name)
