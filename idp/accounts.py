"""Citizen accounts: creation, look-up by ID number or phone, password and second-factor
authentication with lockout, and credential changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from idp.config import IdpConfig
from idp.errors import AccountNotFound, IdpError, LoginFailed, SecondFactorFailed
from idp.models import Account, RecoveryCode
from idp.passwords import PasswordHasher, check_password
from idp.pii import PersonalData, looks_like_phone, normalise_phone
from idp.ports import AuditSink
from idp.throttle import Throttle
from idp.totp import matching_step, new_recovery_codes, new_secret, normalise_recovery_code
from kit.clock import Clock
from kit.identifiers import IdentifierError, mask_id_number, normalise_id_number
from kit.ids import new_id

ACR_PASSWORD = "urn:tongban:acr:password"
ACR_MFA = "urn:tongban:acr:mfa"
#: Assurance order for `acr_values` step-up: a later entry satisfies an earlier one.
ACR_ORDER = (ACR_PASSWORD, ACR_MFA)


def acr_satisfies(have: str, want: str) -> bool:
    if want not in ACR_ORDER:
        return False
    return have in ACR_ORDER and ACR_ORDER.index(have) >= ACR_ORDER.index(want)


@dataclass
class NewAccount:
    account: Account
    totp_secret: str | None
    recovery_codes: list[str]


# Built once: every login looks an account up, and composing the statement and its cache
# key costs about as much as running it.
_BY_ID_NUMBER = select(Account).where(Account.id_number_index == bindparam("index"))
_BY_PHONE = select(Account).where(Account.phone_index == bindparam("index"))


class Accounts:
    def __init__(
        self,
        session: Session,
        *,
        pii: PersonalData,
        hasher: PasswordHasher,
        clock: Clock,
        config: IdpConfig,
        audit: AuditSink,
    ) -> None:
        self.session = session
        self.pii = pii
        self.hasher = hasher
        self.clock = clock
        self.config = config
        self.audit = audit

    # -- reading ----------------------------------------------------------------------

    def get(self, account_id: str) -> Account:
        account = self.session.get(Account, account_id)
        if account is None:
            raise AccountNotFound("no such account")
        return account

    def find_by_id_number(self, id_number: str) -> Account | None:
        try:
            normalised = normalise_id_number(id_number)
        except IdentifierError:
            return None
        index = self.pii.id_number_index(normalised)
        return self.session.execute(_BY_ID_NUMBER, {"index": index}).scalar_one_or_none()

    def find_by_phone(self, phone: str) -> Account | None:
        index = self.pii.phone_index(phone)
        return self.session.execute(_BY_PHONE, {"index": index}).scalar_one_or_none()

    def find_by_username(self, username: str) -> Account | None:
        """A username is an ID number or a mobile number."""
        if looks_like_phone(username):
            return self.find_by_phone(normalise_phone(username))
        return self.find_by_id_number(username)

    def id_number(self, account: Account) -> str:
        return self.pii.id_numbers.decrypt(account.id_number_enc)

    def masked_id_number(self, account: Account) -> str:
        return mask_id_number(self.id_number(account))

    def phone(self, account: Account) -> str | None:
        return self.pii.phones.decrypt(account.phone_enc) if account.phone_enc else None

    # -- creating ---------------------------------------------------------------------

    def create(
        self,
        *,
        id_number: str,
        name: str,
        password: str,
        phone: str | None = None,
        verified: bool = True,
        totp: bool = False,
        actor: str | None = None,
    ) -> NewAccount:
        normalised = normalise_id_number(id_number)
        name = name.strip()
        if not 1 <= len(name) <= 64:
            raise IdpError("A name has 1 to 64 characters.", zh="姓名应为1至64个字符。")
        phone_e164 = normalise_phone(phone) if phone else None
        check_password(password, context=(name, phone_e164 or "", normalised))
        index = self.pii.id_number_index(normalised)
        if self.session.execute(select(Account.id).where(Account.id_number_index == index)).first():
            raise IdpError(
                "An account with this ID number already exists.", zh="该身份号码已注册。"
            )
        if phone_e164 and self.find_by_phone(phone_e164):
            raise IdpError("This phone number is already in use.", zh="该手机号已被使用。")
        now = self.clock.now()
        account = Account(
            id=new_id(),
            id_number_index=index,
            id_number_enc=self.pii.id_numbers.encrypt(normalised),
            name=name,
            phone_index=self.pii.phone_index(phone_e164) if phone_e164 else None,
            phone_enc=self.pii.phones.encrypt(phone_e164) if phone_e164 else None,
            password_hash=self.hasher.hash(password),
            verified=verified,
            status="active",
            failed_logins=0,
            totp_last_step=0,
            created_at=now,
            password_changed_at=now,
        )
        self.session.add(account)
        self.session.flush()
        secret, codes = self.enrol_totp(account) if totp else (None, [])
        self.audit.record(self.session, "account.created", actor=actor, subject=account.id)
        return NewAccount(account, secret, codes)

    # -- authenticating ---------------------------------------------------------------

    def authenticate_password(
        self, username: str, password: str, *, source: str | None = None
    ) -> Account:
        """Check a password. Unknown user, wrong password and locked account all raise the
        same `LoginFailed` after the same argon2 work (ASVS 6.3.8).

        Lockout (GB/T 22239 §8.1.4.1 b) has two levels. Repeated failures lock the account
        for the *address* they come from, so whoever knows a citizen's ID number cannot
        lock the citizen out everywhere. Consecutive failures from anywhere up to NIST's
        ceiling (SP 800-63B-4 §3.2.2: at most 100) lock the account for everyone.
        """
        account = self.find_by_username(username) if len(username) <= 64 else None
        if account is None:
            self.hasher.verify_dummy(password)
            self.audit.record(
                self.session,
                "login.failed",
                source=source,
                result="failure",
                details={"reason": "unknown_user"},
            )
            raise LoginFailed()
        now = self.clock.now()
        ok = self.hasher.verify(account.password_hash, password)
        here = f"lock:{account.id}:{source or '-'}"
        locked = (account.locked_until is not None and account.locked_until > now) or (
            self._lockouts.failures(self.session, here, now) >= self.config.lockout_threshold
        )
        if account.status != "active" or locked or not ok:
            if not locked and not ok:
                self._lockouts.fail(self.session, here, now)
                self._count_failure(account)
            reason = (
                "locked" if locked else ("disabled" if account.status != "active" else "password")
            )
            self.audit.record(
                self.session,
                "login.failed",
                subject=account.id,
                source=source,
                result="failure",
                details={"reason": reason},
            )
            raise LoginFailed()
        if self.hasher.needs_rehash(account.password_hash):
            account.password_hash = self.hasher.hash(password)
        if account.failed_logins:
            account.failed_logins = 0
        return account

    @property
    def _lockouts(self) -> Throttle:
        return Throttle(None, window=self.config.lockout_seconds)

    def _count_failure(self, account: Account) -> None:
        # One UPDATE so concurrent failures on several replicas all count.
        self.session.execute(
            update(Account)
            .where(Account.id == account.id)
            .values(failed_logins=Account.failed_logins + 1)
        )
        self.session.refresh(account, ["failed_logins"])
        if account.failed_logins >= self.config.lockout_ceiling:
            account.locked_until = self.clock.now() + timedelta(seconds=self.config.lockout_seconds)
            account.failed_logins = 0
            self.audit.record(self.session, "account.locked", subject=account.id, result="failure")

    def has_second_factor(self, account: Account) -> bool:
        return account.totp_secret_enc is not None

    def verify_second_factor(self, account: Account, code: str) -> str:
        """Accept a TOTP code (once) or a recovery code (once). Returns the `amr` value."""
        if account.totp_secret_enc is None:
            raise SecondFactorFailed()
        if account.locked_until is not None and account.locked_until > self.clock.now():
            raise SecondFactorFailed()  # the lockout covers the second step too
        secret = self.pii.id_numbers.decrypt(account.totp_secret_enc)
        step = matching_step(secret, code, now=self.clock.now(), last_step=account.totp_last_step)
        if step is not None:
            # Conditional update: two replicas racing on the same code, only one wins.
            won = self.session.execute(
                update(Account)
                .where(Account.id == account.id, Account.totp_last_step < step)
                .values(totp_last_step=step)
            )
            if getattr(won, "rowcount", 0) == 1:
                account.totp_last_step = step
                return "otp"
        if len(code.strip()) >= 12:
            code_hash = self.pii.secret_hash("recovery", normalise_recovery_code(code))
            used = self.session.execute(
                update(RecoveryCode)
                .where(
                    RecoveryCode.code_hash == code_hash,
                    RecoveryCode.account_id == account.id,
                    RecoveryCode.used_at.is_(None),
                )
                .values(used_at=self.clock.now())
            )
            if getattr(used, "rowcount", 0) == 1:
                return "otp"
        self._count_failure(account)
        self.audit.record(
            self.session,
            "login.failed",
            subject=account.id,
            result="failure",
            details={"reason": "second_factor"},
        )
        raise SecondFactorFailed()

    # -- credentials ------------------------------------------------------------------

    def enrol_totp(
        self, account: Account, *, secret: str | None = None, used_step: int = 0
    ) -> tuple[str, list[str]]:
        """Turn on TOTP with `secret` (the one the user scanned and confirmed with a code of
        step `used_step`, which then cannot be used again) or a new one."""
        secret = secret or new_secret()
        # TOTP secrets share the ID-number field key: both are account secrets at rest.
        account.totp_secret_enc = self.pii.id_numbers.encrypt(secret)
        account.totp_last_step = used_step
        codes = new_recovery_codes()
        self.session.query(RecoveryCode).filter(RecoveryCode.account_id == account.id).delete()
        for code in codes:
            self.session.add(
                RecoveryCode(
                    code_hash=self.pii.secret_hash("recovery", code), account_id=account.id
                )
            )
        self.session.flush()
        self.audit.record(self.session, "totp.enrolled", subject=account.id)
        return secret, codes

    def remove_totp(self, account: Account) -> None:
        account.totp_secret_enc = None
        self.session.query(RecoveryCode).filter(RecoveryCode.account_id == account.id).delete()
        self.audit.record(self.session, "totp.removed", subject=account.id)

    def totp_secret(self, account: Account) -> str | None:
        if account.totp_secret_enc is None:
            return None
        return self.pii.id_numbers.decrypt(account.totp_secret_enc)

    def set_password(
        self, account: Account, new_password: str, *, event: str = "password.changed"
    ) -> None:
        check_password(new_password, context=(account.name, self.id_number(account)))
        account.password_hash = self.hasher.hash(new_password)
        account.password_changed_at = self.clock.now()
        account.failed_logins = 0
        account.locked_until = None
        self.audit.record(self.session, event, subject=account.id)
