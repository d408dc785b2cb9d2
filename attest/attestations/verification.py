"""Verify an image's attestations of one predicate type, then judge what they say.

Order matters: :func:`attest.verify.verify_image` first checks every
attestation's envelope signature against the trust policy; only the ones that
verified are read further.  Each of those must name the image digest as a
subject, parse as an in-toto Statement, pass the slsa-verifier checks asked for
and the Rego policy (rules ``deny``/``warn`` over ``input`` = the Statement).
The result passes when at least one attestation of the type verified and
*every* verified one of that type passes — as cosign does, an old or
contradicting attestation signed by a trusted key is a reason to stop, not to
pick the convenient one.  Every violation is kept for printing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from attest.attestations.slsa import SlsaExpectations, check_provenance
from attest.attestations.statement import (
    IN_TOTO_PAYLOAD_TYPE,
    Statement,
    parse_statement,
    predicate_type_of,
    require_subject_digest,
)
from attest.errors import AttestationError

if TYPE_CHECKING:  # the signing stack (sigstore-python) is imported only when verifying
    from attest.signing.authority import Authority
    from attest.signing.result import SignerIdentity, Storage
    from attest.verify import ImageVerification

DEFAULT_POLICY_PACKAGE = "attest.attestation"


class RegoEngine(Protocol):
    """What :func:`attest.policy.make_engine` returns (only ``evaluate`` is used)."""

    def evaluate(self, input_doc: dict[str, Any], package: str = ...) -> Any: ...


@dataclass(frozen=True)
class AttestationOutcome:
    """One attestation of the wanted type and everything that was checked about it."""

    location: str
    storage: Storage | Literal["file"]  # "file": a bundle file (verify-blob-attestation)
    signature_verified: bool
    signer: SignerIdentity
    violations: tuple[str, ...]  # signature reasons, subject/format, SLSA and policy denials
    warnings: tuple[str, ...] = ()
    statement: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return self.signature_verified and not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "storage": self.storage,
            "signatureVerified": self.signature_verified,
            "passed": self.passed,
            "signer": self.signer.to_dict(),
            "violations": list(self.violations),
            "warnings": list(self.warnings),
            "statement": self.statement,
        }


@dataclass(frozen=True)
class AttestationReport:
    """The verdict on an image's attestations of one predicate type."""

    reference: str
    digest: str
    predicate_type: str
    outcomes: tuple[AttestationOutcome, ...]
    other_types: tuple[str, ...] = ()  # predicate types found that were not asked for
    errors: tuple[str, ...] = ()
    policy: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> tuple[AttestationOutcome, ...]:
        return tuple(o for o in self.outcomes if o.signature_verified)

    @property
    def passed(self) -> bool:
        verified = self.verified
        return bool(verified) and all(o.passed for o in verified)

    def failure_summary(self) -> str:
        """One line saying why the report did not pass."""
        if not self.outcomes:
            found = f" (found: {', '.join(self.other_types)})" if self.other_types else ""
            return f"{self.reference}: no attestation of type {self.predicate_type}{found}"
        if not self.verified:
            return (
                f"{self.reference}: none of the {len(self.outcomes)} attestation(s) of type "
                f"{self.predicate_type} verified against the trust policy (reasons listed above)"
            )
        failing = [o for o in self.verified if not o.passed]
        count = sum(len(o.violations) for o in failing)
        return (
            f"{self.reference}: {len(failing)} verified attestation(s) of type "
            f"{self.predicate_type} failed {count} check(s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "predicateType": self.predicate_type,
            "passed": self.passed,
            "attestations": [o.to_dict() for o in self.outcomes],
            "otherPredicateTypes": list(self.other_types),
            "errors": list(self.errors),
            "policy": dict(self.policy),
        }


def judge_statement(
    statement_doc: dict[str, Any] | None,
    digest: str,
    predicate_type: str,
    *,
    slsa: SlsaExpectations | None = None,
    engine: RegoEngine | None = None,
    package: str = DEFAULT_POLICY_PACKAGE,
    requires_allow: bool = False,
) -> tuple[list[str], list[str]]:
    """Violations and warnings for a *signature-verified* Statement about ``digest``."""
    if statement_doc is None:
        return ["attestation payload is not an in-toto Statement"], []
    try:
        statement = statement_from_document(statement_doc)
        require_subject_digest(statement, digest, what="attestation")
    except AttestationError as err:
        return [str(err)], []
    if statement.predicate_type != predicate_type:
        return [
            f"predicate type {statement.predicate_type!r} is not the expected {predicate_type!r}"
        ], []
    violations: list[str] = []
    warnings: list[str] = []
    if slsa is not None and slsa.any:
        violations.extend(check_provenance(statement, slsa))
    if engine is not None:
        result = engine.evaluate(statement.to_dict(), package)
        violations.extend(f"policy: {message}" for message in result.deny)
        refused = result.allow_violation(package) if requires_allow else None
        if refused:  # cosign's form: only a literal true allows
            violations.append(f"policy: {refused}")
        warnings.extend(f"policy: {message}" for message in result.warn)
    return violations, warnings


