"""The event vocabulary and the checks every event passes before it is written.

Events are named `<artifact>.<verb>` as node-oidc-provider names its events
(`authorization_code.consumed`, `grant.revoked`). Each record holds what GB/T 22239-2019
§8.1.4.3 c) asks of an audit record — time, user (actor), type (event) and result — plus
subject, client, source address and details. Personal identifiers appear only pseudonymised
(`AuditLog.pseudonymise`); a guard refuses ID numbers and mobile numbers written in clear
(PIPL Art. 51, standards.md §7).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from audit.errors import (
    ControlCharacters,
    DetailsTooLarge,
    InvalidField,
    PersonalDataInClear,
    UnknownEvent,
)
from kit.canonical import CanonicalisationError, canonical_json
from kit.identifiers import IdentifierError, normalise_id_number

__all__ = [
    "ACTOR_KINDS",
    "EVENTS",
    "MAX_DETAILS_BYTES",
    "RESULTS",
    "CheckedEvent",
    "EventRegistry",
    "EventType",
    "ValidatedEvent",
    "check_event",
]

#: Canonical JSON (RFC 8785) size limit of `details`.
MAX_DETAILS_BYTES = 4096
#: `success` and `failure` as GB/T 22239 §8.1.4.3 c) asks; `error` when the system failed.
RESULTS = ("success", "failure", "error")
#: The conventional actor kinds: `user:<account id>`, `client:<client_id>`,
#: `operator:<name>`, `system[:<job>]`. Any lower-case `kind[:value]` without spaces is
#: accepted (`self-registration`, `cli:<login>`), so emitters are never refused for style.
ACTOR_KINDS = ("user", "client", "operator", "system")

_NAME = re.compile(r"[a-z][a-z0-9_]{0,30}\.[a-z][a-z0-9_]{0,30}")
_ACTOR = re.compile(r"[a-z][a-z0-9_-]{0,31}(:[^\s:]\S{0,190})?")
#: C0 and C1 controls, DEL, line/paragraph separators and bidirectional overrides: they
#: forge line breaks in log viewers or reorder what an auditor reads (CVE-2021-42574).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
#: An 18-character token that may be a 公民身份号码 (checked further by its check digit).
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
#: A mainland mobile number standing alone, optionally with +86 / 86.
_MOBILE = re.compile(r"(?<![0-9A-Za-z+])(?:\+?86[- ]?)?1[3-9][0-9]{9}(?![0-9A-Za-z])")
_MAX_DEPTH = 4

_LIMITS = {"actor": 200, "subject": 128, "client_id": 64, "source": 64}


@dataclass(frozen=True)
class EventType:
    """One kind of event. `holder_visible` events appear in the account holder's own
    history on the account page (login, session, consent, credential changes)."""

    name: str
    description: str
    holder_visible: bool = False


class EventRegistry:
    """The known event names. Unknown names are refused, so a typo cannot create an event
    no auditor's query will find."""

    def __init__(self, types: Iterable[EventType] = ()) -> None:
        self._types: dict[str, EventType] = {}
        for item in types:
            self._add(item)

    def _add(self, item: EventType) -> None:
        if not _NAME.fullmatch(item.name):
            raise InvalidField(
                f"event name {item.name!r} is not `<artifact>.<verb>` in lower-case snake_case"
            )
        if item.name in self._types:
            raise InvalidField(f"event {item.name!r} is registered twice")
        self._types[item.name] = item

    def register(self, name: str, description: str, *, holder_visible: bool = False) -> EventType:
        """Add an event type (for packages that come later: `signing/`, `certvault/`)."""
        item = EventType(name, description, holder_visible)
        self._add(item)
        return item

    def extended(self, *types: EventType) -> EventRegistry:
        """A copy with more event types; this registry is left unchanged."""
        return EventRegistry([*self._types.values(), *types])

    def get(self, name: str) -> EventType:
        try:
            return self._types[name]
        except (KeyError, TypeError):
            shown = name if isinstance(name, str) and len(name) <= 80 else "<invalid>"
            raise UnknownEvent(
                f"unknown audit event {shown!r}: register it in audit.events "
                "(names are `<artifact>.<verb>`, e.g. `token.issued`)"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[EventType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    @property
    def holder_visible(self) -> tuple[str, ...]:
        return tuple(t.name for t in self._types.values() if t.holder_visible)


def _t(name: str, description: str, holder_visible: bool = False) -> EventType:
    return EventType(name, description, holder_visible)


#: The platform's vocabulary. Keep it sorted by artifact; add, never rename (old events keep
#: their names in the log forever).
EVENTS = EventRegistry(
    [
        # accounts and credentials (idp/)
        _t("account.created", "an account was created", True),
        _t("account.updated", "account data was changed", True),
        _t("account.locked", "an account was locked after repeated failures", True),
        _t("account.unlocked", "an account was unlocked", True),
        _t("account.disabled", "an account was disabled", True),
        _t("account.enabled", "an account was enabled again", True),
        _t("account.deleted", "an account was deleted", True),
        _t("password.changed", "a password was changed", True),
        _t("password.reset", "a password was reset", True),
        _t("totp.enrolled", "a TOTP second factor was enrolled", True),
        _t("totp.removed", "a TOTP second factor was removed", True),
        _t("passkey.registered", "a passkey was registered", True),
        _t("passkey.removed", "a passkey was removed", True),
        _t("recovery_code.used", "a recovery code was used", True),
        _t("recovery_code.regenerated", "recovery codes were regenerated", True),
        _t("enterprise.created", "an enterprise was registered"),
        _t("enterprise.agent_added", "an agent was authorised for an enterprise", True),
        _t("enterprise.agent_removed", "an agent's authorisation was removed", True),
        # authentication and SSO sessions
        _t("login.succeeded", "a login succeeded", True),
        _t("login.failed", "a login failed", True),
        _t("session.created", "an SSO session began", True),
        _t("session.ended", "an SSO session ended (logout, expiry, revocation)", True),
        _t("session.acting_selected", "an agent chose whom the session acts for", True),
        # OAuth 2.0 / OpenID Connect
        _t("consent.granted", "consent was given to a client", True),
        _t("consent.revoked", "consent was withdrawn", True),
        _t("consent.denied", "the holder declined a client's request", True),
        _t("authorization_code.issued", "an authorization code was issued"),
        _t("authorization_code.consumed", "an authorization code was redeemed"),
        _t("authorization_code.reused", "a used authorization code was presented again"),
        _t("token.issued", "tokens were issued", True),
        _t("token.refreshed", "tokens were refreshed"),
        _t("token.revoked", "a token was revoked", True),
        _t("token.introspected", "a token was introspected"),
        _t("refresh_token.reused", "a rotated refresh token was presented again"),
        _t("grant.revoked", "a grant and its tokens were revoked", True),
        _t("par.created", "a pushed authorization request was stored"),
        _t("logout.backchannel_sent", "a back-channel logout was delivered"),
        _t("logout.backchannel_failed", "a back-channel logout could not be delivered"),
        # clients (department systems)
        _t("client.created", "a client was registered"),
        _t("client.updated", "a client's registration was changed"),
        _t("client.secret_rotated", "a client secret was rotated"),
        _t("client.removed", "a client was removed"),
        # keys/
        _t("key.created", "a signing key was created"),
        _t("key.activated", "a signing key began to sign"),
        _t("key.rotated", "a signing key was superseded and is retiring"),
        _t("key.retired", "a signing key was retired"),
        _t("key.revoked", "a signing key was revoked"),
        _t("kek.rotated", "the key-encryption keys were rotated"),
        _t("certificate.issued", "a PKI certificate was issued"),
        _t("certificate.revoked", "a PKI certificate was revoked"),
        # signing/
        _t("seal.created", "an electronic seal was created"),
        _t("seal.suspended", "an electronic seal was suspended"),
        _t("seal.reinstated", "an electronic seal was reinstated"),
        _t("seal.revoked", "an electronic seal was revoked"),
        _t("document.sealed", "a document was sealed"),
        _t("document.verified", "a sealed document was verified"),
        # certvault/
        _t("licence.issued", "a licence was issued", True),
        _t("licence.superseded", "a licence was superseded", True),
        _t("licence.suspended", "a licence was suspended", True),
        _t("licence.reinstated", "a licence was reinstated", True),
        _t("licence.revoked", "a licence was revoked", True),
        _t("licence.accessed", "a department fetched a licence", True),
        _t("licence.shared", "the holder shared a licence", True),
        _t("licence.verified", "a licence was verified"),
        _t("licence_type.created", "a licence type was defined"),
        # the audit log itself (GB/T 22239 §8.1.4.3 d): the audit process leaves a trace)
        _t("audit.exported", "the audit log was exported"),
        _t("audit.pruned", "events older than the retention period were pruned"),
        _t("audit.verified", "the audit log was verified"),
    ]
)


class ValidatedEvent(NamedTuple):
    """An event that passed every check; `details_json` is its RFC 8785 canonical form.
    A tuple, so bulk writers insert it as it is."""

    event: str
    actor: str | None
    subject: str | None
    client_id: str | None
    source: str | None
    result: str
    details_json: str


def _check_text(field: str, value: str) -> None:
    if _CONTROL.search(value):
        raise ControlCharacters(
            f"audit {field} contains control or bidirectional characters; "
            "send single-line text without them"
        )
    if _MOBILE.search(value):
        raise PersonalDataInClear(
            f"audit {field} contains what looks like a mobile number: "
            "pass it through AuditLog.pseudonymise() first"
        )
    for match in _ID_NUMBER.finditer(value):
        try:
            normalise_id_number(match.group(0))
        except IdentifierError:
            continue  # a long number that is not an ID number (wrong check digit or date)
        raise PersonalDataInClear(
            f"audit {field} contains an ID number: pass it through AuditLog.pseudonymise() first"
        )


def _optional(field: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField(f"audit {field} must be a string or None")
    if not value or len(value) > _LIMITS[field]:
        raise InvalidField(f"audit {field} must have 1 to {_LIMITS[field]} characters")
    _check_text(field, value)
    return value


def _walk_details(value: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise InvalidField(f"audit details nest deeper than {_MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text("details", value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidField("audit details keys must be strings")
            _check_text("details key", key)
            _walk_details(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk_details(item, depth + 1)
    elif value is None or isinstance(value, bool | int | float):
        return
    else:
        raise InvalidField(
            f"audit details hold a {type(value).__name__}: use strings, numbers, booleans, "
            "lists and objects only"
        )


CheckedEvent = tuple[str, str | None, str | None, str | None, str | None, str, str]


def check_event(
    registry: EventRegistry,
    event: str,
    actor: str | None = None,
    subject: str | None = None,
    client_id: str | None = None,
    source: str | None = None,
    result: str = "success",
    details: Mapping[str, Any] | None = None,
) -> CheckedEvent:
    """Check an event at the interface (unknown name, malformed actor, oversized details,
    control characters, personal data in clear) and canonicalise its details: (event,
    actor, subject, client_id, source, result, details JSON)."""
    fast = _fast_check(registry, event, actor, subject, client_id, source, result, details)
    if fast is not None:
        return fast
    return _validate_exact(
        registry,
        event,
        actor=actor,
        subject=subject,
        client_id=client_id,
        source=source,
        result=result,
        details=details,
    )


#: Whatever `_check_text` refuses holds a `_CONTROL` character (none is printable to
#: `str.isprintable`) or eleven ASCII digits in a row (a mobile number has 11, an ID number
#: 17): text with neither passes it. Written `[0-9][0-9]{10}`, the pattern gets the
#: regular-expression engine's scan for a first character, twice as fast as `[0-9]{11}`.
_ELEVEN_DIGITS = re.compile("[0-9][0-9]{10}")
#: `_walk_details` refuses members deeper than `_MAX_DEPTH`; a container at this depth
#: would have its members there, so the fast path leaves it to the exact checks.
_FAST_MAX_CONTAINER_DEPTH = _MAX_DEPTH - 1
#: Integers the C encoder writes as RFC 8785 does (I-JSON range, as `kit.canonical`).
_MAX_SAFE_INT = 2**53


def _collect_text(value: Any, texts: list[str], depth: int) -> bool:
    """Add the member names and strings of the container `value` (at `depth`) to `texts`.
    False if it holds anything the fast path leaves to the exact checks: a float, a
    non-ASCII member name, a type other than dict, list, tuple, str, int, bool and None
    (subclasses included), an integer beyond 2^53, or nesting too deep."""
    if type(value) is dict:
        for key in value:
            if type(key) is not str or not key.isascii():
                return False
            texts.append(key)
        members = value.values()
    else:
        members = value
    for item in members:
        kind = type(item)
        if kind is str:
            texts.append(item)
        elif kind is int:
            if not -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                return False
        elif item is None or item is True or item is False:
            continue
        elif (kind is dict or kind is list or kind is tuple) and depth < _FAST_MAX_CONTAINER_DEPTH:
            if not _collect_text(item, texts, depth + 1):
                return False
        else:
            return False
    return True


def _fast_check(
    registry: EventRegistry,
    event: Any,
    actor: Any,
    subject: Any,
    client_id: Any,
    source: Any,
    result: Any,
    details: Any,
) -> CheckedEvent | None:
    """The checks of `_validate_exact` for the common event, or None to leave the event to
    them (which then refuse it or pass it).

    Returns a value only where `_validate_exact` would return the same one: a registered
    name, fields that are None or short `str`s, an actor of the allowed form, a known
    result, details made of dicts with ASCII names, lists, strings, integers, booleans and
    None (no floats), no text that `_check_text` could refuse, canonical JSON within the limit.
    """
    if type(event) is not str or event not in registry._types or result not in RESULTS:
        return None
    texts: list[str] = []
    if actor is not None:
        if (
            type(actor) is not str
            or not 0 < len(actor) <= _LIMITS["actor"]
            or (actor != "system" and not _ACTOR.fullmatch(actor))
        ):
            return None
        texts.append(actor)
    for field, value in (("subject", subject), ("client_id", client_id), ("source", source)):
        if value is not None:
            if type(value) is not str or not 0 < len(value) <= _LIMITS[field]:
                return None
            texts.append(value)
    if details is None:
        details = {}
    elif type(details) is not dict or not _collect_text(details, texts, 0):
        return None
    # One space between texts: neither a control character nor a digit, so the joined
    # text holds a match exactly when one of the texts does.
    text = " ".join(texts)
    if (not text.isprintable() and _CONTROL.search(text)) or _ELEVEN_DIGITS.search(text):
        return None
    try:
        canonical = canonical_json(details)
    except CanonicalisationError:
        return None
    if len(canonical) > MAX_DETAILS_BYTES:
        return None
    return event, actor, subject, client_id, source, result, canonical.decode("utf-8")


def _validate_exact(
    registry: EventRegistry,
    event: str,
    *,
    actor: str | None,
    subject: str | None,
    client_id: str | None,
    source: str | None,
    result: str,
    details: Mapping[str, Any] | None,
) -> ValidatedEvent:
    """Every check, one by one, with the error message that names what failed."""
    registry.get(event)
    if (
        actor is not None
        and actor != "system"
        and (not isinstance(actor, str) or not _ACTOR.fullmatch(actor))
    ):
        raise InvalidField(
            "audit actor is `user:<account id>`, `client:<client_id>`, "
            "`operator:<name>` or `system[:<job>]`"
        )
    checked_actor = _optional("actor", actor)
    if result not in RESULTS:
        raise InvalidField(f"audit result must be one of {', '.join(RESULTS)}")
    if details is None:
        details = {}
    if not isinstance(details, Mapping):
        raise InvalidField("audit details must be a mapping")
    _walk_details(details, 0)
    try:
        canonical = canonical_json(details)
    except CanonicalisationError as exc:
        raise InvalidField(f"audit details are not I-JSON: {exc.description}") from exc
    if len(canonical) > MAX_DETAILS_BYTES:
        raise DetailsTooLarge(
            f"audit details are {len(canonical)} bytes of canonical JSON; "
            f"the limit is {MAX_DETAILS_BYTES}: record identifiers, not documents"
        )
    return ValidatedEvent(
        event=event,
        actor=checked_actor,
        subject=_optional("subject", subject),
        client_id=_optional("client_id", client_id),
        source=_optional("source", source),
        result=result,
        details_json=canonical.decode("utf-8"),
    )
