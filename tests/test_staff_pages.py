"""The staff pages under ``/calls``: closed until a password hash is set, HTTP Basic with
the hashed password, caller text shown escaped, and the retry of a dead-lettered delivery.

What a user would notice if these failed: call transcripts readable by anyone who finds the
URL, a caller's words running as script in a staff member's browser, or a call stuck in the
dead-letter queue with no way to send it again.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import httpx
import pytest

from crm.store import CallRecord, Store
from telephony.escalation import NO_ON_CALL_PHONE
from telephony.staff.queries import AlertStatus, alert_status
from telephony.staff.security import LoginThrottle
from telephony.staff_auth import hash_password
from tests.conftest import BUSINESS_NUMBER, CALLER, PUBLIC_BASE_URL, RunningApp, StartApp, wait_for
from tests.standins.salesforce import SalesforceStandin
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript
from tests.test_conversation_e2e import place_call, twilio_settings
from tests.test_escalation import BURST_PIPE_SPEECH

PASSWORD = "correct horse battery staple"
# Fewer PBKDF2 iterations than production keeps the test fast; the format is the same.
PASSWORD_HASH = hash_password(PASSWORD, iterations=2_000)
XSS = "<script>alert('owned')</script>"
SPEECH = ["Dana Reyes", f"{XSS} my kitchen sink is leaking", "this week", "yes", "tomorrow"]


async def intake_call(app: RunningApp, twilio: TwilioStandin) -> str:
    """One scripted-intake call through the real webhooks; returns its CallSid."""
    result = await twilio.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=CallerScript(speech=SPEECH),
        speed=8,
    )
    store = app.services.store
    await wait_for(lambda: store.get_summary(result.call_sid) is not None)
    return result.call_sid


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None, "no CSRF token on the page"
    return match.group(1)


async def test_staff_pages_are_closed_without_a_password_hash(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """No STAFF_PASSWORD_HASH: every staff page answers 503 whatever credentials are sent."""
    app = await start_app(**twilio_settings(twilio_standin))
    call_sid = await intake_call(app, twilio_standin)
    async with httpx.AsyncClient(base_url=app.url) as client:
        for password in ["", "staff", PASSWORD]:
            auth = ("staff", password)
            listing = await client.get("/calls", auth=auth)
            assert listing.status_code == 503 and "STAFF_PASSWORD_HASH" in listing.text
            page = await client.get(f"/calls/{call_sid}", auth=auth)
            assert page.status_code == 503
            retry = await client.post(f"/calls/{call_sid}/retry", auth=auth)
            assert retry.status_code == 503
        anonymous = await client.get("/calls")
        assert anonymous.status_code in {401, 503}
        assert "Dana" not in anonymous.text


async def test_wrong_credentials_get_401_and_the_right_ones_see_escaped_caller_text(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """HTTP Basic: no credentials, a wrong password or a wrong username → 401 with a
    challenge and nothing of the call; the right ones → the list and the call page, where
    what the caller said is shown as text, never as markup."""
    app = await start_app(staff_password_hash=PASSWORD_HASH, **twilio_settings(twilio_standin))
    call_sid = await intake_call(app, twilio_standin)
    async with httpx.AsyncClient(base_url=app.url) as client:
        for auth in [None, ("staff", "wrong password"), ("admin", PASSWORD), ("staff", "")]:
            response = await client.get(f"/calls/{call_sid}", auth=auth)
            assert response.status_code == 401, auth
            assert response.headers["www-authenticate"].startswith("Basic")
            assert "Dana" not in response.text
        listing = await client.get("/calls", auth=("staff", PASSWORD))
        assert listing.status_code == 200 and call_sid in listing.text
        page = await client.get(f"/calls/{call_sid}", auth=("staff", PASSWORD))
    assert page.status_code == 200
    assert "Reyes" in page.text
    assert XSS not in page.text
    assert "&lt;script&gt;" in page.text


async def test_a_dead_lettered_delivery_is_retried_from_the_staff_page(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    salesforce_ca_env: SalesforceStandin,
) -> None:
    """Salesforce fails the only allowed attempt → dead-lettered with the reason on the
    page and a Retry button; Retry (authenticated) sends it again → one Lead. Retrying
    without credentials, or a delivery that is not dead, changes nothing."""
    org = salesforce_ca_env
    org.inject_fault("503")
    app = await start_app(
        staff_password_hash=PASSWORD_HASH,
        salesforce_login_url=org.login_url,
        salesforce_client_id=org.client_id,
        salesforce_client_secret=org.client_secret,
        delivery_max_attempts=1,
        **twilio_settings(twilio_standin),
    )
    call_sid = await intake_call(app, twilio_standin)
    store = app.services.store
    await wait_for(lambda: (job := store.outbox_job(call_sid)) is not None and job.state == "dead")
    assert org.records("Lead") == []
    staff = ("staff", PASSWORD)
    async with httpx.AsyncClient(base_url=app.url) as client:
        page = await client.get(f"/calls/{call_sid}", auth=staff)
        assert "dead" in page.text and "Retry delivery" in page.text
        assert "gave up after 1 attempts" in page.text
        listing = await client.get("/calls", auth=staff)
        assert "1 delivery failed for good" in listing.text

        token = csrf_of(page.text)
        refused = await client.post(f"/calls/{call_sid}/retry", data={"csrf": token})
        assert refused.status_code == 401
        # A cross-site form re-sends Basic credentials but not our token: refused.
        forged = await client.post(f"/calls/{call_sid}/retry", auth=staff)
        assert forged.status_code == 403
        other_site = await client.post(
            f"/calls/{call_sid}/retry",
            auth=staff,
            data={"csrf": token},
            headers={"Origin": "https://evil.example"},
        )
        assert other_site.status_code == 403
        # Change the last hex digit (always to another one: the token ends in "0" one time
        # in sixteen).
        tampered_token = token[:-1] + ("1" if token.endswith("0") else "0")
        tampered = await client.post(
            f"/calls/{call_sid}/retry", auth=staff, data={"csrf": tampered_token}
        )
        assert tampered.status_code == 403
        job = store.outbox_job(call_sid)
        assert job is not None and job.state == "dead"

        retried = await client.post(f"/calls/{call_sid}/retry", auth=staff, data={"csrf": token})
        assert retried.status_code == 303
        assert retried.headers["location"] == f"/calls/{call_sid}"
        await wait_for(
            lambda: (job := store.outbox_job(call_sid)) is not None and job.state == "delivered"
        )
        (lead,) = org.records("Lead")
        assert (lead["FirstName"], lead["LastName"]) == ("Dana", "Reyes")
        # The call page links to the records in the org (instance URL + id).
        delivered = await client.get(f"/calls/{call_sid}", auth=staff)
        link = f'href="{org.instance_url}/lightning/r/Lead/{lead["Id"]}/view"'
        assert link in delivered.text
        history = (
            await client.get(f"/calls/{call_sid}", params={"format": "json"}, auth=staff)
        ).json()["history"]
        assert [(h["attempt"], h["outcome"]) for h in history] == [
            (1, "dead"),
            (0, "requeued"),
            (1, "delivered"),
        ]
        assert "gave up after 1 attempts" in history[0]["detail"]
        assert "Delivery history" in delivered.text

        again = await client.post(f"/calls/{call_sid}/retry", auth=staff, data={"csrf": token})
        assert again.status_code == 409
        unknown = await client.get("/calls/CA" + "0" * 32, auth=staff)
        assert unknown.status_code == 404
    assert len(org.records("Lead")) == 1


@pytest.mark.parametrize("encoded", ["", "not-a-hash", "pbkdf2_sha256$0$00$00", "md5$1$aa$bb"])
def test_a_malformed_hash_never_lets_anyone_in(encoded: str) -> None:
    """A mistyped STAFF_PASSWORD_HASH refuses every password instead of raising."""
    from telephony.staff_auth import verify_password

    assert not verify_password(PASSWORD, encoded)
    assert not verify_password("", encoded)


async def test_staff_pages_send_security_headers_and_throttle_wrong_logins(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """CSP, no framing, nosniff, no-store on personal data; five wrong logins from one
    address → 429 with Retry-After, and then even the right password waits (no hashing
    while throttled), while the phone side answers as usual."""
    app = await start_app(staff_password_hash=PASSWORD_HASH, **twilio_settings(twilio_standin))
    call_sid = await intake_call(app, twilio_standin)
    async with httpx.AsyncClient(base_url=app.url) as client:
        page = await client.get(f"/calls/{call_sid}", auth=("staff", PASSWORD))
        assert page.status_code == 200
        headers = page.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src" not in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
        css = await client.get("/static/staff/staff.css")
        assert css.status_code == 200 and css.headers["x-content-type-options"] == "nosniff"

        for attempt in range(5):
            wrong = await client.get("/calls", auth=("staff", f"guess {attempt}"))
            assert wrong.status_code == 401
        throttled = await client.get("/calls", auth=("staff", "guess 6"))
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
        right = await client.get("/calls", auth=("staff", PASSWORD))
        assert right.status_code == 429
        health = await client.get("/healthz")
        assert health.status_code == 200


async def test_wrong_logins_are_counted_by_every_process_and_across_a_restart(
    start_app: StartApp,
) -> None:
    """Two processes on one database: three wrong logins at one and two at the other
    throttle the address at both; a process started afterwards (a restart) throttles it
    too. The database holds a keyed hash of the address, never the address."""
    first = await start_app(staff_password_hash=PASSWORD_HASH)
    second = await start_app(staff_password_hash=PASSWORD_HASH)

    async def login(app: RunningApp, password: str) -> int:
        async with httpx.AsyncClient(base_url=app.url) as client:
            return (await client.get("/calls", auth=("staff", password))).status_code

    assert [await login(first, f"guess {i}") for i in range(3)] == [401] * 3
    assert [await login(second, f"guess {i}") for i in range(3, 5)] == [401] * 2
    assert await login(first, PASSWORD) == 429
    assert await login(second, PASSWORD) == 429
    restarted = await start_app(staff_password_hash=PASSWORD_HASH)
    assert await login(restarted, PASSWORD) == 429
    with first.services.store.engine.connect() as connection:
        keys = connection.exec_driver_sql("SELECT client_key FROM staff_login_failures").all()
    assert len(keys) == 5 and all("127.0.0.1" not in key for (key,) in keys)


def test_the_login_window_slides_and_a_right_login_clears_it(tmp_path: Path) -> None:
    """Five wrong logins: throttled until the oldest is five minutes old (Retry-After
    counts down to it); after the window the address may try again, and the old rows are
    forgotten with the next wrong login; a right login forgets the address's count."""
    store = Store.from_url(f"sqlite:///{tmp_path / 'throttle.db'}")
    store.create_schema()
    now = [dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)]
    throttle = LoginThrottle(store, b"k" * 32, clock=lambda: now[0])
    for _ in range(5):
        assert throttle.retry_after("203.0.113.9") == 0
        throttle.failed("203.0.113.9")
        now[0] += dt.timedelta(seconds=10)
    assert throttle.retry_after("203.0.113.9") == 300 - 50 + 1
    assert throttle.retry_after("198.51.100.7") == 0  # another address is not held
    now[0] += dt.timedelta(seconds=251)
    assert throttle.retry_after("203.0.113.9") == 0  # the oldest left the window
    throttle.failed("198.51.100.7")  # ... and is forgotten with the next wrong login
    assert (
        len(
            store.login_failures(
                throttle.client_key("203.0.113.9"), since=now[0] - dt.timedelta(days=1)
            )
        )
        == 4
    )
    throttle.succeeded("203.0.113.9")
    assert (
        store.login_failures(
            throttle.client_key("203.0.113.9"), since=now[0] - dt.timedelta(days=1)
        )
        == []
    )
    assert (
        len(
            store.login_failures(
                throttle.client_key("198.51.100.7"), since=now[0] - dt.timedelta(days=1)
            )
        )
        == 1
    )


