#!/usr/bin/env python3
"""Fault injection: kill the streaming server under load, restart it, and check that no acknowledged play is lost.

Usage (from the repository root)::

    # a small synthetic fingerprint catalogue is built in --work (seconds)
    .venv/bin/python tools/fault_inject.py --rounds 6 --streams 8 --seed 1
    # an existing database, streaming the audio files of its catalogue tracks
    .venv/bin/python tools/fault_inject.py --db data/model --audio data/audio/wav_licensed --rounds 10

Place in the project: a robustness check beside ``tools/loadtest.py``, not
a unit test (it runs for minutes and starts real server processes). What it
checks is the plays store's promise (``audiocopy.plays.store``): a play is
written when it opens, rewritten as it grows, replaced by its closed row
when it ends, and a play a dead server left open is closed as "recovered"
at the next start.

How it works. ``server.py`` runs on a free loopback port with its state
folder in ``--work``, from a copy of the checkout's code taken at the start
(so every restart runs the same code while the checkout changes).
``--streams`` clients stream catalogue audio over ``/ws`` with
``realtime: false`` (every window answered, the server back-pressures),
paced at ``--speed`` times real time: stretches of random catalogue tracks
with silent gaps, so plays open and close all the time. After a random up
time (seeded, ``--up-s``) the server is stopped: with SIGKILL, or with
SIGTERM every ``--sigterm-every``-th round (a graceful stop); every
``--announce-every``-th round the signal goes out the moment a client is
next told of a play (from the client's event loop, well under a
millisecond later), which aims at the gap between telling a client and
writing the store. The server is started again at once on the same state
folder and port, and the clients connect again. The restart time is from
the signal to the first answer of ``/api/status``. After the last round the
server is started once more (to recover the last round's plays) and
stopped cleanly, and the store is read directly (read-only SQLite).

What a client was told, per connection (each has its own source name):

* a ``play`` message when a play ended, with its ``key``: the store must
  hold that key, ``closed``, with the same track and source;
* "now playing" in ``window`` messages (the ``stream`` field: track and
  ``since_s``) while a play is open. The protocol gives an open play no key,
  so such a play is found in the store by its source, track and start
  (within ``MATCH_TOL_S``); it must be there, ``recovered`` or ``closed``.

Any announced play missing from the store, a closed one stored as anything
but ``closed``, a key stored twice, two stored plays of one source, track
and start, or a play still ``open`` after the final clean stop, fails the
run (exit status 1), each named in the log; so does a round in which no
window was answered (the load never reached the server). ``--write`` replaces the
"Fault injection" section of docs/benchmarks.md with the figures.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tools"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
from bench.faults import CHUNK_S, CLIENT_RATE, Connection, Round, check_store, melody, plan_rounds, programme, report

log = logging.getLogger("fault_inject")

#: Section name of docs/benchmarks.md this tool owns (``bench.doc`` markers).
SECTION = "fault-injection"
ADMIN_TOKEN = "fault-inject-not-a-secret-0000"
PLAYS_FILE = "plays.sqlite"  # audiocopy.web.app.PLAYS_FILE; not imported, so this process never loads the web app


def build_catalogue(work: Path, tracks: int, seconds: float, seed: int) -> tuple[Path, Path]:
    """A fingerprint database of ``tracks`` synthetic melodies in ``work`` (reused when it exists); (db, audio)."""
    import soundfile as sf

    from audiocopy.config import CalibrationParams
    from audiocopy.training.enroll_fingerprint import enroll_fingerprint

    db, audio, negatives = work / "db", work / "catalogue", work / "negatives"
    marker = work / "catalogue.json"
    wanted = {"tracks": tracks, "seconds": seconds, "seed": seed}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        log.info("catalogue %s: reused (%d tracks)", db, tracks)
        return db, audio
    for folder in (db, audio, negatives):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    for i in range(tracks):
        sf.write(audio / f"track{i:02d}.wav", melody(seed * 1000 + i, seconds, 22050), 22050)
    for i in range(6):
        sf.write(negatives / f"other{i}.wav", melody(seed * 1000 + 500 + i, 12, 22050), 22050)
    t0 = time.perf_counter()
    enroll_fingerprint(audio, db, negatives_dir=negatives, calibration=CalibrationParams(windows_per_track=12),
                       progress=False)
    log.info("catalogue %s: %d tracks of %.0f s enrolled in %.1f s", db, tracks, seconds, time.perf_counter() - t0)
    marker.write_text(json.dumps(wanted))
    return db, audio


def snapshot_code(work: Path) -> tuple[Path, str]:
    """A copy of the server's code (package, launcher, pages) in ``work/code``; (its folder, where it came from).

    Every restart then runs the same code, even while the checkout changes.
    """
    code = work / "code"
    if code.exists():
        shutil.rmtree(code)
    code.mkdir(parents=True)
    for name in ("audiocopy", "templates", "static"):
        shutil.copytree(ROOT / name, code / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "server.py", code / "server.py")
    git = ["git", "-C", str(ROOT)]
    rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=False).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", "audiocopy", "server.py"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return code, f"revision {rev or '?'}{' with uncommitted changes' if dirty else ''}"


# --- the server and its clients ---------------------------------------------------------


class Server:
    """``server.py`` as a child process on a fixed loopback port and state folder; its log appended to a file."""

    def __init__(self, db: Path, state: Path, port: int, max_streams: int, code: Path = ROOT):
        self.code = code
        self.cmd = [sys.executable, str(code / "server.py"), "--db", str(db), "--state-dir", str(state), "--host",
                    "127.0.0.1", "--port", str(port), "--admin-token", ADMIN_TOKEN, "--max-streams", str(max_streams)]
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = state / "fault-inject-server.log"
        state.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(self.code), os.environ.get("PYTHONPATH")])),
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        # The log goes to a file: an unread pipe would fill up and stall the server.
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=log_file, env=env)

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Poll ``/api/status`` until it answers; returns the monotonic time it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}); see {self.log_path}")
            try:
                with urllib.request.urlopen(self.base + "/api/status", timeout=2) as resp:
                    if resp.status == 200:
                        return time.monotonic()
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the server did not answer within {timeout} s; see {self.log_path}")

    def kill(self, sig: int) -> int:
        """Send ``sig`` and wait for the process to end; its exit status."""
        self.proc.send_signal(sig)
        return self.wait_exit()

    def wait_exit(self, timeout: float = 60.0) -> int:
        """Wait for the process to end (SIGKILL after ``timeout``: a stop that hangs is reported); its exit status."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("the server did not stop within %.0f s of its signal: killed", timeout)
            self.proc.kill()
            return self.proc.wait()


