"""Catalog mutations through the API: delete and add-by-upload, each followed by a hot reload.

Each test works on its own copy of the tiny catalogue. The add test swaps
the training child process for a quick stand-in (it clones an enrolled
model under the new name), so the job machinery, progress, the database
lock and the reload are tested in seconds; the real training run is the
``slow`` test at the end.
"""
from __future__ import annotations

import asyncio
import io
import shutil
import sys
import textwrap

import pytest
import soundfile as sf
from aiohttp import FormData
from synth import pattern
from test_web_fixtures import auth_headers, make_client, recognizer, settings, start_stream  # noqa: F401

pytestmark = pytest.mark.asyncio

FAKE_ENROLL = textwrap.dedent("""
    import json, shutil, sys
    from pathlib import Path
    from audiocopy.atomic_files import atomic_write_json
    from audiocopy.engines import catalog
    db, job_dir = Path(sys.argv[1]), Path(sys.argv[2])
    new_id = next((job_dir / "licensed").iterdir()).stem
    print("dataset:  50%|#####     | 1/2", file=sys.stderr, flush=True)
    rec = catalog.track_records(db)[0]
    base = catalog.track_filename(new_id)
    shutil.copy(db / "tracks" / rec["model_file"], db / "tracks" / (base + ".keras"))
    rec = {k: v for k, v in rec.items() if k != "_path"}
    atomic_write_json(db / "tracks" / (base + ".json"), {**rec, "track_id": new_id, "model_file": base + ".keras"})
    print("train: 100%|##########| 1/1", file=sys.stderr, flush=True)
""")


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

    monkeypatch.setattr(jobs, "enroll_command", lambda settings, job_dir: [
        sys.executable, "-c", FAKE_ENROLL, str(settings.db), str(job_dir)])
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

    monkeypatch.setattr(jobs, "enroll_command", lambda settings, job_dir: [
        sys.executable, "-c", "import sys; print('error: no usable audio in the upload', file=sys.stderr); sys.exit(1)"])
    client = await make_client(recognizer_=Recognizer.open(own_db), db=own_db,
                               negatives_dir=tiny_corpus / "wrong")
    resp = await client.post("/api/catalog/tracks", headers=auth_headers(), data=add_form(wav(), "b.wav", "broken"))
    job = await wait_job(client, (await resp.json())["job"]["id"])
    assert job["state"] == "failed" and job["message"] == "error: no usable audio in the upload"
    assert (await (await client.get("/api/status")).json())["tracks"] == 3


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
