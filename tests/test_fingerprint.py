"""The fingerprint engine: encoder, offset voting, enrolment, live updates, refusals.

Seeded synthetic melodies (tests/synth.py) with known offsets; the shipped
encoder (audiocopy/weights/) does the embedding. CPU only, no network.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth import melody, pattern, room_recording, sped_up

from audiocopy.config import AudioParams, CalibrationParams, EncoderParams, FeatureParams, MatchParams
from audiocopy.decision.recognizer import Recognizer
from audiocopy.encoder.artifact import SHIPPED_ENCODER, load_encoder, save_encoder
from audiocopy.encoder.subwindows import standardize
from audiocopy.engines import catalog
from audiocopy.engines.fingerprint import db as fpdb
from audiocopy.engines.fingerprint import engine as fp
from audiocopy.engines.fingerprint.match import local_density, query_starts, vote
from audiocopy.errors import ConfigError, ModelError, ParamsMismatch
from audiocopy.signal.features import log_spectrogram, track_band_db
from audiocopy.training.enroll_fingerprint import add_tracks, enroll_fingerprint, remove_tracks

AUDIO, FEATURES = AudioParams(), FeatureParams()
RATE = 22050
CALIB = CalibrationParams(windows_per_track=12)


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(SHIPPED_ENCODER, audio=AUDIO, features=FEATURES)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """catalog/ (4 melodies, 20 s), extra/ (1 more), negatives/ (5 melodies, 10 s)."""
    root = tmp_path_factory.mktemp("fpcorpus")
    for name, count, seconds, seed0 in (("catalog", 4, 20, 10), ("extra", 1, 20, 50), ("negatives", 5, 10, 100)):
        (root / name).mkdir()
        for i in range(count):
            sf.write(root / name / f"{name}{i}.wav", melody(seed0 + i, seconds, RATE), RATE)
    return root


@pytest.fixture(scope="module")
def db(corpus, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fpdb") / "db"
    enroll_fingerprint(corpus / "catalog", path, negatives_dir=corpus / "negatives", calibration=CALIB,
                       progress=False)
    return path


def _window(path: Path, start_s: float) -> np.ndarray:
    from audiocopy.signal.audio import load_audio

    signal = load_audio(path, params=AUDIO)
    lo = int(start_s * AUDIO.sample_rate)
    return signal[lo:lo + AUDIO.window_samples]


def _copy(db: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "db"
    shutil.copytree(db, dst)
    return dst


# --------------------------------------------------------------------------
# encoder


def test_embeddings_are_unit_vectors_with_the_documented_shape(encoder, rng):
    feats = rng.standard_normal((3, 75, 72)).astype(np.float32)
    starts = query_starts(75, frames=encoder.params.frames, params=MatchParams())
    assert starts.tolist() == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    emb = encoder.embed_windows(feats, starts)
    assert emb.shape == (3, 10, encoder.params.embedding_dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-5)
    track = encoder.embed_track(rng.standard_normal((300, 72)).astype(np.float32) * 10, hop_frames=8)
    assert track.shape == ((300 - 30) // 8 + 1, encoder.params.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(track, axis=-1), 1.0, atol=1e-5)


def test_identical_audio_maps_to_near_identical_vectors_and_unrelated_audio_does_not(encoder):
    a = melody(1, 3, AUDIO.sample_rate)[:AUDIO.window_samples]
    b = melody(2, 3, AUDIO.sample_rate)[:AUDIO.window_samples]
    starts = query_starts(75, frames=30, params=MatchParams())

    def embed(x):
        return encoder.embed_windows(log_spectrogram(x[None], audio=AUDIO, params=FEATURES), starts)[0]

    ea = embed(a)
    same = (ea * embed(a.copy())).sum(axis=1)
    louder = (ea * embed(0.3 * a)).sum(axis=1)  # volume is standardised away
    other = (ea * embed(b)).sum(axis=1)
    assert same.min() > 0.9999 and louder.min() > 0.999
    assert other.mean() < 0.6 and other.max() < same.min() - 0.2


def test_whole_track_levels_equal_the_window_features():
    """Enrolment's fast whole-track path sees what a query's features see."""
    signal = melody(3, 4, AUDIO.sample_rate)
    window = signal[8192:8192 + AUDIO.window_samples]  # starts on frame 16 of the whole signal
    ref = log_spectrogram(window[None], audio=AUDIO, params=FEATURES)[0]
    mine = standardize(track_band_db(window, audio=AUDIO, features=FEATURES), floor_db=FEATURES.floor_db)
    np.testing.assert_allclose(mine, ref, atol=1e-4)
    # and a sub-window cut from the whole track equals one cut from the window
    whole = track_band_db(signal, audio=AUDIO, features=FEATURES)
    np.testing.assert_allclose(standardize(whole[16 + 5:16 + 35], floor_db=80.0),
                               standardize(ref[5:35]), atol=1e-3)


# --------------------------------------------------------------------------
# offset voting


def _hits(starts, true_track, offset, scale, k, rng, n_tracks=5):
    """Search results where every sub-window's best hit is the true track at the true position."""
    s = len(starts)
    tracks = rng.integers(0, n_tracks, size=(1, s, k))
    positions = rng.integers(0, 3000, size=(1, s, k)) // 8 * 8
    sims = np.sort(rng.uniform(0.2, 0.6, size=(1, s, k)), axis=2)[:, :, ::-1]
    tracks[0, :, 0] = true_track
    positions[0, :, 0] = np.round((offset + scale * starts) / 8) * 8  # quantised like enrolment
    sims[0, :, 0] = 0.9
    return tracks, positions, sims


