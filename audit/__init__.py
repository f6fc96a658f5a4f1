"""全程留痕: the tamper-evident audit log.

Every security-relevant action becomes an `<artifact>.<verb>` event, appended to a Merkle
tree hashed as Certificate Transparency does (RFC 9162 §2.1) with signed checkpoints, and
verifiable from the database or from an export.

    log = AuditLog(pseudonym_key=secrets.get("audit-pseudonym"), clock=clock)
    log.record(session, "token.issued", actor="client:abc", subject=account.id, ...)

    # every replica, every few seconds (the signer is fetched only when one is due):
    sequencer = Sequencer(factory, clock, checkpoint_every=timedelta(minutes=5))
    ring = audit_keyring(keks)
    sequencer.tick(lambda: checkpoint_signer(factory, ring, clock, log))

    report = verify_log(factory, keks=keks)        # `tongban audit verify`
    report.raise_for_failure()
"""

from audit.checkpoints import (
    CHECKPOINT_TYP,
    DEFAULT_LOG_ID,
    CheckpointInvalid,
    CheckpointKeys,
    SignedTreeHead,
    audit_keyring,
    checkpoint_keys,
    checkpoint_signer,
    open_checkpoint,
)
from audit.errors import (
    AuditError,
    AuditIntegrityError,
    ControlCharacters,
    DetailsTooLarge,
    InvalidAuditEvent,
    InvalidField,
    PersonalDataInClear,
    ProofError,
    PruneRefused,
    UnknownEvent,
)
from audit.events import EVENTS, MAX_DETAILS_BYTES, EventRegistry, EventType
from audit.export import ExportSummary, export_log, verify_export, witnessed_checkpoints
from audit.log import AuditLog
from audit.proofs import ConsistencyProof, InclusionProof, consistency_proof, inclusion_proof
from audit.queries import AuditRecord, EventPage, get_event, list_events, subject_history
from audit.retention import MIN_RETENTION, PruneResult, RetentionPolicy, prune
from audit.sequencer import CheckpointInfo, Sequencer, TickResult, TreeHead
from audit.verify import Finding, FindingKind, Outcome, VerificationReport, verify_log

__all__ = [
    "CHECKPOINT_TYP",
    "DEFAULT_LOG_ID",
    "EVENTS",
    "MAX_DETAILS_BYTES",
    "MIN_RETENTION",
    "AuditError",
    "AuditIntegrityError",
    "AuditLog",
    "AuditRecord",
    "CheckpointInfo",
    "CheckpointInvalid",
    "CheckpointKeys",
    "ConsistencyProof",
    "ControlCharacters",
    "DetailsTooLarge",
    "EventPage",
    "EventRegistry",
    "EventType",
    "ExportSummary",
    "Finding",
    "FindingKind",
    "InclusionProof",
    "InvalidAuditEvent",
    "InvalidField",
    "Outcome",
    "PersonalDataInClear",
    "ProofError",
    "PruneRefused",
    "PruneResult",
    "RetentionPolicy",
    "Sequencer",
    "SignedTreeHead",
    "TickResult",
    "TreeHead",
    "UnknownEvent",
    "VerificationReport",
    "audit_keyring",
    "checkpoint_keys",
    "checkpoint_signer",
    "consistency_proof",
    "export_log",
    "get_event",
    "inclusion_proof",
    "list_events",
    "open_checkpoint",
    "prune",
    "subject_history",
    "verify_export",
    "verify_log",
    "witnessed_checkpoints",
]
