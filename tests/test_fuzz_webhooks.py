"""Fuzzing Twilio's webhooks through the real service (uvicorn on a real port, httpx).

What a user would notice if these failed: a 5xx makes Twilio play its "application error"
message to a caller and hang up; broken TwiML does the same; an unsigned request that is
acted on lets anyone write calls (and CRM records) into the business's books. The
properties, for every webhook (``/twilio/voice``, ``/twilio/voice/after-dial``,
``/twilio/status``, ``/twilio/intake/answer``, ``/twilio/intake/resume``):

- random form fields without a valid signature → 403, nothing recorded, a log line;
- random form fields *with* a valid signature → never a 5xx: 200 with well-formed TwiML,
  204 for the status callback, or a clear 4xx;
- random bodies of any content type → never a 5xx;
- forms over the field-count or field-size bound → 400 before anything else.

Hypothesis runs in a worker thread with a synchronous client while the service runs on the
test's event loop. Examples are bounded and derandomized (a few seconds in all).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import string
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from tests.conftest import (
    BUSINESS_NUMBER,
    CALLER,
    PUBLIC_BASE_URL,
    RunningApp,
    StartApp,
    wait_for,
)
from tests.standins.openai_realtime import RealtimeStandin
from tests.stream_helpers import stream_parameters

TOKEN = "fuzz-auth-token"
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
WEBHOOKS = [
    "/twilio/voice",
    "/twilio/voice/after-dial",
    "/twilio/status",
    "/twilio/intake/answer",
    "/twilio/intake/resume",
]
TWILIO_KEYS = [
    "CallSid",
    "AccountSid",
    "From",
    "To",
    "Caller",
    "Called",
    "CallStatus",
    "Direction",
    "ApiVersion",
    "SpeechResult",
    "Confidence",
    "Digits",
    "DialCallStatus",
    "CallDuration",
]
# Values shaped like Twilio's, and values no Twilio would send (but a signed request can
# still carry them: Twilio forwards SIP headers and the caller's own words).
values = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            BUSINESS_NUMBER,
            CALLER,
            "anonymous",
            "sip:robert'--@evil.example.com",
            "client:Anonymous",
            "completed",
            "in-progress",
            "no-answer",
            "0.1",
            "NaN",
            "1e400",
            "-1",
            "",
            "\x00",
            "<Hangup/>",
            "]]><Dial>+15005550006</Dial>",
        ]
    ),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=3000),
)
keys = st.one_of(st.sampled_from(TWILIO_KEYS), st.text(min_size=1, max_size=20))
forms = st.dictionaries(keys, values, max_size=12)


def sign(path: str, params: dict[str, str], token: str = TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(PUBLIC_BASE_URL + path, params))


def check_answer(response: httpx.Response, path: str) -> None:
    """Twilio can use it: TwiML, a 204 for the status callback, or a clear 4xx."""
    assert response.status_code < 500, (path, response.status_code, response.text[:300])
    if response.status_code == 200:
        assert response.headers["content-type"].startswith("application/xml"), response.headers
        # Our own service's answer; Twilio rejects TwiML that is not well-formed XML.
        root = ET.fromstring(response.text)  # noqa: S314
        assert root.tag == "Response"
    elif response.status_code == 204:
        assert path == "/twilio/status"
    else:
        assert 400 <= response.status_code < 500
        assert response.json()["detail"]


def call_count(app: RunningApp) -> int:
    from sqlalchemy import func, select

    from crm.store import CallRecord

    with app.services.store.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(CallRecord)) or 0)


async def run_in_thread(fuzz: Callable[[], None]) -> None:
    """Run a hypothesis test off the event loop the service is serving on."""
    await asyncio.to_thread(fuzz)


@pytest.fixture
async def intake_app(start_app: StartApp) -> RunningApp:
    """The service with Twilio signatures on and no OpenAI (the scripted intake answers)."""
    return await start_app(twilio_auth_token=TOKEN)


async def test_unsigned_or_forged_requests_are_refused_and_record_nothing(
    intake_app: RunningApp, caplog: pytest.LogCaptureFixture
) -> None:
    """No signature, a garbage one, one made with another token, or one over other
    parameters: always 403, never a call in the database, and a log line saying why."""
    caplog.set_level(logging.WARNING, logger="telephony")

    def fuzz() -> None:
        with httpx.Client(base_url=intake_app.url, timeout=10) as client:

            @FUZZ
            @given(
                path=st.sampled_from(WEBHOOKS),
                params=forms,
                forgery=st.sampled_from(["missing", "garbage", "other-token", "other-params"]),
                garbage=st.text(alphabet=string.ascii_letters + string.digits + "+/=", max_size=40),
            )
            def forged(path: str, params: dict[str, str], forgery: str, garbage: str) -> None:
                headers: dict[str, str] = {}
                if forgery == "garbage":
                    headers["X-Twilio-Signature"] = garbage
                elif forgery == "other-token":
                    headers["X-Twilio-Signature"] = sign(path, params, token="not-" + TOKEN)
                elif forgery == "other-params":
                    headers["X-Twilio-Signature"] = sign(path, {**params, "To": "+1"})
                response = client.post(path, data=params, headers=headers)
                assert response.status_code == 403, (response.status_code, response.text[:200])
                assert "Twilio-Signature" in response.json()["detail"]

            forged()

    await run_in_thread(fuzz)
    assert call_count(intake_app) == 0
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused /twilio/")]
    assert refusals, "each refusal is logged"


async def test_signed_random_fields_never_get_a_server_error(intake_app: RunningApp) -> None:
    """A correctly signed request with any fields at all: TwiML, 204 or a clear 4xx."""

    def fuzz() -> None:
        with httpx.Client(base_url=intake_app.url, timeout=10) as client:

            @FUZZ
            @given(path=st.sampled_from(WEBHOOKS), params=forms)
            @example(path="/twilio/voice", params={"CallSid": "CA1", "To": BUSINESS_NUMBER})
            @example(path="/twilio/status", params={"CallSid": "", "CallStatus": "completed"})
            def signed(path: str, params: dict[str, str]) -> None:
                headers = {"X-Twilio-Signature": sign(path, params)}
                check_answer(client.post(path, data=params, headers=headers), path)

            signed()

    await run_in_thread(fuzz)
    async with httpx.AsyncClient() as client:
        assert (await client.get(intake_app.url + "/healthz")).status_code == 200


async def test_a_live_intake_call_survives_any_signed_answer(intake_app: RunningApp) -> None:
    """A real call is answered by the scripted intake, then the caller's "speech" and the
    other Gather fields are anything at all: every answer is usable TwiML."""

    def fuzz() -> None:
        with httpx.Client(base_url=intake_app.url, timeout=10) as client:

            @FUZZ
            @given(
                answers=st.lists(
                    st.fixed_dictionaries(
                        {"SpeechResult": values},
                        optional={"Confidence": values, "Digits": values},
                    ),
                    min_size=1,
                    max_size=6,
                )
            )
            def intake(answers: list[dict[str, str]]) -> None:
                base = {
                    "CallSid": "CA" + uuid.uuid4().hex,
                    "AccountSid": "AC" + "b" * 32,
                    "From": CALLER,
                    "To": BUSINESS_NUMBER,
                    "CallStatus": "in-progress",
                }
                first = client.post(
                    "/twilio/voice",
                    data=base,
                    headers={"X-Twilio-Signature": sign("/twilio/voice", base)},
                )
                check_answer(first, "/twilio/voice")
                assert "<Gather" in first.text
                for answer in answers:
                    params = {**base, **answer}
                    response = client.post(
                        "/twilio/intake/answer",
                        data=params,
                        headers={"X-Twilio-Signature": sign("/twilio/intake/answer", params)},
                    )
                    check_answer(response, "/twilio/intake/answer")

            intake()

    await run_in_thread(fuzz)


async def test_the_realtime_answer_is_well_formed_twiml_for_any_caller_id(
    start_app: StartApp,
) -> None:
    """With OpenAI configured the answer carries ``From`` into a ``<Parameter>``: whatever
    a signed ``From`` holds (SIP callers choose it), the TwiML stays well-formed."""
    app = await start_app(
        twilio_auth_token=TOKEN,
        openai_api_key="sk-not-used",
        openai_base_url="http://127.0.0.1:9/v1",
    )

    def fuzz() -> None:
        with httpx.Client(base_url=app.url, timeout=10) as client:

            @FUZZ
            @given(caller=values)
            @example(caller="\x1f")
            def answer(caller: str) -> None:
                params = {"CallSid": "CA" + uuid.uuid4().hex, "From": caller, "To": BUSINESS_NUMBER}
                response = client.post(
                    "/twilio/voice",
                    data=params,
                    headers={"X-Twilio-Signature": sign("/twilio/voice", params)},
                )
                check_answer(response, "/twilio/voice")
                assert "<Stream" in response.text

            answer()

    await run_in_thread(fuzz)


CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "multipart/form-data",
    "application/json",
    "text/plain",
    "",
]


async def test_random_bodies_of_any_content_type_never_get_a_server_error(
    intake_app: RunningApp,
) -> None:
    """Bodies that are not forms, broken multipart, bytes that are not UTF-8: a 4xx."""

    def fuzz() -> None:
        with httpx.Client(base_url=intake_app.url, timeout=10) as client:

            @FUZZ
            @given(
                path=st.sampled_from(WEBHOOKS),
                content_type=st.sampled_from(CONTENT_TYPES),
                body=st.binary(max_size=300)
                | st.sampled_from(
                    [
                        b'--xyz\r\nContent-Disposition: form-data; name="CallSid"\r\n\r\nCA1',
                        b"CallSid=%ZZ&To=%2",
                        b"\xff\xfe=\xff",
                        b"=&&==&",
                    ]
                ),
                signature=st.sampled_from(["", "AAAA", sign("/twilio/voice", {})]),
            )
            def raw(path: str, content_type: str, body: bytes, signature: str) -> None:
                headers = {"X-Twilio-Signature": signature} if signature else {}
                if content_type:
                    headers["Content-Type"] = content_type
                response = client.post(path, content=body, headers=headers)
                check_answer(response, path)

            raw()

    await run_in_thread(fuzz)
    assert call_count(intake_app) == 0


async def test_forms_over_the_bounds_are_refused(intake_app: RunningApp) -> None:
    """More than 100 fields is a 400, a body over 64 kB a 413, before the signature is even
    computed (no unbounded parsing of a hostile body)."""
    async with httpx.AsyncClient(base_url=intake_app.url, timeout=10) as client:
        many = {f"F{i}": "x" for i in range(150)}
        response = await client.post(
            "/twilio/voice", data=many, headers={"X-Twilio-Signature": sign("/twilio/voice", many)}
        )
        assert response.status_code == 400
        big = {"CallSid": "CA" + "a" * 32, "SpeechResult": "x" * (70 * 1024)}
        response = await client.post(
            "/twilio/voice", data=big, headers={"X-Twilio-Signature": sign("/twilio/voice", big)}
        )
        assert response.status_code == 413
        assert (await client.get("/healthz")).status_code == 200
    assert call_count(intake_app) == 0


STREAM_URL = "wss://receptionist.example.com/twilio/stream"


async def test_forged_stream_upgrades_are_refused_with_a_log_line(
    intake_app: RunningApp, caplog: pytest.LogCaptureFixture
) -> None:
    """The Media Stream upgrade is signed over the wss:// URL with no parameters: any other
    signature (none, garbage, another token, another URL) is refused with HTTP 403."""
    caplog.set_level(logging.WARNING, logger="telephony")
    ws_url = intake_app.url.replace("http://", "ws://") + "/twilio/stream"
    forgeries = [
        {},
        {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        {"X-Twilio-Signature": RequestValidator("other").compute_signature(STREAM_URL, {})},
        {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature("wss://evil/x", {})},
        {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(STREAM_URL, {"a": "b"})},
    ]
    for headers in forgeries:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(ws_url, additional_headers=headers):
                pass
        assert refused.value.response.status_code == 403
    lines = [r.getMessage() for r in caplog.records]
    assert sum("refused a media stream upgrade" in line for line in lines) == len(forgeries)


async def test_a_frame_with_a_wrongly_typed_member_does_not_end_a_live_call(
    start_app: StartApp, make_realtime_standin: Callable[..., object]
) -> None:
    """A live Realtime call receives frames of the right event with the wrong JSON types:
    each is logged and ignored, the greeting keeps playing, and the call is finalized when
    the caller hangs up."""
    ai = await make_realtime_standin(
        turns=[], greeting="Hello there, how can I help?", greeting_ms=3000
    )
    assert isinstance(ai, RealtimeStandin)
    app = await start_app(
        twilio_auth_token=TOKEN, openai_api_key=ai.api_key, openai_base_url=ai.base_url
    )
    call_sid = "CA" + uuid.uuid4().hex
    params = {"CallSid": call_sid, "From": CALLER, "To": BUSINESS_NUMBER}
    async with httpx.AsyncClient(base_url=app.url) as client:
        answer = await client.post(
            "/twilio/voice",
            data=params,
            headers={"X-Twilio-Signature": sign("/twilio/voice", params)},
        )
    assert "<Stream" in answer.text
    stream_sid = "MZ" + uuid.uuid4().hex
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(STREAM_URL, {})}
    ws_url = app.url.replace("http://", "ws://") + "/twilio/stream"
    async with websockets.connect(ws_url, additional_headers=headers) as ws:
        start = {
            "streamSid": stream_sid,
            "callSid": call_sid,
            "customParameters": stream_parameters(answer.text),
        }
        await ws.send(json.dumps({"event": "start", "start": start, "streamSid": stream_sid}))
        for bad in [
            {"event": "media", "streamSid": stream_sid, "media": "x"},
            {
                "event": "media",
                "streamSid": stream_sid,
                "media": {"payload": "", "timestamp": 1e400},
            },
        ]:
            await ws.send(json.dumps(bad))
        media = 0
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            async with asyncio.timeout(10):
                while media < 3:  # the greeting keeps coming after the bad frames
                    message = json.loads(await ws.recv())
                    media += message.get("event") == "media"
            await ws.send(json.dumps({"event": "stop", "streamSid": stream_sid, "stop": {}}))
        async with asyncio.timeout(10):
            await ws.wait_closed()
    # The service, not a crash, ended the stream: a normal close after the caller's stop.
    assert ws.close_code == 1000, (ws.close_code, ws.close_reason)
    assert media >= 3
    store = app.services.store
    await wait_for(lambda: store.get_summary(call_sid) is not None)
