"""Setup mistakes, found before they cost a call: each is one line naming the setting and
the fix. ``configuration_problems`` reads only the settings and the local machine (used by
``serve`` at start and by ``check``); ``check_twilio`` and ``check_openai`` ask the real
services (``check``), and ``check_twilio(fix=True)`` sets the numbers' URLs.

Nothing here prints ``[ok]`` for something it has not verified.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from agent.business import Business, BusinessDirectory
from crm.checks import CheckReport
from crm.config import SalesforceConfig
from telephony.settings import Settings

VOICE_PATH = "/twilio/voice"
STATUS_PATH = "/twilio/status"
# The number's "primary handler fails" URL: the voicemail TwiML (see README).
FALLBACK_PATH = "/twilio/fallback"

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_HASH = re.compile(r"^pbkdf2_sha256\$\d+\$[0-9a-f]+\$[0-9a-f]{64}$")
_SALESFORCE_FIELDS = {
    "LOGIN_URL": "login_url",
    "CLIENT_ID": "client_id",
    "CLIENT_SECRET": "client_secret",
    "USERNAME": "username",
    "PRIVATE_KEY_FILE": "private_key_file",
    "ACCESS_TOKEN": "access_token",
    "INSTANCE_URL": "instance_url",
}


class SetupError(Exception):
    """A setting cannot work as given; ``str()`` is the one line for the operator."""


# --- settings only ---------------------------------------------------------------------


def configuration_problems(
    settings: Settings, directory: BusinessDirectory | None = None
) -> list[str]:
    """Every problem visible without calling a service, one line each."""
    problems: list[str] = []
    problems += _twilio_problems(settings)
    problems += _public_url_problems(settings)
    problems += salesforce_problems(settings, directory)
    problems += _staff_problems(settings)
    problems += _owner_problems(settings, directory)
    database = database_problem(settings.database_url)
    if database:
        problems.append(database)
    return problems


def _twilio_problems(settings: Settings) -> list[str]:
    sid = settings.twilio_account_sid.strip()
    token = settings.twilio_auth_token.get_secret_value()
    if sid and not token:
        return [
            "TWILIO_AUTH_TOKEN is missing while TWILIO_ACCOUNT_SID is set: copy the auth "
            "token from the Twilio console (Account info), or unset both"
        ]
    if token and not sid:
        return [
            "TWILIO_ACCOUNT_SID is missing while TWILIO_AUTH_TOKEN is set: copy the Account "
            "SID (AC...) from the Twilio console (Account info), or unset both"
        ]
    if sid and not _ACCOUNT_SID.match(sid):
        hint = " (SK... is an API key SID, not the account)" if sid.startswith("SK") else ""
        return [
            f"TWILIO_ACCOUNT_SID is not an Account SID{hint}: it is AC followed by 32 hex "
            "digits, shown in the Twilio console under Account info"
        ]
    return []


def _public_url_problems(settings: Settings) -> list[str]:
    url = settings.public_base_url.strip()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return [
            f"PUBLIC_BASE_URL {url!r} is not a URL: set it to the https:// address Twilio "
            "reaches this service at (e.g. https://receptionist.example.com)"
        ]
    fallback = settings.twilio_fallback_url.strip()
    if fallback and urlsplit(fallback).scheme != "https":
        return [
            f"TWILIO_FALLBACK_URL {fallback!r} is not an https URL: use the TwiML Bin's URL "
            "(https://handler.twilio.com/twiml/EH...) or leave it empty"
        ]
    if parts.path.strip("/") or parts.query:
        return [
            f"PUBLIC_BASE_URL {url!r} has a path or query: give only scheme and host "
            "(the service adds /twilio/voice itself)"
        ]
    if not settings.twilio_configured:
        return []  # no live number: the demo and local tests may use http://localhost
    problems = []
    if parts.scheme != "https":
        problems.append(
            f"PUBLIC_BASE_URL {url!r} is http: Twilio streams audio only to wss://, so a live "
            "number needs https (put Caddy in front, see deploy/, or use a tunnel)"
        )
    if _is_local(parts.hostname):
        problems.append(
            f"PUBLIC_BASE_URL {url!r} is a local address Twilio cannot reach: set the public "
            "https name of this service (or of your tunnel)"
        )
    return problems


def _is_local(host: str) -> bool:
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def _owner_problems(settings: Settings, directory: BusinessDirectory | None) -> list[str]:
    if directory is None:
        return []
    problems = []
    mailed = [b.name for b in directory.businesses if b.owner_email]
    if mailed and not settings.smtp_host:
        problems.append(
            f"SMTP_HOST is not set but {', '.join(mailed)} has an owner_email: set SMTP_HOST "
            "(and SMTP_USERNAME/SMTP_PASSWORD/SMTP_FROM), or remove owner_email"
        )
    if settings.smtp_username and not settings.smtp_password.get_secret_value():
        problems.append("SMTP_PASSWORD is missing while SMTP_USERNAME is set: set both or neither")
    texted = [b.name for b in directory.businesses if b.owner_phone]
    if texted and not settings.twilio_configured:
        problems.append(
            f"{', '.join(texted)} has an owner_phone but TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN "
            "are not set: set them (SMS go through Twilio), or remove owner_phone"
        )
    return problems


def _staff_problems(settings: Settings) -> list[str]:
    encoded = settings.staff_password_hash.get_secret_value()
    if not encoded or _HASH.match(encoded):
        return []
    if not encoded.startswith("pbkdf2_sha256$") or encoded.count("$") != 3:
        return [
            "STAFF_PASSWORD_HASH is not a hash from `receptionist hash-password` (it looks "
            "cut at the `$` signs: the shell expands unquoted $...): put it in single quotes, "
            "STAFF_PASSWORD_HASH='pbkdf2_sha256$...', in .env or the systemd EnvironmentFile"
        ]
    return [
        "STAFF_PASSWORD_HASH is damaged: make a new one with `receptionist hash-password` "
        "and paste it whole, in single quotes"
    ]


def database_problem(url: str) -> str | None:
    """Why ``DATABASE_URL`` cannot be opened, as one line; None when it can."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return (
            f"DATABASE_URL {url!r} is not a database URL: use sqlite:////var/lib/receptionist/"
            "receptionist.db or postgresql://user:password@host/dbname"
        )
    backend = parsed.get_backend_name()
    if backend in {"postgresql", "postgres"}:
        try:
            importlib.import_module("psycopg")
        except ImportError:
            return (
                "DATABASE_URL is PostgreSQL but its driver is not installed: "
                "pip install 'after-hours-receptionist[postgres]'"
            )
        return None
    if backend != "sqlite":
        return f"DATABASE_URL uses {backend!r}: only sqlite:/// and postgresql:// are supported"
    database = parsed.database or ""
    if not database or database == ":memory:":
        return (
            "DATABASE_URL is an in-memory SQLite database: calls would be lost at restart "
            "and between processes; give a file path"
        )
    path = Path(database).expanduser()
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        return f"DATABASE_URL: {folder} is a file, not a folder: point DATABASE_URL elsewhere"
    if not folder.is_dir():
        return (
            f"DATABASE_URL: the folder {folder} does not exist: create it "
            f"(mkdir -p {folder}) or point DATABASE_URL elsewhere"
        )
    target = path if path.exists() else folder
    if not os.access(target, os.R_OK | os.W_OK):
        return (
            f"DATABASE_URL: {target} is not writable by this user: fix its owner "
            "or permissions, or point DATABASE_URL elsewhere"
        )
    return None


