"""Owner alerts and delivery metrics, end to end: a call through the Twilio stand-in, the
owner's after-call summary by e-mail (a real SMTP conversation with a local ``aiosmtpd``
server) and by SMS (the Twilio stand-in's Messages API), an alert when the CRM delivery
is dead-lettered, and the backlog / dead-letter / hangup→CRM figures in ``/metrics`` and
``/healthz``.

What a user would notice if these failed: the owner never hears about last night's calls,
or a lead sits in the dead-letter queue for a week with nobody told.
"""

from __future__ import annotations

import datetime as dt
import email
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    BUSINESSES_TOML,
    CALLER,
    ON_CALL_PHONE,
    PUBLIC_BASE_URL,
    StartApp,
    wait_for,
)
from tests.ports import free_port
from tests.standins.salesforce import SalesforceStandin
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript
from tests.test_conversation_e2e import place_call, twilio_settings
from tests.test_escalation import BURST_PIPE_SPEECH

BUSINESS = "+14155559999"
OWNER_PHONE = "+14155550177"
OWNER_EMAIL = "owner@bayplumbing.example"
BUSINESSES = f"""
[[business]]
number = "{BUSINESS}"
name = "Bay Plumbing & Air"
timezone = "America/Los_Angeles"
owner_phone = "{OWNER_PHONE}"
owner_email = "{OWNER_EMAIL}"
"""
SPEECH = [
    "Maria Lopez",
    "my basement is flooding, see www.evil.example/x for photos",
    "yes",
    "tonight",
]


