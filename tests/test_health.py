"""`GET /healthz` and `GET /metrics` on the running service."""

from __future__ import annotations

import httpx

from tests.conftest import StartApp


async def test_healthz_reports_each_dependency(start_app: StartApp) -> None:
    app = await start_app()
    async with httpx.AsyncClient() as client:
        response = await client.get(app.url + "/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "crm": "local",
        "openai": False,
        "twilio_rest": False,
        "twilio_signatures": False,
        "outbox": {"backlog": 0, "dead": 0, "oldest_waiting_seconds": 0},
    }


async def test_metrics_count_refused_webhooks(start_app: StartApp) -> None:
    app = await start_app(twilio_auth_token="token")
    async with httpx.AsyncClient() as client:
        before = await client.get(app.url + "/metrics")
        await client.post(app.url + "/twilio/voice", data={"CallSid": "CA1"})
        after = await client.get(app.url + "/metrics")

    def refused(text: str) -> float:
        for line in text.splitlines():
            if line.startswith('receptionist_webhooks_rejected_total{reason="signature"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    assert refused(after.text) == refused(before.text) + 1
