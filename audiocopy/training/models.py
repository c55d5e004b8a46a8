"""Keras model builders. Builders only: no training loops, no file I/O.

Place in the pipeline: above ``features`` (they fix the input shape) and
below ``engines`` (which train, save, load and batch the models). This is one
of the only modules that imports TensorFlow, and it is imported lazily by the
engines, so ``import audiocopy`` stays cheap.

There are two per-track classifiers (``CnnParams.kind``): a head over the
shared encoder's embeddings (``build_track_head``, the default) and the
seed's spectrogram CNN (``build_track_cnn``). What follows is about the
latter; ``build_track_head`` explains itself.

The spectrogram classifier is deliberately small (about 20 k weights, ~100 kB
saved): a licensed catalog of a hundred tracks means a hundred of them run
on every 2.5 s window, and the scoring budget is tens of milliseconds on two
CPU cores. Its shape follows from the features:

* 3x3 convolutions see local time-frequency patterns (an onset, a chord, a
  vibrato), and 2x2 max-pooling between blocks makes them tolerant to small
  shifts in time and in log-frequency (that is, in tempo and pitch).
* The last block is pooled over time (max and mean), so the verdict does not
  depend on where in the window the evidence sits: a fragment cut anywhere
  from the track gives the same activations. Over frequency it keeps nine
  coarse cells of eight semitones each: a transposition of ±2 semitones
  mostly stays inside its cell (and the earlier pools and training shifts
  absorb the rest), while the *register* of a melody, which separates a
  track from others in the same style, is not thrown away. The fully
  shift-invariant variant (``CnnParams.pooling="global"``) scored 96 % vs
  97.5 % per-track hits at 1 % false positives on four benchmark tracks,
  and 42 % vs 67 % on phone recordings.
* One output logit: "is this window track X?". The engine turns it into a
  calibrated margin against the track's own threshold.

There is no batch normalisation, so the trained weights are the whole model
and ``engines.cnnbin`` can stack many tracks' weights into one batched pass.
"""
from __future__ import annotations

from ..config import CnnParams


def build_track_cnn(input_shape: tuple[int, int], params: CnnParams, *, name: str = "track_cnn"):
    """Binary classifier for one track.

    input_shape: (frames, bands) of one window's features.
    params: channel widths of the convolution blocks.
    Returns an uncompiled ``keras.Model`` mapping (batch, frames, bands)
    float32 to (batch, 1) logits.
    """
    from ..quiet_imports import keras as quiet_keras

    keras = quiet_keras()
    layers = keras.layers

    inputs = keras.Input(shape=input_shape, name="features")
    x = layers.Reshape((*input_shape, 1))(inputs)
    for i, width in enumerate(params.widths):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        if i < len(params.widths) - 1:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    if params.pooling == "global":
        pooled = layers.Concatenate(name="pooled")([
            layers.GlobalMaxPooling2D(name="gmax")(x),
            layers.GlobalAveragePooling2D(name="gavg")(x),
        ])
    elif params.pooling == "time":
        frames = x.shape[1]
        pooled = layers.Flatten(name="flat")(layers.Concatenate(name="pooled")([
            layers.MaxPooling2D((frames, 1), name="tmax")(x),
            layers.AveragePooling2D((frames, 1), name="tavg")(x),
        ]))
    else:
        raise ValueError(f"unknown pooling {params.pooling!r}")
    pooled = layers.Dropout(0.2, name="dropout")(pooled)
    logit = layers.Dense(1, name="logit")(pooled)
    return keras.Model(inputs, logit, name=name)


