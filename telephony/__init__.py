"""The phone edge: FastAPI app, Twilio webhooks and Media Streams, the per-call bridge, CLI."""
