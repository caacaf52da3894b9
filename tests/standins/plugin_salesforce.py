"""pytest fixtures for the salesforce stand-in (registered by tests/conftest.py)."""
