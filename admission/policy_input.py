"""The policy input document: what Rego sees for one admission request.

Its shape is the contract documented in ``policies/README.md`` (keep the two in
step).  Statements are included only for attestations whose signature
verified, so a policy cannot trust unsigned content by mistake; SLSA
provenance is also given as flat facts (builder, build type, source) so
policies need not know each provenance version's layout.  Times are given as
RFC 3339 with ``+00:00`` (the embedded engine cannot parse ``Z``) and as
Unix nanoseconds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from admission.config import ImagePolicy
from admission.review import AdmissionRequest
from admission.workloads import ContainerImage
from attest.attestations.predicates import SLSA_PROVENANCE_V02, SLSA_PROVENANCE_V1
from attest.attestations.provenance import split_source_uri
from attest.attestations.slsa import provenance_facts
from attest.attestations.verification import statement_from_document
from attest.errors import AttestError
from attest.verify import CheckResult, ImageVerification

INPUT_VERSION = "attest.dev/admission-input/v1"
OUTCOMES = ("verified", "unverified", "timed_out", "error", "invalid", "unmatched")


@dataclass
class ImageCheck:
    """One distinct image of the request and everything found out about it."""

    reference: str
    containers: list[ContainerImage]
    name: str | None = None
    tag: str | None = None
    digest: str | None = None
    policy: ImagePolicy | None = None
    outcome: str = "unverified"
    error: str | None = None
    verification: ImageVerification | None = None
    cached: bool = False
    unchanged: bool = False
    resolve_seconds: float = 0.0
    verify_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _repository(uri: str | None) -> str | None:
    """``host/path`` of a normalised ``git+https://host/path`` source URI."""
    if not uri:
        return None
    return uri.removeprefix("git+").split("://", 1)[-1]


def _provenance(check: CheckResult) -> dict[str, Any] | None:
    statement = check.statement or {}
    if check.predicate_type == SLSA_PROVENANCE_V1:
        try:
            facts = provenance_facts(statement_from_document(statement))
        except AttestError as err:
            return {"error": str(err)}
        return {
            "builderId": facts.builder_id,
            "buildType": facts.build_type,
            "sourceUri": facts.source_uri,
            "sourceRepository": _repository(facts.source_uri),
            "sourceRef": facts.source_ref,
            "sourceDigest": facts.source_digest,
        }
    if check.predicate_type == SLSA_PROVENANCE_V02:
        predicate = statement.get("predicate") or {}
        builder = (predicate.get("builder") or {}).get("id")
        source = ((predicate.get("invocation") or {}).get("configSource") or {}).get("uri")
        source_uri, source_ref = (None, None)
        if isinstance(source, str):
            try:
                source_uri, source_ref = split_source_uri(source)
            except AttestError:
                source_uri = source
        return {
            "builderId": builder,
            "buildType": predicate.get("buildType"),
            "sourceUri": source_uri,
            "sourceRepository": _repository(source_uri),
            "sourceRef": source_ref,
            "sourceDigest": ((predicate.get("invocation") or {}).get("configSource") or {}).get(
                "digest"
            )
            or {},
        }
    return None


def _check_input(check: CheckResult) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "verified": check.verified,
        "reasons": list(check.reasons),
        "authority": check.authority,
        "signer": dict(check.signer),
        "storage": check.storage,
        "location": check.location,
        "annotations": dict(check.annotations),
        "tlog": check.tlog,
    }
    if check.kind == "attestation":
        entry["predicateType"] = check.predicate_type
        entry["statement"] = check.statement if check.verified else None
        entry["provenance"] = _provenance(check) if check.verified else None
    return entry


def image_input(check: ImageCheck) -> dict[str, Any]:
    """One entry of ``input.images``."""
    verification = check.verification
    return {
        "reference": check.reference,
        "name": check.name,
        "tag": check.tag,
        "digest": check.digest,
        "containers": [c.to_dict() for c in check.containers],
        "unchanged": check.unchanged,
        "policy": check.policy.to_input() if check.policy else None,
        "outcome": check.outcome,
        "error": check.error,
        "cached": check.cached,
        "thresholdMet": bool(verification and verification.verified),
        "satisfiedAuthorities": list(verification.satisfied_authorities) if verification else [],
        "signatures": [_check_input(s) for s in verification.signatures] if verification else [],
        "attestations": [_check_input(a) for a in verification.attestations]
        if verification
        else [],
        "lookupErrors": list(verification.errors) if verification else [],
    }


def build_input(
    request: AdmissionRequest, checks: list[ImageCheck], now: dt.datetime
) -> dict[str, Any]:
    """The whole policy input document for ``request``."""
    return {
        "apiVersion": INPUT_VERSION,
        "request": {
            "uid": request.uid,
            "operation": request.operation,
            "kind": request.kind.to_dict(),
            "resource": request.resource,
            "subResource": request.sub_resource,
            "namespace": request.namespace,
            "name": request.name,
            "user": {"username": request.username, "groups": list(request.groups)},
            "labels": request.labels,
            "annotations": request.annotations,
            "dryRun": request.dry_run,
        },
        "time": {
            "rfc3339": rfc3339(now),
            "unixNs": int(now.timestamp() * 1_000_000_000),
        },
        "images": [image_input(check) for check in checks],
    }
