"""Catalog and monitor API: listings for everyone, mutations behind the admin token.

Place in the pipeline: the JSON behind the Catalog and Monitors pages.
Every mutation first checks the Origin and the admin token (``require_admin``)
*before* reading a request body, so an unauthenticated client cannot make
the server store a 50 MB upload. Status codes: 401 no token, 403 wrong
token or foreign Origin, 404 unknown track/monitor, 409 conflict (duplicate
track or monitor name, a job holds the database, adding disabled). Monitor
URLs are listed in full only to requests with the admin token.

Catalog changes end with a hot reload of the recognizer (see
``state.RecognizerHolder``): streams keep running and the next batch uses
the new catalog.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from ..engines import catalog
from .jobs import JobConflict, JobError
from .keys import AUTH, DB_LOCK, IO_EXECUTOR, JOBS, MONITORS, RECOGNIZER, SETTINGS
from .monitors import MonitorError
from .responses import fail
from .security import origin_allowed
from .uploads import MAX_TRACK_SECONDS, receive_upload
from .url_guard import UrlRefused
from .webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, WEBHOOKS, WebhookError

log = logging.getLogger(__name__)


def require_admin(request: web.Request) -> None:
    """Raise 403 for a foreign Origin, 401 without a token, 403 with a wrong one."""
    settings = request.app[SETTINGS]
    if not origin_allowed(request.headers.get("Origin"), request.host, settings.allowed_origins,
                          settings.host_allowlist):
        raise fail(403, "forbidden_origin", "requests from this origin are not allowed")
    ok = request.app[AUTH].check(request.headers.get("Authorization"))
    if ok is None:
        raise fail(401, "token_required", "this action needs the admin token (Authorization: Bearer <token>)",
                   headers={"WWW-Authenticate": 'Bearer realm="audiocopy"'})
    if not ok:
        raise fail(403, "bad_token", "the admin token is not valid")


def _track_rows(db: Path) -> list[dict]:
    rows = []
    for rec in catalog.track_records(db):
        model = Path(rec["_path"]).parent / str(rec.get("model_file", ""))
        metrics = rec.get("metrics") or {}
        # Per-engine fields (cnnbin: threshold and model; fingerprint: duration and vectors); None where
        # a field does not apply, and the Catalog page shows only its engine's columns.
        rows.append({"track_id": rec["track_id"], "engine": rec.get("engine"),
                     "threshold_logit": rec.get("threshold_logit"),
                     "model_bytes": model.stat().st_size if rec.get("model_file") and model.is_file() else None,
                     "duration_s": rec.get("duration_s"), "n_vectors": rec.get("n_vectors"),
                     "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
                     "source": Path(str(rec.get("source", ""))).name or None})
    return rows


async def list_catalog(request: web.Request) -> web.Response:
    """GET /api/catalog: tracks with their engine's fields, calibration, adding enabled."""
    app = request.app
    db = app[SETTINGS].db
    loop = asyncio.get_running_loop()
    info, rows = await loop.run_in_executor(app[IO_EXECUTOR], lambda: (catalog.open_db(db), _track_rows(db)))
    return web.json_response({"engine": info.engine, "tracks": rows, "calibration": info.calibration,
                              "loaded_tracks": len(app[RECOGNIZER].current.track_ids),
                              "adding_enabled": app[JOBS].enabled})


async def delete_track(request: web.Request) -> web.Response:
    """DELETE /api/catalog/tracks/{track_id}: remove, recalibrate (``audiocopy remove``), reload."""
    require_admin(request)
    app = request.app
    track_id = request.match_info["track_id"]
    if app[DB_LOCK].locked():
        raise fail(409, "busy", "a catalog job is running; try again when it has finished")
    if track_id not in app[RECOGNIZER].current.track_ids:
        raise fail(404, "unknown_track", f"no track {track_id!r} in the catalog")
    try:
        await app[JOBS].remove(track_id)
    except JobError as exc:
        raise fail(409, "remove_failed", str(exc)) from None
    log.info("track %r removed by the admin", track_id)
    return web.json_response({"removed": track_id, "tracks": len(app[RECOGNIZER].current.track_ids)})


async def add_track(request: web.Request) -> web.Response:
    """POST /api/catalog/tracks (multipart: file, name): 202 with the training job."""
    require_admin(request)
    app = request.app
    jobs = app[JOBS]
    if not jobs.enabled:
        raise fail(409, "adding_disabled", "adding tracks is disabled: start the server with --negatives-dir DIR")
    settings = app[SETTINGS]
    upload = await receive_upload(request, max_bytes=settings.max_upload_bytes,
                                  tmp_dir=settings.state_path / "uploads", max_seconds=MAX_TRACK_SECONDS)
    name = upload.fields.get("name") or Path(upload.filename).stem
    try:
        job = jobs.submit(upload.path, upload.suffix, name, app[RECOGNIZER].current.track_ids)
    except JobConflict as exc:
        upload.discard()
        raise fail(409, "duplicate_track", str(exc)) from None
    except JobError as exc:
        upload.discard()
        raise fail(400, "bad_track_name", str(exc)) from None
    return web.json_response({"job": job.to_json()}, status=202)


