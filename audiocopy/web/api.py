"""Read-side HTTP API: status, the plays log and its exports, Identify uploads.

Place in the pipeline: the JSON behind the Live, Identify and Plays pages
(and scripts). Nothing here changes the catalog or starts work that
outlives the request, so no admin token is needed; mutations are in
``web.admin_api``.

Identify runs the uploaded file through the same windows and recognizer
as a live stream, in chunks of ``IDENTIFY_CHUNK`` windows, each a separate
job in the one-thread compute executor: live batches queue between the
chunks, so an upload delays live streams by one chunk, not by the whole
file.
"""
from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
from aiohttp import web

from .. import __version__
from ..decision.plays import PlayTracker
from ..errors import AudioTooShort, BadAudio, UnsupportedFormat
from ..plays.export import to_csv, to_json
from ..plays.store import MAX_QUERY_ROWS, PlaysLogError
from ..signal.audio import load_audio
from ..signal.windows import window_starts
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
    audio = recognizer.audio
    seconds = signal.size / audio.sample_rate
    truncated = seconds > max_seconds
    if truncated:
        signal = signal[: int(max_seconds * audio.sample_rate)]
    starts = window_starts(signal.size, audio=audio)
    tracker = PlayTracker("upload", window_s=audio.window_seconds, wall_start=time.time(),
                          gap_s=app[SETTINGS].play_gap_s, min_windows=app[SETTINGS].play_min_windows)
    loop = asyncio.get_running_loop()
    windows_out, found = [], []
    offsets = np.arange(audio.window_samples)
    for i in range(0, len(starts), IDENTIFY_CHUNK):
        chunk = starts[i:i + IDENTIFY_CHUNK]
        windows = signal[chunk[:, None] + offsets[None, :]]  # cut per chunk: the whole set is 5x the audio
        dets = await loop.run_in_executor(app[COMPUTE_EXECUTOR], recognizer.detect_windows, windows,
                                          chunk / audio.sample_rate)
        for det in dets:
            windows_out.append({"start_s": round(det.offset_s, 3),
                                "end_s": round(det.offset_s + audio.window_seconds, 3), "match": det.track, "score": round(det.score, 4),
                                "candidates": [{"track": c.track, "score": round(c.score, 4)}
                                               for c in det.candidates[:IDENTIFY_CANDIDATES]]})
            found += tracker.update(det.offset_s, det.track, det.score)
    found += tracker.flush()
    plays_json = [{k: v for k, v in p.to_json().items() if k not in ("id", "source", "started_at", "ended_at")}
                  for p in sorted(found, key=lambda p: p.start_s)]
    match, confidence = None, None
    if found:  # the longest play is the answer for the file
        best = max(found, key=lambda p: (p.windows, p.confidence))
        match, confidence = best.track, round(best.confidence, 4)
    elif len(windows_out) < app[SETTINGS].play_min_windows:
        # Too short for a play (a single 2.5 s fragment): the window's own
        # calibrated decision is the answer, as for `audiocopy identify`.
        top = max(windows_out, key=lambda w: w["score"])
        match, confidence = top["match"], top["score"] if top["match"] else None
    return {"file": {"seconds": round(seconds, 3), "analysed_s": round(signal.size / audio.sample_rate, 3),
                     "truncated": truncated},
            "match": match, "confidence": confidence, "plays": plays_json, "windows": windows_out}
