"""Typed keys for what the app holds (``app[KEY]``), in one place.

Place in the pipeline: imported by the factory (``web.app``), which fills
them, and by the handlers, which read them. ``web.AppKey`` gives each value
a type that type checkers and readers can follow, instead of string keys.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from ..config import ServerSettings
from .auth import AdminAuth
from .batcher import Batcher
from .catalog_watch import CatalogWatcher
from .jobs import JobManager
from .monitors import MonitorManager
from .state import PlaySink, RecognizerHolder, StreamRegistry

SETTINGS = web.AppKey("settings", ServerSettings)
AUTH = web.AppKey("auth", AdminAuth)
RECOGNIZER = web.AppKey("recognizer", RecognizerHolder)
#: Compute cycles of live streams (``web.batcher``) and Identify chunks, one
#: after another (``app.COMPUTE_WORKERS`` threads, named "compute" for the OS).
COMPUTE_EXECUTOR = web.AppKey("compute_executor", ThreadPoolExecutor)
#: Decoding uploads, SQLite writes, database reloads: never on the event loop.
IO_EXECUTOR = web.AppKey("io_executor", ThreadPoolExecutor)
BATCHER = web.AppKey("batcher", Batcher)
#: Follows catalogue changes made outside the server (``web.catalog_watch``).
CATALOG_WATCH = web.AppKey("catalog_watch", CatalogWatcher)
PLAYS = web.AppKey("plays", PlaySink)
STREAMS = web.AppKey("streams", StreamRegistry)
JOBS = web.AppKey("jobs", JobManager)
MONITORS = web.AppKey("monitors", MonitorManager)
#: Held by every catalog mutation (delete, add job) so they never overlap.
DB_LOCK = web.AppKey("db_lock", asyncio.Lock)
#: Bounds concurrent Identify uploads being analysed.
IDENTIFY_SLOTS = web.AppKey("identify_slots", asyncio.Semaphore)
STARTED_AT = web.AppKey("started_at", float)
