"""``receptionist check`` against the Twilio, OpenAI and Salesforce stand-ins: right, wrong
and partial settings, and ``--fix-twilio`` changing the number's URLs in Twilio.

What a user would notice if these failed: a bogus Account SID or OpenAI key passing, an
``[ok]`` printed for credentials Salesforce then refuses, leads silently going to the local
CRM because one Salesforce variable was missing, or a number still pointing at Twilio's
demo URL on launch night.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BUSINESS_NUMBER
from tests.standins.openai_realtime import RealtimeStandin
from tests.standins.salesforce import SalesforceStandin
from tests.standins.twilio import TwilioStandin
from tests.test_cli import run

PUBLIC = "https://receptionist.example.com"
RIGHT_URLS = {
    "voice_url": f"{PUBLIC}/twilio/voice",
    "voice_method": "POST",
    "status_callback": f"{PUBLIC}/twilio/status",
    "status_callback_method": "POST",
    "voice_fallback_url": f"{PUBLIC}/twilio/fallback",
    "voice_fallback_method": "POST",
}


def section(stdout: str, title: str) -> list[str]:
    """The lines printed under ``title:`` up to the next section."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    out = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        out.append(line.strip())
    return out


def environment(
    twilio: TwilioStandin,
    openai: RealtimeStandin,
    salesforce: SalesforceStandin,
    businesses_file: Path,
) -> dict[str, str]:
    return {
        "PUBLIC_BASE_URL": PUBLIC,
        "BUSINESSES_FILE": str(businesses_file),
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_API_BASE_URL": twilio.api_base_url,
        "OPENAI_API_KEY": openai.api_key,
        "OPENAI_BASE_URL": openai.base_url,
        "SALESFORCE_LOGIN_URL": salesforce.login_url,
        "SALESFORCE_CLIENT_ID": salesforce.client_id,
        "SALESFORCE_CLIENT_SECRET": salesforce.client_secret,
        "REQUESTS_CA_BUNDLE": salesforce.ca_bundle,
        "NO_PROXY": "*",
    }


async def check(env: dict[str, str], cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, ["check", *extra], env=env, cwd=cwd)


