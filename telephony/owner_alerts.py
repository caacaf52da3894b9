"""Telling a business's owner what came in: an after-call summary, and an alert when a CRM
delivery is dead-lettered, by SMS (Twilio, from the business's own number) and/or e-mail
(SMTP), per the business's ``owner_phone`` / ``owner_email``.

Everything here is blocking and never raises: a failed alert is logged (with the CallSid,
never the caller's words) and the call is not affected. Bodies are bounded; links and
markup a caller may have said are stripped from the need line.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from agent.business import Business
from agent.summary import CallSummary
from telephony.settings import Settings

log = logging.getLogger(__name__)

SMS_MAX_CHARS = 320
_LINKISH = re.compile(r"(?i)\b(?:https?://|www\.)\S+|\b\S+\.(?:com|net|org|io|ru|info|biz|xyz)\S*")

SendSms = Callable[[str, str, str], None]  # (to, from, body)


def _clean(text: str, limit: int) -> str:
    text = _LINKISH.sub("[link removed]", " ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    username: str
    password: str
    sender: str
    security: str
    timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig | None:
        if not settings.smtp_host:
            return None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value(),
            sender=settings.smtp_from or f"receptionist@{settings.smtp_host}",
            security=settings.smtp_security,
            timeout=settings.smtp_timeout_seconds,
        )


def send_email(config: SmtpConfig, to: str, subject: str, body: str) -> None:
    """One plain-text message through the configured SMTP server (blocking)."""
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=config.sender.rpartition("@")[2] or None)
    message.set_content(body)
    context = ssl.create_default_context()
    server: smtplib.SMTP
    if config.security == "tls":
        server = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout, context=context)
    else:
        server = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
    with server:
        if config.security == "starttls":
            server.starttls(context=context)
        if config.username:
            server.login(config.username, config.password)
        server.send_message(message)


class OwnerAlerts:
    """Sends owner summaries and dead-letter alerts for the configured businesses."""

    def __init__(
        self,
        *,
        public_base_url: str,
        smtp: SmtpConfig | None,
        send_sms: SendSms | None,
    ) -> None:
        self.public_base_url = public_base_url.rstrip("/")
        self.smtp = smtp
        self.send_sms = send_sms

    def staff_link(self, call_sid: str) -> str:
        return f"{self.public_base_url}/calls/{call_sid}"

    def after_call(self, business: Business, summary: CallSummary) -> None:
        if not business.owner_summaries:
            return
        flag = "EMERGENCY " if summary.is_emergency else ""
        who = summary.display_name
        phone = summary.callback_phone or summary.caller_phone or "no number"
        need = _clean(summary.need or "need not recorded", 160)
        callback = (
            f"Callback requested, due {summary.callback_due:%a %b %d}."
            if summary.callback_requested and summary.callback_due
            else ("Callback requested." if summary.callback_requested else "No callback asked.")
        )
        sms = (
            f"{flag}{business.name}: new call from {who}, {phone}. Urgency {summary.urgency} "
            f"({summary.rating}). {need}. {callback} {self.staff_link(summary.call_sid)}"
        )
        subject = f"[{business.name}] {flag}New call: {who} - urgency {summary.urgency}"
        lines = [
            f"{who} called {business.name}.",
            "",
            f"Phone:     {phone}",
            f"Need:      {need}",
            f"Urgency:   {summary.urgency} ({summary.rating}){' - EMERGENCY' if flag else ''}",
            f"Callback:  {callback}",
            f"Address:   {_clean(summary.service_address or '-', 200)}",
            "",
            f"Details and transcript: {self.staff_link(summary.call_sid)}",
        ]
        self._send(business, summary.call_sid, "summary", sms, subject, "\n".join(lines))

    def dead_letter(self, business: Business, call_sid: str, reason: str) -> None:
        link = self.staff_link(call_sid)
        sms = (
            f"{business.name}: a call could not be saved to the CRM and needs a look. "
            f"Retry it from {link}"
        )
        subject = f"[{business.name}] A call was not saved to the CRM"
        body = (
            f"The receptionist could not deliver call {call_sid} to the CRM and stopped "
            f"retrying.\n\nReason: {_clean(reason, 500)}\n\nOpen the call and press Retry "
            f"once the cause is fixed: {link}\n"
        )
        self._send(business, call_sid, "dead-letter alert", sms, subject, body)

    def alerts_held(self, business: Business, call_sid: str, budget: int) -> None:
        """The emergency budget (``EMERGENCY_ALERTS_PER_BUSINESS_PER_HOUR``) is used up:
        alerts are held and go out as the window allows. Sent once per window; names the
        call that was held, never what its caller said."""
        link = self.staff_link(call_sid)
        sms = (
            f"{business.name}: {budget} emergency alerts in the last hour. Further alerts "
            f"(first: call {call_sid}) are held and sent as the hour allows; warm transfers "
            f"wait too. Check the calls: {link}"
        )
        subject = f"[{business.name}] Emergency alerts held: {budget} in an hour reached"
        body = (
            f"The receptionist has sent {budget} emergency alerts to the on-call phone of "
            f"{business.name} in the last hour, its limit (EMERGENCY_ALERTS_PER_BUSINESS_PER_"
            f"HOUR). Further alerts, the first for call {call_sid}, are held and sent as soon "
            f"as the hour allows; warm transfers to the on-call phone wait too.\n\n"
            f"A storm night, or a flood of fake emergencies: look at the emergency calls on "
            f"the staff pages and call back the real ones now: {link}\n"
        )
        self._send(business, call_sid, "alerts-held notice", sms, subject, body)

    def alert_failed(self, business: Business, call_sid: str, attempts: int, reason: str) -> None:
        """An emergency alert gave up after ``attempts`` tries. ``reason`` is ours (an HTTP
        status and Twilio error code), never the caller's words."""
        link = self.staff_link(call_sid)
        sms = (
            f"{business.name}: EMERGENCY call {call_sid} could not be texted to the on-call "
            f"phone ({attempts} tries). Call the caller back now: {link}"
        )
        subject = f"[{business.name}] EMERGENCY alert not delivered: call {call_sid}"
        body = (
            f"The receptionist could not text the on-call phone about emergency call "
            f"{call_sid} and stopped after {attempts} tries.\n\nReason: {_clean(reason, 200)}"
            f"\n\nThe caller is waiting for a call back. Open the call and call them now: "
            f"{link}\n"
        )
        self._send(business, call_sid, "alert-failed notice", sms, subject, body)

    def _send(
        self, business: Business, call_sid: str, what: str, sms: str, subject: str, body: str
    ) -> None:
        if business.owner_phone and self.send_sms is not None:
            try:
                self.send_sms(business.owner_phone, business.number, sms[:SMS_MAX_CHARS])
                log.info("call %s: owner %s sent by SMS", call_sid, what)
            except Exception as exc:  # an alert must never break the call or the worker
                log.error("call %s: owner %s SMS failed (%s)", call_sid, what, type(exc).__name__)
        if business.owner_email and self.smtp is not None:
            try:
                send_email(self.smtp, business.owner_email, subject, body)
                log.info("call %s: owner %s e-mailed", call_sid, what)
            except (OSError, smtplib.SMTPException) as exc:
                log.error(
                    "call %s: owner %s e-mail failed (%s)", call_sid, what, type(exc).__name__
                )
