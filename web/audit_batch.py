"""Group commit for high-rate audit events (machine token issuance) on a thread of this
process, for apps built without background work; a served process hands them to its
audit process instead (`web.audit_process`), which commits them with `GroupWriter`.

A request hands its events over and waits until they are durably committed; events of
all requests waiting at the same moment share one transaction. Nothing is answered
before its event is in the durable log, so nothing is silently lost, and the cost per
event is a share of one commit instead of a commit of its own.

Batches form by themselves, without a timer: while one transaction is being written, the
event loop keeps serving requests, and their events go into the next transaction as soon
as the current one commits. A fixed gathering delay would instead hold every connection
idle for it whenever all of them are waiting — at 8 connections most of the time.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection

from web.runtime import Runtime

#: Events per transaction at most: a bound on one statement's size and on how long the
#: requests of a burst wait for the first of them to commit.
MAX_BATCH = 1000
#: How long the writer keeps its connection between batches without asking the pool again.
KEEP_CONNECTION_SECONDS = 5.0


class AuditBatcher:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._queue: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # One thread of its own: writes are serial anyway (one flush at a time), and it
        # costs less per hand-over than the shared pool behind `run_in_threadpool`.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="audit-batch")
        self._transactions = GroupWriter(runtime)

    async def record(self, events: list[dict[str, Any]]) -> None:
        """Return once `events` are committed; raise if they could not be."""
        if not events:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((events, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        await future

    def _take(self) -> list[tuple[list[dict[str, Any]], asyncio.Future[None]]]:
        """The oldest waiters holding up to `MAX_BATCH` events (at least one waiter)."""
        count, size = 0, 0
        for events, _ in self._queue:
            if count and size + len(events) > MAX_BATCH:
                break
            count += 1
            size += len(events)
        batch, self._queue = self._queue[:count], self._queue[count:]
        return batch

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            # One turn of the loop first, so requests already under way join the batch.
            await asyncio.sleep(0)
            while self._queue:
                batch = self._take()
                try:
                    await loop.run_in_executor(
                        self._writer,
                        self._transactions.write,
                        [e for events, _ in batch for e in events],
                    )
                except Exception as exc:  # every waiter learns its event is not recorded
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
        finally:
            # Only if this task was cancelled (shutdown): no waiter may hang, none may
            # take its event for recorded.
            for _, future in self._queue:
                if not future.done():
                    future.set_exception(RuntimeError("the audit batch writer stopped"))
            self._queue.clear()


class GroupWriter:
    """Commits batches of events, one transaction each, on a connection of its own.

    A bare connection kept open: no ORM session, and no pool check-out per batch, whose
    liveness ping and reset on return cost on PostgreSQL as much as writing sixty events.
    It is kept only while batches keep coming: after a pause the pool's ping checks it
    again (the server may have restarted meanwhile). A connection that failed is closed
    (SQLAlchemy discards it if it broke); the next batch takes another. One thread at a
    time: the connection is not shared."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._connection: Connection | None = None
        self._used = 0.0

    def write(self, events: list[dict[str, Any]]) -> None:
        """Record `events` in one transaction; raise (recording nothing) if they cannot be."""
        connection = self._connection
        now = time.monotonic()
        if connection is not None and now - self._used > KEEP_CONNECTION_SECONDS:
            connection.close()  # back to the pool, whose ping checks it before reuse
            connection = None
        if connection is None or connection.closed or connection.invalidated:
            connection = self._connection = self.runtime.engine.connect()
        self._used = now
        try:
            with connection.begin():
                self.runtime.audit.record_many(connection, events)
        except BaseException:
            self._connection = None
            connection.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