def build_track_head(n_prototypes: int, *, n_sub: int, dim: int, tolerance: int = 1, name: str = "track_head"):
    """Binary classifier for one track over the shared encoder's sub-window embeddings.

    n_prototypes: K, the track's prototypes (one per ``hop_frames`` of the
        track; ``training.fit_head`` starts them as the track's own embeddings).
    n_sub: sub-windows per query window (10 for 2.5 s), ``hop_frames`` apart.
    dim: embedding size of the encoder.
    tolerance: radius of the neighbour max-pool over prototypes.
    Returns an uncompiled ``keras.Model`` with inputs
    ``embeddings`` (batch, n_sub, dim) float32 and ``informative``
    (batch, n_sub) float32 in {0, 1}, and output (batch, 1) logits.

    The layers, and why each is there:

    * ``prototypes``, a 1x1 convolution with K kernels (a Dense layer applied
      to each sub-window): the cosine similarity of every query sub-window to
      every prototype, minus a per-prototype bias. A kernel that is a unit
      vector taken from the track itself makes this exactly nearest-neighbour
      matching, the strongest known start; training then moves kernels and
      biases to separate distorted copies of the track from other music.
    * the ``informative`` mask zeroes sub-windows with nothing in them
      (digital silence standardises to zeros, and zeros embed to one vector
      that every silent gap of every track shares).
    * ``align``, a max-pool of width 2 x tolerance + 1 along the prototypes:
      sub-window j of a query sped up by 10 % sits 0.9 j/10 prototypes from
      where an unchanged copy would.
    * ``diagonal``, a frozen 1-D convolution over the prototype axis whose
      kernel is the n_sub x n_sub identity: output k0 is the sum over j of
      the similarity of sub-window j to prototype k0 + j, the evidence that
      the window starts at prototype k0. Counting only sub-windows that agree
      on one offset is what separates a recording from music that merely
      sounds alike in places (the same idea as a fingerprinter's offset vote).
    * ``best_offset``, a global max-pool: the window may start anywhere.
    * ``logit``: a scale and a bias, so the loss sees calibrated logits.
    """
    from ..quiet_imports import keras as quiet_keras

    keras = quiet_keras()
    import numpy as np
    layers = keras.layers

    embeddings = keras.Input(shape=(n_sub, dim), name="embeddings")
    informative = keras.Input(shape=(n_sub,), name="informative")
    sims = layers.Dense(n_prototypes, name="prototypes")(embeddings)  # (b, n_sub, K)
    sims = layers.Multiply(name="masked")([sims, layers.Reshape((n_sub, 1), name="mask_column")(informative)])
    sims = layers.Permute((2, 1), name="by_prototype")(sims)  # (b, K, n_sub)
    sims = layers.MaxPooling1D(2 * tolerance + 1, strides=1, padding="same", name="align")(sims)
    diagonal = layers.Conv1D(1, n_sub, padding="valid", use_bias=False, trainable=False, name="diagonal")
    offsets = diagonal(sims)  # (b, K - n_sub + 1, 1)
    diagonal.set_weights([np.eye(n_sub, dtype=np.float32)[:, :, None]])
    best = layers.GlobalMaxPooling1D(name="best_offset")(offsets)
    logit = layers.Dense(1, name="logit")(best)
    return keras.Model([embeddings, informative], logit, name=name)


def build_encoder(input_shape: tuple[int, int], *, widths: tuple[int, ...] = (16, 32, 64, 128, 128),
                  hidden_dim: int = 256, embedding_dim: int = 64, name: str = "fp_encoder"):
    """The fingerprint engine's shared encoder: one sub-window -> one unit vector.

    input_shape: (frames, bands) of one sub-window of features (30 x 72: about
        one second of the log-frequency spectrogram), standardised per
        sub-window by the caller.
    widths: output channels of the convolution blocks. The first is a plain
        3x3 convolution that halves the frequency axis; every later one is a
        depthwise-separable 3x3 convolution with stride 2 on both axes. With
        the default five blocks a 30 x 72 input ends as a 2 x 3 grid: what
        remains of *where* in time and pitch a pattern sits is kept (flattened)
        rather than pooled away, because a catalogue of thousands of tracks
        needs that detail to tell tracks apart; robustness to pitch and tempo
        changes comes from contrastive training on distorted views instead.
    hidden_dim, embedding_dim: the projection head (dense -> ReLU -> dense).
    Returns an uncompiled ``keras.Model`` mapping (batch, frames, bands)
    float32 to (batch, embedding_dim) L2-normalised float32.

    Why separable convolutions: enrolment embeds a sub-window every 0.25 s of
    every catalogue track and a query embeds ten per 2.5 s window, so the
    encoder must cost about 2 MFLOP per sub-window (a plain 3x3 stack of the
    same widths costs ~15) to enrol at >= 1000x real time on two CPU cores.
    Batch normalisation is fine here: unlike cnnbin's per-track models, the
    encoder is one network and is never stacked.
    """
    from ..quiet_imports import keras as quiet_keras

    keras = quiet_keras()
    layers = keras.layers

    if len(widths) < 2:
        raise ValueError(f"the encoder needs at least two convolution blocks, got widths={widths}")
    inputs = keras.Input(shape=input_shape, name="features")
    x = layers.Reshape((*input_shape, 1), name="as_image")(inputs)
    x = layers.Conv2D(widths[0], 3, strides=(1, 2), padding="same", use_bias=False, name="conv0")(x)
    x = layers.BatchNormalization(name="bn0")(x)
    x = layers.ReLU(name="relu0")(x)
    for i, width in enumerate(widths[1:], start=1):
        x = layers.SeparableConv2D(width, 3, strides=2, padding="same", use_bias=False, name=f"sep{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(hidden_dim, activation="relu", name="hidden")(x)
    x = layers.Dense(embedding_dim, name="embedding")(x)
    outputs = layers.UnitNormalization(axis=-1, name="l2")(x)
    return keras.Model(inputs, outputs, name=name)


def encoder_model(params):
    """A fresh (untrained) Keras encoder for an ``EncoderParams`` record (``build_encoder``'s arguments)."""
    return build_encoder((params.frames, params.bands), widths=params.widths, hidden_dim=params.hidden_dim,
                         embedding_dim=params.embedding_dim)
