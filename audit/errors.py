"""Errors of `audit/`: one root, one class per way an event or the log can be wrong.

Each error has a public `description` (safe to show) and a private `detail` for logs, as
`kit.errors.TongbanError` defines; descriptions say how to fix the call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kit.errors import TongbanError

if TYPE_CHECKING:
    from audit.verify import VerificationReport

__all__ = [
    "AuditError",
    "AuditIntegrityError",
    "ControlCharacters",
    "DetailsTooLarge",
    "InvalidAuditEvent",
    "InvalidField",
    "PersonalDataInClear",
    "ProofError",
    "PruneRefused",
    "UnknownEvent",
]


class AuditError(TongbanError):
    """Root of every audit error."""

    code = "audit_error"
    status = 500


class InvalidAuditEvent(AuditError):
    """An event was refused at the interface; nothing was written and the caller's action
    must fail (the log may not silently miss it)."""

    code = "invalid_audit_event"
    status = 400


class UnknownEvent(InvalidAuditEvent):
    code = "unknown_audit_event"


class InvalidField(InvalidAuditEvent):
    code = "invalid_audit_field"


class ControlCharacters(InvalidAuditEvent):
    code = "audit_control_characters"


class DetailsTooLarge(InvalidAuditEvent):
    code = "audit_details_too_large"


class PersonalDataInClear(InvalidAuditEvent):
    code = "audit_personal_data_in_clear"


class ProofError(AuditError):
    """A Merkle inclusion or consistency proof does not verify (RFC 9162 §2.1.3.2,
    §2.1.4.2), or cannot be built from what the log still holds."""

    code = "audit_proof_invalid"


class PruneRefused(AuditError):
    """Pruning stopped because the range to prune does not verify: pruning it would destroy
    the evidence. Nothing was deleted."""

    code = "audit_prune_refused"


class AuditIntegrityError(AuditError):
    """Raised by `VerificationReport.raise_for_failure()`: the log did not verify."""

    code = "audit_integrity"

    def __init__(self, report: VerificationReport) -> None:
        super().__init__(
            f"the audit log did not verify: {report.outcome.value}",
            detail="; ".join(str(f) for f in report.findings[:20]),
        )
        self.report = report
