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
