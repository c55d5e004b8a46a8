"""A real browser on the Live page: Chromium's fake microphone plays a catalogue track.

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
from synth import pattern
from test_web_fixtures import TOKEN, recognizer, settings  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]

CHROMIUM = os.environ.get("AUDIOCOPY_CHROMIUM", "/usr/bin/chromium")


def chromium_args(wav: Path) -> list[str]:
    return ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture
def fake_mic_wav(tmp_path) -> Path:
    """The catalogue track "chirps" as the microphone, 48 kHz 16-bit (what capture devices deliver)."""
    path = tmp_path / "mic.wav"
    sf.write(path, pattern("chirps", 12, 48000), 48000, subtype="PCM_16")
    return path


async def test_live_page_shows_the_track_from_the_microphone(aiohttp_server, settings, recognizer, fake_mic_wav,
                                                            tmp_path):
    # In CI the browser is installed on purpose: a missing one is a failure, not a skip.
    missing = pytest.fail if os.environ.get("CI") else pytest.skip
    try:
        import playwright.async_api as playwright_api
    except ImportError:
        missing("playwright is not installed (pip install -e '.[browser]')")
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        missing(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
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
