"""Log set-up for the CLI: plain text by default, one JSON object per line with
``LOG_FORMAT=json`` (for journald/Loki/CloudWatch), the call's CallSid as its own field.

Every log line about a call names its CallSid (the project's rule: log ids, never caller
words or numbers), so the field is read from the message; a record may also carry it
explicitly as ``extra={"call_sid": ...}``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

CALL_SID = re.compile(r"\bCA[0-9a-fA-F]{32}\b")
NOISY = (
    "twilio.http_client",
    "httpx",
    "httpcore",
    "httpx2",  # the openai SDK's HTTP client: a line per request at INFO
    "httpcore2",
    "openai",
    "websockets",
    "alembic.runtime.plugins",
    "alembic.runtime.migration",
)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "call_sid"?, "exception"?}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        call_sid = getattr(record, "call_sid", None)
        if call_sid is None:
            match = CALL_SID.search(message)
            call_sid = match.group(0) if match else None
        if call_sid:
            entry["call_sid"] = call_sid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(*, verbose: bool, log_format: str) -> None:
    """Root handler on stderr in the chosen format; chatty libraries and uvicorn's start-up
    banner only at WARNING unless ``verbose``."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not verbose:
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
