"""The calibration hold-out by group (``training.sources.calibration_holdout``) and the dataset's roles.

A cnnbin head trained against some tracks of a group (a package, an album)
rejects that group's other tracks more easily than music it never met, so
a threshold set on a track-level hold-out promises a false-positive rate
that unseen music does not get. These tests hold the rule: whole groups,
near the share, stable, and unchanged for names without groups; and the
dataset refuses to resume when the rule would move a track between roles.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth import melody

from audiocopy.config import AudioParams, AugmentParams, DatasetParams, FeatureParams
from audiocopy.errors import DatasetError
from audiocopy.training.dataset import BuildPlan, build_dataset, plan_sources
from audiocopy.training.sources import (
    CALIBRATION_SHARE,
    MIN_HOLDOUT_GROUPS,
    calibration_holdout,
    holdout_tracks,
    is_calibration_track,
    track_group,
)


def grouped_ids(groups: int, seed: int = 0, sizes=(1, 12)) -> list[str]:
    """Track ids ``gNN__tMM`` of ``groups`` groups with random sizes in [sizes)."""
    rng = np.random.default_rng(seed)
    return [f"g{g:02d}__t{t:02d}" for g in range(groups) for t in range(int(rng.integers(*sizes)))]


def test_track_group_reads_the_prefix():
    assert track_group("drascula-music__track31") == "drascula-music"
    assert track_group("a__b__c") == "a"
    assert track_group("solo") == "solo"


@pytest.mark.parametrize("seed", range(6))
def test_whole_groups_are_held_out_near_the_share(seed):
    ids = grouped_ids(20, seed)
    held = calibration_holdout(ids)
    groups_held = {track_group(t) for t in held}
    # No group is split between training and calibration (a per-track hash splits most of them).
    assert held == {t for t in ids if track_group(t) in groups_held}
    # Near the share: off by less than the largest group.
    assert abs(len(held) - CALIBRATION_SHARE * len(ids)) < 12
    assert 0 < len(groups_held) < 20


def test_the_per_track_rule_splits_groups():
    """What the group rule mends: the old per-track hash puts a group on both sides."""
    ids = grouped_ids(20, 0)
    split = {track_group(t) for t in ids if is_calibration_track(t)} & \
        {track_group(t) for t in ids if not is_calibration_track(t)}
    assert split


def test_order_and_duplicates_do_not_change_the_hold_out():
    ids = grouped_ids(15, 3)
    rng = np.random.default_rng(1)
    shuffled = [ids[i] for i in rng.permutation(len(ids))]
    assert calibration_holdout(shuffled + shuffled[:5]) == calibration_holdout(ids)


def test_names_without_groups_keep_the_per_track_rule():
    ids = [f"song-{i:04d}" for i in range(300)]
    assert calibration_holdout(ids) == {t for t in ids if is_calibration_track(t)}


def test_too_few_groups_fall_back_to_the_per_track_rule():
    ids = [f"g{g}__t{t:02d}" for g in range(MIN_HOLDOUT_GROUPS - 1) for t in range(30)]
    held = calibration_holdout(ids)
    assert held == {t for t in ids if is_calibration_track(t)}
    assert held  # 90 tracks: some hash into the fifth


def test_empty_folder_holds_nothing_out():
    assert calibration_holdout([]) == frozenset()


def test_plan_sources_follows_the_group_rule(tmp_path):
    ids = grouped_ids(12, 4)
    sources = plan_sources([], [tmp_path / f"{t}.wav" for t in ids])
    assert {s.track_id for s in sources if s.split == "calibration"} == calibration_holdout(ids)


TINY = BuildPlan(AudioParams(), FeatureParams(), AugmentParams(),
                 DatasetParams(positives_per_track=2, windows_per_wrong=1, windows_per_calibration=1))


def _write(folder: Path, ids: list[str], seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(ids):
        sf.write(folder / f"{t}.wav", melody(seed + i, 3.5, 22050), 22050)


def test_a_dataset_whose_roles_would_change_is_refused(tmp_path):
    """Groups added to the negatives can move a group between roles: resuming would mix two plans."""
    first = [f"g{g:02d}__t{t}" for g in range(5) for t in range(2)]
    more = next(extra for n in range(1, 30)
                if calibration_holdout(first + (extra := [f"h{n:02d}{g}__t{t}" for g in range(4) for t in range(2)]))
                & set(first) != calibration_holdout(first))
    _write(tmp_path / "lic", ["song"], 1)
    _write(tmp_path / "wrong", first, 10)
    out = tmp_path / "ds"
    build_dataset(tmp_path / "lic", tmp_path / "wrong", out, TINY, jobs=1, progress=False)
    # Another share (an encoder trained with --calibration-share): refused, and the message names the rule.
    assert holdout_tracks(first, "group@0.5") != calibration_holdout(first)
    with pytest.raises(DatasetError, match=r"calibration hold-out \(rule 'group@0.5'\) changed"):
        build_dataset(tmp_path / "lic", tmp_path / "wrong", out, TINY, jobs=1, progress=False, holdout="group@0.5")
    _write(tmp_path / "wrong", more, 40)
    with pytest.raises(DatasetError, match=r"calibration hold-out \(rule 'group'\) changed"):
        build_dataset(tmp_path / "lic", tmp_path / "wrong", out, TINY, jobs=1, progress=False)


def test_the_fingerprint_calibrates_on_the_hold_out_its_encoder_never_heard():
    """An encoder trained without whole groups (``tools/train_encoder.py``) is calibrated on those groups, as unseen
    music is (a track-level hold-out of negatives whose siblings it heard let 0.6 % through against 0.5 %); an
    encoder whose record predates the rule was trained without the per-track hash and keeps it."""
    from audiocopy.config import CalibrationParams
    from audiocopy.errors import ModelError
    from audiocopy.training.calibration_windows import calibration_tracks, encoder_holdout_rule

    assert encoder_holdout_rule({"training": {"calibration_holdout": "group"}}) == "group"
    assert encoder_holdout_rule({"training": {"command": "an old record"}}) == "track"
    assert encoder_holdout_rule({}) == "track"
    with pytest.raises(ModelError, match="unknown calibration hold-out"):
        encoder_holdout_rule({"training": {"calibration_holdout": "album"}})
    ids = grouped_ids(12, seed=3)
    files = [Path(f"/negatives/{i}.wav") for i in ids]
    chosen = {p.stem for p in calibration_tracks(files, CalibrationParams(), "group")}
    assert chosen == calibration_holdout(ids)
    assert {track_group(i) for i in chosen}.isdisjoint(track_group(i) for i in set(ids) - chosen)
    per_track = {p.stem for p in calibration_tracks(files, CalibrationParams(), "track")}
    assert per_track == {i for i in ids if is_calibration_track(i)} != chosen
    with pytest.raises(ValueError, match="unknown calibration hold-out"):
        calibration_tracks(files, CalibrationParams(), "album")


def _db_with_encoder_record(tmp_path: Path, training: dict) -> Path:
    """A database folder holding only its copy of an encoder record (all ``play_negatives`` reads)."""
    import json

    from audiocopy.encoder.artifact import ARTIFACT_FORMAT, ARTIFACT_VERSION
    from audiocopy.engines.fingerprint import db as fpdb

    db = tmp_path / "db"
    db.mkdir()
    (db / fpdb.ENCODER_FILE).write_text(json.dumps({"format": ARTIFACT_FORMAT, "format_version": ARTIFACT_VERSION,
                                                    "training": training}))
    return db


def test_the_play_threshold_is_set_on_every_negative_the_encoder_never_heard(tmp_path, caplog):
    """Not on tracks it trained on (they form fewer false hypotheses: an optimistic rate per hour), and not only
    on the window threshold's hold-out (a rate per hour needs hours)."""
    from audiocopy.config import CalibrationParams
    from audiocopy.training.calibration_windows import calibration_tracks, play_negatives

    ids = grouped_ids(12, seed=3)
    files = [Path(f"/negatives/{i}.wav") for i in ids]
    heard = sorted(ids)[: len(ids) // 2]
    db = _db_with_encoder_record(tmp_path, {"calibration_holdout": "group", "trained_track_ids": heard})
    chosen = play_negatives(db, files)
    assert [p.stem for p in chosen.files] == [i for i in ids if i not in set(heard)] and chosen.kind == "unheard"
    # A user's own negatives, none of which the encoder heard: every one of them.
    other = tmp_path / "other"
    other.mkdir()
    assert play_negatives(_db_with_encoder_record(other, {"trained_track_ids": ["x__1"]}), files).files == files
    # A record without the list: the hold-out its rule names.
    old = tmp_path / "old"
    old.mkdir()
    chosen = play_negatives(_db_with_encoder_record(old, {"calibration_holdout": "group"}), files)
    assert chosen.files == calibration_tracks(files, CalibrationParams(), "group") and chosen.kind == "holdout"
    # Heard them all: all of them, and a warning that the rate is optimistic.
    every = tmp_path / "every"
    every.mkdir()
    with caplog.at_level("WARNING"):
        chosen = play_negatives(_db_with_encoder_record(every, {"trained_track_ids": list(ids)}), files)
    assert chosen.files == files and chosen.kind == "heard"
    assert "optimistic" in caplog.text


def test_a_hold_out_rule_names_its_share_only_when_it_is_not_the_default():
    """"group@0.3" holds out three tenths of the negatives, whole groups; the plain names keep their old meaning, so
    records and calibration signatures written before shares could differ read the same."""
    from audiocopy.training.sources import holdout_rule_name, holdout_tracks, parse_holdout_rule

    ids = grouped_ids(20, seed=5)
    assert holdout_rule_name("group") == "group" and holdout_rule_name("group", 0.3) == "group@0.3"
    assert parse_holdout_rule("group@0.3") == ("group", 0.3) and parse_holdout_rule("track") == ("track", 0.2)
    assert holdout_tracks(ids, "group@0.3") == calibration_holdout(ids, 0.3) != calibration_holdout(ids)
    assert holdout_tracks(ids, "group") == calibration_holdout(ids)
    for bad, message in [("group@0.2", "canonical form 'group'"), ("group@x", "unreadable"),
                         ("group@1.5", "between 0 and 1"), ("track@0.3", "fixed share"), ("album", "unknown")]:
        with pytest.raises(ValueError, match=message):
            holdout_tracks(ids, bad)


def test_enrolment_follows_the_share_its_encoder_was_trained_without(tmp_path):
    """An encoder trained with a larger hold-out is calibrated on all of it, and databases calibrated with the
    default rule see their windows as out of date (their signature names the rule)."""
    from audiocopy.config import CalibrationParams
    from audiocopy.errors import ModelError
    from audiocopy.training.calibration_windows import (
        calibration_tracks,
        encoder_holdout_rule,
        holdout_rule,
        negatives_signature,
    )

    db = _db_with_encoder_record(tmp_path, {"calibration_holdout": "group", "calibration_share": 0.4})
    assert holdout_rule(db) == "group@0.4"
    ids = grouped_ids(20, seed=6)
    files = [Path(f"/negatives/{i}.wav") for i in ids]
    assert {p.stem for p in calibration_tracks(files, CalibrationParams(), holdout_rule(db))} == \
        calibration_holdout(ids, 0.4)
    assert encoder_holdout_rule({"training": {"calibration_holdout": "group", "calibration_share": 0.2}}) == "group"
    for share in (0, 1.2, "a lot"):
        with pytest.raises(ModelError, match="calibration hold-out is unusable"):
            encoder_holdout_rule({"training": {"calibration_holdout": "group", "calibration_share": share}})
    negatives = tmp_path / "negatives"
    _write(negatives, ids[:3], 7)
    assert negatives_signature(negatives, CalibrationParams(), "group@0.4") != \
        negatives_signature(negatives, CalibrationParams(), "group")


def test_the_dataset_holds_out_what_its_rule_says(tmp_path):
    """cnnbin's dataset takes the hold-out rule it is given (the shipped encoder's, at enrolment), whole groups."""
    ids = grouped_ids(12, 4)
    sources = plan_sources([], [tmp_path / f"{t}.wav" for t in ids], "group@0.4")
    assert {s.track_id for s in sources if s.split == "calibration"} == calibration_holdout(ids, 0.4)


def test_a_dataset_holds_out_by_the_shipped_encoders_rule_unless_told(tmp_path, monkeypatch):
    """``audiocopy dataset`` and cnnbin enrolment give no rule: the dataset takes the shipped encoder's, so a
    shipped encoder trained with another share moves its heads' hold-out with it."""
    from audiocopy.training import calibration_windows

    first = [f"g{g:02d}__t{t}" for g in range(5) for t in range(2)]
    _write(tmp_path / "lic", ["song"], 1)
    _write(tmp_path / "wrong", first, 10)
    monkeypatch.setattr(calibration_windows, "encoder_file_holdout_rule", lambda json_path=None: "group@0.5")
    manifest = build_dataset(tmp_path / "lic", tmp_path / "wrong", tmp_path / "ds", TINY, jobs=1, progress=False)
    held = {s["track_id"] for s in manifest["sources"] if s["split"] == "calibration"}
    assert held == calibration_holdout(first, 0.5) != calibration_holdout(first)
