"""``receptionist``: serve, demo, call, worker, check, reconcile, hash-password."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import getpass
import json
import logging
import secrets
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import uvicorn
from pydantic import SecretStr

from telephony.settings import Settings

log = logging.getLogger("receptionist")

DEMO_CALLER = "+14155550123"
DEMO_ANSWERS = [
    "Hi, this is Maria Lopez",
    "my basement is flooding, a pipe burst under the sink and water is everywhere",
    "this number is fine",
    "as soon as possible please, tonight",
]


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in (
        "twilio.http_client",
        "httpx",
        "httpcore",
        "openai",
        "websockets",
        "alembic.runtime.plugins",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cmd_serve(args: argparse.Namespace) -> int:
    from telephony.app import create_app

    settings = Settings()
    if not settings.twilio_auth_token.get_secret_value():
        log.warning(
            "TWILIO_AUTH_TOKEN is not set: Twilio webhooks will be refused until it is "
            "(signatures cannot be verified)"
        )
    app = create_app(settings, run_worker=not args.no_worker)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", ws="websockets-sansio")
    return 0


@contextlib.asynccontextmanager
async def _local_service(settings: Settings) -> AsyncIterator[str]:
    """Run the real service on a free local port for the simulated caller."""
    from telephony.app import create_app

    port = int(settings.public_base_url.rsplit(":", 1)[1])
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
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

    services = Services.build(Settings())
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
    from crm.checks import check_salesforce
    from telephony.services import salesforce_config

    settings = Settings()
    ok = True
    print("Twilio:")
    if settings.twilio_configured:
        print(
            f"  account {settings.twilio_account_sid}; REST API at {settings.twilio_api_base_url}"
        )
    else:
        ok = False
        print("  MISSING TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN: webhooks cannot be verified")
    print(f"  Point the number's voice webhook to {settings.public_url('/twilio/voice')} (POST)")
    print(f"  and its status callback to {settings.public_url('/twilio/status')} (POST)")
    print("OpenAI:")
    if settings.openai_configured:
        print(f"  realtime model {settings.openai_realtime_model} at {settings.openai_base_url}")
    else:
        print("  not configured: callers get the scripted intake (no AI voice)")
    print("Salesforce:")
    config = salesforce_config(settings)
    if config is None:
        print("  not configured: records go to the embedded local CRM")
    else:
        report = check_salesforce(config)
        for line in report.lines:
            print(f"  {line}")
        ok = ok and report.ok
    print("Businesses:")
    try:
        from agent.business import load_businesses

        directory = load_businesses(settings.businesses_file)
        for business in directory.businesses:
            print(f"  {business.number}: {business.name} ({business.timezone})")
    except Exception as exc:
        ok = False
        print(f"  {exc}")
    return 0 if ok else 1


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

    password = getpass.getpass("Staff password: ")
    if len(password) < 10:
        print("Use at least 10 characters.", file=sys.stderr)
        return 2
    print(hash_password(password))
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
    commands.add_parser("check", help="verify Twilio/OpenAI/Salesforce settings").set_defaults(
        func=cmd_check
    )
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
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
