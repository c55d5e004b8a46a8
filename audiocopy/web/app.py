"""The aiohttp application factory: settings in, a ready app out.

Place in the pipeline: the top of the server package; ``server.py`` and
``audiocopy serve`` call ``create_app`` and run it, tests hand it to
``aiohttp_client``. The factory only wires things together:

* typed state (``web.keys``), set up and torn down in ``cleanup_ctx`` in
  dependency order: executors -> recognizer -> plays log (which closes
  the plays a crashed run left open, ``web.workers``; SQLite or
  PostgreSQL as ``--store`` says, ``plays.factory``) -> stream tokens
  (``web.source_tokens``) -> webhooks (closed plays to signed POSTs,
  ``web.webhooks``) -> batcher -> metrics
  listeners (``web.metrics``, served at ``/metrics``) ->
  jobs -> catalogue watcher (reloads after changes made outside the
  server, ``web.catalog_watch``) -> monitors -> the lease loop (``web.workers``: which
  monitors this worker runs) (teardown runs in reverse, so monitors and streams flush
  their plays before the log and the executors go away). The store opens
  first because monitors, stream tokens and the webhook outbox are tables
  in it too (``plays.monitor_rows``, ``plays.token_rows``,
  ``plays.outbox_rows``); files an older release kept them in are imported
  into it on start (``plays.legacy``);
* threads: the event loop (which only moves bytes), the compute executor
  (``COMPUTE_WORKERS`` threads named "compute": every stream's decoding,
  windows, scoring and decisions, ``web.batcher``), an I/O pool ("io": the
  plays log, uploads, reloads); NumPy's BLAS on one thread (``web.threads``);
* routes: pages, ``/ws`` (admitted by stream token or free source name,
  ``web.source_tokens``), the JSON API and ``/static``;
* middlewares: security headers on every response and JSON errors for the
  API (a user error is a 4xx with a message, never a traceback).

The recognizer is loaded once; pass one in (tests, a launcher that loaded
it already) or let the app load ``settings.db`` at start-up.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import WSCloseCode, web

from ..config import ServerSettings
from ..decision.recognizer import Recognizer
from ..engines import catalog
from ..errors import AudiocopyError
from ..plays.factory import open_store
from ..plays.monitor_rows import MonitorRows
from ..plays.token_rows import TokenRows
from . import admin_api, api, metadata_api, reports_api, source_tokens, views
from .auth import AdminAuth, load_or_create
from .batcher import Batcher
from .catalog_watch import CatalogWatcher
from .jobs import JobManager
from .keys import (
    AUTH,
    BATCHER,
    CATALOG_WATCH,
    COMPUTE_EXECUTOR,
    DB_LOCK,
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
from .metrics import METRICS, ServerMetrics, metrics_handler
from .monitors import MonitorManager
from .play_listeners import ObservedPlaySink
from .responses import error_body
from .security import host_guard, security_headers
from .source_tokens import SOURCE_TOKENS, SourceTokens
from .state import RecognizerHolder, StreamRegistry
from .stopping import cancel_until_done
from .threads import init_compute_thread, name_os_thread, single_threaded_blas
from .uploads import MULTIPART_OVERHEAD_BYTES
from .webhooks import WEBHOOKS, open_dispatcher
from .workers import WORKERS, WorkerLoop
from .ws import ws_handler

log = logging.getLogger(__name__)

#: OS names of the server's threads (``/proc/PID/task/TID/comm``), so that
#: ``tools/loadtest.py``, top -H or py-spy can tell the event loop, the
#: compute worker and the I/O pool apart.
LOOP_THREAD, COMPUTE_THREAD, IO_THREAD = "event-loop", "compute", "io"
#: Compute cycles that may run at once (``Batcher(workers=...)``). A
#: cycle's heavy parts (index search, encoder products, FFT, resampling)
#: release the GIL, so two cycles for different streams use two cores; a
#: second cycle starts only when ``batcher.MIN_PARALLEL`` streams wait, so
#: a light load keeps one worker's larger batches, and each cycle takes
#: about one batch of streams so that the other worker finds some to take.
#: Load test on 2 quiet cores, 100-track fingerprint catalogue, 48 kHz in
#: 100 ms frames (docs/benchmarks.md, ``server-fingerprint-100``): one worker
#: held 96 streams; two hold 300 (p95 107-212 ms in four runs, nothing
#: dropped), 350 only in some runs. Together they stop at about one core
#: while the machine has ~0.6 idle: their Python work holds the GIL.
COMPUTE_WORKERS = 2

ROOT = Path(__file__).resolve().parents[2]
#: A regular install carries the pages inside the package (``setup.py``
#: copies them there); an editable install or a checkout serves the
#: repository's own folders.
PAGES = Path(__file__).resolve().parent / "pages"
TEMPLATES_DIR = PAGES / "templates" if (PAGES / "templates").is_dir() else ROOT / "templates"
STATIC_DIR = PAGES / "static" if (PAGES / "static").is_dir() else ROOT / "static"
PLAYS_FILE = "plays.sqlite"


def create_app(settings: ServerSettings, *, recognizer: Recognizer | None = None,
               auth: AdminAuth | None = None, monitor_resolver=None) -> web.Application:
    """Build the application.

    settings: validated ``ServerSettings``.
    recognizer: an already loaded recognizer (default: load ``settings.db`` at start-up).
    auth: admin token checker (default: ``auth.load_or_create(settings)``).
    monitor_resolver: DNS resolver for monitor URL checks (tests).
    """
    # The Host check comes first: a request for a foreign name reaches no handler (``security.host_guard``).
    app = web.Application(middlewares=[host_guard(settings.host_allowlist), _headers_middleware,
                                       _api_errors_middleware],
                          client_max_size=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES)
    app[SETTINGS] = settings
    app[AUTH] = auth if auth is not None else load_or_create(settings)
    app[RECOGNIZER] = RecognizerHolder(recognizer)
    app[STREAMS] = StreamRegistry(settings.max_streams, per_address=settings.connections_per_address)
    app[DB_LOCK] = asyncio.Lock()
    app[IDENTIFY_SLOTS] = asyncio.Semaphore(settings.max_identify_jobs)
    app[STARTED_AT] = time.time()
    app[METRICS] = ServerMetrics(app)  # this app's own registry (``web.metrics``)
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True,
                         undefined=jinja2.StrictUndefined)
    app.cleanup_ctx.extend([_executors, _recognizer, _plays_log, _source_tokens,
                            lambda a: _webhooks(a, monitor_resolver),
                            _batcher, _metrics, _jobs, _catalog_watch,
                            lambda a: _monitors(a, monitor_resolver), _workers])
    app.on_shutdown.append(_close_streams)
    _add_routes(app)
    return app


def _add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", views.live, name="live")
    r.add_get("/identify", views.identify, name="identify")
    r.add_get("/catalog", views.catalog, name="catalog")
    r.add_get("/plays", views.plays, name="plays")
    r.add_get("/monitors", views.monitors, name="monitors")
    r.add_get("/ws", ws_handler, name="ws")
    r.add_get("/healthz", _healthz)
    r.add_get("/metrics", metrics_handler)
    r.add_get("/api/status", api.status)
    r.add_post("/api/identify", api.identify)
    r.add_get("/api/plays", api.plays)
    r.add_get("/api/plays.csv", api.plays_csv)
    r.add_get("/api/plays.json", api.plays_json)
    r.add_get("/api/plays/sources", api.plays_sources)
    r.add_get("/api/plays/totals", reports_api.plays_totals)
    r.add_get("/api/plays/timeline.svg", reports_api.plays_timeline_svg)
    r.add_get("/api/catalog", admin_api.list_catalog)
    r.add_post("/api/catalog/tracks", admin_api.add_track)
    r.add_delete("/api/catalog/tracks/{track_id}", admin_api.delete_track)
    r.add_get("/api/catalog/tracks/{track_id}/metadata", metadata_api.get_track_metadata)
    r.add_patch("/api/catalog/tracks/{track_id}/metadata", metadata_api.edit_track_metadata)
    r.add_get("/api/jobs", admin_api.list_jobs)
    r.add_get("/api/jobs/{job_id}", admin_api.get_job)
    r.add_get("/api/monitors", admin_api.list_monitors)
    r.add_post("/api/monitors", admin_api.add_monitor)
    r.add_delete("/api/monitors/{monitor_id}", admin_api.delete_monitor)
    r.add_get("/api/webhooks", admin_api.list_webhooks)
    r.add_post("/api/webhooks", admin_api.add_webhook)
    r.add_delete("/api/webhooks/{webhook_id}", admin_api.delete_webhook)
    r.add_get("/api/sources/tokens", source_tokens.list_tokens)
    r.add_post("/api/sources/tokens", source_tokens.issue_token)
    r.add_delete("/api/sources/tokens/{source}", source_tokens.revoke_token)
    r.add_static("/static/", STATIC_DIR, name="static", append_version=True)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": request.app[RECOGNIZER].loaded})


# --- cleanup contexts ---------------------------------------------------------

async def _executors(app: web.Application):
    name_os_thread(LOOP_THREAD)
    single_threaded_blas()  # parallelism comes from batching streams, see ``web.threads``
    app[COMPUTE_EXECUTOR] = ThreadPoolExecutor(COMPUTE_WORKERS, thread_name_prefix=COMPUTE_THREAD,
                                               initializer=init_compute_thread, initargs=(COMPUTE_THREAD,))
    app[IO_EXECUTOR] = ThreadPoolExecutor(4, thread_name_prefix=IO_THREAD, initializer=name_os_thread,
                                          initargs=(IO_THREAD,))
    yield
    for key in (COMPUTE_EXECUTOR, IO_EXECUTOR):
        app[key].shutdown(wait=True, cancel_futures=True)


async def _recognizer(app: web.Application):
    holder = app[RECOGNIZER]
    if not holder.loaded:
        await holder.reload(app[SETTINGS].db, app[IO_EXECUTOR])
    elif holder.stamp is None:  # loaded by the caller just now: take the database's stamp as its own
        loop = asyncio.get_running_loop()
        holder.stamp = await loop.run_in_executor(app[IO_EXECUTOR], catalog.read_generation, app[SETTINGS].db)
    yield


async def _plays_log(app: web.Application):
    loop = asyncio.get_running_loop()
    settings = app[SETTINGS]
    where = settings.store or settings.state_path / PLAYS_FILE
    log_ = await loop.run_in_executor(app[IO_EXECUTOR], open_store, where)
    # Every play this process writes names its worker; the plays a dead run left open are
    # recovered by the lease loop when it starts, before any stream writes (``web.workers``).
    log_.worker_id = settings.worker_name
    app[PLAYS] = ObservedPlaySink(log_, app[IO_EXECUTOR])  # webhooks and metrics listen (``web.play_listeners``)
    yield
    await app[PLAYS].flush()
    await loop.run_in_executor(app[IO_EXECUTOR], log_.close)  # a PostgreSQL store's idle connections


async def _source_tokens(app: web.Application):
    """Who may stream under which name (``web.source_tokens``), kept in the store; an older release's
    ``source-tokens.json`` is imported first. A damaged table stops the server."""
    loop = asyncio.get_running_loop()
    tokens = await loop.run_in_executor(app[IO_EXECUTOR], SourceTokens.load, TokenRows(app[PLAYS].log),
                                        app[SETTINGS].state_path)
    app[SOURCE_TOKENS] = tokens
    yield
    await loop.run_in_executor(app[IO_EXECUTOR], tokens.flush)  # last use times not written yet


async def _webhooks(app: web.Application, resolver):
    """Closed plays -> the webhook outbox; pending deliveries of a previous run resume (``web.webhooks``)."""
    loop = asyncio.get_running_loop()
    dispatcher = await loop.run_in_executor(app[IO_EXECUTOR], open_dispatcher, app[SETTINGS], app[PLAYS].log,
                                            app[IO_EXECUTOR], resolver)
    app[WEBHOOKS] = dispatcher
    await dispatcher.start()
    app[PLAYS].listeners.append(dispatcher.on_record)
    yield
    await dispatcher.close()  # after the streams and the batcher: their last plays are queued first


async def _batcher(app: web.Application):
    s = app[SETTINGS]
    holder = app[RECOGNIZER]
    batcher = Batcher(lambda: holder.current, app[COMPUTE_EXECUTOR], max_batch=s.max_batch,
                      max_pending=s.pending_limit, max_pending_per_owner=s.max_pending_per_stream,
                      linger_s=s.batch_linger_ms / 1000, workers=COMPUTE_WORKERS)
    app[BATCHER] = batcher
    task = asyncio.create_task(batcher.run(), name="batcher")
    yield
    await batcher.drain()  # streams closed at shutdown hand their open plays over in a last cycle
    await cancel_until_done(task)


async def _metrics(app: web.Application):
    """Counted as they happen: windows answered and their latency, closed plays (``web.metrics``)."""
    app[BATCHER].cycle_listeners.append(app[METRICS].on_cycle)
    app[PLAYS].listeners.append(app[METRICS].on_record)
    yield


async def _jobs(app: web.Application):
    async def reload():
        return await app[RECOGNIZER].reload(app[SETTINGS].db, app[IO_EXECUTOR])

    jobs = JobManager(app[SETTINGS], reload, app[DB_LOCK])
    app[JOBS] = jobs
    jobs.start()
    yield
    await jobs.close()


async def _catalog_watch(app: web.Application):
    s = app[SETTINGS]
    watcher = CatalogWatcher(app[RECOGNIZER], s.db, app[IO_EXECUTOR], app[DB_LOCK], s.catalog_poll_s)
    app[CATALOG_WATCH] = watcher
    task = asyncio.create_task(watcher.run(), name="catalog-watch")
    yield
    await cancel_until_done(task)


async def _monitors(app: web.Application, resolver):
    holder = app[RECOGNIZER]
    manager = MonitorManager(app[SETTINGS], app[BATCHER], lambda: holder.current, app[PLAYS].record,
                             rows=MonitorRows(app[PLAYS].log), executor=app[IO_EXECUTOR], resolve=resolver,
                             leased=True)
    app[MONITORS] = manager
    await manager.load()
    yield
    await manager.close()


async def _workers(app: web.Application):
    """This process as one worker of the store: recovery of its dead run's plays, then the lease loop."""
    workers = WorkerLoop(app[SETTINGS], app[PLAYS].log, app[IO_EXECUTOR], app[MONITORS])
    app[WORKERS] = workers
    app[MONITORS].on_change = workers.wake
    workers.on_recovered = app[PLAYS].announce  # recovered plays reach the webhooks and metrics too
    recovered = await workers.start()
    log.info("plays log %s: %d play(s) recovered from a previous run", app[PLAYS].log.location, recovered)
    yield
    await workers.close()  # its monitors stop first, then its leases go back


async def _close_streams(app: web.Application) -> None:
    """Shutdown: close every live stream so its open plays are flushed to the log."""
    for ws in app[STREAMS].items():
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")




# --- middlewares --------------------------------------------------------------

@web.middleware
async def _headers_middleware(request: web.Request, handler):
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(security_headers(request.host))
        raise
    if not response.prepared:  # a WebSocket or streamed response has sent its headers already
        response.headers.update(security_headers(request.host))
    return response


@web.middleware
async def _api_errors_middleware(request: web.Request, handler):
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type != "application/json" and exc.status >= 400:
            # aiohttp's own errors (404, 405, 413 from client_max_size) in the API's JSON shape
            headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
            return web.Response(status=exc.status, headers=headers, content_type="application/json",
                                text=error_body(exc.reason.lower().replace(" ", "_"), exc.reason))
        raise
    except AudiocopyError as exc:
        return web.Response(status=400, text=error_body("bad_request", str(exc)), content_type="application/json")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return web.Response(status=500, text=error_body("internal_error", "internal error; see the server log"),
                            content_type="application/json")
