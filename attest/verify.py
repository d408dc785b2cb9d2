"""Verify an image's signatures and attestations against a policy (the library API).

:func:`verify_image` resolves the image to its digest, finds every signature and
attestation stored for it (Sigstore bundles as OCI referrers, cosign's legacy
``.sig``/``.att`` tags), checks each against every authority of the
:class:`VerificationPolicy` and returns plain data: what was found, what
verified, and every reason each one failed.  A bad signature is a result, never
an exception; exceptions are for unusable input and registry failures.  The
cryptographic checks live in :mod:`attest.signing`; this module orchestrates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from attest.deadline import Deadline
from attest.oci.access import identifier_for, open_store, parse_image_target
from attest.oci.reference import ImageReference, LayoutReference
from attest.oci.store import ImageStore
from attest.oci.transport import RegistryOptions
from attest.signing import legacy
from attest.signing.authority import VerificationPolicy
from attest.signing.bundle_verify import check_bundle
from attest.signing.checks import TrustMaterial
from attest.signing.result import CheckResult
from attest.signing.storage import FoundSignatures, find_signatures


@dataclass(frozen=True)
class ImageVerification:
    """The outcome of verifying one image against a policy."""

    reference: str
    digest: str
    signatures: tuple[CheckResult, ...]
    attestations: tuple[CheckResult, ...]
    satisfied_authorities: tuple[str, ...]
    verified: bool  # threshold met by verified signatures
    errors: tuple[str, ...]  # problems while looking (registry errors etc.)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "verified": self.verified,
            "satisfiedAuthorities": list(self.satisfied_authorities),
            "signatures": [s.to_dict() for s in self.signatures],
            "attestations": [a.to_dict() for a in self.attestations],
            "errors": list(self.errors),
        }


# -- the entry point ---------------------------------------------------------------------------


def verify_image(
    target: str | ImageReference | LayoutReference,
    policy: VerificationPolicy,
    *,
    store: ImageStore | None = None,
    options: RegistryOptions | None = None,
    deadline: Deadline | None = None,
    attestations: bool = True,
    resolve: bool = True,
) -> ImageVerification:
    """Find and check every signature (and attestation) of an image against ``policy``.

    A tag is resolved to its digest first; signatures must name that digest.  A
    reference with a digest is looked up too, unless ``resolve`` is false: callers
    that just resolved the tag (or take a pinned digest as given) skip that round
    trip, since every signature is checked against the digest either way.  Never
    raises for a bad signature (that is a failed :class:`CheckResult`); raises
    :class:`~attest.errors.AttestError` subclasses for unusable input (bad keys or
    trusted roots, unparseable references) and registry failures, and
    :class:`~attest.errors.DeadlineExceeded` when ``deadline`` runs out.
    """
    reference = parse_image_target(target) if isinstance(target, str) else target
    deadline = deadline or Deadline.after(options.timeout if options else None)
    own_store = store is None
    active = store or open_store(reference, options, deadline=deadline)
    try:
        deadline.check(f"verify {reference}")
        if not resolve and isinstance(reference, ImageReference) and reference.digest:
            digest = reference.digest
        else:
            digest = active.resolve(identifier_for(reference, active)).digest
        trust = TrustMaterial(policy)  # bad keys or roots fail before any more fetching
        found = find_signatures(active, digest, attestations=attestations)
        deadline.check(f"verify {reference}")
    finally:
        if own_store:
            active.close()
    return _evaluate(str(reference), digest, found, trust, attestations=attestations)


def check_signatures(
    reference: str,
    digest: str,
    found: FoundSignatures,
    policy: VerificationPolicy,
    *,
    attestations: bool = True,
) -> ImageVerification:
    """Check signatures already fetched with :func:`~attest.signing.storage.find_signatures`.

    No network: callers that cache what a registry holds (admission) re-check here.
    """
    return _evaluate(reference, digest, found, TrustMaterial(policy), attestations=attestations)


def _evaluate(
    reference: str,
    digest: str,
    found: FoundSignatures,
    trust: TrustMaterial,
    *,
    attestations: bool,
) -> ImageVerification:
    checked = [check_bundle(b.location, b.bundle_json, digest, trust) for b in found.bundles]
    checked += [legacy.check_signature(e, digest, trust) for e in found.legacy_signatures]
    if attestations:
        checked += [legacy.check_attestation(e, digest, trust) for e in found.legacy_attestations]
    signatures = tuple(c for c in checked if c.kind == "signature")
    found_attestations = tuple(c for c in checked if c.kind == "attestation")
    policy = trust.policy
    satisfied = tuple(
        a.name for a in policy.authorities if any(s.authority == a.name for s in signatures)
    )
    return ImageVerification(
        reference=reference,
        digest=digest,
        signatures=signatures,
        attestations=found_attestations if attestations else (),
        satisfied_authorities=satisfied,
        verified=len(satisfied) >= policy.threshold,
        errors=found.problems,
    )
