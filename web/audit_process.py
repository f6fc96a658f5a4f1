"""The audit process: a child of each server process that commits the high-rate audit
events (machine token issuance) in groups and sequences every pending event into the
Merkle tree.

Why a process and not a thread: writing and sequencing are mostly Python, and a thread
doing them shares the interpreter lock with the event loop. Measured on the token
endpoint, the loop then lost a fifth of its requests per second to the hand-overs, far
more than the work itself costs; in a process of its own the work runs on another core
and the loop pays only for sending the events and reading the answer.

Nothing is answered before its event is committed: a request waits for its frame's
acknowledgement, which the child sends only after the commit. If the child dies, waiting
requests fail (never answered as if recorded) and a new child is started.

The wire (the child's stdin and stdout, nothing else uses them):
- parent → child: frames of a 4-byte big-endian length and a JSON payload. The first is
  the settings (the child serves the same deployment without reading the environment
  again); every later one is a list of events, as `AuditLog.record_many` takes them.
- child → parent: `READY` once it can write, then one byte per event frame, in order:
  `COMMITTED`, `REFUSED` (an event the audit log rejects) or `FAILED` (the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from audit.errors import InvalidAuditEvent
from web.settings import Settings

if TYPE_CHECKING:
    from web.runtime import Runtime

log = logging.getLogger("tongban.audit_process")

READY, COMMITTED, REFUSED, FAILED = b"R", 0, 1, 2
#: Events per frame at most (a frame is one transaction unless the child merges several).
MAX_FRAME_EVENTS = 1000
#: How long a new child may take to import, build its runtime and connect.
START_TIMEOUT_SECONDS = 60.0


class AuditUnavailable(RuntimeError):
    """The events were not recorded: the audit process is down or the database failed."""


def settings_payload(settings: Settings) -> bytes:
    data = settings.model_dump(mode="json")
    # JSON mode masks secrets; the child needs the real key-encryption keys.
    data["keks"] = settings.keks.get_secret_value() if settings.keks is not None else None
    return json.dumps(data).encode()


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


# -- the server's side -------------------------------------------------------------------


class AuditProcess:
    """Owned by one server process (one event loop): starts the child, hands it events and
    restarts it if it dies."""

    def __init__(self, settings: Settings, *, restart_delay: float = 1.0) -> None:
        self.settings = settings
        self.restart_delay = restart_delay
        self._process: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Task[asyncio.subprocess.Process] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._restart: asyncio.TimerHandle | None = None
        self._restarting: asyncio.Task[None] | None = None
        self._outbox: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        #: per frame sent and not yet answered, the requests waiting for it
        self._unanswered: deque[list[asyncio.Future[None]]] = deque()
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        self._stopping = False
        await self._running()

    async def record(self, events: list[dict[str, Any]]) -> None:
        """Return once `events` are committed; raise `AuditUnavailable` or
        `InvalidAuditEvent` if they were not."""
        if not events:
            return
        await self._running()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._outbox:
            # Sent at the end of this turn of the loop, with whatever else joins it.
            loop.call_soon(self._send)
        self._outbox.append((events, future))
        await future

    async def stop(self) -> None:
        """Close the child's input; it commits what it has, answers and exits."""
        self._stopping = True
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        process = self._process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()
        if self._reader is not None:
            await self._reader

    async def _running(self) -> asyncio.subprocess.Process:
        if self._process is not None and self._process.returncode is None:
            return self._process
        if self._starting is None or self._starting.done():
            self._starting = asyncio.get_running_loop().create_task(self._spawn())
        return await asyncio.shield(self._starting)

    async def _spawn(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "web.audit_process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(_frame(settings_payload(self.settings)))
        try:
            ready = await asyncio.wait_for(process.stdout.readexactly(1), START_TIMEOUT_SECONDS)
        except (TimeoutError, asyncio.IncompleteReadError):
            ready = b""
        if ready != READY:
            if process.returncode is None:
                process.kill()
            await process.wait()
            self._schedule_restart()
            raise AuditUnavailable("the audit process did not start")
        self._process = process
        self._reader = asyncio.get_running_loop().create_task(self._read_answers(process))
        log.info("audit process %d started", process.pid)
        return process

    def _send(self) -> None:
        outbox, self._outbox = self._outbox, []
        process = self._process
        if process is None or process.returncode is not None or process.stdin is None:
            for _, future in outbox:
                if not future.done():
                    future.set_exception(AuditUnavailable("the audit process stopped"))
            return
        start = 0
        while start < len(outbox):
            count, size = 0, 0
            for events, _ in outbox[start:]:
                if count and size + len(events) > MAX_FRAME_EVENTS:
                    break
                count += 1
                size += len(events)
            frame = outbox[start : start + count]
            start += count
            try:
                payload = json.dumps(
                    [e for events, _ in frame for e in events], separators=(",", ":")
                ).encode()
            except (TypeError, ValueError) as exc:  # not JSON: the audit log would refuse it
                for _, future in frame:
                    future.set_exception(InvalidAuditEvent(f"an event is not JSON: {exc}"))
                continue
            self._unanswered.append([future for _, future in frame])
            process.stdin.write(_frame(payload))

    async def _read_answers(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while answers := await process.stdout.read(4096):
            for answer in answers:
                for future in self._unanswered.popleft():
                    if future.done():
                        continue
                    if answer == COMMITTED:
                        future.set_result(None)
                    elif answer == REFUSED:
                        future.set_exception(InvalidAuditEvent("the audit log refused an event"))
                    else:
                        future.set_exception(AuditUnavailable("the events were not recorded"))
        await process.wait()
        # Whatever was sent and not answered may or may not be committed: the requests
        # fail, so none is answered as if its event were recorded.
        while self._unanswered:
            for future in self._unanswered.popleft():
                if not future.done():
                    future.set_exception(AuditUnavailable("the audit process stopped"))
        if self._process is process:
            self._process = None
        if not self._stopping:
            log.error("audit process %d exited with %s", process.pid, process.returncode)
            self._schedule_restart()

    def _schedule_restart(self) -> None:
        """Start a new child after a pause, so sequencing resumes without waiting for the
        next machine token."""
        if self._stopping or self._restart is not None:
            return
        loop = asyncio.get_running_loop()

        def restart() -> None:
            self._restart = None
            if not self._stopping and self._process is None:
                self._restarting = loop.create_task(self._restart_quietly())

        self._restart = loop.call_later(self.restart_delay, restart)

    async def _restart_quietly(self) -> None:
        with contextlib.suppress(AuditUnavailable):  # _spawn scheduled the next attempt
            await self._running()


# -- the child's side --------------------------------------------------------------------


Writer = Callable[[list[dict[str, Any]]], None]


class _Frames:
    """Reads frames from a pipe, taking every complete frame already buffered at once, so
    frames that arrived together are committed together."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.ended = False

    def _complete(self) -> list[bytes]:
        frames = []
        while len(self.buffer) >= 4:
            size = int.from_bytes(self.buffer[:4], "big")
            if len(self.buffer) < 4 + size:
                break
            frames.append(self.buffer[4 : 4 + size])
            self.buffer = self.buffer[4 + size :]
        return frames

    def next(self, timeout: float | None = None) -> list[bytes]:
        """The frames available, waiting at most `timeout` seconds (None: until some come)
        for the first; empty on timeout or at the end of input (then `ended` is set)."""
        while not (frames := self._complete()) and not self.ended:
            if not select.select([self.fd], [], [], timeout)[0]:
                return []
            data = os.read(self.fd, 1 << 20)
            if not data:
                self.ended = True
            self.buffer += data
        return frames


def commit_frames(write: Writer, frames: list[list[dict[str, Any]]]) -> bytes:
    """One answer byte per frame. The frames go in one transaction; if the audit log
    refuses an event, each frame is tried on its own, so one bad frame fails alone."""
    try:
        write([e for events in frames for e in events])
        return bytes([COMMITTED] * len(frames))
    except InvalidAuditEvent:
        if len(frames) == 1:
            return bytes([REFUSED])
    except Exception:
        log.exception("the audit events could not be committed")
        return bytes([FAILED] * len(frames))
    return b"".join(commit_frames(write, [events]) for events in frames)


def answer_frames(payloads: list[bytes], write: Writer) -> tuple[bytes, int]:
    """The answers to `payloads`, and how many events were committed."""
    decoded: list[list[dict[str, Any]] | None] = []
    for payload in payloads:
        try:
            events = json.loads(payload)
        except ValueError:
            events = None
        decoded.append(events if isinstance(events, list) else None)
    good = [events for events in decoded if events is not None]
    results = iter(commit_frames(write, good) if good else b"")
    answers = bytes(REFUSED if events is None else next(results) for events in decoded)
    committed = sum(
        len(events)
        for events, answer in zip(decoded, answers, strict=True)
        if events is not None and answer == COMMITTED
    )
    return answers, committed


#: Events sequenced per transaction in the child: a request whose frame arrives meanwhile
#: waits for at most one such slice (a few milliseconds), not for a whole backlog.
SEQUENCE_SLICE = 256
#: How long committed events may wait for their place in the tree while fewer than a
#: slice are waiting: small batches cost more per event.
SEQUENCE_LINGER_SECONDS = 0.05


class AuditWorker:
    """The child's one thread: answers frames, and between them sequences in slices —
    the events it committed soon, everything else pending (other writers' events, other
    replicas') and checkpoints on the schedule. One thread, so writing and sequencing
    never wait on each other for the interpreter lock or for SQLite's write lock."""

    def __init__(self, runtime: Runtime, write: Writer) -> None:
        self.runtime = runtime
        self.write = write
        self.tick_seconds = runtime.settings.audit_sequence_seconds
        self.unsequenced = 0
        self.oldest = 0.0  # when the oldest of the unsequenced events was committed
        self.next_tick = 0.0  # at once: a backlog may be waiting from before a restart

    def run(self, frames: _Frames, answers: IO[bytes]) -> None:
        while True:
            now = time.monotonic()
            if self._sequence_due(now):
                self._sequence(now)
                continue
            payloads = frames.next(self._wait(now))
            if payloads:
                reply, committed = answer_frames(payloads, self.write)
                answers.write(reply)
                answers.flush()
                if committed and not self.unsequenced:
                    self.oldest = time.monotonic()
                self.unsequenced += committed
            elif frames.ended:
                # Shutting down: give what we committed its place now rather than at the
                # next start (it would not be lost either way: it stays pending).
                while self.unsequenced:
                    self._sequence(time.monotonic())
                return

    def _sequence_due(self, now: float) -> bool:
        return (
            now >= self.next_tick
            or self.unsequenced >= SEQUENCE_SLICE
            or (self.unsequenced > 0 and now - self.oldest >= SEQUENCE_LINGER_SECONDS)
        )

    def _wait(self, now: float) -> float:
        due = self.next_tick
        if self.unsequenced:
            due = min(due, self.oldest + SEQUENCE_LINGER_SECONDS)
        return max(0.0, due - now)

    def _sequence(self, now: float) -> None:
        try:
            placed = self.runtime.audit_tick(limit=SEQUENCE_SLICE)
        except Exception:  # retried at the next tick; the events stay pending, not lost
            log.exception("sequencing the audit log failed")
            placed = 0
        if placed >= SEQUENCE_SLICE:
            # More may be waiting: go on after answering what arrived meanwhile.
            self.unsequenced = max(0, self.unsequenced - placed)
            self.oldest = now - SEQUENCE_LINGER_SECONDS
            return
        self.unsequenced = 0
        self.next_tick = now + self.tick_seconds


def main() -> None:
    from web.audit_batch import GroupWriter
    from web.runtime import build_runtime

    # The answers keep a descriptor of their own; anything printed goes to stderr.
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    # Ctrl+C reaches the whole process group: the parent closes our input instead, and
    # we finish what was sent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s %(message)s")
    frames = _Frames(sys.stdin.fileno())
    first = frames.next()
    if not first:
        return
    settings = Settings(**json.loads(first[0]))
    frames.buffer = b"".join(_frame(f) for f in first[1:]) + frames.buffer
    runtime = build_runtime(settings)
    writer = GroupWriter(runtime)
    answers.write(READY)
    try:
        AuditWorker(runtime, writer.write).run(frames, answers)
    finally:
        writer.close()
        runtime.engine.dispose()


if __name__ == "__main__":
    main()
