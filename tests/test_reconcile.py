"""The capture ledger (issue 9): every CallSid in Twilio's call log for a business number
ends up recorded exactly once. ``receptionist reconcile`` (a real subprocess) and the
service's periodic job list the calls through Twilio's REST API — the stand-in pages them
as Twilio does — and record each finished call the service never saw as a missed call,
with the voicemail's recording link and transcription; a second run records nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
from twilio.rest import Client

from tests.conftest import BUSINESS_NUMBER, StartApp, wait_for
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript
from tests.test_conversation_e2e import (
    INTAKE_SPEECH,
    delivered,
    local_crm,
    place_call,
    twilio_settings,
)

RECEPTIONIST = Path(sys.executable).with_name("receptionist")
OTHER_NUMBER = "+14155558888"


async def test_the_call_log_is_paged_as_twilio_pages_it(twilio_standin: TwilioStandin) -> None:
    """Calls list: newest first, ``PageSize`` pages chained by ``next_page_uri`` with a
    ``PageToken``, null on the last page, filtered by ``To``; the twilio library follows the
    pages to the end. Recordings list by ``CallSid``, and a recording's Transcriptions."""
    sids = [twilio_standin.record_past_call(ago_s=600 - i) for i in range(7)]
    twilio_standin.record_past_call(to=OTHER_NUMBER)
    with_voicemail = twilio_standin.record_past_call(voicemail_s=12, transcription="call me")
    client = Client(
        twilio_standin.account_sid,
        twilio_standin.auth_token,
        http_client=twilio_standin.rest_client_http(),
    )

    listed = await asyncio.to_thread(
        lambda: [c.sid for c in client.calls.list(to=BUSINESS_NUMBER, page_size=3)]
    )
    assert listed == [with_voicemail, *reversed(sids)]

    base = f"{twilio_standin.api_base_url}/2010-04-01/Accounts/{twilio_standin.account_sid}"
    auth = (twilio_standin.account_sid, twilio_standin.auth_token)
    async with httpx.AsyncClient(auth=auth, trust_env=False) as http:
        first: dict[str, Any] = (
            await http.get(f"{base}/Calls.json", params={"To": BUSINESS_NUMBER, "PageSize": 3})
        ).json()
        assert (first["page"], first["page_size"], first["start"], first["end"]) == (0, 3, 0, 2)
        assert f"PageToken=PA{first['calls'][-1]['sid']}" in first["next_page_uri"]
        assert first["previous_page_uri"] is None
        pages = [first]
        while pages[-1]["next_page_uri"]:
            nxt = await http.get(twilio_standin.api_base_url + pages[-1]["next_page_uri"])
            pages.append(nxt.json())
        assert [len(p["calls"]) for p in pages] == [3, 3, 2]
        assert pages[-1]["next_page_uri"] is None
        bad = await http.get(f"{base}/Calls.json", params={"PageSize": 0})
        assert bad.status_code == 400 and bad.json()["code"] == 20001

    recordings = await asyncio.to_thread(lambda: client.recordings.list(call_sid=with_voicemail))
    (recording,) = recordings
    assert recording.call_sid == with_voicemail and recording.duration == "12"
    texts = await asyncio.to_thread(
        lambda: [
            t.transcription_text for t in client.recordings(recording.sid).transcriptions.list()
        ]
    )
    assert texts == ["call me"]
    assert await asyncio.to_thread(lambda: client.recordings.list(call_sid=sids[0])) == []


