"""Group commit for high-rate audit events (machine token issuance).

A request hands its events over and waits until they are durably committed; events of
all requests waiting at the same moment share one transaction. Nothing is answered
before its event is in the durable log, so nothing is silently lost, and the cost per
event is a share of one commit instead of a commit of its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.concurrency import run_in_threadpool

from web.runtime import Runtime

MAX_BATCH = 500
#: How long the first waiter lets others join its transaction. A commit costs about as
#: much as issuing a token; shared by dozens of events it costs almost nothing each.
GATHER_SECONDS = 0.002


class AuditBatcher:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._queue: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._flushing = False

    async def record(self, events: list[dict[str, Any]]) -> None:
        """Return once `events` are committed; raise if they could not be."""
        if not events:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((events, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await future

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(GATHER_SECONDS)
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await run_in_threadpool(self._write, [e for events, _ in batch for e in events])
                except Exception as exc:  # every waiter learns its event is not recorded
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._flushing = False

    def _write(self, events: list[dict[str, Any]]) -> None:
        with self.runtime.factory.begin() as session:
            self.runtime.audit.record_many(session, events)
