"""NT-Xent, with other sub-windows of the same track left out of the denominator.

Place in the pipeline: the encoder's training objective (Chen et al. 2020, as
in Chang et al. 2021's neural audio fingerprint). A chorus repeated later in
a song is not a mistake to punish, so same-track pairs are masked rather
than used as negatives.
"""
from __future__ import annotations


def nt_xent(z, track_ids, temperature: float):
    """NT-Xent over 2B unit vectors: rows [0, B) anchors, [B, 2B) their positives.

    z: (2B, D) float32 tensor, L2-normalised. track_ids: (B,) int32; pairs of
    rows from the same track (other than the positive) are masked out of the
    denominator. Returns the mean loss (scalar tensor).
    """
    import tensorflow as tf

    n = tf.shape(z)[0]
    b = n // 2
    ids = tf.concat([track_ids, track_ids], 0)
    logits = tf.matmul(z, z, transpose_b=True) / temperature
    idx = tf.range(n)
    positive = tf.concat([idx[b:], idx[:b]], 0)
    same = tf.equal(ids[:, None], ids[None, :])
    is_pos = tf.equal(idx[None, :], positive[:, None])
    masked = tf.logical_and(same, tf.logical_not(is_pos))  # includes the diagonal
    logits = tf.where(masked, tf.constant(-1e9, logits.dtype), logits)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positive, logits=logits)
    return tf.reduce_mean(losses)
