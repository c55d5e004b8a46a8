"""Real browser test of the Monitors page's Webhooks section: hidden without the admin token, then add (and
a refused URL's reason shown), the signing key shown, remove.

Marked ``browser`` (not in the default run); same Chromium and Playwright set-up as ``test_browser``.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
from test_browser import CHROMIUM, need_browser
from test_web_fixtures import TOKEN, recognizer, settings  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.asyncio]



async def test_webhooks_section_adds_refuses_and_removes(aiohttp_server, settings, recognizer):
    playwright_api = need_browser()
    from audiocopy.web.app import create_app
    from audiocopy.web.auth import AdminAuth

    app = create_app(replace(settings, allow_private_monitors=True), recognizer=recognizer,
                     auth=AdminAuth.from_token(TOKEN))
    server = await aiohttp_server(app)
    expect = playwright_api.expect
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless",
                                                                           "--disable-gpu"], headless=True)
        try:
            page = await browser.new_page()
            page.on("dialog", lambda dialog: dialog.accept())  # "Stop sending plays to ...?"
            await page.goto(f"http://127.0.0.1:{server.port}/monitors")
            status = page.locator("#webhook-status")
            await expect(status).to_contain_text("admin token", timeout=5_000)
            await page.click("details.token summary")
            await page.fill("#token-input", TOKEN)
            await page.click("#token-form button[type=submit]")
            await page.reload()
            url_input = page.locator("#webhook-form input[name=url]")
            await url_input.fill("file:///etc/passwd")
            await page.click("#webhook-form button[type=submit]")
            await expect(status).to_contain_text("only http and https", timeout=5_000)
            await url_input.fill("http://127.0.0.1:9/hook")
            await page.click("#webhook-form button[type=submit]")
            rows = page.locator("#webhook-rows tr")
            await expect(rows).to_have_count(1, timeout=5_000)
            await expect(rows.first).to_contain_text("http://127.0.0.1:9/hook")
            await expect(page.locator("#webhook-key")).to_be_visible()
            assert len((await page.text_content("#webhook-key-text")).strip()) == 64
            await expect(page.locator("#webhook-outbox")).to_contain_text("0 pending")
            await rows.first.locator("button.danger").click()
            await expect(rows).to_have_count(0, timeout=5_000)
            await expect(status).to_have_text("Webhook removed")
        finally:
            await browser.close()
