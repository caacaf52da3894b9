"""What can stop the event loop that relays every live call's audio, and how a serving
process keeps those stops short: the cycle collector, and threads holding the GIL.

**The cycle collector.** CPython's stops the world. Its young generations are cheap (at
most a few milliseconds here), but a full collection walks every tracked object that is not
frozen. With 100 live calls that heap is some 50,000 objects, and one automatic full
collection took 18–80 ms on the benchmark machine. Every live call's audio waits that long:
each such pause made 130–470 frames more than 20 ms late in ``benchmarks/load.py``. Python
3.11 triggers one whenever a quarter more objects have reached the oldest generation since
the last, which with calls coming and going is every half-minute or so. So a serving
process:

- freezes what start-up built (``gc.freeze``), after importing the SDK parts a call uses, so
  that no collection walks modules and types;
- freezes once more after the first call, at the first moment no media stream is live: what
  a call loads on first use (SDK modules, validators, connection pools) is long-lived too;
- runs full collections itself, never automatically: when no media stream is live (checked
  every second, and only if younger collections have moved objects into the oldest
  generation since the last full one), or when the last full collection was over
  ``MAX_INTERVAL_SECONDS`` ago, calls or not. A process that is never idle still frees its
  cyclic garbage every ten minutes; an after-hours line, idle most of the night, frees it
  after nearly every call at no cost to any caller.

Young collections stay automatic, with CPython's thresholds.

**The GIL.** Work in worker threads (database calls, CRM deliveries, reading a finished
call's words) holds the GIL while it runs Python code. Each time the event loop gives the
GIL up (every wait for the network, every log line written) such a thread may take it, and
CPython hands it back only after its switch interval, 5 ms by default. A loop turn that gives
the GIL up several times can lose 20 ms that way. The serving process uses
``SWITCH_INTERVAL_SECONDS`` (1 ms): ``benchmarks/loop_stalls.py`` measures the loop's lag
while calls end with each.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from telephony import metrics

log = logging.getLogger(__name__)

IDLE_CHECK_SECONDS = 1.0
SWITCH_INTERVAL_SECONDS = 0.001
MAX_INTERVAL_SECONDS = 600.0
_NEVER = 2**31 - 1
"""A generation-2 threshold no count reaches: automatic full collections are off."""

_installed = 0
_saved_threshold: tuple[int, int, int] | None = None
_saved_switch_interval: float | None = None


def warm_up(openai_client: Any | None) -> None:
    """Import now what the first call would import on first use, so it is frozen with the
    rest of start-up and the first call does not wait for it (some 300 modules of the SDK's
    Realtime, chat and speech resources)."""
    import websockets.asyncio.client  # noqa: F401  (the SDK's Realtime connection)

    if openai_client is not None:
        _ = openai_client.realtime, openai_client.chat.completions, openai_client.audio.speech


def install() -> None:
    """Freeze start-up's objects, turn automatic full collections off and shorten the GIL's
    switch interval (until the last ``uninstall``: several apps may run in one process, as
    in the tests)."""
    global _installed, _saved_threshold, _saved_switch_interval
    gc.freeze()
    if _installed == 0:
        _saved_threshold = gc.get_threshold()
        young, middle, _ = _saved_threshold
        gc.set_threshold(young, middle, _NEVER)
        _saved_switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    _installed += 1


def uninstall() -> None:
    """Give CPython back its own full collections and switch interval (what ``install``
    found)."""
    global _installed
    if _installed == 0:
        return
    _installed -= 1
    if _installed == 0:
        if _saved_threshold is not None:
            gc.set_threshold(*_saved_threshold)
        if _saved_switch_interval is not None:
            sys.setswitchinterval(_saved_switch_interval)


def automatic_full_collections() -> bool:
    return gc.get_threshold()[2] != _NEVER


def _promoted_since_full() -> bool:
    """Whether a generation-1 collection has run since the last full one: only then can
    there be anything new in the oldest generation."""
    return gc.get_count()[2] > 0


class LiveStreams(Protocol):
    """The media streams a process serves now; ``streamed`` once it has served any."""

    streamed: bool

    def __len__(self) -> int: ...


class FullCollections:
    """Decides when a full collection runs (see the module's docstring)."""

    def __init__(
        self,
        live_calls: LiveStreams,
        *,
        max_interval: float = MAX_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        collect: Callable[[int], int] = gc.collect,
        freeze: Callable[[], None] = gc.freeze,
        promoted: Callable[[], bool] = _promoted_since_full,
    ) -> None:
        self.live_calls = live_calls
        self.max_interval = max_interval
        self.clock = clock
        self._collect = collect
        self._freeze = freeze
        self._promoted = promoted
        self.last = clock()
        self.refrozen = False

    def due(self) -> str | None:
        """``"idle"``, ``"interval"`` or None (no full collection now)."""
        if not self._promoted():
            return None
        if len(self.live_calls) == 0:
            return "idle"
        if self.clock() - self.last >= self.max_interval:
            return "interval"
        return None

    def check(self) -> str | None:
        """Run a full collection if one is due; returns its reason."""
        reason = self.due()
        if reason is None:
            return None
        started = time.perf_counter()
        found = self._collect(2)
        if reason == "idle" and self.live_calls.streamed and not self.refrozen:
            self._freeze()  # what the first call loaded for good (see the module docstring)
            self.refrozen = True
        took = time.perf_counter() - started
        self.last = self.clock()
        metrics.FULL_COLLECTIONS.labels(reason).observe(took)
        log.debug("full collection (%s): %d unreachable, %.1f ms", reason, found, took * 1000)
        return reason
