"""pytest fixtures for the openai stand-in (registered by tests/conftest.py)."""
