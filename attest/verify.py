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

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from attest.errors import UsageError


@dataclass(frozen=True)
class KeyAuthority:
    """Trust signatures made with one public key (PKIX PEM: ECDSA, RSA or Ed25519)."""

    name: str
    public_key_pem: bytes


@dataclass(frozen=True)
class KeylessAuthority:
    """Trust Sigstore keyless signatures whose certificate names this identity and issuer.

    Regular expressions must match the whole value (they are anchored).
    ``trusted_root`` is a ``trusted_root.json`` path; ``None`` means the Sigstore
    public-good root shipped with sigstore-python (no network needed).
    """

    name: str
    issuer: str | None = None
    issuer_regexp: str | None = None
    subject: str | None = None
    subject_regexp: str | None = None
    trusted_root: str | None = None

    def __post_init__(self) -> None:
        if not (self.issuer or self.issuer_regexp):
            raise UsageError(f"authority {self.name}: a keyless authority needs an OIDC issuer")
        if not (self.subject or self.subject_regexp):
            raise UsageError(
                f"authority {self.name}: a keyless authority needs a certificate identity"
            )


Authority = KeyAuthority | KeylessAuthority


def _authority_trust(authority: Authority) -> dict[str, Any]:
    if isinstance(authority, KeyAuthority):
        return {"name": authority.name, "key": authority.public_key_pem.decode().strip()}
    root = None
    if authority.trusted_root:
        try:
            with open(authority.trusted_root, "rb") as handle:
                root = hashlib.sha256(handle.read()).hexdigest()
        except OSError:
            root = f"unreadable:{authority.trusted_root}"
    return {
        "name": authority.name,
        "issuer": authority.issuer,
        "issuerRegexp": authority.issuer_regexp,
        "subject": authority.subject,
        "subjectRegexp": authority.subject_regexp,
        "trustedRoot": root or "sigstore-public-good",
    }


@dataclass(frozen=True)
class VerificationPolicy:
    """Who must have signed: ``threshold`` distinct authorities, each with a verified signature."""

    authorities: tuple[Authority, ...]
    threshold: int = 1
    required_annotations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.authorities:
            raise UsageError("verification policy: no authorities (give --key or an identity)")
        names = [a.name for a in self.authorities]
        if len(set(names)) != len(names):
            raise UsageError("verification policy: authority names must be unique")
        if not 1 <= self.threshold <= len(self.authorities):
            raise UsageError(
                f"verification policy: threshold {self.threshold} must be between 1 and "
                f"{len(self.authorities)} (the number of authorities)"
            )

    def fingerprint(self) -> str:
        """SHA-256 over all trust material (keys, identities, roots): a cache key."""
        document = {
            "authorities": [_authority_trust(a) for a in self.authorities],
            "threshold": self.threshold,
            "requiredAnnotations": dict(sorted(self.required_annotations.items())),
        }
        encoded = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True)
class CheckResult:
    """One signature or attestation found for the image, and what checking it gave."""

    kind: str  # "signature" | "attestation"
    storage: str  # "bundle" (OCI referrer, Sigstore bundle v0.3) | "legacy" (.sig/.att tag)
    location: str  # e.g. "host/repo@sha256:<artifact manifest digest>"
    verified: bool
    reasons: tuple[str, ...]  # every reason it failed (empty when verified)
    authority: str | None  # name of the authority that verified it
    signer: dict[
        str, Any
    ]  # {"type": "key", "keyId": …} | {"type": "keyless", "subject": …, "issuer": …}
    predicate_type: str | None = None
    statement: dict[str, Any] | None = None  # decoded in-toto Statement (trust only if verified)
    annotations: dict[str, Any] = field(default_factory=dict)
    tlog: dict[str, Any] | None = None  # {"logIndex": …, "integratedTime": …}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "storage": self.storage,
            "location": self.location,
            "verified": self.verified,
            "reasons": list(self.reasons),
            "authority": self.authority,
            "signer": dict(self.signer),
            "predicateType": self.predicate_type,
            "statement": self.statement,
            "annotations": dict(self.annotations),
            "tlog": self.tlog,
        }


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