# --- Salesforce connections (default and per business) --------------------------------


def env_values(env_file: Path | None = Path(".env")) -> dict[str, str]:
    """The environment as the settings see it: ``.env`` first, real variables override."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        from dotenv import dotenv_values

        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ)
    return values


def default_salesforce_values(settings: Settings) -> dict[str, str]:
    private_key = settings.salesforce_private_key_file
    return {
        "login_url": settings.salesforce_login_url,
        "client_id": settings.salesforce_client_id,
        "client_secret": settings.salesforce_client_secret.get_secret_value(),
        "username": settings.salesforce_username,
        "private_key_file": str(private_key) if private_key else "",
        "access_token": settings.salesforce_access_token.get_secret_value(),
        "instance_url": settings.salesforce_instance_url,
    }


def connection_values(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """A named connection's values from ``SALESFORCE_<NAME>_*`` variables; a secret may be
    given as ``SALESFORCE_<NAME>_CLIENT_SECRET_FILE`` / ``..._ACCESS_TOKEN_FILE``."""
    values: dict[str, str] = {}
    for suffix, key in _SALESFORCE_FIELDS.items():
        variable = f"SALESFORCE_{name}_{suffix}"
        value = env.get(variable, "").strip()
        file_name = env.get(f"{variable}_FILE", "").strip()
        if not value and file_name and suffix in {"CLIENT_SECRET", "ACCESS_TOKEN"}:
            try:
                value = Path(file_name).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SetupError(
                    f"{variable}_FILE {file_name!r} cannot be read ({exc.strerror}): "
                    "fix the path or its permissions"
                ) from None
        values[key] = value
    return values


def incomplete_salesforce(values: Mapping[str, str], prefix: str) -> str | None:
    """What is missing from partly given Salesforce settings; None if complete or empty."""
    if not any(values.values()):
        return None
    if values["access_token"] and values["instance_url"]:
        return None
    if values["access_token"] or values["instance_url"]:
        absent = "INSTANCE_URL" if values["access_token"] else "ACCESS_TOKEN"
        return f"{prefix}{absent} is missing ({prefix}ACCESS_TOKEN needs {prefix}INSTANCE_URL)"
    missing: list[str] = []
    if not values["login_url"]:
        missing.append(f"{prefix}LOGIN_URL")
    if not values["client_id"]:
        missing.append(f"{prefix}CLIENT_ID")
    jwt = values["username"] or values["private_key_file"]
    if jwt:
        if not values["username"]:
            missing.append(f"{prefix}USERNAME")
        if not values["private_key_file"]:
            missing.append(f"{prefix}PRIVATE_KEY_FILE")
    elif not values["client_secret"]:
        missing.append(f"{prefix}CLIENT_SECRET")
    if not missing:
        return None
    return (
        f"Salesforce settings are incomplete: {', '.join(missing)} missing (set them, or "
        f"unset every {prefix}* variable to use the local CRM)"
    )


def salesforce_config(settings: Settings) -> SalesforceConfig | None:
    """The default connection (``SALESFORCE_*``), or None for the local CRM."""
    if not settings.salesforce_configured:
        return None
    return build_salesforce_config(default_salesforce_values(settings), settings)


def build_salesforce_config(values: Mapping[str, str], settings: Settings) -> SalesforceConfig:
    return SalesforceConfig(
        login_url=values["login_url"],
        client_id=values["client_id"],
        client_secret=values["client_secret"],
        username=values["username"],
        private_key_file=Path(values["private_key_file"]) if values["private_key_file"] else None,
        access_token=values["access_token"],
        instance_url=values["instance_url"],
        api_version=settings.salesforce_api_version,
        timeout_seconds=settings.salesforce_timeout_seconds,
    )


def salesforce_problems(
    settings: Settings,
    directory: BusinessDirectory | None,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    problems = []
    default = incomplete_salesforce(default_salesforce_values(settings), "SALESFORCE_")
    if default:
        problems.append(default)
    if directory is None:
        return problems
    env = env_values() if env is None else env
    names = {b.salesforce_connection for b in directory.businesses}
    for name in sorted(n for n in names if n is not None):
        prefix = f"SALESFORCE_{name}_"
        try:
            values = connection_values(name, env)
        except SetupError as exc:
            problems.append(str(exc))
            continue
        if not any(values.values()):
            users = ", ".join(
                b.name for b in directory.businesses if b.salesforce_connection == name
            )
            problems.append(
                f"{prefix}* is not set but {users} uses salesforce_connection = {name!r}: "
                f"set {prefix}LOGIN_URL, {prefix}CLIENT_ID and {prefix}CLIENT_SECRET"
            )
            continue
        problem = incomplete_salesforce(values, prefix)
        if problem:
            problems.append(problem)
    return problems


def business_connections(
    settings: Settings, directory: BusinessDirectory, env: Mapping[str, str] | None = None
) -> dict[str, SalesforceConfig]:
    """Each named connection's config (callers check ``salesforce_problems`` first)."""
    env = env_values() if env is None else env
    names = {b.salesforce_connection for b in directory.businesses} - {None}
    configs = {}
    for name in sorted(n for n in names if n is not None):
        configs[name] = build_salesforce_config(connection_values(name, env), settings)
    return configs


