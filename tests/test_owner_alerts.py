"""Owner alerts and delivery metrics, end to end: a call through the Twilio stand-in, the
owner's after-call summary by e-mail (a real SMTP conversation with a local ``aiosmtpd``
server) and by SMS (the Twilio stand-in's Messages API), an alert when the CRM delivery
is dead-lettered, and the backlog / dead-letter / hangup→CRM figures in ``/metrics`` and
``/healthz``.

What a user would notice if these failed: the owner never hears about last night's calls,
or a lead sits in the dead-letter queue for a week with nobody told.
"""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PUBLIC_BASE_URL, StartApp, free_port, wait_for
from tests.standins.salesforce import SalesforceStandin
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript

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
