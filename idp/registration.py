"""Self-registration (实名注册) and password reset through a phone code.

The ID-number/name pair must match the population registry (a pluggable check; the
built-in one reads an imported extract, stored as keyed hashes only). Messages never say
whether an ID number or phone is registered (ASVS 6.3.8): the same answer every time, and
what differs goes to the phone, which only its owner reads.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.context import Context
from idp.errors import IdpError, Throttled
from idp.models import PhoneCode, RegistryEntry, SmsOutbox
from idp.passwords import check_password
from idp.pii import PersonalData, mask_phone, normalise_phone
from idp.throttle import Throttle
from kit.clock import Clock
from kit.identifiers import normalise_id_number
from kit.ids import constant_time_equal, new_secret

CODE_TTL = timedelta(minutes=10)
#: SMS per identity or phone per hour, and per source address per hour.
SMS_PER_HOUR = 5
SMS_PER_ADDRESS_PER_HOUR = 30
MAX_CODE_ATTEMPTS = 5


class IdentityVerifier(Protocol):
    def matches(self, session: Session, id_number: str, name: str, phone: str) -> bool:
        """Whether the name belongs to the ID number and the phone may register it."""
        ...


class Registry:
    """The built-in verifier: a registry extract operators import from CSV."""

    def __init__(self, session: Session, pii: PersonalData, clock: Clock) -> None:
        self.session = session
        self.pii = pii
        self.clock = clock

    def import_rows(self, rows: Iterable[Mapping[str, str]]) -> int:
        count = 0
        now = self.clock.now()
        for row in rows:
            number = normalise_id_number(row["id_number"])
            index = self.pii.id_number_index(number)
            entry = self.session.get(RegistryEntry, index)
            name_hash = self.pii.name_hash(row["name"])
            phone = (row.get("phone") or "").strip()
            phone_index = self.pii.phone_index(normalise_phone(phone)) if phone else None
            if entry is None:
                self.session.add(
                    RegistryEntry(
                        id_number_index=index,
                        name_hash=name_hash,
                        phone_index=phone_index,
                        imported_at=now,
                    )
                )
            else:
                entry.name_hash, entry.phone_index, entry.imported_at = (
                    name_hash,
                    phone_index,
                    now,
                )
            count += 1
        self.session.flush()
        return count

    def matches(self, session: Session, id_number: str, name: str, phone: str) -> bool:
        """The name must match; when the extract binds a phone to the identity, so must the
        phone. Without that binding, whoever knows an ID number and its name could register
        it to their own phone: deployments should import carrier real-name phones or plug
        in a verifier that checks them (运营商三要素)."""
        entry = session.get(RegistryEntry, self.pii.id_number_index(id_number))
        if entry is None or not constant_time_equal(entry.name_hash, self.pii.name_hash(name)):
            return False
        return entry.phone_index is None or constant_time_equal(
            entry.phone_index, self.pii.phone_index(phone)
        )


class DevelopmentSms:
    """The built-in SMS sender: an encrypted outbox that `tongban sms outbox` prints."""

    def __init__(self, pii: PersonalData, clock: Clock) -> None:
        self.pii = pii
        self.clock = clock

    def send(self, session: Session, phone_e164: str, text: str) -> None:
        body = json.dumps({"to": phone_e164, "text": text}, ensure_ascii=False)
        session.add(
            SmsOutbox(
                phone_masked=mask_phone(phone_e164),
                body_enc=self.pii.messages.encrypt(body),
                created_at=self.clock.now(),
            )
        )

    def outbox(self, session: Session, last: int = 20) -> list[dict[str, Any]]:
        rows = session.execute(
            select(SmsOutbox).order_by(SmsOutbox.id.desc()).limit(last)
        ).scalars()
        out = []
        for row in rows:
            message = json.loads(self.pii.messages.decrypt(row.body_enc))
            out.append({"at": row.created_at.isoformat(), **message})
        return out[::-1]


def _new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"  # 20 bits (ASVS 6.5.2), 5 tries, 10 minutes


class PhoneFlows:
    def __init__(
        self,
        ctx: Context,
        *,
        verifier: IdentityVerifier,
        sms: DevelopmentSms,
        throttle: Throttle | None = None,
    ) -> None:
        self.ctx = ctx
        self.verifier = verifier
        self.sms = sms
        self.throttle = throttle

    def _issue(self, flow: str, phone: str, purpose: str, payload: dict[str, str]) -> None:
        ctx = self.ctx
        code = _new_code()
        now = ctx.clock.now()
        row = PhoneCode(
            id=flow,
            phone_index=ctx.services.pii.phone_index(phone),
            purpose=purpose,
            code_hash=ctx.services.pii.secret_hash("phone-code", code),
            payload_enc=ctx.services.pii.messages.encrypt(json.dumps(payload)),
            attempts=0,
            created_at=now,
            expires_at=now + CODE_TTL,
        )
        ctx.session.add(row)
        self.sms.send(ctx.session, phone, f"【通办】验证码 {code}，10分钟内有效。请勿告诉他人。")

    # Each flow starts in two steps. `start_*` checks formats (errors are shown), counts
    # the quotas and returns a new flow id: the same work, answer and timing whoever is
    # asking. `continue_*` then does what depends on who is asking (looking people up,
    # issuing the code under that flow id, notices) after the answer has been sent, in a
    # unit of work of its own, so neither the answer nor its timing reveals whether an ID
    # number, phone or account is known (ASVS 6.3.8).

    def start_registration(self, *, id_number: str, name: str, phone: str) -> str:
        number = normalise_id_number(id_number)
        phone_e164 = normalise_phone(phone)
        ctx = self.ctx
        self._quota(
            f"id:{ctx.services.pii.id_number_index(number)}",
            f"phone:{ctx.services.pii.phone_index(phone_e164)}",
        )
        return new_secret("", 24)

    def continue_registration(self, flow: str, *, id_number: str, name: str, phone: str) -> None:
        """A code goes out only when the registry matches and the number is new; an
        "already registered" notice goes to the registered account's phone, never to the
        phone typed in."""
        number = normalise_id_number(id_number)
        phone_e164 = normalise_phone(phone)
        name = name.strip()
        ctx = self.ctx
        existing = ctx.accounts.find_by_id_number(number)
        owner_phone = ctx.accounts.phone(existing) if existing else None
        if existing is not None or ctx.accounts.find_by_phone(phone_e164) is not None:
            if owner_phone:
                self.sms.send(
                    ctx.session,
                    owner_phone,
                    "【通办】有人尝试用您的身份号码注册。如非本人操作，请忽略。",
                )
        elif self.verifier.matches(ctx.session, number, name, phone_e164):
            self._issue(
                flow,
                phone_e164,
                "register",
                {"id_number": number, "name": name, "phone": phone_e164},
            )

    def _quota(self, *keys: str) -> None:
        """SMS are limited per identity, per phone and per address and hour, whatever the
        outcome, so counting reveals nothing and nobody can be flooded with messages."""
        if self.throttle is None:
            return
        ctx = self.ctx
        now = ctx.clock.now()
        for key in (*keys, f"ip:{ctx.source}"):
            limit = SMS_PER_ADDRESS_PER_HOUR if key.startswith("ip:") else SMS_PER_HOUR
            if self.throttle.fail(ctx.session, f"sms:{key}", now) > limit:
                raise Throttled(self.throttle.retry_after(now))

    def _check(self, flow: str, code: str, purpose: str) -> tuple[PhoneCode, dict[str, str]]:
        """A live flow whose code matches, and what it confirms. A wrong code counts
        against the flow (5 tries): the caller must commit even when this raises, which
        the pages do by answering the error from inside their unit of work."""
        ctx = self.ctx
        row = ctx.session.get(PhoneCode, flow) if flow and len(flow) <= 64 else None
        now = ctx.clock.now()
        bad = IdpError("The code is wrong or has expired.", zh="验证码错误或已过期。")
        if (
            row is None
            or row.purpose != purpose
            or row.consumed_at is not None
            or row.expires_at <= now
            or row.attempts >= MAX_CODE_ATTEMPTS
        ):
            raise bad
        # Claim an attempt before comparing, in one conditional update: concurrent guesses
        # cannot exceed the limit.
        claimed = ctx.session.execute(
            update(PhoneCode)
            .where(PhoneCode.id == row.id, PhoneCode.attempts < MAX_CODE_ATTEMPTS)
            .values(attempts=PhoneCode.attempts + 1)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            raise bad
        if not constant_time_equal(
            row.code_hash, ctx.services.pii.secret_hash("phone-code", code.strip()[:16])
        ):
            raise bad
        assert row.payload_enc is not None
        return row, json.loads(ctx.services.pii.messages.decrypt(row.payload_enc))

    def _spend(self, row: PhoneCode) -> None:
        """Use the code, once: of two concurrent uses only one wins."""
        won = self.ctx.session.execute(
            update(PhoneCode)
            .where(PhoneCode.id == row.id, PhoneCode.consumed_at.is_(None))
            .values(consumed_at=self.ctx.clock.now())
        )
        if getattr(won, "rowcount", 0) != 1:
            raise IdpError("The code is wrong or has expired.", zh="验证码错误或已过期。")

    def finish_registration(self, *, flow: str, code: str, password: str) -> str:
        row, data = self._check(flow, code, "register")
        # Refuse a weak password before spending the code, so the user can try another.
        check_password(password, context=(data["name"], data["phone"], data["id_number"]))
        self._spend(row)
        new = self.ctx.accounts.create(
            id_number=data["id_number"],
            name=data["name"],
            phone=data["phone"],
            password=password,
            verified=True,
            actor="self-registration",
        )
        return new.account.id

    def start_reset(self, username: str) -> str:
        self._quota(f"reset:{username.strip()[:64]}")
        return new_secret("", 24)

    def continue_reset(self, flow: str, username: str) -> None:
        """A code goes to the account's phone, if there is such an account with a phone."""
        ctx = self.ctx
        account = ctx.accounts.find_by_username(username.strip()) if len(username) < 64 else None
        phone = ctx.accounts.phone(account) if account else None
        if account is not None and phone:
            self._issue(flow, phone, "reset", {"account_id": account.id})

    def finish_reset(self, *, flow: str, code: str, password: str) -> str:
        row, data = self._check(flow, code, "reset")
        account = self.ctx.accounts.get(data["account_id"])
        check_password(password, context=(account.name, self.ctx.accounts.id_number(account)))
        self._spend(row)
        self.ctx.accounts.set_password(account, password, event="password.reset")
        return account.id


def purge_codes(session: Session, now: datetime) -> None:
    session.query(PhoneCode).filter(PhoneCode.expires_at < now - timedelta(days=1)).delete()
