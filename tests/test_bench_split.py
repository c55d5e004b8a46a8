"""The benchmark's package split (``tools/bench/split.py``) on tiny synthetic manifests; no corpus, no audio.

What must hold: catalogue and unseen tracks come from packages that give
no track to any other role, and from different packages; the split is a
function of the seed; ``split.json`` carries each role's SHA-256; and the
tracks ``tools/train_encoder.py`` leaves out are exactly what the split
measures plus the calibration hold-out.
"""
from __future__ import annotations

import hashlib

import pytest
from bench.common import BenchError
from bench.corpus import Track, read_manifest
from bench.split import encoder_excluded_ids, package_split, read_split, track_split, write_split

from audiocopy.training.sources import calibration_holdout, track_group

#: Package -> track count: 60 tracks in 10 packages.
SIZES = {"alpha": 9, "bravo": 8, "charlie": 7, "delta": 7, "echo": 6, "foxtrot": 6, "golf": 5, "hotel": 5,
         "india": 4, "juliet": 3}


def tracks(sizes=SIZES) -> list[Track]:
    out = [Track(f"{p}__t{i:02d}", f"{p}__t{i:02d}.wav", p, f"/nowhere/{p}__t{i:02d}.wav", 22050, 60.0)
           for p, n in sizes.items() for i in range(n)]
    return sorted(out, key=lambda t: t.file)


def split(seed=0, **kw):
    args = {"n_catalog": 12, "n_unseen": 8, "n_wrong": 30, **kw}
    return package_split(tracks(), seed=seed, **args)


def packages_of(ids):
    return {i.split("__")[0] for i in ids}


def test_roles_are_package_disjoint_and_sized():
    s = split()
    assert (len(s["catalog"]), len(s["unseen"]), len(s["wrong"])) == (12, 8, 30)
    cat, uns = packages_of(s["catalog"]), packages_of(s["unseen"])
    rest = packages_of(s["wrong"] + s["spare"])
    assert not cat & uns and not (cat | uns) & rest
    assert packages_of(s["reserved"]) <= cat | uns  # extra tracks of measured packages are used for nothing
    every = s["catalog"] + s["unseen"] + s["wrong"] + s["spare"] + s["reserved"]
    assert sorted(every) == sorted(t.id for t in tracks())  # each track exactly once
    assert s["packages"]["catalog"] == sorted(cat) and s["packages"]["unseen"] == sorted(uns)


def test_deterministic_per_seed():
    assert split(seed=3) == split(seed=3)
    assert any(split(seed=0)[r] != split(seed=s)[r] for s in range(1, 6) for r in ("catalog", "unseen"))


def test_hashes_are_sha256_of_sorted_ids(tmp_path):
    s = split()
    for role in ("catalog", "unseen", "wrong", "spare", "reserved"):
        assert s["sha256"][role] == hashlib.sha256("\n".join(sorted(s[role])).encode()).hexdigest()
    write_split(tmp_path / "split.json", s)
    assert read_split(tmp_path / "split.json") == s


def test_edited_split_is_refused(tmp_path):
    s = split()
    s["catalog"] = s["catalog"][1:]
    write_split(tmp_path / "split.json", s)
    with pytest.raises(BenchError, match="catalog tracks do not match"):
        read_split(tmp_path / "split.json")
    with pytest.raises(BenchError, match="missing"):
        read_split(tmp_path / "absent.json")


def test_forbidden_packages_never_measured():
    s = split(forbidden_packages=["alpha", "bravo", "charlie"])
    assert not packages_of(s["catalog"] + s["unseen"]) & {"alpha", "bravo", "charlie"}


def test_too_few_tracks_is_a_clear_error():
    with pytest.raises(BenchError, match="needs 70 tracks"):
        split(n_catalog=70)


def test_encoder_exclusions():
    s = split()
    excluded = encoder_excluded_ids(s)
    measured = set(s["catalog"]) | set(s["unseen"]) | set(s["reserved"])
    assert measured <= excluded
    others = set(s["wrong"]) | set(s["spare"])
    # The calibration hold-out enrolment takes from WORK/wrong, whole packages, with their spare tracks too:
    # the thresholds are then set on packages the encoder never heard, as the unseen ones.
    held = calibration_holdout(sorted(s["wrong"]))
    held_packages = {track_group(i) for i in held}
    assert held and held_packages.isdisjoint(track_group(i) for i in set(s["wrong"]) - held)
    assert excluded - measured == {i for i in others if track_group(i) in held_packages}
    assert s["calibration"] == sorted(held)
    assert s["encoder_excluded"]["count"] == len(excluded)


def test_track_split_is_the_legacy_one():
    s = track_split(tracks(), seed=0, n_catalog=12, n_wrong=30, n_unseen=8)
    assert s["kind"] == "track" and s["reserved"] == []
    assert len(s["spare"]) == 60 - 50 and s == track_split(tracks(), seed=0, n_catalog=12, n_wrong=30, n_unseen=8)


