"""The benchmark's query plan and silence spans (``tools/bench/queries.py``, ``corpus.py``); no corpus, no tools."""
from __future__ import annotations

import numpy as np
import pytest
from bench.common import BenchError
from bench.conditions import BY_NAME, DEFAULT
from bench.corpus import Track, audible_span
from bench.queries import EDGE_SECONDS, plan_queries


def corpus(n=8, seconds=40.0):
    return {f"t{i}": Track(f"t{i}", f"t{i}.wav", f"p{i % 3}", "/x", 22050, seconds) for i in range(n)}


SPLIT = {"catalog": ["t0", "t1"], "unseen": ["t2"], "wrong": ["t3", "t4", "t5"], "spare": ["t6", "t7"]}


def test_one_condition_per_file_and_shared_offsets():
    qs = plan_queries(SPLIT, corpus(), conditions=DEFAULT, k=2, seed=0)
    assert len(qs) == 3 * 2 * len(DEFAULT) and len({q.file for q in qs}) == len(qs)
    for track in ("t0", "t1", "t2"):
        for j in range(2):
            same = {q.offset_s for q in qs if q.track == track and q.fragment == j}
            assert len(same) == 1  # a paired design: every condition reads the same music
    assert all(q.other not in SPLIT["catalog"] for q in qs if q.other)
    assert all((q.expected is None) == (q.track == "t2") for q in qs)
    # The plan depends on the seed and nothing else.
    assert qs == plan_queries(SPLIT, corpus(), conditions=DEFAULT, k=2, seed=0)
    only_clean = plan_queries(SPLIT, corpus(), conditions=[BY_NAME["clean"]], k=2, seed=0)
    assert [q.offset_s for q in only_clean] == [q.offset_s for q in qs if q.condition == "clean"]


def test_offsets_stay_inside_the_audible_span():
    spans = {t: (0.0, 40.0) for t in corpus()}
    spans["t0"] = (0.0, 12.0)  # a render that ends in silence
    qs = plan_queries(SPLIT, corpus(), conditions=[BY_NAME["clean"]], k=3, seed=1, spans=spans)
    longest = 2.5 * 1.10
    assert all(EDGE_SECONDS <= q.offset_s <= 12.0 - EDGE_SECONDS - longest for q in qs if q.track == "t0")
    spans["t1"] = (0.0, 4.5)
    with pytest.raises(BenchError, match="t1 has 4.5 s of music"):
        plan_queries(SPLIT, corpus(), conditions=[BY_NAME["clean"]], k=1, seed=1, spans=spans)


def test_audible_span_ignores_trailing_zeros_not_quiet_music(tmp_path):
    import soundfile as sf

    rate = 8000
    t = np.arange(4 * rate) / rate
    quiet = (1e-4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # -80 dBFS, but music
    sf.write(tmp_path / "a.wav", np.concatenate([quiet, np.zeros(3 * rate, np.float32)]), rate)
    assert audible_span(str(tmp_path / "a.wav")) == (0.0, 4.0)
