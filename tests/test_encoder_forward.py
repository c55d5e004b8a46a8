"""The encoder's array-module forward pass (``audiocopy.encoder.forward``) against Keras.

Known answers come from the Keras model itself (``build_encoder`` with the
same weights, run with ``training=False``): the shipped weights, and random
weights with non-trivial batch-normalisation statistics on another
architecture and odd input sizes, so a folding or a padding mistake cannot
hide behind the trained weights' particular values (with the identity BN
statistics of a fresh model, folding errors vanish; with even sizes only,
"pad before" is never exercised).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import audiocopy
from audiocopy.encoder import forward
from audiocopy.encoder import weights as weights_module
from audiocopy.encoder.forward import embed
from audiocopy.encoder.weights import EncoderWeights, prepare_weights, same_padding, weight_layout
from audiocopy.errors import ParamsMismatch

SHIPPED = Path(audiocopy.__file__).resolve().parent / "weights" / "fingerprint_encoder.json"
TOL = 1e-4


def _build_encoder(*args, **kwargs):
    try:
        from audiocopy.training.models import build_encoder
    except ImportError:  # the package layout before the restructuring
        from audiocopy.models import build_encoder
    return build_encoder(*args, **kwargs)


def _keras_embed(arch: dict, arrays: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    model = _build_encoder((arch["frames"], arch["bands"]), widths=tuple(arch["widths"]),
                           hidden_dim=arch["hidden_dim"], embedding_dim=arch["embedding_dim"])
    model.set_weights(arrays)
    return np.asarray(model(x, training=False))


def _subwindows(n: int, frames: int, bands: int, seed: int) -> np.ndarray:
    """Standardised sub-windows (zero mean, unit variance each), like the encoder's real input."""
    x = np.random.default_rng(seed).standard_normal((n, frames, bands)) * 2.0 + 0.5
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)
    return x.astype(np.float32)


def _random_arrays(arch: dict, seed: int) -> list[np.ndarray]:
    """Random weights for every array of the layout; BN statistics far from identity."""
    rng = np.random.default_rng(seed)
    arrays = []
    for name, shape in weight_layout(**arch):
        if name.endswith("gamma"):
            a = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("moving_variance"):
            a = rng.uniform(0.05, 3.0, shape)
        elif name.endswith(("beta", "moving_mean", "bias")):
            a = rng.normal(0.0, 0.5, shape)
        else:  # kernels, scaled so that activations stay O(1) through the stack
            fan_in = int(np.prod(shape[:-1])) if "depthwise" not in name else 9
            a = rng.normal(0.0, 1.5 / np.sqrt(fan_in), shape)
        arrays.append(a.astype(np.float32))
    return arrays


class _ArrayModuleAlias:
    """NumPy under another identity: runs the code path written for CuPy (shifted slices, fresh scratch)."""

    def __getattr__(self, name):
        return getattr(np, name)


@pytest.fixture(scope="module")
def shipped():
    record = json.loads(SHIPPED.read_text())
    with np.load(SHIPPED.with_name(record["weights_file"])) as npz:
        arrays = [npz[f"w{i:03d}"] for i in range(len(npz.files))]
    return record["encoder"], arrays


ODD = dict(widths=(8, 16, 24), hidden_dim=40, embedding_dim=12, frames=31, bands=70)


@pytest.fixture(scope="module")
def odd():
    return ODD, _random_arrays(ODD, seed=7)


def test_same_padding_matches_tensorflow_rule():
    assert same_padding(72, 2) == (36, 0, 1)  # even input, stride 2: the extra zero goes after
    assert same_padding(30, 1) == (30, 1, 1)
    assert same_padding(35, 2) == (18, 1, 1)
    assert same_padding(5, 2) == (3, 1, 1)
    assert same_padding(4, 2) == (2, 0, 1)
    assert same_padding(1, 2) == (1, 1, 1)


