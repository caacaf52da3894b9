"""Issue 10's other attacks through the real entry points: work before the signature check
(attack 4), SOSL boolean injection through an e-mail (5), long and odd caller IDs on both
databases (6), and the smaller holes (8): a corrupt database, the SQLite file's mode,
caller numbers in logged Twilio errors, the API docs, and local personal data kept
forever.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from twilio.request_validator import RequestValidator

from agent.summary import CallSummary
from crm.local import LocalCrm
from crm.org_schema import OrgSchema
from crm.planner import email_search_sosl, lookup_phone_terms, phone_search_sosl
from crm.store import REDACTED
from telephony.errors import TwilioRestError
from telephony.twilio_rest import TwilioActions
from tests.conftest import (
    BUSINESS_NUMBER,
    BUSINESSES_TOML,
    CALLER,
    PUBLIC_BASE_URL,
    RunningApp,
    StartApp,
    wait_for,
)
from tests.standins.openai_realtime import RealtimeStandin, ScriptedTurn, ToolCall
from tests.standins.salesforce import SalesforceStandin
from tests.standins.salesforce_query import _parse_search_term
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript
from tests.test_postgres import fresh_database

TOKEN = "test-auth-token"
RECEPTIONIST = str(Path(sys.executable).with_name("receptionist"))


def sign(path: str, params: dict[str, str], token: str = TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(PUBLIC_BASE_URL + path, params))


async def raw_request(app: RunningApp, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send request headers (and maybe the start of a body) on a raw socket and read the
    answer — without ever sending the rest of the body the headers announce."""
    host, port = app.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        await writer.drain()
        async with asyncio.timeout(10):
            status_line = await reader.readline()
            response = await reader.read(4096)
    finally:
        writer.close()
    return int(status_line.split()[1]), response


def request_head(path: str, content_type: str, length: int, signature: str | None) -> str:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: receptionist.example.com",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
    ]
    if signature is not None:
        lines.append(f"X-Twilio-Signature: {signature}")
    return "\n".join(lines) + "\n"


# --- attack 4: work before the signature check ------------------------------------------


async def test_hostile_uploads_are_answered_from_their_headers_alone(
    start_app: StartApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unsigned 300 MB multipart upload, a signed-looking one, and a 300 MB form are
    refused from the headers — the test never sends the bodies, and the service answers
    anyway — nothing is spooled to disk, and the next real call is answered."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    app = await start_app(twilio_auth_token=TOKEN)
    huge = 300 * 1024 * 1024
    part = (
        b'--x\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n' + b"\0" * 4096
    )
    multipart = "multipart/form-data; boundary=x"
    form = "application/x-www-form-urlencoded"
    cases = [
        (request_head("/twilio/voice", multipart, huge, None), 403),
        (request_head("/twilio/voice", multipart, huge, "Zm9yZ2Vk"), 415),
        (request_head("/twilio/intake/answer", "application/json", huge, "Zm9yZ2Vk"), 415),
        (request_head("/twilio/voice", form, huge, "Zm9yZ2Vk"), 413),
    ]
    for head, expected in cases:
        status, _ = await raw_request(app, head, part)
        assert status == expected, head
    assert list(spool.iterdir()) == []

    # A body without a length (chunked) is cut off at WEBHOOK_MAX_BYTES too.
    head = "\n".join(
        [
            "POST /twilio/voice HTTP/1.1",
            "Host: receptionist.example.com",
            f"Content-Type: {form}",
            "Transfer-Encoding: chunked",
            "X-Twilio-Signature: Zm9yZ2Vk",
        ]
    )
    chunk = b"a=" + b"x" * 16382
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6))
    status, _ = await raw_request(app, head + "\n", chunked)
    assert status == 413

    params = {"CallSid": "CA" + "1" * 32, "From": CALLER, "To": BUSINESS_NUMBER}
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            app.url + "/twilio/voice",
            data=params,
            headers={"X-Twilio-Signature": sign("/twilio/voice", params)},
        )
    assert answer.status_code == 200 and "<Gather" in answer.text


# --- attack 5: SOSL injection through an e-mail -----------------------------------------


# Bounded and derandomized, like the other property tests: seconds, and the same in CI.
PROPERTIES = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def parsed_words(sosl: str) -> list[list[Any]]:
    groups, _end = _parse_search_term(sosl, sosl.index("{") + 1)
    return groups


