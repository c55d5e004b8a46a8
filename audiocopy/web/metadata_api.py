"""A track's metadata over HTTP: read by anyone, edited with the admin token.

Place in the pipeline: the JSON behind the Catalog page's metadata form and
the titles on the Live page. The track id stays the key in the path; the
record lives in ``DB/metadata.json`` (``engines.metadata``), written
atomically under its own lock, so an edit here and a CLI ``metadata
import`` never lose each other's change. An edit changes no score, so the
recognizer is not reloaded.

* ``GET /api/catalog/tracks/{track_id}/metadata``: the record (a track
  without one answers with its id as the title and ``"origin": null``).
* ``PATCH`` the same path, JSON with any of ``title``, ``artist``,
  ``album``, ``isrc``, ``owner_id``, ``rights_owner``: those fields change,
  the others stay. Origin and admin token are checked before the body is
  read (``admin_api.require_admin``); 400 ``bad_metadata`` (a bad value or an
  unknown field), 404 ``unknown_track``, 413 a body over ``MAX_BODY_BYTES``.
"""
from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..engines import metadata
from .admin_api import require_admin
from .keys import IO_EXECUTOR, RECOGNIZER, SETTINGS
from .responses import fail

log = logging.getLogger(__name__)

#: Largest PATCH body: six fields of at most ``metadata.MAX_FIELD_CHARS`` characters fit many times over.
MAX_BODY_BYTES = 16 * 1024


def _known_track(request: web.Request) -> str:
    track_id = request.match_info["track_id"]
    if track_id not in request.app[RECOGNIZER].current.track_ids:
        raise fail(404, "unknown_track", f"no track {track_id!r} in the catalog")
    return track_id


async def get_track_metadata(request: web.Request) -> web.Response:
    """GET /api/catalog/tracks/{track_id}/metadata: {"track_id", "metadata": {title, artist, ..., origin}}."""
    track_id = _known_track(request)
    db = request.app[SETTINGS].db
    entries = await asyncio.get_running_loop().run_in_executor(request.app[IO_EXECUTOR], metadata.read_metadata, db)
    meta = entries.get(track_id)
    record = meta.to_json() if meta else {**metadata.TrackMeta(title=track_id).to_json(), "origin": None}
    return web.json_response({"track_id": track_id, "metadata": record})


async def edit_track_metadata(request: web.Request) -> web.Response:
    """PATCH /api/catalog/tracks/{track_id}/metadata (JSON object of fields): the stored record."""
    require_admin(request)
    track_id = _known_track(request)
    if request.content_length is None or request.content_length > MAX_BODY_BYTES:
        raise fail(413, "too_large", f"send a JSON object of at most {MAX_BODY_BYTES} bytes with a Content-Length",
                   max_size=MAX_BODY_BYTES, actual_size=request.content_length or 0)
    try:
        body = await request.json()
    except ValueError:
        raise fail(400, "bad_json", "send a JSON object such as {\"title\": ..., \"artist\": ...}") from None
    if not isinstance(body, dict) or not body:
        raise fail(400, "bad_metadata", f"send a JSON object with any of {', '.join(metadata.FIELDS)}")
    db = request.app[SETTINGS].db
    try:
        meta = await asyncio.get_running_loop().run_in_executor(
            request.app[IO_EXECUTOR], lambda: metadata.edit_metadata(db, track_id, body, origin="admin"))
    except metadata.MetadataError as exc:
        raise fail(400, "bad_metadata", str(exc)) from None
    log.info("metadata of %r edited by the admin", track_id)
    return web.json_response({"track_id": track_id, "metadata": meta.to_json()})
