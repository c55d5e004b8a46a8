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
