"""Real browser: the Live page with a room recording as its microphone.

Marked ``browser`` (not in the default run); the same Debian Chromium and
fake microphone as ``test_browser.py``. A catalogue track is played for
about 30 s through a room made with the project's own augmentation
(``training.augment.chain``: loudspeaker, image-source room, room noises,
microphone, automatic gain control; seeded, no codec so that the audio is
the same on every machine), written as the 48 kHz WAV Chromium captures.
The page must name the track within ``NAMED_WITHIN_S`` of Start, then keep
showing it for at least ``SHOWN_SHARE`` of the next ``SHOWN_SPAN_S``
(sampled every 250 ms), with its title and artist; played 4 % fast, it must
also show the play's time scale.

This tests the page and the stream decision holding a play through the
windows a room weakens (``decision.stream``: "now playing" is the ``stream``
field of each ``window`` message), not recognition accuracy: the tracks are
simple synthetic ones that a room barely hides. Accuracy through rooms is
measured by ``tools/bench_broadcast.py`` on real music with sox-made rooms.
Each test prints what it measured: the seconds to the first naming, the
share shown, and the share of the same span's windows that matched on
their own (what the page showed before it showed the stream's answer).
"""
from __future__ import annotations

import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synth import melody, pattern, room_recording, sped_up
from test_browser import CHROMIUM, chromium_args, need_browser
from test_web_fixtures import TOKEN, recognizer, settings  # noqa: F401

from audiocopy.engines import metadata
from audiocopy.engines.metadata import TrackMeta

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

MIC_RATE = 48000  # what capture devices deliver
MIC_SECONDS = 32.0  # Chromium loops the file: the measurement ends before the loop's seam
#: The bounds. Measured on a 2-core machine: named 2.8 s after Start on clean audio, 5.7 s through the room,
#: 3.1 s at 4 % fast and 5.1-5.6 s through the room at 4 % fast (3.4 s before the vote's local density, with the
#: catalogue's second melody then named as strongly in the first windows); shown 100 % of the next 20 s in all.
NAMED_WITHIN_S = 8.0
SHOWN_SPAN_S = 20.0
SHOWN_SHARE = 0.9
SAMPLE_EVERY_S = 0.25
#: The room: seed 0 draws a 27 x 10 x 11 m hall (RT60 1.5 s) with babble, clatter and HVAC noise, in which
#: a quarter of the tiny catalogue's "chirps" windows miss on their own (75 % matched in the span watched): with
#: ``show_hold_s`` at 0 the page showed the track 75 % of the time and this test failed.
ROOM_SEED = 0
SPEED = 1.04  # played 4 % fast: a speed change (tempo and pitch together)


def room(x: np.ndarray, seed: int = ROOM_SEED) -> np.ndarray:
    """``x`` (at MIC_RATE) through the seeded room chain (``synth.room_recording``)."""
    return room_recording(x, MIC_RATE, seed)


def write_mic(path: Path, x: np.ndarray) -> Path:
    sf.write(path, x[:int(MIC_SECONDS * MIC_RATE)], MIC_RATE, subtype="PCM_16")
    return path


def titled_copy(db: Path, tmp_path: Path, track: str, meta: TrackMeta) -> Path:
    """A copy of catalogue ``db`` with ``meta`` recorded for ``track`` (the page looks titles up by id)."""
    copy = tmp_path / "db"
    shutil.copytree(db, copy, ignore=shutil.ignore_patterns("dataset", "server"))
    metadata.update_metadata(copy, {track: meta})
    return copy


async def watch_live_page(aiohttp_server, app_settings, loaded, wav: Path, track: str, tmp_path: Path) -> dict:
    """Start the Live page on ``wav`` and watch "Now playing" until SHOWN_SPAN_S after it first names ``track``.

    Returns named_s (seconds from Start to the first naming, None if never
    within NAMED_WITHIN_S), shown (share of samples naming ``track``),
    windows (share of the span's windows that matched ``track`` on their
    own), title and evidence (the texts under the name at the end).
    """
    playwright_api = need_browser()
    from audiocopy.web.app import create_app
    from audiocopy.web.auth import AdminAuth

    server = await aiohttp_server(create_app(app_settings, recognizer=loaded, auth=AdminAuth.from_token(TOKEN)))
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=chromium_args(wav), headless=True)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"http://127.0.0.1:{server.port}/")
            await page.click("#start")
            t0 = time.monotonic()
            named_s = None
            while time.monotonic() - t0 < NAMED_WITHIN_S:
                if await page.text_content("#current-match") == track:
                    named_s = time.monotonic() - t0
                    break
                await page.wait_for_timeout(SAMPLE_EVERY_S * 1000)
            if named_s is None:
                await page.screenshot(path=str(tmp_path / "live.png"))
                return {"named_s": None, "status": await page.text_content("#status"), "errors": errors}
            first_cell = await page.locator("#timeline .cell").count()
            samples: list[bool] = []
            t1 = time.monotonic()
            while time.monotonic() - t1 < SHOWN_SPAN_S:
                samples.append(await page.text_content("#current-match") == track)
                await page.wait_for_timeout(SAMPLE_EVERY_S * 1000)
            # Each timeline cell is one window's own answer; its title reads "6.0 s: chirps (+1.23)".
            span = [await c.get_attribute("title") for c in await page.locator("#timeline .cell").all()][first_cell:]
            title = await page.text_content("#current-title")
            evidence = await page.text_content("#current-evidence")
            await page.click("#stop")
            return {"named_s": named_s, "shown": float(np.mean(samples)), "samples": len(samples),
                    "windows": float(np.mean([f": {track} (" in c for c in span])) if span else 0.0,
                    "title": title, "evidence": evidence, "errors": errors}
        finally:
            await browser.close()


