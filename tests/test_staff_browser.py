"""The staff pages in a real browser: Debian's chromium driven by Playwright (no browser
download), against the real service with calls made through the Twilio stand-in.

It checks what the office manager sees: names, needs, urgency and Rating badges, the
emergency highlighted, filters and search that work from the form, a readable call page
with the transcript, and no sideways scrolling on a phone. Screenshots of the list and
call pages are taken on every run and written to ``docs/`` with ``UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from telephony.staff_auth import hash_password
from tests.conftest import BUSINESS_NUMBER, PUBLIC_BASE_URL, RunningApp, StartApp, wait_for
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript

CHROMIUM = os.environ.get("RECEPTIONIST_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parent.parent / "docs"
# Screenshots are taken on every run; they replace the ones in docs/ only on request, so a
# test run leaves the checkout clean.
UPDATE_SCREENSHOTS = os.environ.get("UPDATE_SCREENSHOTS") == "1"
PASSWORD = "correct horse battery staple"
PASSWORD_HASH = hash_password(PASSWORD, iterations=2_000)

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright not installed")
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)),
    reason=f"no chromium at {CHROMIUM}: apt-get install -y chromium (the test never downloads one)",
)

CALLS = [
    ("+14155550100", ["Maria Lopez", "my basement is flooding, a pipe burst", "yes", "tonight"]),
    ("+14155550101", ["Jordan Lee", "I'd like a quote for a new water heater", "yes", "next week"]),
    ("+14155550102", ["Dana Reyes", "the kitchen sink drains slowly", "yes", "tomorrow morning"]),
]


async def make_calls(app: RunningApp, twilio: TwilioStandin) -> dict[str, str]:
    sids = {}
    for caller, speech in CALLS:
        result = await twilio.place_call(
            app_url=app.url,
            public_base_url=PUBLIC_BASE_URL,
            from_=caller,
            to=BUSINESS_NUMBER,
            script=CallerScript(speech=speech),
            speed=8,
        )
        sids[speech[0]] = result.call_sid
    store = app.services.store
    for sid in sids.values():
        await wait_for(
            lambda s=sid: (job := store.outbox_job(s)) is not None and job.state == "delivered"
        )
    return sids


async def test_the_office_manager_triages_calls_in_chromium(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    app = await start_app(
        staff_password_hash=PASSWORD_HASH,
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
    )
    sids = await make_calls(app, twilio_standin)
    shots = DOCS if UPDATE_SCREENSHOTS else tmp_path
    shots.mkdir(exist_ok=True)
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            context = await browser.new_context(
                http_credentials={"username": "staff", "password": PASSWORD},
                viewport={"width": 1200, "height": 800},
            )
            page = await context.new_page()
            console_errors: list[str] = []
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else 0)
            failed: list[str] = []
            page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else 0)
            await page.goto(f"{app.url}/calls")
            rows = page.locator("ol.calls > li.call")
            assert await rows.count() == 3
            emergency = page.locator("li.call.emergency")
            assert await emergency.count() == 1
            text = await emergency.inner_text()
            assert "Maria Lopez" in text and "EMERGENCY" in text and "Hot" in text
            assert "PST" in text or "PDT" in text  # the business's local time
            # The emergency stands out: its left border is the alarm red.
            border = await emergency.locator("a").evaluate(
                "e => getComputedStyle(e).borderLeftColor"
            )
            assert border == "rgb(179, 38, 30)"
            await page.screenshot(path=str(shots / "staff-calls.png"), full_page=True)

            # Filter from the form: urgency 5 only.
            await page.select_option("select[name=urgency]", "5")
            await page.click("form.filters button[type=submit]")
            await page.wait_for_url("**/calls?*urgency=5*")
            assert await rows.count() == 1
            # Search by name, then by part of a phone number.
            await page.goto(f"{app.url}/calls")
            await page.fill("input[name=q]", "jordan")
            await page.press("input[name=q]", "Enter")
            await page.wait_for_url("**q=jordan*")
            assert await rows.count() == 1
            assert "Jordan Lee" in await rows.first.inner_text()
            await page.goto(f"{app.url}/calls?q=555-0102")
            assert await rows.count() == 1
            assert "Dana Reyes" in await rows.first.inner_text()

            # The call page: readable summary, transcript with times.
            await page.goto(f"{app.url}/calls")
            await page.click("li.call.emergency a")
            await page.wait_for_url(f"**/calls/{sids['Maria Lopez']}")
            assert await page.locator("h1").inner_text() == "Maria Lopez"
            assert "flood" in (await page.locator("p.need").inner_text()).lower()
            transcript = page.locator("ol.transcript li")
            assert await transcript.count() >= 4
            assert (await transcript.first.locator(".t").inner_text()).count(":") == 1
            assert "delivered" in await page.locator("article").inner_text()
            await page.screenshot(path=str(shots / "staff-call.png"), full_page=True)

            # On a phone: nothing is cut off (no sideways scrolling).
            phone = await browser.new_context(
                http_credentials={"username": "staff", "password": PASSWORD},
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                is_mobile=True,
            )
            small = await phone.new_page()
            for path in ("/calls", f"/calls/{sids['Maria Lopez']}"):
                await small.goto(f"{app.url}{path}")
                overflow = await small.evaluate(
                    "document.documentElement.scrollWidth - window.innerWidth"
                )
                assert overflow <= 0, (path, overflow)
            await small.goto(f"{app.url}/calls")
            await small.screenshot(path=str(shots / "staff-calls-phone.png"), full_page=True)
            # The strict CSP blocks nothing the pages need; only the browser's own favicon
            # probe may 404.
            assert [u for u in failed if not u.endswith("/favicon.ico")] == []
            assert [e for e in console_errors if "404" not in e] == []
        finally:
            await browser.close()
