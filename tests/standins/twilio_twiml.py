"""TwiML documents parsed into verb values, strictly (what Twilio's parser would reject, we
reject with Twilio's error code).

Supported: ``<Say>``, ``<Play>``, ``<Pause>``, ``<Gather>`` (nesting Say/Play/Pause),
``<Redirect>``, ``<Dial>`` (number text or ``<Number>``, with its screening ``url``),
``<Hangup>``, ``<Reject>``,
``<Connect><Stream>`` with ``<Parameter>``s.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit


class TwimlError(Exception):
    """The document would make Twilio stop the call with an application error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class SayVerb:
    text: str
    voice: str = "man"  # Twilio's default voice
    language: str = "en-US"


@dataclass(frozen=True, slots=True)
class PlayVerb:
    url: str


@dataclass(frozen=True, slots=True)
class PauseVerb:
    length_s: int


@dataclass(frozen=True, slots=True)
class GatherVerb:
    input: frozenset[str]
    action: str | None
    method: str
    timeout_s: int
    speech_timeout: str
    action_on_empty_result: bool
    prompts: tuple[SayVerb | PlayVerb | PauseVerb, ...]
    language: str = "en-US"  # the speech recognition language
    num_digits: int | None = None


@dataclass(frozen=True, slots=True)
class RedirectVerb:
    url: str
    method: str


@dataclass(frozen=True, slots=True)
class DialVerb:
    number: str
    action: str | None
    method: str
    timeout_s: int
    screen_url: str | None = None
    """``<Number url>``: TwiML run on the called party's leg after it answers, before the
    two are connected (call screening / whisper)."""
    screen_method: str = "POST"


@dataclass(frozen=True, slots=True)
class HangupVerb:
    pass


@dataclass(frozen=True, slots=True)
class RejectVerb:
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectStreamVerb:
    url: str
    parameters: tuple[tuple[str, str], ...]
    action: str | None
    method: str


Verb = (
    SayVerb
    | PlayVerb
    | PauseVerb
    | GatherVerb
    | RedirectVerb
    | DialVerb
    | HangupVerb
    | RejectVerb
    | ConnectStreamVerb
)

_DOCUMENT_PARSE_FAILURE = 12100
_SCHEMA_VALIDATION = 12200
_STREAM_URL_SCHEME = 31922


