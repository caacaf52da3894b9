"""The long-lived objects of a running service, built once from the settings."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from openai import AsyncOpenAI

from agent.business import (
    Business,
    BusinessDirectory,
    load_businesses,
    receptionist_instructions,
)
from agent.greeting import GreetingAudio
from agent.summary import CallSummary
from crm.config import CrmProfile, CrmWriter, SalesforceConfig
from crm.delivery import DeliveryWorker, RetryPolicy
from crm.factory import build_crm
from crm.store import Store
from telephony import metrics
from telephony.bridge import BridgeContext, RealtimeConnection
from telephony.errors import TwilioRestError
from telephony.escalation import Escalation
from telephony.finalize import CallFinalizer
from telephony.settings import Settings
from telephony.signatures import TwilioSignatures
from telephony.twilio_rest import TwilioActions

log = logging.getLogger(__name__)


def salesforce_config(settings: Settings) -> SalesforceConfig | None:
    if not settings.salesforce_configured:
        return None
    return SalesforceConfig(
        login_url=settings.salesforce_login_url,
        client_id=settings.salesforce_client_id,
        client_secret=settings.salesforce_client_secret.get_secret_value(),
        username=settings.salesforce_username,
        private_key_file=settings.salesforce_private_key_file,
        access_token=settings.salesforce_access_token.get_secret_value(),
        instance_url=settings.salesforce_instance_url,
        api_version=settings.salesforce_api_version,
        timeout_seconds=settings.salesforce_timeout_seconds,
    )


def crm_profile(business: Business) -> CrmProfile:
    return CrmProfile(
        business=business.name,
        lead_source=business.lead_source,
        emergency_lead_source=business.emergency_lead_source,
        company_name=business.company_name,
        field_overrides=dict(business.salesforce_fields),
    )


Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Services:
    """What the app and the CLI share: store, businesses, CRM, Twilio, OpenAI, finalizer."""

    settings: Settings
    store: Store
    businesses: BusinessDirectory
    crm: CrmWriter
    worker: DeliveryWorker
    signatures: TwilioSignatures
    twilio: TwilioActions | None
    finalizer: CallFinalizer
    escalation: Escalation
    clock: Clock = utc_now
    greetings: GreetingAudio | None = None
    openai: AsyncOpenAI | None = None
    live_calls: set[str] = field(default_factory=set)

    @classmethod
    def build(
        cls, settings: Settings, *, crm: CrmWriter | None = None, clock: Clock = utc_now
    ) -> Services:
        """``clock`` is the wall clock for business hours and due dates (tests move it)."""
        store = Store.from_url(settings.database_url)
        store.create_schema()
        businesses = load_businesses(settings.businesses_file)
        writer = crm or build_crm(salesforce_config(settings), store)

        def profile_for(name: str) -> CrmProfile:
            for business in businesses.businesses:
                if business.name == name:
                    return crm_profile(business)
            return CrmProfile(business=name)

        policy = RetryPolicy(
            base_delay=settings.delivery_retry_base_seconds,
            rate_limit_delay=settings.delivery_rate_limit_seconds,
            max_attempts=settings.delivery_max_attempts,
            lease_seconds=settings.delivery_lease_seconds,
        )
        worker = DeliveryWorker(store, writer, profile_for, policy=policy)
        twilio = None
        if settings.twilio_configured:
            twilio = TwilioActions(
                account_sid=settings.twilio_account_sid,
                auth_token=settings.twilio_auth_token.get_secret_value(),
                api_base_url=settings.twilio_api_base_url,
            )
        openai_client = None
        greetings = None
        client: AsyncOpenAI | None = None
        if settings.openai_configured:
            # One client per process (its connection pool is shared by every call); the
            # app's lifespan closes it at shutdown.
            client = AsyncOpenAI(
                api_key=settings.openai_api_key.get_secret_value(),
                base_url=settings.openai_base_url,
                max_retries=1,
            )
            shared = client
            greetings = GreetingAudio(
                client, model=settings.openai_tts_model, voice=settings.openai_voice
            )

            def openai_client() -> AsyncOpenAI:
                return shared

        def on_finalized(summary: CallSummary) -> None:
            metrics.FINALIZED.inc()
            worker.wake.set()

        finalizer = CallFinalizer(
            store=store,
            businesses=businesses,
            crm_name=writer.name,
            openai_client=openai_client,
            summary_model=settings.openai_summary_model,
            on_finalized=on_finalized,
            clock=clock,
        )
        return cls(
            settings=settings,
            store=store,
            businesses=businesses,
            crm=writer,
            worker=worker,
            signatures=TwilioSignatures(settings.twilio_auth_token.get_secret_value()),
            twilio=twilio,
            finalizer=finalizer,
            escalation=Escalation(store=store, businesses=businesses, twilio=twilio),
            clock=clock,
            greetings=greetings,
            openai=client,
        )

    async def render_greetings(self) -> None:
        """Render every business's greeting once, so callers hear it instantly."""
        if self.greetings is None:
            return
        for business in self.businesses.businesses:
            await self.greetings.render(business.greeting)

    def greeting_audio_for(self, business: Business) -> bytes | None:
        return self.greetings.get(business.greeting) if self.greetings else None

    def instructions_for(self, business: Business) -> str:
        return receptionist_instructions(business, now=self.clock())

    def business_for(self, number: str) -> Business | None:
        return self.businesses.by_number(number)

    # -- what the bridge needs -------------------------------------------------------

    async def connect_realtime(self) -> RealtimeConnection:
        if self.openai is None:
            raise RuntimeError("OpenAI is not configured")
        manager = self.openai.realtime.connect(model=self.settings.openai_realtime_model)
        return await manager.enter()

    async def close(self) -> None:
        """Release what the process holds open (the OpenAI client's connection pool)."""
        if self.openai is not None:
            await self.openai.close()
        self.store.engine.dispose()

    def escalate(self, call_sid: str, reason: str) -> bool:
        """Urgency 5 is known for ``call_sid``: the on-call alert is owed (sent at once by
        the escalation loop, exactly once across every path and process)."""
        return self.escalation.record(call_sid, reason)

    async def transfer(self, call_sid: str, business: Business) -> bool:
        return await self.escalation.transfer(call_sid, business)

    async def hang_up(self, call_sid: str) -> None:
        if self.twilio is not None:
            await self.twilio.hang_up(call_sid)

    async def finalize(self, call_sid: str, reason: str) -> None:
        """Finalize the call, then text the caller a confirmation where the business wants it."""
        summary = await self.finalizer.finalize(call_sid, reason=reason)
        if summary is not None:
            await self.confirm_to_caller(summary)

    async def confirm_to_caller(self, summary: CallSummary) -> None:
        business = next((b for b in self.businesses.businesses if b.name == summary.business), None)
        if summary.missed_call:
            metrics.MISSED_CALLS.inc()
            if business is not None:
                await self.text_back_missed_call(summary, business)
            return
        if business is None or not business.sms_to_caller or self.twilio is None:
            return
        to = summary.callback_phone or summary.caller_phone
        if not to.startswith("+"):
            return
        when = summary.callback_window or "as soon as possible"
        body = f"{business.name} got your request and will call you back {when}."
        try:
            await self.twilio.send_sms(
                to=to, from_=business.number, body=body, call_sid=summary.call_sid
            )
        except TwilioRestError as exc:
            log.error("call %s: confirmation SMS failed (%s)", summary.call_sid, exc)

    async def text_back_missed_call(self, summary: CallSummary, business: Business) -> None:
        """``missed_call_text_back``: one text to the caller ID (never another number), with
        no caller words in it."""
        if not business.missed_call_text_back or self.twilio is None:
            return
        to = summary.caller_phone
        if not (to.startswith("+") and to[1:].isdigit()) or to == business.number:
            return
        body = (
            f"Sorry we missed your call to {business.name}. We'll call you back today "
            f"on this number. If it's an emergency, call {business.number} again."
        )
        try:
            await self.twilio.send_sms(
                to=to, from_=business.number, body=body, call_sid=summary.call_sid
            )
        except TwilioRestError as exc:
            log.error("call %s: missed-call text failed (%s)", summary.call_sid, exc)

    def bridge_context(self) -> BridgeContext:
        settings = self.settings
        return BridgeContext(
            store=self.store,
            connect_realtime=self.connect_realtime if settings.openai_configured else None,
            business_for=self.business_for,
            instructions_for=self.instructions_for,
            greeting_audio_for=self.greeting_audio_for,
            hang_up=self.hang_up if self.twilio is not None else None,
            escalate=self.escalate,
            transfer=self.transfer if self.twilio is not None else None,
            finalize=self.finalize,
            live_calls=self.live_calls,
            voice=settings.openai_voice,
            max_frame_chars=settings.max_frame_bytes,
            max_call_seconds=settings.max_call_seconds,
        )
