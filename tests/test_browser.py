"""Real browser tests: the Live page with Chromium's fake microphone playing a catalogue track, the
Catalog page (its columns per engine, a refused Delete shown beside its row), the Plays page's Reports
(totals per track and rights owner, the day's timeline picture), the Identify page's timeline of a file, and the
Live-page benchmark's reading of the page (``tools/bench/live_page.py``).

Marked ``browser`` (not in the default run). Needs Debian's Chromium
(``apt-get install -y chromium``) and the ``playwright`` package, which
drives that binary directly: no browser is downloaded
(``playwright install`` is never needed). Chromium reads the fake microphone
from a WAV file and loops it; the page captures it through the AudioWorklet,
streams f32le PCM over /ws, and must show the track's name within 10 s of
pressing Start.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import soundfile as sf
from bench.live_page import chromium_args  # the Live-page benchmark's browser: the same flags
from synth import pattern
from test_web_fixtures import TOKEN, recognizer, settings  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

CHROMIUM = os.environ.get("AUDIOCOPY_CHROMIUM", "/usr/bin/chromium")


def need_browser():
    """Playwright's API, or a skip; in CI, where the browser is installed on purpose, a missing one fails."""
    missing = pytest.fail if os.environ.get("CI") else pytest.skip
    try:
        import playwright.async_api as playwright_api
    except ImportError:
        missing("playwright is not installed (pip install -e '.[browser]')")
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        missing(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    return playwright_api


@pytest.fixture
def fake_mic_wav(tmp_path) -> Path:
    """The catalogue track "chirps" as the microphone, 48 kHz 16-bit (what capture devices deliver)."""
    path = tmp_path / "mic.wav"
    sf.write(path, pattern("chirps", 12, 48000), 48000, subtype="PCM_16")
    return path


async def test_live_page_shows_the_track_from_the_microphone(aiohttp_server, settings, recognizer, fake_mic_wav,
                                                            tmp_path):
    playwright_api = need_browser()
    from audiocopy.web.app import create_app
    from audiocopy.web.auth import AdminAuth

    server = await aiohttp_server(create_app(settings, recognizer=recognizer, auth=AdminAuth.from_token(TOKEN)))
    url = f"http://127.0.0.1:{server.port}/"
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=chromium_args(fake_mic_wav),
                                           headless=True)
        try:
            page = await browser.new_page()
            console: list[str] = []
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
            await page.goto(url)
            assert await page.text_content("#current-match") == "—"
            t0 = time.monotonic()
            await page.click("#start")
            try:
                # Locator assertions poll from outside the page: the page's CSP
                # (no eval) stays in force, as for a real user.
                await playwright_api.expect(page.locator("#current-match")).to_have_text("chirps", timeout=10_000)
            except AssertionError:
                status = await page.text_content("#status")
                await page.screenshot(path=str(tmp_path / "live.png"))
                pytest.fail(f"no match within 10 s; status {status!r}; console {console}")
            seconds = time.monotonic() - t0
            assert await page.get_attribute("#current-match", "data-track") == "chirps"
            assert await page.locator("#timeline .cell.hit").count() >= 1
            status = await page.text_content("#status")
            assert "Listening at" in status
            print(f"Live page showed the track {seconds:.1f} s after Start ({status})")
            await page.click("#stop")
            await playwright_api.expect(page.locator("#status")).to_contain_text("Stopped", timeout=10_000)
        finally:
            await browser.close()


