"""The density-weight tuning tool (``tools/tune_density.py``, ``tools/bench/tuning_set.py``) on tiny synthetic audio.

What must hold: the tuning set is built from the wrong tracks only, split by
package, with the calibration hold-out left to calibration; every query
window is labelled with its condition and its expected track; the choice
rule never picks a weight whose false positives are out of bounds; and a
bad weight list is refused. No corpus, no network.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from bench.common import BenchError
from bench.tuning_set import CONDITIONS, query_levels, tuning_split
from tune_density import choose, weights

from audiocopy.config import AudioParams, FeatureParams
from audiocopy.training.sources import is_calibration_track

#: Package -> track count of the synthetic wrong folder.
SIZES = {"alpha": 6, "bravo": 5, "charlie": 5, "delta": 4, "echo": 5, "foxtrot": 4}


def _wrong_folder(root: Path, sizes=SIZES, seconds: float = 8.0) -> tuple[Path, dict]:
    """Seeded noise bursts as wrong tracks, one WAV each, and the split record naming their packages."""
    folder = root / "wrong"
    folder.mkdir()
    rng = np.random.default_rng(0)
    packages = {}
    for package, n in sizes.items():
        for i in range(n):
            track = f"{package}__t{i}"
            sf.write(folder / f"{track}.wav", (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32),
                     16000)
            packages[track] = package
    return folder, {"track_packages": packages}


def test_the_tuning_split_keeps_packages_apart_and_the_hold_out_out(tmp_path):
    folder, record = _wrong_folder(tmp_path)
    split = tuning_split(folder, record, seed=0, rule="track")
    pk = record["track_packages"]
    catalog_pk = {pk[f.stem] for f in split.catalog}
    negative_pk = {pk[f.stem] for f in split.negatives}
    assert catalog_pk and negative_pk and not catalog_pk & negative_pk
    assert catalog_pk == set(split.catalog_packages) and negative_pk == set(split.negative_packages)
    used = [f.stem for f in split.catalog + split.negatives]
    assert not any(is_calibration_track(t) for t in used)
    assert split.held_out == sum(is_calibration_track(t) for t in pk)
    assert len(used) + split.held_out == len(pk)


def test_the_tuning_split_leaves_out_the_hold_out_its_calibration_reads_whole_packages_by_the_group_rule(tmp_path):
    """The tuning database calibrates on ``calibration_tracks`` by its encoder's rule; the split must leave out
    exactly those. Before, it left out the per-track hold-out whatever the rule: with the group rule a held-out
    package could land in the tuning catalogue (its tracks among the calibration negatives: nothing was found)
    or among the tuning negatives (false positives measured on the calibration windows themselves)."""
    from audiocopy.config import CalibrationParams
    from audiocopy.training.calibration_windows import calibration_tracks
    from audiocopy.training.sources import list_audio

    folder, record = _wrong_folder(tmp_path, seconds=1.0)
    held = {f.stem for f in calibration_tracks(list_audio(folder), CalibrationParams(), "group")}
    assert held and held != {t for t in record["track_packages"] if is_calibration_track(t)}
    split = tuning_split(folder, record, seed=0, rule="group")
    used = {f.stem for f in split.catalog + split.negatives}
    assert not used & held and len(used) + split.held_out == len(record["track_packages"])
    pk = record["track_packages"]
    assert not {pk[t] for t in held} & {pk[t] for t in used}  # whole packages held out


def test_the_tuning_split_refuses_one_package_or_unknown_tracks(tmp_path):
    folder, record = _wrong_folder(tmp_path, sizes={"alpha": 29}, seconds=1.0)
    with pytest.raises(BenchError, match="at least two"):
        tuning_split(folder, record, seed=0, rule="track")
    with pytest.raises(BenchError, match="not in the split"):
        tuning_split(folder, {"track_packages": {}}, seed=0, rule="track")
    # Too few negatives for a hold-out: the calibration reads them all, and nothing is left to tune on.
    (tmp_path / "few").mkdir()
    few, few_record = _wrong_folder(tmp_path / "few", sizes={"alpha": 3, "bravo": 3}, seconds=1.0)
    with pytest.raises(BenchError, match="every wrong track"):
        tuning_split(few, few_record, seed=0, rule="track")


def test_every_tuning_window_is_labelled_with_its_condition_and_track(tmp_path):
    folder, record = _wrong_folder(tmp_path)
    split = tuning_split(folder, record, seed=0, rule="track")
    qs = query_levels(split, fragments=2, seed=0, audio=AudioParams(), features=FeatureParams(),
                      voice_dir=tmp_path / "voices", progress=False)
    n_tracks = len(split.catalog) + len(split.negatives)
    assert len(qs.levels) == len(qs.condition) == len(qs.expected) == n_tracks * 2 * len(CONDITIONS)
    assert qs.levels.shape[2] == FeatureParams().n_bins
    assert sorted(set(qs.condition)) == sorted(CONDITIONS)
    assert set(qs.expected) == {f.stem for f in split.catalog} | {""}
    # The same fragment in every condition: the clean and noisy windows of one fragment differ.
    clean, noisy = qs.levels[qs.condition == "clean"], qs.levels[qs.condition == "noise-0db"]
    assert not np.allclose(clean, noisy)
    again = query_levels(split, fragments=2, seed=0, audio=AudioParams(), features=FeatureParams(),
                         voice_dir=tmp_path / "voices", progress=False)
    assert np.array_equal(again.levels, qs.levels)  # seeded


def _row(weight, hit, fp):
    return {"weight": weight, "conditions": {"all": {"hit": hit, "fp": fp}}}


def test_the_choice_rule_keeps_false_positives_in_bounds_and_prefers_the_smaller_weight_on_ties():
    rows = [_row(0.0, 60.0, 0.4), _row(0.25, 70.0, 0.9), _row(0.5, 70.0, 0.6), _row(0.75, 90.0, 1.5)]
    assert choose(rows, max_fp=1.0)["weight"] == 0.25
    assert choose(rows, max_fp=0.5)["weight"] == 0.0
    assert choose(rows, max_fp=0.1) is None


@pytest.mark.parametrize("text", ["a,b", "1.0", "-0.1,0.5", ""])
def test_a_bad_weight_list_is_refused(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        weights(text)
    assert weights("0.5,0,0.5") == [0.0, 0.5]


def test_the_report_says_how_much_of_the_tuning_set_the_encoder_heard(tmp_path):
    import json

    from bench.tuning_set import TuningSplit
    from tune_density import heard_counts, heard_sentence

    from audiocopy.encoder.artifact import ARTIFACT_FORMAT, ARTIFACT_VERSION
    from audiocopy.engines.fingerprint import db as fpdb

    def db_hearing(name, training):
        db = tmp_path / name
        db.mkdir()
        (db / fpdb.ENCODER_FILE).write_text(json.dumps({"format": ARTIFACT_FORMAT,
                                                        "format_version": ARTIFACT_VERSION, "training": training}))
        return db

    split = TuningSplit(catalog=(Path("a__1.wav"), Path("a__2.wav")), negatives=(Path("b__1.wav"),),
                        catalog_packages=("a",), negative_packages=("b",), held_out=0)
    heard = heard_counts(db_hearing("some", {"trained_track_ids": ["a__2", "b__1", "c__9"]}), split)
    assert heard == {"catalog": 1, "negatives": 1}
    text = heard_sentence(heard, {"catalog": 2, "negatives": 1})
    assert "1 of the 2 tuning catalogue tracks" in text and "1 of the 1 negatives" in text
    unknown = heard_counts(db_hearing("old", {}), split)
    assert "does not list" in heard_sentence(unknown, {"catalog": 2, "negatives": 1})