async def _read(ws, conn: Connection, notify: Callable[[str], None]) -> None:
    """Every text message of ``ws`` into ``conn``; ``notify()`` when a play is announced (closed or newly shown)."""
    async for msg in ws:
        if msg.type.name != "TEXT":
            continue
        body = json.loads(msg.data)
        if body["type"] == "window":
            conn.windows += 1
            now = body.get("stream")
            if now:
                shown = (now["track"], float(now["since_s"]))
                if shown not in conn.shown:
                    notify(f"{conn.source}: {shown[0]} shown as playing from {shown[1]} s")
                conn.shown[shown] = conn.shown.get(shown, 0) + 1
        elif body["type"] == "play":
            conn.closed.append(body)
            notify(f"{conn.source}: play {body['track']} {body['start_s']}-{body['end_s']} s (key {body['key']})")
        elif body["type"] == "error":
            conn.error = f"{body.get('code')}: {body.get('message')}"


async def stream(http, base: str, conn: Connection, chunks, speed: float, notify: Callable[[str], None]) -> None:
    """One client: ``start``, then ``chunks`` at ``speed`` x real time until the server goes away."""
    import aiohttp

    try:
        async with http.ws_connect(base.replace("http", "ws", 1) + "/ws", heartbeat=None) as ws:
            await ws.send_json({"type": "start", "sample_rate": CLIENT_RATE, "format": "s16le", "channels": 1,
                                "source": conn.source, "realtime": False})
            reader = asyncio.create_task(_read(ws, conn, notify))
            t0 = time.monotonic()
            try:
                for chunk in chunks:
                    if ws.closed or reader.done():
                        break
                    await ws.send_bytes(chunk)
                    conn.seconds_sent += CHUNK_S
                    ahead = conn.seconds_sent / speed - (time.monotonic() - t0)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                pass  # the server died under us: that is the point
            await reader
    except (TimeoutError, OSError, aiohttp.ClientError) as exc:
        conn.error = conn.error or f"{type(exc).__name__}: {exc}"


