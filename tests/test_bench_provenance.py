"""The benchmark refuses an encoder that trained on what it measures (``tools/bench/provenance.py``)."""
from __future__ import annotations

import pytest
from bench.common import BenchError
from bench.corpus import Track
from bench.provenance import check_encoder
from bench.split import encoder_excluded_ids, package_split

#: No package set holds exactly 7 tracks, so the catalogue keeps spare ("reserved") tracks of its packages.
SIZES = {"p1": 6, "p2": 5, "p3": 5, "p4": 6, "p5": 6, "p6": 9, "p7": 10}


@pytest.fixture(scope="module")
def split():
    tracks = sorted((Track(f"{p}__{i}", f"{p}__{i}.wav", p, "/x", 22050, 60.0)
                     for p, n in SIZES.items() for i in range(n)), key=lambda t: t.file)
    return package_split(tracks, seed=1, n_catalog=7, n_unseen=5, n_wrong=20)


def record(trained=None, generated=None):
    training = {"epochs": 3}
    if trained is not None:
        training["trained_track_ids"] = sorted(trained)
    if generated is not None:
        training["generated"] = generated
    return {"weights_sha256": "0" * 64, "training": training}


def clean_ids(split):
    every = set(split["track_packages"])
    return every - encoder_excluded_ids(split)


def test_clean_record_passes_with_the_sentence(split):
    ids = clean_ids(split)
    check = check_encoder(split, record(ids), allow_unchecked=False)
    assert check.checked and check.n_ids == len(ids)
    assert f"never trained on any catalogue or unseen track (checked: {len(ids)} ids" in check.sentence


def test_overlap_with_catalogue_is_refused(split):
    ids = clean_ids(split) | {split["catalog"][0]}
    with pytest.raises(BenchError, match="trained on 1 catalogue/unseen tracks"):
        check_encoder(split, record(ids), allow_unchecked=True)  # allowing unchecked never allows an overlap


def test_overlap_with_unseen_is_refused(split):
    with pytest.raises(BenchError, match="catalogue/unseen"):
        check_encoder(split, record(split["unseen"][:2]), allow_unchecked=False)


def test_sibling_of_a_measured_package_is_refused(split):
    measured = set(split["packages"]["catalog"]) | set(split["packages"]["unseen"])
    siblings = [i for i, p in split["track_packages"].items() if p in measured
                and i not in split["catalog"] and i not in split["unseen"]]
    assert siblings == split["reserved"] and siblings
    with pytest.raises(BenchError, match="packages"):
        check_encoder(split, record(siblings[:1]), allow_unchecked=False)


def test_record_without_ids_needs_permission(split):
    with pytest.raises(BenchError, match="--allow-unchecked-encoder"):
        check_encoder(split, record(), allow_unchecked=False)
    check = check_encoder(split, record(), allow_unchecked=True)
    assert not check.checked and "could not be checked" in check.sentence


def test_generated_summary_is_passed_on(split):
    gen = {"generator": "audiocopy.training.music", "version": "1.0", "seed": 1, "track_count": 3,
           "track_ids_sha256": "ab" * 32}
    assert check_encoder(split, record(clean_ids(split), gen), allow_unchecked=False).generated == gen


def test_reconstruction_of_an_unchecked_encoder(split):
    from bench.provenance import reconstruct_trained, reconstruction_text

    from audiocopy.training.sources import is_calibration_track

    ids = set(split["track_packages"])
    old = {"catalog": split["catalog"][:3], "unseen": split["wrong"][:2]}
    expected = {i for i in ids - set(old["catalog"]) - set(old["unseen"]) if not is_calibration_track(i)}
    assert reconstruct_trained({"trained_tracks": len(expected)}, old, ids) == expected
    assert reconstruct_trained({"trained_tracks": len(expected) + 1}, old, ids) is None
    text = reconstruction_text(split, {"trained_tracks": len(expected)}, old, "old/split.json")
    n_cat = len(expected & set(split["catalog"]))
    assert f"{n_cat} of the {len(split['catalog'])} catalogue" in text
