"""Real browser: titles on the Live page and the metadata form on the Catalog page.

Marked ``browser`` (not in the default run); the same Debian Chromium and
fake microphone as ``test_browser.py``. The catalogue is a copy of the
tiny one with a title and an artist recorded for "chirps", so the page can
only show them by looking the track id up.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import soundfile as sf
from synth import pattern
from test_browser import CHROMIUM, chromium_args, need_browser
from test_web_fixtures import TOKEN, recognizer, settings  # noqa: F401

from audiocopy.engines import metadata
from audiocopy.engines.metadata import TrackMeta

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]


@pytest.fixture
def titled_settings(settings, tiny_db, tmp_path):  # noqa: F811 (a fixture)
    db = tmp_path / "db"
    shutil.copytree(tiny_db, db, ignore=shutil.ignore_patterns("dataset", "server"))
    metadata.update_metadata(db, {"chirps": TrackMeta("Chirp Song", "The Sweeps", origin="csv")})
    return replace(settings, db=db)


async def _server(aiohttp_server, app_settings, loaded):
    from audiocopy.web.app import create_app
    from audiocopy.web.auth import AdminAuth

    return await aiohttp_server(create_app(app_settings, recognizer=loaded, auth=AdminAuth.from_token(TOKEN)))


async def test_live_page_shows_title_and_artist_of_the_track(aiohttp_server, titled_settings, recognizer,  # noqa: F811
                                                             tmp_path):
    playwright_api = need_browser()
    wav = tmp_path / "mic.wav"
    sf.write(wav, pattern("chirps", 12, 48000), 48000, subtype="PCM_16")
    server = await _server(aiohttp_server, titled_settings, recognizer)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=chromium_args(wav), headless=True)
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{server.port}/")
            await page.click("#start")
            expect = playwright_api.expect
            await expect(page.locator("#current-match")).to_have_text("chirps", timeout=10_000)  # the id stays
            await expect(page.locator("#current-title")).to_have_text("The Sweeps – Chirp Song", timeout=5_000)
            await page.click("#stop")
        finally:
            await browser.close()


async def test_catalog_form_loads_and_saves_a_tracks_metadata(aiohttp_server, titled_settings,
                                                              recognizer):  # noqa: F811
    playwright_api = need_browser()
    expect = playwright_api.expect
    server = await _server(aiohttp_server, titled_settings, recognizer)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless",
                                                                           "--disable-gpu"], headless=True)
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{server.port}/catalog")
            form = page.locator("#metadata-form")
            await expect(page.locator("#metadata-tracks option")).to_have_count(3)
            await form.locator("input[name=track_id]").fill("chirps")
            await form.locator("input[name=track_id]").dispatch_event("change")
            await expect(form.locator("input[name=title]")).to_have_value("Chirp Song")
            await expect(form.locator("input[name=artist]")).to_have_value("The Sweeps")
            await form.locator("input[name=artist]").fill("The New Sweeps")
            await form.locator("button[type=submit]").click()  # no token yet: refused, shown, nothing stored
            await expect(page.locator("#metadata-status")).to_contain_text("admin token", timeout=5_000)
            assert metadata.read_metadata(titled_settings.db)["chirps"].artist == "The Sweeps"

            await page.click("details.token summary")
            await page.fill("#token-input", TOKEN)
            await page.press("#token-input", "Enter")
            await form.locator("input[name=isrc]").fill("us-rc1-76-07839")
            await form.locator("button[type=submit]").click()
            await expect(page.locator("#metadata-status")).to_have_text("Saved chirps.", timeout=5_000)
            await expect(form.locator("input[name=isrc]")).to_have_value("USRC17607839")  # as stored
            stored = metadata.read_metadata(Path(titled_settings.db))["chirps"]
            assert (stored.artist, stored.isrc, stored.origin) == ("The New Sweeps", "USRC17607839", "admin")
        finally:
            await browser.close()
