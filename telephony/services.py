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
from agent.tools import FlagEmergency
from crm.config import CrmProfile, CrmWriter, SalesforceConfig
from crm.delivery import DeliveryWorker, RetryPolicy
from crm.factory import build_crm
from crm.store import Store, purge_personal_data
from telephony import metrics, twiml
from telephony.bridge import BridgeContext, RealtimeConnection
from telephony.errors import StreamRefused, TwilioRestError
from telephony.finalize import CallFinalizer
from telephony.media_streams import StreamStarted
from telephony.outbound import (
    OutboundKind,
    OutboundLimiter,
    OutboundLimits,
    confirmation_body,
    emergency_alert_body,
    sms_destination,
    staff_callback_number,
    when_phrase,
)
from telephony.settings import Settings
from telephony.signatures import TwilioSignatures
from telephony.stream_tokens import StreamTokenError, StreamTokens
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
    outbound: OutboundLimiter
    clock: Clock = utc_now
    greetings: GreetingAudio | None = None
    live_calls: set[str] = field(default_factory=set)
    stream_tokens: StreamTokens = field(default_factory=lambda: StreamTokens("", ttl_seconds=300))

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
        if settings.openai_configured:
            client = AsyncOpenAI(
                api_key=settings.openai_api_key.get_secret_value(),
                base_url=settings.openai_base_url,
                max_retries=1,
            )
            greetings = GreetingAudio(
                client, model=settings.openai_tts_model, voice=settings.openai_voice
            )

            def openai_client() -> AsyncOpenAI:
                return client

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
            clock=clock,
            greetings=greetings,
            stream_tokens=StreamTokens(
                settings.twilio_auth_token.get_secret_value(),
                ttl_seconds=settings.stream_token_ttl_seconds,
            ),
            outbound=OutboundLimiter(
                store,
                OutboundLimits(
                    sms_per_number=settings.outbound_sms_per_number_per_hour,
                    sms_per_business=settings.outbound_sms_per_business_per_hour,
                    calls_per_number=settings.outbound_calls_per_number_per_hour,
                    calls_per_business=settings.outbound_calls_per_business_per_hour,
                ),
                secret=settings.twilio_auth_token.get_secret_value(),
            ),
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
        client = AsyncOpenAI(
            api_key=self.settings.openai_api_key.get_secret_value(),
            base_url=self.settings.openai_base_url,
        )
        manager = client.realtime.connect(model=self.settings.openai_realtime_model)
        return await manager.enter()

    def admit_stream(self, started: StreamStarted) -> Business:
        """The business of a Media Stream ``start``, or ``StreamRefused``: the token must be
        ours for this CallSid and business and unexpired, and the call live, in Realtime
        mode and not already streaming (one live stream per call)."""
        sid = started.call_sid
        number = started.custom_parameters.get("business_number", "")
        account = self.settings.twilio_account_sid
        if account and started.account_sid != account:
            raise StreamRefused("start names another Twilio account", call_sid=sid)
        try:
            self.stream_tokens.verify(
                started.custom_parameters.get("token"), sid, number, now=self.clock().timestamp()
            )
        except StreamTokenError as exc:
            raise StreamRefused(exc.reason, call_sid=sid) from None
        business = self.business_for(number)
        call = self.store.get_call(sid)
        if business is None or call is None:
            raise StreamRefused("unknown call", call_sid=sid)
        if call.business_number != business.number:
            raise StreamRefused("the call belongs to another business", call_sid=sid)
        if call.state != "active" or call.mode != "realtime":
            raise StreamRefused(
                f"the call is not streaming ({call.state}, {call.mode})", call_sid=sid
            )
        if sid in self.live_calls:
            raise StreamRefused("the call already has a live stream", call_sid=sid)
        return business

    def stream_token(self, call_sid: str, business: Business) -> str:
        return self.stream_tokens.issue(call_sid, business.number, now=self.clock().timestamp())

    def _allow(
        self,
        kind: OutboundKind,
        *,
        business: Business,
        destination: str,
        call_sid: str | None,
        purpose: str,
    ) -> bool:
        refusal = self.outbound.acquire(
            kind,
            business=business.name,
            destination=destination,
            now=self.clock(),
            call_sid=call_sid,
            purpose=purpose,
        )
        if refusal is None:
            return True
        metrics.OUTBOUND_REFUSED.labels(kind=kind.value, reason="rate_limit").inc()
        log.warning("call %s: %s not sent: %s", call_sid or "?", purpose, refusal)
        return False

    async def notify_emergency(
        self, call_sid: str, business: Business, flag: FlagEmergency
    ) -> None:
        """Text the on-call phone at once: name, number, address, need — one alert per
        call, within the rate limits, fields bounded and links removed."""
        if not business.on_call_phone:
            log.warning(
                "call %s: emergency flagged but %s has no on-call phone", call_sid, business.name
            )
            return
        if self.twilio is None:
            log.error("call %s: emergency flagged but Twilio REST is not configured", call_sid)
            return
        if not self._allow(
            OutboundKind.SMS,
            business=business,
            destination=business.on_call_phone,
            call_sid=call_sid,
            purpose="emergency alert",
        ):
            return
        call = self.store.get_call(call_sid)
        details = dict(call.details) if call else {}
        details.update(flag.details.learned())
        name = " ".join(p for p in (details.get("first_name"), details.get("last_name")) if p)
        number = staff_callback_number(
            call.caller_phone if call else None, details.get("callback_phone"), business.region
        )
        body = emergency_alert_body(
            business_name=business.name,
            caller_name=name,
            number=number,
            address=details.get("service_address"),
            need=details.get("need") or flag.reason,
        )
        await self.twilio.send_sms(
            to=business.on_call_phone, from_=business.number, body=body, call_sid=call_sid
        )

    async def transfer(self, call_sid: str, business: Business) -> None:
        if self.twilio is None or not business.on_call_phone:
            return
        if not self._allow(
            OutboundKind.CALL,
            business=business,
            destination=business.on_call_phone,
            call_sid=call_sid,
            purpose="transfer",
        ):
            return
        document = twiml.transfer(
            number=business.on_call_phone,
            message="I'm connecting you to our on-call technician now. Please stay on the line.",
            caller_id=business.number,
        )
        await self.twilio.redirect(call_sid, document)

    async def hang_up(self, call_sid: str) -> None:
        if self.twilio is not None:
            await self.twilio.hang_up(call_sid)

    async def finalize(self, call_sid: str, reason: str) -> None:
        """Finalize the call, then text the caller a confirmation where the business wants it."""
        summary = await self.finalizer.finalize(call_sid, reason=reason)
        if summary is not None:
            await self.confirm_to_caller(summary)

    async def confirm_to_caller(self, summary: CallSummary) -> None:
        """One text to the caller, where the business wants it: only to a number allowed by
        ``sms_destination``, in our own words (``confirmation_body``), within the limits."""
        business = next((b for b in self.businesses.businesses if b.name == summary.business), None)
        if business is None or not business.sms_to_caller or self.twilio is None:
            return
        to = sms_destination(summary.caller_phone, summary.callback_phone, business.region)
        if to is None:
            metrics.OUTBOUND_REFUSED.labels(kind="sms", reason="destination").inc()
            log.info("call %s: no confirmation text (no number we may text)", summary.call_sid)
            return
        if not self._allow(
            OutboundKind.SMS,
            business=business,
            destination=to,
            call_sid=summary.call_sid,
            purpose="confirmation",
        ):
            return
        when = when_phrase(summary.callback_due, summary.call_date, urgent=summary.is_emergency)
        body = confirmation_body(business.name, when)
        try:
            await self.twilio.send_sms(
                to=to, from_=business.number, body=body, call_sid=summary.call_sid
            )
        except TwilioRestError as exc:
            log.error("call %s: confirmation SMS failed (%s)", summary.call_sid, exc)

    def purge_expired_personal_data(self) -> int:
        """Remove local personal data of calls delivered more than
        ``PERSONAL_DATA_RETENTION_DAYS`` ago (the CRM keeps its copy); returns how many."""
        days = self.settings.personal_data_retention_days
        cutoff = self.clock() - dt.timedelta(days=days)
        total = 0
        while purged := purge_personal_data(self.store, delivered_before=cutoff):
            total += purged
        if total:
            log.info(
                "removed the personal data of %d call(s) delivered over %d days ago", total, days
            )
        return total

    def bridge_context(self) -> BridgeContext:
        settings = self.settings
        return BridgeContext(
            store=self.store,
            connect_realtime=self.connect_realtime if settings.openai_configured else None,
            admit_stream=self.admit_stream,
            instructions_for=self.instructions_for,
            greeting_audio_for=self.greeting_audio_for,
            hang_up=self.hang_up if self.twilio is not None else None,
            notify_emergency=self.notify_emergency,
            transfer=self.transfer if self.twilio is not None else None,
            finalize=self.finalize,
            live_calls=self.live_calls,
            voice=settings.openai_voice,
            max_frame_chars=settings.max_frame_bytes,
            max_call_seconds=settings.max_call_seconds,
        )
