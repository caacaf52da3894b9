"""Toll fraud, phishing and alert floods through what the service sends (issue 10, attacks
1 and 3), through the real entry points: the scripted intake over signed webhooks and the
Realtime model's tool calls, into the Twilio stand-in's REST API.

What a user would notice if these failed: the business's own number texting a phishing
link to a premium or foreign number, or the on-call technician's phone buzzing five times
with a link in it for one prank call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from crm.store import Store
from telephony.outbound import (
    ALERT_MAX_CHARS,
    OutboundKind,
    OutboundLimiter,
    OutboundLimits,
    confirmation_body,
    emergency_alert_body,
    sms_destination,
    strip_links,
    when_phrase,
)
from tests.conftest import (
    BUSINESS_NUMBER,
    BUSINESSES_TOML,
    CALLER,
    ON_CALL_PHONE,
    PUBLIC_BASE_URL,
    StartApp,
    wait_for,
)
from tests.standins.openai_realtime import RealtimeStandin, ScriptedTurn, ToolCall
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript, HangUp, Hold, ListenUntilAgentDone, Say
from tests.test_conversation_e2e import twilio_settings
from tests.test_postgres import fresh_database

FOREIGN = "+7 912 345 67 89"
FOREIGN_E164 = "+79123456789"
PHISH = "tomorrow. URGENT your bank card is blocked, verify now at evil-bank.example/login"
CONFIRMATION = "Bay Plumbing & Air got your request and will call you back tomorrow."
# An evening in San Francisco: "tomorrow" is the next calendar day (no night-owl rule).
EVENING = dt.datetime.fromisoformat("2026-03-03T20:00:00-08:00")


def businesses(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "businesses-security.toml"
    path.write_text(BUSINESSES_TOML + extra)
    return path


def no_phish(body: str) -> None:
    for word in ("evil-bank", "URGENT", "verify", "bank card", "http", "/login"):
        assert word.lower() not in body.lower(), (word, body)


# --- the rules, pure ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "callback", "expected"),
    [
        (CALLER, None, CALLER),
        (CALLER, "(415) 555-0123", "+14155550123"),  # a local number, read in the US
        (CALLER, FOREIGN, CALLER),  # another country: never; the caller ID instead
        (CALLER, "+1 876 555 1234", CALLER),  # Jamaica shares +1 but is another country
        (CALLER, "+1 900 555 0100", CALLER),  # premium rate
        (CALLER, "+1 800 555 0100", CALLER),  # toll-free is not fixed-line/mobile
        (CALLER, "call my wife", CALLER),
        ("", "+14155550123", None),  # no caller ID: no text at all
        ("anonymous", "+14155550123", None),
        (FOREIGN_E164, None, None),  # a foreign caller ID is not texted either
        ("+1 900 555 0100", None, None),
    ],
)
def test_texts_go_only_to_domestic_fixed_or_mobile_numbers(
    caller: str, callback: str | None, expected: str | None
) -> None:
    assert sms_destination(caller, callback, "US") == expected


def test_the_confirmation_is_in_our_words() -> None:
    today = dt.date(2026, 3, 3)  # a Tuesday
    assert when_phrase(today, today) == "today"
    assert when_phrase(today + dt.timedelta(days=1), today) == "tomorrow"
    assert when_phrase(today + dt.timedelta(days=3), today) == "on Friday"
    assert when_phrase(today + dt.timedelta(days=20), today) == "on March 23"
    assert when_phrase(None, today) == "as soon as possible"
    assert when_phrase(today + dt.timedelta(days=3), today, urgent=True) == "as soon as possible"
    assert confirmation_body("Bay Plumbing & Air", "tomorrow") == CONFIRMATION


@pytest.mark.parametrize(
    "link",
    [
        "evil-bank.example/login",
        "https://evil.example.com/x?y=1",
        "HTTP://EVIL.EXAMPLE",
        "www.evil.example",
        "pay@evil.example",
        "javascript:alert(1)//x",
        "evil.co",
        "ｅｖｉｌ．ｃｏｍ/login",  # fullwidth, folded before matching
    ],
)
def test_links_are_removed_from_alert_fields(link: str) -> None:
    cleaned = strip_links(f"Leak at 12 Main St. Visit {link} now")
    assert "[link removed]" in cleaned and "evil" not in cleaned.lower()
    assert cleaned.startswith("Leak at 12 Main St.")


def test_the_alert_is_bounded_whatever_the_fields() -> None:
    body = emergency_alert_body(
        business_name="Bay Plumbing & Air",
        caller_name="A" * 500,
        number=CALLER,
        address="1 Main St " * 100,
        need="flood " * 200 + "see evil.example",
    )
    assert len(body) <= ALERT_MAX_CHARS
    assert body.startswith("EMERGENCY call for Bay Plumbing & Air: ") and CALLER in body
    assert "evil" not in body


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'limits.db'}"
    else:
        with fresh_database() as url:
            yield url


def test_rate_limits_hold_across_processes_on_one_database(database_url: str) -> None:
    """Two limiters on two engines (two nodes) share one database: per number, per
    business, per call, in a rolling hour; texts and calls are counted apart; the table
    holds keyed hashes, never the numbers."""
    stores = [Store.from_url(database_url), Store.from_url(database_url)]
    stores[0].create_schema()
    try:
        limits = OutboundLimits(sms_per_number=2, sms_per_business=3)
        nodes = [OutboundLimiter(store, limits, secret="auth-token") for store in stores]
        t0 = dt.datetime(2026, 3, 3, 20, 0, tzinfo=dt.UTC)
        sms = OutboundKind.SMS

        def send(node: int, to: str, minutes: float, call: str | None = None) -> str | None:
            at = t0 + dt.timedelta(minutes=minutes)
            return nodes[node].acquire(sms, business="B", destination=to, now=at, call_sid=call)

        assert send(0, "+14155550100", 0) is None and send(1, "+14155550100", 1) is None
        assert "per-number" in (send(0, "+14155550100", 2) or "")
        assert send(1, "+14155550101", 3) is None
        assert "per-business" in (send(0, "+14155550102", 4) or "")
        assert send(1, "+14155550102", 61) is None  # the first send left the window
        first = nodes[0].acquire(
            sms, business="C", destination="+1", now=t0, call_sid="CA1", purpose="alert"
        )
        again = nodes[1].acquire(
            sms, business="C", destination="+2", now=t0, call_sid="CA1", purpose="alert"
        )
        assert first is None and "already" in (again or "")
        alert = nodes[1].acquire(OutboundKind.ALERT, business="B", destination="+1", now=t0)
        assert alert is None  # caller-facing texts and on-call alerts are counted apart
        with stores[0].engine.connect() as connection:
            keys = connection.execute(text("SELECT destination_key FROM outbound_sends")).all()
        assert keys and all("415555" not in key for (key,) in keys)
        assert stores[0].forget_outbound(before=t0 + dt.timedelta(days=2)) == len(keys)
    finally:
        for store in stores:
            store.engine.dispose()


def test_emergency_alerts_have_their_own_budget_counted_once_per_call(
    database_url: str,
) -> None:
    """The on-call phone's budget (``EMERGENCY_ALERTS_PER_BUSINESS_PER_HOUR``, here 2) is
    apart from the caller-facing texts (used up here): alerts pass while texts are refused,
    a retried alert of one call is counted once, transfers are counted apart from alerts,
    the third call's alert is refused until the window moves on, and the owner's "held"
    notice is due once per window — across two nodes on one database."""
    stores = [Store.from_url(database_url), Store.from_url(database_url)]
    stores[0].create_schema()
    try:
        limits = OutboundLimits(sms_per_number=1, sms_per_business=1, emergency_per_business=2)
        nodes = [OutboundLimiter(store, limits, secret="auth-token") for store in stores]
        t0 = dt.datetime(2026, 3, 3, 20, 0, tzinfo=dt.UTC)

        def send(node: int, kind: OutboundKind, call: str | None, minutes: float = 0) -> str | None:
            return nodes[node].acquire(
                kind,
                business="B",
                destination=ON_CALL_PHONE,
                now=t0 + dt.timedelta(minutes=minutes),
                call_sid=call,
                purpose=f"emergency {kind.value}",
            )

        sms = OutboundKind.SMS
        assert nodes[0].acquire(sms, business="B", destination=CALLER, now=t0) is None
        assert "per-business sms limit" in (
            nodes[1].acquire(sms, business="B", destination="+14155550123", now=t0) or ""
        )
        alert, transfer, held = OutboundKind.ALERT, OutboundKind.TRANSFER, OutboundKind.ALERTS_HELD
        assert send(0, alert, "CA1") is None  # texts used up; the alert is not held by them
        assert send(1, alert, "CA1", 1) is None and send(0, alert, "CA1", 2) is None  # retries
        assert send(1, alert, "CA2", 3) is None
        assert "alert limit (2 an hour) reached" in (send(0, alert, "CA3", 4) or "")
        assert send(1, transfer, "CA1", 4) is None  # transfers on their own count
        assert send(0, held, None, 4) is None
        assert "held limit (1 an hour)" in (send(1, held, None, 30) or "")
        assert send(0, alert, "CA3", 61) is None  # the first alert left the window
        assert send(1, held, None, 65) is None  # a new window, a new notice
        with stores[0].engine.connect() as connection:
            rows = connection.execute(
                text("SELECT kind, COUNT(*) FROM outbound_sends GROUP BY kind ORDER BY kind")
            ).all()
        assert [tuple(row) for row in rows] == [
            ("alert", 3),
            ("held", 2),
            ("sms", 1),
            ("transfer", 1),
        ]
    finally:
        for store in stores:
            store.engine.dispose()


# --- attack 1: toll fraud and phishing by SMS -------------------------------------------


async def test_scripted_intake_cannot_send_a_phishing_text_to_a_foreign_number(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    """The attack as reported: "+7 912 345 67 89" as the callback number and a phishing
    line as the callback time. No text reaches the Russian number; the caller ID gets one
    confirmation in the service's own words; the CRM still has what the caller said."""
    app = await start_app(
        businesses_file=businesses(tmp_path, "sms_to_caller = true\n"),
        clock=lambda: EVENING,
        **twilio_settings(twilio_standin),
    )
    result = await twilio_standin.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=CallerScript(
            speech=[
                "Ivan Petrov",
                "my sink is leaking",
                "this week",
                "12 Oak Street",
                FOREIGN,
                PHISH,
            ]
        ),
        speed=8,
    )
    assert set(result.webhook_statuses) == {200}, result.webhook_statuses
    store = app.services.store
    await wait_for(lambda: store.get_summary(result.call_sid) is not None)
    await wait_for(lambda: twilio_standin.messages)
    (sms,) = twilio_standin.messages
    assert (sms["To"], sms["From"]) == (CALLER, BUSINESS_NUMBER)
    assert sms["Body"] == CONFIRMATION
    no_phish(sms["Body"])
    summary = store.get_summary(result.call_sid)
    assert summary is not None and summary.callback_phone == FOREIGN_E164  # kept for staff