@pytest.mark.parametrize("scale", [0.9, 1.0, 1.1])
def test_vote_recovers_a_known_offset_within_the_time_scale_tolerance(scale, rng):
    params = MatchParams(density_weight=0.0)  # raw similarities: the score is the true hits' 0.9
    starts = query_starts(75, frames=30, params=params)
    tracks, positions, sims = _hits(starts, true_track=3, offset=1234, scale=scale, k=params.top_k, rng=rng)
    votes = vote(starts, tracks, positions, sims, params=params)
    best = np.argmax(votes.score)
    assert votes.track[best] == 3
    assert votes.score[best] > 0.85
    assert abs(votes.offset_frames[best] - 1234) <= 8 + 0.1 * 45
    others = votes.score[votes.track != 3]
    assert others.max() < 0.3  # chance hits do not line up


def test_vote_gives_little_to_hits_that_do_not_line_up(rng):
    params = MatchParams()
    starts = query_starts(75, frames=30, params=params)
    tracks = np.full((1, len(starts), params.top_k), -1)
    positions = np.zeros_like(tracks)
    sims = np.zeros(tracks.shape, dtype=np.float32)
    tracks[0, :, 0] = 2
    positions[0, :, 0] = rng.permutation(len(starts)) * 400  # right track, scattered offsets
    sims[0, :, 0] = 0.95
    votes = vote(starts, tracks, positions, sims, params=params)
    assert votes.track.tolist() == [2] and votes.score[0] < 0.2


def test_local_density_is_the_mean_of_each_sub_windows_best_valid_similarities():
    sims = np.array([[[0.9, 0.5, 0.4, 0.1], [0.7, 0.6, 0.0, 0.0], [0.3, 0.2, 0.1, 0.0]]], dtype=np.float32)
    valid = np.array([[[True, True, True, True], [True, True, False, False], [False] * 4]])
    # Best 3 of the first sub-window; the second has only two hits; the third none (silent).
    assert np.allclose(local_density(sims, valid, 3), [[0.6, 0.65, 0.0]])


def _crowded_and_lonely(starts, k):
    """Two windows of search results (module docstring of ``match``, "Local density").

    Window 0, unrelated music in a crowded region: every sub-window finds
    tracks 0-9 at 0.80-0.85, and track 7's hits happen to line up on one
    offset in 8 of 10 sub-windows. Window 1, a room recording of track 3:
    its true hits line up everywhere at only 0.62, far above its background
    of unrelated hits at 0.25-0.30.
    """
    s = len(starts)
    tracks = np.tile(np.arange(k) % 10, (2, s, 1))
    positions = np.tile(np.arange(k) * 1000, (2, s, 1)) + np.arange(s)[None, :, None] * 5000
    sims = np.empty((2, s, k), dtype=np.float32)
    sims[0] = np.linspace(0.85, 0.80, k)
    sims[1] = np.linspace(0.30, 0.25, k)
    for j in range(8):  # chance alignment of track 7 (column 7) in the crowded window
        positions[0, j, 7] = 4000 + starts[j]
    tracks[1, :, 0], positions[1, :, 0], sims[1, :, 0] = 3, 8000 + starts, 0.62
    return tracks, positions, sims


def test_the_local_density_lets_a_faint_true_match_outscore_chance_agreement_in_a_crowd():
    starts = query_starts(75, frames=30, params=MatchParams())
    tracks, positions, sims = _crowded_and_lonely(starts, MatchParams().top_k)

    def best(weight):
        v = vote(starts, tracks, positions, sims, params=MatchParams(density_weight=weight))
        return [float(v.score[v.window == w].max()) for w in (0, 1)], v

    (crowd, lonely), _ = best(0.0)
    assert crowd > lonely  # raw similarity: the chance alignment outscores the true match
    (crowd, lonely), votes = best(0.5)
    assert lonely > crowd + 0.1
    winner = votes.track[votes.window == 1][np.argmax(votes.score[votes.window == 1])]
    assert winner == 3


@pytest.mark.parametrize("bad", [{"density_weight": -0.1}, {"density_weight": 1.0}, {"density_k": 0},
                                 {"density_k": 21, "top_k": 20}])
def test_match_params_refuse_a_density_outside_its_range(bad):
    with pytest.raises(ConfigError, match="density"):
        MatchParams(**bad)


