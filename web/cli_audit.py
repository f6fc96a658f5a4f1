"""`tongban audit ...`: verify, export, checkpoint and prune the audit log.

Mounted by `web.cli` as `app.add_typer(audit_app, name="audit")`. Settings, database and
keys come from `web.runtime.build_runtime()`; the retention period from
`TONGBAN_AUDIT_RETENTION_DAYS` (setting `audit_retention_days`, default 180, never less).

Exit codes of `verify`: 0 passed, 1 failed (tampering or corruption found), 2
indeterminate (nothing wrong, but no checkpoint signs the events yet).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import typer
from sqlalchemy.orm import Session, sessionmaker

from audit import (
    DEFAULT_LOG_ID,
    AuditError,
    AuditLog,
    CheckpointKeys,
    Outcome,
    RetentionPolicy,
    Sequencer,
    VerificationReport,
    audit_keyring,
    checkpoint_signer,
    export_log,
    prune,
    verify_export,
    verify_log,
    witnessed_checkpoints,
)
from keys.kek import KeyEncryptionKeys
from keys.vault import AppSecrets
from kit.clock import Clock
from kit.db import transaction
from kit.ids import b64url

audit_app = typer.Typer(help="The tamper-evident audit log (全程留痕).", no_args_is_help=True)

EXIT_CODES = {Outcome.PASSED: 0, Outcome.FAILED: 1, Outcome.INDETERMINATE: 2}


class AuditRuntime(Protocol):
    """What these commands need of `web.runtime.Runtime`."""

    @property
    def factory(self) -> sessionmaker[Session]: ...
    @property
    def keks(self) -> KeyEncryptionKeys: ...
    @property
    def secrets(self) -> AppSecrets: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def settings(self) -> Any: ...


def _runtime() -> AuditRuntime:
    from web.runtime import build_runtime  # imported late: `verify --from` needs no runtime

    return build_runtime()


def _log(rt: AuditRuntime) -> AuditLog:
    return AuditLog(pseudonym_key=rt.secrets.get("audit-pseudonym"), clock=rt.clock)


def _log_id(rt: AuditRuntime) -> str:
    return str(getattr(rt.settings, "audit_log_id", DEFAULT_LOG_ID))


def _pinned_keys(path: Path | None) -> CheckpointKeys | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        revoked = data.get("revoked_kids", []) if isinstance(data, dict) else []
        return CheckpointKeys(jwks=data, revoked=frozenset(str(k) for k in revoked))
    except (OSError, ValueError, AuditError) as exc:
        typer.echo(f"cannot use the key file {path}: {exc}", err=True)
        raise typer.Exit(2) from exc


def _print(report: VerificationReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        typer.echo(report.summary())


def _signed_head(rt: AuditRuntime) -> tuple[int, int, str]:
    """Sequence what is pending and sign a checkpoint over it."""
    log = _log(rt)
    # The signer first: creating or rotating its key records events the checkpoint covers.
    signer = checkpoint_signer(rt.factory, audit_keyring(rt.keks), rt.clock, log)
    sequencer = Sequencer(rt.factory, rt.clock, log_id=_log_id(rt))
    sequencer.sequence()
    made = sequencer.checkpoint(signer, force=True)
    assert made is not None
    return made.seq, made.tree_size, b64url(made.root_hash)


def _actor(operator: str | None) -> str:
    return f"operator:{operator}" if operator else "system:cli"


@audit_app.command("verify")
def verify_command(
    from_file: Path | None = typer.Option(
        None, "--from", help="Verify this export file instead of the database."
    ),
    keys_file: Path | None = typer.Option(
        None, "--keys", help="Pinned audit JWKS; default: the database's, or the export's."
    ),
    witness: list[Path] = typer.Option(
        [],
        "--witness",
        help="An earlier export: the log must still hold what its "
        "checkpoints signed (catches a log cut back together with its checkpoints).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    operator: str | None = typer.Option(None, help="Who runs this (recorded)."),
) -> None:
    """Recompute the tree from the events and check every checkpoint."""
    pinned = _pinned_keys(keys_file)
    witnessed = [token for path in witness for token in witnessed_checkpoints(path)]
    if from_file is not None:
        report = verify_export(from_file, keys=pinned, witnessed=witnessed)
        _print(report, as_json)
        raise typer.Exit(EXIT_CODES[report.outcome])
    rt = _runtime()
    report = verify_log(
        rt.factory, keys=pinned, keks=rt.keks, log_id=_log_id(rt), witnessed=witnessed
    )
    _print(report, as_json)
    with transaction(rt.factory) as session:
        _log(rt).record(
            session,
            "audit.verified",
            actor=_actor(operator),
            result="success" if report.ok else "failure",
            details={
                "outcome": report.outcome.value,
                "findings": len(report.findings),
                "end_position": report.end_position,
            },
        )
    raise typer.Exit(EXIT_CODES[report.outcome])


@audit_app.command("export")
def export_command(
    out: Path = typer.Option(..., "--out", help="The JSON Lines file to write."),
    operator: str | None = typer.Option(None, help="Who runs this (recorded)."),
) -> None:
    """Write events, checkpoints and checkpoint keys as JSON Lines (a fresh checkpoint is
    signed first, so the export is anchored to its last event)."""
    rt = _runtime()
    _signed_head(rt)
    with transaction(rt.factory) as session:
        _log(rt).record(
            session, "audit.exported", actor=_actor(operator), details={"file": out.name}
        )
    summary = export_log(rt.factory, out, clock=rt.clock, keks=rt.keks, log_id=_log_id(rt))
    typer.echo(
        f"exported {summary.events} events (positions {summary.first_position}.."
        f"{summary.first_position + summary.events - 1}) and {summary.checkpoints} "
        f"checkpoints to {summary.path}"
    )


@audit_app.command("checkpoint")
def checkpoint_command(
    operator: str | None = typer.Option(None, help="Who runs this (recorded)."),
) -> None:
    """Sequence pending events and sign a checkpoint now."""
    rt = _runtime()
    seq, size, root = _signed_head(rt)
    typer.echo(f"checkpoint #{seq}: {size} events, root {root}")


@audit_app.command("prune")
def prune_command(
    days: int | None = typer.Option(None, "--days", help="Retention in days (≥ 180)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be pruned."),
    operator: str | None = typer.Option(None, help="Who runs this (recorded)."),
) -> None:
    """Delete events older than the retention period, keeping the log verifiable."""
    rt = _runtime()
    keep = days if days is not None else int(getattr(rt.settings, "audit_retention_days", 180))
    try:
        policy = RetentionPolicy.days(keep)
        result = prune(
            rt.factory,
            rt.clock,
            policy=policy,
            keks=rt.keks,
            log=_log(rt),
            actor=_actor(operator),
            log_id=_log_id(rt),
            dry_run=dry_run,
        )
    except AuditError as exc:
        typer.echo(f"prune refused: {exc.description}", err=True)
        raise typer.Exit(1) from exc
    verb = "would remove" if dry_run else "removed"
    typer.echo(
        f"{verb} {result.removed} events recorded before {result.cutoff:%Y-%m-%d}; "
        f"the log starts at position {result.first_position}"
    )
