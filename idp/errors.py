"""Errors of the provider core. OAuth protocol errors are Authlib's `OAuth2Error` classes;
these cover accounts, authentication and registration. Each has an English public
description (ASCII) and a Chinese text for pages."""

from __future__ import annotations

from kit.errors import TongbanError


class IdpError(TongbanError):
    code = "idp_error"
    zh = "操作失败。"

    def __init__(self, description: str = "", *, zh: str = "", detail: str = "") -> None:
        super().__init__(description, detail=detail)
        if zh:
            self.zh = zh


class LoginFailed(IdpError):
    """The same error for an unknown user, a wrong password and a locked account, so a
    response reveals nothing about which (ASVS 6.3.8)."""

    code = "login_failed"
    status = 401
    zh = "账号或密码不正确，或账号暂时被锁定。"

    def __init__(self) -> None:
        super().__init__("Incorrect username or password, or the account is temporarily locked.")


class SecondFactorFailed(IdpError):
    code = "otp_failed"
    status = 401
    zh = "动态验证码不正确或已使用。"

    def __init__(self) -> None:
        super().__init__("The one-time code is wrong or was already used.")


class Throttled(IdpError):
    code = "too_many_attempts"
    status = 429
    zh = "尝试次数过多，请稍后再试。"

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many attempts; try again later.")
        self.retry_after = retry_after


class PasswordRejected(IdpError):
    code = "weak_password"


class RegistrationFailed(IdpError):
    code = "registration_failed"


class AccountNotFound(IdpError):
    code = "not_found"
    status = 404


class InteractionGone(IdpError):
    """The interaction was finished by another request meanwhile (a second submit of the
    same step): this one must not finish it again, so its unit of work rolls back."""

    code = "invalid_request"

    def __init__(self) -> None:
        super().__init__(
            "The login request was already completed.", zh="该登录请求已完成，请勿重复提交。"
        )