async def test_the_list_filters_searches_and_pages_in_sql(start_app: StartApp) -> None:
    """60 finalized calls: 25 a page, filters and search narrow the SQL query (the counts
    say so), the JSON view carries the same rows, and a page past the end shows the last."""
    import datetime as dt

    from agent.summary import CallSummary

    app = await start_app(staff_password_hash=PASSWORD_HASH)
    store = app.services.store
    for i in range(60):
        sid = f"CA{i:032x}"
        store.begin_call(
            sid,
            business="Bay Plumbing & Air",
            business_number="+14155559999",
            caller_phone=f"+1415555{i:04d}",
            mode="intake",
        )
        store.finalize(
            CallSummary(
                call_sid=sid,
                business="Bay Plumbing & Air",
                caller_phone=f"+1415555{i:04d}",
                first_name="Pat" if i % 3 else "Robin",
                last_name=f"Caller{i}",
                need="burst pipe" if i % 10 == 0 else "quote",
                urgency=5 if i % 10 == 0 else 2,
                is_emergency=i % 10 == 0,
                callback_requested=i % 2 == 0,
                callback_due=dt.date(2026, 12, 2) if i % 2 == 0 else None,
            ),
            crm="local",
        )
    staff = ("staff", PASSWORD)
    async with httpx.AsyncClient(base_url=app.url, auth=staff) as client:

        async def listing(**params: str) -> dict[str, object]:
            response = await client.get("/calls", params={**params, "format": "json"})
            assert response.status_code == 200
            data: dict[str, object] = response.json()
            return data

        first = await listing()
        assert (first["total"], first["pages"], len(first["calls"])) == (60, 3, 25)  # type: ignore[arg-type]
        last = await listing(page="3")
        assert len(last["calls"]) == 10  # type: ignore[arg-type]
        beyond = await listing(page="99")
        assert beyond["page"] == 3
        emergencies = await listing(urgency="5")
        assert emergencies["total"] == 6
        assert all(c["is_emergency"] for c in emergencies["calls"])  # type: ignore[union-attr]
        both = await listing(urgency="5", callback="1")
        assert both["total"] == 6  # every 10th call is also an even one
        robins = await listing(q="robin")
        assert robins["total"] == 20
        by_phone = await listing(q="(415) 555-0042")
        assert [c["caller_name"] for c in by_phone["calls"]] == ["Robin Caller42"]  # type: ignore[union-attr]
        pending = await listing(delivery="pending")
        assert pending["total"] == 60
        facets = first["facets"]
        assert ["5", "5 Emergency", 6] in facets["urgency"]  # type: ignore[index]
        wildcard = await listing(q="%")
        assert wildcard["total"] == 0  # LIKE wildcards in a search are literal
        html = await client.get("/calls", params={"urgency": "5"})
        assert html.text.count('class="call emergency"') == 6
        assert 'rel="next"' not in html.text


