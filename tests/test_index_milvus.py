"""The Milvus index backend against a real Milvus server (Milvus Lite's ``milvus-server``).

Marked ``milvus``, outside the default run; the README's command is
``bash tools/setup_env.sh test,milvus && .venv/bin/python -m pytest -m milvus``.
The ``milvus`` session fixture (``milvus_server.py``, registered in
``conftest.py``) starts ``milvus-server`` on a free loopback port with its
data in a temporary folder, waits (bounded) until it answers, and always
stops it and deletes the folder. One server at a time: Milvus Lite's
embedded etcd always takes port 2380, so a second one on the same machine
cannot start; the restart test stops and restarts the shared one. Without
the ``milvus`` extra every test here is skipped, saying so; a server that
does not start fails them. Seeded random unit vectors and synthetic melodies, as in
``test_index.py`` and ``test_fingerprint.py``, whose backend checks run here
unchanged on a Milvus collection.
"""
from __future__ import annotations

import functools
import json
import re
import socket
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from milvus_server import free_port
from synth import melody

from audiocopy.config import IndexParams

pytestmark = pytest.mark.milvus

DIM = 16


def _params(uri: str, **changes) -> IndexParams:
    return IndexParams(backend="milvus", milvus_uri=uri, milvus_collection=f"t_{uuid.uuid4().hex[:12]}",
                       **changes)


def _unit(rng, n, dim=DIM):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --------------------------------------------------------------------------
# the checks every backend passes (tests/test_index.py)


@pytest.fixture
def generic(milvus_server, monkeypatch):
    """``test_index`` pointed at the server: its IndexParams carry the URI and a fresh collection."""
    import test_index

    monkeypatch.setattr(test_index, "IndexParams", functools.partial(
        IndexParams, milvus_uri=milvus_server, milvus_collection=f"t_{uuid.uuid4().hex[:12]}"))
    monkeypatch.setattr(test_index, "_path", lambda tmp_path, backend: tmp_path / "index.json")  # the sidecar
    return test_index


def test_round_trip_like_every_backend(generic, tmp_path):
    generic.test_round_trip("milvus", tmp_path)


def test_fewer_vectors_than_k_pad_with_minus_one(generic, tmp_path):
    generic.test_fewer_vectors_than_k_pad_with_minus_one("milvus", tmp_path)


def test_a_missing_collection_is_a_model_error_and_a_wrong_dimension_a_mismatch(milvus_server, tmp_path):
    from audiocopy.engines.fingerprint.index.open import create_index, load_index
    from audiocopy.errors import ModelError, ParamsMismatch

    params = _params(milvus_server)
    index = create_index(DIM, params)
    index.add(1, _unit(np.random.default_rng(0), 4), np.arange(4))
    index.save(tmp_path / "index.json")
    index.close()
    with pytest.raises(ParamsMismatch, match="16-dim"):
        create_index(DIM * 2, params)
    other = json.loads((tmp_path / "index.json").read_text())
    other["params"]["milvus_collection"] = "never_made"
    (tmp_path / "gone.json").write_text(json.dumps(other))
    with pytest.raises(ModelError, match="never_made"):
        load_index(tmp_path / "gone.json", dim=DIM)


# --------------------------------------------------------------------------
# index types by catalogue size


