"""Start the server: settings -> token -> recognizer (loaded once) -> app -> listen.

Place in the pipeline: shared by the two launchers, ``server.py`` and
``audiocopy serve``, which only parse arguments and show messages. Nothing
here prints: what the operator must see (the admin token on first start,
the address) is handed to the ``announce`` callback the launcher gives.
"""
from __future__ import annotations

import argparse
import logging
from typing import Callable

from aiohttp import web

from ..config import ServerSettings
from ..decision.recognizer import Recognizer
from .app import create_app
from .auth import load_or_create
from .settings import add_arguments

log = logging.getLogger(__name__)


def build_parser(prog: str = "server.py") -> argparse.ArgumentParser:
    """The server's command line (every option also reads AUDIOCOPY_* variables)."""
    p = argparse.ArgumentParser(prog=prog, description="Serve live recognition over WebSocket, with the web app "
                                                       "(Live, Identify, Catalog, Plays, Monitors).")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    add_arguments(p)
    return p


def run(settings: ServerSettings, *, announce: Callable[[str], None]) -> None:
    """Load the catalog once, build the app and serve until interrupted.

    announce: shows one line to the operator (the launcher's ``print``).
    Raises ``AudiocopyError`` (bad database, unreadable token file).
    """
    auth = load_or_create(settings)
    if auth.new_token:
        announce(f"admin token (shown only this once; keep it to change the catalog or monitors): {auth.new_token}")
    recognizer = Recognizer.open(settings.db)
    log.info("catalog %s: %d tracks (%s)", settings.db, len(recognizer.track_ids), recognizer.engine.name)
    app = create_app(settings, recognizer=recognizer, auth=auth)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    web.run_app(app, host=settings.host, port=settings.port, access_log=None,
                print=lambda _: announce(f"serving {len(recognizer.track_ids)} tracks on http://{host}:{settings.port}"
                                         " (Ctrl-C to stop)"))