async def test_the_live_page_benchmark_reads_now_playing_as_the_page_shows_it(aiohttp_server, settings, recognizer,
                                                                              fake_mic_wav):
    """``tools/bench_live_page.py`` reads the page from outside: if the page renamed what it shows, this fails."""
    need_browser()
    from bench.live_page import listen_async, score_samples

    from audiocopy.web.app import create_app
    from audiocopy.web.auth import AdminAuth

    server = await aiohttp_server(create_app(settings, recognizer=recognizer, auth=AdminAuth.from_token(TOKEN)))
    heard = await listen_async(f"http://127.0.0.1:{server.port}/", fake_mic_wav, 10.0, CHROMIUM)
    assert heard["listening_s"] is not None and heard["listening_s"] < 5, heard["page_errors"]
    assert not heard["page_errors"]
    got = score_samples(heard["samples"], "chirps", follow_s=3.0)
    assert got["named_s"] is not None and got["named_s"] < 7.0 and got["shown_pct"] > 50, got
    assert {name for _, name in heard["samples"]} <= {"", "chirps"}


# --- the Catalog page ---------------------------------------------------------------------------------------------



async def _catalog_page(aiohttp_server, settings, recognizer, pw, **viewport):
    """A server on ``settings`` and a browser page on its /catalog (``viewport``: width, height)."""
    from audiocopy.web.app import create_app
    from audiocopy.web.auth import AdminAuth

    server = await aiohttp_server(create_app(settings, recognizer=recognizer, auth=AdminAuth.from_token(TOKEN)))
    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless",
                                                                       "--disable-gpu"], headless=True)
    page = await browser.new_page(viewport=viewport or None)
    page.on("dialog", lambda dialog: dialog.accept())  # the "Delete X?" confirmation
    await page.goto(f"http://127.0.0.1:{server.port}/catalog")
    return browser, page


async def _headers(page) -> list[str]:
    return [t.strip() for t in await page.locator("#catalog-head th").all_text_contents()]


async def test_catalog_page_shows_a_refused_delete_beside_its_row(aiohttp_server, settings, recognizer, tmp_path):
    playwright_api = need_browser()
    from dataclasses import replace

    expect = playwright_api.expect
    settings = replace(settings, negatives_dir=tmp_path)  # adding enabled: the page shows its time estimate
    async with playwright_api.async_playwright() as pw:
        # A short window: the page's status line at the bottom is out of view, as on a phone or a long catalogue.
        browser, page = await _catalog_page(aiohttp_server, settings, recognizer, pw, width=900, height=260)
        try:
            row = page.locator('#catalog-tracks tr[data-track="chord"]')
            await expect(row).to_have_count(1)
            assert await _headers(page) == ["Track", "Model size", "Threshold (logit)", ""]  # cnnbin columns
            cells = [c.strip() for c in await row.locator("td").all_text_contents()]
            assert cells[1].endswith("kB") or cells[1].endswith("MB")
            assert cells[2] != "" and abs(float(cells[2])) < 100  # a threshold (logit) is shown
            assert "several minutes" in await page.text_content("#add-hint")
            await row.scroll_into_view_if_needed()
            await row.locator("button.danger").click()  # no admin token in this browser: refused (401)
            note = row.locator(".row-note")
            await expect(note).to_contain_text("admin token", timeout=5_000)
            await expect(note).to_have_class("row-note error")
            await expect(note).to_be_in_viewport()  # seen where the click was
            await expect(page.locator("#catalog-status")).not_to_be_in_viewport()  # ...where it used to go
            await expect(page.locator("#catalog-tracks tr")).to_have_count(3)  # nothing was deleted
        finally:
            await browser.close()


@pytest.fixture(scope="module")
def fingerprint_db(tmp_path_factory) -> Path:
    """A small fingerprint catalogue: two 12 s melodies, no negatives (enrolment takes seconds)."""
    from synth import melody

    from audiocopy.training.enroll_fingerprint import enroll_fingerprint

    root = tmp_path_factory.mktemp("fp_browser")
    (root / "catalog").mkdir()
    for seed in (21, 22):
        sf.write(root / "catalog" / f"tune{seed}.wav", melody(seed, 12, 16000), 16000)
    enroll_fingerprint(root / "catalog", root / "db", progress=False)
    return root / "db"


