"""The pure half of ``tools/fault_inject.py``: what its clients send, what they were told checked against the store.

Place in ``tools/bench``: everything of the fault-injection tool that needs
no server and no socket, so that it is unit-tested
(``tests/test_fault_inject.py``): the clients' audio (stretches of
catalogue tracks between silences, so plays open and close all the time),
the check of the plays store, and the report.

A client learns of a play two ways (docs/protocol.md): a ``play`` message
when it ends, with its ``key``; and "now playing" in ``window`` messages
(track and ``since_s``, its start in stream time) while it is open. The
protocol gives an open play no key, so an open play is found in the store
by its connection's source name (each connection has its own), its track
and its start, within ``MATCH_TOL_S``. The store's promise
(``audiocopy.plays.store``) is then checked:

* every ``play`` message's key is stored, as ``closed``, with its track and
  source (``lost_closed``, ``closed_not_closed``, ``wrong_play``);
* every play shown as playing and never closed on its connection is stored,
  ``recovered`` (its server died) or ``closed`` (a graceful stop closed it)
  (``lost_open``);
* no key is stored twice, no source has two stored plays of one track at
  one start (``duplicate_key``, ``duplicate_play``), and after a clean stop
  nothing is still ``open`` (``still_open``).
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

#: A "now playing" start and a stored play's start may differ by this much (one hop) and still be one play.
MATCH_TOL_S = 0.5
CLIENT_RATE = 16000  # Hz: the server's internal rate, so the clients cost the server no resampling
CHUNK_S = 0.5  # seconds of audio per binary message
#: The heading of the section of docs/benchmarks.md.
HEADING = "## Fault injection (kill -9 under load)"


def melody(seed: int, seconds: float, rate: int) -> np.ndarray:
    """A seeded synthetic melody (notes with harmonics over a bass), (n,) float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = np.zeros(n)
    t_note, pos = rng.uniform(0.12, 0.3), 0
    while pos < n:
        dur = int(t_note * rate * rng.choice([1, 1, 2]))
        f0 = 440.0 * 2 ** ((rng.integers(55, 84) - 69) / 12)
        t = np.arange(min(dur, n - pos)) / rate
        env = np.exp(-t * rng.uniform(3, 9)) * (1 - np.exp(-t * 200))
        out[pos:pos + t.size] += env * (sum(0.6 ** h * np.sin(2 * np.pi * f0 * (h + 1) * t) for h in range(4))
                                        + 0.4 * np.sin(2 * np.pi * f0 / 4 * t))
        pos += dur
    return (0.8 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def programme(tracks: list[np.ndarray], rng: random.Random, play_s: tuple[float, float],
              gap_s: tuple[float, float]):
    """Endless s16le chunks of ``CHUNK_S``: a random stretch of a random track, then silence, again and again."""
    step = int(CHUNK_S * CLIENT_RATE)
    while True:
        track = rng.choice(tracks)
        length = min(len(track), int(rng.uniform(*play_s) * CLIENT_RATE))
        start = rng.randrange(0, len(track) - length + 1)
        audio = np.concatenate([track[start:start + length], np.zeros(int(rng.uniform(*gap_s) * CLIENT_RATE),
                                                                      np.float32)])
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        for i in range(0, len(audio) - step + 1, step):
            yield pcm[2 * i:2 * (i + step)]


@dataclass
class Connection:
    """One client connection: its source name and what the server announced on it."""

    source: str
    round: int
    closed: list[dict] = field(default_factory=list)  # ``play`` messages
    shown: dict[tuple[str, float], int] = field(default_factory=dict)  # (track, since_s) -> windows showing it
    windows: int = 0
    seconds_sent: float = 0.0
    error: str | None = None

    def open_only(self, tol: float = MATCH_TOL_S) -> list[tuple[str, float]]:
        """Plays shown as "now playing" (track, since_s) that no ``play`` message of this connection closed."""
        return [(track, since) for track, since in self.shown
                if not any(p["track"] == track and abs(p["start_s"] - since) <= tol for p in self.closed)]


#: What each kind of problem means, for the report.
MEANINGS = {
    "lost_closed": "a client got the play's `play` message, but the store has no row of it",
    "closed_not_closed": "a client got the play's `play` message, but its closing write never reached the store: "
                         "the row is its last open checkpoint, closed as recovered at the restart",
    "wrong_play": "the key a client got is stored with another track or source",
    "lost_open": "a client was shown the play as playing, but no write of it reached the store before the server "
                 "died",
    "duplicate_key": "one key is stored in more than one row",
    "duplicate_play": "one connection's play (track and start) is stored under two keys",
    "still_open": "a row is still open after the final clean stop",
}


@dataclass
class Verdict:
    """The store checked against every connection's announcements; ``ok`` when nothing is wrong."""

    announced_closed: int = 0
    announced_open: int = 0
    stored: Counter = field(default_factory=Counter)  # status -> rows
    open_found_as: Counter = field(default_factory=Counter)  # status of the rows the open-only plays became
    unannounced: int = 0  # stored plays no client was told about (e.g. opened just before a kill)
    problems: dict[str, list[str]] = field(default_factory=dict)  # kind -> descriptions
    lost_by_round: Counter = field(default_factory=Counter)  # round -> announced plays lost or not closed

    def add(self, kind: str, text: str, round_: int | None = None) -> None:
        self.problems.setdefault(kind, []).append(text)
        if round_ is not None:
            self.lost_by_round[round_] += 1

    @property
    def ok(self) -> bool:
        return not self.problems


def _store_problems(v: Verdict, rows: list[dict], tol: float) -> dict[str, list[dict]]:
    """Duplicate keys and plays, and rows left open, into ``v``; the rows by key."""
    by_key: dict[str, list[dict]] = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(r)
    for key, same in by_key.items():
        if len(same) > 1:
            v.add("duplicate_key", f"key {key} stored {len(same)} times")
    previous = None
    for r in sorted(rows, key=lambda r: (r["source"], r["track"], r["start_s"])):
        if r["status"] == "open":
            v.add("still_open", f"{r['source']}: {r['track']} from {r['start_s']} s (key {r['key']}) is still open")
        if (previous is not None and (previous["source"], previous["track"]) == (r["source"], r["track"])
                and r["start_s"] - previous["start_s"] <= tol and previous["key"] != r["key"]):
            v.add("duplicate_play", f"{r['source']}: {r['track']} from {r['start_s']} s stored twice, as "
                                    f"{previous['key']} and {r['key']}")
        previous = r
    return by_key


def check_store(connections: list[Connection], rows: list[dict], tol: float = MATCH_TOL_S) -> Verdict:
    """Check the plays store's rows against what the clients were told (see the module docstring).

    rows: every stored play, each a dict with ``key``, ``status``,
    ``track``, ``source`` and ``start_s`` (stream seconds). tol: seconds a
    shown play's start may differ from its stored start.
    """
    v = Verdict(stored=Counter(r["status"] for r in rows))
    by_key = _store_problems(v, rows, tol)
    acknowledged: set[str] = set()
    for c in connections:
        for p in c.closed:
            v.announced_closed += 1
            acknowledged.add(p["key"])
            got = by_key.get(p["key"])
            where = f"{c.source}: {p['track']} {p['start_s']}-{p['end_s']} s, key {p['key']},"
            if not got:
                v.add("lost_closed", f"{where} was sent as a play but is not in the store", c.round)
            elif got[0]["status"] != "closed":
                v.add("closed_not_closed", f"{where} was sent as closed but is stored as {got[0]['status']} "
                                           f"(to {got[0]['end_s']} s)", c.round)
            elif (got[0]["track"], got[0]["source"]) != (p["track"], c.source):
                v.add("wrong_play", f"{where} is stored as {got[0]['track']} on {got[0]['source']}", c.round)
        for track, since in c.open_only(tol):
            v.announced_open += 1
            found = [r for r in rows
                     if (r["source"], r["track"]) == (c.source, track) and abs(r["start_s"] - since) <= tol]
            if not found:
                v.add("lost_open", f"{c.source}: {track} from {since} s was shown as playing but is not in the store",
                      c.round)
                continue
            acknowledged.update(r["key"] for r in found)
            v.open_found_as[found[0]["status"]] += 1
    v.unannounced = sum(1 for r in rows if r["key"] not in acknowledged)
    return v


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation) of ``values``; None for none."""
    return float(np.percentile(values, q)) if values else None


@dataclass
class Round:
    """One round: how long the server ran, how it was stopped, and how long it took to come back.

    moment: "random" (killed after ``up_s``) or "announce" (killed the
    moment a client was told of a play, after ``up_s``: the narrowest gap
    between telling a client and writing the store).
    """

    index: int
    up_s: float
    signal: str
    moment: str = "random"
    exit_status: int | None = None
    stop_s: float | None = None  # signal -> process gone (s)
    restart_s: float | None = None  # signal -> /api/status answers again (s)
    trigger: str = ""  # the announcement an "announce" round was killed after
    windows: int = 0  # answered in the round (all its connections)
    plays_sent: int = 0
    shown_open: int = 0


def plan_rounds(n: int, up_s: tuple[float, float], seed: int, sigterm_every: int, announce_every: int) -> list[Round]:
    """``n`` rounds: up times drawn from ``up_s`` (seeded), SIGTERM every ``sigterm_every``-th round and an
    "announce" kill every ``announce_every``-th (0: never), SIGKILL and a random moment otherwise."""
    rng = random.Random(seed)

    def every(k: int, i: int) -> bool:
        return bool(k) and i % k == 0

    return [Round(i, round(rng.uniform(*up_s), 1), "SIGTERM" if every(sigterm_every, i) else "SIGKILL",
                  "announce" if every(announce_every, i) else "random") for i in range(1, n + 1)]


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def report(setup: str, command: str, machine: str, rounds: list[Round], v: Verdict) -> str:
    """The markdown section of docs/benchmarks.md, heading included.

    setup: a sentence on the load and the rounds; command: how it was run;
    machine: the machine and its load.
    """
    lines = [HEADING, "", f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}.", "",
             f"Command: `{command}`", "", setup, "",
             "| what | count |", "|---|---:|",
             f"| plays sent to clients as closed (`play` messages) | {v.announced_closed} |",
             f"| plays shown as playing (`window` \"stream\"), never closed on their connection | {v.announced_open} |",
             *(f"| ... of those, stored as {status} | {n} |" for status, n in sorted(v.open_found_as.items())),
             *(f"| rows in the store: {status} | {n} |" for status, n in sorted(v.stored.items())),
             f"| stored plays no client was told about | {v.unannounced} |",
             *(f"| **{kind}** | **{len(items)}** |" for kind, items in sorted(v.problems.items())), "",
             "| stopped with | killed | rounds | stop median s | restart median s | restart p90 s | restart max s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for sig in ("SIGKILL", "SIGTERM"):
        for moment in ("random", "announce"):
            chosen = [r for r in rounds if (r.signal, r.moment) == (sig, moment)]
            if chosen:
                t = [r.restart_s for r in chosen]
                lines.append(f"| {sig} | {'after an announcement' if moment == 'announce' else 'at a random time'} "
                             f"| {len(chosen)} | {_s(percentile([r.stop_s for r in chosen], 50))} "
                             f"| {_s(percentile(t, 50))} | {_s(percentile(t, 90))} | {_s(max(t))} |")
    lines += ["", ("| round | up s | stopped with | windows | plays sent | shown, not closed | lost or not closed "
                  "| killed after |"), "|---:|---:|---|---:|---:|---:|---:|---|"]
    lines += [f"| {r.index} | {r.up_s:g} | {r.signal} | {r.windows} | {r.plays_sent} | {r.shown_open} "
              f"| {v.lost_by_round[r.index]} "
              f"| {r.trigger or ('a random time' if r.moment == 'random' else 'no announcement came')} |" for r in rounds]
    lines.append("")
    idle = [r.index for r in rounds if not r.windows]
    if idle:
        lines += [f"**Invalid run: round(s) {idle} answered no window** (the load never reached the server).", ""]
    if v.ok:
        lines.append("**No acknowledged play was lost**: every announced play is in the store (closed ones "
                     "closed, open ones recovered or closed), no key or play is stored twice, and nothing is left open.")
    else:
        lines.append(f"**FAILED: {sum(len(x) for x in v.problems.values())} problem(s).** Each kind, what it means, "
                     "and its cases:")
        lines += [f"- `{kind}` ({MEANINGS[kind]}): {'; '.join(items[:10])}"
                  f"{f'; and {len(items) - 10} more' if len(items) > 10 else ''}"
                  for kind, items in sorted(v.problems.items())]
    return "\n".join(lines) + "\n"
