"""The Live page measured in a real browser, with a stream benchmark's room recording as its microphone.

Place in the benchmarks: the last step after ``tools/bench_broadcast.py``.
That benchmark scores "now playing" from the ``window`` messages a client
receives over ``/ws`` (the ``stream.track`` the Live page shows), which is a
proxy: it leaves out the page itself, the browser's capture path (a
device's own rate, the AudioWorklet, f32le frames) and a stream that starts
cold when a user presses Start. Here Chromium plays a cut of the benchmark's
rendered programme as its fake microphone (``--use-file-for-fake-audio-
capture``), a user's click on Start is replayed, and the page's "now
playing" node (``#current-match``, its ``data-track``) is read every
``POLL_S`` from outside the page, as a person would read it.

What is cut. A *song* is a catalogue excerpt of a programme's plan (any
alteration, with or without a presenter over its intro), long enough for
the cut. Its cut starts at the song's first audible sample, in the chosen
chain's rendering of the programme (``room.wav``: speaker, room, noise,
babble, microphone, AGC at 48 kHz; ``clean.wav``: the programme before any
chain), and lasts ``clip_s``: the microphone hears the song from its start
and nothing before it, as in the issue's own trial (30 s of a room
recording per track).

What is scored (``score_samples``): *named* is the time from the click on
Start to the first reading that names the song (so it includes the page's
capture start-up, as a user sees it); *shown* is the share of readings in
the ``follow_s`` after that which still name it. A song never named in the
cut has no *named* time and 0 % shown.

Pure functions (selection, cutting, scoring) are tested without a browser;
``listen`` (and ``listen_async``, tested in the browser suite) needs Chromium and
the ``playwright`` package.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import BenchError, rng_for

log = logging.getLogger(__name__)

#: Seconds between two readings of the page (a window arrives every 0.5 s).
POLL_S = 0.1
#: The programme renderings a cut can come from (file name in a programme's folder).
CHAIN_FILES = {"room": "room.wav", "clean": "clean.wav"}
#: The rate Chromium's fake microphone is given (what capture devices deliver).
MIC_RATE = 48000


@dataclass(frozen=True)
class Song:
    """One catalogue excerpt of a programme: where it is audible and how it was altered (seconds)."""

    programme: str
    track: str
    audible_start_s: float
    audible_end_s: float
    effect: str
    talk_over_s: float


def programme_songs(programmes_dir: Path, *, min_seconds: float) -> list[Song]:
    """Every catalogue excerpt of every programme under ``programmes_dir`` audible for ``min_seconds`` or more.

    programmes_dir: ``WORK/programmes`` of the stream benchmark (one folder
    per programme with its ``plan.json``). Raises ``BenchError`` when there
    are no programmes.
    """
    plans = sorted(Path(programmes_dir).glob("*/plan.json"))
    if not plans:
        raise BenchError(f"no programme plans under {programmes_dir}: run tools/bench_broadcast.py first")
    songs = []
    for plan_path in plans:
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
        for it in plan["items"]:
            if it["kind"] != "song" or it["audible_end_s"] - it["audible_start_s"] < min_seconds:
                continue
            songs.append(Song(plan_path.parent.name, it["track"], float(it["audible_start_s"]),
                              float(it["audible_end_s"]), it["effect"], float(it.get("talk_over_s", 0.0))))
    return songs


def choose_songs(songs: list[Song], n: int, *, seed: int) -> list[Song]:
    """``n`` songs drawn without replacement by ``seed`` (all of them when there are fewer), in programme order."""
    if n < 1:
        raise BenchError(f"--songs must be at least 1, got {n}")
    if len(songs) <= n:
        return list(songs)
    picked = rng_for(seed, "live-page").choice(len(songs), size=n, replace=False)
    return [songs[i] for i in sorted(picked)]


def cut_clip(signal: np.ndarray, rate: int, start_s: float, seconds: float) -> np.ndarray:
    """``seconds`` of ``signal`` (mono, ``rate`` Hz) from ``start_s``, as float32; shorter at the end of the signal.

    Raises ``BenchError`` when the start lies outside the signal.
    """
    a = int(round(start_s * rate))
    if not 0 <= a < signal.size:
        raise BenchError(f"a cut at {start_s:.2f} s lies outside a {signal.size / rate:.1f} s recording")
    return np.asarray(signal[a:a + int(round(seconds * rate))], dtype=np.float32)


def score_samples(samples: list[tuple[float, str]], track: str, *, follow_s: float) -> dict:
    """Named time and shown share of one song from the page's readings.

    samples: (seconds since the click on Start, the track id the page named
    or "") in time order; track: the song's id; follow_s: how long after the
    first naming the shown share is measured. Returns {"named_s": float or
    None, "shown_pct": float, "readings": int (over the follow span),
    "wrong_pct": share of those readings naming another track}.
    """
    first = next((t for t, name in samples if name == track), None)
    if first is None:
        return {"named_s": None, "shown_pct": 0.0, "readings": 0, "wrong_pct": 0.0}
    span = [name for t, name in samples if first <= t <= first + follow_s]
    right = sum(name == track for name in span)
    wrong = sum(bool(name) and name != track for name in span)
    return {"named_s": round(first, 2), "shown_pct": round(100 * right / len(span), 1), "readings": len(span),
            "wrong_pct": round(100 * wrong / len(span), 1)}


def chromium_args(wav: Path) -> list[str]:
    """Headless Chromium with ``wav`` as the microphone, the permission prompt answered yes."""
    return ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required"]


async def listen_async(url: str, wav: Path, seconds: float, chromium: str) -> dict:
    """``listen`` for a caller already inside an event loop (same arguments, same result)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=chromium_args(wav), headless=True)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(url)
            await page.click("#start")
            t0 = time.monotonic()
            samples, listening_s = [], None
            while (t := time.monotonic() - t0) < seconds:
                samples.append((round(t, 3), await page.get_attribute("#current-match", "data-track") or ""))
                if listening_s is None and "Listening" in (await page.text_content("#status") or ""):
                    listening_s = round(t, 3)
                await asyncio.sleep(POLL_S)
            await page.click("#stop")
            return {"samples": samples, "listening_s": listening_s, "page_errors": errors}
        finally:
            await browser.close()


def listen(url: str, wav: Path, seconds: float, *, chromium: str) -> dict:
    """Open the Live page at ``url`` in Chromium with ``wav`` as the microphone, press Start, read it for ``seconds``.

    Returns {"samples": [(s since the click, track id or "")], "listening_s":
    when the status first said it was listening (None if never),
    "page_errors": uncaught errors of the page}.
    """
    return asyncio.run(listen_async(url, Path(wav), seconds, chromium))


def summarise(rows: list[dict], *, named_target_s: float, shown_target_pct: float) -> dict:
    """The figures of one chain's songs: how many were named within the target, and how long they stayed shown."""
    named = [r["named_s"] for r in rows if r["named_s"] is not None]
    shown = [r["shown_pct"] for r in rows if r["named_s"] is not None]
    return {"songs": len(rows), "named": len(named),
            "named_within_target": sum(s <= named_target_s for s in named),
            "named_median_s": round(float(np.median(named)), 2) if named else None,
            "shown_mean_pct": round(float(np.mean(shown)), 1) if shown else None,
            "shown_median_pct": round(float(np.median(shown)), 1) if shown else None,
            "shown_at_target": sum(s >= shown_target_pct for s in shown)}
