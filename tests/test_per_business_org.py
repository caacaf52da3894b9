"""One Salesforce org per business: two businesses, two Salesforce stand-ins (two orgs,
their own credentials), each call delivered into its own business's org and nowhere else;
``check`` logs in to each org separately.

What a user would notice if this failed: one contractor's leads landing in another
contractor's Salesforce, or a business's calls silently going to the local CRM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PUBLIC_BASE_URL, StartApp, wait_for
from tests.standins.salesforce import SalesforceStandin
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript
from tests.test_cli import run

BAY = "+14155559999"
LAKE = "+13125550142"
BUSINESSES = f"""
[[business]]
number = "{BAY}"
name = "Bay Plumbing & Air"
timezone = "America/Los_Angeles"
salesforce_connection = "BAY"

[[business]]
number = "{LAKE}"
name = "Lakeshore Electric"
timezone = "America/Chicago"
salesforce_connection = "LAKE"
"""


@pytest.fixture
def two_orgs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, SalesforceStandin]]:
    orgs = {
        "BAY": SalesforceStandin(client_id="bay-client", client_secret="bay-secret"),
        "LAKE": SalesforceStandin(client_id="lake-client", client_secret="lake-secret"),
    }
    for org in orgs.values():
        org.start()
    bundle = tmp_path / "both-cas.pem"
    bundle.write_text("".join(Path(o.ca_bundle).read_text() for o in orgs.values()))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    for name, org in orgs.items():
        monkeypatch.setenv(f"SALESFORCE_{name}_LOGIN_URL", org.login_url)
        monkeypatch.setenv(f"SALESFORCE_{name}_CLIENT_ID", org.client_id)
        # One secret from a file (as systemd credentials / compose secrets give it).
        if name == "LAKE":
            secret = tmp_path / "lake-secret"
            secret.write_text(org.client_secret + "\n")
            monkeypatch.setenv(f"SALESFORCE_{name}_CLIENT_SECRET_FILE", str(secret))
        else:
            monkeypatch.setenv(f"SALESFORCE_{name}_CLIENT_SECRET", org.client_secret)
    try:
        yield orgs
    finally:
        for org in orgs.values():
            org.stop()


async def test_each_call_goes_to_its_own_businesss_org(
    start_app: StartApp,
    twilio_standin: TwilioStandin,
    two_orgs: dict[str, SalesforceStandin],
    tmp_path: Path,
) -> None:
    businesses = tmp_path / "two.toml"
    businesses.write_text(BUSINESSES)
    app = await start_app(
        businesses_file=businesses,
        twilio_account_sid=twilio_standin.account_sid,
        twilio_auth_token=twilio_standin.auth_token,
        twilio_api_base_url=twilio_standin.api_base_url,
    )
    calls = {}
    for to, speech in [
        (BAY, ["Dana Reyes", "my kitchen sink is leaking", "this week", "yes", "tomorrow"]),
        (LAKE, ["Sam Ortiz", "a breaker keeps tripping", "this week", "yes", "monday"]),
    ]:
        result = await twilio_standin.place_call(
            app_url=app.url,
            public_base_url=PUBLIC_BASE_URL,
            from_="+14155550100" if to == BAY else "+13125550100",
            to=to,
            script=CallerScript(speech=speech),
            speed=8,
        )
        calls[to] = result.call_sid
    store = app.services.store
    for call_sid in calls.values():
        await wait_for(
            lambda sid=call_sid: (
                (job := store.outbox_job(sid)) is not None and job.state == "delivered"
            )
        )
    (bay_lead,) = two_orgs["BAY"].records("Lead")
    (lake_lead,) = two_orgs["LAKE"].records("Lead")
    assert bay_lead["LastName"] == "Reyes"
    assert lake_lead["LastName"] == "Ortiz"
    # Each org saw only its own business's call (its Task carries the CallSid).
    bay_tasks = {t.get("CallObject") for t in two_orgs["BAY"].records("Task")}
    lake_tasks = {t.get("CallObject") for t in two_orgs["LAKE"].records("Task")}
    assert calls[BAY] in bay_tasks and calls[LAKE] not in bay_tasks
    assert calls[LAKE] in lake_tasks and calls[BAY] not in lake_tasks


async def test_check_logs_in_to_each_org_and_names_a_missing_one(
    two_orgs: dict[str, SalesforceStandin], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    businesses = tmp_path / "two.toml"
    businesses.write_text(BUSINESSES)
    import os

    env = {
        k: v for k, v in os.environ.items() if k.startswith(("SALESFORCE_", "REQUESTS_", "SSL_"))
    }
    env["BUSINESSES_FILE"] = str(businesses)
    result = await asyncio.to_thread(run, ["check"], env=env, cwd=tmp_path)
    out = result.stdout
    for name, business in [("BAY", "Bay Plumbing & Air"), ("LAKE", "Lakeshore Electric")]:
        block = out.split(f"Salesforce connection {name} ({business}):\n")[1].split("\n\n")[0]
        first = block.splitlines()[0].strip()
        assert first.startswith("[ok]   Salesforce credentials accepted"), out
        assert two_orgs[name].login_url in first
    assert "+14155559999: Bay Plumbing & Air (America/Los_Angeles; Salesforce BAY)" in out

    env.pop("SALESFORCE_LAKE_LOGIN_URL")
    env.pop("SALESFORCE_LAKE_CLIENT_ID")
    env.pop("SALESFORCE_LAKE_CLIENT_SECRET_FILE")
    missing = await asyncio.to_thread(run, ["serve"], env=env, cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "receptionist: SALESFORCE_LAKE_* is not set but Lakeshore Electric uses "
        "salesforce_connection = 'LAKE': set SALESFORCE_LAKE_LOGIN_URL, "
        "SALESFORCE_LAKE_CLIENT_ID and SALESFORCE_LAKE_CLIENT_SECRET"
    )
