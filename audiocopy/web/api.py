"""Read-side HTTP API: status, the plays log and its exports, Identify uploads.

Place in the pipeline: the JSON behind the Live, Identify and Plays pages
(and scripts). Nothing here changes the catalog or starts work that
outlives the request, so no admin token is needed; mutations are in
``web.admin_api``.

Identify runs the uploaded file through the same windows and recognizer
as a live stream, in chunks of ``IDENTIFY_CHUNK`` windows, each a separate
job in the compute executor: live cycles queue between the chunks, so an
upload delays live streams by one chunk, not by the whole file.
"""
from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
from aiohttp import web

from .. import __version__
from ..decision.files import FileStream
from ..errors import AudioTooShort, BadAudio, UnsupportedFormat
from ..plays.export import to_csv, to_json
from ..plays.store import MAX_QUERY_ROWS, PlaysLogError
from ..signal.audio import load_audio
from .keys import (
    BATCHER,
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
from .uploads import receive_upload

log = logging.getLogger(__name__)

IDENTIFY_CHUNK = 32
#: Candidates kept per window in Identify results (the page shows three).
IDENTIFY_CANDIDATES = 3


async def status(request: web.Request) -> web.Response:
    """GET /api/status: catalog size, streams, batcher counters, uptime."""
    app = request.app
    recognizer = app[RECOGNIZER].current
    settings = app[SETTINGS]
    return web.json_response({
        "version": __version__, "engine": recognizer.engine.name, "tracks": len(recognizer.track_ids),
        "recognizer_generation": app[RECOGNIZER].generation,
        "streams": len(app[STREAMS]), "max_streams": settings.max_streams,
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
            "until": q.get("until") or None, "limit": limit, "before_id": before}


async def _query_plays(request: web.Request):
    sink = request.app[PLAYS]
    filters = _plays_filter(request)
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(request.app[IO_EXECUTOR], lambda: sink.log.query(**filters))
    except PlaysLogError as exc:
        raise fail(400, "bad_query", str(exc)) from None


async def plays(request: web.Request) -> web.Response:
    """GET /api/plays?track=&source=&since=&until=&limit=&before_id= : newest first."""
    rows = await _query_plays(request)
    return web.json_response({"plays": to_json(rows), "count": len(rows)})


async def plays_csv(request: web.Request) -> web.Response:
    """GET /api/plays.csv (same filters): a CSV download."""
    rows = await _query_plays(request)
    return web.Response(text=to_csv(rows), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="plays.csv"'})


async def plays_json(request: web.Request) -> web.Response:
    """GET /api/plays.json (same filters): a JSON download."""
    rows = await _query_plays(request)
    return web.json_response(to_json(rows), headers={"Content-Disposition": 'attachment; filename="plays.json"'})


async def identify(request: web.Request) -> web.Response:
    """POST /api/identify (multipart field "file"): per-window results and the plays found.

    Errors: 415 not an audio type, 413 too large, 400 undecodable or shorter
    than one window.
    """
    app = request.app
    settings = app[SETTINGS]
    upload = await receive_upload(request, max_bytes=settings.max_upload_bytes,
                                  tmp_dir=settings.state_path / "uploads")
    loop = asyncio.get_running_loop()
    recognizer = app[RECOGNIZER].current
    try:
        async with app[IDENTIFY_SLOTS]:
            try:
                signal = await loop.run_in_executor(app[IO_EXECUTOR], lambda: load_audio(
                    upload.path, params=recognizer.audio))
            except UnsupportedFormat as exc:
                raise fail(415, "unsupported_media_type", f"{upload.filename}: {exc.reason}") from None
            except AudioTooShort as exc:
                raise fail(400, "too_short", f"{upload.filename}: {exc.reason}") from None
            except BadAudio as exc:
                raise fail(400, "bad_audio", f"{upload.filename}: {exc.reason}") from None
            result = await _identify_signal(app, recognizer, signal, settings.max_identify_seconds)
    finally:
        upload.discard()
    result["file"] = {"name": upload.filename, "bytes": upload.size, **result.pop("file")}
    return web.json_response(result)


async def _identify_signal(app: web.Application, recognizer, signal: np.ndarray, max_seconds: float) -> dict:
    """Run an upload through the file decision (``decision.files``), one batch per compute job.

    The windows, the plays and the answer are exactly what ``audiocopy
    identify`` gives for the same file; only the length is capped.
    """
    audio = recognizer.audio
    seconds = signal.size / audio.sample_rate
    truncated = seconds > max_seconds
    if truncated:
        signal = signal[: int(max_seconds * audio.sample_rate)]
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
    return {"file": {"seconds": round(seconds, 3), "analysed_s": round(result.seconds, 3), "truncated": truncated},
            "match": answer.track, "confidence": round(answer.score, 4) if answer.track else None,
            "answer": answer.to_json(), "plays": plays_json, "windows": windows_out}
