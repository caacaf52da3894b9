"""Setup mistakes a contractor's IT person makes, each through the real ``receptionist``
command: one line naming the setting and the fix, a non-zero exit, no traceback."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from telephony.staff_auth import hash_password
from tests.conftest import PUBLIC_BASE_URL, StartApp
from tests.test_cli import run

HASH = hash_password("a long enough password", iterations=1_000)


def one_line_refusal(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_database_path_that_cannot_be_opened(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder" / "calls.db"
    result = run(["serve"], env={"DATABASE_URL": f"sqlite:///{missing}"}, cwd=tmp_path)
    one_line_refusal(result, "DATABASE_URL", str(missing.parent), "mkdir -p")

    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    result = run(
        ["worker", "--once"], env={"DATABASE_URL": f"sqlite:///{a_file}/x.db"}, cwd=tmp_path
    )
    one_line_refusal(result, "DATABASE_URL", "is a file, not a folder")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = run(["serve"], env={"DATABASE_URL": f"sqlite:///{locked}/x.db"}, cwd=tmp_path)
        one_line_refusal(result, "DATABASE_URL", "not writable")


def test_postgresql_without_its_driver_names_the_extra(tmp_path: Path) -> None:
    """A Python path where ``import psycopg`` fails, as on an install without the extra."""
    shadow = tmp_path / "shadow" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('psycopg is not installed')\n")
    env = {
        "DATABASE_URL": "postgresql://receptionist@db/receptionist",
        "PYTHONPATH": str(shadow.parent),
    }
    result = run(["serve"], env=env, cwd=tmp_path)
    one_line_refusal(result, "DATABASE_URL", "pip install 'after-hours-receptionist[postgres]'")


def test_a_password_hash_mangled_by_the_shell(tmp_path: Path) -> None:
    """Unquoted in a shell, ``pbkdf2_sha256$390000$ab..$cd..`` loses its ``$...`` parts."""
    mangled = HASH.split("$")[0] + "90000"
    result = run(["serve"], env={"STAFF_PASSWORD_HASH": mangled}, cwd=tmp_path)
    one_line_refusal(result, "STAFF_PASSWORD_HASH", "single quotes")
    # The same hash, quoted, is accepted (the check fails for Twilio, not for the hash).
    check = run(["check"], env={"STAFF_PASSWORD_HASH": HASH}, cwd=tmp_path)
    assert "STAFF_PASSWORD_HASH" not in check.stdout


def test_a_busy_port_is_named_before_anything_claims_to_be_ready(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run(["serve", "--port", str(port)], cwd=tmp_path)
    line = one_line_refusal(result, f"port {port}", "already in use", "--port")
    assert "receptionist ready" not in result.stdout + result.stderr, line


def test_hash_password_without_stdin_explains_how(tmp_path: Path) -> None:
    result = run(["hash-password"], stdin="", cwd=tmp_path)
    one_line_refusal(result, "no password given", "pipe it in")
    made = run(["hash-password"], stdin="correct horse battery\n", cwd=tmp_path)
    assert made.returncode == 0
    assert made.stdout.startswith("pbkdf2_sha256$")
    assert "STAFF_PASSWORD_HASH='pbkdf2_sha256$" in made.stderr


def test_an_unreadable_setting_value_is_one_line(tmp_path: Path) -> None:
    result = run(["serve"], env={"DELIVERY_MAX_ATTEMPTS": "lots"}, cwd=tmp_path)
    one_line_refusal(result, "DELIVERY_MAX_ATTEMPTS is invalid")


def test_a_bad_businesses_file_stops_serve_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "businesses.toml"
    bad.write_text('[[business]]\nnumber = "+14155559999"\nname = "X"\ntimezone = "Mars/Olympus"\n')
    result = run(["serve"], env={"BUSINESSES_FILE": str(bad)}, cwd=tmp_path)
    one_line_refusal(result, "BUSINESSES_FILE", "businesses.toml:4", "timezone")


async def test_a_wrong_public_base_url_is_named_when_webhooks_are_refused(
    start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    """Twilio signs the URL it called; when that host is not PUBLIC_BASE_URL's, the 403 is
    logged with the fix."""
    app = await start_app(twilio_account_sid="AC" + "0" * 32, twilio_auth_token="tok")
    caplog.set_level(logging.WARNING, logger="telephony.routes_twilio")
    async with httpx.AsyncClient(
        base_url=app.url, headers={"Host": "old-tunnel.example"}
    ) as client:
        refused = await client.post(
            "/twilio/voice", data={"CallSid": "CA1"}, headers={"X-Twilio-Signature": "x"}
        )
    assert refused.status_code == 403
    (record,) = [r for r in caplog.records if "refused /twilio/voice" in r.getMessage()]
    message = record.getMessage()
    assert f"checked against {PUBLIC_BASE_URL}/twilio/voice" in message
    assert "host old-tunnel.example" in message and "set PUBLIC_BASE_URL" in message


def test_the_env_example_is_a_valid_starting_point(tmp_path: Path) -> None:
    """``cp .env.example .env`` parses: the only failures are the blanks left to fill in."""
    root = Path(__file__).resolve().parent.parent
    (tmp_path / ".env").write_text((root / ".env.example").read_text())
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "BUSINESSES_FILE": ""}
    result = run(["check"], env=env, cwd=tmp_path)
    assert "Traceback" not in result.stderr
    settings = result.stdout.split("Twilio:")[0]
    assert "[ok]   no missing, partial or malformed settings" in settings, result.stdout
    assert "https://receptionist.example.com/twilio/voice" in result.stdout
