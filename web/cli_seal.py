"""`tongban seal ...`: issue and manage departments' electronic seals. Each command prints
JSON and records a `seal.*` event. Mounted by `web.cli` as `seal`."""

from __future__ import annotations

import getpass
import json
from datetime import timedelta
from typing import Any

import typer

from kit.db import transaction
from kit.errors import TongbanError
from signing import seals
from web.cli_pki import runtime_pki

seal_app = typer.Typer(help="Electronic seals (电子印章) of departments.", no_args_is_help=True)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _fail(exc: TongbanError) -> None:
    _print({"error": exc.code, "description": exc.description})
    raise typer.Exit(1)


@seal_app.command("create")
def create(
    department_uscc: str = typer.Option(..., "--department-uscc", help="统一社会信用代码"),
    department_name: str = typer.Option(..., "--department-name"),
    name: str = typer.Option(..., "--name", help="The seal's name, e.g. 示范市民政局公章"),
    seal_type: str = typer.Option(..., "--type", help=" | ".join(seals.SEAL_TYPES)),
    purpose: str | None = typer.Option(None, "--purpose", help="Text below the star"),
    backend: str = typer.Option("software", "--backend", help="software | pkcs11"),
    alg: str = typer.Option("ES256", "--alg", help="ES256 | PS256"),
    days: int | None = typer.Option(None, "--days", help="Validity (default 3 years)"),
) -> None:
    """Issue a seal: a key (software or in the PKCS#11 token) and its certificate."""
    runtime, pki = runtime_pki()
    try:
        with transaction(runtime.factory) as session:
            seal = seals.create_seal(
                session,
                runtime.clock,
                pki,
                department_uscc=department_uscc,
                department_name=department_name,
                name=name,
                seal_type=seal_type,
                purpose=purpose,
                backend=backend,
                alg=alg,
                lifetime=timedelta(days=days) if days else None,
                actor=_actor(),
            )
            _print(seals.seal_summary(seal))
    except TongbanError as exc:
        _fail(exc)


@seal_app.command("list")
def list_(
    department_uscc: str | None = typer.Option(None, "--department-uscc"),
    status: str | None = typer.Option(None, "--status", help="active | suspended | revoked"),
) -> None:
    runtime, _pki = runtime_pki()
    with runtime.factory() as session:
        rows = seals.list_seals(session, department_uscc=department_uscc, status=status)
        _print([seals.seal_summary(s) for s in rows])


def _change(action: str, seal_id: str, **kwargs: Any) -> None:
    runtime, pki = runtime_pki()
    function = {
        "suspend": seals.suspend_seal,
        "reinstate": seals.reinstate_seal,
        "revoke": seals.revoke_seal,
        "renew": seals.renew_seal,
    }[action]
    try:
        with transaction(runtime.factory) as session:
            seal = function(session, runtime.clock, pki, seal_id, actor=_actor(), **kwargs)
            _print(seals.seal_summary(seal))
    except TongbanError as exc:
        _fail(exc)


@seal_app.command("suspend")
def suspend(seal_id: str, reason: str = typer.Option("", "--reason")) -> None:
    """Suspend (certificateHold on the CRL): verifiers answer TRY_LATER."""
    _change("suspend", seal_id, reason=reason)


@seal_app.command("reinstate")
def reinstate(seal_id: str) -> None:
    """Lift a suspension."""
    _change("reinstate", seal_id)


@seal_app.command("revoke")
def revoke(
    seal_id: str,
    reason: str = typer.Option(
        "cessation_of_operation", "--reason", help=" | ".join(seals.REVOCATION_REASONS)
    ),
) -> None:
    """Revoke for good; the CRL is re-signed at once and the key destroyed."""
    _change("revoke", seal_id, reason=reason)


@seal_app.command("renew")
def renew(seal_id: str, days: int | None = typer.Option(None, "--days")) -> None:
    """New key and certificate; documents sealed before stay valid."""
    _change("renew", seal_id, lifetime=timedelta(days=days) if days else None)
