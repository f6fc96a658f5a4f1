"""What a server process knows about access tokens without asking the database.

Introspection and userinfo check a JWT's signature and then its revocation (RFC 9068
§4, RFC 7662 §2.2). Both are answered here when possible:

- **Verified tokens.** A token string whose signature this process has already checked
  against the current key set maps to its claims; expiry, issuer, audience, the client
  and revocation are still checked on every use, only the ECDSA verification is skipped.
- **Revocations.** Access tokens revoked by `jti`, and grants revoked (so every token
  carrying their `gid`), as a set in memory. This process's own revocations enter when
  their transaction commits. Those of other processes are read from the database at
  most `sync_seconds` after the last read, by the first request that finds the set older
  than that, in a thread where blocking is allowed; a request that may not block (the
  event loop) is told the set is stale and goes to the thread pool instead. So a
  revocation made on another replica takes effect here within `sync_seconds` (1 s by
  default), and nothing is ever answered from revocation knowledge older than that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from idp.models import Grant, RevokedAccessToken
from kit.clock import Clock, epoch

#: Rows are read again this far back on every sync: a revocation's timestamp is taken
#: before its transaction commits, and replicas' clocks differ a little.
OVERLAP = timedelta(seconds=30)
#: Key in `Session.info` where a unit of work lists its revocations until it commits.
PENDING = "tongban.revoked"
#: This often every relevant revocation is read again, not only the recent ones, and
#: expired entries are dropped: so a revocation missed by the incremental reads (a replica
#: clock more than `OVERLAP` off, a transaction committing later than that) counts here
#: within this time at worst.
FULL_READ_SECONDS = 60.0
#: The longest access-token lifetime the settings allow (seconds).
MAX_TOKEN_LIFE = 3600


class AccessTokenCache:
    def __init__(
        self,
        *,
        clock: Clock,
        token_ttl: int,
        sync_seconds: float = 1.0,
        max_tokens: int = 50_000,
    ) -> None:
        self.clock = clock
        self.sync_seconds = sync_seconds
        self.max_tokens = max_tokens
        # A grant revoked this long ago has no live token left: its tokens were issued
        # before the revocation and live `token_ttl` at most (the longest lifetime the
        # settings allow, so a lowered setting cannot shorten the memory under old tokens).
        self._grant_memory = timedelta(seconds=max(token_ttl, MAX_TOKEN_LIFE)) + OVERLAP
        self._verified: dict[str, dict[str, Any]] = {}
        self._keys = ""  # fingerprint of the key set the verified tokens were checked with
        self._jtis: dict[str, int] = {}  # jti -> the token's exp
        self._grants: dict[str, datetime] = {}  # gid -> when it may be forgotten
        self._synced_at = float("-inf")  # monotonic time of the last completed read
        self._read_from: datetime | None = None
        self._full_read_at = float("-inf")
        self._reading = threading.Lock()  # one database read at a time
        self._lock = threading.Lock()  # guards changes to the revocation sets

    # -- verified tokens ----------------------------------------------------------------

    def verified(self, token: str, keys: str) -> dict[str, Any] | None:
        """Claims of a token whose signature was checked against the key set with
        fingerprint `keys`. Any change of the key set (a key published, retired or revoked
        after a compromise) forgets every token: a revoked key's tokens must fail at once."""
        if keys != self._keys:
            self._verified, self._keys = {}, keys
            return None
        return self._verified.get(token)

    def remember(self, token: str, claims: dict[str, Any], keys: str) -> None:
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > MAX_TOKEN_LIFE:
            return  # no token of ours lives longer; never keep what we would not issue
        if keys != self._keys or len(self._verified) >= self.max_tokens:
            # Dropping everything is cheaper than LRU bookkeeping on every hit, and only
            # costs one signature check per live token afterwards.
            self._verified, self._keys = {}, keys
        self._verified[token] = claims

    # -- revocations --------------------------------------------------------------------

    @property
    def fresh(self) -> bool:
        return time.monotonic() - self._synced_at < self.sync_seconds

    def revoked(self, claims: dict[str, Any]) -> bool | None:
        """Whether the token is revoked, or None when this process's knowledge is too old
        to answer (the caller then syncs or asks the database)."""
        if not self.fresh:
            return None
        if claims.get("jti") in self._jtis:
            return True
        gid = claims.get("gid")
        return gid is not None and gid in self._grants

    def sync(self, session: Session) -> None:
        """Read revocations committed since the last read (everything still relevant on
        the first). One thread reads; the others keep answering from what is known."""
        if not self._reading.acquire(blocking=False):
            return
        try:
            started = time.monotonic()
            now = self.clock.now()
            full = started - self._full_read_at > FULL_READ_SECONDS
            since = (now - self._grant_memory if full else self._read_from or now) - OVERLAP
            jti_query = select(RevokedAccessToken.jti, RevokedAccessToken.expires_at).where(
                RevokedAccessToken.expires_at > now
            )
            if not full:
                # A full read takes every unexpired row, also those older than the
                # revoked_at column (which have no time).
                jti_query = jti_query.where(RevokedAccessToken.revoked_at >= since)
            jtis = session.execute(jti_query).all()
            grants = session.execute(
                select(Grant.id, Grant.revoked_at).where(Grant.revoked_at >= since)
            ).all()
            with self._lock:
                for jti, expires in jtis:
                    self._jtis[jti] = epoch(expires)
                for gid, revoked_at in grants:
                    if revoked_at is not None:  # the query asks for revoked ones only
                        self._grants[gid] = revoked_at + self._grant_memory
                if full:
                    self._forget_expired(now)
                    self._full_read_at = started
            self._read_from = now
            self._synced_at = started
        finally:
            self._reading.release()

    def note(self, revoked: Iterable[tuple[str, str, int | None]]) -> None:
        """Revocations this process just committed: ("jti", jti, exp) or ("grant", gid, _)."""
        now = self.clock.now()
        with self._lock:
            for kind, ref, exp in revoked:
                if kind == "jti":
                    self._jtis[ref] = exp or epoch(now)
                else:
                    self._grants[ref] = now + self._grant_memory

    def _forget_expired(self, now: datetime) -> None:
        cutoff = epoch(now)
        self._jtis = {j: exp for j, exp in self._jtis.items() if exp > cutoff}
        self._grants = {g: until for g, until in self._grants.items() if until > now}
        self._verified = {t: c for t, c in self._verified.items() if c.get("exp", 0) > cutoff}

    def attach(self, factory: sessionmaker[Session]) -> None:
        """Feed this cache from every unit of work of `factory` when it commits."""

        def committed(session: Session) -> None:
            pending = session.info.pop(PENDING, None)
            if pending:
                self.note(pending)

        def ended(session: Session, transaction: SessionTransaction) -> None:
            if transaction.parent is None:  # the outermost: anything left was rolled back
                session.info.pop(PENDING, None)

        event.listen(factory, "after_commit", committed)
        event.listen(factory, "after_transaction_end", ended)


def pending_revocation(session: Session, kind: str, ref: str, exp: int | None = None) -> None:
    """Record in the unit of work that a token or grant is revoked, for the cache to
    learn when (and only if) the transaction commits."""
    session.info.setdefault(PENDING, []).append((kind, ref, exp))
