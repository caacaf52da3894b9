"""``receptionist``: serve, demo, call, worker, check, reconcile, hash-password."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import errno
import getpass
import json
import logging
import secrets
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from pydantic import SecretStr

from telephony.settings import Settings

if TYPE_CHECKING:
    from agent.business import BusinessDirectory

log = logging.getLogger("receptionist")

DEMO_CALLER = "+14155550123"
DEMO_ANSWERS = [
    "Hi, this is Maria Lopez",
    "my basement is flooding, a pipe burst under the sink and water is everywhere",
    "it's 1200 Mission Street",
    "this number is fine",
]


def _configure_logging(verbose: bool) -> None:
    from telephony.logs import configure_logging
    from telephony.setup_checks import env_values

    log_format = env_values().get("LOG_FORMAT", "text").strip().lower() or "text"
    configure_logging(verbose=verbose, log_format="json" if log_format == "json" else "text")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _startup_checks(settings: Settings) -> BusinessDirectory:
    """Stop with one line per problem (``SetupError``) before anything starts."""
    from agent.business import BusinessFileError, load_businesses
    from telephony.setup_checks import SetupError, configuration_problems

    try:
        directory = load_businesses(settings.businesses_file)
    except BusinessFileError as exc:
        raise SetupError(f"BUSINESSES_FILE {exc}") from None
    problems = configuration_problems(settings, directory)
    if problems:
        raise SetupError("\n".join(problems))
    return directory


def _open_database(settings: Settings) -> None:
    """Create or upgrade the schema now, so a database that cannot be opened is one line."""
    from crm.store import Store
    from telephony.setup_checks import SetupError

    try:
        store = Store.from_url(settings.database_url)
        store.create_schema()
        store.engine.dispose()
    except Exception as exc:  # a driver error of any kind: one line, not a traceback
        origin = getattr(exc, "orig", None) or exc
        reason = (str(origin).strip().splitlines() or [type(origin).__name__])[0]
        raise SetupError(f"DATABASE_URL cannot be opened: {reason}") from None


def _bind(host: str, port: int) -> socket.socket:
    from telephony.setup_checks import SetupError

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SetupError(
                f"port {port} on {host} is already in use (another receptionist?): stop that "
                "process or pass --port"
            ) from None
        raise SetupError(f"cannot listen on {host}:{port} ({exc.strerror}): check --host") from None
    sock.set_inheritable(True)
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings()
    _startup_checks(settings)
    sock = _bind(args.host, args.port)
    _open_database(settings)
    # The app (and every library under it) loads only once the settings are known good, so
    # a setup mistake is answered at once.
    from telephony.app import create_app

    if not settings.twilio_configured:
        log.warning(
            "TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN are not set: Twilio webhooks will be refused "
            "(signatures cannot be verified)"
        )
    from telephony.ws_server import WEBSOCKET_OPTIONS

    app = create_app(settings, run_worker=not args.no_worker)
    config = uvicorn.Config(
        app,
        log_level="info",
        **WEBSOCKET_OPTIONS,
        proxy_headers=True,
        forwarded_allow_ips=args.forwarded_allow_ips,
        log_config=None,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


@contextlib.asynccontextmanager
async def _local_service(settings: Settings) -> AsyncIterator[str]:
    """Run the real service on a free local port for the simulated caller."""
    from telephony.app import create_app
    from telephony.ws_server import WEBSOCKET_OPTIONS

    port = int(settings.public_base_url.rsplit(":", 1)[1])
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", **WEBSOCKET_OPTIONS
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
        await asyncio.sleep(0.05)
    try:
        yield settings.public_base_url
    finally:
        server.should_exit = True
        await task


def _demo_settings(workdir: Path) -> Settings:
    port = _free_port()
    return Settings(
        public_base_url=f"http://127.0.0.1:{port}",
        twilio_auth_token=SecretStr(secrets.token_hex(16)),
        twilio_account_sid="",
        openai_api_key=SecretStr(""),
        salesforce_login_url="",
        salesforce_client_id="",
        database_url=f"sqlite:///{workdir / 'demo.db'}",
    )


async def _run_simulated_call(settings: Settings, answer_source: str) -> int:
    from crm.local import LocalCrm
    from crm.store import Store
    from telephony.simulator import PhoneSimulator

    async with _local_service(settings) as base_url:
        from agent.business import load_businesses

        business = load_businesses(settings.businesses_file).businesses[0]
        simulator = PhoneSimulator(
            app_url=base_url,
            public_base_url=settings.public_base_url,
            auth_token=settings.twilio_auth_token.get_secret_value(),
        )
        scripted = iter(DEMO_ANSWERS)

        async def answer(prompt: str) -> str | None:
            if answer_source == "script":
                reply = next(scripted, None)
                print(f"  Caller:       {reply}")
                return reply
            try:
                return await asyncio.to_thread(input, "  You (caller): ")
            except EOFError:
                return None

        def listen(text: str) -> None:
            print(f"  Receptionist: {text}")

        print(f"Calling {business.name} at {business.number} from {DEMO_CALLER} (after hours)\n")
        call = await simulator.call(
            from_=DEMO_CALLER, to=business.number, answer=answer, listen=listen
        )
        store = Store.from_url(settings.database_url)
        for _ in range(200):
            job = store.outbox_job(call.call_sid)
            if job is not None and job.state in ("delivered", "dead"):
                break
            await asyncio.sleep(0.05)
        summary = store.get_summary(call.call_sid)
        job = store.outbox_job(call.call_sid)
    if summary is None or job is None:
        print("\nThe call was not finalized; see the log above.", file=sys.stderr)
        return 1
    print(f"\nCall {call.call_sid} finalized; CRM delivery: {job.state}")
    print("\nSummary:")
    print(json.dumps(summary.model_dump(mode="json", exclude={"transcript"}), indent=2))
    print(f"Rating: {summary.rating}\n\nTranscript:\n{summary.transcript_text()}\n")
    print("Local CRM records:")
    records = LocalCrm(store.engine).dump()
    for kind, rows in records.items():
        for row in rows:
            print(f"  {kind}: {json.dumps(row, default=str)}")
    return 0 if job.state == "delivered" else 1


def cmd_demo(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="receptionist-demo-") as workdir:
        return asyncio.run(_run_simulated_call(_demo_settings(Path(workdir)), "script"))


def cmd_call(args: argparse.Namespace) -> int:
    print("You are the caller. Type what you would say; an empty line stays silent.\n")
    with tempfile.TemporaryDirectory(prefix="receptionist-call-") as workdir:
        return asyncio.run(_run_simulated_call(_demo_settings(Path(workdir)), "keyboard"))


def cmd_worker(args: argparse.Namespace) -> int:
    from telephony.services import Services

    settings = Settings()
    _startup_checks(settings)
    _open_database(settings)
    services = Services.build(settings)
    if args.once:
        outcomes = services.worker.drain()
        for outcome in outcomes:
            print(f"{outcome.call_sid}: {outcome.state} {outcome.detail}")
        return 0

    async def run() -> None:
        stop = asyncio.Event()
        await services.worker.run(stop)

    log.info("delivering the outbox through %s (Ctrl-C to stop)", services.crm.name)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from agent.business import BusinessFileError, load_businesses
    from crm.checks import CheckReport, check_salesforce
    from telephony.setup_checks import (
        SetupError,
        business_connections,
        check_openai,
        check_smtp,
        check_twilio,
        configuration_problems,
        default_salesforce_values,
        salesforce_config,
        salesforce_problems,
        wanted_urls,
    )

    settings = Settings()
    ok = True

    def show(title: str, report: CheckReport) -> None:
        nonlocal ok
        print(title)
        for line in report.lines:
            print(f"  {line}")
        ok = ok and report.ok

    setup = CheckReport()
    try:
        directory = load_businesses(settings.businesses_file)
    except BusinessFileError as exc:
        setup.fail(f"BUSINESSES_FILE {exc}")
        show("Settings:", setup)
        return 1
    problems = configuration_problems(settings, directory)
    for problem in problems:
        setup.fail(problem)
    if not problems:
        setup.good("no missing, partial or malformed settings; the database location is usable")
    show("Settings:", setup)

    twilio = CheckReport()
    if settings.twilio_configured and not any(p.startswith("TWILIO_") for p in problems):
        twilio = check_twilio(settings, directory, fix=args.fix_twilio)
    elif not settings.twilio_configured and not settings.twilio_auth_token.get_secret_value():
        twilio.fail(
            "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set: webhooks cannot be verified "
            "and no SMS or transfer can be made (Twilio console, Account info)"
        )
        for value, what in wanted_urls(settings).values():
            if value.startswith("http"):
                twilio.info(f"{what}: {value} (POST)")
    else:
        twilio.fail("not checked: fix the TWILIO_ settings above first")
    show("Twilio:", twilio)

    openai = CheckReport()
    if settings.openai_configured:
        openai = check_openai(settings)
    else:
        openai.info("OPENAI_API_KEY is not set: callers get the scripted intake (no AI voice)")
    show("OpenAI:", openai)

    if settings.smtp_host:
        show("E-mail (SMTP):", check_smtp(settings))

    default_problem = salesforce_problems(settings, None)
    config = salesforce_config(settings)
    if default_problem:
        report = CheckReport()
        report.fail("not checked: complete the SALESFORCE_ settings above first")
        show("Salesforce:", report)
    elif config is None:
        report = CheckReport()
        if any(default_salesforce_values(settings).values()):
            report.fail("SALESFORCE_ settings are present but unusable")
        else:
            report.info("not configured: records go to the embedded local CRM")
        show("Salesforce:", report)
    else:
        show("Salesforce:", check_salesforce(config))
    try:
        connections = business_connections(settings, directory)
    except SetupError:
        connections = {}
    named_problems = salesforce_problems(settings, directory)
    for name, connection in connections.items():
        users = ", ".join(b.name for b in directory.businesses if b.salesforce_connection == name)
        title = f"Salesforce connection {name} ({users}):"
        if any(f"SALESFORCE_{name}_" in p for p in named_problems):
            report = CheckReport()
            report.fail(f"not checked: complete the SALESFORCE_{name}_ settings above first")
            show(title, report)
        else:
            show(title, check_salesforce(connection))

    print("Businesses:")
    for business in directory.businesses:
        where = (
            f"Salesforce {business.salesforce_connection}"
            if business.salesforce_connection
            else "default CRM"
        )
        print(f"  {business.number}: {business.name} ({business.timezone}; {where})")
    print("All checks passed." if ok else "Some checks failed: fix the [FAIL] lines above.")
    return 0 if ok else 1


def cmd_purge(args: argparse.Namespace) -> int:
    from telephony.services import Services

    settings = Settings()
    services = Services.build(settings)
    try:
        purged = services.purge_expired_personal_data()
    finally:
        services.store.engine.dispose()
    print(
        f"removed the personal data of {purged} call(s) delivered over "
        f"{settings.personal_data_retention_days} day(s) ago"
    )
    return 0


def _since(value: str) -> dt.datetime:
    """``--since``: an ISO date or date-time (UTC unless it says otherwise), or hours ago
    as ``24h`` / days as ``7d``."""
    text = value.strip()
    if text[:-1].isdigit() and text[-1:] in {"h", "d"}:
        amount = int(text[:-1])
        delta = dt.timedelta(hours=amount) if text.endswith("h") else dt.timedelta(days=amount)
        return dt.datetime.now(dt.UTC) - delta
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since {value!r}: use a date (2025-03-04), a date-time, or 24h / 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def cmd_reconcile(args: argparse.Namespace) -> int:
    from telephony.reconcile import reconcile
    from telephony.services import Services

    settings = Settings()
    if not settings.twilio_configured:
        print(
            "reconcile needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (it reads Twilio's call log)",
            file=sys.stderr,
        )
        return 2
    services = Services.build(settings)

    async def run() -> int:
        try:
            report = await reconcile(services, since=args.since)
            print(
                f"{report.listed} call(s) in Twilio's log; {report.known} already recorded; "
                f"{report.unfinished} still in progress; {len(report.recorded)} recorded now"
            )
            for call_sid in report.recorded:
                print(f"  recorded {call_sid}")
            for error in report.errors:
                print(f"  ERROR {error}", file=sys.stderr)
            # Deliver what was just recorded before exiting (the service would too).
            for outcome in services.worker.drain():
                print(f"  {outcome.call_sid}: {outcome.state}")
            return 1 if report.errors else 0
        finally:
            await services.close()

    return asyncio.run(run())


def cmd_hash_password(args: argparse.Namespace) -> int:
    from telephony.staff_auth import hash_password

    try:
        if sys.stdin.isatty():
            password = getpass.getpass("Staff password: ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    except (EOFError, KeyboardInterrupt):
        password = ""
    if not password:
        print(
            "hash-password: no password given: type it at the prompt, or pipe it in "
            "(printf '%s\\n' 'the password' | receptionist hash-password)",
            file=sys.stderr,
        )
        return 2
    if len(password) < 10:
        print("hash-password: use at least 10 characters.", file=sys.stderr)
        return 2
    encoded = hash_password(password)
    print(encoded)
    print(
        f"Put it in .env in single quotes (the $ signs must not be expanded): "
        f"STAFF_PASSWORD_HASH='{encoded}'",
        file=sys.stderr,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="receptionist", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the web service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="do not deliver the CRM outbox in this process (run `receptionist worker` instead)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="proxies trusted for X-Forwarded-* headers (the local Caddy by default)",
    )
    serve.set_defaults(func=cmd_serve)
    commands.add_parser("demo", help="one simulated after-hours call, end to end").set_defaults(
        func=cmd_demo
    )
    commands.add_parser("call", help="call the receptionist yourself, typing").set_defaults(
        func=cmd_call
    )
    worker = commands.add_parser("worker", help="deliver the CRM outbox")
    worker.add_argument("--once", action="store_true", help="deliver what is due, then exit")
    worker.set_defaults(func=cmd_worker)
    check = commands.add_parser("check", help="verify Twilio/OpenAI/Salesforce by calling them")
    check.add_argument(
        "--fix-twilio",
        action="store_true",
        help="set each business number's voice, status callback and fallback URLs",
    )
    check.set_defaults(func=cmd_check)
    commands.add_parser(
        "purge", help="remove local personal data past PERSONAL_DATA_RETENTION_DAYS"
    ).set_defaults(func=cmd_purge)

    reconcile = commands.add_parser(
        "reconcile", help="record calls in Twilio's call log the service never saw"
    )
    reconcile.add_argument(
        "--since",
        type=_since,
        default=None,
        help="how far back: a date, a date-time, or 24h / 7d (default: 24h)",
    )
    reconcile.set_defaults(func=cmd_reconcile)
    commands.add_parser("hash-password", help="hash a staff password").set_defaults(
        func=cmd_hash_password
    )
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    from pydantic import ValidationError

    from telephony.setup_checks import SetupError

    try:
        return int(args.func(args))
    except SetupError as exc:
        for line in str(exc).splitlines():
            print(f"receptionist: {line}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        for error in exc.errors():
            name = "_".join(str(p) for p in error["loc"]).upper() or "a setting"
            message = str(error["msg"]).removeprefix("Value error, ")
            print(f"receptionist: {name} is invalid: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
