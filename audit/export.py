"""Export the log as JSON Lines for shipping off the host (ASVS 16.4.3), and verify an export
without the database.

An export is one JSON object per line:

1. `{"type": "header", ...}` — format and version, log name, time, the tree head the
   sequencer recorded, the pruned boundary (its compact range and last leaf hash) and the
   public keys of every checkpoint signer as a JWKS (RFC 7517), with the revoked `kid`s;
2. `{"type": "checkpoint", ...}` — each signed checkpoint (the compact JWS) and, for
   pruned-over ones, their consistency proof;
3. `{"type": "event", "position": p, "leaf_hash": ..., "entry": {...}}` — each event, its
   `entry` being exactly the object whose RFC 8785 form is the leaf data;
4. `{"type": "end", "events": n, "checkpoints": c}` — so a cut-short file shows.

`verify_export` runs the same verifier as `verify_log`. It never raises on a corrupt file:
unreadable lines, wrong shapes, bad encodings become findings with their line number. The
keys in the header are used only when no pinned keys are given — someone who can rewrite
the file can also replace them, so auditors should pin the platform's audit JWKS.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audit._entry import check_entry_shape, entry_bytes, format_time, make_entry, prev_of
from audit.checkpoints import (
    DEFAULT_LOG_ID,
    CheckpointInvalid,
    CheckpointKeys,
    checkpoint_keys,
)
from audit.models import EVENT_TABLE
from audit.verify import (
    CheckpointInput,
    Finding,
    FindingKind,
    HeadInput,
    PrunedInput,
    RowInput,
    VerificationReport,
    _snapshot,
    db_inputs,
    run_verifier,
)
from keys.kek import KeyEncryptionKeys
from kit.clock import Clock
from kit.ids import b64url, b64url_decode

__all__ = [
    "EXPORT_FORMAT",
    "ExportSummary",
    "export_log",
    "verify_export",
    "witnessed_checkpoints",
]

EXPORT_FORMAT = "tongban-audit-export"
EXPORT_VERSION = 1
#: Longer lines are corrupt by definition (an event is < 8 KiB); this bounds memory.
MAX_LINE = 1 << 20
_EVENTS = EVENT_TABLE


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    events: int
    checkpoints: int
    first_position: int
    tree_size: int


def _line(out: IO[bytes], obj: Mapping[str, Any]) -> None:
    out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    out.write(b"\n")


def export_log(
    factory: sessionmaker[Session],
    path: Path,
    *,
    clock: Clock,
    keys: CheckpointKeys | None = None,
    keks: KeyEncryptionKeys | None = None,
    log_id: str = DEFAULT_LOG_ID,
) -> ExportSummary:
    """Write the whole log (events, checkpoints, keys) to `path` from one snapshot. The
    file appears complete or not at all (written aside, then renamed)."""
    tmp = path.with_name(path.name + ".part")
    events = 0
    with factory() as session:
        _snapshot(session)
        keys = keys or checkpoint_keys(session, keks=keks)
        checkpoints, pruned, head = db_inputs(session)
        with tmp.open("wb") as out:
            _line(
                out,
                {
                    "type": "header",
                    "format": EXPORT_FORMAT,
                    "version": EXPORT_VERSION,
                    "log_id": log_id,
                    "exported_at": format_time(clock.now()),
                    "tree_size": head.size if head else 0,
                    "root_hash": b64url(head.root_hash) if head and head.root_hash else None,
                    "last_leaf": b64url(head.last_leaf) if head and head.last_leaf else None,
                    "checkpoints_issued": head.checkpoints if head else 0,
                    "pruned": {
                        "size": pruned.size,
                        "frontier": [b64url(h) for h in pruned.frontier],
                        "last_leaf": b64url(pruned.last_leaf),
                    },
                    "jwks": {"keys": [dict(k) for k in keys.jwks["keys"]]},
                    "revoked_kids": sorted(keys.revoked),
                },
            )
            for cp in checkpoints:
                _line(
                    out,
                    {
                        "type": "checkpoint",
                        "seq": cp.seq,
                        "tree_size": cp.tree_size,
                        "root_hash": b64url(cp.root_hash or b""),
                        "token": cp.token,
                        "anchor_size": cp.anchor_size,
                        "anchor_proof": None
                        if cp.anchor_proof is None
                        else [b64url(h) for h in cp.anchor_proof],
                    },
                )
            stmt = select(_EVENTS).order_by(_EVENTS.c.position)
            for row in session.execute(stmt, execution_options={"yield_per": 5000}):
                entry = make_entry(
                    event_id=row.event_id,
                    time=row.recorded_at,
                    event=row.event,
                    actor=row.actor,
                    subject=row.subject,
                    client_id=row.client_id,
                    source=row.source,
                    result=row.result,
                    details=row.details,
                    prev=bytes(row.prev_hash),
                )
                _line(
                    out,
                    {
                        "type": "event",
                        "position": row.position,
                        "leaf_hash": b64url(bytes(row.leaf_hash)),
                        "entry": entry,
                    },
                )
                events += 1
            _line(out, {"type": "end", "events": events, "checkpoints": len(checkpoints)})
            out.flush()
            os.fsync(out.fileno())
        session.rollback()
    tmp.replace(path)
    return ExportSummary(path, events, len(checkpoints), pruned.size, head.size if head else 0)


# -- reading an export ----------------------------------------------------------------------


class _Corrupt(Exception):
    pass


def _b64(value: object, what: str, size: int | None = 32) -> bytes:
    if not isinstance(value, str):
        raise _Corrupt(f"{what} is not a base64url string")
    try:
        data = b64url_decode(value)
    except ValueError as exc:
        raise _Corrupt(f"{what} is not base64url") from exc
    if size is not None and len(data) != size:
        raise _Corrupt(f"{what} is not a {size}-byte hash")
    return data


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Corrupt(f"{what} is not a non-negative integer")
    return value


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _lines(path: Path, start: int = 0) -> Iterator[tuple[int, int, bytes | None]]:
    """(line number, byte offset, raw line or None if overlong) from `start`."""
    with path.open("rb") as fh:
        fh.seek(start)
        offset, number = start, 0
        while True:
            raw = fh.readline(MAX_LINE + 1)
            if not raw:
                return
            number += 1
            here = offset
            offset += len(raw)
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the line
                    raw = fh.readline(MAX_LINE + 1)
                    offset += len(raw)
                yield number, here, None
                continue
            yield number, here, raw


def _parse(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise _Corrupt(f"the line is longer than {MAX_LINE} bytes")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _Corrupt("the line is not UTF-8 JSON") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise _Corrupt("the line is not a typed JSON object")
    return obj


def _row(obj: Mapping[str, Any], line: int) -> RowInput:
    slot = _int(obj.get("position"), "the event position")
    try:
        leaf = _b64(obj.get("leaf_hash"), "the leaf hash")
        entry = obj.get("entry")
        problem = check_entry_shape(entry)
        if problem is not None:
            raise _Corrupt(problem)
        assert isinstance(entry, dict)
        return RowInput(slot, entry_bytes(entry), leaf, prev_of(entry), line=line)
    except (_Corrupt, ValueError) as exc:
        return RowInput(slot, None, b"", b"", error=f"unreadable event: {exc}", line=line)


@dataclass
class _Scan:
    header: dict[str, Any]
    checkpoints: list[CheckpointInput]
    findings: list[Finding]
    positions: array[int]
    offsets: array[int]
    lines: array[int]
    ordered: bool
    events: int
    end: dict[str, Any] | None


def _scan(path: Path) -> _Scan:
    """First read: header, checkpoints, the end record and where each event line is."""
    findings: list[Finding] = []
    header: dict[str, Any] | None = None
    checkpoints: list[CheckpointInput] = []
    positions, offsets, lines = array("q"), array("q"), array("q")
    end: dict[str, Any] | None = None
    ordered, last, events = True, -1, 0
    for number, offset, raw in _lines(path):
        try:
            obj = _parse(raw)
            kind = obj["type"]
            if number == 1:
                if kind != "header" or obj.get("format") != EXPORT_FORMAT:
                    raise _Corrupt("the file does not start with a Tongban audit export header")
                if obj.get("version") != EXPORT_VERSION:
                    raise _Corrupt(f"unsupported export version {obj.get('version')!r}")
                header = obj
            elif end is not None:
                raise _Corrupt("a line after the end record")
            elif kind == "checkpoint":
                proof = obj.get("anchor_proof")
                token = obj.get("token")
                checkpoints.append(
                    CheckpointInput(
                        token=token if isinstance(token, str) else "",
                        seq=_opt_int(obj.get("seq")),
                        tree_size=_opt_int(obj.get("tree_size")),
                        root_hash=_b64(obj.get("root_hash"), "the checkpoint root"),
                        anchor_size=obj.get("anchor_size")
                        if isinstance(obj.get("anchor_size"), int)
                        else None,
                        anchor_proof=None
                        if not isinstance(proof, list)
                        else tuple(_b64(p, "a proof hash") for p in proof),
                        line=number,
                    )
                )
            elif kind == "event":
                position = _int(obj.get("position"), "the event position")
                ordered = ordered and position > last
                last = position
                positions.append(position)
                offsets.append(offset)
                lines.append(number)
                events += 1
            elif kind == "end":
                end = obj
            else:
                raise _Corrupt(f"unknown record type {kind!r}")
        except _Corrupt as exc:
            findings.append(Finding(FindingKind.CORRUPT, None, str(exc), line=number))
            if number == 1:
                break
    if header is None:
        raise _Corrupt(findings[0].message if findings else "the file is empty")
    return _Scan(header, checkpoints, findings, positions, offsets, lines, ordered, events, end)


def _header_inputs(header: Mapping[str, Any]) -> tuple[PrunedInput, HeadInput | None, str | None]:
    """The pruned boundary and tree head the header claims; an error text if unusable."""
    try:
        pruned_obj = header.get("pruned")
        if not isinstance(pruned_obj, dict) or not isinstance(pruned_obj.get("frontier"), list):
            raise _Corrupt("the header's pruned range is malformed")
        pruned = PrunedInput(
            size=_int(pruned_obj.get("size"), "the pruned size"),
            frontier=tuple(_b64(h, "a pruned hash") for h in pruned_obj["frontier"]),
            last_leaf=_b64(pruned_obj.get("last_leaf"), "the pruned last leaf"),
        )
        root = header.get("root_hash")
        last = header.get("last_leaf")
        head = HeadInput(
            size=_int(header.get("tree_size"), "the tree size"),
            root_hash=None if root is None else _b64(root, "the tree head"),
            last_leaf=None if last is None else _b64(last, "the last leaf"),
            checkpoints=_int(header.get("checkpoints_issued", 0), "the checkpoint count"),
        )
        return pruned, head, None
    except _Corrupt as exc:
        return PrunedInput(error=str(exc)), None, str(exc)


def _failed(log_id: str, message: str, line: int | None = None) -> VerificationReport:
    return run_verifier(
        log_id=log_id,
        keys=CheckpointKeys({"keys": []}),
        rows=list,
        checkpoints=[],
        pruned=PrunedInput(),
        head=None,
        findings=[Finding(FindingKind.CORRUPT, None, message, line=line)],
    )


def witnessed_checkpoints(path: Path) -> list[str]:
    """The checkpoint tokens of an earlier export, to hold a later log to what they signed
    (`verify_log(witnessed=...)`). Unreadable lines are skipped: each token is verified
    anyway."""
    tokens: list[str] = []
    for _number, _offset, raw in _lines(path):
        try:
            obj = _parse(raw)
        except _Corrupt:
            continue
        if obj["type"] == "checkpoint" and isinstance(obj.get("token"), str):
            tokens.append(obj["token"])
    return tokens


def verify_export(
    path: Path,
    *,
    keys: CheckpointKeys | None = None,
    log_id: str | None = None,
    witnessed: Sequence[str] = (),
) -> VerificationReport:
    """Verify an export file without the database (`tongban audit verify --from FILE`).

    `keys` pins the checkpoint keys (recommended); without it the JWKS in the file is
    used and the report warns so. Never raises for a corrupt or truncated file."""
    name = log_id or DEFAULT_LOG_ID
    try:
        scan = _scan(path)
    except _Corrupt as exc:
        return _failed(name, str(exc), line=1)
    except OSError as exc:
        return _failed(name, f"the export cannot be read: {exc.strerror or exc}")
    header = scan.header
    claimed = header.get("log_id")
    name = log_id or (claimed if isinstance(claimed, str) else DEFAULT_LOG_ID)
    warnings: list[str] = []
    findings = list(scan.findings)
    embedded_jwks = header.get("jwks")
    if keys is None:
        try:
            revoked = header.get("revoked_kids") or []
            keys = CheckpointKeys(
                jwks=embedded_jwks if isinstance(embedded_jwks, dict) else {"keys": []},
                revoked=frozenset(str(k) for k in revoked)
                if isinstance(revoked, list)
                else frozenset(),
            )
        except CheckpointInvalid as exc:
            findings.append(
                Finding(
                    FindingKind.CORRUPT,
                    None,
                    f"the export's JWKS is unusable: {exc.description}",
                    line=1,
                )
            )
            keys = CheckpointKeys({"keys": []})
        warnings.append(
            "checkpoint keys were taken from the export itself: pin the "
            "platform's audit JWKS to detect a re-signed export"
        )
    elif isinstance(embedded_jwks, dict) and {
        str(k.get("kid")) for k in embedded_jwks.get("keys", []) if isinstance(k, dict)
    } != set(keys.kids):
        warnings.append("the export lists other checkpoint keys than the pinned ones")
    pruned, head, problem = _header_inputs(header)
    if problem is not None:
        findings.append(Finding(FindingKind.CORRUPT, None, problem, line=1))
    if scan.end is None:
        findings.append(
            Finding(
                FindingKind.TRUNCATED, None, "the export has no end record: the file was cut short"
            )
        )
    elif (scan.end.get("events"), scan.end.get("checkpoints")) != (
        scan.events,
        len(scan.checkpoints),
    ):
        findings.append(
            Finding(
                FindingKind.CORRUPT,
                None,
                "the end record's counts differ from the lines in the file",
            )
        )

    def rows() -> Iterator[RowInput]:
        if scan.ordered:
            for number, _offset, raw in _lines(path):
                if raw is None or b'"event"' not in raw:
                    continue
                try:
                    obj = _parse(raw)
                    if obj["type"] == "event":
                        yield _row(obj, number)
                except _Corrupt:
                    continue  # reported by the scan
            return
        # Lines out of position order: read them in position order by offset.
        order = sorted(range(len(scan.positions)), key=lambda i: scan.positions[i])
        with path.open("rb") as fh:
            for i in order:
                fh.seek(scan.offsets[i])
                try:
                    obj = _parse(fh.readline(MAX_LINE + 1))
                    yield _row(obj, scan.lines[i])
                except _Corrupt:
                    continue

    witnesses = [CheckpointInput(t, None, None, None, witnessed=True) for t in witnessed]
    return run_verifier(
        log_id=name,
        keys=keys,
        rows=rows,
        checkpoints=scan.checkpoints + witnesses,
        pruned=pruned,
        head=head,
        findings=findings,
        warnings=warnings,
    )
