"""Vector index backends: add, search, save, load and remove round-trip alike.

Seeded random unit vectors with known nearest neighbours; no network (Qdrant
runs in embedded local mode in a temporary folder).
"""
from __future__ import annotations

import numpy as np
import pytest

from audiocopy.config import IndexParams
from audiocopy.engines.fingerprint.index import base as index_base
from audiocopy.engines.fingerprint.index.base import pack_ids, unpack_ids
from audiocopy.engines.fingerprint.index.numpy_index import NumpyIndex
from audiocopy.engines.fingerprint.index.open import create_index, load_index
from audiocopy.errors import ConfigError, ModelError, ParamsMismatch

DIM = 16


def _unit(rng, n, dim=DIM):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _tracks(seed=0, n_tracks=4, per_track=50):
    rng = np.random.default_rng(seed)
    return {key: (_unit(rng, per_track), np.arange(per_track) * 8) for key in range(1, n_tracks + 1)}


def _backends():
    out = [pytest.param("numpy", id="numpy")]
    out.append(pytest.param("faiss", id="faiss", marks=pytest.mark.skipif(
        not index_base.faiss_available(), reason="faiss-cpu is not installed (pip install faiss-cpu)")))
    import importlib.util

    qdrant_ok = importlib.util.find_spec("qdrant_client") is not None
    out.append(pytest.param("qdrant", id="qdrant", marks=pytest.mark.skipif(
        not qdrant_ok, reason="qdrant-client is not installed (pip install qdrant-client)")))
    return out


def _path(tmp_path, backend):
    return tmp_path / ("index.json" if backend == "qdrant" else "index.npz")


def test_ids_pack_and_unpack():
    ids = pack_ids(7, np.array([0, 8, 2**31]))
    tracks, pos = unpack_ids(np.append(ids, -1))
    assert tracks.tolist() == [7, 7, 7, -1] and pos.tolist() == [0, 8, 2**31, -1]
    with pytest.raises(ValueError):
        pack_ids(-1, np.array([0]))


@pytest.mark.parametrize("backend", _backends())
def test_round_trip(backend, tmp_path):
    params = IndexParams(backend=backend)
    data = _tracks()
    index = create_index(DIM, params, qdrant_path=tmp_path / "qdrant")
    for key, (vectors, positions) in data.items():
        index.add(key, vectors, positions)
    assert len(index) == 200 and index.counts() == {k: 50 for k in data}

    # A vector's own nearest neighbour is itself, with similarity 1.
    vectors, positions = data[3]
    sims, tracks, pos = index.search(vectors[:5], k=3)
    assert sims.shape == tracks.shape == pos.shape == (5, 3)
    assert (tracks[:, 0] == 3).all() and (pos[:, 0] == positions[:5]).all()
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-4)
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # best first

    index.save(_path(tmp_path, backend), extra={"encoder": "abc"})
    index.close()
    loaded, extra = load_index(_path(tmp_path, backend), dim=DIM, params=params, qdrant_path=tmp_path / "qdrant")
    assert extra["encoder"] == "abc" and len(loaded) == 200 and loaded.counts() == {k: 50 for k in data}
    sims2, tracks2, pos2 = loaded.search(vectors[:5], k=3)
    assert (tracks2 == tracks).all() and (pos2 == pos).all()

    assert loaded.remove(3) == 50
    assert len(loaded) == 150 and 3 not in loaded.counts()
    _, tracks3, _ = loaded.search(vectors[:5], k=10)
    assert not (tracks3 == 3).any()
    loaded.close()


@pytest.mark.parametrize("backend", _backends())
def test_fewer_vectors_than_k_pad_with_minus_one(backend, tmp_path):
    index = create_index(DIM, IndexParams(backend=backend), qdrant_path=tmp_path / "q")
    rng = np.random.default_rng(1)
    index.add(1, _unit(rng, 3), np.arange(3))
    sims, tracks, pos = index.search(_unit(rng, 2), k=5)
    assert (tracks[:, :3] == 1).all() and (tracks[:, 3:] == -1).all() and (pos[:, 3:] == -1).all()
    index.close()