def test_manifest_needs_a_package_column(tmp_path):
    (tmp_path / "manifest-dev.tsv").write_text("file\tversion\na.wav\t1\n", encoding="utf-8")
    with pytest.raises(BenchError, match="'package'"):
        read_manifest(tmp_path)


def test_train_encoder_leaves_out_what_the_split_measures(tmp_path):
    import train_encoder

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for t in tracks():
        (corpus / t.file).write_bytes(b"")  # listed by extension only, never decoded here
    s = split()
    write_split(tmp_path / "split.json", s)
    chosen, summary = train_encoder.select_tracks(corpus, [tmp_path / "split.json"], keep_calibration=False)
    trained = {p.stem for p in chosen}
    assert trained == {t.id for t in tracks()} - encoder_excluded_ids(s)
    assert summary["trained_track_ids"] == sorted(trained)
    assert not trained & (set(s["catalog"]) | set(s["unseen"]))


def test_generated_share_sets_the_draws_of_generated_music():
    """84 real and 300 generated tracks at share 0.5: each side makes half the draws, a real track keeps weight 1."""
    import train_encoder

    real, gen = [f"r{i}" for i in range(84)], [f"g{i}" for i in range(300)]
    weights = train_encoder.generated_weights(real, gen, 0.5)
    assert weights["r0"] == 1.0
    assert sum(weights[t] for t in gen) == pytest.approx(sum(weights[t] for t in real))
    quarter = train_encoder.generated_weights(real, gen, 0.25)
    assert sum(quarter[t] for t in gen) / sum(quarter.values()) == pytest.approx(0.25)


@pytest.mark.parametrize("share", [0.0, 1.0, -0.1, 1.5])
def test_generated_share_outside_0_1_is_refused(share):
    import train_encoder

    with pytest.raises(BenchError, match="strictly between 0 and 1"):
        train_encoder.generated_weights(["r"], ["g"], share)


def test_generated_share_needs_generated_music(tmp_path, capsys):
    import train_encoder

    assert train_encoder.main(["--corpus", str(tmp_path), "--generated-share", "0.5", "-q"]) == 1
    assert "--generated-share needs --generated" in capsys.readouterr().err


def test_the_encoder_record_names_no_folder_of_this_machine():
    """Every path option of the training command is recorded as a placeholder, in both spellings; other values stay."""
    import train_encoder

    command = train_encoder.recorded_command(
        ["--corpus", "/data/corpus", "--split", "/w/a/split.json", "--split=/w/b/split.json", "--generated", "/w/gen",
         "--work", "/w/enc", "--out=/w/enc/e.json", "--augment", "p_chain=0", "--epochs", "100"])
    assert "/w" not in command and "/data" not in command
    assert ("--corpus CORPUS_DIR --split WORK/split.json --split=WORK/split.json --generated GEN_DIR "
            "--work ENC_WORK --out=ENCODER_JSON --augment p_chain=0 --epochs 100") in command


def test_a_larger_calibration_share_leaves_out_more_whole_packages(tmp_path):
    """``train_encoder.py --calibration-share``: the encoder leaves out the larger hold-out, whole packages, and
    everything the default share left out; enrolment reads the share back from its record."""
    import train_encoder

    from audiocopy.training.calibration_windows import encoder_holdout_rule
    from audiocopy.training.sources import holdout_tracks

    s = split()
    default, larger = encoder_excluded_ids(s), encoder_excluded_ids(s, 0.5)
    assert default < larger
    held = calibration_holdout(sorted(s["wrong"]), 0.5)
    assert larger - default <= {i for i in set(s["wrong"]) | set(s["spare"]) if track_group(i) in
                                {track_group(h) for h in held}}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for t in tracks():
        (corpus / t.file).write_bytes(b"")
    write_split(tmp_path / "split.json", s)
    chosen, _ = train_encoder.select_tracks(corpus, [tmp_path / "split.json"], keep_calibration=False, share=0.5)
    assert {p.stem for p in chosen} == {t.id for t in tracks()} - larger
    rule = encoder_holdout_rule({"training": {"calibration_holdout": "group", "calibration_share": 0.5}})
    assert rule == "group@0.5" and holdout_tracks(sorted(s["wrong"]), rule) == held


@pytest.mark.parametrize("argv, message", [
    (["--calibration-share", "1.5"], "between 0 and 1"),
    (["--calibration-share", "0"], "between 0 and 1"),
    (["--calibration-share", "0.4", "--keep-calibration"], "would hold out nothing"),
])
def test_a_calibration_share_that_holds_out_nothing_usable_is_refused(tmp_path, capsys, argv, message):
    import train_encoder

    with pytest.raises(SystemExit):
        train_encoder.parse_args(["--corpus", str(tmp_path), *argv])
    assert message in capsys.readouterr().err
