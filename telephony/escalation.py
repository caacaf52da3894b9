"""Emergencies on every path: one escalation service for the bridge, the scripted intake,
the takeover after a Realtime failure, and recovery.

The promise is *the on-call phone gets one text per emergency call, within seconds, whatever
fails*. So the alert is durable:

1. ``record()`` — the moment urgency 5 is known, the call row is marked (``emergency_at``)
   in its own transaction. From then on the alert is owed, whichever process, task or
   webhook noticed it, and whatever happens to that process next.
2. ``send()`` — claims the alert with a short lease (an atomic ``UPDATE … WHERE
   alert_sent_at IS NULL AND the claim is free``), texts the on-call phone, and marks it
   sent. A failed send releases the claim for a retry.
3. ``run()`` — a per-process loop (started in the app's lifespan, not inside any call's
   task group, so a takeover or a dropped socket cannot cancel it) that sends every owed
   alert as soon as it is woken, and sweeps the table periodically for alerts another
   process recorded but never sent (it crashed, or its send failed).

Exactly once: the claim makes two senders impossible while a lease runs. The one window
left is a process that dies *after* Twilio accepted the SMS and *before* it marked it sent;
its lease then expires and the alert goes out a second time — a duplicate text, never a
missing one (Twilio's Messages API has no idempotency key).

The warm transfer (``warm_transfer = true``) is a call update on a live call: it is made
at most once per call (``claim_transfer``) by the path that is serving the caller.

How often: alerts and transfers go to the business's *own* on-call phone, so they are not
counted against, or held by, the caller-facing text limits (``OUTBOUND_SMS_*``). They have
their own budget per business and rolling hour (``EMERGENCY_ALERTS_PER_BUSINESS_PER_HOUR``,
alerts and transfers counted apart, each call once however often its alert is retried).
When it is used up, an alert is *held* — still owed, retried by the sweep, sent as soon as
the window allows, oldest first — and a transfer is skipped (the caller stays with the
receptionist; the alert still goes out). Neither is silent: the owner is told
(``owner_phone`` / ``owner_email``) once per window. An alert Twilio keeps refusing gives
up after ``max_attempts`` and the owner is told that too, once, with the call id (never the
caller's words); staff pages show the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable

from agent.business import Business, BusinessDirectory
from crm.store import CallRecord, Store
from telephony import metrics, twiml
from telephony.errors import TwilioRestError
from telephony.outbound import (
    OutboundKind,
    OutboundLimiter,
    emergency_alert_body,
    staff_callback_number,
)
from telephony.owner_alerts import OwnerAlerts
from telephony.twilio_rest import TwilioActions

log = logging.getLogger(__name__)

CLAIM_LEASE = dt.timedelta(seconds=30)
RETRY_AFTER = dt.timedelta(seconds=10)
MAX_ATTEMPTS = 10
NO_ON_CALL_PHONE = "no on-call phone"
NO_BUSINESS = "no business"
NO_TWILIO = "Twilio REST not configured"
CANNOT_SEND = (NO_ON_CALL_PHONE, NO_BUSINESS, NO_TWILIO)
"""An alert's error when it can never be sent with these settings (kept, not retried)."""
HELD = "emergency alert budget"
"""How an alert's error starts while the emergency budget holds it (retried by the sweep)."""
SWEEP_SECONDS = 15.0

TRANSFER_MESSAGE = "I'm connecting you to our on-call technician now. Please stay on the line."


def alert_body(business: Business, call: CallRecord) -> str:
    """The on-call text: who, which number, where, what. Details come from the call as
    stored; each field is bounded and stripped of links, the number is printed only when it
    is a domestic fixed-line/mobile number, and the whole fits ``ALERT_MAX_CHARS``
    (``telephony.outbound``)."""
    details = dict(call.details or {})
    name = " ".join(p for p in (details.get("first_name"), details.get("last_name")) if p)
    return emergency_alert_body(
        business_name=business.name,
        caller_name=name,
        number=staff_callback_number(
            call.caller_phone, details.get("callback_phone"), business.region
        ),
        address=details.get("service_address"),
        need=details.get("need") or call.emergency_reason or "emergency",
    )