# --- Twilio ----------------------------------------------------------------------------

WantedUrls = dict[str, tuple[str, str]]


def wanted_urls(settings: Settings) -> WantedUrls:
    """Resource field -> (value, what it is) for a number pointed at this service."""
    return {
        "voice_url": (settings.public_url(VOICE_PATH), "voice URL (A call comes in)"),
        "voice_method": ("POST", "voice method"),
        "status_callback": (settings.public_url(STATUS_PATH), "status callback URL"),
        "status_callback_method": ("POST", "status callback method"),
        "voice_fallback_url": (
            settings.twilio_fallback_url.strip() or settings.public_url(FALLBACK_PATH),
            "fallback URL (Primary handler fails)",
        ),
        "voice_fallback_method": ("POST", "fallback method"),
    }


_UPDATE_PARAMS = {
    "voice_url": "voice_url",
    "voice_method": "voice_method",
    "status_callback": "status_callback",
    "status_callback_method": "status_callback_method",
    "voice_fallback_url": "voice_fallback_url",
    "voice_fallback_method": "voice_fallback_method",
}


def check_twilio(
    settings: Settings,
    directory: BusinessDirectory,
    *,
    fix: bool = False,
    timeout: float = 10.0,
) -> CheckReport:
    """Fetch the account, find every business number in it and compare its URLs; with
    ``fix`` set the wrong ones through the REST API. Never raises."""
    from twilio.base.exceptions import TwilioException, TwilioRestException
    from twilio.rest import Client

    from telephony.twilio_rest import _RebasedHttpClient

    report = CheckReport()
    sid = settings.twilio_account_sid.strip()
    base = settings.twilio_api_base_url
    client = Client(
        sid,
        settings.twilio_auth_token.get_secret_value(),
        http_client=_RebasedHttpClient(base, timeout),
    )
    try:
        account = client.api.v2010.accounts(sid).fetch()
    except TwilioRestException as exc:
        if exc.status in {401, 403, 404}:
            report.fail(
                f"Twilio refused TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN (HTTP {exc.status}, code "
                f"{exc.code}): copy both again from the Twilio console (Account info)"
            )
        else:
            report.fail(f"Twilio answered HTTP {exc.status} (code {exc.code}) fetching the account")
        return report
    except (TwilioException, OSError) as exc:
        report.fail(f"cannot reach Twilio at {base} ({type(exc).__name__}): check the network")
        return report
    if account.status != "active":
        report.fail(f"Twilio account {sid} is {account.status}: reactivate it in the console")
        return report
    report.good(f"Twilio account {sid} ({account.type}, {account.status}) accepted the token")
    if account.type == "Trial":
        report.warn(
            "trial account: only verified caller IDs can call in, callers first hear a trial "
            "notice, and SMS go only to verified numbers (upgrade before going live)"
        )
    wanted = wanted_urls(settings)
    for business in directory.businesses:
        try:
            _check_number(client, business, wanted, report, fix=fix)
        except TwilioRestException as exc:
            report.fail(
                f"{business.number} ({business.name}): Twilio answered HTTP {exc.status} "
                f"(code {exc.code}) {'updating' if fix else 'reading'} the number"
            )
        except (TwilioException, OSError) as exc:
            report.fail(f"{business.number}: Twilio request failed ({type(exc).__name__})")
    return report