def report(label: str, seen: dict) -> None:
    assert seen["named_s"] is not None, f"{label}: not named within {NAMED_WITHIN_S} s; {seen}"
    print(f"\n{label}: named {seen['named_s']:.1f} s after Start, then shown {100 * seen['shown']:.0f} % of "
          f"{SHOWN_SPAN_S:.0f} s ({seen['samples']} samples); windows matching on their own: "
          f"{100 * seen['windows']:.0f} %; evidence line {seen['evidence']!r}")


@pytest.mark.parametrize("through_room", [False, True], ids=["clean", "room"])
async def test_live_page_holds_the_track_through_a_room(aiohttp_server, settings, recognizer, tiny_db,  # noqa: F811
                                                        tmp_path, through_room):
    x = pattern("chirps", MIC_SECONDS, MIC_RATE)
    wav = write_mic(tmp_path / "mic.wav", room(x) if through_room else x)
    db = titled_copy(tiny_db, tmp_path, "chirps", TrackMeta("Chirp Song", "The Sweeps"))
    seen = await watch_live_page(aiohttp_server, replace(settings, db=db), recognizer, wav, "chirps", tmp_path)
    report("room" if through_room else "clean", seen)
    assert seen["shown"] >= SHOWN_SHARE, seen
    assert seen["title"] == "The Sweeps – Chirp Song"
    assert seen["errors"] == []


@pytest.fixture(scope="module")
def tune_db(tmp_path_factory) -> Path:
    """A fingerprint catalogue (the default engine) of a 40 s melody and a chord: offsets along a tune that never
    repeats give the play a time scale (the tiny catalogue's patterns repeat every half second, so their lines
    cannot). The second track is unlike the melody on purpose: two melodies of the same synthetic instrument are
    look-alikes through this room for its first seconds, which is recognition, not the page
    (``tests/test_fingerprint.py``, "look-alike melodies through a room")."""
    from audiocopy.training.enroll_fingerprint import enroll_fingerprint

    root = tmp_path_factory.mktemp("tunes")
    (root / "catalog").mkdir()
    sf.write(root / "catalog" / "tune21.wav", melody(21, 40, 16000), 16000)
    sf.write(root / "catalog" / "chord.wav", pattern("chord", 40, 16000), 16000)
    enroll_fingerprint(root / "catalog", root / "db", progress=False)
    return root / "db"


@pytest.mark.parametrize("through_room", [False, True], ids=["clean", "room"])
async def test_live_page_shows_the_speed_of_a_play(aiohttp_server, settings, tune_db, tmp_path,  # noqa: F811
                                                   through_room):
    from audiocopy.decision.recognizer import Recognizer

    x = sped_up(melody(21, MIC_SECONDS * SPEED + 1, MIC_RATE), SPEED, MIC_RATE)
    wav = write_mic(tmp_path / "mic.wav", room(x) if through_room else x)
    db = titled_copy(tune_db, tmp_path, "tune21", TrackMeta("Twenty-One", "The Tunes"))
    loaded = Recognizer.open(db)
    try:
        seen = await watch_live_page(aiohttp_server, replace(settings, db=db), loaded, wav, "tune21", tmp_path)
    finally:
        loaded.close()
    report(f"{'room' if through_room else 'clean'}, 4 % fast", seen)
    assert seen["shown"] >= SHOWN_SHARE, seen
    assert seen["title"] == "The Tunes – Twenty-One"
    scale = re.search(r"×(\d\.\d{3}): (\d\.\d) % fast(, ([+-]\d\.\d\d) st: (\S+)| \(speed or tempo\))",
                      seen["evidence"])
    assert scale, seen["evidence"]
    assert float(scale.group(1)) == pytest.approx(SPEED, abs=0.015)
    # Through the room only the time scale is checked: a room's noise and reverb fill the valleys of this sparse
    # melody's mean spectrum, so the pitch a play measures there is not reliable (offline, seeds 0-3 of this
    # chain gave -0.1, none, +0.44 and +0.67 st for +0.68, and the page then calls the edit "tempo"). It used to
    # pass here only because the pitch became measurable after the 20 s watched; since the vote's local density
    # the page shows +0.03 st, "tempo", within them. A known weakness of ``decision.evidence``, not of the page.
    if not through_room:
        # Heard cleanly, the page names the kind of edit: pitch up by 12 log2(1.04) = +0.68 st with the tempo.
        assert scale.group(5) == "speed", seen["evidence"]
        assert float(scale.group(4)) == pytest.approx(12 * np.log2(SPEED), abs=0.3)
    assert seen["errors"] == []
