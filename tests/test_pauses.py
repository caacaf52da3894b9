"""Full garbage collections only when they stall no call, and a short GIL switch interval
(telephony/pauses.py).

The decisions are tested with a moved clock and a recording collector; the mechanism with
CPython's own collector (cyclic garbage in the oldest generation is left alone by automatic
collections and freed by ``check``); the wiring through the running service, with a call
streamed end to end."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from telephony import pauses
from telephony.services import LiveCalls
from tests.conftest import StartApp, wait_for
from tests.standins.twilio import TwilioStandin
from tests.test_conversation_e2e import openai_settings, twilio_settings
from tests.test_e2e_call import JOHN_EXTRACTION, JOHN_TURNS, run_john_call


def collections_seen(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "receptionist_gc_full_collection_seconds_count", {"reason": reason}
    )
    return value or 0.0


class Recorder:
    """Stands in for ``gc.collect`` / ``gc.freeze`` / the promotion count."""

    def __init__(self) -> None:
        self.collected: list[int] = []
        self.frozen = 0
        self.promoted = True
        self.now = 1000.0

    def collect(self, generation: int) -> int:
        self.collected.append(generation)
        self.promoted = False  # a full collection resets the count, as CPython's does
        return 0

    def freeze(self) -> None:
        self.frozen += 1


def policy(live: LiveCalls, rec: Recorder, max_interval: float = 600.0) -> pauses.FullCollections:
    return pauses.FullCollections(
        live,
        max_interval=max_interval,
        clock=lambda: rec.now,
        collect=rec.collect,
        freeze=rec.freeze,
        promoted=lambda: rec.promoted,
    )


@pytest.fixture
def installed() -> Iterator[None]:
    before = gc.get_threshold()
    pauses.install()
    try:
        yield
    finally:
        pauses.uninstall()
        assert gc.get_threshold() == before


def test_idle_process_collects_what_was_promoted_and_nothing_else() -> None:
    rec, live = Recorder(), LiveCalls()
    full = policy(live, rec)
    idle_before = collections_seen("idle")

    assert full.check() == "idle"
    assert rec.collected == [2]
    assert rec.frozen == 0  # no call has streamed yet: nothing of a call's to keep
    assert collections_seen("idle") == idle_before + 1

    # Nothing promoted since: an idle process does not walk its heap every second.
    assert full.check() is None
    assert rec.collected == [2]


def test_live_calls_hold_a_full_collection_until_the_interval_has_passed() -> None:
    rec, live = Recorder(), LiveCalls()
    full = policy(live, rec, max_interval=600)
    live.add("CA1")
    interval_before = collections_seen("interval")

    rec.now += 599
    assert full.check() is None
    assert rec.collected == []

    rec.now += 1  # ten minutes with calls live: collect anyway, cyclic garbage stays bounded
    assert full.check() == "interval"
    assert rec.collected == [2]
    assert rec.frozen == 0  # only an idle moment freezes
    assert collections_seen("interval") == interval_before + 1

    rec.promoted = True
    rec.now += 300  # the interval counts from the last full collection
    assert full.check() is None
    rec.now += 300
    assert full.check() == "interval"


def test_first_idle_moment_after_a_call_freezes_once() -> None:
    rec, live = Recorder(), LiveCalls()
    full = policy(live, rec)
    live.add("CA1")
    assert full.check() is None  # the call is live
    live.discard("CA1")

    assert full.check() == "idle"
    assert rec.frozen == 1

    live.add("CA2")
    live.discard("CA2")
    rec.promoted = True
    assert full.check() == "idle"
    assert rec.frozen == 1  # once: later calls' leftovers are collected, never frozen
    assert rec.collected == [2, 2]


def test_install_turns_automatic_full_collections_off_until_the_last_uninstall() -> None:
    before = gc.get_threshold()
    switch = sys.getswitchinterval()
    pauses.install()
    try:
        assert not pauses.automatic_full_collections()
        assert gc.get_threshold()[:2] == before[:2]  # young generations as CPython sets them
        assert sys.getswitchinterval() == pytest.approx(pauses.SWITCH_INTERVAL_SECONDS)
        pauses.install()  # a second app in the same process
        pauses.uninstall()
        assert not pauses.automatic_full_collections()
    finally:
        pauses.uninstall()
    assert gc.get_threshold() == before
    assert sys.getswitchinterval() == switch
    assert pauses.automatic_full_collections()
    pauses.uninstall()  # more uninstalls than installs change nothing
    assert gc.get_threshold() == before
    assert sys.getswitchinterval() == switch


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cyclic_garbage_in_oldest_generation() -> tuple[weakref.ref[Node], list[list[int]]]:
    """A dead cycle in the oldest generation, behind enough promoted objects (a quarter of
    that generation) that CPython's own rule would run a full collection soon."""
    gc.collect()
    backlog: list[list[int]] = [[] for _ in range(len(gc.get_objects(generation=2)) // 4 + 1000)]
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    gc.collect(1)  # survivors of a generation-1 collection move to the oldest generation
    assert any(o is a for o in gc.get_objects(generation=2))
    del a, b
    return gone, backlog


def allocate_like_calls(young_collections: int = 15) -> int:
    """Allocate containers, keeping them (CPython counts allocations net of frees), until
    CPython has run this many generation-1 collections of its own; returns how many full
    collections it ran meanwhile."""
    stats = gc.get_stats()
    gen1, full = stats[1]["collections"], stats[2]["collections"]
    kept: list[list[int]] = []
    for _ in range(5_000_000):
        kept.append([])
        if len(kept) % 1000 == 0:
            stats = gc.get_stats()
            if stats[1]["collections"] + stats[2]["collections"] >= gen1 + full + young_collections:
                break
    else:
        raise AssertionError("CPython ran too few young collections")
    return int(gc.get_stats()[2]["collections"] - full)


def test_without_the_policy_cpython_walks_the_heap_on_its_own() -> None:
    """The control for the next test: the same allocations, CPython's thresholds."""
    assert pauses.automatic_full_collections()
    gone, backlog = cyclic_garbage_in_oldest_generation()
    assert allocate_like_calls() >= 1
    assert gone() is None
    del backlog


def test_cyclic_garbage_waits_in_the_oldest_generation_for_check(installed: None) -> None:
    gone, backlog = cyclic_garbage_in_oldest_generation()
    assert allocate_like_calls() == 0  # young collections, as calls make them: no full one
    assert gone() is not None

    full = pauses.FullCollections(LiveCalls())
    assert full.check() == "idle"
    assert gone() is None
    del backlog


def test_nothing_promoted_means_no_collection(installed: None) -> None:
    gc.collect()  # the count of generation-1 collections since the last full one is now 0
    full = pauses.FullCollections(LiveCalls())
    assert gc.get_count()[2] == 0
    assert full.check() is None


async def test_running_service_collects_after_its_last_call_ends(
    start_app: StartApp, twilio_standin: TwilioStandin, make_realtime_standin
) -> None:  # type: ignore[no-untyped-def]
    threshold, switch = gc.get_threshold(), sys.getswitchinterval()
    ai = await make_realtime_standin(turns=JOHN_TURNS, extraction=JOHN_EXTRACTION)
    twilio_standin.agent_busy = ai.responding
    app = await start_app(**twilio_settings(twilio_standin), **openai_settings(ai))
    assert not pauses.automatic_full_collections()
    assert sys.getswitchinterval() == pytest.approx(pauses.SWITCH_INTERVAL_SECONDS)
    full: pauses.FullCollections = app.app.state.collections
    assert full.live_calls is app.services.live_calls
    assert not full.refrozen
    idle_before = collections_seen("idle")

    result = await run_john_call(app, twilio_standin)
    assert result.script_timeouts == []
    assert app.services.live_calls.streamed
    # The call's stream has ended: the next check finds no stream live and freezes once.
    await wait_for(lambda: full.refrozen)
    assert collections_seen("idle") >= idle_before + 1

    await app.stop()
    assert gc.get_threshold() == threshold
    assert sys.getswitchinterval() == switch
