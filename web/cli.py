"""The `tongban` command. Operators and black-box tests rely on these exact forms."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from web.runtime import Runtime, build_runtime
from web.settings import Settings

app = typer.Typer(
    help="Tongban (通办): identity and e-certificate trust service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
client_app = typer.Typer(help="Department systems (OpenID Connect clients).", no_args_is_help=True)
user_app = typer.Typer(help="Citizen accounts.", no_args_is_help=True)
enterprise_app = typer.Typer(help="Enterprises and their agents.", no_args_is_help=True)
keys_app = typer.Typer(help="Token signing keys and key-encryption keys.", no_args_is_help=True)
registry_app = typer.Typer(help="Population registry extract.", no_args_is_help=True)
sms_app = typer.Typer(help="The development SMS outbox.", no_args_is_help=True)
demo_app = typer.Typer(help="The demo province.", no_args_is_help=True)
for sub, name in (
    (db_app, "db"),
    (client_app, "client"),
    (user_app, "user"),
    (enterprise_app, "enterprise"),
    (keys_app, "keys"),
    (registry_app, "registry"),
    (sms_app, "sms"),
    (demo_app, "demo"),
):
    app.add_typer(sub, name=name)


def _runtime() -> Runtime:
    settings = Settings()
    if settings.db_url.startswith("sqlite"):
        # The embedded default needs no separate set-up step.
        from migrations import upgrade

        upgrade(settings.db_url)
    return build_runtime(settings)


def _out(data: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False))
    else:
        for key, value in data.items() if isinstance(data, dict) else enumerate(data):
            typer.echo(f"{key}: {value}")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@app.command()
def serve(
    host: str = "127.0.0.1", port: int = 8000, workers: Annotated[int, typer.Option(min=1)] = 1
) -> None:
    """Serve HTTP in the foreground; SIGTERM stops it (and its workers) cleanly."""
    import uvicorn

    settings = Settings()
    if settings.db_url.startswith("sqlite"):
        from migrations import upgrade

        upgrade(settings.db_url)
    uvicorn.run(
        "web.asgi:app",
        host=host,
        port=port,
        workers=workers,
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_level="info",
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the schema (creates a missing SQLite file)."""
    from migrations import upgrade

    settings = Settings()
    upgrade(settings.db_url)
    typer.echo("database is up to date")


