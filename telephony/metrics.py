"""Prometheus metrics served at ``GET /metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CALLS = Counter("receptionist_calls_total", "Calls answered", ["mode"])
STREAMS = Counter("receptionist_media_streams_total", "Media streams bridged to the Realtime API")
WEBHOOKS_REJECTED = Counter(
    "receptionist_webhooks_rejected_total", "Twilio requests refused", ["reason"]
)
STREAMS_REFUSED = Counter(
    "receptionist_media_streams_refused_total",
    "Media stream starts refused (bad token, call not live, another business, second stream)",
)
OUTBOUND_REFUSED = Counter(
    "receptionist_outbound_refused_total",
    "Texts and calls not sent: destination not allowed or a rate limit reached",
    ["kind", "reason"],
)
BINARY_FRAMES = Counter(
    "receptionist_stream_binary_frames_total", "Binary websocket frames ignored on media streams"
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
PROGRESS_SAVE_FAILURES = Counter(
    "receptionist_progress_save_failures_total",
    "Routine saves of a live call's transcript that failed (retried on the next tick)",
)
FINALIZED = Counter("receptionist_calls_finalized_total", "Calls finalized into a summary")
DELIVERY_BACKLOG = Gauge(
    "receptionist_delivery_backlog", "CRM deliveries waiting (pending or being delivered)"
)
DEAD_LETTERS = Gauge(
    "receptionist_dead_letters", "CRM deliveries dead-lettered and waiting for staff"
)
DELIVERY_WAITS = Counter(
    "receptionist_delivery_waits_total",
    "CRM deliveries put back because another delivery of the same caller was under way",
)
HANGUP_TO_CRM = Histogram(
    "receptionist_hangup_to_crm_seconds",
    "From the end of a call to its delivery in the CRM",
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 900, 3600, 6 * 3600, 24 * 3600),
)
OWNER_ALERTS = Counter("receptionist_owner_alerts_total", "Owner summaries and alerts", ["kind"])
FULL_COLLECTIONS = Histogram(
    "receptionist_gc_full_collection_seconds",
    "Full garbage collections the service ran (reason: idle, or interval with calls live)",
    ["reason"],
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1),
)