def test_a_database_enrolled_before_the_density_weight_keeps_its_scores(db, tmp_path):
    new = fpdb.read_config(db)
    assert new.match.density_weight == MatchParams().density_weight > 0
    old_db = tmp_path / "old"
    shutil.copytree(db, old_db)
    raw = json.loads((old_db / fpdb.CONFIG_FILE).read_text())
    del raw["match"]["density_weight"], raw["match"]["density_k"], raw["match"]["fpr_confidence"]
    (old_db / fpdb.CONFIG_FILE).write_text(json.dumps(raw))
    assert fpdb.read_config(old_db).match.density_weight == 0.0
    # Its threshold was the plain quantile: a recalibration (after adding a track) keeps that rule.
    assert fpdb.read_config(old_db).match.fpr_confidence == 0.0 < MatchParams().fpr_confidence
    raw["match"]["density_weight"] = 2.0
    (old_db / fpdb.CONFIG_FILE).write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="density_weight"):
        fpdb.read_config(old_db)


def test_update_vote_adopts_this_versions_vote_and_recalibrates_without_re_embedding(db, corpus, tmp_path, caplog):
    old_db = _copy(db, tmp_path)
    raw = json.loads((old_db / fpdb.CONFIG_FILE).read_text())
    # As enrolled before the local density and the bounded threshold.
    del raw["match"]["density_weight"], raw["match"]["density_k"], raw["match"]["fpr_confidence"]
    (old_db / fpdb.CONFIG_FILE).write_text(json.dumps(raw))
    info = json.loads((old_db / catalog.DB_FILE).read_text())
    info["calibration"]["threshold"] = 0.9  # a threshold of the old scores: it must not survive the update
    (old_db / catalog.DB_FILE).write_text(json.dumps(info))
    vectors = {p.name: p.read_bytes() for p in (old_db / catalog.TRACKS_DIR).glob("*.npy")}
    with caplog.at_level("INFO", logger="audiocopy.engines.fingerprint.engine"):
        fp.load(old_db).close()
    assert "--update-vote" in caplog.text  # the log says how to adopt the new vote
    with pytest.raises(ConfigError, match="negatives"):
        enroll_fingerprint(corpus / "catalog", old_db, update_vote_settings=True, progress=False)
    assert fpdb.read_config(old_db).match.density_weight == 0.0  # refused before touching anything
    enroll_fingerprint(corpus / "catalog", old_db, negatives_dir=corpus / "negatives", calibration=CALIB,
                       update_vote_settings=True, progress=False)
    assert fpdb.read_config(old_db).match == fpdb.read_config(db).match
    calibration = catalog.open_db(old_db).calibration
    assert calibration["threshold"] == pytest.approx(catalog.open_db(db).calibration["threshold"])
    assert calibration["play_threshold"] == pytest.approx(catalog.open_db(db).calibration["play_threshold"])
    assert {p.name: p.read_bytes() for p in (old_db / catalog.TRACKS_DIR).glob("*.npy")} == vectors


def test_a_database_says_what_its_play_threshold_was_set_on_and_an_older_one_is_named_when_opened(db, corpus,
                                                                                                  tmp_path, caplog):
    """Negatives the shipped encoder never heard give "unheard"; a database calibrated before the kind was
    recorded (every negative played, music its encoder trained on included) is named in a warning when a
    recognizer opens it, until enrolling again with negatives recalibrates it."""
    assert catalog.open_db(db).calibration["play_negatives"] == "unheard"
    old_db = _copy(db, tmp_path)
    info = json.loads((old_db / catalog.DB_FILE).read_text())
    del info["calibration"]["play_negatives"]
    (old_db / catalog.DB_FILE).write_text(json.dumps(info))
    with caplog.at_level("WARNING", logger="audiocopy.decision.recognizer"):
        Recognizer.open(old_db).close()
    assert "older version" in caplog.text and "--negatives" in caplog.text
    enroll_fingerprint(corpus / "catalog", old_db, negatives_dir=corpus / "negatives", calibration=CALIB,
                       progress=False)
    assert catalog.open_db(old_db).calibration["play_negatives"] == "unheard"
    caplog.clear()
    with caplog.at_level("WARNING", logger="audiocopy.decision.recognizer"):
        Recognizer.open(old_db).close()
    assert "play threshold" not in caplog.text


def test_play_negatives_warning_covers_every_kind():
    from audiocopy.decision.recognizer import play_negatives_warning

    assert play_negatives_warning({}, "fingerprint") is None  # no play threshold: nothing to doubt
    assert play_negatives_warning({"play_threshold": 0.4, "play_negatives": "unheard"}, "fingerprint") is None
    assert play_negatives_warning({"play_threshold": 26.8, "play_negatives": "holdout"}, "cnnbin") is None
    assert play_negatives_warning({"play_threshold": 26.8}, "cnnbin") is None  # always its dataset's hold-out
    assert "older version" in play_negatives_warning({"play_threshold": 0.4}, "fingerprint")
    assert "trained on" in play_negatives_warning({"play_threshold": 0.4, "play_negatives": "heard"}, "fingerprint")
    assert "unknown" in play_negatives_warning({"play_threshold": 0.4, "play_negatives": "mystery"}, "fingerprint")