@pytest.fixture(scope="module")
def schema() -> OrgSchema:
    from tests.test_crm_planner import SCHEMA as PLANNER_SCHEMA

    return PLANNER_SCHEMA


@PROPERTIES
@given(email=st.text(max_size=80))
@example(email="mal@nowhere.invalid OR bigcorp")
@example(email='mal@x.invalid"OR"bigcorp')
@example(email="a@b.c} OR {bigcorp")
@example(email="NOT@x.y")
@example(email="*@*")
def test_no_email_can_add_an_operator_to_the_search(schema: OrgSchema, email: str) -> None:
    """Whatever was spelled as an e-mail, the search is one quoted phrase equal to the
    address — or no search at all."""
    sosl = email_search_sosl(email, schema)
    if sosl is None:
        return
    (group,) = parsed_words(sosl)
    (word,) = group
    assert word.phrase and not word.negated
    assert word.text == email.strip().lower()


phone_like = st.one_of(
    st.text(max_size=40),
    st.text(alphabet='+0123456789 ()-.OANDRT*?"{}', max_size=30),
    st.sampled_from(
        ["+14155550100", "415 555 0100 OR 1", "sip:x@y", "anonymous", "NOT 4155550100"]
    ),
)


@PROPERTIES
@given(
    caller=phone_like,
    callback=st.one_of(st.none(), phone_like),
    terms=st.lists(st.text(), max_size=4),
)
def test_no_phone_value_can_add_an_operator_to_the_search(
    schema: OrgSchema, caller: str, callback: str | None, terms: list[str]
) -> None:
    """Caller ID, callback number or any list of terms: only digit strings OR-ed together."""
    summary = CallSummary(
        call_sid="CA1",
        business="B",
        caller_phone=caller[:32],
        callback_phone=(callback or None) and callback[:32],
    )
    for built in (lookup_phone_terms(summary), terms):
        sosl = phone_search_sosl(built, schema)
        if sosl is None:
            continue
        for group in parsed_words(sosl):
            (word,) = group
            assert word.text.isdigit() and not word.phrase and not word.negated


async def test_an_email_with_or_does_not_file_the_call_on_another_contact(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    salesforce_ca_env: SalesforceStandin,
    make_realtime_standin: Callable[..., Any],
) -> None:
    """The reported attack: an anonymous caller gives "mal@nowhere.invalid OR bigcorp";
    the unrelated Big Corp Contact gets no Task and no Opportunity, a new Lead is made."""
    org = salesforce_ca_env
    account = org.add_record("Account", {"Name": "Big Corp"})
    contact = org.add_record(
        "Contact",
        {
            "FirstName": "Carla",
            "LastName": "Boss",
            "Email": "ceo@bigcorp.example",
            "AccountId": account,
        },
    )
    ai: RealtimeStandin = await make_realtime_standin(
        turns=[
            ScriptedTurn(
                "Hi, I'd like a new furnace installed.",
                reply="Thanks, noted. Goodbye.",
                reply_ms=800,
                tool_calls=[
                    ToolCall(
                        "record_caller_details",
                        {
                            "first_name": "Mal",
                            "last_name": "Lory",
                            "email": "mal@nowhere.invalid OR bigcorp",
                            "need": "New furnace install",
                            "new_project": True,
                            "urgency": 2,
                        },
                    )
                ],
            )
        ],
        extraction=None,
    )
    from tests.test_injection import delivered, realtime_call, start_service

    app = await start_service(start_app, twilio_standin, org, ai)
    call_sid = await realtime_call(app, twilio_standin, from_="anonymous")
    await delivered(app, call_sid)
    (task,) = [t for t in org.records("Task") if t.get("CallObject") == call_sid]
    assert task["WhoId"] != contact and task.get("WhatId") != account
    assert task["WhoId"].startswith("00Q")  # a new Lead
    assert org.records("Opportunity") == []
    for search in org.sosl_searches:
        assert "bigcorp" not in search.lower() or '"' in search


# --- attack 6: long and odd caller IDs on both databases --------------------------------

ODD_CALLERS = [
    "sip:" + "a" * 300 + "@trunk.example.com",
    "client:" + "support-agent-" * 10,
    "anonymous",
    "+266696687",
]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'odd-callers.db'}"
    else:
        with fresh_database() as url:
            yield url


