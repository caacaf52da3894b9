"""pytest fixtures for the twilio stand-in (registered by tests/conftest.py)."""
