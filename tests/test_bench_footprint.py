"""The footprint benchmark's account of the server database (``tools/bench_footprint.py``).

The server-memory figures are only worth their target when the report says
what the server loaded: a synthetic fingerprint database of enrolled tracks
and ``copy of`` tracks (as ``tools/bench_fingerprint.py --steps server-db``
writes them) must be described with its real track, copy and vector counts,
and the section must carry those counts, not the name of the database.
"""
from __future__ import annotations

from pathlib import Path

import bench_footprint
import numpy as np
import pytest

from audiocopy.errors import AudiocopyError


def make_db(root: Path, rng, *, real: int, copies: int) -> tuple[Path, int]:
    """A fingerprint database of ``real`` enrolled tracks and ``copies`` copy tracks; returns (db, vectors)."""
    from audiocopy.config import AudioParams, FeatureParams
    from audiocopy.encoder.artifact import read_encoder_record
    from audiocopy.engines.fingerprint import db as fpdb
    from audiocopy.engines.fingerprint.index.open import create_index

    db = root / "db"
    config = fpdb.init_db(db, audio=AudioParams(), features=FeatureParams())
    dim = read_encoder_record(db / "encoder.json")["encoder"]["embedding_dim"]
    index, hop, total = create_index(dim, config.index), config.match.enrol_hop_frames, 0
    for key in range(real + copies):
        vectors = rng.normal(size=(int(rng.integers(5, 40)), dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        extra = {"source": f"copy of t{key % max(real, 1)}"} if key >= real else {"source": f"/corpus/t{key}.wav"}
        fpdb.save_track(db, f"t{key}", key, vectors, hop_frames=hop, encoder_sha256=config.encoder_sha256,
                        duration_s=10.0, extra=extra)
        index.add(key, vectors, np.arange(len(vectors), dtype=np.int64) * hop)
        total += len(vectors)
    fpdb.save_index(db, config, index)
    return db, total


def server_result(db_info: dict) -> dict:
    identify = {"runs": 3, "median_s": 0.4, "min_s": 0.3, "max_s": 0.5, "imported_frameworks": [], "answer": {}}
    server = {"tracks_db": "db", "db": db_info, "idle_rss_mib": 90.0, "rss_after_streams_mib": 190.0,
              "peak_rss_mib": 195.0, "streams": 8, "stream_seconds": 30.0, "windows": 456,
              "dropped_windows": 0}
    return {"date": "today", "machine": "m", "load": "l", "db": "db100", "identify": identify, "server": server}


def test_describe_db_counts_tracks_copies_and_vectors(tmp_path, rng):
    db, vectors = make_db(tmp_path, rng, real=4, copies=7)
    info = bench_footprint.describe_db(db)
    assert (info["tracks"], info["copies"], info["vectors"]) == (11, 7, vectors)
    assert info["path"] == str(db) and info["structure"]


def test_report_states_the_server_database(tmp_path, rng):
    db, _ = make_db(tmp_path, rng, real=3, copies=2)
    text = bench_footprint.report(server_result(bench_footprint.describe_db(db)), "cmd")
    assert "(5 tracks)" in text and "5 tracks: 3 enrolled corpus tracks plus 2 distorted copies" in text
    assert "| 190.0 MiB | <= 400 MiB |" in text and "456 windows answered, 0 dropped" in text


def test_report_of_a_database_without_copies_says_enrolled(tmp_path, rng):
    db, _ = make_db(tmp_path, rng, real=3, copies=0)
    text = bench_footprint.report(server_result(bench_footprint.describe_db(db)), "cmd")
    assert "3 tracks: all enrolled tracks" in text and "distorted" not in text


def test_describe_db_refuses_a_folder_without_a_database(tmp_path):
    with pytest.raises(AudiocopyError):
        bench_footprint.describe_db(tmp_path)
