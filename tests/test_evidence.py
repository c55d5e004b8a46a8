"""A play's evidence: time scale from its offset line, pitch from its spectrum, and the kind of edit.

Known answers by construction: a synthetic melody played 6 % fast is 1.06x
and +1.01 semitones ("speed"); time-stretched 6 % it is 1.06x and 0 ("tempo");
pitch-shifted one semitone it is 1.0x and +1 ("pitch").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth import melody

from audiocopy.config import AudioParams, CalibrationParams, FeatureParams
from audiocopy.decision.evidence import alteration, pitch_shift_semitones
from audiocopy.decision.files import analyse_signal
from audiocopy.decision.recognizer import Recognizer
from audiocopy.signal.audio import load_audio
from audiocopy.signal.features import track_band_db
from audiocopy.training import augment
from audiocopy.training.enroll_fingerprint import enroll_fingerprint

AUDIO, FEATURES = AudioParams(), FeatureParams()
SR = AUDIO.sample_rate


def _profile(x: np.ndarray) -> np.ndarray:
    return track_band_db(x, audio=AUDIO, features=FEATURES).mean(axis=0)


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    return melody(7, 30.0, SR)


@pytest.mark.parametrize("semitones", [-2.0, -1.0, 0.0, 1.0, 2.0])
def test_pitch_of_a_transposed_recording_is_measured_within_a_third_of_a_semitone(song, semitones):
    shifted = augment.pitch_shift(song, semitones, sample_rate=SR)
    got = pitch_shift_semitones(_profile(shifted), _profile(song), bins_per_octave=FEATURES.bins_per_octave)
    assert got == pytest.approx(semitones, abs=0.3)


def test_a_speed_change_moves_pitch_by_12_log2_of_the_factor_and_a_tempo_change_not_at_all(song):
    fast = augment.speed_change(song, 1.06, sample_rate=SR)
    stretched = augment.time_stretch(song, 1.06, sample_rate=SR)
    ref = _profile(song)
    assert pitch_shift_semitones(_profile(fast), ref, bins_per_octave=12) == pytest.approx(12 * np.log2(1.06),
                                                                                          abs=0.3)
    assert pitch_shift_semitones(_profile(stretched), ref, bins_per_octave=12) == pytest.approx(0.0, abs=0.3)


def test_pitch_survives_a_coloured_channel(song):
    # A tilted, band-limited channel (a small speaker and a phone mic) changes levels, not the harmonics' places.
    shifted = augment.bandpass(augment.pitch_shift(song, 1.0, sample_rate=SR), 300.0, 3400.0, sample_rate=SR)
    got = pitch_shift_semitones(_profile(shifted), _profile(song), bins_per_octave=12)
    assert got == pytest.approx(1.0, abs=0.3)


def test_unusable_spectra_give_no_pitch(song):
    ref = _profile(song)
    assert pitch_shift_semitones(np.full_like(ref, -20.0), ref, bins_per_octave=12) is None  # flat: nothing to align
    assert pitch_shift_semitones(ref[:10], ref, bins_per_octave=12) is None  # different axes
    broken = ref.copy()
    broken[3] = np.nan
    assert pitch_shift_semitones(broken, ref, bins_per_octave=12) is None


@pytest.mark.parametrize("scale, pitch, kind", [
    (1.0, 0.0, "none"), (1.005, 0.1, "none"), (1.06, 1.01, "speed"), (0.94, -1.07, "speed"),
    (1.06, 0.05, "tempo"), (1.0, 1.0, "pitch"), (1.06, -1.5, "speed+pitch"), (None, 1.0, "unknown"),
    (1.06, None, "unknown"),
])
def test_the_kind_of_alteration_follows_from_time_scale_and_pitch(scale, pitch, kind):
    assert alteration(scale, pitch) == kind


@pytest.fixture(scope="module")
def evidence_db(tmp_path_factory, song) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evidence")
    (root / "catalog").mkdir()
    (root / "negatives").mkdir()
    sf.write(root / "catalog" / "song.wav", song, SR)
    for i in range(3):
        sf.write(root / "catalog" / f"other{i}.wav", melody(40 + i, 30.0, SR), SR)
    for i in range(6):
        sf.write(root / "negatives" / f"neg{i}.wav", melody(200 + i, 15.0, SR), SR)
    db = root / "db"
    enroll_fingerprint(root / "catalog", db, negatives_dir=root / "negatives",
                       calibration=CalibrationParams(windows_per_track=12), progress=False)
    return db, root / "catalog" / "song.wav"


@pytest.mark.parametrize("edit, scale, pitch, kind", [
    ("speed", 1.06, 12 * np.log2(1.06), "speed"),
    ("tempo", 1.06, 0.0, "tempo"),
    ("pitch", 1.0, 1.0, "pitch"),
])
def test_a_play_reports_its_time_scale_pitch_and_kind_of_edit(evidence_db, edit, scale, pitch, kind):
    db, path = evidence_db
    song = load_audio(path, params=AUDIO)
    excerpt = song[int(4 * SR):int(26 * SR)]  # 22 s from 4 s into the track
    if edit == "speed":
        played = augment.speed_change(excerpt, scale, sample_rate=SR)
    elif edit == "tempo":
        played = augment.time_stretch(excerpt, scale, sample_rate=SR)
    else:
        played = augment.pitch_shift(excerpt, pitch, sample_rate=SR)
    result = analyse_signal(Recognizer.open(db), played)
    plays = [p for p in result.plays if p.track == "song"]
    assert len(plays) == 1
    play = plays[0]
    assert play.time_scale == pytest.approx(scale, abs=0.01)
    assert play.pitch_semitones == pytest.approx(pitch, abs=0.3)
    assert play.alteration == kind
    # Where in the track the play started: 4 s in, give or take a window's edge.
    assert play.track_start_s == pytest.approx(4.0 + play.start_s * scale, abs=1.5)


def test_now_playing_shows_the_kind_of_edit_while_the_play_runs(evidence_db):
    db, path = evidence_db
    excerpt = load_audio(path, params=AUDIO)[int(4 * SR):int(26 * SR)]
    recognizer = Recognizer.open(db)
    windows = analyse_signal(recognizer, augment.speed_change(excerpt, 1.06, sample_rate=SR)).windows
    decision = recognizer.stream_decision("live", wall_start=0.0)
    nows = [decision.update(w).now for w in windows]
    shown = [n for n in nows if n is not None and n.track == "song"]
    assert shown, "the play was never shown"
    last = shown[-1]  # measured on the play so far, before it closes
    assert last.time_scale == pytest.approx(1.06, abs=0.01)
    assert last.pitch_semitones == pytest.approx(12 * np.log2(1.06), abs=0.3)
    assert last.alteration == "speed" and last.to_json()["alteration"] == "speed"
