"""Log hygiene: a whole call's logs carry call ids, never secrets or what the caller said.

A full Realtime call (greeting, the caller's details recorded by tools, an emergency that
texts the on-call phone, a callback request) runs through the three stand-ins with every
logger at DEBUG, configured the way ``receptionist -v serve`` configures logging. Then no
log record — message, arguments or traceback — may contain a transcript sentence, the
caller's name, email or address, the Twilio auth token, the OpenAI API key, the Salesforce
client secret or an access token Salesforce issued.

What a user would notice if this failed: personal data and credentials copied into log
storage that is retained, shipped to third parties and read by people who should not see
either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from telephony.logs import NOISY, configure_logging
from tests.conftest import BUSINESS_NUMBER, CALLER, PUBLIC_BASE_URL, StartApp, wait_for
from tests.standins.openai_realtime import RealtimeStandin, ScriptedTurn, ToolCall
from tests.standins.salesforce import SalesforceStandin
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript, HangUp, ListenUntilAgentDone, Say

TWILIO_TOKEN = "tw-token-7f3a9c1e5b2d4f60"
OPENAI_KEY = "sk-hygiene-0c9d8e7f6a5b4c3d"
SALESFORCE_SECRET = "sf-secret-a1b2c3d4e5f60718"

CALLER_SAYS = [
    "Hi, this is Priya Natarajan, water is pouring through my kitchen ceiling.",
    "Please call me back on this number as soon as you can.",
]
AGENT_SAYS = [
    "I'm sorry Priya, that sounds like an emergency. I'm alerting our on-call technician now.",
    "Of course. The on-call technician will call you back shortly. Goodbye.",
]
DETAILS = {
    "first_name": "Priya",
    "last_name": "Natarajan",
    "email": "priya.natarajan@example.org",
    "service_address": "742 Evergreen Terrace, Springfield",
    "need": "Water pouring through kitchen ceiling",
    "details": "Water pouring through the kitchen ceiling from the bathroom above.",
    "urgency": 5,
    "is_emergency": True,
}
TURNS = [
    ScriptedTurn(
        CALLER_SAYS[0],
        reply=AGENT_SAYS[0],
        reply_ms=1500,
        tool_calls=[
            ToolCall("record_caller_details", DETAILS),
            ToolCall("flag_emergency", {"reason": "Water pouring through the ceiling"}),
        ],
    ),
    ScriptedTurn(
        CALLER_SAYS[1],
        reply=AGENT_SAYS[1],
        reply_ms=1200,
        tool_calls=[ToolCall("request_callback", {"callback_window": "as soon as you can"})],
    ),
]
PRIVATE = [
    *CALLER_SAYS,
    *AGENT_SAYS,
    "Natarajan",
    DETAILS["email"],
    "Evergreen Terrace",
    "kitchen ceiling",
]
SECRETS = [TWILIO_TOKEN, OPENAI_KEY, SALESFORCE_SECRET]
# The service's own dependencies that `receptionist` quiets (telephony.cli) print request
# bodies at DEBUG; what the service itself logs at DEBUG is what this test reads.
QUIETED_BY_THE_CLI = NOISY


@pytest.fixture
def production_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything at DEBUG, except what ``receptionist -v`` sets to WARNING."""
    previous = {name: logging.getLogger(name).level for name in QUIETED_BY_THE_CLI}
    caplog.set_level(logging.DEBUG)
    for name in QUIETED_BY_THE_CLI:
        logging.getLogger(name).setLevel(logging.WARNING)
    yield caplog
    for name, level in previous.items():
        logging.getLogger(name).setLevel(level)


