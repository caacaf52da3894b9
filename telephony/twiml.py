"""TwiML documents the service answers with, built with twilio's ``VoiceResponse``."""

from __future__ import annotations

import re

from twilio.twiml.voice_response import Connect, Gather, VoiceResponse

VOICE = "Polly.Joanna"

# Characters XML 1.0 cannot carry; a caller ID or a caller's words containing one would
# make the whole document unreadable to Twilio.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    return _NOT_XML.sub("", text)


def connect_stream(*, stream_url: str, parameters: dict[str, str], after_stream_url: str) -> str:
    """Bridge the call to our Media Stream; when the stream ends, Twilio moves on to the
    next verb — a redirect that lets the scripted intake take over if the AI dropped."""
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=stream_url)
    for name, value in parameters.items():
        stream.parameter(name=xml_safe(name), value=xml_safe(value))
    response.append(connect)
    response.redirect(after_stream_url, method="POST")
    return str(response)


def say_and_hang_up(message: str, *, voice: str = VOICE, language: str | None = None) -> str:
    response = VoiceResponse()
    response.say(xml_safe(message), voice=voice, language=language)
    response.hangup()
    return str(response)


def reject() -> str:
    """Refuse the call before answering (the caller hears a busy signal)."""
    response = VoiceResponse()
    response.reject(reason="busy")
    return str(response)


def hang_up() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


def gather_speech(
    *,
    prompt: str,
    action: str,
    hints: str = "",
    preface: str | None = None,
    language: str = "en-US",
    voice: str = VOICE,
    keys: bool = False,
) -> str:
    """One scripted-intake step: say ``prompt`` and listen for speech (and one key press
    when ``keys``: the language choice); on silence Twilio posts the action with no
    SpeechResult, so the intake decides what to do next."""
    response = VoiceResponse()
    if preface:
        response.say(xml_safe(preface), voice=voice, language=language)
    gather = Gather(
        input="speech dtmf" if keys else "speech",
        num_digits=1 if keys else None,
        action=action,
        method="POST",
        speech_timeout="auto",
        timeout=6,
        language=language,
        action_on_empty_result=True,
    )
    if hints:
        gather.hints = hints
    gather.say(xml_safe(prompt), voice=voice, language=language)
    response.append(gather)
    response.redirect(action, method="POST")
    return str(response)


def dial_business(*, number: str, timeout: int, action: str, caller_id: str | None = None) -> str:
    """Ring the business first during opening hours; Twilio posts ``action`` when it ends."""
    response = VoiceResponse()
    dial = response.dial(timeout=timeout, action=action, method="POST", caller_id=caller_id)
    dial.number(number)
    return str(response)


def transfer(*, number: str, message: str, caller_id: str | None = None) -> str:
    """Warm transfer: tell the caller, then connect them to the on-call phone."""
    response = VoiceResponse()
    response.say(message, voice=VOICE)
    dial = response.dial(timeout=25, caller_id=caller_id)
    dial.number(number)
    return str(response)
