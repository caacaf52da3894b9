"""Prometheus metrics served at ``GET /metrics``."""

from __future__ import annotations

from prometheus_client import Counter

CALLS = Counter("receptionist_calls_total", "Calls answered", ["mode"])
STREAMS = Counter("receptionist_media_streams_total", "Media streams bridged to the Realtime API")
WEBHOOKS_REJECTED = Counter(
    "receptionist_webhooks_rejected_total", "Twilio requests refused", ["reason"]
)
STREAM_VIOLATIONS = Counter(
    "receptionist_stream_violations_total", "Malformed or unknown Media Streams frames ignored"
)
REALTIME_FAILURES = Counter(
    "receptionist_realtime_failures_total", "Realtime connections that failed", ["stage"]
)
BARGE_INS = Counter("receptionist_barge_ins_total", "Times a caller interrupted the agent")
EMERGENCIES = Counter("receptionist_emergencies_total", "Emergencies flagged during calls")
EMERGENCY_ALERTS = Counter(
    "receptionist_emergency_alerts_total", "Emergency texts sent to on-call phones"
)
MISSED_CALLS = Counter("receptionist_missed_calls_total", "Calls recorded as missed calls")
FINALIZED = Counter("receptionist_calls_finalized_total", "Calls finalized into a summary")