def test_the_play_calibration_refuses_an_unknown_kind_of_negatives(db):
    from audiocopy.training.play_calibration import calibrate_play_threshold

    with pytest.raises(ConfigError, match="kind of play-calibration negatives"):
        calibrate_play_threshold(db, [], kind="some")


def test_look_alike_melodies_through_a_room_give_no_false_play_of_the_other(tmp_path):
    """Two melodies of the same synthetic instrument, an uncalibrated catalogue; one played 4 % fast in a hall.

    For its first seconds the room makes them look alike: with raw similarities
    (``density_weight`` 0) those windows named the other melody as strongly as
    the right one (+0.23 to +0.32 over the floor), and the file gave a false
    28 s play of it. The local density keeps both near the floor until the
    offset line settles.
    """
    from audiocopy.decision.files import analyse_signal

    rate = 16000
    (tmp_path / "catalog").mkdir()
    for seed in (21, 22):
        sf.write(tmp_path / "catalog" / f"tune{seed}.wav", melody(seed, 40, rate), rate)
    enroll_fingerprint(tmp_path / "catalog", tmp_path / "db", progress=False)
    heard = room_recording(sped_up(melody(21, 34.0, rate), 1.04, rate), rate)[:32 * rate]
    rec = Recognizer.open(tmp_path / "db")
    try:
        plays = analyse_signal(rec, heard, source="hall").plays
    finally:
        rec.close()
    assert [p.track for p in plays] == ["tune21"]
    assert plays[0].time_scale == pytest.approx(1.04, abs=0.015)


def test_calibration_threshold_keeps_at_most_that_share_above():
    from audiocopy.decision.calibration import quantile_threshold

    scores = np.arange(1000) / 1000.0
    t = quantile_threshold(scores, 0.01)
    assert (scores > t).mean() <= 0.01 and (scores >= t).mean() > 0.01


# --------------------------------------------------------------------------
# engine and enrolment


def test_database_describes_itself(db):
    info = catalog.open_db(db)
    assert info.engine == "fingerprint"
    assert {"threshold", "target_fpr", "calibration_windows"} <= set(info.calibration)
    config = fpdb.read_config(db)
    records = catalog.track_records(db)
    assert len(records) == 4 and config.next_key == 4
    for rec in records:
        assert rec["encoder_sha256"] == config.encoder_sha256 and rec["hop_frames"] == 8
        assert (db / catalog.TRACKS_DIR / rec["vectors_file"]).is_file()
    assert (db / fpdb.INDEX_FILE).is_file() and (db / fpdb.CALIBRATION_FILE).is_file()


@pytest.mark.parametrize("start_s", [2.0, 7.37, 15.2])
def test_identify_names_the_track_and_recovers_its_offset(db, corpus, start_s):
    recognizer = Recognizer.open(db)
    det = recognizer.detect_windows(_window(corpus / "catalog" / "catalog2.wav", start_s)[None])[0]
    assert det.track == "catalog2" and det.score > 0
    assert det.track_offset_s == pytest.approx(start_s, abs=0.3)
    assert det.candidates[0].track == "catalog2"


def test_unrelated_audio_is_no_match_and_scores_below_true_matches(db, corpus):
    recognizer = Recognizer.open(db)
    n = AUDIO.window_samples
    unrelated = np.stack([pattern("chirps", 3, AUDIO.sample_rate)[:n], pattern("noise", 3, AUDIO.sample_rate)[:n],
                          melody(999, 3, AUDIO.sample_rate)[:n], melody(998, 3, AUDIO.sample_rate)[:n]])
    dets = recognizer.detect_windows(unrelated)
    # Other kinds of sound are an explicit, calibrated "no match".
    assert [d.track for d in dets[:2]] == [None, None]
    assert all(d.score <= 0 and d.track_offset_s is None for d in dets[:2])
    # Melodies from the same synthesiser as the catalogue are the hard case: whatever the
    # calibration on a few negatives says, they score well below real matches.
    true = recognizer.detect_windows(np.stack([_window(corpus / "catalog" / f"catalog{i}.wav", 4.0)
                                               for i in range(4)]))
    assert min(d.score for d in true) > max(d.score for d in dets[2:]) + 0.05