class Trigger:
    """The announcements of a round's clients, for a kill at once after one (``notify`` is their callback)."""

    def __init__(self):
        self.event = asyncio.Event()
        self.what = ""

    def notify(self, what: str) -> None:
        self.what = what
        self.event.set()


async def _kill_moment(rnd: Round, trigger: Trigger, delay_s: float) -> None:
    """Wait out the round's up time; an "announce" round then waits for the next announcement (at most 30 s),
    and ``delay_s`` more."""
    await asyncio.sleep(rnd.up_s)
    if rnd.moment == "announce":
        trigger.event.clear()
        try:
            await asyncio.wait_for(trigger.event.wait(), 30)
            rnd.trigger = trigger.what
            await asyncio.sleep(delay_s)
        except TimeoutError:
            log.warning("round %d: no play announced within 30 s of its up time; killing anyway", rnd.index)
            rnd.moment = "random"


async def run_round(rnd: Round, server: Server, args, tracks: list[np.ndarray]) -> list[Connection]:
    """Stream, signal the server at the round's moment, restart it at once, and wait for the clients to notice."""
    import aiohttp

    conns = [Connection(source=f"fault r{rnd.index:02d} s{i:02d}", round=rnd.index) for i in range(args.streams)]
    loop = asyncio.get_running_loop()
    trigger = Trigger()
    async with aiohttp.ClientSession() as http:
        tasks = []
        for i, c in enumerate(conns):
            rng = random.Random(args.seed * 100_003 + rnd.index * 101 + i)
            chunks = programme(tracks, rng, tuple(args.play_s), tuple(args.gap_s))
            tasks.append(asyncio.create_task(stream(http, server.base, c, chunks, args.speed, trigger.notify)))
            await asyncio.sleep(0.1)  # staggered starts: the streams do not tick in step
        await _kill_moment(rnd, trigger, args.announce_delay_ms / 1000)
        t_kill = time.monotonic()
        sig = signal.SIGKILL if rnd.signal == "SIGKILL" else signal.SIGTERM
        server.proc.send_signal(sig)  # here, not in a thread: at once after the announcement
        rnd.exit_status = await loop.run_in_executor(None, server.wait_exit)
        rnd.stop_s = time.monotonic() - t_kill
        server.start()
        rnd.restart_s = await loop.run_in_executor(None, server.wait_ready) - t_kill
        _, pending = await asyncio.wait(tasks, timeout=30)
        for t in pending:
            t.cancel()
    rnd.windows = sum(c.windows for c in conns)
    rnd.plays_sent, rnd.shown_open = sum(len(c.closed) for c in conns), sum(len(c.open_only()) for c in conns)
    log.info("round %d: %s (%s%s) after %.1f s, exit %s; back in %.2f s; %d windows, %d plays sent, %d shown open",
             rnd.index, rnd.signal, rnd.moment, f": {rnd.trigger}" if rnd.trigger else "", rnd.up_s, rnd.exit_status,
             rnd.restart_s, rnd.windows, rnd.plays_sent, rnd.shown_open)
    return conns