class Escalation:
    """Records, sends and sweeps emergency alerts (see the module docstring)."""

    def __init__(
        self,
        *,
        store: Store,
        businesses: BusinessDirectory,
        twilio: TwilioActions | None,
        lease: dt.timedelta = CLAIM_LEASE,
        retry_after: dt.timedelta = RETRY_AFTER,
        max_attempts: int = MAX_ATTEMPTS,
        sweep_seconds: float = SWEEP_SECONDS,
        limiter: OutboundLimiter | None = None,
        owner_alerts: OwnerAlerts | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.businesses = businesses
        self.twilio = twilio
        self.lease = lease
        self.retry_after = retry_after
        self.max_attempts = max_attempts
        self.sweep_seconds = sweep_seconds
        self.limiter = limiter
        self.owner_alerts = owner_alerts
        self.clock = clock
        self.notices: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        """The service's event loop, for owner notices started from a worker thread."""
        self._sending: dict[str, asyncio.Future[bool]] = {}
        """Alerts being sent by this process: a second sender (the sweep and a webhook)
        waits for the first one's outcome instead of losing the claim race."""
        self.wake = asyncio.Event()
        self.on_sent: Callable[[str], None] = lambda _sid: None

    def business_of(self, call: CallRecord) -> Business | None:
        return self.businesses.by_number(call.business_number) or self.businesses.default()

    def can_alert(self, business: Business | None) -> bool:
        """Whether an alert can reach anyone (on-call phone and Twilio REST configured)."""
        return business is not None and bool(business.on_call_phone) and self.twilio is not None

    def record(self, call_sid: str, reason: str) -> bool:
        """Urgency 5 is known: the alert is owed from now on. True the first time only.
        Wakes this process's sender; any other process's sweep would find it too."""
        first = self.store.record_emergency(call_sid, reason or "emergency")
        if first:
            metrics.EMERGENCIES.inc()
            log.warning("call %s: emergency recorded; alerting the on-call phone", call_sid)
        self._wake_sender()
        return first

    def _loop_from_thread(self) -> asyncio.AbstractEventLoop | None:
        """The service's open event loop when called from a worker thread (the database
        work of this module runs in threads); None when called on a loop, or when no loop
        is there to hand work to."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            loop = self._loop
            return loop if loop is not None and not loop.is_closed() else None
        return None

    def _wake_sender(self) -> None:
        """Wake the sweep; ``record`` runs in a worker thread, and an ``asyncio.Event`` is
        set only on its loop."""
        loop = self._loop_from_thread()
        if loop is not None:
            loop.call_soon_threadsafe(self.wake.set)
            return
        self.wake.set()  # on the loop, or no sweep is running to be woken

    def alerted(self, call_sid: str) -> bool:
        call = self.store.get_call(call_sid)
        return call is not None and call.alert_sent_at is not None

    async def send(self, call_sid: str) -> bool:
        """Send the call's owed alert if nobody else is; True when it has been sent (by
        this call or earlier, by any process). The database work runs in worker threads,
        never on the event loop."""
        self._loop = asyncio.get_running_loop()
        under_way = self._sending.get(call_sid)
        if under_way is not None:
            return await asyncio.shield(under_way)
        outcome: asyncio.Future[bool] = self._loop.create_future()
        self._sending[call_sid] = outcome
        try:
            sent = await self._send(call_sid)
        except BaseException:
            outcome.set_result(False)
            raise
        finally:
            del self._sending[call_sid]
        outcome.set_result(sent)
        return sent

    async def _send(self, call_sid: str) -> bool:
        claimed = await asyncio.to_thread(self._claim, call_sid)
        if isinstance(claimed, bool):
            return claimed
        business, call = claimed
        assert self.twilio is not None and business.on_call_phone
        try:
            await self.twilio.send_sms(
                to=business.on_call_phone,
                from_=business.number,
                body=alert_body(business, call),
                call_sid=call_sid,
            )
        except TwilioRestError as exc:
            await asyncio.to_thread(self._failed, business, call, exc)
            return False
        await asyncio.to_thread(self.store.alert_sent, call_sid)
        metrics.EMERGENCY_ALERTS.inc()
        log.info("call %s: on-call phone alerted", call_sid)
        self.on_sent(call_sid)
        return True

    def _claim(self, call_sid: str) -> bool | tuple[Business, CallRecord]:
        """(In a worker thread.) The business and call whose alert this process now holds
        the lease on, or whether the alert is already sent when there is nothing to send."""
        call = self.store.get_call(call_sid)
        if call is None or call.emergency_at is None:
            return False
        if call.alert_sent_at is not None:
            return True
        if call.alert_attempts >= self.max_attempts:
            return False  # given up (the owner was told); staff pages show the call
        business = self.business_of(call)
        if business is None or not business.on_call_phone or self.twilio is None:
            why = NO_ON_CALL_PHONE if business is not None else NO_BUSINESS
            if self.twilio is None:
                why = NO_TWILIO
            if call.alert_error == why:
                return False  # said once already
            log.error("call %s: emergency alert cannot be sent (%s)", call_sid, why)
            self.store.alert_failed(call_sid, why, retry_after=dt.timedelta(days=3650))
            return False
        refusal = self._over_budget(OutboundKind.ALERT, business, call_sid)
        if refusal is not None:  # held, owed still: the sweep tries again after ``retry_after``
            self.store.alert_failed(call_sid, refusal, retry_after=self.retry_after)
            return False
        if not self.store.claim_alert(call_sid, lease=self.lease):
            return self.alerted(call_sid)
        return business, self.store.get_call(call_sid) or call

    def _failed(self, business: Business, call: CallRecord, exc: TwilioRestError) -> None:
        """(In a worker thread.) Twilio refused the alert or could not be reached."""
        error = f"HTTP {exc.status} code {exc.code}: {exc}" if exc.status else str(exc)
        self.store.alert_failed(call.call_sid, error, retry_after=self.retry_after)
        if call.alert_attempts < self.max_attempts:
            log.error("call %s: emergency alert failed, will retry (%s)", call.call_sid, exc)
        else:
            self._gave_up(business, call.call_sid, call.alert_attempts, exc)

    def _over_budget(self, kind: OutboundKind, business: Business, call_sid: str) -> str | None:
        """Why the emergency budget refuses this alert/transfer now, or None (counted, once
        per call). At the budget the owner is told, once per window."""
        if self.limiter is None or not business.on_call_phone:
            return None
        refusal = self.limiter.acquire(
            kind,
            business=business.name,
            destination=business.on_call_phone,
            now=self.clock(),
            call_sid=call_sid,
            purpose=f"emergency {kind.value}",
        )
        if refusal is None:
            return None
        metrics.OUTBOUND_REFUSED.labels(kind=kind.value, reason="rate_limit").inc()
        log.warning("call %s: on-call %s held back: %s", call_sid, kind.value, refusal)
        owner = self.owner_alerts
        budget = self.limiter.limits.emergency_per_business
        if owner is not None and self._owner_notice_due(OutboundKind.ALERTS_HELD, business, None):
            self._notify(
                "alerts_held", call_sid, lambda: owner.alerts_held(business, call_sid, budget)
            )
        return f"{HELD}: {refusal}"

    def _gave_up(
        self, business: Business, call_sid: str, attempts: int, exc: TwilioRestError
    ) -> None:
        """The alert stops being retried: say so loudly, and tell the owner (once)."""
        log.error(
            "call %s: emergency alert NOT delivered, gave up after %d attempts (%s)",
            call_sid,
            attempts,
            exc,
        )
        metrics.OUTBOUND_REFUSED.labels(kind=OutboundKind.ALERT.value, reason="gave_up").inc()
        owner = self.owner_alerts
        if owner is None or not self._owner_notice_due(
            OutboundKind.ALERT_FAILED, business, call_sid
        ):
            return
        # Our words only: Twilio's message text can carry a phone number.
        reason = (
            f"Twilio answered HTTP {exc.status}, error {exc.code}"
            if exc.status
            else "Twilio could not be reached"
        )
        self._notify(
            "alert_failed",
            call_sid,
            lambda: owner.alert_failed(business, call_sid, attempts, reason),
        )

    def _owner_notice_due(
        self, kind: OutboundKind, business: Business, call_sid: str | None
    ) -> bool:
        """Whether this owner notice is to be sent now (claimed in the database, so once
        per window / per call across every process); False when the owner has no contact."""
        contact = business.owner_phone or business.owner_email
        if not contact:
            return False
        if self.limiter is None:
            return True
        refusal = self.limiter.acquire(
            kind,
            business=business.name,
            destination=contact,
            now=self.clock(),
            call_sid=call_sid,
            purpose=f"owner {kind.value}",
        )
        return refusal is None

    def _notify(self, kind: str, call_sid: str, send: Callable[[], None]) -> None:
        """Send an owner notice off the caller's path (SMTP and Twilio block; a webhook
        waiting on ``send`` must not). ``settle()`` awaits the ones under way. Called on
        the event loop or from a worker thread doing this module's database work."""
        metrics.OWNER_ALERTS.labels(kind=kind).inc()
        log.info("call %s: telling the owner (%s)", call_sid, kind)
        loop = self._loop_from_thread()
        if loop is not None:  # a worker thread: the notice starts on the service's loop
            loop.call_soon_threadsafe(self._start_notice, send)
            return
        try:
            self._start_notice(send)
        except RuntimeError:  # no event loop anywhere to start it on: a thread of its own
            threading.Thread(target=self._send_notice, args=(send,), daemon=True).start()

    def _start_notice(self, send: Callable[[], None]) -> None:
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._send_notice, send))
        self.notices.add(task)
        task.add_done_callback(self.notices.discard)

    @staticmethod
    def _send_notice(send: Callable[[], None]) -> None:
        try:
            send()
        except Exception as exc:  # logged, never raised into a webhook or the sweep
            log.error("owner notice failed (%s)", type(exc).__name__)

    async def settle(self) -> None:
        """Wait for the owner notices under way (shutdown, tests)."""
        while self.notices:
            await asyncio.gather(*list(self.notices), return_exceptions=True)

    async def send_owed(self) -> int:
        """Send every alert that is owed and unclaimed; the number sent."""
        sent = 0
        owed = await asyncio.to_thread(self.store.unsent_alerts, max_attempts=self.max_attempts)
        for call_sid in owed:
            if await self.send(call_sid):
                sent += 1
        return sent

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: send owed alerts when woken, and sweep every ``sweep_seconds``."""
        self._loop = asyncio.get_running_loop()
        try:
            await self._run(stop)
        finally:
            await self.settle()

    async def _run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.wake.clear()
            try:
                await self.send_owed()
            except Exception as exc:  # the loop must outlive a database hiccup
                log.error("emergency alert sweep failed (%s)", type(exc).__name__)
            waits = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waits, timeout=self.sweep_seconds, return_when="FIRST_COMPLETED")
            finally:
                for waiter in waits:
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter

    def may_transfer(self, call_sid: str, business: Business) -> bool:
        """Whether the call may be transferred now: within the emergency budget (a transfer
        counted apart from the alerts; none past the budget — the caller stays with the
        receptionist and the owner is told) and the call's one transfer not made yet."""
        if not business.on_call_phone:
            return False
        if self._over_budget(OutboundKind.TRANSFER, business, call_sid) is not None:
            return False
        return self.store.claim_transfer(call_sid)

    async def transfer(self, call_sid: str, business: Business) -> bool:
        """Connect the live caller to the on-call phone (once per call)."""
        if self.twilio is None or not business.on_call_phone:
            return False
        self._loop = asyncio.get_running_loop()
        if not await asyncio.to_thread(self.may_transfer, call_sid, business):
            return False
        document = twiml.transfer(
            number=business.on_call_phone, message=TRANSFER_MESSAGE, caller_id=business.number
        )
        await self.twilio.redirect(call_sid, document)
        return True