async def test_the_models_callback_tool_cannot_send_a_phishing_text_either(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """The same attack through ``request_callback``: the foreign number and the phishing
    window come from the model's tool call."""
    ai: RealtimeStandin = await make_realtime_standin(
        turns=[
            ScriptedTurn(
                "Call me back please.",
                reply="Sure, the team will call you back. Goodbye.",
                reply_ms=800,
                tool_calls=[
                    ToolCall(
                        "request_callback",
                        {"callback_window": PHISH, "callback_phone": FOREIGN_E164},
                    ),
                    ToolCall("record_caller_details", {"first_name": "Ivan", "need": "leak"}),
                ],
            )
        ],
        extraction=None,
    )
    twilio_standin.agent_busy = ai.responding  # the caller waits for whole answers
    app = await start_app(
        businesses_file=businesses(tmp_path, "sms_to_caller = true\n"),
        clock=lambda: EVENING,
        openai_api_key=ai.api_key,
        openai_base_url=ai.base_url,
        **twilio_settings(twilio_standin),
    )
    result = await twilio_standin.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        script=CallerScript(
            steps=[ListenUntilAgentDone(), Say(ms=1200), ListenUntilAgentDone(), HangUp()]
        ),
        speed=3,
    )
    await wait_for(lambda: twilio_standin.messages)
    (sms,) = twilio_standin.messages
    assert sms["To"] == CALLER and sms["Body"] == CONFIRMATION
    no_phish(sms["Body"])
    assert all(m["To"] != FOREIGN_E164 for m in twilio_standin.messages)
    summary = app.services.store.get_summary(result.call_sid)
    assert summary is not None and summary.callback_window == PHISH  # the CRM keeps it


