"""Export to JSON Lines and verification of an export without the database. A corrupted
export is reported, never crashes the verifier."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from audit import (
    CheckpointKeys,
    FindingKind,
    Outcome,
    VerificationReport,
    checkpoint_keys,
    export_log,
    verify_export,
)
from tests.audit.conftest import World


@pytest.fixture
def exported(logged: Callable[[], World], tmp_path: Path) -> tuple[World, Path]:
    world = logged()
    path = tmp_path / "audit.jsonl"
    summary = export_log(world.factory, path, clock=world.clock, keks=world.keks)
    assert (summary.events, summary.checkpoints, summary.tree_size) == (20, 2, 20)
    return world, path


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def _write(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in lines), "utf-8")


def _pinned(factory: sessionmaker[Session]) -> CheckpointKeys:
    with factory() as session:
        return checkpoint_keys(session)


def test_an_export_verifies_without_the_database(exported: tuple[World, Path]) -> None:
    world, path = exported
    lines = _lines(path)
    assert [line["type"] for line in (lines[0], lines[1], lines[3], lines[-1])] == [
        "header",
        "checkpoint",
        "event",
        "end",
    ]
    assert lines[0]["jwks"]["keys"] and all(
        not {"d", "p", "q"} & set(key) for key in lines[0]["jwks"]["keys"]
    )
    report = verify_export(path)
    assert report.outcome is Outcome.PASSED, report.summary()
    assert report.anchored_size == 20 and report.events_checked == 20
    assert any("pin" in warning for warning in report.warnings)
    pinned = verify_export(path, keys=_pinned(world.factory))
    assert pinned.ok and not pinned.warnings


def _tampered(
    exported: tuple[World, Path], change: Callable[[list[dict[str, Any]]], Any]
) -> VerificationReport:
    world, path = exported
    lines = _lines(path)
    change(lines)
    _write(path, lines)
    report = verify_export(path, keys=_pinned(world.factory))
    assert report.outcome is Outcome.FAILED, report.summary()
    return report


def _event(lines: list[dict[str, Any]], position: int) -> dict[str, Any]:
    return next(line for line in lines if line["type"] == "event" and line["position"] == position)


def test_edited_event_in_an_export(exported: tuple[World, Path]) -> None:
    report = _tampered(exported, lambda ls: _event(ls, 6)["entry"].update(actor="user:eve"))
    assert report.positions(FindingKind.MODIFIED) == (6,)


def test_deleted_event_in_an_export(exported: tuple[World, Path]) -> None:
    report = _tampered(exported, lambda ls: ls.remove(_event(ls, 11)))
    assert 11 in report.positions(FindingKind.DELETED)
    assert FindingKind.CORRUPT in report.kinds()  # the end record's count is off


def test_reordered_lines_with_positions_swapped(exported: tuple[World, Path]) -> None:
    def change(lines: list[dict[str, Any]]) -> None:
        a, b = _event(lines, 2), _event(lines, 9)
        a["position"], b["position"] = 9, 2

    report = _tampered(exported, change)
    assert sorted(report.positions(FindingKind.REORDERED)) == [2, 9]


def test_lines_out_of_order_but_positions_intact_are_no_tampering(
    exported: tuple[World, Path],
) -> None:
    world, path = exported
    lines = _lines(path)
    events = [line for line in lines if line["type"] == "event"]
    rest = [line for line in lines if line["type"] != "event"]
    _write(path, [*rest[:-1], *reversed(events), rest[-1]])
    assert verify_export(path, keys=_pinned(world.factory)).ok


def test_forged_checkpoint_in_an_export(exported: tuple[World, Path]) -> None:
    def change(lines: list[dict[str, Any]]) -> None:
        token = lines[1]["token"]
        lines[1]["token"] = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")

    report = _tampered(exported, change)
    assert [f.line for f in report.findings if f.kind is FindingKind.CHECKPOINT_FORGED] == [2]


def test_re_signed_export_is_caught_by_pinned_keys(exported: tuple[World, Path]) -> None:
    """A forger who rewrites the file can replace the keys in it, so an auditor pins them."""
    from audit.checkpoints import sign_checkpoint
    from keys.signer import SoftwareSigner, generate_private_key
    from kit.ids import b64url_decode

    world, path = exported
    lines = _lines(path)
    forger = SoftwareSigner("forger", "ES256", generate_private_key("ES256"))
    lines[0]["jwks"] = {"keys": [forger.public_jwk()]}
    for line in lines[1:3]:
        line["token"] = sign_checkpoint(
            forger,
            log_id="tongban-audit",
            seq=line["seq"],
            tree_size=line["tree_size"],
            root_hash=b64url_decode(line["root_hash"]),
            now=world.clock.now(),
        )
    _write(path, lines)
    assert verify_export(path).ok  # self-consistent…
    pinned = verify_export(path, keys=_pinned(world.factory))
    assert pinned.outcome is Outcome.FAILED  # …but not signed by the platform
    assert FindingKind.CHECKPOINT_FORGED in pinned.kinds()


@pytest.mark.parametrize(
    "damage",
    [
        "cut_in_the_middle_of_a_line",
        "cut_after_a_line",
        "garbage_line",
        "binary_noise",
        "invalid_utf8",
        "wrong_shape_event",
        "bad_position",
        "empty_file",
        "not_an_export",
        "overlong_line",
        "header_garbled",
        "deep_json",
    ],
)
def test_corrupted_export_is_reported_never_raises(
    exported: tuple[World, Path], damage: str
) -> None:
    world, path = exported
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    if damage == "cut_in_the_middle_of_a_line":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "cut_after_a_line":
        path.write_bytes(b"".join(lines[:10]))
    elif damage == "garbage_line":
        path.write_bytes(b"".join([*lines[:5], b"{not json\n", *lines[5:]]))
    elif damage == "binary_noise":
        path.write_bytes(b"".join([*lines[:7], bytes(range(256)) + b"\n", *lines[7:]]))
    elif damage == "invalid_utf8":
        path.write_bytes(
            b"".join([*lines[:7], lines[7].replace(b"dept-a", b"\xff\xfe"), *lines[8:]])
        )
    elif damage == "wrong_shape_event":
        broken = json.loads(lines[6])
        broken["entry"] = ["not", "an", "object"]
        path.write_bytes(b"".join([*lines[:6], json.dumps(broken).encode() + b"\n", *lines[7:]]))
    elif damage == "bad_position":
        broken = json.loads(lines[6])
        broken["position"] = "three"
        path.write_bytes(b"".join([*lines[:6], json.dumps(broken).encode() + b"\n", *lines[7:]]))
    elif damage == "empty_file":
        path.write_bytes(b"")
    elif damage == "not_an_export":
        path.write_bytes(b"hello\nworld\n")
    elif damage == "overlong_line":
        path.write_bytes(
            b"".join([*lines[:4], b'{"type":"event"' + b" " * (2 << 20) + b"}\n", *lines[4:]])
        )
    elif damage == "header_garbled":
        header = json.loads(lines[0])
        header["pruned"] = {"size": 3, "frontier": ["!!"], "last_leaf": 7}
        path.write_bytes(b"".join([json.dumps(header).encode() + b"\n", *lines[1:]]))
    elif damage == "deep_json":
        path.write_bytes(b"".join([*lines[:4], b"[" * 100000 + b"\n", *lines[4:]]))
    report = verify_export(path, keys=_pinned(world.factory))
    assert report.outcome is Outcome.FAILED, report.summary()
    assert report.findings


def test_missing_export_file(tmp_path: Path) -> None:
    report = verify_export(tmp_path / "nowhere.jsonl")
    assert report.outcome is Outcome.FAILED