async def test_right_settings_pass_with_every_line_verified(
    tmp_path: Path,
    twilio_standin: TwilioStandin,
    realtime_standin: RealtimeStandin,
    salesforce_standin: SalesforceStandin,
    businesses_file: Path,
) -> None:
    twilio_standin.buy_number(BUSINESS_NUMBER, **RIGHT_URLS)
    env = environment(twilio_standin, realtime_standin, salesforce_standin, businesses_file)
    result = await check(env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[FAIL]" not in result.stdout
    twilio_lines = section(result.stdout, "Twilio:")
    assert twilio_lines[0].startswith(f"[ok]   Twilio account {twilio_standin.account_sid} (Full")
    assert (
        f"[ok]   {BUSINESS_NUMBER} (Bay Plumbing & Air): voice, status callback"
        in (twilio_lines[1])
    )
    assert section(result.stdout, "OpenAI:") == [
        "[ok]   OPENAI_API_KEY accepted",
        "[ok]   OPENAI_REALTIME_MODEL gpt-realtime exists",
        "[ok]   OPENAI_SUMMARY_MODEL gpt-4o-mini exists",
        "[ok]   OPENAI_TTS_MODEL gpt-4o-mini-tts exists",
    ]
    assert section(result.stdout, "Salesforce:")[0].startswith("[ok]   Salesforce credentials")
    # The Twilio stand-in saw the account fetch and the filtered number list, nothing else.
    paths = [(m, p.split("/Accounts/")[1], s) for m, p, s in twilio_standin.rest_requests]
    assert paths == [
        ("GET", f"{twilio_standin.account_sid}.json", 200),
        ("GET", f"{twilio_standin.account_sid}/IncomingPhoneNumbers.json", 200),
    ]
    for secret in (twilio_standin.auth_token, realtime_standin.api_key):
        assert secret not in result.stdout + result.stderr


async def test_wrong_credentials_fail_and_nothing_is_ok_before_it_was_verified(
    tmp_path: Path,
    twilio_standin: TwilioStandin,
    realtime_standin: RealtimeStandin,
    salesforce_standin: SalesforceStandin,
    businesses_file: Path,
) -> None:
    twilio_standin.buy_number(BUSINESS_NUMBER, **RIGHT_URLS)
    env = environment(twilio_standin, realtime_standin, salesforce_standin, businesses_file)
    env["TWILIO_ACCOUNT_SID"] = "AC" + "1" * 32
    env["OPENAI_API_KEY"] = "sk-bogus-key-123456"
    env["SALESFORCE_CLIENT_SECRET"] = "wrong-secret"
    result = await check(env, tmp_path)
    assert result.returncode == 1
    (twilio_line,) = section(result.stdout, "Twilio:")
    assert twilio_line.startswith("[FAIL] Twilio refused TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN")
    assert "20003" in twilio_line
    assert section(result.stdout, "OpenAI:") == [
        "[FAIL] OPENAI_API_KEY was refused (401): create a key at "
        "https://platform.openai.com/api-keys and set it"
    ]
    salesforce = section(result.stdout, "Salesforce:")
    assert not any(line.startswith("[ok]") for line in salesforce), salesforce
    assert salesforce[0].startswith("[FAIL]")
    for secret in ("wrong-secret", "sk-bogus-key-123456"):
        assert secret not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


async def test_a_missing_model_a_foreign_number_and_a_trial_account_are_named(
    tmp_path: Path,
    twilio_standin: TwilioStandin,
    realtime_standin: RealtimeStandin,
    salesforce_standin: SalesforceStandin,
    businesses_file: Path,
) -> None:
    twilio_standin.buy_number("+14155550777", **RIGHT_URLS)  # not the business's number
    twilio_standin.set_account_type("Trial")
    realtime_standin.models.remove("gpt-realtime")
    env = environment(twilio_standin, realtime_standin, salesforce_standin, businesses_file)
    result = await check(env, tmp_path)
    assert result.returncode == 1
    twilio_lines = section(result.stdout, "Twilio:")
    assert twilio_lines[1].startswith("[warn] trial account")
    assert twilio_lines[2] == (
        f"[FAIL] {BUSINESS_NUMBER} (Bay Plumbing & Air) is not a number of this Twilio "
        "account: buy or port it there, or fix `number` in BUSINESSES_FILE"
    )
    assert (
        "[FAIL] OPENAI_REALTIME_MODEL 'gpt-realtime' does not exist for this key: fix the "
        "model name"
    ) in section(result.stdout, "OpenAI:")


async def test_fix_twilio_points_the_number_here(
    tmp_path: Path,
    twilio_standin: TwilioStandin,
    realtime_standin: RealtimeStandin,
    salesforce_standin: SalesforceStandin,
    businesses_file: Path,
) -> None:
    """A fresh number (Twilio's demo URL, no callback, no fallback, a TwiML app) fails
    with one line per wrong URL; ``--fix-twilio`` sets them in Twilio; the next check is
    clean."""
    number = twilio_standin.buy_number(BUSINESS_NUMBER, voice_application_sid="AP" + "2" * 32)
    env = environment(twilio_standin, realtime_standin, salesforce_standin, businesses_file)
    before = await check(env, tmp_path)
    assert before.returncode == 1
    lines = section(before.stdout, "Twilio:")
    assert any("uses TwiML app AP" in line for line in lines)
    assert (
        f"[FAIL] {BUSINESS_NUMBER} (Bay Plumbing & Air): voice URL (A call comes in) is "
        f"https://demo.twilio.com/welcome/voice/, must be {PUBLIC}/twilio/voice "
        "(run `receptionist check --fix-twilio`)"
    ) in lines
    assert any("status callback URL is (empty)" in line for line in lines)
    assert any("fallback URL (Primary handler fails) is (empty)" in line for line in lines)
    assert number["voice_url"] == "https://demo.twilio.com/welcome/voice/"

    fixed = await check(env, tmp_path, "--fix-twilio")
    assert fixed.returncode == 0, fixed.stdout
    assert any(
        line.startswith(f"[ok]   {BUSINESS_NUMBER} (Bay Plumbing & Air): set voice URL")
        for line in section(fixed.stdout, "Twilio:")
    )
    (stored,) = twilio_standin.numbers
    for key, value in RIGHT_URLS.items():
        assert stored[key] == value
    assert stored["voice_application_sid"] == ""
    updates = [r for r in twilio_standin.rest_requests if r[0] == "POST"]
    assert len(updates) == 1 and updates[0][2] == 200

    after = await check(env, tmp_path)
    assert after.returncode == 0
    assert not [r for r in twilio_standin.rest_requests[len(updates) + 4 :] if r[0] == "POST"]
    # With a voicemail TwiML Bin configured, --fix-twilio points the fallback there.
    bin_url = "https://handler.twilio.com/twiml/EH" + "3" * 32
    binned = await check({**env, "TWILIO_FALLBACK_URL": bin_url}, tmp_path, "--fix-twilio")
    assert binned.returncode == 0, binned.stdout
    assert twilio_standin.numbers[0]["voice_fallback_url"] == bin_url


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"SALESFORCE_LOGIN_URL": "https://acme.my.salesforce.com", "SALESFORCE_CLIENT_ID": "x"},
            "Salesforce settings are incomplete: SALESFORCE_CLIENT_SECRET missing",
        ),
        (
            {"SALESFORCE_USERNAME": "ops@acme.example", "SALESFORCE_CLIENT_ID": "x"},
            "Salesforce settings are incomplete: SALESFORCE_LOGIN_URL, "
            "SALESFORCE_PRIVATE_KEY_FILE missing",
        ),
        ({"TWILIO_ACCOUNT_SID": "AC" + "0" * 32}, "TWILIO_AUTH_TOKEN is missing"),
        ({"TWILIO_AUTH_TOKEN": "abc"}, "TWILIO_ACCOUNT_SID is missing"),
        (
            {"TWILIO_ACCOUNT_SID": "SK" + "0" * 32, "TWILIO_AUTH_TOKEN": "abc"},
            "TWILIO_ACCOUNT_SID is not an Account SID (SK... is an API key SID",
        ),
        (
            {
                "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                "TWILIO_AUTH_TOKEN": "abc",
                "PUBLIC_BASE_URL": "http://localhost:8080",
            },
            "PUBLIC_BASE_URL 'http://localhost:8080' is http: Twilio streams audio only to wss://",
        ),
        (
            {
                "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
                "TWILIO_AUTH_TOKEN": "abc",
                "PUBLIC_BASE_URL": "https://127.0.0.1",
            },
            "PUBLIC_BASE_URL 'https://127.0.0.1' is a local address Twilio cannot reach",
        ),
    ],
)
def test_partial_or_unusable_settings_fail_check_and_stop_serve(
    tmp_path: Path, env: dict[str, str], line: str
) -> None:
    env = {"PUBLIC_BASE_URL": PUBLIC, **env}
    result = run(["check"], env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert f"[FAIL] {line}" in result.stdout, result.stdout
    serve = run(["serve", "--port", "0"], env=env, cwd=tmp_path)
    assert serve.returncode == 2
    assert serve.stdout == ""
    assert serve.stderr.startswith(f"receptionist: {line}"), serve.stderr
    # One line per problem, no traceback (http://localhost is two problems).
    assert all(line.startswith("receptionist: ") for line in serve.stderr.splitlines())
    assert len(serve.stderr.splitlines()) == (2 if "localhost" in line else 1)
    assert not (tmp_path / "receptionist.db").exists()
