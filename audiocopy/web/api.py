"""Read-side HTTP API: status, the plays log and its exports, Identify uploads.

Place in the pipeline: the JSON behind the Live, Identify and Plays pages
(and scripts). Nothing here changes the catalog or starts work that
outlives the request, so no admin token is needed; mutations are in
``web.admin_api``.

Identify runs the uploaded file through the same windows and recognizer
as a live stream, in chunks of ``IDENTIFY_CHUNK`` windows, each a separate
job in the compute executor: live cycles queue between the chunks, so an
upload delays live streams by one chunk, not by the whole file.

Identify is open to anyone who can reach the server, so it is bounded like
the rest: Origin checked as for ``/ws`` (and an optional token,
``identify_token``), at most ``max_identify_jobs`` uploads at once (a slot
is taken before the body is read; without one in ``IDENTIFY_WAIT_S`` the
answer is 503), and only the first ``max_identify_seconds`` of a file are
ever decoded (``signal.audio.load_audio_head``), whatever its header says.
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from .. import __version__
from ..decision.files import FileStream
from ..engines.metadata import describe, read_metadata
from ..errors import AudioTooShort, BadAudio, UnsupportedFormat
from ..plays.export import to_csv, to_json
from ..plays.store import MAX_QUERY_ROWS, PlaysLogError
from ..signal.audio import AudioHead, load_audio_head
from .auth import AdminAuth
from .keys import (
    AUTH,
    BATCHER,
    CATALOG_WATCH,
    COMPUTE_EXECUTOR,
    IDENTIFY_SLOTS,
    IO_EXECUTOR,
    JOBS,
    MONITORS,
    PLAYS,
    RECOGNIZER,
    SETTINGS,
    STARTED_AT,
    STREAMS,
)
from .responses import fail
from .security import origin_allowed
from .uploads import receive_upload
from .workers import WORKERS

log = logging.getLogger(__name__)

IDENTIFY_CHUNK = 32
#: How long an upload waits for an Identify slot (``max_identify_jobs``) before it gets 503.
IDENTIFY_WAIT_S = 5.0
#: Candidates kept per window in Identify results (the page shows three).
IDENTIFY_CANDIDATES = 3


async def status(request: web.Request) -> web.Response:
    """GET /api/status: catalog size and generation, streams, batcher counters (drops per source kind), uptime,
    this worker's id and every worker on the store with the monitors each holds (``web.workers``)."""
    app = request.app
    recognizer = app[RECOGNIZER].current
    settings = app[SETTINGS]
    workers = app[WORKERS]
    try:
        rows, workers_error = await asyncio.get_running_loop().run_in_executor(app[IO_EXECUTOR],
                                                                               workers.status_sync), None
    except PlaysLogError as exc:  # the status page still answers while the store is down
        rows, workers_error = None, str(exc)
    return web.json_response({
        "worker_id": workers.worker_id, "workers": rows, "workers_error": workers_error,
        "version": __version__, "engine": recognizer.engine.name, "tracks": len(recognizer.track_ids),
        "recognizer_generation": app[RECOGNIZER].generation, "catalog": app[CATALOG_WATCH].to_json(),
        "streams": len(app[STREAMS]), "max_streams": settings.max_streams, "connections": app[STREAMS].connections,
        "monitors": len(app[MONITORS].monitors), "pending_windows": app[BATCHER].pending,
        "batcher": app[BATCHER].stats.to_json(), "adding_tracks": app[JOBS].enabled,
        "uptime_s": round(time.time() - app[STARTED_AT], 1),
        "limits": {"max_message_bytes": settings.max_message_bytes, "max_upload_bytes": settings.max_upload_bytes},
    })


def _plays_filter(request: web.Request) -> dict:
    q = request.query
    try:
        limit = int(q.get("limit", "1000"))
        before = int(q["before_id"]) if q.get("before_id") else None
    except ValueError:
        raise fail(400, "bad_query", "limit and before_id must be integers") from None
    if not 1 <= limit <= MAX_QUERY_ROWS:
        raise fail(400, "bad_query", f"limit must be between 1 and {MAX_QUERY_ROWS}")
    return {"track": q.get("track") or None, "source": q.get("source") or None, "since": q.get("since") or None,
            "until": q.get("until") or None, "limit": limit, "before_id": before, "status": q.get("status") or None}


async def _query_plays(request: web.Request):
    """(rows, titles): the plays the request's filters select, and their tracks' titles and artists."""
    app = request.app
    sink = app[PLAYS]
    filters = _plays_filter(request)
    loop = asyncio.get_running_loop()
    try:
        rows = await loop.run_in_executor(app[IO_EXECUTOR], lambda: sink.log.query(**filters))
    except PlaysLogError as exc:
        raise fail(400, "bad_query", str(exc)) from None
    # Titles are resolved here, at the edge: the store keeps track ids, a title edited later shows everywhere.
    entries = await loop.run_in_executor(app[IO_EXECUTOR], read_metadata, app[SETTINGS].db)
    return rows, lambda track: describe(entries, track)


async def plays(request: web.Request) -> web.Response:
    """GET /api/plays?track=&source=&since=&until=&status=&limit=&before_id= : newest first.

    status: open (in progress), closed, or recovered (left open by a server that died).
    """
    rows, titles = await _query_plays(request)
    return web.json_response({"plays": to_json(rows, titles), "count": len(rows)})