def test_adding_a_track_twice_is_refused():
    index = create_index(DIM, IndexParams(backend="numpy"))
    rng = np.random.default_rng(2)
    index.add(1, _unit(rng, 3), np.arange(3))
    with pytest.raises(ValueError, match="already"):
        index.add(1, _unit(rng, 3), np.arange(3))


@pytest.mark.skipif(not index_base.faiss_available(), reason="faiss-cpu is not installed (pip install faiss-cpu)")
def test_faiss_switches_to_ivfpq_past_the_flat_limit_and_still_finds_neighbours(tmp_path):
    params = IndexParams(backend="faiss", flat_max_vectors=2000, pq_bytes=4, nlist=16, nprobe=16)
    data = _tracks(seed=3, n_tracks=5, per_track=600)
    index = create_index(DIM, params)
    for key, (v, p) in list(data.items())[:3]:
        index.add(key, v, p)
    assert index.structure == "flat" and not index.wants_rebuild()
    for key, (v, p) in list(data.items())[3:]:
        index.add(key, v, p)
    assert index.wants_rebuild()
    index.rebuild([(k, v, p) for k, (v, p) in data.items()])
    assert index.structure.startswith("IVF16,PQ4") and len(index) == 3000
    # Queries near stored vectors find their track (PQ is approximate, so 80 % suffices here).
    rng = np.random.default_rng(4)
    v, p = data[5]
    noisy = v[:100] + 0.05 * rng.standard_normal(v[:100].shape).astype(np.float32)
    _, tracks, _ = index.search(noisy / np.linalg.norm(noisy, axis=1, keepdims=True), k=1)
    assert (tracks[:, 0] == 5).mean() > 0.8
    index.save(tmp_path / "ivf.npz")
    loaded, _ = load_index(tmp_path / "ivf.npz", dim=DIM)
    assert loaded.structure == index.structure and len(loaded) == 3000
    assert loaded.remove(5) == 600 and len(loaded) == 2400


def test_load_refuses_other_dimension_and_corrupt_files(tmp_path):
    index = create_index(DIM, IndexParams(backend="numpy"))
    index.add(1, _unit(np.random.default_rng(5), 4), np.arange(4))
    index.save(tmp_path / "i.npz")
    with pytest.raises(ParamsMismatch, match="16-dim"):
        load_index(tmp_path / "i.npz", dim=32)
    (tmp_path / "bad.npz").write_bytes(b"not an index")
    with pytest.raises(ModelError):
        load_index(tmp_path / "bad.npz", dim=DIM)
    with pytest.raises(ModelError, match="not found"):
        load_index(tmp_path / "missing.npz", dim=DIM)


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown index backend"):
        create_index(DIM, IndexParams(backend="annoy"))


def test_auto_falls_back_to_numpy_without_faiss(monkeypatch):
    monkeypatch.setattr(index_base, "faiss_available", lambda: False)
    assert index_base.resolve_backend(IndexParams(backend="auto")) == "numpy"
    assert isinstance(create_index(DIM, IndexParams()), NumpyIndex)


def test_an_error_chain_that_loops_back_on_itself_is_classified_in_finite_time():
    # pymilvus re-raises inside its own handlers: __context__ can lead back to an exception already seen
    # (a stuck server made the classification loop forever before).
    import threading
    from types import SimpleNamespace

    from audiocopy.engines.fingerprint.index.milvus_link import is_transient

    class RpcError(Exception):
        def code(self):
            return SimpleNamespace(name="UNAVAILABLE")

    a, b = RpcError("stuck"), RuntimeError("wrapper")
    a.__context__, b.__context__ = b, a
    answer = []
    worker = threading.Thread(target=lambda: answer.append(is_transient(b)), daemon=True)
    worker.start()
    worker.join(5)
    assert answer == [True]


def _clustered(seed, n_tracks, per_track):
    """Tracks whose vectors are noisy copies of a few track-specific centres: realistic list sizes for IVF."""
    rng = np.random.default_rng(seed)
    data = {}
    for key in range(1, n_tracks + 1):
        centres = _unit(rng, 8)
        v = centres[rng.integers(0, 8, per_track)] + 0.3 * rng.standard_normal((per_track, DIM)).astype(np.float32)
        data[key] = (v / np.linalg.norm(v, axis=1, keepdims=True), np.arange(per_track) * 8)
    return data