def test_index_type_switches_by_size_and_hnsw_on_request(milvus_server):
    from audiocopy.engines.fingerprint.index.open import create_index

    params = _params(milvus_server, flat_max_vectors=2400, pq_bytes=4, nlist=16, nprobe=16)
    rng = np.random.default_rng(3)
    data = {key: (_unit(rng, 600), np.arange(600) * 8) for key in range(1, 6)}
    index = create_index(DIM, params)
    for key in (1, 2, 3):
        index.add(key, *data[key])
    assert index.structure == "IVF_FLAT(nlist=16)" and not index.wants_rebuild()
    for key in (4, 5):
        index.add(key, *data[key])
    assert index.wants_rebuild()
    index.rebuild()
    assert index.structure == "IVF_PQ(m=4,nbits=8,nlist=16)" and len(index) == 3000
    assert index.server_index()["index_type"] == "IVF_PQ"
    # Queries near stored vectors find their track (PQ is approximate: 80 %, as for faiss).
    v = data[5][0][:100]
    noisy = v + 0.05 * rng.standard_normal(v.shape).astype(np.float32)
    _, tracks, _ = index.search(noisy / np.linalg.norm(noisy, axis=1, keepdims=True), k=1)
    assert (tracks[:, 0] == 5).mean() > 0.8
    # Hysteresis: back to IVF_FLAT only at a quarter of the limit.
    for key in (2, 3):
        assert index.remove(key) == 600
    assert len(index) == 1800 and not index.wants_rebuild()
    for key in (4, 5):
        assert index.remove(key) == 600
    assert len(index) == 600 and index.wants_rebuild()
    index.rebuild()
    assert index.server_index()["index_type"] == "IVF_FLAT"
    index.close()

    hnsw = create_index(DIM, _params(milvus_server, milvus_index="HNSW", hnsw_m=8, hnsw_ef_construction=64))
    hnsw.add(1, *data[1])
    assert hnsw.structure == "HNSW(M=8,efConstruction=64)" and not hnsw.wants_rebuild()
    sims, tracks, pos = hnsw.search(data[1][0][:5], k=3)
    assert (tracks[:, 0] == 1).all() and (pos[:, 0] == data[1][1][:5]).all()
    np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-4)
    hnsw.close()


# --------------------------------------------------------------------------
# a database enrolled on Milvus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """catalog/ (4 melodies, 20 s), negatives/ (5 melodies, 10 s), as in test_fingerprint.py."""
    root = tmp_path_factory.mktemp("mvcorpus")
    for name, count, seconds, seed0 in (("catalog", 4, 20, 10), ("negatives", 5, 10, 100)):
        (root / name).mkdir()
        for i in range(count):
            sf.write(root / name / f"{name}{i}.wav", melody(seed0 + i, seconds, 22050), 22050)
    return root


