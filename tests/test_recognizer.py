"""End to end on the tiny catalogue: enrol, identify, explicit no-match."""
from __future__ import annotations

import numpy as np
from synth import pattern

from audiocopy.decision.recognizer import Recognizer
from audiocopy.signal.audio import load_audio


def test_identifies_each_catalog_track(tiny_db, tiny_corpus):
    rec = Recognizer.open(tiny_db)
    assert sorted(rec.track_ids) == ["chirps", "chord", "pulses"]
    for kind in rec.track_ids:
        signal = load_audio(tiny_corpus / "licensed" / f"{kind}.wav", params=rec.audio)
        start = 3 * rec.audio.sample_rate  # a fragment from the middle, 2.5 s long
        det = rec.identify(signal[start:start + rec.audio.window_samples])
        assert det.candidates[0].track == kind
        assert det.track == kind and det.score > 0
        assert det.offset_s == 0.0


def test_longer_input_reports_offset_of_best_window(tiny_db):
    rec = Recognizer.open(tiny_db)
    sr = rec.audio.sample_rate
    silence = np.zeros(3 * sr, dtype=np.float32)
    chirps = pattern("chirps", 4, sr)
    det = rec.identify(np.concatenate([silence, chirps]))
    assert det.track == "chirps"
    # The chirps start at 3.0 s: windows starting at or before 0.5 s hold only
    # silence, so the best window must start later.
    assert 0.5 < det.offset_s <= 3.0 + 4 - rec.audio.window_seconds + 1e-6


def test_silence_is_an_explicit_no_match(tiny_db):
    rec = Recognizer.open(tiny_db)
    det = rec.detect_windows(np.zeros((1, rec.audio.window_samples), dtype=np.float32))[0]
    assert det.track is None
    assert det.score <= 0
    assert len(det.candidates) == 3


def test_scores_are_ranked_and_margins(tiny_db):
    rec = Recognizer.open(tiny_db)
    sr = rec.audio.sample_rate
    windows = np.stack([pattern(k, 2.5, sr) for k in ("pulses", "chord")])
    dets = rec.detect_windows(windows, starts_s=np.array([0.0, 0.5]))
    assert [d.track for d in dets] == ["pulses", "chord"]
    assert [d.offset_s for d in dets] == [0.0, 0.5]
    for d in dets:
        scores = [c.score for c in d.candidates]
        assert scores == sorted(scores, reverse=True)