def _check_number(
    client: object,
    business: Business,
    wanted: WantedUrls,
    report: CheckReport,
    *,
    fix: bool,
) -> None:
    found = [
        n
        for n in client.incoming_phone_numbers.list(  # type: ignore[attr-defined]
            phone_number=business.number, limit=50
        )
        if n.phone_number == business.number
    ]
    label = f"{business.number} ({business.name})"
    if not found:
        report.fail(
            f"{label} is not a number of this Twilio account: buy or port it there, or fix "
            "`number` in BUSINESSES_FILE"
        )
        return
    number = found[0]
    wrong = {
        key: value for key, (value, _) in wanted.items() if (getattr(number, key) or "") != value
    }
    application = number.voice_application_sid or ""
    if not wrong and not application:
        report.good(f"{label}: voice, status callback and fallback URLs point here")
        return
    if not fix:
        if application:
            report.fail(
                f"{label} uses TwiML app {application}, which overrides its URLs: "
                "run `receptionist check --fix-twilio` to point the number itself here"
            )
        for key in wrong:
            value, what = wanted[key]
            current = getattr(number, key) or "(empty)"
            report.fail(
                f"{label}: {what} is {current}, must be {value} "
                "(run `receptionist check --fix-twilio`)"
            )
        return
    params = {_UPDATE_PARAMS[key]: value for key, (value, _) in wanted.items()}
    updated = client.incoming_phone_numbers(number.sid).update(  # type: ignore[attr-defined]
        voice_application_sid="", **params
    )
    still_wrong = [k for k, (v, _) in wanted.items() if (getattr(updated, k) or "") != v]
    if still_wrong:
        report.fail(f"{label}: Twilio did not take the new {', '.join(still_wrong)}")
        return
    report.good(f"{label}: set {', '.join(wanted[k][1] for k in wrong) or 'its URLs'}")