def test_enrolled_with_index_milvus_identifies_like_faiss(milvus_server, corpus, tmp_path, monkeypatch, capsys):
    from audiocopy.cli import main
    from audiocopy.decision.recognizer import Recognizer
    from audiocopy.engines.fingerprint import db as fpdb
    from audiocopy.engines.fingerprint import engine as fp
    from audiocopy.signal.audio import load_audio

    monkeypatch.setenv("MILVUS_TOKEN", "root:Milvus")  # ignored by a server without authentication
    dbs = {}
    for kind, extra in (("faiss", []), ("milvus", ["--milvus-uri", milvus_server])):
        dbs[kind] = tmp_path / kind
        assert main(["-q", "enroll", "--db", str(dbs[kind]), "--negatives", str(corpus / "negatives"),
                     "--index", kind, *extra, str(corpus / "catalog")]) == 0
    config = json.loads((dbs["milvus"] / fpdb.CONFIG_FILE).read_text())["index"]
    assert config["milvus_uri"] == milvus_server and config["milvus_collection"].startswith("audiocopy_")
    assert json.loads((dbs["milvus"] / "index.json").read_text())["backend"] == "milvus"
    assert not any("root:Milvus" in p.read_text(errors="replace") for p in dbs["milvus"].rglob("*.json"))

    # Windows from four catalogue tracks and one negative, cut at known offsets.
    files = [(corpus / "catalog" / f"catalog{i}.wav", 3.0 + 4 * i) for i in range(4)]
    files.append((corpus / "negatives" / "negatives0.wav", 2.0))
    engines = {kind: fp.load(path) for kind, path in dbs.items()}
    window = engines["faiss"].audio.window_samples
    rate = engines["faiss"].audio.sample_rate
    windows = np.stack([load_audio(p, params=engines["faiss"].audio)[int(s * rate):int(s * rate) + window]
                        for p, s in files])
    dets = {kind: Recognizer(e).detect_windows(windows) for kind, e in engines.items()}
    assert type(engines["milvus"].index).__name__ == "MilvusIndex"
    for a, b in zip(dets["faiss"], dets["milvus"]):
        assert a.track == b.track and a.score == pytest.approx(b.score, abs=0.02)
    assert [d.track for d in dets["milvus"][:4]] == [f"catalog{i}" for i in range(4)]
    for e in engines.values():
        e.close()

    # identify finds the collection through the database's own metadata.
    capsys.readouterr()
    query = tmp_path / "query.wav"
    sf.write(query, windows[2], rate)
    assert main(["-q", "identify", "--db", str(dbs["milvus"]), "--json", str(query)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["match"] == "catalog2"


# --------------------------------------------------------------------------
# a server that is down, stuck, restarted


def _refused_quickly(uri: str, *, within_s: float, **kw):
    from audiocopy.engines.fingerprint.index.milvus_index import MilvusIndex, MilvusUnavailable
    from audiocopy.errors import ConfigError

    t0 = time.monotonic()
    with pytest.raises(MilvusUnavailable, match=re.escape(uri)) as exc:
        MilvusIndex(DIM, _params(uri, milvus_timeout_s=1, milvus_retries=2, milvus_backoff_s=0.2, **kw))
    assert isinstance(exc.value, ConfigError) and "running and reachable" in str(exc.value)
    assert time.monotonic() - t0 < within_s


def test_no_server_is_a_clear_error_within_seconds(milvus_root):
    _refused_quickly(f"http://127.0.0.1:{free_port()}", within_s=20)  # nothing listens: refused
    with socket.socket() as silent:  # accepts connections, never says a word: a stuck server
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        _refused_quickly(f"http://127.0.0.1:{silent.getsockname()[1]}", within_s=20)


def test_a_stuck_stopped_or_restarted_server(milvus, tmp_path):
    """Stuck: a clear error in seconds, and it recovers; stopped: the same; restarted: the vectors are there.

    Restarts the session's server, and leaves it answering queries again.
    """
    from audiocopy.engines.fingerprint.index.milvus_index import MilvusUnavailable
    from audiocopy.engines.fingerprint.index.open import create_index, load_index

    uri = milvus.uri
    params = _params(uri, milvus_timeout_s=2, milvus_retries=2, milvus_backoff_s=0.2)
    vectors = _unit(np.random.default_rng(7), 300)
    index = create_index(DIM, params)
    index.add(4, vectors, np.arange(300) * 8)
    index.save(tmp_path / "index.json", extra={"note": "kept"})
    milvus.freeze(True)
    try:
        t0 = time.monotonic()
        with pytest.raises(MilvusUnavailable, match="did not answer"):
            index.search(vectors[:3], k=2)
        assert time.monotonic() - t0 < 30
    finally:
        milvus.freeze(False)
    assert (index.search(vectors[:3], k=2)[1][:, 0] == 4).all()
    milvus.stop()
    t0 = time.monotonic()
    with pytest.raises(MilvusUnavailable, match=re.escape(uri)):
        index.search(vectors[:3], k=2)
    assert time.monotonic() - t0 < 30
    index.close()

    uri = milvus.start()  # same data folder; the proxy port may differ if ours is still in TIME_WAIT
    # A restarted server answers queries only once its old sessions expire (~20-40 s):
    # retries ride that out, and the database's own settings say where the server now is.
    patient = IndexParams(backend="milvus", milvus_uri=uri, milvus_timeout_s=10, milvus_retries=8)
    loaded, extra = load_index(tmp_path / "index.json", dim=DIM, params=patient)
    assert extra["note"] == "kept" and loaded.counts() == {4: 300} and len(loaded) == 300
    sims, tracks, pos = loaded.search(vectors[:5], k=1)
    assert (tracks[:, 0] == 4).all() and (pos[:, 0] == np.arange(5) * 8).all()
    loaded.close()