def read_store(path: Path) -> list[dict]:
    """Every play row of the plays store (read-only)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cur = con.execute("SELECT key, status, track, source, start_s, end_s FROM plays")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        con.close()


# --- the command line ---------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Kill the server under load, restart it, check that no play is lost.")
    p.add_argument("--db", type=Path, help="an existing database (needs --audio); default: a synthetic one in --work")
    p.add_argument("--audio", type=Path, help="with --db: a folder of audio files of its catalogue tracks")
    p.add_argument("--work", type=Path, default=Path("/tmp/audiocopy-fault-inject"),
                   help="work folder: synthetic catalogue, server state (its plays store is emptied first)")
    p.add_argument("--tracks", type=int, default=8, help="synthetic catalogue: tracks (default 8)")
    p.add_argument("--track-seconds", type=float, default=60.0, help="synthetic catalogue: seconds a track")
    p.add_argument("--streams", type=int, default=8, help="concurrent client streams (default 8)")
    p.add_argument("--rounds", type=int, default=10, help="kills and restarts (default 10)")
    p.add_argument("--up-s", type=float, nargs=2, default=(10.0, 25.0), metavar=("MIN", "MAX"),
                   help="the server runs a random time in this range before each kill (default 10 25)")
    p.add_argument("--sigterm-every", type=int, default=3, help="every Nth round stops with SIGTERM (0: never)")
    p.add_argument("--announce-every", type=int, default=2,
                   help="every Nth round kills at the first play announced after its up time (0: never)")
    p.add_argument("--announce-delay-ms", type=float, default=0.0,
                   help="those rounds kill this long after the announcement (default 0: at once)")
    p.add_argument("--speed", type=float, default=4.0, help="clients send this many times real time (default 4)")
    p.add_argument("--play-s", type=float, nargs=2, default=(12.0, 30.0), metavar=("MIN", "MAX"),
                   help="seconds of a track per stretch (default 12 30)")
    p.add_argument("--gap-s", type=float, nargs=2, default=(6.0, 9.0), metavar=("MIN", "MAX"),
                   help="silence between stretches, long enough to end a play (default 6 9)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    p.add_argument("--write", type=Path, help="replace the fault-injection section of this file (docs/benchmarks.md)")
    args = p.parse_args(argv)
    if (args.db is None) != (args.audio is None):
        p.error("--db and --audio go together")
    if min(args.streams, args.rounds, args.tracks) < 1 or args.speed <= 0 or not 0 < args.up_s[0] <= args.up_s[1]:
        p.error("--streams, --rounds and --tracks must be >= 1, --speed > 0, and 0 < --up-s MIN <= MAX")
    if min(args.sigterm_every, args.announce_every, args.announce_delay_ms) < 0 or not 0 < args.play_s[0] <= args.play_s[1] \
            or not 0 <= args.gap_s[0] <= args.gap_s[1]:
        p.error("--sigterm-every and --announce-every must be >= 0, and --play-s / --gap-s ranges MIN <= MAX")
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_tracks(audio: Path) -> list[np.ndarray]:
    """Every audio file of ``audio`` at the clients' rate, (n,) float32 each."""
    from audiocopy.config import AudioParams
    from audiocopy.signal.audio import load_audio
    from audiocopy.training.sources import list_audio

    return [load_audio(f, params=AudioParams(sample_rate=CLIENT_RATE)) for f in list_audio(audio)]


async def run(args, server: Server, tracks: list[np.ndarray]) -> tuple[list[Round], list[Connection]]:
    """Every round; then one more start (recovering the last round's plays) and a clean stop."""
    from tqdm import tqdm

    rounds = plan_rounds(args.rounds, args.up_s, args.seed, args.sigterm_every, args.announce_every)
    server.start()
    await asyncio.get_running_loop().run_in_executor(None, server.wait_ready)
    conns: list[Connection] = []
    for rnd in tqdm(rounds, desc="rounds", unit="round", disable=None):
        conns += await run_round(rnd, server, args, tracks)
    log.info("final clean stop (SIGINT): exit status %s", server.kill(signal.SIGINT))
    return rounds, conns


