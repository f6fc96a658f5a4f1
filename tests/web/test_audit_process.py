"""The audit process: machine tokens' events are committed by a child of the server before
the token is answered and sequenced there; a killed child is replaced without any token
answered unrecorded; the child ends with the server; one bad frame fails alone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from audit.errors import InvalidAuditEvent
from migrations import upgrade
from tests.conftest import served
from tests.web.live import LiveServer, children, start_server
from web.audit_process import (
    COMMITTED,
    FAILED,
    REFUSED,
    SEQUENCE_SLICE,
    AuditProcess,
    AuditWorker,
    GroupWriter,
    _frame,
    _Frames,
    answer_frames,
)
from web.runtime import Runtime, build_runtime
from web.settings import Settings


def audit_children(server: LiveServer) -> list[int]:
    return [
        child
        for child in children(server.proc.pid)
        if b"web.audit_process" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def machine(server: LiveServer) -> tuple[str, str]:
    client = server.add_client(
        "Machine", "--grant-type", "client_credentials", "--scope", "licence:read"
    )
    return client["client_id"], client["client_secret"]


def events_of(server: LiveServer, client_id: str, *, sequenced: bool) -> int:
    table = "audit_event" if sequenced else "audit_pending"
    with server.runtime.engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    f"SELECT count(*) FROM {table} WHERE event = 'token.issued' AND client_id = :c"
                ),
                {"c": client_id},
            ).scalar_one()
        )


def wait_sequenced(server: LiveServer, client_id: str, at_least: int) -> int:
    deadline = time.monotonic() + 30
    while (placed := events_of(server, client_id, sequenced=True)) < at_least:
        assert time.monotonic() < deadline, f"{placed} of {at_least} sequenced"
        time.sleep(0.1)
    return placed


def test_machine_tokens_are_recorded_by_the_audit_process_and_sequenced(
    live: LiveServer,
) -> None:
    [child] = audit_children(live)
    client_id, secret = machine(live)
    with httpx.Client(base_url=live.url, auth=(client_id, secret)) as http:
        for _ in range(25):
            response = http.post("/token", data={"grant_type": "client_credentials"})
            assert response.status_code == 200, response.text
    assert wait_sequenced(live, client_id, 25) == 25
    assert events_of(live, client_id, sequenced=False) == 0
    assert audit_children(live) == [child]  # the same child did it all


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_audit_process_is_replaced_and_no_token_goes_unrecorded(
    backend: str, tmp_path: Path
) -> None:
    with served(backend, tmp_path) as server:
        client_id, secret = machine(server)
        [first] = audit_children(server)
        os.kill(first, signal.SIGKILL)
        answered, refused = 0, 0
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=server.url, auth=(client_id, secret)) as http:
            # Until tokens flow again through a new child, then a few more.
            while answered < 10:
                assert time.monotonic() < deadline, "no new audit process took over"
                response = http.post("/token", data={"grant_type": "client_credentials"})
                if response.status_code == 200:
                    answered += 1
                else:
                    assert response.status_code == 500, response.text
                    assert response.json()["error"] == "server_error"
                    refused += 1
        [second] = audit_children(server)
        assert second != first
        # Every token answered has its event; a refused one may have one too (its frame
        # may have been committed just before the child died).
        assert wait_sequenced(server, client_id, answered) >= answered


def test_a_stuck_audit_process_is_replaced_and_its_requests_fail(tmp_path: Path) -> None:
    timeout = 2
    env = {"TONGBAN_AUDIT_ANSWER_TIMEOUT_SECONDS": str(timeout)}
    with served("sqlite", tmp_path, extra_env=env) as server:
        client_id, secret = machine(server)
        # A first token for a client this process has not cached yet is issued on the
        # thread pool, its event in the request's own transaction: one to warm it up.
        warm = httpx.post(
            f"{server.url}/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
        )
        assert warm.status_code == 200
        [stuck] = audit_children(server)
        os.kill(stuck, signal.SIGSTOP)
        try:
            started = time.monotonic()
            response = httpx.post(
                f"{server.url}/token",
                data={"grant_type": "client_credentials"},
                auth=(client_id, secret),
                timeout=60,
            )
            waited = time.monotonic() - started
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stuck, signal.SIGCONT)
        assert response.status_code == 500, response.text
        assert response.json()["error"] == "server_error"
        assert timeout <= waited < timeout + 10
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=server.url, auth=(client_id, secret)) as http:
            while http.post("/token", data={"grant_type": "client_credentials"}).is_error:
                assert time.monotonic() < deadline, "no new audit process took over"
                time.sleep(0.2)
        assert audit_children(server) != [stuck]
        assert wait_sequenced(server, client_id, 2) >= 2


def test_the_audit_process_imports_the_servers_code_wherever_it_was_started(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "web").mkdir(parents=True)
    (elsewhere / "web" / "__init__.py").write_text("raise ImportError('not our web')\n")
    url = f"sqlite:///{tmp_path / 'tongban.db'}"
    upgrade(url)
    server = start_server(url, tmp_path, cwd=elsewhere)
    try:
        client_id, secret = machine(server)
        response = httpx.post(
            f"{server.url}/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
        )
        assert response.status_code == 200, response.text
        assert wait_sequenced(server, client_id, 1) == 1
    finally:
        server.stop()
        server.runtime.engine.dispose()


def test_the_audit_process_ends_with_the_server(tmp_path: Path) -> None:
    with served("sqlite", tmp_path) as server:
        [child] = audit_children(server)
        started = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[19]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return
        if fields[19] != started or fields[0] == "Z":
            return
        time.sleep(0.05)
    pytest.fail("the audit process outlived the server")


# -- the child's side, in this process, on each database --------------------------------


def token_event(client_id: str, **changes: object) -> dict[str, object]:
    return {
        "event": "token.issued",
        "actor": f"client:{client_id}",
        "client_id": client_id,
        "source": "127.0.0.1",
        "details": {"scope": "licence:read", "grant": "client_credentials"},
        **changes,
    }


def count(runtime: Runtime, table: str, client_id: str) -> int:
    with runtime.engine.connect() as connection:
        return int(
            connection.execute(
                text(f"SELECT count(*) FROM {table} WHERE client_id = :c"), {"c": client_id}
            ).scalar_one()
        )


@pytest.fixture
def child_side(
    database_url: str, tmp_path: Path, factory: object
) -> Iterator[tuple[Runtime, GroupWriter]]:
    """What the child builds, on an empty database (`factory` empties it, so the runtime
    creates its own secrets)."""
    runtime = build_runtime(Settings(database_url=database_url, data_dir=tmp_path))
    writer = GroupWriter(runtime)
    yield runtime, writer
    writer.close()
    runtime.engine.dispose()


def test_a_bad_frame_is_refused_alone_and_a_database_failure_fails_all(
    child_side: tuple[Runtime, GroupWriter], tmp_path: Path
) -> None:
    runtime, writer = child_side
    good = json.dumps([token_event("good"), token_event("good")]).encode()
    unknown = json.dumps([token_event("bad"), token_event("bad", event="token.stolen")])
    control = json.dumps([token_event("bad", source="127.0.0.1\x00")])
    answers, committed = answer_frames(
        [good, unknown.encode(), b"{not json", control.encode(), b'{"a": 1}', good],
        writer.write,
    )
    assert list(answers) == [COMMITTED, REFUSED, REFUSED, REFUSED, REFUSED, COMMITTED]
    assert committed == 4
    assert count(runtime, "audit_pending", "good") == 4
    assert count(runtime, "audit_pending", "bad") == 0  # nothing of a refused frame

    broken = build_runtime(
        Settings(
            database_url="postgresql://postgres@127.0.0.1:5432/tongban_no_such_database",
            data_dir=tmp_path,
        )
    )
    try:
        answers, committed = answer_frames([good, good], GroupWriter(broken).write)
        assert list(answers) == [FAILED, FAILED] and committed == 0
    finally:
        broken.engine.dispose()


def test_the_worker_answers_in_order_and_sequences_in_slices(
    child_side: tuple[Runtime, GroupWriter],
) -> None:
    runtime, writer = child_side
    requests, ours = os.pipe()
    theirs, replies = os.pipe()
    try:
        total = SEQUENCE_SLICE * 2 + 7  # more than one slice must be placed
        frames = [[token_event("slices")] * 100 for _ in range(total // 100)]
        frames.append([token_event("slices")] * (total % 100))
        frames.insert(1, [token_event("slices", event="no.such")])
        payload = b"".join(_frame(json.dumps(f).encode()) for f in frames)

        def send() -> None:
            with os.fdopen(ours, "wb") as pipe:
                pipe.write(payload)

        sender = threading.Thread(target=send)
        sender.start()
        AuditWorker(runtime, writer.write).run(_Frames(requests), replies)
        os.close(replies)
        sender.join()
        got = os.read(theirs, 100)
        assert list(got) == [COMMITTED, REFUSED] + [COMMITTED] * (len(frames) - 2)
        # the end of input places what was committed; nothing stays pending
        assert count(runtime, "audit_event", "slices") == total
        assert count(runtime, "audit_pending", "slices") == 0
    finally:
        os.close(requests)
        os.close(theirs)


def test_frames_are_answered_between_the_slices_of_a_backlog(
    child_side: tuple[Runtime, GroupWriter],
) -> None:
    runtime, writer = child_side
    backlog = SEQUENCE_SLICE * 6
    with runtime.engine.begin() as connection:  # other writers' events, waiting
        runtime.audit.record_many(connection, [token_event("backlog")] * backlog)
    requests, ours = os.pipe()
    theirs, replies = os.pipe()
    os.write(ours, _frame(json.dumps([token_event("urgent")]).encode()))
    worker = threading.Thread(
        target=AuditWorker(runtime, writer.write).run, args=(_Frames(requests), replies)
    )
    worker.start()
    try:
        assert os.read(theirs, 1) == bytes([COMMITTED])
        # answered before the backlog was worked off: at most one slice went first
        assert count(runtime, "audit_pending", "backlog") >= backlog - SEQUENCE_SLICE
        deadline = time.monotonic() + 60  # then the slices go on by themselves
        while count(runtime, "audit_pending", "backlog"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.close(ours)
        worker.join(60)
        for fd in (requests, theirs, replies):
            os.close(fd)
    assert not worker.is_alive()
    assert count(runtime, "audit_event", "backlog") == backlog
    assert count(runtime, "audit_event", "urgent") == 1


# -- the server's side, in this process, with a real child ------------------------------


def test_one_request_that_cannot_be_sent_fails_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tongban.db'}"
    upgrade(url)
    settings = Settings(database_url=url, data_dir=tmp_path)

    async def scenario() -> list[object]:
        process = AuditProcess(settings)
        await process.start()
        try:
            # In one turn of the loop, so all three share a frame.
            return await asyncio.gather(
                process.record([token_event("alone")]),
                process.record([{**token_event("alone"), "details": {"x": object()}}]),
                process.record([token_event("alone")]),
                return_exceptions=True,
            )
        finally:
            await process.stop()

    first, second, third = asyncio.run(scenario())
    assert first is None and third is None
    assert isinstance(second, InvalidAuditEvent)
    runtime = build_runtime(settings)
    try:
        assert count(runtime, "audit_event", "alone") == 2  # placed at the child's end
    finally:
        runtime.engine.dispose()


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///:memory:", "sqlite:///file:audit?mode=memory&cache=shared&uri=true"],
)
def test_an_in_memory_database_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not in memory"):
        AuditProcess(Settings(database_url=url, data_dir=tmp_path))