async def test_catalog_page_shows_only_the_fingerprint_columns(aiohttp_server, settings, fingerprint_db, tmp_path):
    playwright_api = need_browser()
    from dataclasses import replace

    from audiocopy.decision.recognizer import Recognizer

    expect = playwright_api.expect
    settings = replace(settings, db=fingerprint_db, negatives_dir=tmp_path)
    async with playwright_api.async_playwright() as pw:
        browser, page = await _catalog_page(aiohttp_server, settings, Recognizer.open(fingerprint_db), pw)
        try:
            await expect(page.locator("#catalog-tracks tr")).to_have_count(2)
            headers = await _headers(page)
            assert headers == ["Track", "Duration (s)", "Vectors", ""]
            assert "Model size" not in headers and "Threshold (logit)" not in headers
            for row in await page.locator("#catalog-tracks tr").all():
                cells = [c.strip() for c in await row.locator("td").all_text_contents()]
                assert float(cells[1]) == pytest.approx(12.0, abs=0.1) and int(cells[2]) > 0  # no empty column
            hint = await page.text_content("#add-hint")
            assert "several minutes" not in hint and "seconds" in hint
            assert await page.text_content("#add-form button") == "Upload and add"
        finally:
            await browser.close()


# --- the Plays page's Reports section and the Identify page's timeline ---------------------------------------------

def _titled_db(tiny_db, tmp_path) -> Path:
    """A copy of the tiny catalogue with metadata for two of its tracks (one of them named like markup)."""
    from audiocopy.engines import metadata
    from audiocopy.engines.metadata import TrackMeta

    db = tmp_path / "db"
    shutil.copytree(tiny_db, db, ignore=shutil.ignore_patterns("dataset", "server"))
    metadata.update_metadata(db, {"chirps": TrackMeta("Chirp Song", "The Sweeps", rights_owner="Sweep Records"),
                                  "pulses": TrackMeta("<b>Pulse</b>", "Beat", rights_owner="Sweep Records")})
    return db


async def _browser_page(pw, server, path: str):
    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless", "--disable-gpu"],
                                       headless=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await page.goto(f"http://127.0.0.1:{server.port}{path}")
    return browser, page, errors


async def test_plays_page_reports_show_totals_and_the_timeline(aiohttp_server, settings, recognizer, tiny_db,
                                                               tmp_path):
    playwright_api = need_browser()
    from dataclasses import replace

    from audiocopy.decision.play import Play
    from audiocopy.plays.record import PlayOrigin, SourceReport
    from audiocopy.plays.store import PlaysLog
    from audiocopy.web.app import PLAYS_FILE, create_app
    from audiocopy.web.auth import AdminAuth

    expect = playwright_api.expect
    store = PlaysLog(settings.state_path / PLAYS_FILE)
    for track, start, seconds in (("chirps", "2024-05-01T10:00:00.000Z", 30), ("pulses", "2024-05-01T11:00:00.000Z", 50),
                                  ("chirps", "2024-05-01T12:00:00.000Z", 20), ("chord", "2024-05-02T09:00:00.000Z", 7)):
        store.add(Play(track=track, source="radio", start_s=0.0, end_s=float(seconds), confidence=1.0, peak_score=2.0,
                       windows=9, started_at=start, ended_at=start.replace(":00.000Z", f":{seconds:02d}.000Z")))
    store.note_source(SourceReport("radio", PlayOrigin(), answered=10, started=True))
    settings = replace(settings, db=_titled_db(tiny_db, tmp_path))
    server = await aiohttp_server(create_app(settings, recognizer=recognizer, auth=AdminAuth.from_token(TOKEN)))
    async with playwright_api.async_playwright() as pw:
        browser, page, errors = await _browser_page(pw, server, "/plays")
        try:
            # The page starts on the last 30 days, where there are none of these plays.
            await expect(page.locator("#report-status")).to_have_text("0 tracks, 0 plays")
            await page.fill("#report-form input[name=since]", "2024-05-01")
            await page.fill("#report-form input[name=until]", "2024-05-02")
            await page.click("#report-form button")
            rows = page.locator("#report-rows tr")
            await expect(rows).to_have_count(3)  # by track: chirps, pulses, chord
            first = [c.strip() for c in await rows.nth(0).locator("td").all_text_contents()]
            assert first[:5] == ["chirps", "Chirp Song", "The Sweeps", "2", "50.0"]
            await page.fill("#report-form input[name=since]", "2024-05-01")
            await page.fill("#report-form input[name=until]", "2024-05-01")
            await page.select_option("#report-form select[name=by]", "owner")
            await page.click("#report-form button")
            await expect(rows).to_have_count(1)
            cells = [c.strip() for c in await rows.nth(0).locator("td").all_text_contents()]
            assert cells[:4] == ["Sweep Records", "2", "3", "100.0"]  # chord (2 May) is outside the range
            assert "Rights owner" in await page.text_content("#report-head")
            csv_href = await page.get_attribute("#report-csv", "href")
            assert "format=csv" in csv_href and "by=owner" in csv_href and "since=2024-05-01" in csv_href
            assert "format=json" in await page.get_attribute("#report-json", "href")
            # The timeline: the only source seen is suggested; the day is chosen by hand.
            await expect(page.locator("#timeline-source")).to_have_value("radio")
            await page.fill("#timeline-day", "2024-05-01")
            await page.click("#timeline-form button")
            img = page.locator("#timeline-img")
            await expect(img).to_be_visible(timeout=5_000)
            await expect(page.locator("#timeline-status")).to_have_text("Hover a bar for the play's details.")
            assert (await img.get_attribute("src")) == "/api/plays/timeline.svg?source=radio&day=2024-05-01"
            box = await img.bounding_box()
            assert box["width"] > 600 and box["height"] > 60  # drawn, not a broken-image icon
            assert errors == []
        finally:
            await browser.close()


