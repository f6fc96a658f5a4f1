"""`tongban audit verify | export | checkpoint | prune` against a real database."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from audit.models import AuditEvent
from keys.vault import AppSecrets
from kit.db import transaction
from tests.audit.conftest import World
from web import cli_audit

runner = CliRunner()


@pytest.fixture
def cli(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    runtime = SimpleNamespace(
        factory=world.factory,
        keks=world.keks,
        clock=world.clock,
        secrets=AppSecrets(world.factory, world.keks, world.clock),
        settings=SimpleNamespace(audit_retention_days=180),
    )
    monkeypatch.setattr(cli_audit, "_runtime", lambda: runtime)
    return world


def test_checkpoint_verify_export_prune(cli: World, tmp_path: Path) -> None:
    cli.record(5)
    result = runner.invoke(cli_audit.audit_app, ["checkpoint"])
    assert result.exit_code == 0, result.output
    assert "5 events" in result.output
    result = runner.invoke(cli_audit.audit_app, ["verify", "--operator", "qian"])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output

    out = tmp_path / "audit.jsonl"
    result = runner.invoke(cli_audit.audit_app, ["export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    keys = tmp_path / "audit-jwks.json"
    keys.write_text(json.dumps(json.loads(out.read_text().splitlines()[0])["jwks"]))
    result = runner.invoke(
        cli_audit.audit_app, ["verify", "--from", str(out), "--keys", str(keys), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["outcome"] == "passed"
    result = runner.invoke(cli_audit.audit_app, ["verify", "--witness", str(out)])
    assert result.exit_code == 0, result.output

    result = runner.invoke(cli_audit.audit_app, ["prune", "--dry-run"])
    assert result.exit_code == 0 and "would remove 0" in result.output
    result = runner.invoke(cli_audit.audit_app, ["prune", "--days", "30"])
    assert result.exit_code == 1 and "180" in result.output

    with transaction(cli.factory) as session:
        session.execute(update(AuditEvent).where(AuditEvent.position == 2).values(result="failure"))
    result = runner.invoke(cli_audit.audit_app, ["verify"])
    assert result.exit_code == 1
    assert "modified at position 2" in result.output
    out.write_bytes(out.read_bytes()[:-40])
    result = runner.invoke(cli_audit.audit_app, ["verify", "--from", str(out)])
    assert result.exit_code == 1, result.output
