"""``audiocopy scan``: every play of long recordings, by the live decision, resumable and robust to bad files.

Known answers by construction: a fingerprint catalogue of three seeded
synthetic melodies (30 s each, one of them tagged with a title and an
artist before enrolment), and a long recording made of excerpts of them
at known places, between noise, silence and back to back. Each play must
come out with its file and track boundaries within 2 s.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth import melody, pattern

from audiocopy.cli import main
from audiocopy.config import CalibrationParams
from audiocopy.engines import catalog, metadata
from audiocopy.training.enroll_fingerprint import enroll_fingerprint

SR = 16000
#: (track, start in the file, start in the track, seconds): the long recording's truth.
TRUTH = [("song0", 4.0, 5.0, 20.0), ("song1", 24.0, 0.0, 20.0), ("song2", 49.0, 8.0, 20.0)]


def _songs() -> list[np.ndarray]:
    return [melody(20 + i, 30, SR) for i in range(3)]


@pytest.fixture(scope="module")
def scan_db(tmp_path_factory) -> Path:
    """Three 30 s melodies enrolled (song0 tagged "First Song" by "Test Band"), six melodies as negatives."""
    from mutagen.id3 import TIT2, TPE1
    from mutagen.wave import WAVE

    root = tmp_path_factory.mktemp("scan")
    (root / "catalog").mkdir()
    (root / "neg").mkdir()
    for i, song in enumerate(_songs()):
        sf.write(root / "catalog" / f"song{i}.wav", song, SR)
    tags = WAVE(root / "catalog" / "song0.wav")
    tags.add_tags()
    tags.tags.add(TIT2(encoding=3, text="First Song"))
    tags.tags.add(TPE1(encoding=3, text="Test Band"))
    tags.save()
    for i in range(6):
        sf.write(root / "neg" / f"neg{i}.wav", melody(200 + i, 10, SR), SR)
    db = root / "db"
    enroll_fingerprint(root / "catalog", db, negatives_dir=root / "neg",
                       calibration=CalibrationParams(windows_per_track=12), progress=False)
    return db


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch) -> Path:
    """Scans without --out keep their state in the cache folder: a fresh one per test, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def recordings(tmp_path) -> Path:
    """A folder with the long recording (noise, song0, song1 back to back, noise, song2, silence: 72 s)."""
    songs = _songs()
    parts = [pattern("noise", 4, SR), songs[0][5 * SR:25 * SR], songs[1][:20 * SR], pattern("noise", 5, SR, seed=3),
             songs[2][8 * SR:28 * SR], np.zeros(3 * SR, np.float32)]
    folder = tmp_path / "recordings"
    folder.mkdir()
    sf.write(folder / "aircheck.wav", np.concatenate(parts), SR)
    return folder


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_scan_finds_every_play_with_its_boundaries_evidence_and_metadata(scan_db, recordings, tmp_path, capsys):
    out = tmp_path / "plays.csv"
    assert main(["-q", "scan", "--db", str(scan_db), "--out", str(out), str(recordings)]) == 0
    rows = _rows(out)
    assert [r["track_id"] for r in rows] == [t[0] for t in TRUTH]
    for row, (track, start, track_start, seconds) in zip(rows, TRUTH):
        assert row["file"] == str(recordings / "aircheck.wav") and row["error"] == ""
        assert float(row["start_s"]) == pytest.approx(start, abs=2.0)
        assert float(row["end_s"]) == pytest.approx(start + seconds, abs=2.0)
        assert float(row["track_start_s"]) == pytest.approx(track_start, abs=2.0)
        assert float(row["track_end_s"]) == pytest.approx(track_start + seconds, abs=2.0)
        assert float(row["time_scale"]) == pytest.approx(1.0, abs=0.01)
        assert row["alteration"] == "none" and int(row["windows"]) > 10
    # Title and artist from song0's tags; the others were untagged, so their file name is the title.
    assert [(r["title"], r["artist"]) for r in rows] == [("First Song", "Test Band"), ("song1", ""), ("song2", "")]
    assert "scanned 1 of 1 files (0 unchanged since the last scan), 3 plays, 0 failed" in capsys.readouterr().err


def test_json_output_carries_the_same_plays(scan_db, recordings, tmp_path, capsys):
    assert main(["-q", "scan", "--db", str(scan_db), "--format", "json", "--out", str(tmp_path / "p.json"),
                 str(recordings / "aircheck.wav")]) == 0
    data = json.loads((tmp_path / "p.json").read_text())
    (entry,) = data["files"]
    assert entry["error"] is None and entry["seconds"] == 72.0 and entry["cached"] is False
    assert [(p["track_id"], p["title"]) for p in entry["plays"]] == [("song0", "First Song"), ("song1", "song1"),
                                                                    ("song2", "song2")]
    assert set(entry["plays"][0]) >= {"start_s", "end_s", "track_start_s", "track_end_s", "time_scale",
                                      "pitch_semitones", "alteration", "artist"}


