"""The demo province: two department systems, a citizen with TOTP, an enterprise with an
agent. Seeded only into a new database and never in production mode. All identifiers are
synthetic (birth years in the future, made-up credit codes)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from idp.models import Account, Client
from idp.totp import code_at
from web.runtime import Runtime

ACTOR = "operator:demo-seed"


@dataclass(frozen=True)
class DemoPerson:
    id_number: str
    name: str
    phone: str
    password: str


@dataclass(frozen=True)
class DemoClient:
    name: str
    port: int
    department_uscc: str | None


DEMO_CITIZEN = DemoPerson(
    "110105209912310010", "张通办", "+8613800138000", "demo-citizen-passphrase"
)
DEMO_AGENT = DemoPerson("44030520990101001X", "李经办", "+8613900139000", "demo-agent-passphrase")
DEMO_ENTERPRISE = ("91110108MA01AB2C3T", "示范科技有限公司")
DEMO_CLIENTS = (
    DemoClient("示范市民政局 · 婚姻登记系统", 8001, "11110000000K00017E"),
    DemoClient("示范市公安局 · 户籍业务系统", 8002, None),
)


@dataclass
class DemoInfo:
    seeded_now: bool
    clients: list[dict[str, str]]
    totp_secret: str | None


def seed(runtime: Runtime) -> DemoInfo:
    """Seed into an empty database; on a database with accounts, only report."""
    if runtime.settings.mode == "production":
        raise RuntimeError("the demo province is never seeded in production mode")
    with runtime.factory.begin() as session:
        ctx = runtime.context(session)
        if session.execute(select(Account.id).limit(1)).first() is not None:
            citizen = ctx.accounts.find_by_id_number(DEMO_CITIZEN.id_number)
            secret = ctx.accounts.totp_secret(citizen) if citizen else None
            clients = [
                {"client_id": c.client_id, "name": c.name, "client_secret": "(shown once)"}
                for c in session.execute(select(Client)).scalars()
            ]
            return DemoInfo(False, clients, secret)
        citizen_new = ctx.accounts.create(
            id_number=DEMO_CITIZEN.id_number,
            name=DEMO_CITIZEN.name,
            phone=DEMO_CITIZEN.phone,
            password=DEMO_CITIZEN.password,
            totp=True,
            actor=ACTOR,
        )
        agent = ctx.accounts.create(
            id_number=DEMO_AGENT.id_number,
            name=DEMO_AGENT.name,
            phone=DEMO_AGENT.phone,
            password=DEMO_AGENT.password,
            actor=ACTOR,
        )
        enterprise = ctx.enterprises.register(*DEMO_ENTERPRISE, actor=ACTOR)
        ctx.enterprises.add_agent(enterprise, agent.account, actor=ACTOR)
        clients = []
        for spec in DEMO_CLIENTS:
            base = f"http://127.0.0.1:{spec.port}"
            reg = ctx.clients.register(
                name=spec.name,
                redirect_uris=[f"{base}/callback"],
                post_logout_redirect_uris=[f"{base}/"],
                backchannel_logout_uri=f"{base}/backchannel-logout",
                scopes=["openid", "profile", "phone", "offline_access", "enterprise"],
                department_uscc=spec.department_uscc,
                actor=ACTOR,
            )
            clients.append(
                {
                    "client_id": reg.client.client_id,
                    "name": reg.client.name,
                    "client_secret": reg.secret or "",
                }
            )
        return DemoInfo(True, clients, citizen_new.totp_secret)


def instructions(runtime: Runtime, info: DemoInfo) -> str:
    issuer = runtime.settings.issuer
    lines = [
        "Tongban demo province (演示省份, synthetic data)",
        f"  Account page:   {issuer}/account",
        f"  Discovery:      {issuer}/.well-known/openid-configuration",
        f"  Citizen:        {DEMO_CITIZEN.id_number} / {DEMO_CITIZEN.password}"
        "  (second factor: TOTP)",
    ]
    if info.totp_secret:
        lines.append(
            f"  TOTP secret:    {info.totp_secret}  (current code: "
            f"{code_at(info.totp_secret, runtime.clock.now())})"
        )
    lines.append(f"  Agent of {DEMO_ENTERPRISE[1]}: {DEMO_AGENT.id_number} / {DEMO_AGENT.password}")
    for c in info.clients:
        lines.append(f"  Client {c['name']}: {c['client_id']}  secret {c['client_secret']}")
    return "\n".join(lines)


def is_demo(runtime: Runtime) -> bool:
    """Whether this database holds the demo province (pages then say so)."""
    with runtime.factory() as session:
        return (
            runtime.context(session).accounts.find_by_id_number(DEMO_CITIZEN.id_number) is not None
        )
