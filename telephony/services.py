"""The long-lived objects of a running service, built once from the settings."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.business import (
    Business,
    BusinessDirectory,
    load_businesses,
    receptionist_instructions,
)
from agent.greeting import GreetingAudio
from agent.summary import CallSummary
from crm.config import CrmProfile, CrmWriter
from crm.delivery import DeliveryWorker, Outcome, RetryPolicy
from crm.factory import build_crm
from crm.routing import CrmPerBusiness
from crm.store import Store, purge_personal_data
from telephony import metrics
from telephony.bridge import BridgeContext, RealtimeConnection
from telephony.errors import StreamRefused, TwilioRestError
from telephony.escalation import Escalation
from telephony.finalize import CallFinalizer
from telephony.media_streams import StreamStarted
from telephony.outbound import (
    OutboundKind,
    OutboundLimiter,
    OutboundLimits,
    confirmation_body,
    sms_destination,
    when_phrase,
)
from telephony.owner_alerts import OwnerAlerts, SmtpConfig
from telephony.progress import ProgressWriter
from telephony.realtime_link import RealtimeLink
from telephony.settings import Settings
from telephony.setup_checks import business_connections, salesforce_config
from telephony.signatures import TwilioSignatures
from telephony.stream_tokens import StreamTokenError, StreamTokens
from telephony.twilio_rest import TwilioActions

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)


def build_crm_for_businesses(
    settings: Settings, businesses: BusinessDirectory, store: Store
) -> CrmWriter:
    """The service-wide CRM, plus each business's own Salesforce org where it names one
    (``salesforce_connection``; one ``SalesforceCrm`` per connection, shared by the
    businesses that name it)."""
    default = build_crm(salesforce_config(settings), store)
    connections = business_connections(settings, businesses)
    if not connections:
        return default
    from crm.salesforce import SalesforceCrm  # simple-salesforce only when an org is named

    writers = {name: SalesforceCrm(config) for name, config in connections.items()}
    by_business: dict[str, CrmWriter] = {
        b.name: writers[b.salesforce_connection]
        for b in businesses.businesses
        if b.salesforce_connection is not None
    }
    return CrmPerBusiness(default, by_business)


def after_delivery(
    outcome: Outcome, store: Store, businesses: BusinessDirectory, alerts: OwnerAlerts
) -> None:
    """After each delivery attempt (worker thread): the hangup→CRM latency, the owner's
    after-call summary on the first attempt, and an alert when it is dead-lettered."""
    call = store.get_call(outcome.call_sid)
    if outcome.state == "delivered" and call is not None and call.ended_at is not None:
        ended = call.ended_at if call.ended_at.tzinfo else call.ended_at.replace(tzinfo=dt.UTC)
        metrics.HANGUP_TO_CRM.observe(max(0.0, (utc_now() - ended).total_seconds()))
    if call is None:
        return
    business = next((b for b in businesses.businesses if b.name == call.business), None)
    if business is None:
        return
    if outcome.first_attempt:
        summary = store.get_summary(outcome.call_sid)
        if summary is not None and (business.owner_phone or business.owner_email):
            alerts.after_call(business, summary)
            metrics.OWNER_ALERTS.labels(kind="summary").inc()
    if outcome.state == "dead" and (business.owner_phone or business.owner_email):
        alerts.dead_letter(business, outcome.call_sid, outcome.detail)
        metrics.OWNER_ALERTS.labels(kind="dead_letter").inc()


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


class LiveCalls(set[str]):
    """The CallSids whose media stream this process serves now. ``streamed`` turns true
    with the first: the garbage collector's cue that a call has loaded what calls load."""

    streamed = False

    def add(self, element: str) -> None:
        self.streamed = True
        super().add(element)


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
    outbound: OutboundLimiter
    clock: Clock = utc_now
    greetings: GreetingAudio | None = None
    openai: AsyncOpenAI | None = None
    live_calls: LiveCalls = field(default_factory=LiveCalls)
    stream_tokens: StreamTokens = field(default_factory=lambda: StreamTokens("", ttl_seconds=300))
    progress: ProgressWriter = field(init=False)
    """Every live call's progress saves, written in groups (one transaction per slot)."""

    def __post_init__(self) -> None:
        self.progress = ProgressWriter(self.store)

    @classmethod
    def build(
        cls, settings: Settings, *, crm: CrmWriter | None = None, clock: Clock = utc_now
    ) -> Services:
        """``clock`` is the wall clock for business hours and due dates (tests move it)."""
        store = Store.from_url(settings.database_url)
        store.create_schema()
        businesses = load_businesses(settings.businesses_file)
        writer = crm or build_crm_for_businesses(settings, businesses, store)

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
        twilio = None
        if settings.twilio_configured:
            twilio = TwilioActions(
                account_sid=settings.twilio_account_sid,
                auth_token=settings.twilio_auth_token.get_secret_value(),
                api_base_url=settings.twilio_api_base_url,
            )
        alerts = OwnerAlerts(
            public_base_url=settings.public_base_url,
            smtp=SmtpConfig.from_settings(settings),
            send_sms=twilio.send_sms_blocking if twilio is not None else None,
        )
        worker = DeliveryWorker(
            store,
            writer,
            profile_for,
            policy=policy,
            on_outcome=lambda outcome: after_delivery(outcome, store, businesses, alerts),
            on_wait=lambda _call_sid: metrics.DELIVERY_WAITS.inc(),
            concurrency=settings.delivery_concurrency,
        )
        metrics.DELIVERY_BACKLOG.set_function(
            lambda: sum(store.outbox_counts().get(s, 0) for s in ("pending", "delivering"))
        )
        metrics.DEAD_LETTERS.set_function(lambda: store.outbox_counts().get("dead", 0))
        openai_client = None
        greetings = None
        client: AsyncOpenAI | None = None
        if settings.openai_configured:
            # Imported only when configured: the SDK's types cost about a second of startup
            # (``receptionist check``, the demo and every restart) that no call without it uses.
            from openai import AsyncOpenAI

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

        outbound = OutboundLimiter(
            store,
            OutboundLimits(
                sms_per_number=settings.outbound_sms_per_number_per_hour,
                sms_per_business=settings.outbound_sms_per_business_per_hour,
                emergency_per_business=settings.emergency_alerts_per_business_per_hour,
            ),
            secret=settings.twilio_auth_token.get_secret_value(),
        )
        escalation = Escalation(
            store=store,
            businesses=businesses,
            twilio=twilio,
            limiter=outbound,
            owner_alerts=alerts,
            clock=clock,
        )

        def on_finalized(summary: CallSummary) -> None:
            metrics.FINALIZED.inc()
            if summary.missed_call and not summary.amendment:
                metrics.MISSED_CALLS.inc()
            worker.wake.set()

        finalizer = CallFinalizer(
            store=store,
            businesses=businesses,
            crm_name=writer.name,
            openai_client=openai_client,
            summary_model=settings.openai_summary_model,
            on_finalized=on_finalized,
            # Urgency 5 established only now (a call recovered after a crash, an emergency
            # nobody flagged live): the alert is owed all the same — once.
            on_emergency=escalation.record,
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
            escalation=escalation,
            outbound=outbound,
            clock=clock,
            greetings=greetings,
            openai=client,
            stream_tokens=StreamTokens(
                settings.twilio_auth_token.get_secret_value(),
                ttl_seconds=settings.stream_token_ttl_seconds,
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
        if self.openai is None:
            raise RuntimeError("OpenAI is not configured")
        manager = self.openai.realtime.connect(model=self.settings.openai_realtime_model)
        # The link writes audio frames past the SDK's per-send wrapper when that is safe.
        return RealtimeLink(await manager.enter())

    async def close(self) -> None:
        """Release what the process holds open (the OpenAI client's connection pool), after
        writing any progress save still waiting for its group."""
        await self.progress.close()
        if self.openai is not None:
            await self.openai.close()
        self.store.engine.dispose()

    def admit_stream(self, started: StreamStarted) -> Business:
        """The business of a Media Stream ``start``, or ``StreamRefused``: the token must be
        ours for this CallSid and business and unexpired, and the call live, in Realtime
        mode and never streamed before (one stream per call, claimed in the database, so
        a replay to another node is refused too)."""
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
        if sid in self.live_calls or not self.store.claim_stream(sid, business.number):
            raise StreamRefused("the call already had its media stream", call_sid=sid)
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
        """Finalize the call, then text the caller a confirmation where the business wants it.
        A call finalized earlier whose later turns were kept is amended instead."""
        summary = await self.finalizer.finalize(call_sid, reason=reason)
        if summary is not None:
            call = await asyncio.to_thread(self.store.get_call, call_sid)
            if not (call is not None and call.state == "screened"):
                await self.confirm_to_caller(summary)  # never a text to a screened robocaller
            return
        await self.finalizer.amend(call_sid)

    async def confirm_to_caller(self, summary: CallSummary) -> None:
        business = next((b for b in self.businesses.businesses if b.name == summary.business), None)
        if summary.missed_call:
            if business is not None:
                await self.text_back_missed_call(summary, business)
            return
        if business is None or not business.sms_to_caller or self.twilio is None:
            return
        if not summary.callback_requested:
            return  # "no need to call me back": no text promising a call
        # Only a number allowed by the destination policy, in our own words, within limits.
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

    async def text_back_missed_call(self, summary: CallSummary, business: Business) -> None:
        """``missed_call_text_back``: one text to the caller ID (never another number), with
        no caller words in it."""
        if not business.missed_call_text_back or self.twilio is None:
            return
        to = sms_destination(summary.caller_phone, None, business.region)
        if to is None or to == business.number:
            return
        if not self._allow(
            OutboundKind.SMS,
            business=business,
            destination=to,
            call_sid=summary.call_sid,
            purpose="missed-call text",
        ):
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

    def purge_expired_personal_data(self) -> int:
        """Remove local personal data of calls delivered more than
        ``PERSONAL_DATA_RETENTION_DAYS`` ago (the CRM keeps its copy); returns how many."""
        days = self.settings.personal_data_retention_days
        cutoff = self.clock() - dt.timedelta(days=days)
        total = 0
        while purged := purge_personal_data(self.store, delivered_before=cutoff):
            total += purged
        a_day_ago = self.clock() - dt.timedelta(days=1)
        self.store.forget_outbound(before=a_day_ago)  # rate-limit rows: an hour is enough
        # The CRM phone ledger holds numbers and is read for a day after each write.
        self.store.forget_phone_ledger(before=min(cutoff, a_day_ago))
        self.store.forget_expired_caller_locks()  # hashed numbers a dead process left
        if total:
            log.info(
                "removed the personal data of %d call(s) delivered over %d days ago", total, days
            )
        return total

    def bridge_context(self) -> BridgeContext:
        settings = self.settings
        return BridgeContext(
            store=self.store,
            progress=self.progress,
            connect_realtime=self.connect_realtime if settings.openai_configured else None,
            admit_stream=self.admit_stream,
            instructions_for=self.instructions_for,
            greeting_audio_for=self.greeting_audio_for,
            hang_up=self.hang_up if self.twilio is not None else None,
            escalate=self.escalate,
            can_alert=self.twilio is not None,
            transfer=self.transfer if self.twilio is not None else None,
            finalize=self.finalize,
            live_calls=self.live_calls,
            voice=settings.openai_voice,
            max_frame_chars=settings.max_frame_bytes,
            max_call_seconds=settings.max_call_seconds,
            audio_batch_frames=settings.realtime_audio_batch_frames,
        )
