"""cnnbin's embedding head: known answers of its layers, batched pass equals Keras, artifacts, both kinds."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from synth import melody

from audiocopy.config import CnnParams, TrainParams
from audiocopy.decision.files import analyse_signal
from audiocopy.decision.recognizer import Recognizer
from audiocopy.encoder.subwindows import subwindow_starts
from audiocopy.engines import catalog
from audiocopy.engines.cnnbin.stacked_head import UNINFORMATIVE_BIAS, HeadWeights, StackedHeads, informative
from audiocopy.errors import DatasetError, ParamsMismatch
from audiocopy.training.fit_head import _fit_logistic, prototype_bias, split_rows

DIM, N_SUB = 16, 10


def _head(prototypes, bias=None, *, scale=1.0, offset=0.0, tolerance=1, n_sub=N_SUB):
    from audiocopy.training.models import build_track_head

    k, dim = prototypes.shape
    model = build_track_head(k, n_sub=n_sub, dim=dim, tolerance=tolerance)
    model.get_layer("prototypes").set_weights([prototypes.T.astype(np.float32),
                                               np.zeros(k, np.float32) if bias is None else bias.astype(np.float32)])
    model.get_layer("logit").set_weights([np.full((1, 1), scale, np.float32), np.full(1, offset, np.float32)])
    return model


def _unit(rng, n, dim=DIM):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class _ArrayModuleAlias:
    """NumPy under another identity: drives the code paths written for CuPy."""

    def __getattr__(self, name):
        return getattr(np, name)


def _logit(model, emb, mask=None):
    mask = np.ones(emb.shape[:2], np.float32) if mask is None else mask
    return np.asarray(model([emb, mask], training=False))[:, 0]


def test_a_copy_of_the_track_scores_the_diagonal_sum(rng):
    protos = _unit(rng, 60)
    model = _head(protos, tolerance=0)
    exact = protos[20:20 + N_SUB][None]
    shuffled = protos[rng.permutation(60)[:N_SUB]][None]
    # Ten unit-vector matches on one diagonal: the evidence is exactly 10.
    assert _logit(model, exact)[0] == pytest.approx(10.0, abs=1e-4)
    # The same vectors out of order agree on no offset: far less evidence.
    assert _logit(model, shuffled)[0] < 5.0


def test_the_neighbour_pool_absorbs_tempo_drift(rng):
    protos = _unit(rng, 60)
    # A query 10 % slower: sub-window j sits at prototype 20 + round(0.9 j).
    drifted = protos[[20 + int(round(0.9 * j)) for j in range(N_SUB)]][None]
    assert _logit(_head(protos, tolerance=1), drifted)[0] == pytest.approx(10.0, abs=1e-4)
    assert _logit(_head(protos, tolerance=0), drifted)[0] < 9.0


def test_masked_sub_windows_add_nothing(rng):
    protos = _unit(rng, 30)
    model = _head(protos, tolerance=0, offset=-1.0)
    query = protos[5:5 + N_SUB][None]
    mask = np.ones((1, N_SUB), np.float32)
    mask[0, :4] = 0
    assert _logit(model, query, mask)[0] == pytest.approx(6.0 - 1.0, abs=1e-4)
    assert _logit(model, query, np.zeros((1, N_SUB), np.float32))[0] == pytest.approx(-1.0, abs=1e-4)


def test_informative_flags_constant_sub_windows():
    x = np.zeros((3, 30, 72), np.float32)
    x[1] = np.random.default_rng(0).standard_normal((30, 72))
    x[2] = 5.0  # constant, whatever its level
    np.testing.assert_array_equal(informative(x), [0.0, 1.0, 0.0])


@pytest.mark.parametrize("xp_kind", ["numpy", "alias"])
def test_stacked_heads_equal_each_keras_head(rng, xp_kind):
    heads = [_head(_unit(rng, k), rng.standard_normal(k).astype(np.float32) * 0.2,
                   scale=float(rng.uniform(0.5, 3)), offset=float(rng.normal())) for k in (12, 37, 20)]
    emb = np.stack([_unit(rng, N_SUB) for _ in range(6)])
    mask = (rng.random((6, N_SUB)) > 0.2).astype(np.float32)
    expected = np.stack([_logit(m, emb, mask) for m in heads], axis=1)
    # The alias is NumPy under another name: it drives the code written for CuPy.
    xp = np if xp_kind == "numpy" else _ArrayModuleAlias()
    got = StackedHeads([HeadWeights.from_keras(m) for m in heads], xp=xp).logits(emb, mask)
    assert got.shape == (6, 3)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_stacked_heads_never_mix_neighbouring_tracks(rng):
    a, b = _unit(rng, 15), _unit(rng, 15)
    stack = StackedHeads([HeadWeights.from_keras(_head(a)), HeadWeights.from_keras(_head(b))])
    # A query made of a's last prototypes: a diagonal that ran on into b's
    # columns would find nothing there; one that stays in a finds ten matches.
    query = a[5:15][None]
    logits = stack.logits(query, np.ones((1, N_SUB), np.float32))
    assert logits[0, 0] == pytest.approx(10.0, abs=1e-4) and logits[0, 1] < 5.0


def test_stacked_heads_cut_big_batches_without_changing_results(rng, monkeypatch):
    from audiocopy.engines.cnnbin import stacked_head

    stack = StackedHeads([HeadWeights.from_keras(_head(_unit(rng, 25)))])
    emb = np.stack([_unit(rng, N_SUB) for _ in range(7)])
    mask = np.ones((7, N_SUB), np.float32)
    whole = stack.logits(emb, mask)
    monkeypatch.setattr(stacked_head, "ACTIVATION_BUDGET_BYTES", 2 * 2 * N_SUB * stack.columns * 4)
    np.testing.assert_allclose(stack.logits(emb, mask), whole, atol=1e-6)


def test_stacked_heads_refuse_bad_input(rng):
    with pytest.raises(ValueError, match="at least one"):
        StackedHeads([])
    with pytest.raises(ValueError, match="differ"):
        StackedHeads([HeadWeights.from_keras(_head(_unit(rng, 20))),
                      HeadWeights.from_keras(_head(_unit(rng, 20), tolerance=2))])
    stack = StackedHeads([HeadWeights.from_keras(_head(_unit(rng, 20)))])
    with pytest.raises(ValueError, match="embeddings must be"):
        stack.logits(np.zeros((2, N_SUB, DIM + 1), np.float32), np.ones((2, N_SUB), np.float32))


def test_prototype_bias_is_the_negative_quantile():
    protos = np.eye(4, dtype=np.float32)
    negatives = np.zeros((101, 4), np.float32)
    negatives[:, 0] = np.linspace(0, 1, 101)  # similarities to prototype 0: 0.00 .. 1.00
    bias = prototype_bias(protos, np.array([1, 1, 1, 0], np.float32), negatives, 0.9)
    assert bias[0] == pytest.approx(-0.9, abs=1e-6)
    assert bias[1] == pytest.approx(0.0) and bias[2] == pytest.approx(0.0)
    assert bias[3] == UNINFORMATIVE_BIAS


def test_logistic_fit_orders_positives_above_negatives():
    raw = np.array([2.0, 2.5, 3.0, 0.0, 0.5, 1.0, 0.2])
    y = np.array([1, 1, 1, 0, 0, 0, 0], float)
    a, c = _fit_logistic(raw, y)
    assert a > 0 and (a * raw[:3] + c).min() > 0 > (a * raw[3:] + c).max()
    # Separable rows: the ridge keeps the slope finite (unpenalised, it diverges).
    assert a < 50 and _fit_logistic(raw, y, ridge=0.0)[0] > 5 * a


def test_split_rows():
    rows = np.arange(2 * 3 * 5, dtype=np.float16).reshape(2, 3, 5)
    emb, mask = split_rows(rows)
    assert emb.shape == (2, 3, 4) and mask.shape == (2, 3) and emb.dtype == np.float32
    assert len(subwindow_starts(75, frames=30, hop_frames=5)) == 10
    assert len(subwindow_starts(20, frames=30, hop_frames=5)) == 0


# ------------------------------------------------------------------ trained databases


def _copy(db, tmp_path):
    dst = tmp_path / "db"
    shutil.copytree(db, dst, ignore=shutil.ignore_patterns("dataset"))
    return dst


def test_default_databases_hold_embedding_heads_that_name_their_encoder(tiny_db):
    from audiocopy.encoder.artifact import SHIPPED_ENCODER, read_encoder_record

    records = catalog.track_records(tiny_db)
    assert {r["cnn"]["kind"] for r in records} == {"embedding"}
    sha = read_encoder_record(SHIPPED_ENCODER)["weights_sha256"]
    assert {r["encoder_sha256"] for r in records} == {sha}
    for rec in records:
        assert rec["metrics"]["prototypes"] >= N_SUB
        assert (tiny_db / catalog.TRACKS_DIR / rec["model_file"]).stat().st_size < 2.5e6


def test_a_database_of_another_encoder_is_refused(tiny_db, tmp_path):
    db = _copy(tiny_db, tmp_path)
    for path in (db / catalog.TRACKS_DIR).glob("*.json"):
        rec = json.loads(path.read_text())
        rec["encoder_sha256"] = "0" * 64
        path.write_text(json.dumps(rec))
    with pytest.raises(ParamsMismatch, match="enrolled with"):
        Recognizer.open(db)
    path = sorted((db / catalog.TRACKS_DIR).glob("*.json"))[0]
    rec = json.loads(path.read_text())
    rec["encoder_sha256"] = "1" * 64
    path.write_text(json.dumps(rec))
    with pytest.raises(ParamsMismatch, match="different encoders"):
        Recognizer.open(db)


def test_kinds_are_not_mixed_in_one_database(tiny_db, tmp_path):
    from audiocopy.training.enroll_cnnbin import train_catalog

    db = _copy(tiny_db, tmp_path)
    catalog.remove_track(db, "chord")
    with pytest.raises(DatasetError, match="cannot add 'spectrogram'"):
        train_catalog(tiny_db / "dataset", db, cnn=CnnParams(kind="spectrogram"), progress=False)


def test_records_without_a_kind_are_spectrogram_cnns(tiny_db_spectrogram, tmp_path):
    db = _copy(tiny_db_spectrogram, tmp_path)
    for path in (db / catalog.TRACKS_DIR).glob("*.json"):
        rec = json.loads(path.read_text())
        del rec["cnn"]["kind"]  # as written before the embedding head existed
        path.write_text(json.dumps(rec))
    recognizer = Recognizer.open(db)
    assert recognizer.engine.cnn.kind == "spectrogram" and len(recognizer.track_ids) == 3


@pytest.mark.parametrize("fixture", ["tiny_db", "tiny_db_spectrogram"])
def test_both_kinds_recognise_their_tracks(request, tiny_corpus, fixture):
    from audiocopy.signal.audio import load_audio

    recognizer = Recognizer.open(request.getfixturevalue(fixture))
    for kind in ("chirps", "chord", "pulses"):
        signal = load_audio(tiny_corpus / "licensed" / f"{kind}.wav", params=recognizer.audio)
        det = analyse_signal(recognizer, signal).answer
        assert det.track == kind, (fixture, kind, det)
    # Unseen music of the kind the negatives and calibration tracks are.
    other = melody(555, 3.0, recognizer.audio.sample_rate)  # as in test_cli
    assert analyse_signal(recognizer, other).answer.track is None


def test_train_cli_keeps_the_kind_of_an_existing_database(tiny_db_spectrogram, tmp_path):
    import argparse

    from audiocopy.cli import _cnn_params

    assert _cnn_params(argparse.Namespace(model=None, db=str(tiny_db_spectrogram))).kind == "spectrogram"
    assert _cnn_params(argparse.Namespace(model=None, db=str(tmp_path / "new"))).kind == "embedding"
    assert _cnn_params(argparse.Namespace(model="spectrogram", db=str(tmp_path / "new"))).kind == "spectrogram"
    assert TrainParams().head_learning_rate < TrainParams().learning_rate


@pytest.mark.gpu
def test_stacked_heads_on_cupy_equal_numpy(rng):
    from audiocopy.signal import xp as xpmod

    xp = xpmod.get_xp()
    if xp is np:
        pytest.skip("no usable CuPy/CUDA GPU: get_xp() returned numpy")
    # Built from plain arrays (no Keras needed): three tracks of different lengths.
    heads = [HeadWeights(_unit(rng, k), (0.2 * rng.standard_normal(k)).astype(np.float32), 1.5, -0.3, N_SUB, 1)
             for k in (12, 300, 41)]
    emb = np.stack([_unit(rng, N_SUB) for _ in range(9)])
    mask = (rng.random((9, N_SUB)) > 0.1).astype(np.float32)
    on_gpu = StackedHeads(heads, xp=xp).logits(emb, mask)
    assert isinstance(on_gpu, np.ndarray)
    np.testing.assert_allclose(on_gpu, StackedHeads(heads).logits(emb, mask), atol=1e-4)


def test_the_engine_scores_heads_on_the_array_module_of_its_features(tiny_db, monkeypatch):
    """Features computed on a GPU arrive as CuPy arrays; the engine then builds its heads there too.

    Without a GPU, NumPy under another module identity plays CuPy's part.
    """
    from audiocopy.engines.cnnbin import engine as cnnbin

    engine = Recognizer.open(tiny_db).engine
    feats = np.random.default_rng(3).standard_normal((4, 75, 72)).astype(np.float32)
    on_numpy = engine.score_features(feats).margins
    alias = _ArrayModuleAlias()
    monkeypatch.setattr(cnnbin, "array_module", lambda array: alias)
    np.testing.assert_allclose(engine.score_features(feats).margins, on_numpy, atol=1e-5)
    assert set(engine._head_stacks) == {np, alias} and engine._heads_on(alias).xp is alias


def test_a_track_over_the_size_budget_is_warned_about(tiny_db, monkeypatch, caplog):
    import logging

    from audiocopy.encoder.artifact import load_encoder
    from audiocopy.training import fit_head
    from audiocopy.training.dataset import Dataset
    from audiocopy.training.fit_cnnbin import calibration_windows

    ds = Dataset(tiny_db / "dataset")
    encoder = load_encoder(audio=ds.audio, features=ds.features)
    inputs = fit_head.embed_dataset(ds, encoder, hop_frames=CnnParams().hop_frames)
    monkeypatch.setattr(fit_head, "MODEL_BUDGET_MB", 0.01)  # a 12 s track has ~70 prototypes, 0.018 MB
    with caplog.at_level(logging.WARNING, logger="audiocopy.training.fit_head"):
        result = fit_head.fit_track_head(ds, "chord", encoder=encoder, inputs=inputs, cnn=CnnParams(),
                                         train=TrainParams(epochs=1), calibration=calibration_windows(ds, inputs.rows))
    assert "is long" in caplog.text and "budget" in caplog.text
    assert result.metrics["prototypes"] == result.model.get_layer("prototypes").get_weights()[1].size
