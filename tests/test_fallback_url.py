"""``POST /twilio/fallback`` (the number's "Primary handler fails" URL that
``check --fix-twilio`` sets): signed like every webhook, and it takes a voicemail even when
the database is unusable."""

from __future__ import annotations

import httpx
from twilio.request_validator import RequestValidator

from tests.conftest import BUSINESS_NUMBER, PUBLIC_BASE_URL, StartApp

TOKEN = "fallback-test-token"


async def test_the_fallback_url_takes_a_voicemail_without_the_database(
    start_app: StartApp,
) -> None:
    app = await start_app(twilio_account_sid="AC" + "0" * 32, twilio_auth_token=TOKEN)
    params = {
        "CallSid": "CA" + "7" * 32,
        "From": "+14155550100",
        "To": BUSINESS_NUMBER,
        "ErrorCode": "11200",
        "ErrorUrl": f"{PUBLIC_BASE_URL}/twilio/voice",
    }
    signature = RequestValidator(TOKEN).compute_signature(
        f"{PUBLIC_BASE_URL}/twilio/fallback", params
    )

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database unavailable")

    app.services.store.sessions = broken  # type: ignore[assignment]
    async with httpx.AsyncClient(base_url=app.url) as client:
        unsigned = await client.post("/twilio/fallback", data=params)
        assert unsigned.status_code == 403
        answer = await client.post(
            "/twilio/fallback", data=params, headers={"X-Twilio-Signature": signature}
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    assert "Thanks for calling Bay Plumbing &amp; Air." in answer.text
    assert '<Record maxLength="120" playBeep="true" timeout="5" transcribe="true" />' in answer.text
    assert answer.text.rstrip().endswith("<Hangup /></Response>")