def statement_from_document(document: dict[str, Any]) -> Statement:
    """Re-validate a decoded Statement (from a verification result) as in-toto."""
    raw = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    return parse_statement(raw, what="attestation statement")


@dataclass(frozen=True)
class Judge:
    """What attestations of one predicate type must satisfy beyond their signature."""

    predicate_type: str
    slsa: SlsaExpectations | None = None
    engine: RegoEngine | None = None
    package: str = DEFAULT_POLICY_PACKAGE
    policy: dict[str, Any] = field(default_factory=dict)  # what to report about the policy
    requires_allow: bool = False  # the package defines cosign's ``allow``: it must be true

    def outcome(
        self,
        digest: str,
        *,
        location: str,
        storage: Storage | Literal["file"],
        verified: bool,
        reasons: tuple[str, ...] | list[str],
        signer: SignerIdentity,
        statement: dict[str, Any] | None,
    ) -> AttestationOutcome:
        """One attestation's outcome: its verification reasons plus, if verified, every check."""
        violations = list(reasons)
        warnings: list[str] = []
        if verified:
            more, warnings = judge_statement(
                statement,
                digest,
                self.predicate_type,
                slsa=self.slsa,
                engine=self.engine,
                package=self.package,
                requires_allow=self.requires_allow,
            )
            violations.extend(more)
        return AttestationOutcome(
            location=location,
            storage=storage,
            signature_verified=verified,
            signer=signer,
            violations=tuple(violations),
            warnings=tuple(warnings),
            statement=statement if verified else None,
        )

    def other_type(self, statement: dict[str, Any] | None, declared: str | None) -> str | None:
        """The predicate type found, when it is known and not the one asked for."""
        found = declared or predicate_type_of(statement or {})
        if found is None or found == self.predicate_type:
            return None  # unreadable ones (no type) stay: the user should see why they failed
        return found

    def report(
        self,
        reference: str,
        digest: str,
        outcomes: list[AttestationOutcome],
        other_types: set[str],
        errors: tuple[str, ...] = (),
    ) -> AttestationReport:
        return AttestationReport(
            reference=reference,
            digest=digest,
            predicate_type=self.predicate_type,
            outcomes=tuple(outcomes),
            other_types=tuple(sorted(other_types)),
            errors=errors,
            policy=dict(self.policy),
        )


def build_report(verification: ImageVerification, judge: Judge) -> AttestationReport:
    """Judge the attestations of an :class:`attest.verify.ImageVerification`."""
    outcomes: list[AttestationOutcome] = []
    other_types: set[str] = set()
    for check in verification.attestations:
        other = judge.other_type(check.statement, check.predicate_type)
        if other:
            other_types.add(other)
            continue
        outcomes.append(
            judge.outcome(
                verification.digest,
                location=check.location,
                storage=check.storage,
                verified=check.verified,
                reasons=check.reasons,
                signer=check.signer,
                statement=check.statement,
            )
        )
    return judge.report(
        verification.reference,
        verification.digest,
        outcomes,
        other_types,
        tuple(verification.errors),
    )


def read_bundles(raw: bytes, *, what: str) -> list[bytes]:
    """The bundles of a ``.sigstore.json`` file (one JSON) or an ``.intoto.jsonl`` (one per line)."""
    try:
        json.loads(raw)
        return [raw]
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    lines = [line for line in raw.splitlines() if line.strip()]
    if not lines:
        raise AttestationError(f"{what} is empty")
    for number, line in enumerate(lines, 1):
        try:
            json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise AttestationError(f"{what} line {number} is not JSON ({err})") from None
    return lines


def verify_blob_attestation(
    bundles: list[bytes],
    artifact_digest: str,
    authority: Authority,
    judge: Judge,
    *,
    reference: str,
) -> AttestationReport:
    """Verify attestation bundles about a file (slsa-verifier's ``verify-artifact``)."""
    from attest.signing.bundle_verify import verify_bundle
    from attest.signing.trust import load_trusted_root

    outcomes: list[AttestationOutcome] = []
    other_types: set[str] = set()
    root = load_trusted_root(authority.trusted_root) if authority.trusted_root else None
    for index, bundle in enumerate(bundles):
        result = verify_bundle(
            bundle,
            authority,
            artifact_digest=artifact_digest,
            payload_type=IN_TOTO_PAYLOAD_TYPE,
            trusted_root=root,
        )
        statement = result.statement()
        other = judge.other_type(statement, None)
        if other:
            other_types.add(other)
            continue
        outcomes.append(
            judge.outcome(
                artifact_digest,
                location=f"{reference}#{index + 1}",
                storage="file",
                verified=result.verified,
                reasons=result.reasons,
                signer=result.signer,
                statement=statement,
            )
        )
    return judge.report(reference, artifact_digest, outcomes, other_types)