async def test_bulk_retry_of_dead_letters_needs_the_form_token(start_app: StartApp) -> None:
    """Two dead letters: a POST without the page's token changes nothing; with it, both go
    back to the queue and are delivered; each call's history says it was re-queued."""
    from sqlalchemy import update

    from agent.summary import CallSummary
    from crm.store import OutboxJob

    app = await start_app(staff_password_hash=PASSWORD_HASH)
    store = app.services.store
    sids = [f"CA{i:032x}" for i in (1, 2)]
    for sid in sids:
        store.begin_call(
            sid,
            business="Bay Plumbing & Air",
            business_number="+14155559999",
            caller_phone="+14155550100",
            mode="intake",
        )
        store.finalize(
            CallSummary(call_sid=sid, business="Bay Plumbing & Air", last_name="Doe"),
            crm="local",
        )
    await wait_for(lambda: all(store.outbox_job(s).state == "delivered" for s in sids))  # type: ignore[union-attr]
    with store.sessions.begin() as session:
        session.execute(update(OutboxJob).values(state="dead", last_error="rejected"))
    staff = ("staff", PASSWORD)
    async with httpx.AsyncClient(base_url=app.url, auth=staff) as client:
        listing = await client.get("/calls")
        assert "2 deliveries failed for good" in listing.text
        forged = await client.post("/calls/retry-dead")
        assert forged.status_code == 403
        assert all(store.outbox_job(s).state == "dead" for s in sids)  # type: ignore[union-attr]
        retried = await client.post("/calls/retry-dead", data={"csrf": csrf_of(listing.text)})
        assert retried.status_code == 303 and retried.headers["location"] == "/calls?retried=2"
    await wait_for(lambda: all(store.outbox_job(s).state == "delivered" for s in sids))  # type: ignore[union-attr]
    for sid in sids:
        outcomes = [a.outcome for a in store.delivery_history(sid)]
        assert outcomes[-2:] == ["requeued", "delivered"]


