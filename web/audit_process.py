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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import make_url

from audit.errors import InvalidAuditEvent
from web.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from web.runtime import Runtime

log = logging.getLogger("tongban.audit_process")

READY, COMMITTED, REFUSED, FAILED = b"R", 0, 1, 2
#: Events per frame at most (a frame is one transaction unless the child merges several).
MAX_FRAME_EVENTS = 1000
#: How long a new child may take to import, build its runtime and connect.
START_TIMEOUT_SECONDS = 60.0
#: The longest pause between restarts of children that keep failing.
MAX_RESTART_DELAY_SECONDS = 30.0


class AuditUnavailable(RuntimeError):
    """The events were not recorded: the audit process is down or the database failed."""


def settings_payload(settings: Settings) -> bytes:
    data = settings.model_dump(mode="json")
    # JSON mode masks secrets; the child needs the real key-encryption keys.
    data["keks"] = settings.keks.get_secret_value() if settings.keks is not None else None
    return json.dumps(data).encode()


def _import_path() -> str:
    """The child imports this very code (the folder holding `web/`), then whatever this
    process can import, wherever either was started from."""
    root = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join(dict.fromkeys([root, *(p for p in sys.path if p)]))


def _fail(waiting: Iterable[asyncio.Future[None]], error: Exception) -> None:
    for future in waiting:
        if not future.done():
            future.set_exception(error)


def _packed(sizes: list[int], limit: int) -> Iterator[slice]:
    """Consecutive runs of items whose sizes add up to at most `limit` (an item larger on
    its own makes a run of one): frames of at most that many events on the server's side,
    transactions of at most that many in the child."""
    start = total = 0
    for i, size in enumerate(sizes):
        if i > start and total + size > limit:
            yield slice(start, i)
            start, total = i, 0
        total += size
    if start < len(sizes):
        yield slice(start, len(sizes))


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


# -- the server's side -------------------------------------------------------------------


class _Child:
    """One audit process and what it owes: per frame sent and not yet answered, when it was
    sent and the requests waiting for it. Its own queue, so answers of one child can never
    settle frames sent to the next."""

    def __init__(self, process: asyncio.subprocess.Process, answer_timeout: float) -> None:
        self.process = process
        self.answer_timeout = answer_timeout
        self.unanswered: deque[tuple[float, list[asyncio.Future[None]]]] = deque()
        self.reader: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    def watch(self) -> None:
        """A child that leaves a frame unanswered for `answer_timeout` seconds is stuck:
        killing it fails the frames' requests, and a new child is started. One timer per
        child rather than one per request, which the event loop would pay for on every
        token."""
        if self._watchdog is None and self.unanswered:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_at(
                loop.time() + self.unanswered[0][0] + self.answer_timeout - time.monotonic(),
                self._check,
            )

    def _check(self) -> None:
        self._watchdog = None
        if self.unanswered and time.monotonic() - self.unanswered[0][0] >= self.answer_timeout:
            log.error("audit process %d stopped answering; replacing it", self.process.pid)
            if self.process.returncode is None:
                self.process.kill()
            return
        self.watch()

    @property
    def alive(self) -> bool:
        return (
            self.process.returncode is None and self.reader is not None and not self.reader.done()
        )

    def fail_unanswered(self) -> None:
        # Sent and not answered: maybe committed, maybe not. The requests fail, so none
        # is answered as if its event were recorded.
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self.unanswered:
            _fail(self.unanswered.popleft()[1], AuditUnavailable("the audit process stopped"))