async def plays_csv(request: web.Request) -> web.Response:
    """GET /api/plays.csv (same filters): a CSV download."""
    rows, titles = await _query_plays(request)
    return web.Response(text=to_csv(rows, titles), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="plays.csv"'})


async def plays_json(request: web.Request) -> web.Response:
    """GET /api/plays.json (same filters): a JSON download."""
    rows, titles = await _query_plays(request)
    return web.json_response(to_json(rows, titles), headers={"Content-Disposition": 'attachment; filename="plays.json"'})


async def plays_sources(request: web.Request) -> web.Response:
    """GET /api/plays/sources: every source seen (name, kind, first/last seen, streams, windows answered/dropped)."""
    sink = request.app[PLAYS]
    rows = await asyncio.get_running_loop().run_in_executor(request.app[IO_EXECUTOR], sink.log.sources)
    return web.json_response({"sources": rows, "count": len(rows)})


def _check_identify_access(request: web.Request) -> None:
    """Origin as for ``/ws``; the Identify token (or the admin token) when one is set."""
    settings = request.app[SETTINGS]
    if not origin_allowed(request.headers.get("Origin"), request.host, settings.allowed_origins,
                          settings.host_allowlist):
        raise fail(403, "forbidden_origin", "requests from this origin are not allowed")
    if settings.identify_token is None:
        return
    header = request.headers.get("Authorization")
    if AdminAuth.from_token(settings.identify_token).check(header) or request.app[AUTH].check(header):
        return
    if not header:
        raise fail(401, "token_required", "Identify needs a token on this server (Authorization: Bearer <token>)",
                   headers={"WWW-Authenticate": 'Bearer realm="audiocopy"'})
    raise fail(403, "bad_token", "the token is not valid for Identify")


async def identify(request: web.Request) -> web.Response:
    """POST /api/identify (multipart field "file"): per-window results and the plays found.

    Errors: 403 foreign Origin or wrong token, 401 no token (when one is
    required), 503 busy, 415 not an audio type, 413 too large, 400
    undecodable or shorter than one window.
    """
    app = request.app
    settings = app[SETTINGS]
    _check_identify_access(request)
    slots = app[IDENTIFY_SLOTS]
    try:  # before the body is read: a busy server stores no upload
        async with asyncio.timeout(IDENTIFY_WAIT_S):  # not wait_for: it can lose a cancel (``web.stopping``)
            await slots.acquire()
    except TimeoutError:
        raise fail(503, "busy", f"the server is already identifying {settings.max_identify_jobs} uploads; "
                   "try again in a moment", headers={"Retry-After": "5"}) from None
    try:
        upload = await receive_upload(request, max_bytes=settings.max_upload_bytes,
                                      tmp_dir=settings.state_path / "uploads")
        try:
            result = await _identify_upload(app, upload, settings.max_identify_seconds)
        finally:
            upload.discard()
    finally:
        slots.release()
    result["file"] = {"name": upload.filename, "bytes": upload.size, **result.pop("file")}
    return web.json_response(result)


async def _identify_upload(app: web.Application, upload, max_seconds: float) -> dict:
    """Decode the head of a stored upload off the loop (``load_audio_head``) and analyse it."""
    recognizer = app[RECOGNIZER].current
    loop = asyncio.get_running_loop()
    try:
        head = await loop.run_in_executor(app[IO_EXECUTOR], lambda: load_audio_head(
            upload.path, params=recognizer.audio, max_seconds=max_seconds))
    except UnsupportedFormat as exc:
        raise fail(415, "unsupported_media_type", f"{upload.filename}: {exc.reason}") from None
    except AudioTooShort as exc:
        raise fail(400, "too_short", f"{upload.filename}: {exc.reason}") from None
    except BadAudio as exc:
        raise fail(400, "bad_audio", f"{upload.filename}: {exc.reason}") from None
    return await _identify_signal(app, recognizer, head)


async def _identify_signal(app: web.Application, recognizer, head: AudioHead) -> dict:
    """Run an upload through the file decision (``decision.files``), one batch per compute job.

    The windows, the plays and the answer are exactly what ``audiocopy
    identify`` gives for the same file; only the length is capped. The
    file's length is the decoded one, or, when decoding stopped at the cap,
    the length its header declares (if it declares one).
    """
    audio = recognizer.audio
    signal, truncated = head.samples, head.truncated
    seconds = signal.size / audio.sample_rate
    if truncated and head.declared_s is not None:
        seconds = max(seconds, head.declared_s)
    stream = FileStream(recognizer, signal, source="upload", batch_size=IDENTIFY_CHUNK)
    loop = asyncio.get_running_loop()
    # One batch per executor job: live batches queue between them.
    while await loop.run_in_executor(app[COMPUTE_EXECUTOR], stream.step):
        pass
    result = stream.result()
    windows_out = [{"start_s": round(det.offset_s, 3), "end_s": round(det.offset_s + audio.window_seconds, 3),
                    "match": det.track, "score": round(det.score, 4),
                    "candidates": [{"track": c.track, "score": round(c.score, 4)}
                                   for c in det.candidates[:IDENTIFY_CANDIDATES]]} for det in result.windows]
    plays_json = [{k: v for k, v in p.to_json().items() if k not in ("id", "source", "started_at", "ended_at", "open")}
                  for p in result.plays]
    answer = result.answer
    # Titles are looked up here, at the edge, by track id (the decision knows ids only).
    entries = await loop.run_in_executor(app[IO_EXECUTOR], read_metadata, app[SETTINGS].db)
    for play in plays_json:
        play.update(describe(entries, play["track"]))
    return {"file": {"seconds": round(seconds, 3), "analysed_s": round(result.seconds, 3), "truncated": truncated},
            "match": answer.track, **describe(entries, answer.track),
            "confidence": round(answer.score, 4) if answer.track else None,
            "answer": answer.to_json(), "plays": plays_json, "windows": windows_out}