def test_layout_matches_the_shipped_record(shipped):
    arch, arrays = shipped
    record = json.loads(SHIPPED.read_text())
    expected = [(w["name"], tuple(w["shape"])) for w in record["weights"]]
    assert weight_layout(**arch) == expected
    assert [a.shape for a in arrays] == [shape for _, shape in expected]


def test_shipped_weights_match_keras(shipped):
    arch, arrays = shipped
    x = _subwindows(45, arch["frames"], arch["bands"], seed=1)
    want = _keras_embed(arch, arrays, x)
    w = prepare_weights(arrays, **arch)
    got = embed(x, w)
    assert got.dtype == np.float32 and got.shape == (45, arch["embedding_dim"])
    assert np.abs(got - want).max() <= TOL
    # other chunks (with a short tail chunk), thread counts and head blocks give the same vectors
    np.testing.assert_allclose(embed(x, w, chunk=16, threads=2), got, atol=1e-6)
    np.testing.assert_allclose(embed(x, w, chunk=45, threads=1), got, atol=1e-6)
    np.testing.assert_allclose(embed(x[:7], w), got[:7], atol=1e-6)


def test_products_cut_into_column_blocks_cover_every_column(shipped, monkeypatch):
    arch, arrays = shipped
    w = prepare_weights(arrays, **arch)
    x = _subwindows(23, arch["frames"], arch["bands"], seed=11)
    want = embed(x, w)
    monkeypatch.setattr(forward, "SERIAL_PRODUCT", 40_000)  # blocks of 2-3 columns, a short last one
    np.testing.assert_allclose(embed(x, w, chunk=7, threads=2), want, atol=1e-6)


def test_random_weights_other_widths_and_odd_sizes_match_keras(odd):
    arch, arrays = odd
    x = _subwindows(20, arch["frames"], arch["bands"], seed=2)
    want = _keras_embed(arch, arrays, x)
    got = embed(x, prepare_weights(arrays, **arch), chunk=8)
    assert np.abs(got - want).max() <= TOL
    assert np.std(want, axis=0).mean() > 0.05  # the check is not vacuous: inputs embed differently


def test_two_blocks_and_tiny_input_match_keras():
    # Sizes 1..3 pad on both sides or not at all; two blocks is the smallest encoder.
    arch = dict(widths=(4, 6), hidden_dim=8, embedding_dim=5, frames=3, bands=5)
    arrays = _random_arrays(arch, seed=3)
    x = _subwindows(6, arch["frames"], arch["bands"], seed=4)
    assert np.abs(embed(x, prepare_weights(arrays, **arch)) - _keras_embed(arch, arrays, x)).max() <= TOL


def test_outputs_are_unit_vectors_and_empty_input_is_empty(shipped):
    arch, arrays = shipped
    w = prepare_weights(arrays, **arch)
    assert isinstance(w, EncoderWeights) and w.dim == arch["embedding_dim"]
    got = embed(_subwindows(12, arch["frames"], arch["bands"], seed=5), w)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    empty = embed(np.zeros((0, arch["frames"], arch["bands"]), np.float32), w)
    assert empty.shape == (0, arch["embedding_dim"]) and empty.dtype == np.float32
    with pytest.raises(ValueError, match="sub-windows"):
        embed(np.zeros((2, arch["frames"] + 1, arch["bands"]), np.float32), w)


def test_reused_scratch_across_batch_sizes(odd):
    # Work buffers live on between calls; a ring left dirty by another batch
    # size would change the border cells.
    arch, arrays = odd
    w = prepare_weights(arrays, **arch)
    x = _subwindows(9, arch["frames"], arch["bands"], seed=6)
    first = embed(x, w)
    embed(_subwindows(3, arch["frames"], arch["bands"], seed=8) * 50, w)
    embed(_subwindows(30, arch["frames"], arch["bands"], seed=9) * 50, w)
    np.testing.assert_array_equal(embed(x, w), first)