def parse_twiml(text: str) -> list[Verb]:
    """Parse one TwiML document into its verbs, in order."""
    try:
        root = ET.fromstring(text)  # noqa: S314 - the app under test is trusted
    except ET.ParseError as exc:
        raise TwimlError(_DOCUMENT_PARSE_FAILURE, f"Document parse failure: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(_SCHEMA_VALIDATION, f"root element is <{root.tag}>, not <Response>")
    return [_verb(element) for element in root]


def _verb(el: ET.Element) -> Verb:
    match el.tag:
        case "Say":
            return SayVerb(
                text=(el.text or "").strip(),
                voice=el.get("voice", "man"),
                language=el.get("language", "en-US"),
            )
        case "Play":
            return PlayVerb(url=(el.text or "").strip())
        case "Pause":
            return PauseVerb(length_s=_int_attr(el, "length", 1))
        case "Gather":
            return _gather(el)
        case "Redirect":
            url = (el.text or "").strip()
            if not url:
                raise TwimlError(_SCHEMA_VALIDATION, "<Redirect> without a URL")
            return RedirectVerb(url=url, method=_method(el))
        case "Dial":
            return _dial(el)
        case "Hangup":
            return HangupVerb()
        case "Reject":
            return RejectVerb(reason=el.get("reason", "rejected"))
        case "Connect":
            return _connect(el)
        case _:
            raise TwimlError(_SCHEMA_VALIDATION, f"unsupported verb <{el.tag}>")


def _gather(el: ET.Element) -> GatherVerb:
    inputs = frozenset(el.get("input", "dtmf").split())
    if not inputs or not inputs <= {"dtmf", "speech"}:
        raise TwimlError(_SCHEMA_VALIDATION, f"<Gather input={el.get('input')!r}>")
    prompts: list[SayVerb | PlayVerb | PauseVerb] = []
    for child in el:
        verb = _verb(child)
        if not isinstance(verb, SayVerb | PlayVerb | PauseVerb):
            raise TwimlError(_SCHEMA_VALIDATION, f"<{child.tag}> cannot be nested in <Gather>")
        prompts.append(verb)
    return GatherVerb(
        input=inputs,
        action=el.get("action"),
        method=_method(el),
        timeout_s=_int_attr(el, "timeout", 5),
        speech_timeout=el.get("speechTimeout", "timeout"),
        action_on_empty_result=_bool_attr(el, "actionOnEmptyResult"),
        prompts=tuple(prompts),
        language=el.get("language", "en-US"),
        num_digits=_int_attr(el, "numDigits", 0) or None,
    )


def _dial(el: ET.Element) -> DialVerb:
    number = (el.text or "").strip()
    screen_url: str | None = None
    screen_method = "POST"
    for child in el:
        if child.tag != "Number":
            raise TwimlError(_SCHEMA_VALIDATION, f"<Dial><{child.tag}> is not supported here")
        number = (child.text or "").strip()
        screen_url = child.get("url")
        screen_method = _method(child)
    if not number:
        raise TwimlError(_SCHEMA_VALIDATION, "<Dial> without a number")
    return DialVerb(
        number=number,
        action=el.get("action"),
        method=_method(el),
        timeout_s=_int_attr(el, "timeout", 30),
        screen_url=screen_url,
        screen_method=screen_method,
    )


def _connect(el: ET.Element) -> ConnectStreamVerb:
    children = list(el)
    if len(children) != 1 or children[0].tag != "Stream":
        raise TwimlError(_SCHEMA_VALIDATION, "<Connect> must hold exactly one <Stream>")
    stream = children[0]
    url = stream.get("url", "")
    parts = urlsplit(url)
    # Twilio connects Media Streams over wss only and documents that query strings are not
    # supported on the url (custom values go in <Parameter>): both are rejected here.
    if parts.scheme != "wss" or not parts.netloc:
        raise TwimlError(_STREAM_URL_SCHEME, f"<Stream url={url!r}>: only absolute wss:// URLs")
    if parts.query:
        raise TwimlError(_STREAM_URL_SCHEME, f"<Stream url={url!r}>: no query string allowed")
    parameters: list[tuple[str, str]] = []
    for child in stream:
        if child.tag != "Parameter" or child.get("name") is None:
            raise TwimlError(_SCHEMA_VALIDATION, f"<Stream><{child.tag}> is not a <Parameter>")
        parameters.append((child.get("name", ""), child.get("value", "")))
    return ConnectStreamVerb(
        url=url, parameters=tuple(parameters), action=el.get("action"), method=_method(el)
    )


def _method(el: ET.Element) -> str:
    method = el.get("method", "POST").upper()
    if method not in {"GET", "POST"}:
        raise TwimlError(_SCHEMA_VALIDATION, f"<{el.tag} method={method!r}>")
    return method


def _int_attr(el: ET.Element, name: str, default: int) -> int:
    raw = el.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise TwimlError(_SCHEMA_VALIDATION, f"<{el.tag} {name}={raw!r}>") from exc


def _bool_attr(el: ET.Element, name: str) -> bool:
    return el.get(name, "false").lower() == "true"


def resolve_url(url: str, document_url: str | None) -> str:
    """An action/redirect URL made absolute against the URL the document came from."""
    if urlsplit(url).scheme:
        return url
    if document_url is None:
        raise TwimlError(_SCHEMA_VALIDATION, f"relative URL {url!r} in TwiML with no base URL")
    return urljoin(document_url, url)
