"""The cnnbin engine: batched scoring equals Keras, artifacts describe themselves."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from audiocopy.config import CnnParams
from audiocopy.decision.calibration import quantile_threshold
from audiocopy.decision.recognizer import Recognizer
from audiocopy.engines import catalog
from audiocopy.engines.cnnbin.stacked_cnn import CnnWeights, StackedCnn
from audiocopy.errors import ModelError, ParamsMismatch
from audiocopy.training.fit_cnnbin import shift_features


def _models(n, shape=(75, 72), params=CnnParams()):
    import keras

    from audiocopy.training.models import build_track_cnn

    keras.utils.set_random_seed(7)
    return [build_track_cnn(shape, params, name=f"m{i}") for i in range(n)]


@pytest.mark.parametrize("pooling", ["global", "time"])
def test_stacked_pass_equals_each_keras_model(rng, pooling):
    models = _models(3, params=CnnParams(pooling=pooling))
    x = rng.standard_normal((4, 75, 72)).astype(np.float32)
    expected = np.concatenate([np.asarray(m(x, training=False)) for m in models], axis=1)
    got = StackedCnn([CnnWeights.from_keras(m) for m in models]).logits(x)
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_stacked_pass_cuts_big_batches_without_changing_results(rng, monkeypatch):
    from audiocopy.engines.cnnbin import stacked_cnn

    stack = StackedCnn([CnnWeights.from_keras(m) for m in _models(2)])
    x = rng.standard_normal((7, 75, 72)).astype(np.float32)
    whole = stack.logits(x)
    calls = []
    fn = stack._fn
    monkeypatch.setattr(stack, "_fn", lambda chunk: calls.append(len(chunk)) or fn(chunk))
    # Room for two windows' first-block activations (2 tracks x 8 channels each).
    monkeypatch.setattr(stacked_cnn, "ACTIVATION_BUDGET_BYTES", 2 * 75 * 72 * 16 * 4)
    np.testing.assert_allclose(stack.logits(x), whole, atol=1e-5)
    assert calls == [2, 2, 2, 1]


def test_stacking_refuses_different_architectures():
    a = _models(1)[0]
    b = _models(1, params=CnnParams(widths=(4, 8, 8, 8)))[0]
    with pytest.raises(ValueError, match="different architectures"):
        StackedCnn([CnnWeights.from_keras(a), CnnWeights.from_keras(b)])


def test_model_is_small():
    model = _models(1)[0]
    assert model.count_params() * 4 < 2.5e6


def test_records_carry_their_parameters(tiny_db):
    records = catalog.track_records(tiny_db)
    assert len(records) == 3
    for rec in records:
        assert rec["engine"] == "cnnbin"
        assert set(rec) >= {"audio", "features", "cnn", "threshold_logit", "metrics", "model_file"}
        assert (tiny_db / catalog.TRACKS_DIR / rec["model_file"]).stat().st_size < 2.5e6
    info = catalog.open_db(tiny_db)
    assert info.engine == "cnnbin" and "score_offset" in info.calibration


def _copy(db, tmp_path):
    dst = tmp_path / "db"
    shutil.copytree(db, dst, ignore=shutil.ignore_patterns("dataset"))
    return dst


def test_feature_mismatch_is_refused(tiny_db, tmp_path):
    db = _copy(tiny_db, tmp_path)
    path = sorted((db / catalog.TRACKS_DIR).glob("*.json"))[0]
    rec = json.loads(path.read_text())
    rec["features"]["n_bins"] = 60
    path.write_text(json.dumps(rec))
    with pytest.raises(ParamsMismatch, match="n_bins"):
        Recognizer.open(db)


def test_corrupt_model_and_record_are_clear_errors(tiny_db, tmp_path):
    db = _copy(tiny_db, tmp_path)
    model_path = sorted((db / catalog.TRACKS_DIR).glob("*.keras"))[0]
    model_path.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="cannot load track model"):
        Recognizer.open(db)
    db2 = _copy(tiny_db, tmp_path / "b")
    sorted((db2 / catalog.TRACKS_DIR).glob("*.json"))[0].write_text("{broken")
    with pytest.raises(ModelError, match="unreadable"):
        Recognizer.open(db2)


def test_missing_or_foreign_db(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        Recognizer.open(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "db.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ModelError, match="format 99"):
        Recognizer.open(tmp_path / "x")


def test_remove_track_and_recalibrate(tiny_db, tmp_path):
    from audiocopy.training.enroll_cnnbin import calibrate_catalog

    db = _copy(tiny_db, tmp_path)
    assert catalog.remove_track(db, "chord")
    assert not catalog.remove_track(db, "chord")
    calibrate_catalog(db, catalog_fpr=0.005)
    assert Recognizer.open(db).track_ids == ["chirps", "pulses"]
    assert catalog.open_db(db).calibration["tracks"] == 2


def test_recalibration_keeps_the_rule_the_database_was_calibrated_with(tiny_db, tmp_path):
    """After a removal the offset is read again by the database's own rule; one calibrated before the bound
    existed (no ``catalog_fpr_confidence``) keeps the plain quantile until it is trained again."""
    from audiocopy.training.enroll_cnnbin import calibrate_catalog, recalibrate_catalog

    db = _copy(tiny_db, tmp_path)
    calibrate_catalog(db, catalog_fpr=0.02, confidence=0.5)
    recalibrate_catalog(db)
    cal = catalog.open_db(db).calibration
    assert (cal["catalog_fpr"], cal["catalog_fpr_confidence"]) == (0.02, 0.5)
    info = json.loads((db / catalog.DB_FILE).read_text())
    del info["calibration"]["catalog_fpr_confidence"]
    (db / catalog.DB_FILE).write_text(json.dumps(info))
    recalibrate_catalog(db)
    assert catalog.open_db(db).calibration["catalog_fpr_confidence"] == 0.0


def test_resume_skips_finished_tracks(tiny_db, tmp_path):
    from audiocopy.training.enroll_cnnbin import train_catalog

    db = _copy(tiny_db, tmp_path)
    report = train_catalog(tiny_db / "dataset", db, progress=False)
    assert report.trained == [] and sorted(report.skipped) == ["chirps", "chord", "pulses"]


def test_a_play_threshold_of_another_margin_unit_is_kept_until_train_recalibrates_it(tiny_db, tmp_path, caplog):
    """A database whose play threshold predates margin units (calibrated in 1) keeps deciding in 1, says so,
    and ``audiocopy train`` on its dataset recalibrates it in this version's unit, training nothing."""
    from audiocopy.config import DecisionParams
    from audiocopy.training.enroll_cnnbin import train_catalog

    unit = DecisionParams().margin_unit("cnnbin")
    db = _copy(tiny_db, tmp_path)
    assert catalog.open_db(db).calibration["play_margin_unit"] == unit
    info = json.loads((db / catalog.DB_FILE).read_text())
    del info["calibration"]["play_margin_unit"]
    (db / catalog.DB_FILE).write_text(json.dumps(info))
    with caplog.at_level("WARNING"):
        old = Recognizer.open(db)
    assert old.margin_unit == 1.0 and old.params == DecisionParams() and "recalibrated" in caplog.text
    report = train_catalog(tiny_db / "dataset", db, progress=False)
    assert report.trained == []
    assert catalog.open_db(db).calibration["play_margin_unit"] == unit
    assert Recognizer.open(db).params == DecisionParams().in_margin_units(unit)


def test_quantile_threshold_counts_exceedances():
    scores = np.arange(1000, dtype=float)
    thr = quantile_threshold(scores, 0.01)
    assert (scores > thr).sum() == 10
    assert (scores > quantile_threshold(scores, 0.0)).sum() == 0


def test_shift_features_moves_content():
    x = np.zeros((10, 8), dtype=np.float32)
    x[5, 3] = 1.0
    y = shift_features(x, bins=2, frames=-1)
    assert y[4, 5] == 1.0 and y.sum() == 1.0
