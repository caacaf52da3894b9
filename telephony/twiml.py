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
        # A keyword argument, so VoiceResponse serialises it; set as an attribute it was not.
        hints=hints or None,
    )
    gather.say(xml_safe(prompt), voice=voice, language=language)
    response.append(gather)
    response.redirect(action, method="POST")
    return str(response)


def dial_business(
    *,
    number: str,
    timeout: int,
    action: str,
    screen_url: str,
    caller_id: str | None = None,
) -> str:
    """Ring the business first during opening hours; Twilio posts ``action`` when it ends.

    The office leg is screened (``<Number url>``): whoever answers first hears "press 1 to
    take this call"; a voicemail presses nothing, so it never counts as answered."""
    response = VoiceResponse()
    dial = response.dial(
        timeout=timeout,
        action=action,
        method="POST",
        caller_id=caller_id,
        answer_on_bridge=True,  # the caller hears ringing while the office is screened
    )
    dial.number(number, url=screen_url, method="POST")
    return str(response)


def screen_office(*, business_name: str, accept_url: str) -> str:
    """The whisper on the office leg: a person presses 1 to take the call; anything else
    (a voicemail greeting, silence) hangs the office leg up and the receptionist answers."""
    response = VoiceResponse()
    gather = Gather(input="dtmf", num_digits=1, timeout=6, action=accept_url, method="POST")
    gather.say(xml_safe(f"Call for {business_name}. Press 1 to take this call."), voice=VOICE)
    response.append(gather)
    response.hangup()
    return str(response)


def accept_office(accepted: bool) -> str:
    """After the office pressed a key: an empty document connects the legs; a hangup
    releases the caller to the receptionist."""
    response = VoiceResponse()
    if not accepted:
        response.hangup()
    return str(response)


def transfer(*, number: str, message: str, caller_id: str | None = None) -> str:
    """Warm transfer: tell the caller, then connect them to the on-call phone."""
    response = VoiceResponse()
    response.say(message, voice=VOICE)
    dial = response.dial(timeout=25, caller_id=caller_id)
    dial.number(number)
    return str(response)