def test_enrol_adds_to_an_existing_database_and_remove_deletes(db, corpus, tmp_path):
    path = _copy(db, tmp_path)
    live = fp.load(path)
    recognizer = Recognizer(live)
    windows_file = path / fpdb.CALIBRATION_FILE
    before = windows_file.stat().st_mtime_ns
    report = enroll_fingerprint(corpus / "extra", path, negatives_dir=corpus / "negatives", calibration=CALIB,
                                progress=False)
    assert report.enrolled == ["extra0"] and report.threshold is not None
    assert windows_file.stat().st_mtime_ns == before  # same negatives: their windows are reused
    assert sorted(fp.load(path).track_ids) == ["catalog0", "catalog1", "catalog2", "catalog3", "extra0"]
    # Enrolling the same folder again skips what is there.
    again = add_tracks(path, [corpus / "extra" / "extra0.wav"], progress=False)
    assert again.skipped == [Path(corpus / "extra" / "extra0.wav")] and not again.enrolled

    # A running engine picks the change up on refresh().
    assert live.refresh() and "extra0" in live.track_ids and not live.refresh()
    recognizer = Recognizer(live)
    det = recognizer.detect_windows(_window(corpus / "extra" / "extra0.wav", 5.0)[None])[0]
    assert det.track == "extra0"

    assert remove_tracks(path, ["catalog1", "nope"]) == ["nope"]
    assert live.refresh() and "catalog1" not in live.track_ids
    assert not list((path / catalog.TRACKS_DIR).glob(catalog.track_filename("catalog1") + ".*"))
    assert 1 not in live.index.counts()  # key of catalog1
    recognizer = Recognizer(live)
    det = recognizer.detect_windows(_window(corpus / "catalog" / "catalog1.wav", 5.0)[None])[0]
    assert det.track != "catalog1"
    # Keys are never reused.
    enroll_fingerprint(corpus / "catalog", path, progress=False)
    assert {r["track_id"]: r["key"] for r in catalog.track_records(path)}["catalog1"] == 5


def test_a_lost_or_stale_index_is_rebuilt_from_the_track_vectors(db, corpus, tmp_path):
    path = _copy(db, tmp_path)
    (path / fpdb.INDEX_FILE).unlink()
    engine = fp.load(path)
    assert len(engine.index) == sum(r["n_vectors"] for r in catalog.track_records(path))
    # A record deleted behind the index's back (crash mid-removal) is dropped on load.
    catalog.remove_track(path, "catalog0")
    assert "catalog0" not in fp.load(path).track_ids


def test_qdrant_backend_enrols_and_identifies(corpus, tmp_path):
    pytest.importorskip("qdrant_client", reason="qdrant-client is not installed (pip install qdrant-client)")
    from audiocopy.config import IndexParams

    path = tmp_path / "qdb"
    enroll_fingerprint(corpus / "catalog", path, negatives_dir=corpus / "negatives", calibration=CALIB,
                       index=IndexParams(backend="qdrant"), progress=False)
    assert (path / fpdb.QDRANT_DIR).is_dir() and (path / fpdb.QDRANT_SIDECAR).is_file()
    engine = fp.load(path)
    assert type(engine.index).__name__ == "QdrantIndex"
    det = Recognizer(engine).detect_windows(_window(corpus / "catalog" / "catalog3.wav", 6.0)[None])[0]
    assert det.track == "catalog3" and det.track_offset_s == pytest.approx(6.0, abs=0.3)
    engine.index.close()


# --------------------------------------------------------------------------
# refusals


def _tiny_encoder(tmp_path: Path, **changes) -> Path:
    params = EncoderParams(widths=(4, 8), hidden_dim=8, embedding_dim=8)
    out = tmp_path / "enc" / "encoder.json"
    from audiocopy.training.models import encoder_model

    model = encoder_model(params)
    save_encoder(out, model.get_weights(), [v.path for v in model.weights], params=params, audio=AUDIO,
                 features=FEATURES)
    if changes:
        record = json.loads(out.read_text())
        for key, value in changes.items():
            section, field = key.split("__")
            record[section][field] = value
        out.write_text(json.dumps(record))
    return out


def test_encoder_round_trips_and_refuses_mismatched_params(tmp_path):
    path = _tiny_encoder(tmp_path)
    enc = load_encoder(path, audio=AUDIO, features=FEATURES)
    assert enc.dim == 8 and enc.embed(np.zeros((2, 30, 72), np.float32)).shape == (2, 8)
    with pytest.raises(ParamsMismatch, match="features.n_bins"):
        load_encoder(path, audio=AUDIO, features=FeatureParams(n_bins=60))
    with pytest.raises(ParamsMismatch, match="sha256"):
        load_encoder(path, expect_sha256="0" * 64)
    wrong = _tiny_encoder(tmp_path / "b", encoder__embedding_dim=16)  # record says 16, weights are 8
    with pytest.raises(ParamsMismatch, match="shape"):
        load_encoder(wrong)


def test_tampered_or_missing_weights_are_refused(tmp_path):
    path = _tiny_encoder(tmp_path)
    weights = path.with_suffix(".npz")
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="SHA-256"):
        load_encoder(path)
    weights.unlink()
    with pytest.raises(ModelError, match="missing"):
        load_encoder(path)


