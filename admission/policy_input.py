"""The policy input document: what Rego sees for one admission request.

Its shape is the contract documented in ``policies/README.md`` (keep the two in
step).  SLSA provenance is given as flat facts (builder, build type, source) so
policies need not know each provenance version's layout (a trusted-signed
provenance whose predicate is not valid has ``provenance: null`` and a
``provenanceError``, and its image the outcome ``invalid_provenance``); the decoded
Statements are included on request (``policy.includeStatements``), and then
only for attestations whose signature verified, so a policy cannot trust
unsigned content by mistake.  Times are given as
RFC 3339 with ``+00:00`` (the embedded engine cannot parse ``Z``) and as
Unix nanoseconds.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from admission.bounds import bounded_map
from admission.cip import cluster_verdicts
from admission.config import ImagePolicy
from admission.review import AdmissionRequest
from admission.verdict import Outcome, rfc3339
from admission.workloads import ContainerImage
from attest.attestations.slsa import SLSA_PROVENANCE_TYPES, predicate_facts
from attest.errors import AttestError
from attest.oci.reference import ImageReference
from attest.signing.result import CheckResult
from attest.verify import ImageVerification

log = logging.getLogger(__name__)

INPUT_VERSION = "attest.dev/admission-input/v1"


@dataclass
class ImageCheck:
    """One distinct image of the request and everything found out about it."""

    reference: str
    containers: list[ContainerImage]
    parsed: ImageReference | None = None  # None when the reference is invalid
    digest: str | None = None
    policy: ImagePolicy | None = None
    outcome: Outcome = "unverified"
    error: str | None = None
    verification: ImageVerification | None = None
    cached: bool = False
    unchanged: bool = False
    resolve_seconds: float = 0.0
    verify_seconds: float = 0.0

    @property
    def name(self) -> str | None:
        return self.parsed.name if self.parsed else None

    @property
    def tag(self) -> str | None:
        return self.parsed.tag if self.parsed else None


def _repository(uri: str | None) -> str | None:
    """``host/path`` of a normalised ``git+https://host/path`` source URI."""
    if not uri:
        return None
    return uri.removeprefix("git+").split("://", 1)[-1]


def _provenance(check: CheckResult) -> tuple[dict[str, Any] | None, str | None]:
    """The flat facts of a SLSA provenance attestation, or (None, why it is not valid
    provenance); (None, None) for any other predicate type."""
    if check.predicate_type not in SLSA_PROVENANCE_TYPES:
        return None, None
    assert check.predicate_type is not None
    statement = check.statement if isinstance(check.statement, dict) else {}
    try:
        facts = predicate_facts(check.predicate_type, statement.get("predicate"))
    except AttestError as err:
        return None, str(err)
    except Exception as err:  # a reader bug must deny with a reason, not admit or crash
        log.exception("reading the provenance at %s crashed", check.location)
        return None, f"unreadable ({type(err).__name__}: {err})"
    return {
        "builderId": facts.builder_id,
        "buildType": facts.build_type,
        "sourceUri": facts.source_uri,
        "sourceRepository": _repository(facts.source_uri),
        "sourceRef": facts.source_ref,
        "sourceDigest": facts.source_digest,
        "buildStartedOn": facts.started_on,
        "buildFinishedOn": facts.finished_on,
    }, None


def _check_input(check: CheckResult, *, statements: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "verified": check.verified,
        "reasons": list(check.reasons),
        "authority": check.authority,
        "signer": check.signer.to_dict(),
        "storage": check.storage,
    }
    if check.annotations:
        entry["annotations"] = bounded_map(check.annotations)
    if check.tlog:
        entry["tlog"] = check.tlog
    if check.kind == "attestation":
        entry["predicateType"] = check.predicate_type
        facts, problem = _provenance(check) if check.verified else (None, None)
        entry["provenance"] = facts
        if problem:
            entry["provenanceError"] = problem
        if statements:
            entry["statement"] = check.statement if check.verified else None
    return entry


_MEMO_LIMIT = 4096
_memo: dict[tuple[int, bool], tuple[ImageVerification, list[Any], list[Any]]] = {}


def _checks_input(
    verification: ImageVerification | None, statements: bool
) -> tuple[list[Any], list[Any]]:
    """The signatures and attestations of a verification as input, computed once per result
    (cached results come back on every request; parsing provenance each time is costly)."""
    if verification is None:
        return [], []
    key = (id(verification), statements)
    hit = _memo.get(key)
    if hit is not None and hit[0] is verification:
        return hit[1], hit[2]
    signatures = [_check_input(s, statements=statements) for s in verification.signatures]
    attestations = [_check_input(a, statements=statements) for a in verification.attestations]
    if len(_memo) >= _MEMO_LIMIT:
        _memo.clear()
    _memo[key] = (verification, signatures, attestations)
    return signatures, attestations


def provenance_problem(verification: ImageVerification | None) -> str | None:
    """Why a trusted-signed SLSA provenance attestation of the image is not valid provenance
    (the first such), or None: present but invalid provenance is denied by the webhook."""
    _signatures, attestations = _checks_input(verification, False)
    return next((a["provenanceError"] for a in attestations if "provenanceError" in a), None)


def image_input(check: ImageCheck, *, statements: bool = False) -> dict[str, Any]:
    """One entry of ``input.images`` (decoded Statements only when ``statements``)."""
    verification = check.verification
    signatures, attestations = _checks_input(verification, statements)
    entry = {
        "reference": check.reference,
        "name": check.name,
        "tag": check.tag,
        "digest": check.digest,
        "containers": [{"name": c.container, "type": c.type} for c in check.containers],
        "unchanged": check.unchanged,
        "policy": check.policy.to_input()
        if check.policy and not check.policy.cluster_only
        else None,
        "outcome": check.outcome,
        "error": check.error,
        "cached": check.cached,
        "thresholdMet": bool(verification and verification.verified),
        "satisfiedAuthorities": list(verification.satisfied_authorities) if verification else [],
        "signatures": signatures,
        "attestations": attestations,
        "lookupErrors": list(verification.errors) if verification else [],
    }
    if check.policy is not None and check.policy.cluster:
        entry["clusterImagePolicies"] = cluster_verdicts(
            check.policy.cluster, verification, check.error
        )
    return entry


def build_input(
    request: AdmissionRequest,
    checks: list[ImageCheck],
    now: dt.datetime,
    *,
    statements: bool = False,
) -> dict[str, Any]:
    """The whole policy input document for ``request``.

    It is kept small on purpose: the embedded engine reads its input at about a
    microsecond per byte, so Statements (an SBOM can be megabytes) are included
    only when the configuration asks for them, object annotations (which hold
    ``kubectl``'s copy of the whole manifest) are left out, and labels and
    signature annotations are bounded (:mod:`admission.bounds`).
    """
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
            "labels": bounded_map(request.labels),
            "dryRun": request.dry_run,
        },
        "time": {
            "rfc3339": rfc3339(now),
            "unixNs": int(now.timestamp() * 1_000_000_000),
        },
        "images": [image_input(check, statements=statements) for check in checks],
    }
