"""Enterprises (keyed by the unified social credit code) and their agents (经办人)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.errors import IdpError
from idp.models import Account, Enterprise, EnterpriseAgent
from idp.ports import AuditSink
from kit.clock import Clock
from kit.identifiers import normalise_uscc
from kit.ids import new_id


class Enterprises:
    def __init__(self, session: Session, *, clock: Clock, audit: AuditSink) -> None:
        self.session = session
        self.clock = clock
        self.audit = audit

    def register(self, uscc: str, name: str, *, actor: str | None = None) -> Enterprise:
        code = normalise_uscc(uscc)
        name = name.strip()
        if not 1 <= len(name) <= 128:
            raise IdpError(
                "An enterprise name has 1 to 128 characters.", zh="企业名称应为1至128个字符。"
            )
        existing = self.by_uscc(code)
        if existing is not None:
            raise IdpError(
                "This credit code is already registered.", zh="该统一社会信用代码已登记。"
            )
        row = Enterprise(id=new_id(), uscc=code, name=name, created_at=self.clock.now())
        self.session.add(row)
        self.session.flush()
        self.audit.record(self.session, "enterprise.created", actor=actor, subject=row.id)
        return row

    def by_uscc(self, uscc: str) -> Enterprise | None:
        return self.session.execute(
            select(Enterprise).where(Enterprise.uscc == uscc)
        ).scalar_one_or_none()

    def add_agent(
        self,
        enterprise: Enterprise,
        account: Account,
        *,
        role: str = "agent",
        actor: str | None = None,
    ) -> None:
        if self.session.get(EnterpriseAgent, (enterprise.id, account.id)) is None:
            self.session.add(
                EnterpriseAgent(
                    enterprise_id=enterprise.id,
                    account_id=account.id,
                    role=role,
                    created_at=self.clock.now(),
                )
            )
            self.session.flush()
            self.audit.record(
                self.session,
                "enterprise.agent_added",
                actor=actor,
                subject=enterprise.id,
                details={"agent": account.id},
            )

    def remove_agent(
        self, enterprise: Enterprise, account: Account, *, actor: str | None = None
    ) -> bool:
        """Withdraw an agent's authorisation. The caller also revokes the grants made while
        acting for the enterprise (`Tokens.revoke_acting_grants`)."""
        row = self.session.get(EnterpriseAgent, (enterprise.id, account.id))
        if row is None:
            return False
        self.session.delete(row)
        self.session.flush()
        self.audit.record(
            self.session,
            "enterprise.agent_removed",
            actor=actor,
            subject=enterprise.id,
            details={"agent": account.id},
        )
        return True

    def for_agent(self, account_id: str) -> list[dict[str, str]]:
        rows = self.session.execute(
            select(Enterprise, EnterpriseAgent.role)
            .join(EnterpriseAgent, EnterpriseAgent.enterprise_id == Enterprise.id)
            .where(EnterpriseAgent.account_id == account_id)
            .order_by(Enterprise.name)
        ).all()
        return [{"uscc": e.uscc, "name": e.name, "role": role} for e, role in rows]

    def acting_claim(self, enterprise_id: str | None, account_id: str) -> dict[str, str] | None:
        """The `act_for` claim: the enterprise the agent acts for, while they still are
        its agent (an agent removed since loses it at the next token)."""
        if not enterprise_id:
            return None
        row = self.session.execute(
            select(Enterprise, EnterpriseAgent.role)
            .join(EnterpriseAgent, EnterpriseAgent.enterprise_id == Enterprise.id)
            .where(Enterprise.id == enterprise_id, EnterpriseAgent.account_id == account_id)
        ).first()
        if row is None:
            return None
        enterprise, role = row
        return {"uscc": enterprise.uscc, "name": enterprise.name, "role": role}

    def agent_of(self, account_id: str, uscc: str) -> Enterprise | None:
        """The enterprise with credit code `uscc` if the account is one of its agents."""
        return self.session.execute(
            select(Enterprise)
            .join(EnterpriseAgent, EnterpriseAgent.enterprise_id == Enterprise.id)
            .where(Enterprise.uscc == uscc, EnterpriseAgent.account_id == account_id)
        ).scalar_one_or_none()