class Inbox:
    """aiosmtpd handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def metric(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


async def call(app_url: str, twilio: TwilioStandin) -> str:
    result = await twilio.place_call(
        app_url=app_url,
        public_base_url=PUBLIC_BASE_URL,
        from_="+14155550100",
        to=BUSINESS,
        script=CallerScript(speech=SPEECH),
        speed=8,
    )
    return result.call_sid


async def test_the_owner_gets_the_summary_by_email_and_sms(
    start_app: StartApp, twilio_standin: TwilioStandin, smtp: tuple[Inbox, int], tmp_path: Path
) -> None:
    inbox, port = smtp
    businesses = tmp_path / "owner.toml"
    businesses.write_text(BUSINESSES)
    app = await start_app(
        businesses_file=businesses,
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_from="receptionist@bayplumbing.example",
    )
    before = metric(
        (await httpx.AsyncClient().get(f"{app.url}/metrics")).text,
        "receptionist_hangup_to_crm_seconds_count",
    )
    call_sid = await call(app.url, twilio_standin)
    await wait_for(lambda: len(inbox.messages) == 1)
    (recipients, message) = inbox.messages[0]
    assert recipients == [OWNER_EMAIL]
    assert message["Subject"] == (
        "[Bay Plumbing & Air] EMERGENCY New call: Maria Lopez - urgency 5"
    )
    body = message.get_payload(decode=True).decode()
    assert "Maria Lopez called Bay Plumbing & Air." in body
    assert f"{PUBLIC_BASE_URL}/calls/{call_sid}" in body
    assert "evil.example" not in body
    await wait_for(lambda: any(m["To"] == OWNER_PHONE for m in twilio_standin.messages))
    (sms,) = [m for m in twilio_standin.messages if m["To"] == OWNER_PHONE]
    assert sms["From"] == BUSINESS
    assert sms["Body"].startswith("EMERGENCY Bay Plumbing & Air: new call from Maria Lopez")
    assert "evil.example" not in sms["Body"] and len(sms["Body"]) <= 320
    async with httpx.AsyncClient(base_url=app.url) as client:
        text = (await client.get("/metrics")).text
        health = (await client.get("/healthz")).json()
    assert metric(text, "receptionist_hangup_to_crm_seconds_count") == before + 1
    assert metric(text, "receptionist_delivery_backlog") == 0
    assert health["outbox"] == {"backlog": 0, "dead": 0, "oldest_waiting_seconds": 0}


async def test_a_dead_letter_alerts_the_owner_and_shows_in_metrics(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    smtp: tuple[Inbox, int],
    salesforce_ca_env: SalesforceStandin,
    tmp_path: Path,
) -> None:
    inbox, port = smtp
    org = salesforce_ca_env
    org.inject_fault("503")
    businesses = tmp_path / "owner.toml"
    businesses.write_text(BUSINESSES.replace(f'owner_phone = "{OWNER_PHONE}"\n', ""))
    app = await start_app(
        businesses_file=businesses,
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        salesforce_login_url=org.login_url,
        salesforce_client_id=org.client_id,
        salesforce_client_secret=org.client_secret,
        delivery_max_attempts=1,
    )
    call_sid = await call(app.url, twilio_standin)
    # First attempt fails for good: the summary and the dead-letter alert, in that order.
    await wait_for(lambda: len(inbox.messages) == 2)
    subjects = [m["Subject"] for _, m in inbox.messages]
    assert subjects[1] == "[Bay Plumbing & Air] A call was not saved to the CRM"
    alert = inbox.messages[1][1].get_payload(decode=True).decode()
    assert call_sid in alert and "press Retry" in alert
    async with httpx.AsyncClient(base_url=app.url) as client:
        text = (await client.get("/metrics")).text
        health = (await client.get("/healthz")).json()
    assert metric(text, "receptionist_dead_letters") == 1
    assert health["outbox"]["dead"] == 1
    # No SMS to anyone but the caller flows (no owner_phone here).
    assert not [m for m in twilio_standin.messages if m["To"] == OWNER_PHONE]


@pytest.mark.parametrize(
    "need",
    [
        "burst pipe, verify at https://evil-bank.example/login now",
        "burst pipe, see www.evil-bank.example",
        "burst pipe evil-bank.com/login",
    ],
)
def test_links_a_caller_said_never_reach_the_owner(need: str) -> None:
    from telephony.owner_alerts import _clean

    cleaned = _clean(need, 160)
    assert "evil-bank" not in cleaned and "[link removed]" in cleaned
    assert cleaned.startswith("burst pipe")


def test_check_talks_to_the_smtp_server(
    smtp: tuple[Inbox, int], tmp_path: Path, businesses_file: Path
) -> None:
    """``check`` with SMTP settings: the server answers → ok; nothing listening, or a
    server without STARTTLS while STARTTLS is asked → one [FAIL] line naming the setting."""
    from tests.test_check import section
    from tests.test_cli import run

    _, port = smtp
    base = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_FROM": "r@example.com"}
    result = run(["check"], env={**base, "SMTP_SECURITY": "none"}, cwd=tmp_path)
    assert section(result.stdout, "E-mail (SMTP):") == [
        f"[ok]   SMTP server 127.0.0.1:{port} answered (none)"
    ]
    no_tls = run(["check"], env=base, cwd=tmp_path)
    (line,) = section(no_tls.stdout, "E-mail (SMTP):")
    assert line.startswith("[FAIL]") and "SMTP_SECURITY" in line
    closed = run(["check"], env={**base, "SMTP_PORT": str(free_port())}, cwd=tmp_path)
    (line,) = section(closed.stdout, "E-mail (SMTP):")
    assert line.startswith("[FAIL] cannot use the SMTP server") and closed.returncode == 1


# --- emergency alerts the owner must hear about ------------------------------------------


def on_call_texts(twilio: TwilioStandin) -> list[dict[str, Any]]:
    return [m for m in twilio.messages if m["To"] == ON_CALL_PHONE]


def owner_texts(twilio: TwilioStandin) -> list[dict[str, Any]]:
    return [m for m in twilio.messages if m["To"] == OWNER_PHONE]


def no_caller_words(text: str) -> None:
    """What the burst-pipe caller said (name, need, address, number) is not in ``text``."""
    for word in ("Maria", "Lopez", "pipe", "basement", "Oak", CALLER, CALLER[2:]):
        assert word not in text, (word, text)


def emergency_owner_businesses(tmp_path: Path) -> Path:
    """The test business with its on-call phone, an owner by SMS and e-mail, and no
    after-call summaries (so every owner message here is an alert notice)."""
    path = tmp_path / "emergency-owner.toml"
    path.write_text(
        BUSINESSES_TOML
        + f'owner_phone = "{OWNER_PHONE}"\nowner_email = "{OWNER_EMAIL}"\n'
        + "owner_summaries = false\n"
    )
    return path


def smtp_settings(port: int) -> dict[str, Any]:
    return {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none"}


async def test_past_the_emergency_budget_alerts_are_held_the_owner_told_once_sent_later(
    start_app: StartApp, twilio_standin: TwilioStandin, smtp: tuple[Inbox, int], tmp_path: Path
) -> None:
    """A storm night with ``EMERGENCY_ALERTS_PER_BUSINESS_PER_HOUR=2``: three burst-pipe
    calls through the scripted intake. The first two reach the on-call phone at once; the
    third is held (still owed, its error naming the budget; the caller is not told the
    on-call team was alerted) and the owner is told — by e-mail and SMS, with the call id,
    none of the caller's words — once, however often the sweep retries within the window.
    When the clock moves past the hour, the held alert goes out, once."""
    inbox, port = smtp
    offset = [dt.timedelta(0)]
    app = await start_app(
        clock=lambda: dt.datetime.now(dt.UTC) + offset[0],
        businesses_file=emergency_owner_businesses(tmp_path),
        emergency_alerts_per_business_per_hour=2,
        **smtp_settings(port),
        **twilio_settings(twilio_standin),
    )
    escalation = app.services.escalation
    escalation.retry_after = dt.timedelta(0)  # the sweep may retry a held alert at once
    results = [
        await place_call(twilio_standin, app, CallerScript(speech=list(BURST_PIPE_SPEECH)))
        for _ in range(3)
    ]
    held_sid = results[2].call_sid
    assert len(on_call_texts(twilio_standin)) == 2
    told = "sent your details to our on-call technician"
    assert [any(told in s for s in r.said) for r in results] == [True, True, False]
    held = app.services.store.get_call(held_sid)
    assert held is not None and held.alert_sent_at is None
    assert "emergency alert budget" in held.alert_error and held.alert_attempts == 0

    await wait_for(lambda: inbox.messages and owner_texts(twilio_standin))
    ((recipients, message),) = inbox.messages
    assert recipients == [OWNER_EMAIL]
    assert message["Subject"] == "[Bay Plumbing & Air] Emergency alerts held: 2 in an hour reached"
    body = message.get_payload(decode=True).decode()
    assert held_sid in body and f"{PUBLIC_BASE_URL}/calls/{held_sid}" in body
    (sms,) = owner_texts(twilio_standin)
    assert sms["From"] == BUSINESS and held_sid in sms["Body"] and len(sms["Body"]) <= 320
    no_caller_words(body)
    no_caller_words(sms["Body"])

    # The sweep tries again within the hour: still held, and the owner is not told again.
    assert await escalation.send_owed() == 0
    await escalation.settle()
    assert len(inbox.messages) == 1 and len(owner_texts(twilio_standin)) == 1

    offset[0] = dt.timedelta(minutes=61)  # the first alerts have left the window
    await escalation.send_owed()  # (or the service's own sweep, whichever is first)
    await wait_for(lambda: len(on_call_texts(twilio_standin)) == 3)
    held = app.services.store.get_call(held_sid)
    assert held is not None and held.alert_sent_at is not None
    assert await escalation.send_owed() == 0
    await escalation.settle()
    assert len(on_call_texts(twilio_standin)) == 3 and len(inbox.messages) == 1


async def test_an_alert_twilio_keeps_refusing_gives_up_and_tells_the_owner_once(
    start_app: StartApp, twilio_standin: TwilioStandin, smtp: tuple[Inbox, int], tmp_path: Path
) -> None:
    """Twilio answers every on-call text with a 500 until the escalation gives up (here
    after 2 attempts): it stops retrying and the owner is told, by e-mail and SMS, once,
    with the call id and Twilio's status and code — never the caller's words. The caller
    was not told the on-call team was alerted."""
    inbox, port = smtp
    app = await start_app(
        businesses_file=emergency_owner_businesses(tmp_path),
        **smtp_settings(port),
        **twilio_settings(twilio_standin),
    )
    escalation = app.services.escalation
    escalation.max_attempts = 2
    escalation.retry_after = dt.timedelta(0)
    twilio_standin.fail_next_messages(2)  # only the alert texts: no other SMS comes first

    result = await place_call(twilio_standin, app, CallerScript(speech=list(BURST_PIPE_SPEECH)))

    await wait_for(lambda: inbox.messages and owner_texts(twilio_standin))
    call_sid = result.call_sid
    call = app.services.store.get_call(call_sid)
    assert call is not None and call.alert_sent_at is None and call.alert_attempts == 2
    assert on_call_texts(twilio_standin) == []
    assert not any("on-call technician" in s for s in result.said)
    ((recipients, message),) = inbox.messages
    assert recipients == [OWNER_EMAIL]
    subject = " ".join(str(message["Subject"]).split())  # unfolded, as a mail client shows it
    assert subject == f"[Bay Plumbing & Air] EMERGENCY alert not delivered: call {call_sid}"
    body = message.get_payload(decode=True).decode()
    assert "Twilio answered HTTP 500, error 20500" in body and "2 tries" in body
    assert f"{PUBLIC_BASE_URL}/calls/{call_sid}" in body
    (sms,) = owner_texts(twilio_standin)
    assert call_sid in sms["Body"] and sms["From"] == BUSINESS
    no_caller_words(body)
    no_caller_words(sms["Body"])

    # Given up: no further attempt by the sweep or a path, and no second notice.
    assert await escalation.send_owed() == 0
    assert not await escalation.send(call_sid)
    await escalation.settle()
    assert len(inbox.messages) == 1 and len(owner_texts(twilio_standin)) == 1
    assert on_call_texts(twilio_standin) == []