@client_app.command("add")
def client_add(
    name: Annotated[str, typer.Option("--name")],
    redirect_uri: Annotated[list[str] | None, typer.Option("--redirect-uri")] = None,
    post_logout_redirect_uri: Annotated[
        list[str] | None, typer.Option("--post-logout-redirect-uri")
    ] = None,
    backchannel_logout_uri: Annotated[str | None, typer.Option("--backchannel-logout-uri")] = None,
    auth_method: Annotated[str, typer.Option("--auth-method")] = "client_secret_basic",
    jwks_uri: Annotated[str | None, typer.Option("--jwks-uri")] = None,
    jwks_file: Annotated[Path | None, typer.Option("--jwks-file")] = None,
    scope: Annotated[list[str] | None, typer.Option("--scope")] = None,
    grant_type: Annotated[list[str] | None, typer.Option("--grant-type")] = None,
    resource: Annotated[list[str] | None, typer.Option("--resource")] = None,
    id_token_alg: Annotated[str, typer.Option("--id-token-alg")] = "ES256",
    statutory_purpose: Annotated[str | None, typer.Option("--statutory-purpose")] = None,
    department_uscc: Annotated[str | None, typer.Option("--department-uscc")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register a department system; prints client_id (and client_secret, shown once)."""
    from kit.errors import TongbanError

    rt = _runtime()
    jwks = json.loads(jwks_file.read_text()) if jwks_file else None
    try:
        with rt.factory.begin() as session:
            reg = rt.context(session).clients.register(
                name=name,
                redirect_uris=redirect_uri or [],
                post_logout_redirect_uris=post_logout_redirect_uri or [],
                backchannel_logout_uri=backchannel_logout_uri,
                auth_method=auth_method,
                jwks_uri=jwks_uri,
                jwks=jwks,
                scopes=scope or [],
                grant_types=grant_type or [],
                resources=resource or [],
                id_token_alg=id_token_alg,
                statutory_purpose=statutory_purpose,
                department_uscc=department_uscc,
                actor="operator:cli",
            )
            out: dict[str, Any] = {
                "client_id": reg.client.client_id,
                "name": reg.client.name,
                "auth_method": reg.client.auth_method,
                "scopes": reg.client.scopes,
                "grant_types": reg.client.grant_types,
                "resources": reg.client.resources,
            }
            if reg.secret:
                out["client_secret"] = reg.secret
    except TongbanError as exc:
        _fail(exc.description)
    _out(out, as_json)


@client_app.command("list")
def client_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    rt = _runtime()
    with rt.factory() as session:
        rows = [
            {
                "client_id": c.client_id,
                "name": c.name,
                "auth_method": c.auth_method,
                "redirect_uris": c.redirect_uris,
                "scopes": c.scopes,
            }
            for c in rt.context(session).clients.list()
        ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
    else:
        for row in rows:
            typer.echo(f"{row['client_id']}  {row['name']}  ({row['auth_method']})")


@client_app.command("remove")
def client_remove(client_id: str) -> None:
    rt = _runtime()
    with rt.factory.begin() as session:
        if not rt.context(session).clients.remove(client_id, actor="operator:cli"):
            _fail(f"no client {client_id}")
    typer.echo(f"removed {client_id}")


@user_app.command("add")
def user_add(
    id_number: Annotated[str, typer.Option("--id-number")],
    name: Annotated[str, typer.Option("--name")],
    phone: Annotated[str | None, typer.Option("--phone")] = None,
    totp: Annotated[bool, typer.Option("--totp")] = False,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a verified citizen account. The password is read from standard input."""
    from kit.errors import TongbanError

    if not password_stdin:
        _fail("pass the password on standard input with --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")
    rt = _runtime()
    try:
        with rt.factory.begin() as session:
            new = rt.context(session).accounts.create(
                id_number=id_number,
                name=name,
                phone=phone,
                password=password,
                verified=True,
                totp=totp,
                actor="operator:cli",
            )
            out: dict[str, Any] = {"account_id": new.account.id, "name": new.account.name}
            if new.totp_secret:
                out["totp_secret"] = new.totp_secret
                out["recovery_codes"] = new.recovery_codes
    except TongbanError as exc:
        _fail(getattr(exc, "description", str(exc)))
    _out(out, as_json)


@enterprise_app.command("add")
def enterprise_add(
    uscc: Annotated[str, typer.Option("--uscc")],
    name: Annotated[str, typer.Option("--name")],
    agent_id_number: Annotated[list[str] | None, typer.Option("--agent-id-number")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    from kit.errors import TongbanError

    rt = _runtime()
    try:
        with rt.factory.begin() as session:
            ctx = rt.context(session)
            ent = ctx.enterprises.register(uscc, name, actor="operator:cli")
            for number in agent_id_number or []:
                account = ctx.accounts.find_by_id_number(number)
                if account is None:
                    raise TongbanError("an agent has no account; create it first")
                ctx.enterprises.add_agent(ent, account, actor="operator:cli")
            out = {"enterprise_id": ent.id, "uscc": ent.uscc, "name": ent.name}
    except TongbanError as exc:
        _fail(exc.description)
    _out(out, as_json)


@enterprise_app.command("remove-agent")
def enterprise_remove_agent(
    uscc: Annotated[str, typer.Option("--uscc")],
    agent_id_number: Annotated[str, typer.Option("--agent-id-number")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Withdraw an agent: the grants made acting for the enterprise are revoked, and a
    session that acted for it asks again at its next authorization."""
    from kit.errors import TongbanError
    from kit.identifiers import normalise_uscc

    rt = _runtime()
    try:
        with rt.factory.begin() as session:
            ctx = rt.context(session)
            ent = ctx.enterprises.by_uscc(normalise_uscc(uscc))
            account = ctx.accounts.find_by_id_number(agent_id_number)
            if ent is None or account is None:
                raise TongbanError("no such enterprise or agent")
            if not ctx.enterprises.remove_agent(ent, account, actor="operator:cli"):
                raise TongbanError("that citizen is not an agent of the enterprise")
            revoked = ctx.tokens.revoke_acting_grants(account.id, ent.id, "agent_removed")
            out = {"uscc": ent.uscc, "revoked_grants": revoked}
    except TongbanError as exc:
        _fail(exc.description)
    _out(out, as_json)


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    from keys.keyring import key_summary

    rt = _runtime()
    rt.ensure_keys()
    with rt.factory() as session:
        rows = [key_summary(r) for r in rt.keyring.list(session)]
    if as_json:
        typer.echo(json.dumps(rows))
    else:
        for r in rows:
            typer.echo(f"{r['kid']}  {r['alg']}  {r['state']}  activates {r['activate_at']}")


@keys_app.command("rotate")
def keys_rotate(
    immediate: Annotated[
        bool, typer.Option(help="Sign with the new key at once (after a suspected compromise).")
    ] = False,
) -> None:
    """Start a rotation: new keys are published now, sign after the publish delay, and the
    old ones stay published until their tokens have expired."""
    rt = _runtime()
    rt.ensure_keys()
    with rt.factory.begin() as session:
        kids = rt.keyring.rotate(session, rt.clock.now(), immediate=immediate)
        rt.audit.record(
            session,
            "key.rotated",
            actor="operator:cli",
            details={"new": kids, "immediate": immediate},
        )
    typer.echo(json.dumps({"new_keys": kids, "immediate": immediate}))


@keys_app.command("rotate-kek")
def keys_rotate_kek() -> None:
    """Add a new key-encryption key (first in the list) and re-wrap every private key and
    secret under it. With TONGBAN_KEKS, put the new KEK first there and run this."""
    from keys.kek import KekFile
    from keys.models import WrappedSecret

    settings = Settings()
    if settings.keks is None:
        KekFile(settings.data_dir / "kek.json").prepend_new()
    rt = _runtime()
    with rt.factory.begin() as session:
        count = rt.keyring.rewrap_all(session)
        for row in session.query(WrappedSecret):
            aad = f"secret:{row.name}"
            if rt.keks.needs_rewrap(row.wrapped):
                row.wrapped = rt.keks.rewrap(row.wrapped, aad=aad)
                count += 1
        rt.audit.record(
            session,
            "kek.rotated",
            actor="operator:cli",
            details={"primary": rt.keks.primary.kid, "rewrapped": count},
        )
    typer.echo(json.dumps({"primary_kek": rt.keks.primary.kid, "rewrapped": count}))


@keys_app.command("tick")
def keys_tick() -> None:
    """Advance key lifecycles now (the server does this every 30 s)."""
    rt = _runtime()
    rt.ensure_keys()
    typer.echo(json.dumps({"changes": rt.tick_keys()}))


@registry_app.command("import")
def registry_import(file: Path) -> None:
    """Import a population-registry extract: CSV with columns id_number,name. Only keyed
    hashes are stored."""
    from idp.registration import Registry
    from kit.errors import TongbanError

    rt = _runtime()
    try:
        with rt.factory.begin() as session, file.open(newline="", encoding="utf-8") as fh:
            count = Registry(session, rt.services.pii, rt.clock).import_rows(csv.DictReader(fh))
    except (TongbanError, KeyError, UnicodeDecodeError) as exc:
        _fail(f"could not import: {exc}")
    typer.echo(json.dumps({"imported": count}))


@sms_app.command("outbox")
def sms_outbox(last: int = 20) -> None:
    """Print the development SMS outbox (messages are stored encrypted)."""
    from idp.registration import DevelopmentSms

    rt = _runtime()
    with rt.factory() as session:
        for row in DevelopmentSms(rt.services.pii, rt.clock).outbox(session, last):
            typer.echo(json.dumps(row, ensure_ascii=False))


@demo_app.command("seed")
def demo_seed() -> None:
    """Seed the demo province into a new database and print how to log in."""
    from web.seed import instructions, seed

    rt = _runtime()
    info = seed(rt)
    typer.echo(instructions(rt, info))


@app.command()
def openapi() -> None:
    """Print the OpenAPI document of every HTTP API."""
    from web.openapi_doc import openapi_json

    typer.echo(openapi_json())


from web.cli_audit import audit_app  # noqa: E402  (sub-apps register on the root app)
from web.cli_pki import pki_app  # noqa: E402
from web.cli_seal import seal_app  # noqa: E402

app.add_typer(audit_app, name="audit")
app.add_typer(pki_app, name="pki")
app.add_typer(seal_app, name="seal")
