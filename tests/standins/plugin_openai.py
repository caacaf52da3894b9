"""pytest fixtures for the openai stand-in (registered by tests/conftest.py).

- ``realtime_standin``: a started ``RealtimeStandin`` with an empty script; set ``.turns``,
  ``.extraction``, ``.drop_after_turns`` ... before the call starts.
- ``make_realtime_standin``: a factory, ``await make_realtime_standin(turns=[...], ...)``,
  for a stand-in built with its script (stopped at teardown).

At teardown each stand-in must have no internal errors (a server event it built that the
real API would never send, or a crashed handler).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.standins.openai_realtime import RealtimeStandin

MakeRealtimeStandin = Callable[..., Awaitable[RealtimeStandin]]


@pytest.fixture
async def make_realtime_standin() -> AsyncIterator[MakeRealtimeStandin]:
    started: list[RealtimeStandin] = []

    async def make(**kwargs: Any) -> RealtimeStandin:
        standin = RealtimeStandin(**kwargs)
        await standin.start()
        started.append(standin)
        return standin

    yield make
    for standin in started:
        await standin.stop()
    for standin in started:
        assert standin.internal_errors == [], standin.internal_errors


@pytest.fixture
async def realtime_standin(make_realtime_standin: MakeRealtimeStandin) -> RealtimeStandin:
    return await make_realtime_standin()