def test_database_refuses_another_encoder_and_foreign_vectors(db, tmp_path):
    path = _copy(db, tmp_path)
    other = _tiny_encoder(tmp_path)
    with pytest.raises(ParamsMismatch, match="not the one the database was enrolled with"):
        fpdb.init_db(path, audio=AUDIO, features=FEATURES, encoder_path=other)
    with pytest.raises(ParamsMismatch, match="enrol_hop_frames"):
        fpdb.init_db(path, audio=AUDIO, features=FEATURES, match=MatchParams(enrol_hop_frames=4))
    rec_path = next((path / catalog.TRACKS_DIR).glob("*.json"))
    rec = json.loads(rec_path.read_text())
    rec["encoder_sha256"] = "f" * 64
    rec_path.write_text(json.dumps(rec))
    with pytest.raises(ParamsMismatch, match="another encoder"):
        fp.load(path)


def test_a_cnnbin_loader_refuses_a_fingerprint_database(db):
    from audiocopy.engines.cnnbin import engine as cnnbin

    with pytest.raises(ModelError, match="'fingerprint' database"):
        cnnbin.load(db)


# --------------------------------------------------------------------------
# live streams (engines.fingerprint.stream): each sub-window analysed once


def _stream_windows(path: Path, start_s: float, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows (every hop) of ``seconds`` of a file played from ``start_s``, and their stream times."""
    from audiocopy.signal.audio import load_audio
    from audiocopy.signal.windows import cut_windows

    signal = load_audio(path, params=AUDIO)
    lo = int(start_s * AUDIO.sample_rate)
    return cut_windows(signal[lo:lo + int(seconds * AUDIO.sample_rate)], audio=AUDIO)


def test_stream_grid_counts_whole_frames_from_the_start_of_the_stream():
    from audiocopy.engines.fingerprint.stream import subwindow_grid, window_frames

    n = AUDIO.window_samples  # 40000 samples; frames of 2048 every 512
    assert window_frames(0, n, n_fft=2048, hop=512) == (0, 75)
    # 0.5 s later: 8000 / 512 = 15.6, so the first whole frame is 16 and one frame fewer fits.
    assert window_frames(8000, n, n_fft=2048, hop=512) == (16, 90)
    assert subwindow_grid(0, 75, frames=30, hop=5).tolist() == list(range(0, 46, 5))
    assert subwindow_grid(16, 90, frames=30, hop=5).tolist() == list(range(20, 61, 5))
    assert subwindow_grid(0, 29, frames=30, hop=5).size == 0


def test_a_stream_gives_the_same_answers_with_and_without_its_cache(db, corpus):
    from audiocopy.engines import StreamState

    recognizer = Recognizer.open(db)
    windows, starts = _stream_windows(corpus / "catalog" / "catalog2.wav", 3.0, 9.0)  # 14 windows
    fresh, _ = recognizer.score_windows(windows, starts_s=starts, states=[None] * len(windows))
    memory = StreamState()
    embedded = []
    embed = recognizer.engine.encoder.embed

    def counting_embed(sub):
        embedded.append(len(sub))
        return embed(sub)

    recognizer.engine.encoder.embed = counting_embed
    # One window per call, as a live stream that keeps up; then a stream that fell
    # behind (several of its windows in one batch) and one that lost windows (gaps).
    one_by_one = [recognizer.score_windows(windows[i:i + 1], starts_s=starts[i:i + 1], states=[memory])[0]
                  for i in range(len(windows))]
    # Each sub-window of the stream's grid went through the encoder once: the last
    # window (6.5-9 s) ends with whole frame 277, so sub-windows start at 0, 5, ..., 245:
    # 50 of them, where 14 windows of 9-10 each would be 133.
    assert sum(embedded) == 50
    recognizer.engine.encoder.embed = embed
    np.testing.assert_allclose(np.concatenate([r.margins for r in one_by_one]), fresh.margins, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([r.track_offsets_s for r in one_by_one]), fresh.track_offsets_s,
                               atol=1e-4)
    behind = StreamState()
    batched, _ = recognizer.score_windows(windows, starts_s=starts, states=[behind] * len(windows))
    np.testing.assert_allclose(batched.margins, fresh.margins, atol=1e-6)
    gappy = StreamState()
    keep = [0, 1, 4, 5, 6, 11]
    part, _ = recognizer.score_windows(windows[keep], starts_s=starts[keep], states=[gappy] * len(keep))
    np.testing.assert_allclose(part.margins, fresh.margins[keep], atol=1e-6)
    # The cache holds about one window's worth, however long the stream.
    cache = memory.cache
    assert len(cache.hits) <= 10 and len(cache.band) <= 75


def test_a_live_stream_and_lone_windows_name_the_track_and_its_offset_alike(db, corpus):
    from audiocopy.engines import StreamState

    recognizer = Recognizer.open(db)
    windows, starts = _stream_windows(corpus / "catalog" / "catalog2.wav", 3.0, 8.0)
    memory = StreamState()
    live = [recognizer.detect_windows(windows[i:i + 1], starts[i:i + 1], [memory])[0] for i in range(len(windows))]
    offline = recognizer.detect_windows(windows, starts)
    for det, ref, start in zip(live, offline, starts):
        assert det.track == ref.track == "catalog2" and det.offset_s == start
        assert det.track_offset_s == pytest.approx(3.0 + start, abs=0.3)
        # A lone window starts its own frame grid, a stream's window sits on the stream's: the
        # sub-windows differ by a fraction of a frame, the evidence barely.
        assert det.score == pytest.approx(ref.score, abs=0.1)


def test_two_interleaved_streams_keep_separate_caches(db, corpus):
    from audiocopy.engines import StreamState

    recognizer = Recognizer.open(db)
    w1, s1 = _stream_windows(corpus / "catalog" / "catalog1.wav", 2.0, 5.0)
    w3, s3 = _stream_windows(corpus / "catalog" / "catalog3.wav", 6.0, 5.0)
    m1, m3 = StreamState(), StreamState()
    for i in range(len(w1)):
        dets = recognizer.detect_windows(np.stack([w1[i], w3[i]]), np.array([s1[i], s3[i]]), [m1, m3])
        assert [d.track for d in dets] == ["catalog1", "catalog3"]
    assert m1.cache is not m3.cache


def test_a_stream_cache_follows_database_changes(db, corpus, tmp_path):
    from audiocopy.engines import StreamState

    path = _copy(db, tmp_path)
    engine = fp.load(path)
    recognizer = Recognizer(engine)
    windows, starts = _stream_windows(corpus / "catalog" / "catalog1.wav", 4.0, 4.0)
    memory = StreamState()
    assert recognizer.detect_windows(windows[:2], starts[:2], [memory] * 2)[1].track == "catalog1"
    remove_tracks(path, ["catalog1"])
    assert engine.refresh()
    # The cached hits of the removed track are not reused.
    det = recognizer.detect_windows(windows[2:3], starts[2:3], [memory])[0]
    assert det.track != "catalog1"
    # Another engine (a database swapped in by the server) starts its own cache.
    other = Recognizer(fp.load(path))
    other.detect_windows(windows[3:4], starts[3:4], [memory])
    assert memory.cache.owner() is other.engine
    # An idle stream does not keep a replaced engine (and its index) alive.
    import gc
    import weakref

    gone = weakref.ref(other.engine)
    del other
    gc.collect()
    assert gone() is None


def test_a_batch_needs_a_start_and_a_state_per_window():
    from audiocopy.engines import WindowBatch

    windows = np.zeros((2, AUDIO.window_samples), dtype=np.float32)
    with pytest.raises(ValueError, match="n starts and n states"):
        WindowBatch(windows, np.zeros(2, dtype=np.int64), (None,))


def test_stream_path_on_the_gpu_code_path_matches_numpy(db, corpus):
    # frame_power/band_db run on the recognizer's xp; the CuPy branch is driven
    # through a NumPy alias (as in test_features) since CI has no GPU.
    from test_features import _ArrayModuleAlias

    windows, starts = _stream_windows(corpus / "catalog" / "catalog0.wav", 2.0, 4.0)
    cpu, _ = Recognizer.open(db).score_windows(windows, starts_s=starts, states=[None] * len(windows))
    gpu, _ = Recognizer.open(db, xp=_ArrayModuleAlias()).score_windows(windows, starts_s=starts,
                                                                       states=[None] * len(windows))
    np.testing.assert_allclose(gpu.margins, cpu.margins, atol=1e-4)


def test_calibration_windows_follow_each_negatives_length():
    """By default a negative gives a window per 0.5 s of its usable audio, within the per-track bounds."""
    from audiocopy.training.calibration_windows import windows_for_track

    params = CalibrationParams()
    assert windows_for_track(60.0, params) == 120  # the stream's grid: a window every 0.5 s
    assert windows_for_track(150.0, params) == 300
    assert windows_for_track(2.0, params) == params.min_windows_per_track  # a jingle still counts ...
    assert windows_for_track(0.0, params) == params.min_windows_per_track
    assert windows_for_track(3600.0, params) == params.max_windows_per_track  # ... an hour-long mix is capped
    assert windows_for_track(3600.0, CalibrationParams(windows_per_track=12)) == 12  # a fixed count wins


@pytest.mark.parametrize("kwargs", [dict(windows_per_track=-1), dict(windows_per_minute=0.0),
                                    dict(min_windows_per_track=0), dict(min_windows_per_track=50,
                                                                        max_windows_per_track=40),
                                    dict(distorted_fraction=1.5)])
def test_calibration_params_refuse_impossible_counts(kwargs):
    with pytest.raises(ConfigError):
        CalibrationParams(**kwargs)


def test_a_longer_negative_gives_proportionally_more_calibration_windows(tmp_path):
    """Twice the audio, about twice the windows: the threshold weighs each negative by the minutes it lasts."""
    from audiocopy.training.calibration_windows import make_calibration_windows

    for i, seconds in enumerate((3, 20, 38)):  # 3 s: shorter than one excerpt plus edges
        sf.write(tmp_path / f"music{i}.wav", melody(400 + i, seconds, RATE), RATE)
    params = CalibrationParams(windows_per_minute=60.0, min_windows_per_track=2, max_windows_per_track=100)
    counts = {}
    for i in range(3):
        folder = tmp_path / f"only{i}"
        folder.mkdir()
        shutil.copy(tmp_path / f"music{i}.wav", folder / f"music{i}.wav")
        counts[i] = len(make_calibration_windows(folder, audio=AUDIO, features=FEATURES, params=params,
                                                 progress=False))
    assert counts[0] == 2  # the floor
    assert 14 <= counts[1] <= 16  # 20 s less 2 s of edges and one 3.25 s excerpt: 14.75 s at one a second
    assert 32 <= counts[2] <= 34
    both = make_calibration_windows(tmp_path, audio=AUDIO, features=FEATURES, params=params, progress=False)
    assert len(both) == sum(counts.values())


def test_calibration_leaves_out_silent_windows_so_shared_silence_cannot_block_every_match(corpus, tmp_path):
    """Digital silence inside a negative matches digital silence inside a catalogue track perfectly.

    Found on the real corpus: three such windows set the threshold to 0.999997 and the catalogue named
    nothing. A window that silent is answered "silent" before any threshold, so calibration leaves it out.
    """
    from audiocopy.training.calibration_windows import make_calibration_windows

    catalog_dir, negatives = tmp_path / "catalog", tmp_path / "negatives"
    catalog_dir.mkdir()
    negatives.mkdir()
    for i in range(2):  # catalogue tracks with 6 s of digital silence in the middle
        x = melody(200 + i, 20, RATE)
        x[7 * RATE:13 * RATE] = 0.0
        sf.write(catalog_dir / f"gap{i}.wav", x, RATE)
    for i in range(4):
        sf.write(negatives / f"music{i}.wav", melody(300 + i, 10, RATE), RATE)
    quiet = np.zeros(30 * RATE, np.float32)  # half a second of music, then digital silence to the end
    quiet[:RATE // 2] = melody(310, 0.5, RATE)
    sf.write(negatives / "quiet.wav", quiet, RATE)
    levels = make_calibration_windows(negatives, audio=AUDIO, features=FEATURES, params=CALIB, progress=False)
    assert 4 * CALIB.windows_per_track <= len(levels) < 5 * CALIB.windows_per_track  # the silent ones are gone ...
    assert levels.reshape(len(levels), -1).astype(np.float32).max(axis=1).min() > -100  # ... and only they
    path = tmp_path / "db"
    enroll_fingerprint(catalog_dir, path, negatives_dir=negatives, calibration=CALIB, progress=False)
    threshold = catalog.open_db(path).calibration["threshold"]
    assert threshold < 0.9
    detection = Recognizer.open(path).detect_windows(_window(catalog_dir / "gap0.wav", 1.0)[None])[0]
    assert detection.track == "gap0" and detection.score > 0


def test_digital_silence_in_a_query_is_no_evidence_for_a_track_with_silence(tmp_path):
    """Silent sub-windows all embed to one vector, shared by every silent second of the catalogue.

    Found on the real corpus: unrelated music ending in 2 s of digital silence matched a catalogue track
    with a silent passage (+0.36). A flat (silent) sub-window now gets no hits at all.
    """
    catalog_dir, negatives = tmp_path / "catalog", tmp_path / "negatives"
    catalog_dir.mkdir()
    negatives.mkdir()
    for i in range(2):
        x = melody(400 + i, 20, RATE)
        x[7 * RATE:13 * RATE] = 0.0  # a silent passage
        sf.write(catalog_dir / f"gap{i}.wav", x, RATE)
    for i in range(4):
        sf.write(negatives / f"music{i}.wav", melody(500 + i, 10, RATE), RATE)
    path = tmp_path / "db"
    enroll_fingerprint(catalog_dir, path, negatives_dir=negatives, calibration=CALIB, progress=False)
    rec = Recognizer.open(path)
    # Half a second of other music, then silence (written at the test's rate and decoded, like any query).
    query = np.zeros(int(2.5 * RATE), np.float32)
    query[:RATE // 2] = melody(600, 0.5, RATE)
    sf.write(tmp_path / "query.wav", query, RATE)
    detection = rec.detect_windows(_window(tmp_path / "query.wav", 0.0)[None])[0]
    assert not detection.silent and detection.track is None and detection.score < 0
    # The tracks themselves, silent passage and all, are still named.
    for i in range(2):
        hit = rec.detect_windows(_window(catalog_dir / f"gap{i}.wav", 5.5)[None])[0]  # 1.5 s of music, 1 s silent
        assert hit.track == f"gap{i}" and hit.score > 0
