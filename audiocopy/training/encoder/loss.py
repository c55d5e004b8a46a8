"""NT-Xent with several views per moment, other moments of the same track left out.

Place in the pipeline: the encoder's training objective (Chen et al. 2020, as
in Chang et al. 2021's neural audio fingerprint; with several positives per
anchor it is the supervised-contrastive form of Khosla et al. 2020, where the
"class" is one moment of one track). A batch holds V views of each of B
moments: the clean anchor and V - 1 distorted views. Every view of a moment
is a positive of every other; views of other tracks are negatives; views of
*other moments of the same track* are left out of the denominator, not used
as negatives: a chorus repeated later in a song is not a mistake to punish.
With V = 2 this is exactly NT-Xent.
"""
from __future__ import annotations


def nt_xent(z, track_ids, temperature: float, views: int = 2):
    """Mean multi-positive NT-Xent over V x B unit vectors.

    z: (V * B, D) float32 tensor, L2-normalised; rows [v B, (v + 1) B) are
    view v of the B moments (view 0: the anchors). track_ids: (B,) int32,
    the track of each moment. temperature: softmax temperature. views: V >= 2.
    Returns the loss (scalar tensor): for every row and each of its V - 1
    positives, minus the log of that positive's share of the row's
    softmax over all rows but itself and its masked same-track rows.
    """
    from ...quiet_imports import tensorflow

    tf = tensorflow()

    n = tf.shape(z)[0]
    b = n // views
    moment = tf.tile(tf.range(b), [views])
    ids = tf.tile(track_ids, [views])
    logits = tf.matmul(z, z, transpose_b=True) / temperature
    same_moment = tf.equal(moment[:, None], moment[None, :])
    same_track = tf.equal(ids[:, None], ids[None, :])
    eye = tf.eye(n, dtype=tf.bool)
    positive = tf.logical_and(same_moment, tf.logical_not(eye))
    masked = tf.logical_or(eye, tf.logical_and(same_track, tf.logical_not(same_moment)))
    logits = tf.where(masked, tf.constant(-1e9, logits.dtype), logits)
    log_prob = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)
    pos = tf.cast(positive, log_prob.dtype)
    per_row = -tf.reduce_sum(log_prob * pos, axis=1) / tf.reduce_sum(pos, axis=1)
    return tf.reduce_mean(per_row)
