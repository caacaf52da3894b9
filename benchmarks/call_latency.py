"""What the caller waits for, measured at the caller's ear (the Twilio stand-in).

Runs real-time-paced calls through the real service with the OpenAI and Twilio stand-ins,
twice: with the instant greeting (rendered once, played as the stream starts) and with the
speech endpoint failing (the Realtime model greets). Prints medians and the ratio:

- first audio: audio time from the stream's start to the first agent audio the caller hears;
- turn gap: from the end of the caller's utterance to the agent's next audio (includes the
  500 ms of silence server VAD waits for, and the stand-in's generation time).

Usage: .venv/bin/python benchmarks/call_latency.py [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telephony.app import create_app
from telephony.settings import Settings
from tests.conftest import BUSINESS_NUMBER, BUSINESSES_TOML, CALLER, PUBLIC_BASE_URL, free_port
from tests.standins.openai_realtime import RealtimeStandin, ScriptedTurn
from tests.standins.twilio import TwilioStandin
from tests.standins.twilio_script import CallerScript, HangUp, ListenUntilAgentDone, Say


async def run_mode(calls: int, *, instant: bool, workdir: Path) -> tuple[list[int], list[int]]:
    businesses = workdir / "businesses.toml"
    businesses.write_text(BUSINESSES_TOML)
    turns = [
        ScriptedTurn(f"caller line {i}", reply="Thanks, noted.", reply_ms=800) for i in range(calls)
    ]
    first: list[int] = []
    gaps: list[int] = []
    async with TwilioStandin() as twilio:
        ai = RealtimeStandin(turns=turns)
        await ai.start()
        ai.speech_fails = not instant
        port = free_port()
        settings = Settings(
            public_base_url=PUBLIC_BASE_URL,
            database_url=f"sqlite:///{workdir / ('instant.db' if instant else 'model.db')}",
            businesses_file=businesses,
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,  # type: ignore[arg-type]
            twilio_api_base_url=twilio.api_base_url,
            openai_api_key=ai.api_key,  # type: ignore[arg-type]
            openai_base_url=ai.base_url,
        )
        app = create_app(settings)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        greetings = app.state.services.greetings
        for _ in range(200):  # the greeting renders in the background at start-up
            if not instant or (
                greetings and greetings.get(app.state.services.businesses.businesses[0].greeting)
            ):
                break
            await asyncio.sleep(0.05)
        for _ in range(calls):
            script = CallerScript(
                steps=[
                    ListenUntilAgentDone(quiet_ms=500),
                    Say(ms=800),
                    ListenUntilAgentDone(quiet_ms=500),
                    HangUp(),
                ]
            )
            result = await twilio.place_call(
                app_url=f"http://127.0.0.1:{port}",
                public_base_url=PUBLIC_BASE_URL,
                from_=CALLER,
                to=BUSINESS_NUMBER,
                script=script,
                catch_up=True,  # the line's clock runs on when the machine is slow
            )
            if result.first_audio_ms is not None:
                first.append(result.first_audio_ms)
            gaps.extend(result.turn_latencies_ms)
        server.should_exit = True
        await task
        await ai.stop()
    return first, gaps


async def main(calls: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        instant_first, instant_gaps = await run_mode(calls, instant=True, workdir=workdir)
        model_first, model_gaps = await run_mode(calls, instant=False, workdir=workdir)
    med_instant = statistics.median(instant_first)
    med_model = statistics.median(model_first)
    print(f"calls per mode: {calls} (real-time paced, 2-core machine)")
    print(f"{'':32}{'median ms':>10}{'min':>7}{'max':>7}")
    for label, values, median in (
        ("first audio, instant greeting", instant_first, med_instant),
        ("first audio, model greets", model_first, med_model),
    ):
        print(f"{label:32}{median:>10.0f}{min(values):>7}{max(values):>7}")
    print(
        f"{'turn gap (VAD 500 ms incl.)':32}{statistics.median(instant_gaps + model_gaps):>10.0f}"
    )
    print(f"ratio model/instant first audio: {med_model / max(med_instant, 1):.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=8)
    asyncio.run(main(parser.parse_args().calls))
