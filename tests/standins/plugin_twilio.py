"""pytest fixtures for the twilio stand-in (registered by tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.standins.twilio import TwilioStandin


@pytest.fixture
async def twilio_standin() -> AsyncIterator[TwilioStandin]:
    """A started `TwilioStandin` (REST API listening on ``api_base_url``), stopped after."""
    async with TwilioStandin() as standin:
        yield standin
