"""Group commit of live calls' progress (``telephony.progress``, ``Store.save_progress_many``).

Routine saves of several calls wait for each other and land in one transaction; a save
that must land now takes the waiting ones with it; a failing group falls back to saving
each call alone, so one bad row fails only its own call; a caller that stops waiting does
not unwrite its save; a stopped writer leaves nobody waiting. The store's batched write
keeps ``save_progress``'s rules for every row (live: written, bookkeeping kept; finalized:
longer transcripts kept for an amendment; anything else: ignored).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import event

from agent.summary import CallSummary, TranscriptTurn
from crm.store import AMENDMENT_PENDING, CallRecord, ProgressSnapshot, Store
from telephony.progress import ProgressWriter

LONG = 3600.0
"""A slot nothing in these tests waits out: a group starts only when a save asks for it."""


def snapshot(call_sid: str, *said: str) -> ProgressSnapshot:
    turns = [TranscriptTurn(speaker="caller", text=t, start=float(i)) for i, t in enumerate(said)]
    return ProgressSnapshot(call_sid, turns, {"need": said[-1] if said else ""})


class GroupRecorder:
    """A store that records each group it is asked to write, and fails where told."""

    def __init__(self, *, failing: str = "") -> None:
        self.groups: list[list[str]] = []
        self.failing = failing
        self.loop_thread = threading.current_thread()
        self.on_loop = False

    def save_progress_many(self, snapshots: Sequence[ProgressSnapshot]) -> None:
        self.on_loop |= threading.current_thread() is self.loop_thread
        sids = [s.call_sid for s in snapshots]
        if self.failing in sids:
            raise RuntimeError(f"cannot write {self.failing}")
        self.groups.append(sids)


async def test_routine_saves_wait_for_each_other_and_land_in_one_group() -> None:
    store = GroupRecorder()
    writer = ProgressWriter(store, slot=LONG)
    # Two routine saves wait for the slot; the third must land now and takes them along.
    await asyncio.gather(
        writer.save(snapshot("CA1", "hello")),
        writer.save(snapshot("CA2", "my sink leaks")),
        writer.save(snapshot("CA3", "bye"), now=True),
    )
    assert store.groups == [["CA1", "CA2", "CA3"]]
    assert not store.on_loop  # a worker thread, never the event loop


async def test_a_routine_save_alone_is_written_when_its_slot_ends() -> None:
    store = GroupRecorder()
    writer = ProgressWriter(store, slot=0.01)
    await writer.save(snapshot("CA1", "hello"))
    await writer.save(snapshot("CA1", "hello", "again"))
    assert store.groups == [["CA1"], ["CA1"]]


async def test_a_save_that_comes_while_a_group_is_written_goes_in_the_next_group() -> None:
    entered, release = threading.Event(), threading.Event()

    class SlowStore(GroupRecorder):
        def save_progress_many(self, snapshots: Sequence[ProgressSnapshot]) -> None:
            if not self.groups:
                entered.set()
                release.wait()
            super().save_progress_many(snapshots)

    store = SlowStore()
    writer = ProgressWriter(store, slot=LONG)
    first = asyncio.create_task(writer.save(snapshot("CA1", "hello"), now=True))
    await asyncio.to_thread(entered.wait)  # the first group is being written
    second = asyncio.create_task(writer.save(snapshot("CA2", "hi"), now=True))
    await asyncio.sleep(0)  # the second save is waiting, behind the group in the thread
    release.set()
    await asyncio.gather(first, second)
    assert store.groups == [["CA1"], ["CA2"]]


async def test_a_failing_group_is_saved_call_by_call_and_only_the_bad_call_fails() -> None:
    store = GroupRecorder(failing="CA2")
    writer = ProgressWriter(store, slot=LONG)
    results = await asyncio.gather(
        writer.save(snapshot("CA1", "hello")),
        writer.save(snapshot("CA2", "broken")),
        writer.save(snapshot("CA3", "bye"), now=True),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], RuntimeError) and "CA2" in str(results[1])
    assert store.groups == [["CA1"], ["CA3"]]  # the shared write failed; each alone after


async def test_a_save_whose_caller_stops_waiting_is_still_written() -> None:
    store = GroupRecorder()
    writer = ProgressWriter(store, slot=LONG)
    waiting = asyncio.create_task(writer.save(snapshot("CA1", "hello")))
    await asyncio.sleep(0)  # queued
    waiting.cancel()  # the call ended while its routine save waited for the slot
    await writer.save(snapshot("CA2", "bye"), now=True)
    assert store.groups == [["CA1", "CA2"]]
    assert waiting.cancelled()


async def test_close_writes_what_is_waiting() -> None:
    store = GroupRecorder()
    writer = ProgressWriter(store, slot=LONG)
    waiting = asyncio.create_task(writer.save(snapshot("CA1", "hello")))
    await asyncio.sleep(0)
    await writer.close()
    assert store.groups == [["CA1"]]
    assert waiting.done() and waiting.exception() is None
    await writer.close()  # nothing waiting: returns at once
    await writer.save(snapshot("CA2", "again"), now=True)  # and the writer starts again
    assert store.groups == [["CA1"], ["CA2"]]


async def test_a_stopped_writer_leaves_nobody_waiting() -> None:
    store = GroupRecorder()
    writer = ProgressWriter(store, slot=LONG)
    waiting = asyncio.create_task(writer.save(snapshot("CA1", "hello")))
    await asyncio.sleep(0)
    task = writer._task
    assert task is not None
    task.cancel()  # the process stops
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert store.groups == []
    assert writer._task is None


# -- the store's batched write -----------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'calls.db'}")
    store.create_schema()
    yield store
    store.engine.dispose()


def begin(store: Store, call_sid: str) -> None:
    store.begin_call(
        call_sid,
        business="Acme",
        business_number="+14155559999",
        caller_phone="+1",
        mode="realtime",
    )


def test_a_batched_save_keeps_every_rule_of_a_single_save(store: Store) -> None:
    for sid in ("CA-live", "CA-other", "CA-done", "CA-done-short"):
        begin(store, sid)
    with store.sessions.begin() as session:  # a bookkeeping key another writer set
        call = session.get(CallRecord, "CA-live")
        assert call is not None
        call.details = {"_alert_note": "kept"}
    for sid in ("CA-done", "CA-done-short"):
        store.save_progress(sid, snapshot(sid, "one").transcript, {})
        finished = CallSummary(
            call_sid=sid,
            business="Acme",
            caller_phone="+14155550100",
            need="quote",
            transcript=snapshot(sid, "one").transcript,
        )
        assert store.finalize(finished, crm="local") is True
    began = store.get_call("CA-live")
    assert began is not None

    store.save_progress_many(
        [
            snapshot("CA-live", "hello"),
            snapshot("CA-live", "hello", "my sink leaks"),  # the same call twice: the newest
            snapshot("CA-other", "hi"),
            snapshot("CA-done", "one", "and one more thing"),  # said after the summary
            snapshot("CA-done-short", "one"),  # nothing new: the finalized call is untouched
            snapshot("CA-unknown", "who?"),  # never began: ignored
        ]
    )

    live = store.get_call("CA-live")
    assert live is not None and live.state == "active"
    assert [t["text"] for t in live.transcript] == ["hello", "my sink leaks"]
    assert live.details == {"_alert_note": "kept", "need": "my sink leaks"}
    assert live.updated_at > began.updated_at  # the save is the call's heartbeat too
    other = store.get_call("CA-other")
    assert other is not None and [t["text"] for t in other.transcript] == ["hi"]
    done = store.get_call("CA-done")
    assert done is not None and done.state == "finalized"
    assert [t["text"] for t in done.transcript] == ["one", "and one more thing"]
    assert done.details.get(AMENDMENT_PENDING) is True
    short = store.get_call("CA-done-short")
    assert short is not None and AMENDMENT_PENDING not in short.details
    assert store.get_call("CA-unknown") is None
    store.save_progress_many([])  # nothing to write: no transaction, no error


async def test_the_writer_groups_saves_on_the_real_store(store: Store) -> None:
    for sid in ("CA1", "CA2"):
        begin(store, sid)
    writer = ProgressWriter(store, slot=LONG)
    await asyncio.gather(
        writer.save(snapshot("CA1", "hello")), writer.save(snapshot("CA2", "hi"), now=True)
    )
    for sid, said in (("CA1", "hello"), ("CA2", "hi")):
        call = store.get_call(sid)
        assert call is not None and [t["text"] for t in call.transcript] == [said]


def test_a_finalize_committed_while_a_group_waits_keeps_the_turns_said_after_it(
    store: Store, tmp_path: Path
) -> None:
    """SQLite: another process finalizes a live call and still holds the write lock when a
    group save of that call starts. The save takes the write lock before it reads, so it
    reads the call once the finalize has committed: finalized, and the turn said after the
    summary is kept for an amendment (had it read first, the UPDATE's ``state = 'active'``
    guard would have written nothing and the turn would be lost). The test sees the save
    reach its first write statement (SQLite's trace) before it lets the finalize commit."""
    begin(store, "CA-live")
    saver = Store.from_url(f"sqlite:///{tmp_path / 'calls.db'}")
    traced: list[str] = []
    event.listen(saver.engine, "connect", lambda dbapi, _: dbapi.set_trace_callback(traced.append))
    finalizer = sqlite3.connect(tmp_path / "calls.db", isolation_level=None, timeout=10)
    try:
        finalizer.execute("BEGIN IMMEDIATE")
        finalizer.execute(
            "UPDATE calls SET state = 'finalized', transcript = ? WHERE call_sid = 'CA-live'",
            (
                json.dumps(
                    [t.model_dump(mode="json") for t in snapshot("CA-live", "one").transcript]
                ),
            ),
        )
        said = snapshot("CA-live", "one", "and the gate code is 4417")
        saving = threading.Thread(target=saver.save_progress_many, args=([said],))
        saving.start()
        for _ in range(1000):  # bounds a broken test only (10 s, the busy timeout)
            if any(s.lstrip().upper().startswith("UPDATE") for s in list(traced)):
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"the save never reached a write: {traced}")
        finalizer.execute("COMMIT")
        saving.join(15)
        assert not saving.is_alive()
    finally:
        finalizer.close()
        saver.engine.dispose()
    call = store.get_call("CA-live")
    assert call is not None and call.state == "finalized"
    assert [t["text"] for t in call.transcript] == ["one", "and the gate code is 4417"]
    assert call.details.get(AMENDMENT_PENDING) is True
