"""Webhooks: every closed play POSTed as signed JSON to the receivers an admin configured.

Place in the pipeline: a listener on the app's plays sink
(``web.play_listeners``). When a play closes, its JSON (the ``play``
message of the WebSocket protocol, with the store's source fields) is put
in the outbox (``plays.outbox_rows``: tables of the plays store, shared by
every server worker) once per receiver, and a background task delivers
what is due, claiming each delivery first so that two workers never
attempt one delivery at once. Nothing is sent from the stream's own code path: a
slow or dead receiver can delay only its own deliveries.

Signature (so a receiver knows the POST came from this server and was not
replayed). Each attempt carries

* ``X-Audiocopy-Timestamp``: the attempt's Unix time in whole seconds;
* ``X-Audiocopy-Signature``: ``sha256=`` + hex HMAC-SHA256, keyed with the
  signing key (its text as ASCII bytes), over ``TIMESTAMP + "." + raw body``;
* ``X-Audiocopy-Delivery``: the delivery's id (the same on every retry, so
  a receiver can drop a duplicate) and ``X-Audiocopy-Event: play.closed``.

A receiver recomputes the HMAC over the bytes it received (before parsing
them), compares in constant time, and refuses a timestamp more than a few
minutes from its clock (``verify`` is the reference). The timestamp is
inside the signed bytes, so an old request cannot be replayed with a fresh
one. The key (64 hex characters) is generated on first start into
``STATE/webhook-signing-key`` (mode 0600), shown to admins by
``GET /api/webhooks`` and never logged.

Delivery. A 2xx answer delivers; anything else (another status, a
redirect, a timeout, a refused connection, a URL that the guard now
refuses) is a failed attempt, retried after ``webhook_backoff_s`` doubled
per attempt up to ``webhook_max_backoff_s``, until
``webhook_max_attempts`` attempts, after which the delivery is marked
failed. The outbox is in the store, so pending deliveries survive a restart
and resume on start (on any worker). A ``STATE/webhooks.sqlite`` left by
an older release is imported into the store on start, once, and renamed
``webhooks.sqlite.imported``.

Safety (server-side request forgery). A webhook URL passes the same guard
as URL monitors (``url_guard.check_url`` with the monitors' address policy:
loopback and private addresses only with ``--allow-private-monitors`` or
``--allow-monitor-networks``) when it is configured, and again before every
attempt; the client then connects only to the addresses that check
approved (``url_fetch.PinnedResolver``), follows no redirect and ignores
proxy variables. Logs and errors name the host only (``redact_url``): a
webhook URL may carry a secret.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from ..atomic_files import create_once
from ..config import ServerSettings
from ..errors import AudiocopyError, ConfigError
from ..plays.base import PlayStore
from ..plays.outbox_rows import Delivery, OutboxError, Webhook, WebhookOutbox
from . import protocol
from .play_listeners import closed_play
from .stopping import cancel_until_done, stop_requested, wake_or_timeout
from .url_fetch import PinnedResolver
from .url_guard import AddressPolicy, Resolve, UrlRefused, check_url, redact_url

log = logging.getLogger(__name__)

KEY_FILE = "webhook-signing-key"
SIGNATURE_HEADER = "X-Audiocopy-Signature"
TIMESTAMP_HEADER = "X-Audiocopy-Timestamp"
DELIVERY_HEADER = "X-Audiocopy-Delivery"
EVENT_HEADER = "X-Audiocopy-Event"
PLAY_CLOSED = "play.closed"
#: Deliveries attempted at once; the others wait for the next round.
BATCH = 16
#: Longest sleep of an idle dispatcher between two looks at the outbox.
IDLE_S = 30.0
#: Seconds a claimed delivery is held beyond the attempt's timeout: a worker
#: that dies mid-attempt leaves the delivery to another one after this.
CLAIM_MARGIN_S = 30.0


class WebhookError(AudiocopyError):
    """A webhook cannot be added or found; ``code`` and ``status`` say why for the API."""

    def __init__(self, message: str, code: str = "webhook_error", status: int = 409):
        super().__init__(message)
        self.code = code
        self.status = status


# --- signing --------------------------------------------------------------------

def sign(key: str, timestamp: int, body: bytes) -> str:
    """The ``X-Audiocopy-Signature`` value: ``sha256=<hex HMAC-SHA256(key, "TIMESTAMP." + body)>``."""
    mac = hmac.new(key.encode("ascii"), str(int(timestamp)).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(key: str, timestamp: str | None, signature: str | None, body: bytes, *, now: float | None = None,
           tolerance_s: float = 300.0) -> bool:
    """What a receiver checks (the reference recipe): a well-formed timestamp within ``tolerance_s`` of
    ``now`` and a signature equal, in constant time, to ``sign(key, timestamp, body)``."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(key, int(timestamp), body), signature)


