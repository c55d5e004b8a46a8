"""Encoder training: the loss, the feature-space distortions, checkpoints and resume.

A few steps of a tiny encoder on seeded synthetic melodies: this checks the
machinery (cache, batches, checkpoint, export, resume, refusals), not the
quality of the shipped weights, which tools/train_encoder.py records.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth import melody

from audiocopy.config import ENCODER_AUGMENT, AudioParams, EncoderParams, EncoderTrainParams, FeatureParams
from audiocopy.encoder.artifact import load_encoder
from audiocopy.errors import DatasetError
from audiocopy.signal.features import track_band_db
from audiocopy.training.encoder import loop as fe
from audiocopy.training.encoder.feature_views import FeatureAugmenter, shift_bands
from audiocopy.training.encoder.loss import nt_xent

TINY = EncoderParams(widths=(4, 8), hidden_dim=16, embedding_dim=8)
TRAIN = EncoderTrainParams(batch_pairs=8, steps_per_epoch=2, epochs=1, views_per_track=2, view_seconds=3.0,
                              val_tracks=1, val_queries=8, warmup_steps=1)


@pytest.fixture(scope="module")
def tracks(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("enc_tracks")
    paths = []
    for i in range(4):
        path = root / f"t{i}.wav"
        sf.write(path, melody(200 + i, 8, 22050), 22050)
        paths.append(path)
    return paths


def test_nt_xent_is_low_for_matching_pairs_and_ignores_same_track_negatives():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    z = rng.standard_normal((4, 8)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    aligned = float(nt_xent(tf.constant(np.concatenate([z, z])), tf.constant([0, 1, 2, 3]), 0.1))
    shuffled = float(nt_xent(tf.constant(np.concatenate([z, z[::-1]])), tf.constant([0, 1, 2, 3]), 0.1))
    assert aligned < 0.5 < shuffled
    # Two pairs from one track: their cross terms are masked, so identical vectors cost nothing extra.
    same = np.concatenate([z[:1], z[:1], z[:1], z[:1]])
    masked = float(nt_xent(tf.constant(same), tf.constant([7, 7]), 0.1))
    assert masked == pytest.approx(0.0, abs=1e-4)


def _reference_nt_xent(z: np.ndarray, ids: np.ndarray, temperature: float) -> float:
    """The two-view NT-Xent written out row by row, as the literature states it."""
    n = len(z)
    b = n // 2
    sims = z @ z.T / temperature
    total = 0.0
    for i in range(n):
        j = (i + b) % n
        keep = [k for k in range(n) if k != i and (k == j or ids[k % b] != ids[i % b])]
        total += -(sims[i, j] - np.log(np.exp(sims[i, keep]).sum()))
    return total / n


def test_multi_positive_loss_is_nt_xent_for_two_views_and_rewards_agreeing_views():
    import tensorflow as tf

    rng = np.random.default_rng(3)
    z = rng.standard_normal((12, 8)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    ids = np.array([0, 1, 1, 2, 3, 4], dtype=np.int32)
    got = float(nt_xent(tf.constant(z), tf.constant(ids), 0.1, 2))
    assert got == pytest.approx(_reference_nt_xent(z, ids, 0.1), rel=1e-4)
    # Three views of each moment: identical views leave only the floor of two positives sharing
    # the softmax (log 2); views of other moments cost much more.
    base = z[:4]
    same = float(nt_xent(tf.constant(np.concatenate([base, base, base])), tf.constant([0, 1, 2, 3]), 0.1, 3))
    other = float(nt_xent(tf.constant(np.concatenate([base, base[::-1], base[[1, 2, 3, 0]]])),
                          tf.constant([0, 1, 2, 3]), 0.1, 3))
    assert same == pytest.approx(np.log(2), abs=0.05) and other > 2.0


def test_a_batch_holds_several_views_of_each_moment(tracks, tmp_path):
    from dataclasses import replace

    from audiocopy.training.encoder.cache import build_cache, load_cache
    from audiocopy.training.encoder.pairs import PairSampler

    train = replace(TRAIN, positives_per_anchor=2)
    cache = load_cache(build_cache(tracks, tmp_path, train=train, progress=False))
    aug = FeatureAugmenter(audio=AudioParams(), features=FeatureParams(), aug=ENCODER_AUGMENT, seed=0, frames=30)
    sampler = PairSampler(cache, augmenter=aug, train=train, floor_db=80.0, frames=30)
    views, ids = sampler.batch(np.random.default_rng(0), 5)
    assert views.shape == (3, 5, 30, 72) and ids.shape == (5,)
    assert np.isfinite(views).all()


def test_feature_space_speech_adds_energy_in_the_voice_band(tracks):
    from dataclasses import replace

    from audiocopy.signal.audio import load_audio
    from audiocopy.signal.features import band_centres_hz

    audio, features = AudioParams(), FeatureParams()
    clean, energy = track_band_db(load_audio(tracks[0], params=audio), audio=audio, features=features,
                                  with_energy=True)
    only = dict(p_speed=0, p_pitch=0, p_stretch=0, p_noise=0, p_music=0, p_phone=0, p_reverb=0, p_codec=0)
    quiet = FeatureAugmenter(audio=audio, features=features, aug=replace(ENCODER_AUGMENT, **only, p_speech=0.0),
                             seed=0, frames=30)
    loud = FeatureAugmenter(audio=audio, features=features, seed=0, frames=30,
                            aug=replace(ENCODER_AUGMENT, **only, p_speech=1.0, speech_snr_db_range=(0.0, 0.0)))
    a, centre = quiet.positive(clean, energy, np.random.default_rng(5), None)
    b, _ = loud.positive(clean, energy, np.random.default_rng(5), None, centre=centre)
    voice = (band_centres_hz(features) > 300) & (band_centres_hz(features) < 3000)
    gain_db = (b - a)[:, voice].mean()
    assert gain_db > 1.0  # speech as loud as the music lifts the voice band
    assert np.all(b >= a - 1e-3)  # power only adds


def test_feature_space_pitch_shift_moves_content_up_the_band_axis():
    levels = np.full((4, 72), 1e-6, dtype=np.float32)
    levels[:, 30] = 1.0
    shifted = shift_bands(levels, 2.0)
    assert int(np.argmax(shifted[0])) == 32


def test_feature_space_positive_tracks_its_centre(tracks):
    audio, features = AudioParams(), FeatureParams()
    from audiocopy.signal.audio import load_audio

    clean, energy = track_band_db(load_audio(tracks[0], params=audio), audio=audio, features=features,
                                  with_energy=True)
    aug = FeatureAugmenter(audio=audio, features=features, aug=ENCODER_AUGMENT, seed=0, frames=30)
    rng = np.random.default_rng(1)
    for _ in range(20):
        levels, centre = aug.positive(clean, energy, rng, None)
        assert levels.shape == (30, 72) and np.isfinite(levels).all()
        assert 14 <= centre <= len(clean) - 15


def test_training_checkpoints_exports_and_resumes(tracks, tmp_path):
    out = tmp_path / "weights" / "enc.json"
    state = fe.train_encoder(tracks, tmp_path / "work", out, encoder=TINY, train=TRAIN, progress=False)
    assert state.epoch == 1 and len(state.history) == 1
    record = json.loads(out.read_text())
    assert record["encoder"]["embedding_dim"] == 8 and record["training"]["epochs"] == 1
    enc = load_encoder(out, audio=AudioParams(), features=FeatureParams())
    assert enc.embed(np.zeros((1, 30, 72), np.float32)).shape == (1, 8)

    # Resume: a longer schedule continues from the checkpoint instead of starting over.
    longer = EncoderTrainParams(**{**TRAIN.__dict__, "epochs": 2})
    state = fe.train_encoder(tracks, tmp_path / "work", out, encoder=TINY, train=longer, progress=False)
    assert state.epoch == 2 and [h["epoch"] for h in state.history] == [1, 2]

    # Other settings in the same folder are refused, not mixed.
    other = EncoderTrainParams(**{**TRAIN.__dict__, "batch_pairs": 4})
    with pytest.raises(DatasetError, match="other settings"):
        fe.train_encoder(tracks, tmp_path / "work", out, encoder=TINY, train=other, progress=False)


def test_a_new_stage_goes_on_with_other_augmentation_and_the_record_lists_the_earlier_one(tracks, tmp_path):
    from dataclasses import replace

    from audiocopy.errors import ConfigError

    out, work = tmp_path / "enc.json", tmp_path / "work"
    with pytest.raises(ConfigError, match="holds none"):  # a stage goes on from something
        fe.train_encoder(tracks, work, out, encoder=TINY, train=TRAIN, next_stage=True, progress=False)
    fe.train_encoder(tracks, work, out, encoder=TINY, train=TRAIN, progress=False)
    harder = replace(ENCODER_AUGMENT, p_speech=0.5, speech_snr_db_range=(-9.0, 3.0))
    longer = EncoderTrainParams(**{**TRAIN.__dict__, "epochs": 2})
    # Without asking for a stage, other augmentation is refused, and the error says how to ask.
    with pytest.raises(DatasetError, match="--next-stage"):
        fe.train_encoder(tracks, work, out, encoder=TINY, aug=harder, train=longer, progress=False)
    state = fe.train_encoder(tracks, work, out, encoder=TINY, aug=harder, train=longer, next_stage=True,
                             progress=False)
    assert state.epoch == 2 and len(state.stages) == 1
    stage = state.stages[0]
    assert stage["until_epoch"] == 1 and stage["augment"]["p_speech"] == ENCODER_AUGMENT.p_speech
    record = json.loads(out.read_text())["training"]
    assert record["augment"]["p_speech"] == 0.5 and record["stages"] == state.stages
    assert record["epochs"] == 2  # the new stage's first epoch is its best so far: exported
    # Rerunning the stage's command resumes it; no second stage is added.
    again = fe.train_encoder(tracks, work, out, encoder=TINY, aug=harder, train=longer, next_stage=True,
                             progress=False)
    assert again.epoch == 2 and len(again.stages) == 1
    # Other settings than augmentation stay refused, stage or not.
    other = EncoderTrainParams(**{**TRAIN.__dict__, "batch_pairs": 4, "epochs": 3})
    with pytest.raises(DatasetError, match="other settings"):
        fe.train_encoder(tracks, work, out, encoder=TINY, aug=ENCODER_AUGMENT, train=other, next_stage=True,
                         progress=False)


def test_time_budget_stops_before_the_first_epoch(tracks, tmp_path):
    state = fe.train_encoder(tracks, tmp_path / "w", tmp_path / "e.json", encoder=TINY, train=TRAIN,
                             max_minutes=0.0, progress=False)
    assert state.epoch == 0 and (tmp_path / "w" / "cache" / "cache.json").is_file()


@pytest.fixture(scope="module")
def tool():
    """``tools/train_encoder.py``, imported from the tools folder as the benchmark tests import their tools."""
    import train_encoder

    return train_encoder


def test_train_encoder_tool_leaves_out_benchmark_and_calibration_tracks(tool, tmp_path):
    from audiocopy.training.sources import is_calibration_track

    names = [f"track{i:02d}" for i in range(30)]
    for name in names:
        (tmp_path / f"{name}.wav").write_bytes(b"RIFF")  # only names matter here
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"catalog": names[:5], "unseen": names[5:8], "wrong": names[8:]}))
    chosen, summary = tool.select_tracks(tmp_path, [split], keep_calibration=False)
    stems = {p.stem for p in chosen}
    held_out = {n for n in names if is_calibration_track(n)}
    assert not stems & set(names[:8]) and not stems & held_out
    assert stems == set(names[8:]) - held_out and summary["trained_tracks"] == len(stems)


def test_sampling_weights_set_how_often_each_track_is_drawn(tracks, tmp_path):
    from audiocopy.training.encoder.cache import build_cache, load_cache
    from audiocopy.training.encoder.pairs import PairSampler

    cache = load_cache(build_cache(tracks, tmp_path, train=TRAIN, progress=False))
    aug = FeatureAugmenter(audio=AudioParams(), features=FeatureParams(), aug=ENCODER_AUGMENT, seed=0, frames=30)
    heavy = cache[0].track_id
    sampler = PairSampler(cache, augmenter=aug, train=TRAIN, floor_db=80.0, frames=30, weights={heavy: 50.0})
    rng = np.random.default_rng(0)
    counts = np.bincount(np.concatenate([sampler.batch(rng, 1)[1] for _ in range(200)]), minlength=len(cache))
    assert counts[0] > 0.8 * counts.sum()  # 50 / (50 + 3) of the draws, give or take
    with pytest.raises(DatasetError):
        PairSampler(cache, augmenter=aug, train=TRAIN, floor_db=80.0, frames=30, weights={heavy: 0.0})


def test_train_encoder_tool_overrides_the_augmentation_and_refuses_bad_values(tool):
    aug = tool.augment_params(["p_chain=0", "speed_range=0.9,1.1"])
    assert aug.p_chain == 0.0 and aug.speed_range == (0.9, 1.1) and aug.p_pitch == ENCODER_AUGMENT.p_pitch
    assert tool.augment_params([]) == ENCODER_AUGMENT
    for bad, why in [("p_nothing=1", "expected FIELD=VALUE"), ("p_chain", "expected FIELD=VALUE"),
                     ("p_chain=often", "not a number"), ("speed_range=1", "takes LOW,HIGH"),
                     ("p_chain=0.2,0.3", "takes one number"), ("p_chain=1.5", "must lie in")]:
        with pytest.raises(tool.BenchError, match=why):
            tool.augment_params([bad])


def test_train_encoder_tool_takes_a_seed_and_several_positives_and_refuses_bad_ones(tool, capsys):
    base = ["--corpus", "c"]
    args = tool.parse_args(base + ["--seed", "3", "--positives-per-anchor", "2"])
    assert (args.seed, args.positives_per_anchor) == (3, 2)
    defaults = tool.parse_args(base)
    assert (defaults.seed, defaults.positives_per_anchor) == (EncoderTrainParams().seed, 1)
    for bad, why in [(["--seed", "-1"], "--seed must be >= 0"),
                     (["--positives-per-anchor", "0"], "--positives-per-anchor must be at least 1")]:
        with pytest.raises(SystemExit):
            tool.parse_args(base + bad)
        assert why in capsys.readouterr().err


def test_the_default_training_augmentation_is_the_shipped_encoders():
    """A newcomer who runs the training tool without ``--augment`` gets the shipped recipe, not an older one."""
    from audiocopy.config import as_dict
    from audiocopy.encoder.artifact import SHIPPED_ENCODER, read_encoder_record

    recorded = read_encoder_record(SHIPPED_ENCODER)["training"]["augment"]
    defaults = json.loads(json.dumps(as_dict(ENCODER_AUGMENT)))  # tuples as the record's lists
    assert defaults == recorded