async def test_the_call_page_shows_what_became_of_the_on_call_alert(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """Three burst-pipe calls through the scripted intake, with an emergency budget of two
    alerts an hour: the first is texted; Twilio refuses every text of the second (it stays
    owed, retried); the third is held by the budget. Staff see each, in HTML and JSON."""
    app = await start_app(
        staff_password_hash=PASSWORD_HASH,
        emergency_alerts_per_business_per_hour=2,
        **twilio_settings(twilio_standin),
    )
    staff = ("staff", PASSWORD)

    async def emergency_call() -> tuple[str, dict[str, object]]:
        result = await place_call(twilio_standin, app, CallerScript(speech=BURST_PIPE_SPEECH))
        async with httpx.AsyncClient(base_url=app.url) as client:
            page = await client.get(f"/calls/{result.call_sid}", auth=staff)
            data = await client.get(
                f"/calls/{result.call_sid}", params={"format": "json"}, auth=staff
            )
        assert "On-call alert" in page.text
        alert = data.json()["on_call_alert"]
        assert alert["state"] in page.text
        return page.text, alert

    _, sent = await emergency_call()
    assert sent["state"] == "sent" and "Texted to the on-call phone" in sent["detail"]

    twilio_standin.fail_next_messages(1_000)
    _, refused = await emergency_call()
    assert refused["state"] == "retrying"
    # The sweep retries it every 10 s meanwhile (failing again): any attempt number.
    assert re.match(r"Attempt \d+ failed \(HTTP 500", str(refused["detail"]))

    html, held = await emergency_call()
    assert held["state"] == "held" and "emergency alert budget" in held["detail"]
    assert 'class="badge alert-held"' in html


def test_the_alert_status_names_every_outcome() -> None:
    now = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)
    call = CallRecord(call_sid="CA1", business="Acme", alert_attempts=0, alert_error="")
    assert alert_status(call, None, max_attempts=10) is None  # no emergency
    call.emergency_at = now
    assert alert_status(call, None, max_attempts=10) == AlertStatus(
        "sending", "Recorded; being sent."
    )
    call.alert_error = NO_ON_CALL_PHONE
    assert alert_status(call, None, 10) == AlertStatus("not sent", "Not sent: no on-call phone.")
    call.alert_attempts, call.alert_error = 10, "HTTP 500 code 20500: Internal Server Error"
    gave_up = alert_status(call, None, 10)
    assert (
        gave_up is not None
        and gave_up.state == "gave up"
        and "after 10 attempts" in (gave_up.detail)
    )
    call.alert_sent_at, call.alert_attempts, call.transferred_at = now, 2, now
    sent = alert_status(call, "America/New_York", 10)
    assert sent == AlertStatus(
        "sent",
        "Texted to the on-call phone Tue Dec 1, 04:30 EST (attempt 2).",
        "Tue Dec 1, 04:30 EST",
    )
