"""HTML pages: Live, Identify, Catalog, Plays, Monitors.

Place in the pipeline: the browser's entry points. Each page is a Jinja2
template extending ``base.html`` (autoescaped, so track names and URLs from
users are shown as text, never as markup) plus an ES module in ``static/js``
that talks to ``/ws`` or the JSON API. Handlers only pass what the first
paint needs; everything live is fetched by the page's script.
"""
from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from .keys import JOBS, RECOGNIZER, SETTINGS

PAGES = (("live", "/", "Live"), ("identify", "/identify", "Identify"), ("catalog", "/catalog", "Catalog"),
         ("plays", "/plays", "Plays"), ("monitors", "/monitors", "Monitors"))


def _context(request: web.Request, page: str) -> dict:
    app = request.app
    settings = app[SETTINGS]
    recognizer = app[RECOGNIZER].current
    return {"page": page, "pages": PAGES, "tracks": len(recognizer.track_ids), "engine": recognizer.engine.name,
            "window_s": recognizer.audio.window_seconds, "hop_s": recognizer.audio.hop_seconds,
            "max_upload_mb": settings.max_upload_bytes / (1024 * 1024),
            "max_message_bytes": settings.max_message_bytes, "adding_enabled": app[JOBS].enabled}


def _page(name: str):
    async def handler(request: web.Request) -> web.Response:
        return aiohttp_jinja2.render_template(f"{name}.html", request, _context(request, name))
    handler.__name__ = f"{name}_page"
    handler.__doc__ = f"GET the {name.title()} page."
    return handler


live = _page("live")
identify = _page("identify")
catalog = _page("catalog")
plays = _page("plays")
monitors = _page("monitors")