def everything_logged(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    """(logger, text) of every record from the service and its libraries, with its
    arguments and any traceback (the stand-ins' own loggers are not the service's)."""
    out = []
    for record in records:
        if record.name.startswith("tests."):
            continue
        parts = [record.getMessage(), repr(record.args)]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        if record.exc_text:
            parts.append(record.exc_text)
        out.append((record.name, "\n".join(parts)))
    return out


def leaks(logged: list[tuple[str, str]], needles: list[str]) -> list[tuple[str, str, str]]:
    return [
        (name, needle, text[:200]) for name, text in logged for needle in needles if needle in text
    ]


async def test_a_full_call_logs_no_transcript_and_no_secret(
    start_app: StartApp,
    make_realtime_standin: Callable[..., Any],
    production_logging: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The issue's must-show for logs: a whole call, delivered to Salesforce, at DEBUG."""
    ai: RealtimeStandin = await make_realtime_standin(
        turns=TURNS, api_key=OPENAI_KEY, extraction=None
    )
    with SalesforceStandin(client_secret=SALESFORCE_SECRET) as org:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", org.ca_bundle)
        monkeypatch.setenv("SSL_CERT_FILE", org.ca_bundle)
        async with TwilioStandin(auth_token=TWILIO_TOKEN) as twilio:
            twilio.agent_busy = ai.responding  # the caller waits for whole answers
            app = await start_app(
                twilio_account_sid=twilio.account_sid,
                twilio_auth_token=TWILIO_TOKEN,
                twilio_api_base_url=twilio.api_base_url,
                openai_api_key=OPENAI_KEY,
                openai_base_url=ai.base_url,
                salesforce_login_url=org.login_url,
                salesforce_client_id=org.client_id,
                salesforce_client_secret=SALESFORCE_SECRET,
            )
            script = CallerScript(
                steps=[
                    ListenUntilAgentDone(),
                    Say(ms=1500),
                    ListenUntilAgentDone(),
                    Say(ms=1200),
                    ListenUntilAgentDone(),
                    HangUp(),
                ]
            )
            result = await twilio.place_call(
                app_url=app.url,
                public_base_url=PUBLIC_BASE_URL,
                from_=CALLER,
                to=BUSINESS_NUMBER,
                script=script,
                speed=3,
            )
            store = app.services.store
            await wait_for(
                lambda: (
                    (job := store.outbox_job(result.call_sid)) is not None
                    and job.state == "delivered"
                )
            )
            # The on-call SMS and the delivery are independent: wait for it, not for an order.
            await wait_for(lambda: twilio.messages)  # the emergency was texted to on-call
        issued_tokens = [str(t) for t in getattr(org, "_tokens", set())]
        (lead,) = org.records("Lead")

    # The call really carried the private data through the service ...
    summary = store.get_summary(result.call_sid)
    assert summary is not None and summary.last_name == "Natarajan"
    assert any(CALLER_SAYS[0] in t.text for t in summary.transcript)
    assert lead["LastName"] == "Natarajan"
    assert issued_tokens, "the service logged in to Salesforce"
    # ... and the logs say what happened to which call, by id only.
    logged = everything_logged(production_logging.records)
    assert any(result.call_sid in text for _name, text in logged)
    assert leaks(logged, PRIVATE) == []
    assert leaks(logged, [*SECRETS, *issued_tokens]) == []


def test_a_value_the_org_rejects_is_not_copied_into_the_log(
    salesforce_ca_env: SalesforceStandin, caplog: pytest.LogCaptureFixture
) -> None:
    """An email the caller spelled out in words ("at", "dot") is rejected by the org's
    email validation; the call is still delivered without it, and the log says which field
    was dropped, not what the caller said."""
    import datetime as dt

    from agent.summary import CallSummary
    from crm.config import CrmProfile, SalesforceConfig
    from crm.delivery import DeliveryWorker
    from crm.salesforce import SalesforceCrm
    from crm.store import Store, make_engine

    caplog.set_level(logging.DEBUG)
    org = salesforce_ca_env
    store = Store(make_engine("sqlite://"))
    store.create_schema()
    spoken_email = "priya dot natarajan at example dot org"
    summary = CallSummary(
        call_sid="CA" + "7" * 32,
        business="Bay Plumbing & Air",
        caller_phone=CALLER,
        first_name="Priya",
        last_name="Natarajan",
        email=spoken_email,
        need="Water heater quote",
        callback_due=dt.date.today(),
    )
    store.begin_call(
        summary.call_sid,
        business=summary.business,
        business_number=BUSINESS_NUMBER,
        caller_phone=CALLER,
        mode="realtime",
    )
    assert store.finalize(summary, crm="salesforce")
    crm = SalesforceCrm(
        SalesforceConfig(
            login_url=org.login_url, client_id=org.client_id, client_secret=org.client_secret
        )
    )
    worker = DeliveryWorker(store, crm, lambda name: CrmProfile(business=name))
    (outcome,) = worker.drain()
    assert outcome.state == "delivered"
    (lead,) = org.records("Lead")
    assert lead["Email"] is None and lead["LastName"] == "Natarajan"
    logged = everything_logged(caplog.records)
    assert any("Email" in text for _name, text in logged), "the dropped field is named"
    assert leaks(logged, [spoken_email]) == []


async def test_the_sdks_http_client_logs_nothing_at_info_after_the_cli_sets_logging_up(
    make_realtime_standin: Callable[..., Any],
) -> None:
    """The openai SDK's HTTP client logs every request at INFO ("HTTP Request: POST ..."):
    noise, and a write on the event loop per request. ``configure_logging`` quiets it."""
    ai: RealtimeStandin = await make_realtime_standin(turns=[], extraction=None)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    saved_levels = {name: logging.getLogger(name).level for name in NOISY}
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    try:
        configure_logging(verbose=False, log_format="text")
        root.addHandler(Keep())
        client = AsyncOpenAI(api_key=ai.api_key, base_url=ai.base_url)
        speech = await client.audio.speech.create(
            model="gpt-4o-mini-tts", voice="alloy", input="Hello there", response_format="pcm"
        )
        assert len(speech.content) > 0  # the request really went through the SDK's client
        await client.close()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
    chatty = [(r.name, r.getMessage()[:80]) for r in records if r.levelno < logging.WARNING]
    assert chatty == []