async def test_odd_caller_ids_are_stored_and_recorded_honestly(
    start_app: StartApp, twilio_standin: TwilioStandin, database_url: str, tmp_path: Path
) -> None:
    """SIP and client identities over 32 characters, "anonymous" and Twilio's keypad
    spelling of it: each call is answered (no 500), stored as Twilio sent it, summarized
    with no caller phone, filed without a Phone, and — though the business texts callers —
    no text goes out."""
    path = tmp_path / "sms-businesses.toml"
    path.write_text(BUSINESSES_TOML + "sms_to_caller = true\n")
    app = await start_app(
        database_url=database_url,
        businesses_file=path,
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
    )
    store = app.services.store
    for caller in ODD_CALLERS:
        result = await twilio_standin.place_call(
            app_url=app.url,
            public_base_url=PUBLIC_BASE_URL,
            from_=caller,
            to=BUSINESS_NUMBER,
            script=CallerScript(
                speech=[
                    "Ana Diaz",
                    "my heater is broken",
                    "this week",
                    "12 Oak Street",
                    "no",
                    "no",
                    "tomorrow",
                ]
            ),
            speed=8,
        )
        assert set(result.webhook_statuses) == {200}, (caller, result.webhook_statuses)
        await wait_for(
            lambda sid=result.call_sid: (
                (job := store.outbox_job(sid)) is not None and job.state == "delivered"
            )
        )
        call = store.get_call(result.call_sid)
        assert call is not None and call.caller_phone == "" and call.caller_id == caller[:255]
        summary = store.get_summary(result.call_sid)
        assert summary is not None and summary.caller_phone == ""
    crm = app.services.crm
    assert isinstance(crm, LocalCrm)
    leads = crm.dump()["Lead"]
    assert len(leads) == len(ODD_CALLERS)
    assert all(not lead.get("Phone") for lead in leads)
    descriptions = " ".join(lead.get("Description") or "" for lead in leads)
    for said in ("SIP caller (no phone number)", "app caller", "caller ID withheld"):
        assert said in descriptions, said
    assert "aaaa" not in descriptions  # the raw identity stays in the database
    assert twilio_standin.messages == []


# --- 8: the smaller holes ---------------------------------------------------------------


async def test_a_corrupt_database_fails_health_and_callers_still_hear_a_message(
    start_app: StartApp, tmp_path: Path
) -> None:
    """/healthz reads the real tables: on a corrupt file it says 503. A webhook that cannot
    reach the database answers with TwiML that tells the caller to call back (no 500)."""
    db = tmp_path / "receptionist.db"
    app = await start_app(twilio_auth_token=TOKEN, database_url=f"sqlite:///{db}")
    async with httpx.AsyncClient() as client:
        assert (await client.get(app.url + "/healthz")).status_code == 200
        app.services.store.engine.dispose()
        for sidecar in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            sidecar.unlink(missing_ok=True)
        db.write_bytes(b"this is not a database file" * 4096)
        health = await client.get(app.url + "/healthz")
        assert health.status_code == 503
        assert health.json()["database"].startswith("error: ")
        params = {"CallSid": "CA" + "2" * 32, "From": CALLER, "To": BUSINESS_NUMBER}
        answer = await client.post(
            app.url + "/twilio/voice",
            data=params,
            headers={"X-Twilio-Signature": sign("/twilio/voice", params)},
        )
    assert answer.status_code == 200
    assert "<Say" in answer.text and "call back" in answer.text and "<Hangup" in answer.text


async def test_the_sqlite_file_is_created_readable_by_its_owner_only(
    start_app: StartApp, tmp_path: Path
) -> None:
    db = tmp_path / "fresh" / "receptionist.db"
    old = os.umask(0o022)
    try:
        app = await start_app(database_url=f"sqlite:///{db}")
    finally:
        os.umask(old)
    async with httpx.AsyncClient() as client:
        assert (await client.get(app.url + "/healthz")).status_code == 200
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    for sidecar in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        if sidecar.exists():
            assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600, sidecar


def test_an_existing_world_readable_database_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from crm.store import Store

    db = tmp_path / "old.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    caplog.set_level(logging.WARNING, logger="crm.store")
    Store.from_url(f"sqlite:///{db}").engine.dispose()
    assert "readable by other users (mode 644): run chmod 600" in caplog.text


