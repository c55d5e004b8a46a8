"""One database, one truth: a running server sees catalogue changes made by the CLI, without a restart.

The catalogue's generation stamp (``engines.catalog``: ``generation.json``)
is bumped by every enrolment and removal; the server's watcher
(``web.catalog_watch``) reads it every ``catalog_poll_s`` and reloads the
recognizer after a change. Each test runs a real app (aiohttp test client)
on its own database and changes that database the way a user would, through
the CLI's own functions, in a thread beside the server.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest
import soundfile as sf
from synth import melody
from test_web_fixtures import make_client, recognizer, settings  # noqa: F401

from audiocopy.decision.recognizer import Recognizer
from audiocopy.engines import catalog

pytestmark = pytest.mark.asyncio

POLL_S = 0.2
#: The promise is "within a few seconds"; with a 0.2 s poll a change shows in well under one.
DEADLINE_S = 5.0
RATE = 16000


@pytest.fixture
def own_db(tiny_db, tmp_path) -> Path:
    db = tmp_path / "db"
    shutil.copytree(tiny_db, db, ignore=shutil.ignore_patterns("dataset", "server"))
    return db


async def _until(client, predicate, what: str) -> tuple[dict, float]:
    """Poll /api/status until ``predicate(status)``; returns it and the seconds it took."""
    t0 = time.monotonic()
    while True:
        status = await (await client.get("/api/status")).json()
        if predicate(status):
            return status, time.monotonic() - t0
        if time.monotonic() - t0 > DEADLINE_S:
            raise AssertionError(f"{what} not seen within {DEADLINE_S} s; status: {status}")
        await asyncio.sleep(0.05)


async def test_cli_remove_is_seen_by_a_running_server(make_client, own_db):
    from audiocopy.cli import main

    client = await make_client(recognizer_=Recognizer.open(own_db), db=own_db, catalog_poll_s=POLL_S)
    before = await (await client.get("/api/status")).json()
    assert before["tracks"] == 3 and before["catalog"]["reload_error"] is None
    assert await asyncio.to_thread(main, ["--quiet", "remove", "--db", str(own_db), "chord"]) == 0
    status, took = await _until(client, lambda s: s["tracks"] == 2, "the CLI removal")
    assert took < DEADLINE_S and status["catalog"]["generation"] > before["catalog"]["generation"]
    cat = await (await client.get("/api/catalog")).json()
    assert cat["loaded_tracks"] == 2 and "chord" not in [t["track_id"] for t in cat["tracks"]]
    assert status["catalog"]["reload_error"] is None and status["catalog"]["reloads"] >= 1


@pytest.fixture(scope="module")
def fp_db(tmp_path_factory) -> tuple[Path, Path]:
    """A small fingerprint database (two melodies, no negatives) and a folder with one more track."""
    from audiocopy.training.enroll_fingerprint import enroll_fingerprint

    root = tmp_path_factory.mktemp("fpwatch")
    for name, seeds in (("catalog", (11, 12)), ("extra", (13,))):
        (root / name).mkdir()
        for seed in seeds:
            sf.write(root / name / f"tune{seed}.wav", melody(seed, 12, RATE), RATE)
    enroll_fingerprint(root / "catalog", root / "db", progress=False)
    return root / "db", root / "extra"


async def test_cli_enrol_is_seen_by_a_running_server(make_client, fp_db, tmp_path):
    from audiocopy.training.enroll_fingerprint import enroll_fingerprint

    src, extra = fp_db
    db = tmp_path / "db"
    shutil.copytree(src, db)
    client = await make_client(recognizer_=Recognizer.open(db), db=db, catalog_poll_s=POLL_S)
    assert (await (await client.get("/api/status")).json())["tracks"] == 2
    await asyncio.to_thread(enroll_fingerprint, extra, db, progress=False)  # what `audiocopy enroll` runs
    await _until(client, lambda s: s["tracks"] == 3, "the CLI enrolment")
    cat = await (await client.get("/api/catalog")).json()
    assert cat["loaded_tracks"] == 3 and "tune13" in [t["track_id"] for t in cat["tracks"]]
    # The fingerprint rows carry their own fields; the cnnbin ones are absent, not empty columns to show.
    assert all(t["n_vectors"] > 0 and t["duration_s"] == pytest.approx(12, abs=0.1) for t in cat["tracks"])
    assert all(t["model_bytes"] is None and t["threshold_logit"] is None for t in cat["tracks"])


async def test_a_failed_reload_keeps_the_old_catalogue_and_shows_the_error(make_client, own_db):
    client = await make_client(recognizer_=Recognizer.open(own_db), db=own_db, catalog_poll_s=POLL_S)
    record = next((own_db / catalog.TRACKS_DIR).glob("*.json"))
    good = record.read_text()
    record.write_text("{ not json")
    catalog.bump_generation(own_db)
    status, _ = await _until(client, lambda s: s["catalog"]["reload_error"], "the reload error")
    assert "unreadable" in status["catalog"]["reload_error"] and status["tracks"] == 3  # old one kept
    stuck = status["catalog"]["checks"]
    await _until(client, lambda s: s["catalog"]["checks"] >= stuck + 3, "more checks")
    # The broken stamp is not retried every tick: no reload happened meanwhile.
    assert (await (await client.get("/api/status")).json())["catalog"]["reloads"] == 0
    record.write_text(good)
    catalog.bump_generation(own_db)  # the repair is the next change
    status, _ = await _until(client, lambda s: s["catalog"]["reload_error"] is None, "the repair")
    assert status["tracks"] == 3 and status["catalog"]["reloads"] == 1


async def test_an_unreadable_stamp_is_reported_and_nothing_is_reloaded(make_client, own_db):
    client = await make_client(recognizer_=Recognizer.open(own_db), db=own_db, catalog_poll_s=POLL_S)
    stamp = own_db / catalog.GENERATION_FILE
    good = stamp.read_text()
    stamp.write_text("[]")
    status, _ = await _until(client, lambda s: s["catalog"]["stamp_error"], "the stamp error")
    assert "malformed" in status["catalog"]["stamp_error"] and status["catalog"]["reloads"] == 0
    assert status["catalog"]["reload_error"] is None and status["tracks"] == 3
    stamp.write_text(good)
    status, _ = await _until(client, lambda s: s["catalog"]["stamp_error"] is None, "the stamp read again")
    assert status["catalog"]["reloads"] == 0  # the same stamp as loaded: nothing to do


async def test_no_reload_while_the_server_itself_changes_the_database(make_client, own_db):
    from audiocopy.web.keys import CATALOG_WATCH, DB_LOCK

    client = await make_client(recognizer_=Recognizer.open(own_db), db=own_db, catalog_poll_s=0)
    app = client.server.app
    watcher = app[CATALOG_WATCH]
    assert not await watcher.check()  # nothing changed since start
    catalog.bump_generation(own_db)
    async with app[DB_LOCK]:  # a catalogue job is running: it reloads by itself when done
        assert not await watcher.check()
    assert await watcher.check() and watcher.reloads == 1
    assert not await watcher.check()


async def test_the_stamp_file_is_small_json_and_every_change_bumps_it(own_db):
    g0 = catalog.read_generation(own_db)
    assert g0.number >= 1 and g0.token  # written by the enrolment that built the database
    catalog.set_calibration(own_db, catalog.open_db(own_db).calibration)
    g1 = catalog.read_generation(own_db)
    assert g1.number == g0.number + 1 and g1 != g0
    assert not catalog.remove_track(own_db, "not enrolled") and catalog.read_generation(own_db) == g1
    assert catalog.remove_track(own_db, "chord") and catalog.read_generation(own_db).number == g1.number + 1
    raw = json.loads((own_db / catalog.GENERATION_FILE).read_text())
    assert set(raw) == {"generation", "token", "changed_at"}


async def test_generation_stamp_edges(tmp_path):
    from audiocopy.errors import ModelError

    assert catalog.read_generation(tmp_path) == catalog.Generation()  # a database from before stamps
    (tmp_path / catalog.GENERATION_FILE).write_text('{"generation": "x", "token": 1}')
    with pytest.raises(ModelError, match="malformed"):
        catalog.read_generation(tmp_path)
    assert catalog.bump_generation(tmp_path).number == 1  # a broken stamp is replaced
    a, b = catalog.bump_generation(tmp_path), catalog.bump_generation(tmp_path)
    assert (a.number, b.number) == (2, 3) and a.token != b.token