class AuditProcess:
    """Owned by one server process (one event loop): starts the child, hands it events and
    restarts it if it dies."""

    def __init__(self, settings: Settings, *, restart_delay: float = 1.0) -> None:
        url = make_url(settings.db_url)
        if url.get_backend_name() == "sqlite" and (
            not url.database or ":memory:" in url.database or url.query.get("mode") == "memory"
        ):
            raise ValueError("the audit process must open the same database: not in memory")
        self.settings = settings
        self.restart_delay = restart_delay
        self._child: _Child | None = None
        self._starting: asyncio.Task[_Child] | None = None
        self._restart: asyncio.TimerHandle | None = None
        self._restarting: asyncio.Task[None] | None = None
        self._outbox: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._stopping = False
        self._delay = restart_delay  # the next restart's pause
        self._started_at = 0.0  # when the last child was ready

    async def start(self) -> None:
        self._stopping = False
        await self._running()

    async def record(self, events: list[dict[str, Any]]) -> None:
        """Return once `events` are committed; raise `AuditUnavailable` or
        `InvalidAuditEvent` if they were not."""
        if not events:
            return
        child = self._child
        if child is None or not child.alive:
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
        if self._starting is not None and not self._starting.done():
            with contextlib.suppress(Exception):
                await self._starting
        child = self._child
        if child is None:
            return
        await self._close(child)

    @staticmethod
    async def _close(child: _Child) -> None:
        process = child.process
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()
        if child.reader is not None:
            await child.reader

    async def _running(self) -> _Child:
        if self._child is not None and self._child.alive:
            return self._child
        if self._stopping:
            raise AuditUnavailable("the server is stopping")
        if self._starting is None or self._starting.done():
            if self._restart is not None:
                # A start failed or the child died a moment ago: wait for the scheduled
                # restart rather than start interpreters as fast as requests come.
                raise AuditUnavailable("the audit process is restarting")
            self._starting = asyncio.get_running_loop().create_task(self._spawn())
        return await asyncio.shield(self._starting)

    async def _spawn(self) -> _Child:
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # not the working directory first: it may hold another `web`
                "-m",
                "web.audit_process",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": _import_path()},
            )
        except OSError as exc:
            self._schedule_restart()
            raise AuditUnavailable(f"the audit process could not start: {exc}") from exc
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(_frame(settings_payload(self.settings)))
            ready = await asyncio.wait_for(process.stdout.readexactly(1), START_TIMEOUT_SECONDS)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            ready = b""
        except BaseException:  # cancelled, or anything unforeseen: leave no child behind
            if process.returncode is None:
                process.kill()
            self._schedule_restart()
            raise
        if ready != READY:
            if process.returncode is None:
                process.kill()
            await process.wait()
            self._schedule_restart()
            raise AuditUnavailable("the audit process did not start")
        self._started_at = time.monotonic()
        child = _Child(process, self.settings.audit_answer_timeout_seconds)
        child.reader = asyncio.get_running_loop().create_task(self._read_answers(child))
        self._child = child
        log.info("audit process %d started", process.pid)
        if self._stopping:  # stop() came while it was starting
            await self._close(child)
        return child

    def _send(self) -> None:
        outbox, self._outbox = self._outbox, []
        child = self._child
        stdin = child.process.stdin if child is not None else None
        if child is None or not child.alive or stdin is None or stdin.is_closing():
            _fail((future for _, future in outbox), AuditUnavailable("the audit process stopped"))
            return
        # Each request's events encoded on their own: one that is not JSON fails alone.
        encoded: list[tuple[str, int, asyncio.Future[None]]] = []
        for events, future in outbox:
            try:
                encoded.append(
                    (json.dumps(events, separators=(",", ":"))[1:-1], len(events), future)
                )
            except Exception as exc:
                _fail([future], InvalidAuditEvent(f"an event is not JSON: {exc}"))
        handed = 0  # requests whose frame the child now owes an answer
        try:
            for run in _packed([count for _, count, _ in encoded], MAX_FRAME_EVENTS):
                frame = encoded[run]
                child.unanswered.append((time.monotonic(), [future for _, _, future in frame]))
                handed = run.stop
                stdin.write(_frame(f"[{','.join(part for part, _, _ in frame if part)}]".encode()))
        except BaseException:
            # The pipe broke under us: what was handed over fails with the child, which is
            # killed; the rest fails here.
            _fail(
                (future for _, _, future in encoded[handed:]),
                AuditUnavailable("the audit process stopped"),
            )
            if child.process.returncode is None:
                child.process.kill()
        child.watch()

    async def _read_answers(self, child: _Child) -> None:
        process = child.process
        assert process.stdout is not None
        while answers := await process.stdout.read(4096):
            if len(answers) > len(child.unanswered):
                log.error("audit process %d answered frames never sent", process.pid)
                process.kill()
                break
            for answer in answers:
                for future in child.unanswered.popleft()[1]:
                    if future.done():
                        continue
                    if answer == COMMITTED:
                        future.set_result(None)
                    elif answer == REFUSED:
                        future.set_exception(InvalidAuditEvent("the audit log refused an event"))
                    else:
                        future.set_exception(AuditUnavailable("the events were not recorded"))
        await process.wait()
        child.fail_unanswered()
        if self._child is child:
            self._child = None
        if not self._stopping:
            log.error("audit process %d exited with %s", process.pid, process.returncode)
            self._schedule_restart()

    def _schedule_restart(self) -> None:
        """Start a new child after a pause, so sequencing resumes without waiting for the
        next machine token. The pause doubles (up to `MAX_RESTART_DELAY_SECONDS`) while
        children keep failing soon after they start: a child that cannot work (a database
        down, bad settings) must not cost an interpreter start every second."""
        if self._stopping or self._restart is not None:
            return
        loop = asyncio.get_running_loop()
        if time.monotonic() - self._started_at > MAX_RESTART_DELAY_SECONDS:
            self._delay = self.restart_delay  # the last one had worked for a while
        delay, self._delay = self._delay, min(self._delay * 2, MAX_RESTART_DELAY_SECONDS)

        def restart() -> None:
            self._restart = None
            if not self._stopping and (self._child is None or not self._child.alive):
                self._restarting = loop.create_task(self._restart_quietly())

        self._restart = loop.call_later(delay, restart)

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
        frames, at, buffer = [], 0, self.buffer
        while len(buffer) - at >= 4:
            size = int.from_bytes(buffer[at : at + 4], "big")
            if len(buffer) - at < 4 + size:
                break
            frames.append(buffer[at + 4 : at + 4 + size])
            at += 4 + size
        self.buffer = buffer[at:]
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
    except Exception as exc:
        # The type only: a database error quotes the statement's values.
        log.error("the audit events could not be committed: %s", type(exc).__name__)
        return bytes([FAILED] * len(frames))
    return b"".join(commit_frames(write, [events]) for events in frames)


