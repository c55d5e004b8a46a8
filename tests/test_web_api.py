"""Pages, Identify uploads, plays exports and the admin-token and upload negatives."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import soundfile as sf
from aiohttp import FormData
from synth import melody, pattern
from test_web_fixtures import TOKEN, auth_headers, make_client, recognizer, settings  # noqa: F401

from audiocopy.decision.play import Play

pytestmark = pytest.mark.asyncio


def wav_bytes(signal: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, signal, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def upload(data: bytes, filename: str, **fields) -> FormData:
    form = FormData()
    for k, v in fields.items():
        form.add_field(k, v)
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    return form


@pytest.mark.parametrize("path, marker", [("/", 'id="current-match"'), ("/identify", 'id="identify-form"'),
                                          ("/catalog", 'id="catalog-tracks"'), ("/plays", 'id="plays-rows"'),
                                          ("/monitors", 'id="monitor-form"')])
async def test_pages_render_with_security_headers(make_client, path, marker):
    client = await make_client()
    resp = await client.get(path)
    assert resp.status == 200
    html = await resp.text()
    assert marker in html and "3 tracks" in html and 'type="module"' in html
    assert "<script>" not in html  # no inline script: the CSP forbids it
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_static_modules_are_served(make_client):
    client = await make_client()
    for name in ("js/live.js", "js/pcm-worklet.js", "js/socket.js", "js/api.js", "css/app.css"):
        resp = await client.get(f"/static/{name}")
        assert resp.status == 200, name
    assert (await client.get("/static/../server.py")).status in (403, 404)


async def test_status(make_client):
    client = await make_client()
    status = await (await client.get("/api/status")).json()
    assert status["tracks"] == 3 and status["engine"] == "cnnbin" and status["streams"] == 0
    assert status["limits"]["max_message_bytes"] == 64 * 1024


async def test_unknown_api_path_is_json_404(make_client):
    client = await make_client()
    resp = await client.get("/api/nothing")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"


# --- Identify -----------------------------------------------------------------------

async def test_identify_catalog_track_with_per_window_results(make_client):
    client = await make_client()
    signal = np.concatenate([melody(300, 3, 22050), pattern("chirps", 5, 22050)])
    resp = await client.post("/api/identify", data=upload(wav_bytes(signal, 22050), "../../my recording.wav"))
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["match"] == "chirps" and data["confidence"] > 0
    assert data["file"]["name"] == "my recording.wav" and data["file"]["seconds"] == 8.0
    assert len(data["windows"]) == 12 and data["windows"][-1]["match"] == "chirps"
    assert data["windows"][0]["start_s"] == 0.0 and data["windows"][0]["match"] is None
    assert [p["track"] for p in data["plays"]] == ["chirps"] and data["plays"][0]["end_s"] == 8.0


async def test_identify_single_fragment_and_unknown_music(make_client):
    client = await make_client()
    one = await (await client.post("/api/identify", data=upload(wav_bytes(pattern("chord", 2.5, 16000), 16000),
                                                                 "x.wav"))).json()
    assert one["match"] == "chord" and len(one["windows"]) == 1
    unknown = await (await client.post("/api/identify", data=upload(wav_bytes(melody(200, 5, 16000), 16000),
                                                                     "y.wav"))).json()
    assert unknown["match"] is None and unknown["plays"] == []
    assert all(w["match"] is None for w in unknown["windows"])


async def test_identify_upload_negatives(make_client):
    client = await make_client(max_upload_bytes=64 * 1024)
    good = wav_bytes(pattern("chord", 2.5, 8000), 8000)

    async def post(form, **kw):
        resp = await client.post("/api/identify", data=form, **kw)
        return resp.status, (await resp.json())["error"]["code"]

    assert await post(upload(good, "notes.txt")) == (415, "unsupported_media_type")
    assert await post(upload(good, "noextension")) == (415, "unsupported_media_type")
    assert await post(b"raw bytes", headers={"Content-Type": "audio/wav"}) == (415, "unsupported_media_type")
    assert await post(upload(b"\x00" * (70 * 1024), "big.wav")) == (413, "too_large")
    assert await post(upload(b"RIFF garbage that is not a wav", "bad.wav")) == (400, "bad_audio")
    assert await post(upload(wav_bytes(pattern("chord", 1.0, 8000), 8000), "short.wav")) == (400, "too_short")
    assert await post(upload(b"", "empty.wav")) == (400, "empty_file")
    form = FormData()
    form.add_field("name", "x")
    assert await post(form) in ((400, "no_file"), (415, "unsupported_media_type"))
    assert (await client.post("/api/identify", data=upload(good, "ok.wav"))).status == 200


async def test_uploads_never_left_on_disk(make_client, settings):
    client = await make_client(max_upload_bytes=64 * 1024)
    await client.post("/api/identify", data=upload(wav_bytes(pattern("chord", 2.5, 8000), 8000), "a.wav"))
    await client.post("/api/identify", data=upload(b"\x00" * (70 * 1024), "big.wav"))
    await client.post("/api/identify", data=upload(b"junk", "bad.mp3"))
    assert list((settings.state_path / "uploads").glob("*")) == []


# --- plays over HTTP ----------------------------------------------------------------

async def test_plays_export_csv_and_json_with_filters(make_client, settings):
    from audiocopy.plays.store import PlaysLog

    log = PlaysLog(settings.state_path / "plays.sqlite")
    for track, day in (("pulses", "2024-05-01"), ("chord", "2024-05-02")):
        log.add(Play(track, "radio", 0.0, 10.0, 1.0, 2.0, 16, f"{day}T10:00:00.000Z", f"{day}T10:00:10.000Z"))
    client = await make_client()
    data = await (await client.get("/api/plays?track=pul")).json()
    assert [p["track"] for p in data["plays"]] == ["pulses"]
    resp = await client.get("/api/plays.csv?since=2024-05-02")
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [r["track"] for r in rows] == ["chord"]
    resp = await client.get("/api/plays.json")
    assert [p["track"] for p in await resp.json()] == ["chord", "pulses"]
    for bad in ("since=tomorrow", "limit=0", "limit=x"):
        resp = await client.get(f"/api/plays?{bad}")
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_query"


# --- admin token and Origin on mutations ----------------------------------------------

MUTATIONS = [("DELETE", "/api/catalog/tracks/pulses", {}), ("POST", "/api/monitors", {"json": {"url": "http://x"}}),
             ("DELETE", "/api/monitors/abc", {}), ("POST", "/api/catalog/tracks", {"data": b"x"})]


@pytest.mark.parametrize("method, path, kw", MUTATIONS)
async def test_mutations_need_the_token(make_client, method, path, kw):
    client = await make_client()
    resp = await client.request(method, path, **kw)
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "token_required"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await client.request(method, path, headers=auth_headers("wrong-token-wrong-token"), **kw)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "bad_token"
    resp = await client.request(method, path, headers={**auth_headers(), "Origin": "https://evil.example"}, **kw)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "forbidden_origin"
    status = await (await client.get("/api/status")).json()
    assert status["tracks"] == 3  # nothing changed


async def test_add_track_is_refused_when_adding_is_disabled(make_client):
    client = await make_client()
    resp = await client.post("/api/catalog/tracks", headers=auth_headers(),
                             data=upload(wav_bytes(pattern("chord", 3, 8000), 8000), "new.wav", name="new"))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "adding_disabled"


async def test_catalog_listing(make_client):
    client = await make_client()
    data = await (await client.get("/api/catalog")).json()
    assert [t["track_id"] for t in data["tracks"]] == ["chirps", "chord", "pulses"]
    assert all(t["model_bytes"] > 1000 and isinstance(t["threshold_logit"], float) for t in data["tracks"])
    assert data["engine"] == "cnnbin" and data["adding_enabled"] is False
    assert TOKEN not in await (await client.get("/api/status")).text()
