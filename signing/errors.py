"""The error root of `signing/`: one class per failure a caller must tell apart.

Verification never raises for bad input (it returns a FAILED/INDETERMINATE report); these
errors are for admin actions, sealing and requests the service refuses outright."""

from __future__ import annotations

from kit.errors import TongbanError

__all__ = [
    "InputTooLarge",
    "MalformedInput",
    "SealForbidden",
    "SealNotFound",
    "SealNotUsable",
    "SigningError",
    "TimestampError",
]


class SigningError(TongbanError):
    code = "signing_error"
    status = 400


class SealNotFound(SigningError):
    code = "seal_not_found"
    status = 404


class SealNotUsable(SigningError):
    """The seal exists but cannot seal now: suspended, revoked, or outside its validity."""

    code = "seal_not_usable"
    status = 409


class SealForbidden(SigningError):
    """The caller's department does not own the seal, or it lacks scope `seal:use`."""

    code = "seal_forbidden"
    status = 403


class InputTooLarge(SigningError):
    code = "input_too_large"
    status = 413


class MalformedInput(SigningError):
    code = "malformed_input"
    status = 400


class TimestampError(SigningError):
    code = "timestamp_error"
    status = 500
