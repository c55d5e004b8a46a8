"""Tests for ``audiocopy.training.dataset`` on a tiny synthetic corpus.

Three licensed and six "wrong" seeded melodies of 6 s each, a handful of
windows per track: one build takes about two seconds on one core. The
dataset is built once per module; tests that change it work on a copy.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth import melody

from audiocopy.config import AudioParams, AugmentParams, DatasetParams, FeatureParams
from audiocopy.errors import DatasetError
from audiocopy.signal.features import feature_shape
from audiocopy.training.dataset import (
    MANIFEST,
    MIN_WRONG_TRACKS,
    WINDOWS_DIR,
    BuildPlan,
    Dataset,
    Source,
    build_dataset,
    plan_sources,
    windows_wanted,
)
from audiocopy.training.sources import CALIBRATION_SHARE

FILE_RATE = 22050
PARAMS = DatasetParams(positives_per_track=8, windows_per_wrong=4, windows_per_calibration=4)
PLAN = BuildPlan(AudioParams(), FeatureParams(), AugmentParams(), PARAMS)
LICENSED = [f"track{i}" for i in range(3)]
WRONG = [f"wrong{i}" for i in range(6)]
LOGGER = "audiocopy.training.dataset"


def build(lic: Path, wrong: Path | None, out: Path, plan: BuildPlan = PLAN) -> dict:
    return build_dataset(lic, wrong, out, plan, jobs=1, progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dscorpus")
    (root / "licensed").mkdir()
    (root / "wrong").mkdir()
    for i, name in enumerate(LICENSED):
        sf.write(root / "licensed" / f"{name}.wav", melody(10 + i, 6, FILE_RATE), FILE_RATE)
    for i, name in enumerate(WRONG):
        sf.write(root / "wrong" / f"{name}.wav", melody(50 + i, 6, FILE_RATE), FILE_RATE)
    (root / "licensed" / "README.txt").write_text("not audio: ignored")
    return root


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("dsbuilt") / "dataset"
    return out, build(corpus / "licensed", corpus / "wrong", out)


@pytest.fixture
def copy_of_built(built, tmp_path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(built[0], out)
    return out


def shards(out: Path) -> dict[str, np.ndarray]:
    return {p.name: np.load(p) for p in sorted((out / WINDOWS_DIR).iterdir())}


# --------------------------------------------------------------------------- a complete build

def test_manifest_complete(built, corpus):
    out, manifest = built
    on_disk = json.loads((out / MANIFEST).read_text())
    assert json.loads(json.dumps(manifest)) == on_disk  # the returned dict is what was written
    assert manifest["complete"] is True
    assert manifest["failed"] == []
    assert manifest["format_version"] == 1
    for key, value in json.loads(json.dumps(PLAN.to_json())).items():
        assert on_disk[key] == value
    sources = manifest["sources"]
    assert [s["track_id"] for s in sources if s["role"] == "licensed"] == LICENSED
    assert sorted(s["track_id"] for s in sources if s["role"] == "wrong") == WRONG
    assert all(s["split"] == "train" for s in sources if s["role"] == "licensed")
    assert {s["split"] for s in sources if s["role"] == "wrong"} <= {"train", "calibration"}
    assert len({s["file"] for s in sources}) == len(sources) == 9
    for s in sources:
        assert Path(s["path"]).is_file() and Path(s["path"]).parent.parent == corpus
        assert (out / s["file"]).is_file()


def test_shards_shapes_and_dtype(built):
    out, manifest = built
    frames, bands = feature_shape(audio=PLAN.audio, params=PLAN.features)
    assert sorted(os.listdir(out / WINDOWS_DIR)) == sorted(Path(s["file"]).name for s in manifest["sources"])
    for s in manifest["sources"]:
        arr = np.load(out / s["file"])
        assert arr.dtype == np.float16
        assert arr.shape == (windows_wanted(Source(**s), PARAMS), frames, bands)
        assert arr.shape[0] == (8 if s["role"] == "licensed" else 4)
        assert np.all(np.isfinite(arr))
        # Standardised features survive float16 storage.
        w = arr.astype(np.float32)
        np.testing.assert_allclose(w.mean(axis=(1, 2)), 0.0, atol=0.01)
        np.testing.assert_allclose(w.std(axis=(1, 2)), 1.0, atol=0.01)


def test_windows_differ_between_tracks_and_draws(built):
    out, manifest = built
    arrays = [np.load(out / s["file"]).astype(np.float32) for s in manifest["sources"]]
    for i in range(len(arrays)):
        # Draws of one track are not copies of each other...
        assert np.abs(arrays[i][0] - arrays[i][1]).mean() > 0.05
        for j in range(i):  # ...and no two tracks got the same windows (seeded by track id).
            assert np.abs(arrays[i][0] - arrays[j][0]).mean() > 0.05


def test_dataset_reader(built):
    out, manifest = built
    ds = Dataset(out)
    assert ds.licensed_ids() == LICENSED
    assert ds.audio == PLAN.audio and ds.features == PLAN.features
    src = ds.source("track1")
    assert src.role == "licensed"
    w = ds.windows(src)
    np.testing.assert_array_equal(w, np.load(out / src.file))
    assert ds.source("wrong0", role="wrong").role == "wrong"
    with pytest.raises(DatasetError, match="nope"):
        ds.source("nope")
    with pytest.raises(DatasetError):
        ds.source("wrong0")  # not a licensed track


def test_dataset_reader_missing_shard(copy_of_built):
    ds = Dataset(copy_of_built)
    src = ds.source("track0")
    (copy_of_built / src.file).unlink()
    with pytest.raises(DatasetError, match="missing or corrupt"):
        ds.windows(src)


# --------------------------------------------------------------------------- determinism and resume

def test_deterministic_rebuild(built, corpus, tmp_path):
    out, manifest = built
    out2 = tmp_path / "again"
    manifest2 = build(corpus / "licensed", corpus / "wrong", out2)
    assert manifest2["sources"] == manifest["sources"]
    first, second = shards(out), shards(out2)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_resume_rebuilds_only_missing_shard(built, corpus, copy_of_built, caplog):
    out = copy_of_built
    original = shards(out)
    victim = sorted(original)[4]
    (out / WINDOWS_DIR / victim).unlink()
    old_ns = 1_000_000_000 * 10**9  # 2001-09-09: far from "now", so any rewrite shows
    for name in original:
        if name != victim:
            os.utime(out / WINDOWS_DIR / name, ns=(old_ns, old_ns))

    with caplog.at_level(logging.INFO, logger=LOGGER):
        manifest = build(corpus / "licensed", corpus / "wrong", out)

    assert manifest["complete"] is True
    assert any("9 sources, 1 to build" in r.getMessage() for r in caplog.records)
    for name in original:
        path = out / WINDOWS_DIR / name
        if name == victim:
            assert path.stat().st_mtime_ns > old_ns
        else:
            assert path.stat().st_mtime_ns == old_ns, f"{name} was rewritten"
    # The rebuilt shard is bit-identical to the original one (same seed, same music bank).
    np.testing.assert_array_equal(np.load(out / WINDOWS_DIR / victim), original[victim])
    assert not [p for p in (out / WINDOWS_DIR).iterdir() if ".part" in p.name]


def test_interrupted_build_is_finished_by_rerun(corpus, copy_of_built):
    out = copy_of_built
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["complete"] = False  # as left by a crash mid-build
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="incomplete"):
        Dataset(out)
    assert build(corpus / "licensed", corpus / "wrong", out)["complete"] is True
    assert Dataset(out).licensed_ids() == LICENSED


def test_warning_below_min_wrong_tracks(corpus, copy_of_built, caplog):
    assert len(WRONG) < MIN_WRONG_TRACKS
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        build(corpus / "licensed", corpus / "wrong", copy_of_built)  # nothing left to build: fast
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == LOGGER]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert f"only {len(WRONG)} wrong tracks" in text and str(MIN_WRONG_TRACKS) in text


# --------------------------------------------------------------------------- failures

def test_corrupt_licensed_file_is_reported_and_build_goes_on(corpus, tmp_path, caplog):
    lic, wrong = tmp_path / "lic", tmp_path / "wrong"
    lic.mkdir()
    wrong.mkdir()
    broken = lic / "a_broken.wav"  # sorts first: the build must go on after it
    broken.write_bytes(b"RIFF....WAVEthis is not audio\n" * 50)
    shutil.copy(corpus / "licensed" / "track0.wav", lic / "track0.wav")
    for name in WRONG[:2]:
        shutil.copy(corpus / "wrong" / f"{name}.wav", wrong / f"{name}.wav")
    short = wrong / "short.wav"  # decodes fine but is shorter than one window
    sf.write(short, melody(99, 1.0, FILE_RATE), FILE_RATE)
    out = tmp_path / "out"

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        manifest = build(lic, wrong, out)

    assert manifest["complete"] is True
    assert len(manifest["failed"]) == 2
    failure, too_short = manifest["failed"]
    assert failure["file"].startswith(f"{WINDOWS_DIR}/L-a_broken")
    assert str(broken) in failure["error"]
    assert too_short["file"].startswith(f"{WINDOWS_DIR}/W-short")
    assert str(short) in too_short["error"] and "1.00 s" in too_short["error"]
    for f in manifest["failed"]:
        assert not (out / f["file"]).exists()
    assert [s["track_id"] for s in manifest["sources"] if s["role"] == "licensed"] == ["track0"]
    assert sorted(s["track_id"] for s in manifest["sources"] if s["role"] == "wrong") == WRONG[:2]
    for s in manifest["sources"]:
        assert (out / s["file"]).is_file()
    assert any("skipped a source" in r.getMessage() and str(broken) in r.getMessage() for r in caplog.records)
    assert Dataset(out).licensed_ids() == ["track0"]


@pytest.mark.parametrize("change", [
    {"dataset": DatasetParams(positives_per_track=8, windows_per_wrong=4, windows_per_calibration=4, seed=1)},
    {"features": FeatureParams(n_bins=60)},
    {"audio": AudioParams(hop_seconds=0.25)},
], ids=["dataset.seed", "features.n_bins", "audio.hop_seconds"])
def test_other_params_are_refused(corpus, copy_of_built, change):
    out = copy_of_built
    before = {p: p.read_bytes() for p in [out / MANIFEST, *sorted((out / WINDOWS_DIR).iterdir())]}
    plan = BuildPlan(**{**dict(audio=PLAN.audio, features=PLAN.features, augment=PLAN.augment,
                               dataset=PLAN.dataset), **change})
    field = next(iter(change))
    with pytest.raises(DatasetError, match="other parameters") as info:
        build(corpus / "licensed", corpus / "wrong", out, plan)
    assert str(out) in str(info.value)
    assert f"{field}." in str(info.value)
    # Nothing was touched.
    assert {p: p.read_bytes() for p in before} == before
    assert len(list((out / WINDOWS_DIR).iterdir())) == len(before) - 1


def test_corrupt_manifest_is_dataset_error(corpus, copy_of_built):
    (copy_of_built / MANIFEST).write_text("{ not json")
    with pytest.raises(DatasetError, match="unreadable"):
        build(corpus / "licensed", corpus / "wrong", copy_of_built)
    with pytest.raises(DatasetError):
        Dataset(copy_of_built)


@pytest.mark.parametrize("where", ["licensed", "wrong"])
def test_duplicate_stems_are_refused(tmp_path, where):
    lic, wrong = tmp_path / "lic", tmp_path / "wrong"
    lic.mkdir()
    wrong.mkdir()
    x = melody(1, 3, FILE_RATE)
    sf.write(lic / "solo.wav", x, FILE_RATE)
    sf.write(wrong / "other.wav", x, FILE_RATE)
    folder = lic if where == "licensed" else wrong
    sf.write(folder / "a.wav", x, FILE_RATE)
    sf.write(folder / "a.flac", x, FILE_RATE)
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=r"\['a'\]"):
        build(lic, wrong, out)
    assert not out.exists()


def test_empty_licensed_folder(tmp_path, corpus):
    lic = tmp_path / "lic"
    lic.mkdir()
    (lic / "notes.txt").write_text("no audio here")
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match="no audio files"):
        build(lic, corpus / "wrong", out)
    assert not out.exists()


def test_missing_licensed_folder(tmp_path, corpus):
    with pytest.raises(DatasetError, match="not found"):
        build(tmp_path / "absent", corpus / "wrong", tmp_path / "out")


def test_dataset_on_missing_dir(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        Dataset(tmp_path / "nothing")


# --------------------------------------------------------------------------- calibration split

def test_calibration_split_matches_manifest_and_fixture_has_both(built):
    _, manifest = built
    splits = {s["track_id"]: s["split"] for s in manifest["sources"] if s["role"] == "wrong"}
    assert "calibration" in splits.values() and "train" in splits.values()
    again = plan_sources([], [Path("/elsewhere") / f"{t}.mp3" for t in reversed(WRONG)])
    assert {s.track_id: s.split for s in again} == splits


def test_calibration_split_is_by_track_id_only(tmp_path):
    ids = [f"song-{i:04d}" for i in range(2000)]
    a = plan_sources([], [tmp_path / "x" / f"{t}.wav" for t in ids])
    rng = np.random.default_rng(0)
    shuffled = [ids[i] for i in rng.permutation(len(ids))][:1500] + ["extra-1", "extra-2"]
    b = plan_sources([tmp_path / "lic" / "song-0001.wav"], [tmp_path / "y" / f"{t}.flac" for t in shuffled])
    split_a = {s.track_id: s.split for s in a}
    split_b = {s.track_id: s.split for s in b if s.role == "wrong"}
    # Same id -> same split, whatever the folder, extension, order or companions.
    assert all(split_b[t] == split_a[t] for t in shuffled[:1500])
    # About CALIBRATION_SHARE of the ids are held out (binomial sd ~ 0.009 at n=2000).
    share = sum(v == "calibration" for v in split_a.values()) / len(ids)
    assert abs(share - CALIBRATION_SHARE) < 0.04
    # A licensed track is always trained on, even if its id would hash into calibration.
    calib_id = next(t for t in ids if split_a[t] == "calibration")
    (lic_src,) = plan_sources([tmp_path / f"{calib_id}.wav"], [])
    assert lic_src.role == "licensed" and lic_src.split == "train"


def test_windows_wanted_by_role_and_split():
    params = DatasetParams(positives_per_track=11, windows_per_wrong=5, windows_per_calibration=7)
    mk = lambda role, split: Source("t", "t.wav", role, split, "windows/x.npy")  # noqa: E731
    assert windows_wanted(mk("licensed", "train"), params) == 11
    assert windows_wanted(mk("wrong", "train"), params) == 5
    assert windows_wanted(mk("wrong", "calibration"), params) == 7