async def list_jobs(request: web.Request) -> web.Response:
    """GET /api/jobs: add-track jobs, newest first."""
    jobs = [j.to_json() for j in reversed(request.app[JOBS].jobs.values())]
    return web.json_response({"jobs": jobs})


async def get_job(request: web.Request) -> web.Response:
    """GET /api/jobs/{job_id}."""
    job = request.app[JOBS].jobs.get(request.match_info["job_id"])
    if job is None:
        raise fail(404, "unknown_job", "no such job")
    return web.json_response({"job": job.to_json()})


async def list_monitors(request: web.Request) -> web.Response:
    """GET /api/monitors: every monitor with its state and last result.

    Monitor URLs may carry stream keys: the full URL only with a valid admin
    token, ``scheme://host/…`` otherwise (a wrong token is not an error here,
    it just sees the redacted list).
    """
    monitors = request.app[MONITORS]
    show_url = request.app[AUTH].check(request.headers.get("Authorization")) is True
    return web.json_response({"monitors": [m.to_json(show_url=show_url) for m in monitors.monitors.values()],
                              "urls_shown": show_url, "max_monitors": monitors.settings.max_monitors,
                              "allow_private": monitors.settings.allow_private_monitors,
                              "allow_hls": monitors.settings.allow_hls_monitors})


async def _url_request(request: web.Request, what: str, shape: str) -> dict:
    """The JSON object of a request that adds a ``what`` (monitor, webhook): it must carry a "url" string."""
    try:
        body = await request.json()
    except ValueError:
        raise fail(400, "bad_json", f"send a JSON object {shape}") from None
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        raise fail(400, "bad_request", f"a {what} needs a \"url\" string")
    return body


async def add_monitor(request: web.Request) -> web.Response:
    """POST /api/monitors (JSON {"url", "name"}): 201 with the new monitor."""
    require_admin(request)
    body = await _url_request(request, "monitor", '{"url": ..., "name": ...}')
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise fail(400, "bad_request", "\"name\" must be a string")
    try:
        monitor = await request.app[MONITORS].add(body["url"], name)
    except UrlRefused as exc:
        raise fail(400, "url_refused", str(exc)) from None
    except MonitorError as exc:  # limit or duplicate name (409), bad name (400)
        raise fail(exc.status, exc.code, str(exc)) from None
    return web.json_response({"monitor": monitor.to_json(show_url=True)}, status=201)


async def delete_monitor(request: web.Request) -> web.Response:
    """DELETE /api/monitors/{monitor_id}."""
    require_admin(request)
    try:
        await request.app[MONITORS].remove(request.match_info["monitor_id"])
    except MonitorError as exc:
        raise fail(exc.status, exc.code, str(exc)) from None
    return web.json_response({"removed": request.match_info["monitor_id"]})


async def list_webhooks(request: web.Request) -> web.Response:
    """GET /api/webhooks (admin token): receivers, the signing key, the outbox and its recent failures.

    Admin only, unlike the monitor list: the answer holds the signing key,
    and webhook URLs often carry a secret of the receiver's.
    """
    require_admin(request)
    dispatcher = request.app[WEBHOOKS]
    loop = asyncio.get_running_loop()
    counts, failures = await loop.run_in_executor(
        request.app[IO_EXECUTOR], lambda: (dispatcher.outbox.counts(), dispatcher.outbox.failures()))
    s = dispatcher.settings
    return web.json_response({
        "webhooks": [{"id": h.id, "url": h.url, "created_at": h.created_at} for h in dispatcher.webhooks],
        "signing_key": dispatcher.key, "signature_header": SIGNATURE_HEADER, "timestamp_header": TIMESTAMP_HEADER,
        "max_webhooks": s.max_webhooks, "max_attempts": s.webhook_max_attempts, "outbox": counts,
        "recent_failures": [{"delivery": d.id, "webhook_id": d.webhook_id, "event": d.event, "attempts": d.attempts,
                             "last_error": d.last_error, "created_at": d.created_at} for d in failures]})


async def add_webhook(request: web.Request) -> web.Response:
    """POST /api/webhooks (JSON {"url"}): 201 with the new webhook; 400 ``url_refused`` from the URL guard."""
    require_admin(request)
    body = await _url_request(request, "webhook", '{"url": ...}')
    try:
        hook = await request.app[WEBHOOKS].add(body["url"])
    except UrlRefused as exc:
        raise fail(400, "url_refused", str(exc)) from None
    except WebhookError as exc:  # limit or duplicate (409)
        raise fail(exc.status, exc.code, str(exc)) from None
    return web.json_response({"webhook": {"id": hook.id, "url": hook.url, "created_at": hook.created_at}},
                             status=201)


async def delete_webhook(request: web.Request) -> web.Response:
    """DELETE /api/webhooks/{webhook_id}: the receiver and its pending deliveries."""
    require_admin(request)
    try:
        await request.app[WEBHOOKS].remove(request.match_info["webhook_id"])
    except WebhookError as exc:
        raise fail(exc.status, exc.code, str(exc)) from None
    return web.json_response({"removed": request.match_info["webhook_id"]})
