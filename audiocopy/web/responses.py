"""JSON error responses for the HTTP API, with one shape everywhere.

Place in the pipeline: used by every API handler and by the error
middleware in ``web.app``. An API error is ``{"error": {"code", "message"}}``
with a matching HTTP status, so the pages and scripts can show the message
as it is and branch on the code.
"""
from __future__ import annotations

import json

from aiohttp import web

_STATUS = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound,
           409: web.HTTPConflict, 413: web.HTTPRequestEntityTooLarge, 415: web.HTTPUnsupportedMediaType,
           429: web.HTTPTooManyRequests, 500: web.HTTPInternalServerError, 503: web.HTTPServiceUnavailable}


def error_body(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}})


def fail(status: int, code: str, message: str, **kwargs) -> web.HTTPException:
    """An HTTP exception with a JSON error body; ``raise fail(...)``.

    kwargs go to the exception (``headers``; for 413: ``max_size``, ``actual_size``).
    """
    cls = _STATUS[status]
    if status == 413:
        kwargs.setdefault("max_size", 0)
        kwargs.setdefault("actual_size", 0)
    return cls(text=error_body(code, message), content_type="application/json", **kwargs)
