"""Group commit of live calls' progress saves.

Every live call saves its transcript and details every couple of seconds while something
changes (crash recovery reads them). A save in a transaction and a worker-thread job of its
own costs about five times what it costs in a group of ten (SQLite, 20-turn transcripts,
``benchmarks/progress_saves.py``: ≈ 1 ms against ≈ 0.2 ms of CPU), so the calls' saves are
gathered: a routine save waits up to ``slot`` seconds for others, then one worker-thread job
writes them all in one transaction (``Store.save_progress_many``). A save that must land now
(the call ends, a tool needs the stored details, the bridge failed) is written at once, with
whatever is waiting.

Failure paths:
- The shared transaction fails (a database error, one bad row): each call of the group is
  saved alone, so only the call whose own save fails gets the error.
- The caller of ``save`` is cancelled while it waits (its call ends): the snapshot is still
  written with its group.
- The writer task is cancelled (the process stops): waiting saves are cancelled, never left
  hanging; ``close`` writes what is waiting first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from crm.store import ProgressSnapshot

log = logging.getLogger(__name__)

GROUP_SLOT_SECONDS = 0.25
"""How long a routine save waits for others. At 100 calls saving every 2 s a group holds
about 12 saves; a short slot keeps each group's worker-thread burst short (≈ 1.5 ms)."""


class ProgressStore(Protocol):
    def save_progress_many(self, snapshots: Sequence[ProgressSnapshot]) -> None: ...


_Waiting = tuple[ProgressSnapshot, "asyncio.Future[None]"]


class ProgressWriter:
    """One per process: writes the live calls' progress snapshots in groups."""

    def __init__(self, store: ProgressStore, *, slot: float = GROUP_SLOT_SECONDS) -> None:
        self.store = store
        self.slot = slot
        self._waiting: list[_Waiting] = []
        self._group: list[_Waiting] = []  # being written
        self._now = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def save(self, snapshot: ProgressSnapshot, *, now: bool = False) -> None:
        """Write ``snapshot`` with the next group; ``now`` starts that group at once.
        Returns when it is written; raises what its own write raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._start_writer()
        self._waiting.append((snapshot, future))
        if now:
            self._now.set()
        await future

    async def close(self) -> None:
        """Write what is waiting, then stop (the next ``save`` starts the writer again)."""
        task = self._task
        if task is not None:
            self._now.set()
            await asyncio.wait({task})

    def _start_writer(self) -> None:
        task = self._task
        if task is not None and not task.done():
            return
        if task is not None:
            self._writer_stopped(task)  # it ended; its done callback has not run yet
        self._now = asyncio.Event()  # bound to this loop
        self._task = asyncio.get_running_loop().create_task(
            self._write_groups(), name="progress-writer"
        )
        self._task.add_done_callback(self._writer_stopped)

    async def _write_groups(self) -> None:
        """Runs while saves wait; ends when none does."""
        while self._waiting:
            if not self._now.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.slot):
                        await self._now.wait()
            self._now.clear()
            self._group, self._waiting = self._waiting, []
            errors = await asyncio.to_thread(self._write, [s for s, _ in self._group])
            group, self._group = self._group, []
            for (_, future), error in zip(group, errors, strict=True):
                if future.done():  # its caller stopped waiting; the row is written
                    continue
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def _writer_stopped(self, task: asyncio.Task[None]) -> None:
        """When the writer ends: cancelled (the process stops) or failed (the thread pool is
        gone), nobody will write what it held, so nobody may wait for it."""
        if task is not self._task:
            return  # settled already
        self._task = None
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error("the progress writer stopped (%s)", type(error).__name__)
        stranded = [*self._group, *self._waiting]
        self._group, self._waiting = [], []
        for _, future in stranded:
            if future.done():
                continue
            if error is None:
                future.cancel()
            else:
                future.set_exception(RuntimeError("the progress writer stopped"))

    def _write(self, snapshots: list[ProgressSnapshot]) -> list[Exception | None]:
        """Worker thread: the group in one transaction, or, if that fails, each alone."""
        try:
            self.store.save_progress_many(snapshots)
            return [None] * len(snapshots)
        except Exception as exc:
            if len(snapshots) == 1:
                return [exc]
            log.warning(
                "a grouped progress save of %d calls failed (%s); saving each alone",
                len(snapshots),
                type(exc).__name__,
            )
        return [self._write([snapshot])[0] for snapshot in snapshots]