def describe(args, rounds: list[Round], conns: list[Connection], wall_s: float) -> str:
    """The report's sentence on the load and the rounds."""
    kinds = Counter((r.signal, r.moment) for r in rounds)
    return (f"{args.streams} streams (`realtime: false`, sent at {args.speed:g}x real time: stretches of "
            f"{args.play_s[0]:g}-{args.play_s[1]:g} s of catalogue tracks between {args.gap_s[0]:g}-{args.gap_s[1]:g} "
            f"s of silence) against `server.py` ({args.code_facts}, copied once so every restart runs the same "
            f"code) on {args.catalogue}. {len(rounds)} rounds; each lets the server run "
            f"{args.up_s[0]:g}-{args.up_s[1]:g} s (seeded, seed {args.seed}), then stops it "
            f"({', '.join(f'{n}x {s} {m}' for (s, m), n in sorted(kinds.items()))}; \"announce\": "
            f"{f'{args.announce_delay_ms:g} ms' if args.announce_delay_ms else 'at once'} after a client was told of a "
            f"play) and starts it again at once on the same state folder and port; the "
            f"clients connect again. {sum(c.seconds_sent for c in conns):.0f} s of audio streamed, "
            f"{sum(c.windows for c in conns)} windows answered, {wall_s:.0f} s in all. Then the server was started "
            f"once more (recovering the last round's plays) and stopped cleanly, and the store was read.")


def machine_line(before: dict) -> str:
    from bench.machine import machine_info

    m = machine_info()
    return (f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}; load average "
            f"{before['loadavg']} and {before['busy_cores']} cores busy with other work just before the run")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from bench.doc import update_section
    from bench.machine import load_note
    from tqdm.contrib.logging import logging_redirect_tqdm

    before = load_note()  # how busy the machine was without this run
    args.work.mkdir(parents=True, exist_ok=True)
    if args.db is None:
        db, audio = build_catalogue(args.work, args.tracks, args.track_seconds, args.seed)
        args.catalogue = f"a synthetic fingerprint catalogue of {args.tracks} tracks of {args.track_seconds:g} s"
    else:
        db, audio, args.catalogue = args.db, args.audio, f"`{args.db}`"
    state = args.work / "state"
    for name in (PLAYS_FILE, PLAYS_FILE + "-wal", PLAYS_FILE + "-shm"):
        (state / name).unlink(missing_ok=True)  # a fresh store: every row in it is this run's
    tracks = load_tracks(audio)
    code, args.code_facts = snapshot_code(args.work)
    server = Server(db, state, args.port or free_port(), max_streams=max(16, args.streams), code=code)
    t0 = time.monotonic()
    try:
        with logging_redirect_tqdm():
            rounds, conns = asyncio.run(run(args, server, tracks))
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill(signal.SIGINT)
    v = check_store(conns, read_store(state / PLAYS_FILE))
    text = report(describe(args, rounds, conns, time.monotonic() - t0),
                  "python tools/fault_inject.py " + shlex.join(argv), machine_line(before), rounds, v)
    print(text)
    for kind, items in sorted(v.problems.items()):
        for item in items:
            log.error("%s: %s", kind, item)
    for error, n in Counter(c.error for c in conns if c.error).most_common():
        log.info("%d connection(s) ended with: %s", n, error)
    if args.write:
        update_section(args.write, SECTION, text)
        log.info("wrote section %r of %s", SECTION, args.write)
    idle = [r.index for r in rounds if not r.windows]
    if idle:
        log.error("round(s) %s answered no window: the load did not reach the server (see %s); the run proves "
                  "nothing about them", idle, server.log_path)
    return 0 if v.ok and not idle else 1


if __name__ == "__main__":
    sys.exit(main())