@pytest.mark.skipif(not index_base.faiss_available(), reason="faiss-cpu is not installed (pip install faiss-cpu)")
def test_faiss_fastscan_threshold_selects_the_ivf_type():
    from audiocopy.engines.fingerprint.index.faiss_index import FaissIndex, uses_fastscan

    params = IndexParams(backend="faiss", flat_max_vectors=2000, pq_bytes=4, nlist=16, fastscan_min_vectors=5000)
    assert not uses_fastscan(params, 4999) and uses_fastscan(params, 5000)
    assert uses_fastscan(IndexParams(fastscan_min_vectors=0), 1)
    sample = _unit(np.random.default_rng(0), 1000)
    below, at = FaissIndex(DIM, params), FaissIndex(DIM, params)
    below.start_ivfpq(sample, 4999)
    at.start_ivfpq(sample, 5000)
    assert type(below._index).__name__ == "IndexIVFPQ" and below.structure == "IVF16,PQ4"
    assert type(at._index).__name__ == "IndexIVFPQFastScan" and at.structure == "IVF16,PQ8x4fs"
    # The default keeps the catalogues measured at 1,000 tracks (~0.5 M vectors) on 8-bit IVF-PQ.
    assert not uses_fastscan(IndexParams(), 500_000)
    # FastScan's 2 x pq_bytes sub-quantisers must divide the dimension too (16 / (2 * 16) does not).
    with pytest.raises(ConfigError, match="sub-quantisers"):
        FaissIndex(DIM, IndexParams(pq_bytes=16, nlist=16, fastscan_min_vectors=0)).start_ivfpq(sample, 5000)


@pytest.mark.skipif(not index_base.faiss_available(), reason="faiss-cpu is not installed (pip install faiss-cpu)")
def test_faiss_fastscan_finds_planted_neighbours_and_round_trips(tmp_path):
    params = IndexParams(backend="faiss", flat_max_vectors=2000, pq_bytes=4, nlist=16, nprobe=16,
                         fastscan_min_vectors=3000)
    data = _clustered(seed=5, n_tracks=6, per_track=600)
    index = create_index(DIM, params)
    index.rebuild([(k, v, p) for k, (v, p) in data.items()])
    assert index.structure == "IVF16,PQ8x4fs" and len(index) == 3600
    assert type(index._index).__name__ == "IndexIVFPQFastScan"
    # Planted neighbours: slightly perturbed stored vectors of track 4 must come back as track 4, mostly at
    # the very position (4-bit PQ is coarser than 8-bit, so 90 % / 60 % rather than all).
    rng = np.random.default_rng(6)
    v, p = data[4]
    noisy = v[:200] + 0.02 * rng.standard_normal(v[:200].shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    sims, tracks, pos = index.search(noisy, k=5)
    assert (tracks[:, 0] == 4).mean() > 0.9 and ((tracks == 4) & (pos == p[:200, None])).any(axis=1).mean() > 0.6
    assert (np.diff(sims, axis=1) <= 1e-5).all()
    index.save(tmp_path / "fs.npz")
    loaded, _ = load_index(tmp_path / "fs.npz", dim=DIM, params=params)
    assert type(loaded._index).__name__ == "IndexIVFPQFastScan" and loaded.structure == index.structure
    assert loaded._index.nprobe == 16 and loaded.memory_bytes() == index.memory_bytes()
    _, tracks2, pos2 = loaded.search(noisy, k=5)
    assert (tracks2 == tracks).all() and (pos2 == pos).all()
    assert loaded.remove(4) == 600 and len(loaded) == 3000
    _, tracks3, _ = loaded.search(noisy, k=5)
    assert not (tracks3 == 4).any()
    # add_batch into the trained FastScan index: the removed vectors, re-added under key 9, are found again.
    loaded.add_batch([(9, v, p)])
    _, tracks4, _ = loaded.search(noisy, k=1)
    assert (tracks4[:, 0] == 9).mean() > 0.9 and loaded.counts()[9] == 600