def answer_frames(payloads: list[bytes], write: Writer) -> tuple[bytes, int]:
    """The answers to `payloads`, and how many events were committed. Frames are merged
    into transactions of at most `MAX_FRAME_EVENTS` events (more would only make one
    statement, and the wait for it, longer)."""
    decoded: list[list[dict[str, Any]] | None] = []
    for payload in payloads:
        try:
            events = json.loads(payload)
        except ValueError:
            events = None
        decoded.append(events if isinstance(events, list) else None)
    good = [events for events in decoded if events is not None]
    results = b"".join(
        commit_frames(write, good[run]) for run in _packed([len(e) for e in good], MAX_FRAME_EVENTS)
    )
    each = iter(results)
    answers = bytes(REFUSED if events is None else next(each) for events in decoded)
    committed = sum(
        len(events)
        for events, answer in zip(decoded, answers, strict=True)
        if events is not None and answer == COMMITTED
    )
    return answers, committed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


#: How long the child's writer keeps its connection between batches without asking the pool again.
KEEP_CONNECTION_SECONDS = 5.0


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
    never wait on each other for the interpreter lock or for SQLite's write lock; frames
    that arrive while a backlog is sequenced are answered between its slices."""

    def __init__(self, runtime: Runtime, write: Writer) -> None:
        self.runtime = runtime
        self.write = write
        self.tick_seconds = runtime.settings.audit_sequence_seconds
        self.unsequenced = 0
        self.oldest = 0.0  # when the oldest of the unsequenced events was committed
        self.next_tick = 0.0  # at once: a backlog may be waiting from before a restart

    def run(self, frames: _Frames, answers: int) -> None:
        """Serve until the end of input; the answers go to the descriptor `answers`."""
        while True:
            now = time.monotonic()
            # Frames first, without waiting when a slice is due.
            payloads = frames.next(0.0 if self._sequence_due(now) else self._wait(now))
            if payloads:
                reply, committed = answer_frames(payloads, self.write)
                _write_all(answers, reply)
                if committed and not self.unsequenced:
                    self.oldest = time.monotonic()
                self.unsequenced += committed
            elif frames.ended:
                # Shutting down: give what we committed its place now rather than at the
                # next start (it would not be lost either way: it stays pending).
                while self.unsequenced:
                    self._sequence(time.monotonic())
                return
            now = time.monotonic()
            if self._sequence_due(now):
                self._sequence(now)  # one slice, then the frames that came meanwhile

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
        except Exception as exc:  # retried at the next tick; the events stay pending
            log.error("sequencing the audit log failed: %s", type(exc).__name__)
            placed = 0
        if placed >= SEQUENCE_SLICE:
            # A backlog: the next slice is due at once (after any frames).
            self.unsequenced = max(0, self.unsequenced - placed)
            self.oldest = now - SEQUENCE_LINGER_SECONDS
            self.next_tick = now
            return
        self.unsequenced = 0
        self.next_tick = now + self.tick_seconds


def main() -> None:
    from web.runtime import build_runtime

    # The answers keep a descriptor of their own; anything printed goes to stderr.
    answers = os.dup(1)
    os.dup2(2, 1)
    # Signals meant for the whole process group (Ctrl+C, a service manager's SIGTERM):
    # the parent closes our input when it stops, and we finish what was sent first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s %(message)s")
    frames = _Frames(sys.stdin.fileno())
    first = frames.next()
    if not first:
        return
    settings = Settings(**json.loads(first[0]))
    frames.buffer = b"".join(_frame(f) for f in first[1:]) + frames.buffer
    runtime = build_runtime(settings)
    writer = GroupWriter(runtime)
    _write_all(answers, READY)
    try:
        AuditWorker(runtime, writer.write).run(frames, answers)
    finally:
        writer.close()
        runtime.engine.dispose()


if __name__ == "__main__":
    main()
