"""The `receptionist` command as a user runs it (subprocesses, real entry point)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.standins.salesforce import SalesforceStandin

RECEPTIONIST = str(Path(sys.executable).with_name("receptionist"))


def run(
    args: list[str], *, env: dict[str, str] | None = None, stdin: str = "", cwd: Path
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TWILIO_", "OPENAI_", "SALESFORCE_"))
    }
    return subprocess.run(
        [RECEPTIONIST, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **(env or {})},
        cwd=cwd,
        check=False,
    )


def test_demo_prints_the_lead_and_transcript(tmp_path: Path) -> None:
    result = run(["demo"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "CRM delivery: delivered" in result.stdout
    assert "Lead: " in result.stdout and '"Rating": "Hot"' in result.stdout
    assert "Transcript:" in result.stdout and "Caller: Hi, this is Maria Lopez" in result.stdout


def test_call_takes_the_callers_words_from_the_keyboard(tmp_path: Path) -> None:
    words = "Jordan Lee\nI'd like a quote for a new water heater, no rush\nthis number\nnext week\n"
    result = run(["call"], stdin=words, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"LastName": "Lee"' in result.stdout
    assert '"Rating": "Warm"' in result.stdout


def test_check_without_settings_says_what_is_missing_and_fails(tmp_path: Path) -> None:
    result = run(["check"], cwd=tmp_path)
    assert result.returncode == 1
    assert "[FAIL] TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set" in result.stdout
    assert "scripted intake" in result.stdout
    assert "local CRM" in result.stdout


def test_check_logs_in_to_salesforce_and_describes_the_org(
    tmp_path: Path, salesforce_standin: SalesforceStandin
) -> None:
    env = {
        "SALESFORCE_LOGIN_URL": salesforce_standin.login_url,
        "SALESFORCE_CLIENT_ID": salesforce_standin.client_id,
        "SALESFORCE_CLIENT_SECRET": salesforce_standin.client_secret,
        "REQUESTS_CA_BUNDLE": salesforce_standin.ca_bundle,
    }
    result = run(["check"], env=env, cwd=tmp_path)
    salesforce = result.stdout.split("Salesforce:\n")[1].split("Businesses:")[0]
    assert "[FAIL]" not in salesforce, result.stdout + result.stderr
    assert "[ok]   the org has every field the receptionist writes" in salesforce
    assert "Urgency_Level__c" in result.stdout
    assert salesforce_standin.client_secret not in result.stdout + result.stderr

    env["SALESFORCE_CLIENT_SECRET"] = "wrong-secret"
    refused = run(["check"], env=env, cwd=tmp_path)
    assert refused.returncode == 1
    assert "wrong-secret" not in refused.stdout + refused.stderr


def test_invalid_businesses_file_stops_with_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "businesses.toml"
    bad.write_text('[[business]]\nnumber = "+14155559999"\nname = "X"\ntimezone = "Mars/Olympus"\n')
    result = run(["check"], env={"BUSINESSES_FILE": str(bad)}, cwd=tmp_path)
    assert result.returncode == 1
    assert "businesses.toml:4" in result.stdout and "timezone" in result.stdout


def test_reconcile_setup_mistakes_are_one_line(tmp_path: Path) -> None:
    """No Twilio credentials, or a --since it cannot read: one line naming the fix."""
    result = run(["reconcile"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "reconcile needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (it reads Twilio's call log)"
    )
    bad = run(["reconcile", "--since", "yesterday"], cwd=tmp_path)
    assert bad.returncode == 2
    assert "use a date (2025-03-04), a date-time, or 24h / 7d" in bad.stderr
    assert "Traceback" not in result.stderr + bad.stderr