async def test_a_refused_number_never_reaches_the_logs(
    twilio_standin: TwilioStandin, caplog: pytest.LogCaptureFixture
) -> None:
    """Twilio's error text quotes the number it refused; the error we raise and log
    carries "[number]" instead."""
    caplog.set_level(logging.DEBUG)
    actions = TwilioActions(
        account_sid=twilio_standin.account_sid,
        auth_token=twilio_standin.auth_token,
        api_base_url=twilio_standin.api_base_url,
    )
    number = "+7912345678901234"
    with pytest.raises(TwilioRestError) as refused:
        await actions.send_sms(to=number, from_=BUSINESS_NUMBER, body="hi", call_sid="CA1")
    assert refused.value.code == 21211
    assert "[number]" in str(refused.value) and "912345" not in str(refused.value)
    logging.getLogger("telephony").error("confirmation SMS failed (%s)", refused.value)
    assert "912345" not in caplog.text


async def test_api_docs_are_off_unless_enabled(start_app: StartApp) -> None:
    closed = await start_app()
    opened = await start_app(api_docs_enabled=True, database_url="sqlite:///:memory:")
    async with httpx.AsyncClient() as client:
        for path in ("/docs", "/openapi.json", "/redoc"):
            assert (await client.get(closed.url + path)).status_code == 404, path
        assert (await client.get(opened.url + "/openapi.json")).status_code == 200
        assert (await client.get(opened.url + "/docs")).status_code == 200


# --- retention --------------------------------------------------------------------------


class MovableClock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TWILIO_", "OPENAI_", "SALESFORCE_"))
    }
    return subprocess.run(
        [RECEPTIONIST, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **env},
        cwd=cwd,
        check=False,
    )


async def test_personal_data_is_removed_after_the_retention_period(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path, businesses_file: Path
) -> None:
    """A delivered call keeps its transcript and details for PERSONAL_DATA_RETENTION_DAYS,
    then the service removes them (the CRM keeps its copy); ``receptionist purge`` does the
    same on demand. Undelivered calls are never purged."""
    clock = MovableClock()
    db = tmp_path / "retention.db"
    app = await start_app(
        database_url=f"sqlite:///{db}",
        clock=clock,
        personal_data_retention_days=30,
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
    )
    store = app.services.store
    env = {"DATABASE_URL": f"sqlite:///{db}", "BUSINESSES_FILE": str(businesses_file)}

    async def delivered_call() -> str:
        result = await twilio_standin.place_call(
            app_url=app.url,
            public_base_url=PUBLIC_BASE_URL,
            from_=CALLER,
            to=BUSINESS_NUMBER,
            script=CallerScript(
                speech=[
                    "Dana Reyes",
                    "a leaking tap",
                    "this week",
                    "12 Oak Street",
                    "yes",
                    "tomorrow",
                ]
            ),
            speed=8,
        )
        await wait_for(
            lambda: (
                (job := store.outbox_job(result.call_sid)) is not None and job.state == "delivered"
            )
        )
        return result.call_sid

    # On demand: `receptionist purge` with a 30-day retention keeps it, with 0 removes it.
    first = await delivered_call()
    kept = run_cli(["purge"], {**env, "PERSONAL_DATA_RETENTION_DAYS": "30"}, tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert "removed the personal data of 0 call(s)" in kept.stdout
    assert (store.get_call(first) or pytest.fail("no call")).transcript != []
    done = run_cli(["purge"], {**env, "PERSONAL_DATA_RETENTION_DAYS": "0"}, tmp_path)
    assert "removed the personal data of 1 call(s)" in done.stdout, (done.stdout, done.stderr)

    # In the service: 29 days after delivery the data is there, after 31 it is gone.
    second = await delivered_call()
    clock.now += dt.timedelta(days=29)
    assert app.services.purge_expired_personal_data() == 0
    clock.now += dt.timedelta(days=2)
    assert app.services.purge_expired_personal_data() == 1

    for sid in (first, second):
        call = store.get_call(sid)
        assert call is not None
        assert (call.transcript, call.details, call.caller_phone, call.intake_json) == (
            [],
            {},
            "",
            "",
        )
        summary = store.get_summary(sid)
        assert summary is not None
        assert summary.need == REDACTED and summary.first_name is None
        assert summary.transcript == [] and summary.caller_phone == ""
        assert summary.callback_window is None and summary.details == ""
    crm = app.services.crm
    assert isinstance(crm, LocalCrm)
    leads = crm.dump()["Lead"]
    assert leads and all(lead["LastName"] == "Reyes" for lead in leads)  # the CRM's copy


def test_the_caller_id_migration_keeps_existing_calls(database_url: str) -> None:
    """Revision 0010 on a database at 0001 with a call in it (SQLite and PostgreSQL): the
    call survives with an empty ``caller_id``, and a 300-character SIP identity then fits."""
    from alembic import command
    from sqlalchemy import text

    from crm.store import Store, alembic_config

    store = Store.from_url(database_url)
    try:
        with store.engine.begin() as connection:
            command.upgrade(alembic_config(connection=connection), "0001")
            connection.execute(
                text(
                    "INSERT INTO calls (call_sid, business, business_number, caller_phone, mode,"
                    " state, started_at, transcript, details, notes, intake_json, updated_at)"
                    " VALUES ('CAold', 'B', '+1', '+14155550100', 'intake', 'active',"
                    " CURRENT_TIMESTAMP, '[]', '{}', '', '', CURRENT_TIMESTAMP)"
                )
            )
        store.create_schema()
        old = store.get_call("CAold")
        assert old is not None and (old.caller_phone, old.caller_id) == ("+14155550100", "")
        sip = "sip:" + "b" * 300 + "@trunk.example.com"
        store.begin_call(
            "CAnew",
            business="B",
            business_number="+1",
            caller_phone="",
            mode="x",
            caller_id=sip[:255],
        )
        new = store.get_call("CAnew")
        assert new is not None and new.caller_id == sip[:255]
    finally:
        store.engine.dispose()


async def test_a_database_that_went_away_fails_health_and_callers_still_hear_a_message(
    start_app: StartApp,
) -> None:
    """PostgreSQL: the service's database is dropped under it (connections cut). /healthz
    says 503 and names the error class; a new call gets TwiML telling the caller to call
    back, never a 500."""
    import psycopg

    from tests.test_postgres import admin_url

    with fresh_database() as url:
        app = await start_app(twilio_auth_token=TOKEN, database_url=url)
        async with httpx.AsyncClient() as client:
            assert (await client.get(app.url + "/healthz")).status_code == 200
            name = make_url(url).database
            with psycopg.connect(admin_url(), autocommit=True) as admin:
                admin.execute(
                    psycopg.sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                        psycopg.sql.Identifier(name)
                    )
                )
            health = await client.get(app.url + "/healthz")
            assert health.status_code == 503, health.text
            assert health.json()["database"] == "error: OperationalError"
            params = {"CallSid": "CA" + "3" * 32, "From": CALLER, "To": BUSINESS_NUMBER}
            answer = await client.post(
                app.url + "/twilio/voice",
                data=params,
                headers={"X-Twilio-Signature": sign("/twilio/voice", params)},
            )
        assert answer.status_code == 200
        assert "call back" in answer.text and "<Hangup" in answer.text