def load_or_create_key(state_dir: Path) -> str:
    """The signing key from ``STATE/webhook-signing-key``, generated (mode 0600) when absent.

    Several workers may share one state folder and start at the same
    moment: ``atomic_files.create_once`` keeps exactly one worker's key and
    the others read that one. Raises ``ConfigError`` when the file is
    unreadable or malformed. The key itself is never logged.
    """
    path = Path(state_dir) / KEY_FILE
    if path.exists():
        return _read_key(path)
    key = secrets.token_hex(32)
    if not create_once(path, key + "\n"):  # another worker's key won: use it
        return _read_key(path)
    log.info("generated a webhook signing key in %s", path)
    return key


def _read_key(path: Path) -> str:
    try:
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the webhook signing key {path}: {exc}") from None
    if len(key) < 32 or any(c not in "0123456789abcdef" for c in key):
        raise ConfigError(f"{path} is not a hex key; delete it to generate a new webhook signing key")
    return key


def play_body(play) -> bytes:
    """The POST body of a closed play: the ``play`` message as compact UTF-8 JSON."""
    return json.dumps(protocol.play(play), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- delivery -------------------------------------------------------------------

@dataclass
class WebhookStats:
    """Counts since start (``/metrics``): deliveries enqueued, delivered, attempts failed, given up;
    ``pending``: outbox rows waiting, as of the dispatcher's last look."""

    enqueued: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    pending: int = 0


class WebhookDispatcher:
    """Configured receivers, the outbox and the task that delivers (see the module docstring).

    settings: the webhook_* options and the address policy; outbox: the
    store's outbox (``plays.outbox_rows``); key: the signing key; executor:
    where its SQL runs (never on the event loop); resolve: the DNS lookup
    behind the URL guard (tests).
    Call ``start`` on the event loop, then ``close``.
    """

    def __init__(self, settings: ServerSettings, outbox: WebhookOutbox, key: str, executor: Executor, *,
                 resolve: Resolve | None = None):
        self.settings = settings
        self.outbox = outbox
        self.key = key
        self.policy = AddressPolicy.from_settings(settings)
        self.stats = WebhookStats()
        self._executor = executor
        self._resolve = resolve
        self._hooks: list[Webhook] = []
        self._writes: set[asyncio.Future] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def _io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def claim_s(self) -> float:
        """How long a claimed delivery is this dispatcher's (longer than an attempt can take)."""
        return self.settings.webhook_timeout_s + CLAIM_MARGIN_S

    @property
    def webhooks(self) -> list[Webhook]:
        return list(self._hooks)

    async def start(self) -> None:
        """Load the receivers and start delivering (pending deliveries of a previous run first)."""
        self._hooks = await self._io(self.outbox.webhooks)
        self.stats.pending = (await self._io(self.outbox.counts))["pending"]
        if self.stats.pending:
            log.info("webhooks: %d deliveries pending from a previous run", self.stats.pending)
        self._task = asyncio.create_task(self._run(), name="webhooks")

    async def close(self) -> None:
        """Wait for the outbox writes already scheduled, then stop (what is pending stays in the outbox)."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
        if self._task is not None:
            await cancel_until_done(self._task)  # even if a delivery loses the cancel (``web.stopping``)

    # --- admin ---------------------------------------------------------------------

    async def add(self, url: str) -> Webhook:
        """Check ``url`` with the guard and store it. ``UrlRefused`` or ``WebhookError`` (limit, duplicate)."""
        if len(self._hooks) >= self.settings.max_webhooks:
            raise WebhookError(f"at most {self.settings.max_webhooks} webhooks (--max-webhooks)", "too_many_webhooks")
        target = await check_url(url, self.policy, self._resolve)
        try:
            hook = await self._io(self.outbox.add_webhook, target.url)
        except OutboxError as exc:
            raise WebhookError(str(exc), "duplicate_webhook") from None
        self._hooks.append(hook)
        log.info("webhook %s added: %s", hook.id, redact_url(hook.url))
        return hook

    async def remove(self, webhook_id: str) -> None:
        """Forget a receiver and its pending deliveries; ``WebhookError`` (404) when unknown."""
        if not await self._io(self.outbox.remove_webhook, webhook_id):
            raise WebhookError(f"no webhook {webhook_id!r}", "unknown_webhook", 404)
        self._hooks = [h for h in self._hooks if h.id != webhook_id]
        log.info("webhook %s removed", webhook_id)

    # --- plays in ------------------------------------------------------------------

    def on_record(self, item: object) -> None:
        """Plays-sink listener (event loop): a closed play becomes one outbox row per receiver."""
        play = closed_play(item)
        if play is None or not self._hooks:
            return
        hooks = list(self._hooks)
        fut = asyncio.get_running_loop().run_in_executor(self._executor, self.outbox.enqueue, hooks, PLAY_CLOSED,
                                                         play_body(play))
        self._writes.add(fut)
        fut.add_done_callback(self._enqueued)

    def _enqueued(self, fut: asyncio.Future) -> None:
        self._writes.discard(fut)
        if fut.cancelled():
            return
        if fut.exception() is not None:
            log.error("could not queue a webhook delivery: %s", fut.exception())
            return
        self.stats.enqueued += len(fut.result())
        self._wake.set()

    # --- out -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                due = await self._io(self.outbox.claim, time.time(), BATCH, self.claim_s)
                if due:
                    await asyncio.gather(*(self._attempt(d) for d in due))
                next_at = await self._io(self.outbox.next_due_at)
                self.stats.pending = (await self._io(self.outbox.counts))["pending"]
            except asyncio.CancelledError:
                raise
            except Exception:  # the store failed: keep the task alive and look again later
                log.exception("webhook outbox error")
                due, next_at = [], time.time() + self.settings.webhook_backoff_s
            if due:
                continue
            delay = IDLE_S if next_at is None else min(IDLE_S, max(0.0, next_at - time.time()))
            await wake_or_timeout(self._wake, delay)  # keeps a stop's cancel (``web.stopping``)

    def backoff_s(self, attempts: int) -> float:
        """Seconds before the next attempt after ``attempts`` failed ones (doubling, capped)."""
        s = self.settings
        return min(s.webhook_max_backoff_s, s.webhook_backoff_s * 2 ** max(0, attempts - 1))

    async def _attempt(self, d: Delivery) -> None:
        """One POST of one delivery, and the outbox updated with its result."""
        error = await self._post(d)
        attempts = d.attempts + 1
        if error is None:
            await self._io(self.outbox.delivered, d.id)
            self.stats.delivered += 1
            return
        # Counted once the outbox holds the result, so the counts never run ahead of the store.
        if attempts >= self.settings.webhook_max_attempts:
            await self._io(self.outbox.give_up, d.id, attempts, error)
            self.stats.failed_attempts += 1
            self.stats.given_up += 1
            log.error("webhook delivery %s to %s failed %d times, giving up: %s", d.id[:12], redact_url(d.url),
                      attempts, error)
            return
        await self._io(self.outbox.retry_later, d.id, attempts, time.time() + self.backoff_s(attempts), error)
        self.stats.failed_attempts += 1
        log.warning("webhook delivery %s to %s failed (attempt %d of %d): %s", d.id[:12], redact_url(d.url),
                    attempts, self.settings.webhook_max_attempts, error)

    async def _post(self, d: Delivery) -> str | None:
        """POST the body, signed now; None when the receiver answered 2xx, else why not."""
        try:
            target = await check_url(d.url, self.policy, self._resolve)  # DNS may have changed since
        except UrlRefused as exc:
            return f"refused: {exc}"
        pins = PinnedResolver()  # the connection may go to the checked addresses only
        pins.pins[target.host] = target.addresses
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": "audiocopy-webhook",
                   TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(self.key, timestamp, d.body),
                   DELIVERY_HEADER: d.id, EVENT_HEADER: d.event}
        connector = aiohttp.TCPConnector(resolver=pins, use_dns_cache=False, force_close=True)
        timeout = aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s)
        try:
            async with (aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session,
                        session.post(target.url, data=d.body, headers=headers, allow_redirects=False) as resp):
                status = resp.status
        except TimeoutError:
            if stop_requested():  # the server's stop, come back as a timeout (``web.stopping``)
                raise asyncio.CancelledError from None
            return f"no answer within {self.settings.webhook_timeout_s:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            return f"cannot connect: {type(exc).__name__}"
        return None if 200 <= status < 300 else f"HTTP {status}"


#: The app's dispatcher (``web.app`` fills it; ``web.admin_api`` and ``web.metrics`` read it).
WEBHOOKS = web.AppKey("webhooks", WebhookDispatcher)


def open_dispatcher(settings: ServerSettings, store: PlayStore, executor: Executor,
                    resolve: Resolve | None = None) -> WebhookDispatcher:
    """The dispatcher of a server: the key in ``settings.state_path``, the outbox in ``store`` (blocking).

    An older release's ``STATE/webhooks.sqlite`` is imported into the store
    first (once). Raises ``ConfigError`` for an unreadable key or legacy
    outbox, ``PlaysLogError`` for a store that fails.
    """
    key = load_or_create_key(settings.state_path)
    outbox = WebhookOutbox(store)
    try:
        outbox.import_legacy(settings.state_path)
    except OutboxError as exc:
        raise ConfigError(str(exc)) from None
    return WebhookDispatcher(settings, outbox, key, executor, resolve=resolve)
