"""Catalog mutations through the API: delete and add-by-upload, each followed by a hot reload.

Each test works on its own copy of the tiny catalogue. The add tests swap
the enrolment function that the job runs in its child process
(``jobs.enroll_track``) for quick stand-ins defined here (one clones an
enrolled model under the new name; others fail, crash or hang), so the job
machinery, the child process, progress, the database lock, shutdown and the
reload are tested in seconds; the real training run is the ``slow`` test at
the end.
"""
from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from aiohttp import FormData
from synth import pattern
from test_web_fixtures import auth_headers, make_client, recognizer, settings, start_stream  # noqa: F401

pytestmark = pytest.mark.asyncio

def fake_enroll(db, catalog_dir, **_):
    """Stands in for ``jobs.enroll_track`` in the child: clones an enrolled model under the new name."""
    from audiocopy.atomic_files import atomic_write_json
    from audiocopy.engines import catalog

    new_id = next(Path(catalog_dir).iterdir()).stem
    print("dataset:  50%|#####     | 1/2", file=sys.stderr, flush=True)
    rec = catalog.track_records(db)[0]
    base = catalog.track_filename(new_id)
    shutil.copy(Path(db) / "tracks" / rec["model_file"], Path(db) / "tracks" / (base + ".keras"))
    rec = {k: v for k, v in rec.items() if k != "_path"}
    atomic_write_json(Path(db) / "tracks" / (base + ".json"),
                      {**rec, "track_id": new_id, "model_file": base + ".keras"})
    print("train: 100%|##########| 1/1", file=sys.stderr, flush=True)


def failing_enroll(db, catalog_dir, **_):
    from audiocopy.errors import DatasetError

    raise DatasetError("no usable audio in the upload")