async def test_a_call_during_a_database_outage_is_answered_and_recorded_later(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """PostgreSQL refuses connections for a while: a caller then hears the call-back
    message (not an error); once the database is back, the capture ledger (reconcile
    against Twilio's call log) records that call as a missed call."""
    import psycopg

    from telephony.reconcile import reconcile
    from tests.test_postgres import admin_url

    with fresh_database() as url:
        app = await start_app(
            database_url=url,
            reconcile_interval_seconds=0,
            twilio_account_sid=twilio_standin.account_sid,
            twilio_auth_token=twilio_standin.auth_token,
            twilio_api_base_url=twilio_standin.api_base_url,
        )
        name = psycopg.sql.Identifier(str(make_url(url).database))
        with psycopg.connect(admin_url(), autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (make_url(url).database,),
            )
        try:
            result = await twilio_standin.place_call(
                app_url=app.url,
                public_base_url=PUBLIC_BASE_URL,
                from_=CALLER,
                to=BUSINESS_NUMBER,
                script=CallerScript(speech=["Dana Reyes"]),
                speed=8,
            )
        finally:
            with psycopg.connect(admin_url(), autocommit=True) as admin:
                admin.execute(
                    psycopg.sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name)
                )
        assert result.webhook_statuses[0] == 200
        assert any("call back in a few minutes" in said for said in result.said), result.said
        store = app.services.store
        assert store.get_call(result.call_sid) is None

        report = await reconcile(app.services)
        assert result.call_sid in report.recorded
        await wait_for(lambda: store.get_summary(result.call_sid) is not None)
        summary = store.get_summary(result.call_sid)
        assert summary is not None and summary.missed_call
