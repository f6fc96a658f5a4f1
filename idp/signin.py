"""Completing a login: start an SSO session, or re-authenticate the browser's current one."""

from __future__ import annotations

from idp.context import Context
from idp.logout import end_session
from idp.models import Account, SsoSession


def establish_session(
    ctx: Context, account: Account, *, acr: str, amr: list[str], current_cookie: str | None
) -> tuple[SsoSession, str]:
    """Returns (session, cookie). The same account keeps its session (new cookie secret); a
    different account first logs the previous one out everywhere."""
    current = ctx.sessions.from_cookie(current_cookie)
    if current is not None and current.account_id == account.id:
        cookie = ctx.sessions.reauthenticate(current, acr=acr, amr=amr, source=ctx.source)
        sso = current
    else:
        if current is not None:
            end_session(ctx, current, reason="another_account_logged_in")
        sso, cookie = ctx.sessions.create(
            account, acr=acr, amr=amr, user_agent=ctx.user_agent, source=ctx.source
        )
    ctx.audit.record(
        ctx.session,
        "login.succeeded",
        actor=f"user:{account.id}",
        subject=account.id,
        source=ctx.source,
        details={"acr": acr},
    )
    return sso, cookie