# --- OpenAI ----------------------------------------------------------------------------


def check_openai(settings: Settings, *, timeout: float = 10.0) -> CheckReport:
    """The key works and every configured model exists for it. Never raises."""
    import openai

    report = CheckReport()
    client = openai.OpenAI(
        api_key=settings.openai_api_key.get_secret_value(),
        base_url=settings.openai_base_url,
        max_retries=0,
        timeout=timeout,
    )
    models: list[tuple[str, str]] = [
        ("OPENAI_REALTIME_MODEL", settings.openai_realtime_model),
        ("OPENAI_SUMMARY_MODEL", settings.openai_summary_model),
        ("OPENAI_TTS_MODEL", settings.openai_tts_model),
    ]
    checked_key = False
    for variable, model in models:
        try:
            client.models.retrieve(model)
        except openai.AuthenticationError:
            report.fail(
                "OPENAI_API_KEY was refused (401): create a key at "
                "https://platform.openai.com/api-keys and set it"
            )
            return report
        except openai.PermissionDeniedError:
            report.fail(f"OPENAI_API_KEY may not use {model} (403): check the key's project")
            continue
        except openai.NotFoundError:
            if not checked_key:
                report.good("OPENAI_API_KEY accepted")
                checked_key = True
            report.fail(f"{variable} {model!r} does not exist for this key: fix the model name")
            continue
        except openai.APIConnectionError:
            report.fail(f"cannot reach OpenAI at {settings.openai_base_url}: check the network")
            return report
        except openai.APIStatusError as exc:
            report.fail(f"OpenAI answered HTTP {exc.status_code} looking up {model}")
            continue
        if not checked_key:
            report.good("OPENAI_API_KEY accepted")
            checked_key = True
        report.good(f"{variable} {model} exists")
    return report


# --- SMTP ------------------------------------------------------------------------------


def check_smtp(settings: Settings) -> CheckReport:
    """Connect to ``SMTP_HOST``, STARTTLS/TLS as configured, log in if a user is set, and
    ask the server to accept ``SMTP_FROM`` as sender (nothing is sent). Never raises."""
    import smtplib
    import ssl

    report = CheckReport()
    host, port = settings.smtp_host, settings.smtp_port
    sender = settings.smtp_from or f"receptionist@{host}"
    context = ssl.create_default_context()
    timeout = settings.smtp_timeout_seconds
    try:
        server: smtplib.SMTP
        if settings.smtp_security == "tls":
            server = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            server = smtplib.SMTP(host, port, timeout=timeout)
        with server:
            if settings.smtp_security == "starttls":
                server.starttls(context=context)
            if settings.smtp_username:
                server.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            server.ehlo_or_helo_if_needed()
            code, _ = server.mail(sender)
            server.rset()
    except smtplib.SMTPAuthenticationError:
        report.fail(f"SMTP server {host}:{port} refused SMTP_USERNAME/SMTP_PASSWORD")
        return report
    except smtplib.SMTPNotSupportedError:
        report.fail(
            f"SMTP server {host}:{port} does not offer STARTTLS: set SMTP_SECURITY=tls (port "
            "465) or, on a trusted network only, none"
        )
        return report
    except (smtplib.SMTPException, OSError) as exc:
        report.fail(
            f"cannot use the SMTP server {host}:{port} ({type(exc).__name__}): check SMTP_HOST, "
            "SMTP_PORT and SMTP_SECURITY"
        )
        return report
    if code != 250:
        report.fail(f"SMTP server {host}:{port} refused {sender} as sender: set SMTP_FROM")
        return report
    auth = " and accepted the login" if settings.smtp_username else ""
    report.good(f"SMTP server {host}:{port} answered ({settings.smtp_security}){auth}")
    return report
