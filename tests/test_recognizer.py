"""End to end on the tiny catalogue: enrol, identify, explicit no-match."""
from __future__ import annotations

import numpy as np
import pytest
from synth import pattern

from audiocopy.decision.files import analyse_signal
from audiocopy.decision.recognizer import Recognizer
from audiocopy.signal.audio import load_audio


def test_identifies_each_catalog_track(tiny_db, tiny_corpus):
    rec = Recognizer.open(tiny_db)
    assert sorted(rec.track_ids) == ["chirps", "chord", "pulses"]
    for kind in rec.track_ids:
        signal = load_audio(tiny_corpus / "licensed" / f"{kind}.wav", params=rec.audio)
        start = 3 * rec.audio.sample_rate  # a fragment from the middle, 2.5 s long
        det = analyse_signal(rec, signal[start:start + rec.audio.window_samples]).answer
        assert det.candidates[0].track == kind
        assert det.track == kind and det.score > 0
        assert det.offset_s == 0.0


def test_longer_input_is_answered_by_its_play_where_the_music_starts(tiny_db):
    rec = Recognizer.open(tiny_db)
    sr = rec.audio.sample_rate
    silence = np.zeros(3 * sr, dtype=np.float32)
    chirps = pattern("chirps", 6, sr)
    result = analyse_signal(rec, np.concatenate([silence, chirps, silence]))
    assert result.answer.track == "chirps" and result.answer.score > 0
    plays = [p for p in result.plays if p.track == "chirps"]
    assert len(plays) == 1
    # The chirps start at 3.0 s and end at 9.0 s: the play says so within a second and a half.
    assert abs(plays[0].start_s - 3.0) <= 1.5 and abs(plays[0].end_s - 9.0) <= 1.5
    assert result.answer.offset_s == plays[0].start_s


def test_a_fragment_and_a_long_file_of_the_same_music_agree(tiny_db, tiny_corpus):
    rec = Recognizer.open(tiny_db)
    signal = load_audio(tiny_corpus / "licensed" / "pulses.wav", params=rec.audio)
    fragment = analyse_signal(rec, signal[:rec.audio.window_samples]).answer
    whole = analyse_signal(rec, signal).answer
    assert fragment.track == whole.track == "pulses"


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


def test_the_recognizer_hands_the_decision_its_engines_margin_unit(tiny_db):
    from types import SimpleNamespace

    from audiocopy.config import AudioParams, DecisionParams, FeatureParams

    p = DecisionParams()
    for name, unit in (("fingerprint", 1.0), ("cnnbin", p.cnnbin_margin_unit)):
        rec = Recognizer(SimpleNamespace(name=name, audio=AudioParams(), features=FeatureParams()), params=p)
        assert rec.margin_unit == unit and rec.params == p.in_margin_units(unit)
        assert rec.play_threshold == pytest.approx(unit * p.start_evidence)
        assert rec.stream_decision("s").params == rec.params
    # A database keeps the unit its play threshold was calibrated in (here: by this version, the engine's).
    rec = Recognizer.open(tiny_db)
    assert rec.engine.name == "cnnbin" and rec.margin_unit == p.cnnbin_margin_unit
    assert rec.params.support_margin == pytest.approx(p.cnnbin_margin_unit * p.support_margin)