async def test_identify_page_draws_the_plays_of_a_file_on_a_timeline(aiohttp_server, settings, recognizer, tiny_db,
                                                                     tmp_path):
    playwright_api = need_browser()
    from dataclasses import replace

    import numpy as np
    from synth import melody

    from audiocopy.web.app import create_app
    from audiocopy.web.auth import AdminAuth

    expect = playwright_api.expect
    wav = tmp_path / "aircheck.wav"
    sf.write(wav, np.concatenate([melody(300, 4, 22050), pattern("chirps", 8, 22050)]), 22050, subtype="PCM_16")
    settings = replace(settings, db=_titled_db(tiny_db, tmp_path))
    server = await aiohttp_server(create_app(settings, recognizer=recognizer, auth=AdminAuth.from_token(TOKEN)))
    async with playwright_api.async_playwright() as pw:
        browser, page, errors = await _browser_page(pw, server, "/identify")
        try:
            await page.set_input_files("#identify-form input[type=file]", str(wav))
            await page.click("#identify-form button")
            bars = page.locator("#identify-timeline svg rect.play")
            await expect(bars).to_have_count(1, timeout=30_000)
            assert await bars.nth(0).get_attribute("data-track") == "chirps"
            # The play starts after the 4 s of unknown music: its bar does not start at the left edge, but
            # within the stream benchmark's start-error target (2 s) of the song's start. A window holding
            # the song's first 0.5 s already supports it with the shipped encoder (the bar starts at 3.0 s).
            x, width = float(await bars.nth(0).get_attribute("x")), float(await bars.nth(0).get_attribute("width"))
            start_s = (x - 200) / 760 * 12
            assert 4 - 2 < start_s < 4 + 2 and width > 760 * 4 / 12, start_s
            tip = await bars.nth(0).locator("title").text_content()
            assert tip.startswith("The Sweeps – Chirp Song")
            lane = page.locator("#identify-timeline svg g.lane text")
            await expect(lane).to_have_text("The Sweeps – Chirp Song")
            await expect(page.locator("#identify-title")).to_have_text("The Sweeps – Chirp Song")
            assert errors == []
        finally:
            await browser.close()
