"""The bytes a leaf hashes: one event as RFC 8785 canonical JSON.

The entry is a flat object of strings (and nulls) plus the version number `v`; `details`
is embedded as its own canonical JSON text, so the bytes hashed are exactly the bytes
stored and no number or key order can drift between writer and verifier. For such a flat
object of strings, `json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)` produces the RFC 8785 form (ASCII member names sort the same in
UTF-16; strings escape only `"`, `\\` and C0 controls, lower-case hex) at C speed —
`tests/audit` checks it against `kit.canonical`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from kit.ids import b64url, b64url_decode

ENTRY_VERSION = 1
#: `prev` of the very first event.
GENESIS = bytes(32)
ENTRY_KEYS = frozenset(
    {
        "v",
        "id",
        "time",
        "event",
        "actor",
        "subject",
        "client_id",
        "source",
        "result",
        "details",
        "prev",
    }
)

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
#: JSON string encoder of the standard library (C-accelerated; escapes `"`, `\\` and C0
#: controls, leaves other characters as they are: what `ensure_ascii=False` does).
_string: Callable[[str], str] = json.encoder.encode_basestring


_NO_OFFSET = timedelta(0)


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds, the precision both databases keep."""
    # psycopg gives a zone such as `Etc/UTC`: already UTC, so only the offset is checked.
    if moment.tzinfo is not UTC and moment.utcoffset() != _NO_OFFSET:
        moment = moment.astimezone(UTC)
    # isoformat ends in "+00:00" for UTC; RFC 3339 allows "Z", which we always write.
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def make_entry(
    *,
    event_id: str,
    time: datetime,
    event: str,
    actor: str | None,
    subject: str | None,
    client_id: str | None,
    source: str | None,
    result: str,
    details: str,
    prev: bytes,
) -> dict[str, Any]:
    return {
        "v": ENTRY_VERSION,
        "id": event_id,
        "time": format_time(time),
        "event": event,
        "actor": actor,
        "subject": subject,
        "client_id": client_id,
        "source": source,
        "result": result,
        "details": details,
        "prev": b64url(prev),
    }


def _opt(value: str | None) -> str:
    return "null" if value is None else _string(value)


def leaf_data(
    *,
    event_id: str,
    time: datetime,
    event: str,
    actor: str | None,
    subject: str | None,
    client_id: str | None,
    source: str | None,
    result: str,
    details: str,
    prev: bytes,
) -> bytes:
    """`entry_bytes(make_entry(...))` without the intermediate dict: the sequencer and the
    verifier's hot path (members written in their sorted order)."""
    try:
        return (
            f'{{"actor":{_opt(actor)},"client_id":{_opt(client_id)},'
            f'"details":{_string(details)},"event":{_string(event)},"id":{_string(event_id)},'
            f'"prev":"{b64url(prev)}","result":{_string(result)},"source":{_opt(source)},'
            f'"subject":{_opt(subject)},"time":"{format_time(time)}","v":{ENTRY_VERSION}}}'
        ).encode()
    except (TypeError, AttributeError, UnicodeEncodeError) as exc:
        raise ValueError(str(exc)) from exc


def chain_leaf_hashes(
    rows: Iterable[Sequence[Any]], prev: bytes
) -> tuple[list[bytes], list[bytes]]:
    """The RFC 9162 leaf hashes of consecutive events, each chained to the one before
    (`prev` before the first): (prev hashes, leaf hashes), one of each per row.

    Rows are laid out as `audit._bulk.PendingRow` (id, event_id, stored time, event,
    actor, subject, client_id, source, result, details, RFC 3339 time). The same bytes
    as `leaf_hash(leaf_data(...))` with both calls inlined: the sequencer hashes a
    thousand events a batch, and the calls would be a third of the cost."""
    prevs: list[bytes] = []
    leaves: list[bytes] = []
    sha256, string, opt = hashlib.sha256, _string, _opt
    for _, event_id, _, event, actor, subject, client_id, source, result, details, at in rows:
        prevs.append(prev)
        prev = sha256(
            b"\x00"
            + (
                f'{{"actor":{opt(actor)},"client_id":{opt(client_id)},'
                f'"details":{string(details)},"event":{string(event)},"id":{string(event_id)},'
                f'"prev":"{b64url(prev)}","result":{string(result)},"source":{opt(source)},'
                f'"subject":{opt(subject)},"time":"{at}","v":{ENTRY_VERSION}}}'
            ).encode()
        ).digest()
        leaves.append(prev)
    return prevs, leaves


def entry_bytes(entry: Mapping[str, Any]) -> bytes:
    """Canonical bytes of an entry. Raises `ValueError` for an entry that cannot be
    serialised (e.g. a lone surrogate in tampered data)."""
    try:
        return _dumps(entry).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise ValueError(str(exc)) from exc


def check_entry_shape(entry: object) -> str | None:
    """Why an entry read from an export is malformed, or None."""
    if not isinstance(entry, dict):
        return "the entry is not an object"
    if set(entry) != ENTRY_KEYS:
        return "the entry does not have exactly the expected members"
    if entry["v"] != ENTRY_VERSION or isinstance(entry["v"], bool):
        return f"unknown entry version {entry['v']!r}"
    for key in ("id", "time", "event", "result", "details", "prev"):
        if not isinstance(entry[key], str):
            return f"entry member {key!r} is not a string"
    for key in ("actor", "subject", "client_id", "source"):
        if entry[key] is not None and not isinstance(entry[key], str):
            return f"entry member {key!r} is not a string or null"
    return None


def encode_hashes(hashes: tuple[bytes, ...] | list[bytes]) -> str:
    """A list of hashes as stored: JSON list of base64url strings."""
    return json.dumps([b64url(h) for h in hashes])


def decode_hashes(data: str | None) -> tuple[bytes, ...] | None:
    """The hashes stored by `encode_hashes`, or None if `data` is missing or malformed."""
    if data is None:
        return None
    try:
        items = json.loads(data)
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            return None
        return tuple(b64url_decode(i) for i in items)
    except ValueError:
        return None


def prev_of(entry: Mapping[str, Any]) -> bytes:
    try:
        value = b64url_decode(str(entry["prev"]))
    except (ValueError, KeyError):
        return b""
    return value