def test_wrong_shape_raises_params_mismatch(shipped):
    arch, arrays = shipped
    bad = list(arrays)
    bad[6] = bad[6][:, :, :, :-1]  # sep1/pointwise_kernel with one output channel too few
    with pytest.raises(ParamsMismatch, match="sep1/pointwise_kernel"):
        prepare_weights(bad, **arch)
    with pytest.raises(ParamsMismatch, match="hidden/kernel"):  # weights of a longer sub-window
        prepare_weights(arrays, **{**arch, "frames": arch["frames"] + 8})
    with pytest.raises(ParamsMismatch, match="widths"):
        prepare_weights(arrays, **{**arch, "widths": (16,)})


def test_missing_or_extra_arrays_raise_params_mismatch(shipped):
    arch, arrays = shipped
    with pytest.raises(ParamsMismatch, match="embedding/bias"):
        prepare_weights(arrays[:-1], **arch)
    with pytest.raises(ParamsMismatch, match="needs"):
        prepare_weights([*arrays, arrays[-1]], **arch)
    npz_like = {f"w{i:03d}": a for i, a in enumerate(arrays)}
    prepare_weights(npz_like, **arch)  # the mapping form is accepted
    del npz_like["w010"]
    with pytest.raises(ParamsMismatch, match=r"w010 \(bn1/moving_variance\)"):
        prepare_weights(npz_like, **arch)
    corrupt = list(arrays)
    corrupt[1] = np.full_like(arrays[1], np.nan)
    with pytest.raises(ParamsMismatch, match="corrupt"):
        prepare_weights(corrupt, **arch)


def test_gpu_code_path_matches_the_cpu_path_on_numpy(shipped, odd):
    # The CuPy branch cannot run without a GPU, but its array code is plain
    # NumPy-compatible; driving it through an alias keeps it tested everywhere.
    alias = _ArrayModuleAlias()
    for arch, arrays in (shipped, odd):
        x = _subwindows(13, arch["frames"], arch["bands"], seed=10)
        want = embed(x, prepare_weights(arrays, **arch))
        got = embed(x, prepare_weights(arrays, **arch, xp=alias), xp=alias, chunk=5)
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_weights_are_float32_on_the_module(shipped):
    arch, arrays = shipped
    w = prepare_weights([a.astype(np.float64) for a in arrays], **arch)
    assert all(a.dtype == np.float32 for a in (w.conv0, *w.depthwise, *w.pointwise, w.hidden, w.embedding))
    assert w.conv0.shape == (10, arch["widths"][0])  # 9 taps and the folded bias
    assert weights_module.BN_EPSILON == 1e-3


def test_a_thread_that_asked_for_it_embeds_every_chunk_itself(odd, monkeypatch):
    """The server's compute workers already run in parallel: their passes must not fan out to helper threads."""
    import threading

    arch, arrays = odd
    w = prepare_weights(arrays, **arch)
    x = _subwindows(30, arch["frames"], arch["bands"], seed=4)  # 4 chunks of 8: two helper threads by default
    expected = embed(x, w, chunk=8, threads=1)
    fanned_out, got = [], {}
    real_pool = forward._pool
    monkeypatch.setattr(forward, "CPU_THREADS", 2)
    monkeypatch.setattr(forward.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(forward, "_pool", lambda workers: fanned_out.append(workers) or real_pool(workers))

    def worker(name, serial):
        if serial:
            forward.embed_in_calling_thread()
        got[name] = embed(x, w, chunk=8)

    for name, serial in (("serial", True), ("default", False)):
        t = threading.Thread(target=worker, args=(name, serial))
        t.start()
        t.join()
    assert fanned_out == [2, 2]  # only the default thread handed chunks to the pool (one lookup per chunk group)
    np.testing.assert_array_equal(got["serial"], expected)
    np.testing.assert_allclose(got["default"], expected, atol=1e-6)