def test_scanned_files_are_skipped_until_forced_or_the_catalogue_changes(scan_db, recordings, tmp_path, capsys,
                                                                        monkeypatch):
    out = tmp_path / "plays.csv"
    args = ["-q", "scan", "--db", str(scan_db), "--out", str(out), str(recordings)]
    assert main(args) == 0
    first = _rows(out)
    assert (tmp_path / "plays.csv.scan-state.json").is_file()
    capsys.readouterr()

    # A second run must not decode the file at all: decoding now fails loudly.
    import audiocopy.decision.scan as scan_module

    def no_decoding(*_, **__):
        raise AssertionError("a file that was already scanned was decoded again")

    monkeypatch.setattr(scan_module, "load_audio", no_decoding)
    metadata.edit_metadata(scan_db, "song1", {"title": "Second Song"})  # metadata is looked up at output time
    assert main(args) == 0
    assert "(1 unchanged since the last scan)" in capsys.readouterr().err
    second = _rows(out)
    assert [r["title"] for r in second] == ["First Song", "Second Song", "song2"]
    assert [r["start_s"] for r in second] == [r["start_s"] for r in first]

    with pytest.raises(AssertionError, match="decoded again"):
        main([*args, "--force"])
    monkeypatch.undo()
    assert main([*args, "--force"]) == 0
    assert "(0 unchanged" in capsys.readouterr().err

    catalog.bump_generation(scan_db)  # what any enrolment, removal or recalibration does
    assert main(args) == 0
    assert "(0 unchanged" in capsys.readouterr().err


def test_undecodable_files_are_reported_and_the_others_still_scanned(scan_db, recordings, tmp_path, capsys):
    (recordings / "broken.mp3").write_bytes(b"\x00garbage" * 64)
    sf.write(recordings / "short.wav", np.zeros(SR, np.float32), SR)  # shorter than one window
    (recordings / "notes.txt").write_text("not audio, not listed")
    out = tmp_path / "plays.csv"
    assert main(["-q", "scan", "--db", str(scan_db), "--out", str(out), str(recordings)]) == 0
    rows = _rows(out)
    errors = {Path(r["file"]).name: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"broken.mp3", "short.wav"} and "shorter" not in errors["broken.mp3"]
    assert "at least" in errors["short.wav"] or "only" in errors["short.wav"]
    assert [r["track_id"] for r in rows if not r["error"]] == ["song0", "song1", "song2"]
    err = capsys.readouterr().err
    assert "scanned 1 of 3 files" in err and "2 failed" in err and "broken.mp3" in err

    # Every file failed: the command failed (exit 1), and still says why for each.
    assert main(["-q", "scan", "--db", str(scan_db), str(recordings / "broken.mp3"), str(recordings / "short.wav")]) == 1
    assert "2 failed" in capsys.readouterr().err


def test_recursive_scans_sub_folders(scan_db, recordings, tmp_path, capsys):
    nested = tmp_path / "archive"
    (nested / "2024" / "05").mkdir(parents=True)
    (recordings / "aircheck.wav").rename(nested / "2024" / "05" / "day.wav")
    assert main(["-q", "scan", "--db", str(scan_db), str(nested)]) == 1  # only sub-folders: nothing at the top
    err = capsys.readouterr().err
    assert "no audio files to scan" in err and "--recursive" in err
    assert main(["-q", "scan", "--db", str(scan_db), "--recursive", "--format", "json", str(nested)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [Path(f["file"]).name for f in data["files"]] == ["day.wav"] and len(data["files"][0]["plays"]) == 3


def test_scan_input_boundaries(scan_db, tmp_path, capsys, cache_home):
    assert main(["-q", "scan", "--db", str(scan_db), str(tmp_path / "missing.wav")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["-q", "scan", "--db", str(scan_db), str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "no audio files to scan" in err and "--recursive" in err
    sf.write(tmp_path / "a.wav", np.zeros(3 * SR, np.float32), SR)
    assert main(["-q", "scan", "--db", str(scan_db), "--out", str(tmp_path), str(tmp_path / "a.wav")]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert main(["-q", "scan", "--db", str(tmp_path / "nodb"), str(tmp_path / "a.wav")]) == 1
    assert "nodb" in capsys.readouterr().err
    for bad in (["--format", "xml"], []):  # an unknown format; no PATH at all
        with pytest.raises(SystemExit) as exc:
            main(["scan", "--db", str(scan_db), *bad, *([str(tmp_path / "a.wav")] if bad else [])])
        assert exc.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err
    # Without --out the plays go to stdout and the state to the cache folder.
    assert main(["-q", "scan", "--db", str(scan_db), str(tmp_path / "a.wav")]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("file,track_id,title,artist,start_s")
    assert list((cache_home / "audiocopy").glob("scan-*.json"))


def test_identify_prints_title_and_artist(scan_db, tmp_path, capsys):
    query = tmp_path / "q.wav"
    sf.write(query, _songs()[0][10 * SR:16 * SR], SR)
    assert main(["-q", "identify", "--db", str(scan_db), "--json", str(query)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert (line["match"], line["title"], line["artist"]) == ("song0", "First Song", "Test Band")
    assert main(["-q", "identify", "--db", str(scan_db), str(query)]) == 0
    assert "song0 (Test Band - First Song)" in capsys.readouterr().out


def test_worker_processes_give_the_same_plays_in_the_same_order(scan_db, recordings, tmp_path):
    import shutil

    shutil.copy(recordings / "aircheck.wav", recordings / "second.wav")
    (recordings / "broken.wav").write_bytes(b"RIFF not really")
    outputs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"plays{jobs}.csv"
        assert main(["-q", "scan", "--db", str(scan_db), "--jobs", jobs, "--out", str(out), str(recordings)]) == 0
        outputs.append(_rows(out))
    assert outputs[0] == outputs[1]
    assert [Path(r["file"]).name for r in outputs[1]] == ["aircheck.wav"] * 3 + ["broken.wav"] + ["second.wav"] * 3
    with pytest.raises(SystemExit):
        main(["scan", "--db", str(scan_db), "--jobs", "0", str(recordings)])
