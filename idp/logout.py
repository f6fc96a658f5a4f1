"""Single logout. Ending a session revokes its grants (except `offline_access`) and
queues a logout token (OpenID Back-Channel Logout 1.0 §2.4) for every client that took
part and registered a back-channel URI. Delivery is retried with exponential backoff and
every attempt is recorded, so logging out of one department logs out of all."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from idp.context import Context
from idp.models import BackchannelDelivery, Client, SsoSession
from idp.ports import AuditSink
from kit.clock import Clock
from kit.ids import new_id


def end_session(
    ctx: Context, sso: SsoSession, *, reason: str, actor: str | None = None
) -> list[str]:
    """End `sso` and queue back-channel logouts. Returns the queued delivery ids."""
    if not ctx.sessions.end(sso, reason=reason, actor=actor):
        return []
    ctx.tokens.revoke_session_grants(sso.id)
    queued = []
    now = ctx.clock.now()
    for client_id in ctx.sessions.participants(sso):
        client = ctx.session.get(Client, client_id)
        if client is None or not client.backchannel_logout_uri:
            continue
        token = ctx.tokens.logout_token(
            alg=client.id_token_alg,
            client_id=client.client_id,
            sub=ctx.sub_for(client, sso.account_id),
            sid=sso.id,
        )
        row = BackchannelDelivery(
            id=new_id(),
            client_id=client.client_id,
            session_id=sso.id,
            uri=client.backchannel_logout_uri,
            logout_token=token,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        ctx.session.add(row)
        queued.append(row.id)
    ctx.session.flush()
    return queued


def end_all_sessions(ctx: Context, account_id: str, *, reason: str, keep: str | None = None) -> int:
    ended = 0
    for sso in ctx.sessions.live_for_account(account_id):
        if sso.id != keep:
            end_session(ctx, sso, reason=reason, actor=f"user:{account_id}")
            ended += 1
    return ended


def backoff(attempts: int) -> timedelta:
    """1 s, 2 s, 4 s … capped at 10 minutes."""
    return timedelta(seconds=min(600, 2 ** max(0, attempts - 1)))


def deliver_due(
    factory: sessionmaker[Session],
    *,
    clock: Clock,
    audit: AuditSink,
    http: httpx.Client,
    max_attempts: int,
    limit: int = 50,
    parallel: int = 8,
) -> int:
    """Attempt every due delivery once, several at a time, so one slow department cannot
    hold up the others' logouts. Safe on several replicas: a delivery is claimed by pushing
    its next attempt forward in one conditional update before it is sent."""
    now = clock.now()
    with factory() as session:
        due = list(
            session.execute(
                select(BackchannelDelivery.id, BackchannelDelivery.attempts)
                .where(
                    BackchannelDelivery.status == "pending",
                    BackchannelDelivery.next_attempt_at <= now,
                )
                .order_by(BackchannelDelivery.next_attempt_at)
                .limit(limit)
            ).all()
        )
    claimed: list[tuple[str, str, str]] = []
    for delivery_id, attempts in due:
        with factory.begin() as session:
            won = session.execute(
                update(BackchannelDelivery)
                .where(
                    BackchannelDelivery.id == delivery_id,
                    BackchannelDelivery.status == "pending",
                    BackchannelDelivery.attempts == attempts,
                )
                .values(attempts=attempts + 1, next_attempt_at=now + backoff(attempts + 1))
            )
            if getattr(won, "rowcount", 0) == 1:
                row = session.get(BackchannelDelivery, delivery_id)
                assert row is not None
                claimed.append((delivery_id, row.uri, row.logout_token))
    if not claimed:
        return 0
    with ThreadPoolExecutor(max_workers=min(parallel, len(claimed))) as pool:
        errors = list(pool.map(lambda c: _post_logout_token(http, c[1], c[2]), claimed))
    sent = 0
    for (delivery_id, _, _), error in zip(claimed, errors, strict=True):
        with factory.begin() as session:
            row = session.get(BackchannelDelivery, delivery_id)
            assert row is not None
            if error is None:
                row.status, row.delivered_at, row.last_error = "delivered", clock.now(), None
                audit.record(
                    session,
                    "logout.backchannel_sent",
                    client_id=row.client_id,
                    details={"attempts": row.attempts},
                )
                sent += 1
            else:
                row.last_error = error
                if row.attempts >= max_attempts:
                    row.status = "failed"
                    audit.record(
                        session,
                        "logout.backchannel_failed",
                        client_id=row.client_id,
                        result="failure",
                        details={"error": error, "attempts": row.attempts},
                    )
    return sent


def _post_logout_token(http: httpx.Client, uri: str, token: str) -> str | None:
    """§2.5: POST the logout token form-encoded; the RP answers 200 (or 204). Returns the
    error, or None."""
    try:
        response = http.post(
            uri, data={"logout_token": token}, headers={"Cache-Control": "no-store"}
        )
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return None if response.status_code in (200, 204) else f"HTTP {response.status_code}"
