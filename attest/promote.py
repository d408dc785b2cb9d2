"""Promote an image: verify it against a policy, copy it with everything attached, and
sign a promotion attestation saying who promoted what, when, from where, after which checks.

The order is the guarantee: the source is pinned to one digest, verified at that
digest, and only then copied (by that digest, so a tag moved meanwhile changes
nothing); when any check fails nothing is copied.  The promotion attestation is
an in-toto Statement of :data:`PROMOTION_PREDICATE_TYPE` about the destination,
which admission policies can require like any other attestation.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from attest import __version__
from attest.attestations.statement import build_statement, subject_for_image
from attest.deadline import Deadline
from attest.errors import VerificationFailed
from attest.oci.access import identifier_for
from attest.oci.manifest import Descriptor
from attest.oci.reference import ImageReference, LayoutReference
from attest.oci.transport import RegistryOptions
from attest.signing.attached import KINDS, Kind, copy_image, opened
from attest.signing.authority import VerificationPolicy
from attest.signing.signer import Signer
from attest.signing.storage import SignedImage, attach_attestation
from attest.verify import ImageVerification, verify_image

PROMOTION_PREDICATE_TYPE = "https://attest.dev/promotion/v1"
"""The predicate type of promotion attestations (README "Promotion attestation")."""


@dataclass(frozen=True)
class PromotionCheck:
    """One check the source had to pass: its signature, or a required attestation type."""

    check: str  # "signature" | "attestation"
    name: str  # the authorities, or the predicate type
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "name": self.name,
            "passed": self.passed,
            "detail": self.detail,
        }


def promotion_checks(
    verification: ImageVerification, policy: VerificationPolicy, required_types: Iterable[str]
) -> list[PromotionCheck]:
    """The signature check and one check per required attestation type (verified ones only)."""
    verified_signatures = [s for s in verification.signatures if s.verified]
    checks = [
        PromotionCheck(
            "signature",
            ", ".join(a.name for a in policy.authorities),
            verification.verified,
            f"{len(verified_signatures)} of {len(verification.signatures)} signature(s) verified",
        )
    ]
    for predicate_type in required_types:
        of_type = [a for a in verification.attestations if a.predicate_type == predicate_type]
        verified = [a for a in of_type if a.verified]
        checks.append(
            PromotionCheck(
                "attestation",
                predicate_type,
                bool(verified),
                f"{len(verified)} of {len(of_type)} attestation(s) of the type verified",
            )
        )
    return checks


def _promoter(signer: Signer) -> dict[str, Any]:
    try:
        user: str | None = getpass.getuser()
    except (KeyError, OSError):
        user = None
    ci = {
        name: os.environ[name]
        for name in ("GITHUB_ACTOR", "GITHUB_RUN_ID", "GITLAB_USER_LOGIN", "CI_PIPELINE_URL")
        if os.environ.get(name)
    }
    return {"signer": signer.description, "user": user, **({"ci": ci} if ci else {})}


def promote(
    source: ImageReference | LayoutReference,
    destination: ImageReference | LayoutReference,
    policy: VerificationPolicy,
    required_types: Iterable[str],
    signer: Signer,
    options: RegistryOptions,
    *,
    kinds: Iterable[Kind] = KINDS,
) -> dict[str, Any]:
    """Verify ``source``, copy it to ``destination``, and attach a signed promotion attestation.

    Raises :class:`~attest.errors.VerificationFailed` (nothing copied) when a check fails.
    """
    required = tuple(dict.fromkeys(required_types))
    deadline = Deadline.after(options.timeout)
    with opened(source, options, deadline) as store:
        digest = store.resolve(identifier_for(source, store)).digest
        pinned = source.with_digest(digest)
        verification = verify_image(
            pinned, policy, store=store, deadline=deadline, attestations=True, resolve=False
        )
    checks = promotion_checks(verification, policy, required)
    failed = [c for c in checks if not c.passed]
    if failed:
        raise VerificationFailed(
            f"{source.name}@{digest}: not promoted, nothing copied: "
            + "; ".join(f"{c.check} {c.name}: {c.detail}" for c in failed)
        )
    copied = copy_image(pinned, destination, options, kinds, deadline=deadline)
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    predicate = {
        "source": f"{source.name}@{digest}",
        "destination": copied["destination"],
        "promotedAt": when,
        "promoter": _promoter(signer),
        "policy": {"fingerprint": policy.fingerprint(), "requiredAttestations": list(required)},
        "checks": [c.to_dict() for c in checks],
        "tool": {"name": "attest", "version": __version__},
    }
    statement = build_statement(
        [subject_for_image(destination.name, digest)], PROMOTION_PREDICATE_TYPE, predicate
    )
    target = SignedImage(destination.name, Descriptor(copied["mediaType"], digest, copied["size"]))
    with opened(destination, options, deadline) as store:
        location = attach_attestation(store, target, statement.raw, signer)
    return {**copied, "promotion": location, "predicate": predicate}