async def run_reconcile(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(RECEPTIONIST),
        "reconcile",
        "--since",
        "24h",
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_reconcile_records_calls_the_service_never_saw_exactly_once(
    start_app: StartApp, twilio_standin: TwilioStandin, tmp_path: Path, businesses_file: Path
) -> None:
    """One call the service answered, one caller who hung up while the service was down,
    one who left a voicemail on the fallback TwiML: ``receptionist reconcile`` records the
    two it never saw — a Cold missed call, and a Lead from the voicemail (the caller's name
    from its transcription, the recording link, the words as the transcript) — and
    delivers them; run again, it records nothing more."""
    app = await start_app(**twilio_settings(twilio_standin))
    seen = await place_call(twilio_standin, app, CallerScript(speech=list(INTAKE_SPEECH)))
    await delivered(app, seen.call_sid)
    await app.stop()
    hung_up = twilio_standin.record_past_call(from_="+14155550177", duration_s=4)
    voicemail = twilio_standin.record_past_call(
        from_="+14155550166",
        duration_s=40,
        voicemail_s=31,
        transcription="Hi, this is Sam Park, my furnace stopped working. Please call me back.",
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DATABASE_URL": app.settings.database_url,
        "BUSINESSES_FILE": str(businesses_file),
        "TWILIO_ACCOUNT_SID": twilio_standin.account_sid,
        "TWILIO_AUTH_TOKEN": twilio_standin.auth_token,
        "TWILIO_API_BASE_URL": twilio_standin.api_base_url,
    }

    code, output = await run_reconcile(env, tmp_path)
    assert code == 0, output
    assert "3 call(s) in Twilio's log; 1 already recorded" in output
    assert hung_up in output and voicemail in output

    restarted = await start_app(**twilio_settings(twilio_standin))
    store = restarted.services.store
    missed = store.get_summary(hung_up)
    left_message = store.get_summary(voicemail)
    assert missed is not None and missed.missed_call and missed.rating == "Cold"
    assert missed.duration_seconds == 4
    assert left_message is not None and not left_message.missed_call
    assert (left_message.first_name, left_message.last_name) == ("Sam", "Park")
    assert "furnace stopped working" in left_message.transcript[0].text
    assert "/Recordings/RE" in left_message.details
    records = local_crm(restarted)
    assert len(records["Lead"]) == 3
    by_phone = {lead["Phone"]: lead for lead in records["Lead"]}
    assert by_phone["+14155550177"]["Rating"] == "Cold"
    assert "Missed call" in by_phone["+14155550177"]["Description"]
    await restarted.stop()

    code, output = await run_reconcile(env, tmp_path)
    assert code == 0, output
    assert "3 already recorded" in output and "0 recorded now" in output
    again = await start_app(**twilio_settings(twilio_standin))
    assert len(local_crm(again)["Lead"]) == 3
    assert json.dumps(local_crm(again), sort_keys=True, default=str) == json.dumps(
        records, sort_keys=True, default=str
    )


async def test_the_service_reconciles_periodically(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """With Twilio configured, the running service reconciles on its own every
    ``RECONCILE_INTERVAL_SECONDS``: a hang-up from an outage ends up recorded and delivered."""
    unseen = twilio_standin.record_past_call(from_="+14155550155", duration_s=3)
    app = await start_app(reconcile_interval_seconds=0.2, **twilio_settings(twilio_standin))
    await wait_for(lambda: app.services.store.get_summary(unseen) is not None)
    summary = await delivered(app, unseen)
    assert summary.missed_call


async def test_reconcile_costs_requests_per_page_not_per_call(
    start_app: StartApp, twilio_standin: TwilioStandin
) -> None:
    """105 calls the service never saw, 3 with a voicemail: two pages of the Calls list
    (100 a page), one of the Recordings list, one Transcriptions list per recording — not
    one request per call — and every call recorded once."""
    from telephony.reconcile import reconcile

    sids = [
        twilio_standin.record_past_call(
            from_=f"+1415555{i:04d}",
            ago_s=600 - i,
            voicemail_s=20 if i % 35 == 0 else None,
            transcription="please call me back" if i % 35 == 0 else None,
        )
        for i in range(105)
    ]
    app = await start_app(reconcile_interval_seconds=0, **twilio_settings(twilio_standin))
    before = len(twilio_standin.rest_requests)

    report = await reconcile(app.services)

    paths = [path for _method, path, _status in twilio_standin.rest_requests[before:]]
    assert sum(p.endswith("/Calls.json") for p in paths) == 2
    assert sum(p.endswith("/Recordings.json") for p in paths) == 1
    assert sum(p.endswith("/Transcriptions.json") for p in paths) == 3
    assert sorted(report.recorded) == sorted(sids)
    assert all(app.services.store.get_summary(sid) is not None for sid in sids)
