"""The CLI contract that external tooling drives (issue: exact output shapes)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth import melody, pattern

from audiocopy.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def queries(tmp_path):
    sr = 16000
    good = tmp_path / "chirps frag.wav"
    sf.write(good, pattern("chirps", 2.5, sr), sr)
    noise = tmp_path / "other.flac"  # unseen music, of the same kind as the negatives
    sf.write(noise, melody(555, 3.0, sr), sr)
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00garbage" * 50)
    short = tmp_path / "short.wav"
    sf.write(short, pattern("chord", 1.0, sr), sr)
    return good, noise, bad, short


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.strip().splitlines()]


def test_identify_json_lines(tiny_db, queries, capsys):
    good, noise, bad, short = queries
    missing = good.parent / "missing.wav"
    code = main(["-q", "identify", "--db", str(tiny_db), "--json", str(good), str(noise), str(bad),
                 str(short), str(missing)])
    assert code == 0
    lines = _lines(capsys.readouterr().out)
    assert [x["file"] for x in lines] == [str(good), str(noise), str(bad), str(short), str(missing)]
    first = lines[0]
    assert first["match"] == "chirps" and first["score"] > 0 and first["offset_s"] == 0.0
    assert isinstance(first["score"], float)
    assert lines[1]["match"] is None and lines[1]["score"] <= 0 and "error" not in lines[1]
    for line, word in zip(lines[2:], ("bad.mp3", "short.wav", "missing.wav")):
        assert line["match"] is None and word in line["error"]


def test_identify_missing_db_is_one_line(tmp_path, queries, capsys):
    code = main(["identify", "--db", str(tmp_path / "nodb"), "--json", str(queries[0])])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("error:") and "nodb" in err[0]


def test_identify_corrupt_db_is_one_line(tmp_path, queries, capsys):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "db.json").write_text("{")
    code = main(["identify", "--db", str(tmp_path / "db"), "--json", str(queries[0])])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "unreadable" in err[0]


@pytest.mark.parametrize("command,word", [("convert", "mono"), ("dataset", "shards"), ("train", "resumes"),
                                          ("enroll", "CATALOG_DIR"), ("identify", "JSON"),
                                          ("evaluate", "TSV"), ("remove", "recalibrate")])
def test_every_subcommand_explains_itself(command, word, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert word in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["identify", "--json", "x.wav"])  # --db missing
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["dataset", "--positives", "0"])
    assert "must be >= 1" in capsys.readouterr().err


def test_fingerprint_engine_through_the_cli(tiny_corpus, tmp_path, queries, capsys):
    db = tmp_path / "fpdb"
    assert main(["-q", "enroll", "--engine", "fingerprint", "--db", str(db), "--negatives",
                 str(tiny_corpus / "wrong"), str(tiny_corpus / "licensed")]) == 0
    assert "enrolled 3 tracks" in capsys.readouterr().out
    good = queries[0]
    assert main(["-q", "identify", "--db", str(db), "--json", str(good)]) == 0
    line = _lines(capsys.readouterr().out)[0]
    assert line["match"] == "chirps" and line["score"] > 0
    assert main(["-q", "remove", "--db", str(db), "chirps"]) == 0
    assert main(["-q", "identify", "--db", str(db), "--json", str(good)]) == 0
    assert _lines(capsys.readouterr().out)[0]["match"] != "chirps"


@pytest.mark.parametrize("flags, says", [(["--engine", "cnnbin"], "fingerprint databases"),
                                          (["--engine", "fingerprint"], "--negatives")])
def test_update_vote_is_refused_without_negatives_or_for_cnnbin(tiny_corpus, tmp_path, capsys, flags, says):
    code = main(["-q", "enroll", "--update-vote", *flags, "--db", str(tmp_path / "db"),
                 str(tiny_corpus / "licensed")])
    assert code == 1 and says in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


def test_enroll_missing_catalog_folder(tmp_path, capsys):
    code = main(["-q", "enroll", "--db", str(tmp_path / "db"), str(tmp_path / "nothing")])
    assert code == 1 and "folder not found" in capsys.readouterr().err


def test_evaluate_reports_rates(tiny_db, queries, tmp_path, capsys):
    good, noise, _, _ = queries
    truth = tmp_path / "truth.tsv"
    truth.write_text(f"file\texpected\n{good.name}\tchirps\n{noise.name}\t\n")
    assert main(["-q", "evaluate", "--db", str(tiny_db), "--truth", str(truth)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["positives"] == 1 and summary["negatives"] == 1
    assert summary["hit"] == 100.0 and summary["fp"] == 0.0 and summary["errors"] == []


def test_convert_command(tmp_path, capsys):
    src, dst = tmp_path / "mp3", tmp_path / "wav"
    src.mkdir()
    sf.write(src / "a.mp3", np.stack([pattern("chord", 3, 22050)] * 2, axis=1), 22050, format="MP3")
    assert main(["-q", "convert", str(src), str(dst)]) == 0
    assert "converted 1" in capsys.readouterr().out
    info = sf.info(dst / "a.wav")
    assert info.channels == 1 and info.samplerate == 22050


def test_importing_the_package_does_not_load_tensorflow():
    import subprocess
    import sys

    code = ("import sys, audiocopy, audiocopy.cli, audiocopy.decision.recognizer, audiocopy.signal.features, audiocopy.training.augment; "
            "print('tensorflow' in sys.modules or 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_identify_fails_when_no_file_could_be_read_and_names_a_folder(tiny_db, tmp_path, capsys):
    folder = tmp_path / "album.wav"  # a folder whose name looks like audio
    folder.mkdir()
    code = main(["-q", "identify", "--db", str(tiny_db), "--json", str(folder), str(tmp_path / "missing.wav")])
    lines = _lines(capsys.readouterr().out)
    assert code == 1
    assert "is a folder" in lines[0]["error"] and "no such file" in lines[1]["error"]


def test_tensorflow_starts_without_chatter_on_stderr():
    code = ("import sys; from audiocopy.quiet_imports import keras; keras(); "
            "import tensorflow as tf; print(tf.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.strip() == "tensorflow"
    assert "oneDNN" not in done.stderr and "absl::InitializeLog" not in done.stderr, done.stderr