def crashing_enroll(db, catalog_dir, **_):
    """Dies the way the kernel's OOM killer ends a process: no word, no cleanup."""
    print("train:  10%|#         | 1/10", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def sleeping_enroll(db, catalog_dir, **_):
    import subprocess

    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # something it started
    print("dataset:  20%|##        | 1/5", file=sys.stderr, flush=True)
    time.sleep(60)


def chatty(n):
    """Succeeds after a progress bar and a log line."""
    import logging

    for i in range(n):
        print(f"\renrol: {100 * (i + 1) // n:3d}%|", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)  # a progress bar ends its line when it closes
    logging.getLogger("audiocopy.test").info("a log line")


def buggy():
    raise ValueError("bad value")


async def test_child_process_passes_lines_and_reports_errors():
    from audiocopy.web.child import ChildFailed, ChildProcess
    from audiocopy.web.jobs import progress_of

    lines: list[str] = []
    await ChildProcess(chatty, {"n": 4}, on_line=lines.append).run()
    assert [line for line in lines if "%" in line] == [f"enrol: {p:3d}%|" for p in (25, 50, 75, 100)]
    assert any(line.endswith("a log line") for line in lines)
    assert progress_of(lines[1]) == ("embedding the track", pytest.approx(0.3))
    assert progress_of("train:  40%|####") == ("training", pytest.approx(0.68)) and progress_of("hello") is None
    with pytest.raises(ChildFailed, match="^ValueError: bad value$"):
        await ChildProcess(buggy, {}, on_line=lines.append).run()
    assert any("Traceback" in line for line in lines)  # the bug's traceback reaches the server's log


@pytest.fixture
def own_db(tiny_db, tmp_path):
    db = tmp_path / "db"
    shutil.copytree(tiny_db, db, ignore=shutil.ignore_patterns("dataset", "server"))
    return db


def wav(seconds=4.0, kind="chord", rate=16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, pattern(kind, seconds, rate), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def add_form(data: bytes, filename: str, name: str | None) -> FormData:
    form = FormData()
    if name is not None:
        form.add_field("name", name)
    form.add_field("file", data, filename=filename)
    return form


async def wait_job(client, job_id, timeout_s=60):
    for _ in range(int(timeout_s / 0.1)):
        job = (await (await client.get(f"/api/jobs/{job_id}")).json())["job"]
        if job["state"] in ("done", "failed"):
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job still {job['state']}")


async def test_delete_track_recalibrates_and_hot_reloads(make_client, own_db):
    from audiocopy.decision.recognizer import Recognizer

    client = await make_client(recognizer_=Recognizer.open(own_db), db=own_db)
    async with client.ws_connect("/ws") as ws:  # a stream open during the change keeps working
        await start_stream(ws)
        resp = await client.delete("/api/catalog/tracks/chord", headers=auth_headers())
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"removed": "chord", "tracks": 2}
        await ws.send_json({"type": "stop"})
        assert (await ws.receive_json(timeout=10))["type"] == "stopped"
    status = await (await client.get("/api/status")).json()
    assert status["tracks"] == 2 and status["recognizer_generation"] == 1
    listed = await (await client.get("/api/catalog")).json()
    assert [t["track_id"] for t in listed["tracks"]] == ["chirps", "pulses"]
    async with client.ws_connect("/ws") as ws:
        assert (await start_stream(ws))["tracks"] == 2
    resp = await client.delete("/api/catalog/tracks/chord", headers=auth_headers())
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "unknown_track"


async def test_add_track_by_upload_runs_a_job_and_reloads(make_client, own_db, tiny_corpus, monkeypatch):
    from audiocopy.decision.recognizer import Recognizer
    from audiocopy.web import jobs

    monkeypatch.setattr(jobs, "enroll_track", fake_enroll)
    client = await make_client(recognizer_=Recognizer.open(own_db), db=own_db,
                               negatives_dir=tiny_corpus / "wrong")
    resp = await client.post("/api/catalog/tracks", headers=auth_headers(),
                             data=add_form(wav(), "../../etc/passwd.wav", "Chord (live)"))
    assert resp.status == 202, await resp.text()
    job = (await resp.json())["job"]
    assert job["track_id"] == "Chord (live)" and job["state"] in ("queued", "running")
    job = await wait_job(client, job["id"])
    assert job["state"] == "done" and job["progress"] == 1.0, job
    status = await (await client.get("/api/status")).json()
    assert status["tracks"] == 4 and status["recognizer_generation"] == 1
    listed = await (await client.get("/api/catalog")).json()
    assert "Chord (live)" in [t["track_id"] for t in listed["tracks"]]
    # duplicates and unsafe names are refused before any training starts
    resp = await client.post("/api/catalog/tracks", headers=auth_headers(),
                             data=add_form(wav(), "a.wav", "Chord (live)"))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "duplicate_track"
    for bad in ("../evil", ".hidden", "a/b", "x" * 101, "new\nline", "trailing."):
        resp = await client.post("/api/catalog/tracks", headers=auth_headers(), data=add_form(wav(), "a.wav", bad))
        assert resp.status == 400, bad
    resp = await client.post("/api/catalog/tracks", headers=auth_headers(), data=add_form(wav(), "a.txt", "ok"))
    assert resp.status == 415
    assert not (own_db.parent / "etc").exists()


async def test_failed_job_reports_the_error_and_keeps_the_catalog(make_client, own_db, tiny_corpus, monkeypatch):
    from audiocopy.decision.recognizer import Recognizer
    from audiocopy.web import jobs

    monkeypatch.setattr(jobs, "enroll_track", failing_enroll)
    client = await make_client(recognizer_=Recognizer.open(own_db), db=own_db,
                               negatives_dir=tiny_corpus / "wrong")
    resp = await client.post("/api/catalog/tracks", headers=auth_headers(), data=add_form(wav(), "b.wav", "broken"))
    job = await wait_job(client, (await resp.json())["job"]["id"])
    assert job["state"] == "failed" and job["message"] == "no usable audio in the upload"
    assert (await (await client.get("/api/status")).json())["tracks"] == 3


async def test_a_crashing_job_fails_and_the_server_goes_on(make_client, own_db, tiny_corpus, monkeypatch):
    from audiocopy.decision.recognizer import Recognizer
    from audiocopy.web import jobs

    monkeypatch.setattr(jobs, "enroll_track", crashing_enroll)
    client = await make_client(recognizer_=Recognizer.open(own_db), db=own_db,
                               negatives_dir=tiny_corpus / "wrong")
    resp = await client.post("/api/catalog/tracks", headers=auth_headers(), data=add_form(wav(), "c.wav", "crash"))
    job = await wait_job(client, (await resp.json())["job"]["id"])
    assert job["state"] == "failed" and "killed by SIGKILL" in job["message"], job
    assert job["progress"] == pytest.approx(0.545)  # its progress bar reached the server before it died
    monkeypatch.setattr(jobs, "enroll_track", fake_enroll)  # the next job runs as usual
    resp = await client.post("/api/catalog/tracks", headers=auth_headers(), data=add_form(wav(), "d.wav", "next"))
    assert (await wait_job(client, (await resp.json())["job"]["id"]))["state"] == "done"


async def test_shutdown_kills_a_running_job_and_what_it_started(make_client, own_db, tiny_corpus, monkeypatch):
    from audiocopy.decision.recognizer import Recognizer
    from audiocopy.web import jobs
    from audiocopy.web.keys import JOBS

    monkeypatch.setattr(jobs, "enroll_track", sleeping_enroll)
    client = await make_client(recognizer_=Recognizer.open(own_db), db=own_db,
                               negatives_dir=tiny_corpus / "wrong")
    resp = await client.post("/api/catalog/tracks", headers=auth_headers(), data=add_form(wav(), "s.wav", "slow"))
    job_id = (await resp.json())["job"]["id"]
    manager = client.server.app[JOBS]
    for _ in range(300):
        job = manager.jobs[job_id]
        if job.stage == "building the dataset":
            break
        await asyncio.sleep(0.05)
    assert job.state == "running" and job.progress == pytest.approx(0.1)
    pid = manager._child.pid
    await client.close()  # server shutdown
    assert job.state == "failed" and job.message == "server shut down"
    for _ in range(100):  # the child's process group, grandchild included, is gone (zombies aside)
        if not live_members(pid):
            break
        await asyncio.sleep(0.05)
    assert not live_members(pid)


def live_members(pgid: int) -> list[int]:
    """Processes of a process group that are still running (not zombies waiting to be reaped)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


@pytest.mark.slow
async def test_add_track_trains_for_real(make_client, own_db, tiny_corpus):
    """The real child process (dataset + training + calibration) on tiny settings; about a minute."""
    from audiocopy.decision.recognizer import Recognizer

    client = await make_client(recognizer_=Recognizer.open(own_db), db=own_db, negatives_dir=tiny_corpus / "wrong",
                               train_positives=60, train_epochs=4)
    resp = await client.post("/api/catalog/tracks", headers=auth_headers(),
                             data=add_form(wav(12, "chirps", 22050), "sweeps.wav", "sweeps"))
    job = await wait_job(client, (await resp.json())["job"]["id"], timeout_s=600)
    assert job["state"] == "done", job
    listed = await (await client.get("/api/catalog")).json()
    assert "sweeps" in [t["track_id"] for t in listed["tracks"]]
    assert (await (await client.get("/api/status")).json())["tracks"] == 4