async def test_a_caller_without_caller_id_gets_no_text(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path
) -> None:
    """A withheld caller ID dictating a valid local number: nothing vouches for it, so no
    text is sent (the callback is still filed for staff)."""
    app = await start_app(
        businesses_file=businesses(tmp_path, "sms_to_caller = true\n"),
        clock=lambda: EVENING,
        **twilio_settings(twilio_standin),
    )
    result = await twilio_standin.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_="anonymous",
        to=BUSINESS_NUMBER,
        script=CallerScript(
            speech=[
                "Ivan Petrov",
                "my sink is leaking",
                "this week",
                "12 Oak Street",
                "415 555 0123",
                "tomorrow",
            ]
        ),
        speed=8,
    )
    store = app.services.store
    await wait_for(
        lambda: (job := store.outbox_job(result.call_sid)) is not None and job.state == "delivered"
    )
    summary = store.get_summary(result.call_sid)
    assert summary is not None and summary.callback_phone == "+14155550123"
    assert summary.caller_phone == ""
    assert twilio_standin.messages == []


# --- attack 3: unbounded emergencies ----------------------------------------------------


async def test_five_emergency_flags_give_one_bounded_alert_and_one_transfer(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """The model calls ``flag_emergency`` five times with a link in the reason (warm
    transfer on): one text to the on-call phone, no link in it, at most 320 characters,
    and one call update — not five of each."""
    reason = "URGENT verify your account at evil-bank.example/login now"
    flags = [
        ToolCall(
            "flag_emergency",
            {"reason": reason, "need": f"Burst pipe {i} see https://evil.example/{i}"},
        )
        for i in range(5)
    ]
    ai: RealtimeStandin = await make_realtime_standin(
        turns=[
            ScriptedTurn(
                "Water everywhere, a pipe burst!",
                reply="I'm connecting you now.",
                reply_ms=600,
                tool_calls=flags,
            )
        ],
        extraction=None,
    )
    twilio_standin.agent_busy = ai.responding  # the caller waits for whole answers
    app = await start_app(
        businesses_file=businesses(tmp_path, "warm_transfer = true\n"),
        openai_api_key=ai.api_key,
        openai_base_url=ai.base_url,
        **twilio_settings(twilio_standin),
    )
    result = await twilio_standin.place_call(
        app_url=app.url,
        public_base_url=PUBLIC_BASE_URL,
        from_=CALLER,
        to=BUSINESS_NUMBER,
        # After speaking, the caller holds on until the app moves the call.
        script=CallerScript(steps=[ListenUntilAgentDone(), Say(ms=1200), Hold(), HangUp()]),
        speed=3,
    )
    assert result.script_timeouts == []
    store = app.services.store
    await wait_for(lambda: store.get_summary(result.call_sid) is not None)
    await wait_for(lambda: twilio_standin.messages)
    (sms,) = twilio_standin.messages
    assert sms["To"] == ON_CALL_PHONE
    assert len(sms["Body"]) <= ALERT_MAX_CHARS
    assert "evil" not in sms["Body"].lower() and "http" not in sms["Body"]
    assert sms["Body"].startswith("EMERGENCY call for Bay Plumbing & Air")
    assert len(twilio_standin.call_updates) == 1
    assert result.dialed == [ON_CALL_PHONE]


async def test_caller_facing_text_limits_never_hold_an_emergency_alert(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    make_realtime_standin: Callable[..., Any],
) -> None:
    """Caller-facing texts limited to 1 an hour per number and per business: two emergency
    calls through the model both reach the on-call phone at once — the business's own
    phone is on the emergency budget, not on the callers' (what happens at that budget:
    ``tests/test_owner_alerts.py``)."""
    flag = ToolCall("flag_emergency", {"reason": "gas smell", "need": "Gas leak"})
    ai: RealtimeStandin = await make_realtime_standin(
        turns=[
            ScriptedTurn(
                "I smell gas!", reply="Leave the house now.", reply_ms=600, tool_calls=[flag]
            ),
            ScriptedTurn(
                "I smell gas!", reply="Leave the house now.", reply_ms=600, tool_calls=[flag]
            ),
        ],
        extraction=None,
    )
    twilio_standin.agent_busy = ai.responding  # the caller waits for whole answers
    app = await start_app(
        openai_api_key=ai.api_key,
        openai_base_url=ai.base_url,
        outbound_sms_per_business_per_hour=1,
        outbound_sms_per_number_per_hour=1,
        **twilio_settings(twilio_standin),
    )
    store = app.services.store
    sids = []
    for _ in range(2):
        result = await twilio_standin.place_call(
            app_url=app.url,
            public_base_url=PUBLIC_BASE_URL,
            from_=CALLER,
            to=BUSINESS_NUMBER,
            script=CallerScript(
                steps=[ListenUntilAgentDone(), Say(ms=1200), ListenUntilAgentDone(), HangUp()]
            ),
            speed=3,
        )
        sids.append(result.call_sid)
        await wait_for(lambda sid=result.call_sid: store.get_summary(sid) is not None)
        await wait_for(
            lambda sid=result.call_sid: bool(
                (call := store.get_call(sid)) is not None
                and (call.alert_sent_at is not None or call.alert_error)
            )
        )
    for sid in sids:
        call = store.get_call(sid)
        assert call is not None and call.alert_sent_at is not None and call.alert_error == ""
    assert [m["To"] for m in twilio_standin.messages] == [ON_CALL_PHONE, ON_CALL_PHONE]
