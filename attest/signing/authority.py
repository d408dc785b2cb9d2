"""Who is trusted to sign: key and keyless authorities, and the verification policy.

These are the trust types every verifier takes — ``attest verify``, the bundle
checks, the legacy ``.sig``/``.att`` checks, the admission webhook's image
policies — as plain, validated data.  A :class:`KeyAuthority` trusts one public key
and says what its transparency-log entry must be; a :class:`KeylessAuthority`
trusts a certificate identity (:class:`~attest.signing.fulcio.IdentityPolicy`)
under a trusted root.  A :class:`VerificationPolicy` asks for ``threshold``
distinct authorities and may require signed annotations; its fingerprint covers
all trust material, so it can key a cache of verification results.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from attest.errors import UsageError
from attest.signing.fulcio import IdentityPolicy
from attest.signing.keys import HASH_ALGORITHMS, HashName

TlogMode = Literal["required", "if-present", "ignored"]
"""What a key-based signature's transparency-log entry must be: there and verified (cosign's
default), verified only when present (policy-controller without ``ctlog``), or not looked at
(cosign's ``--insecure-ignore-tlog``)."""
TLOG_REQUIRED: TlogMode = "required"
TLOG_IF_PRESENT: TlogMode = "if-present"
TLOG_IGNORED: TlogMode = "ignored"


@dataclass(frozen=True)
class KeyAuthority:
    """Trust signatures made with one public key (PKIX PEM: ECDSA, RSA or Ed25519).

    ``tlog`` says what the signature's transparency-log entry must be. The default,
    like ``cosign verify --key``, requires one that verifies against ``trusted_root``
    (``None``: Sigstore public good) and records this very signature; ``"if-present"``
    checks an entry only when there is one; ``"ignored"`` (cosign's
    ``--insecure-ignore-tlog``) never looks at it.  ``hash_algorithm`` is the hash the
    key signs over (policy-controller's ``key.hashAlgorithm``; cosign: SHA-256).
    """

    name: str
    public_key_pem: bytes
    trusted_root: str | None = None
    tlog: TlogMode = TLOG_REQUIRED
    hash_algorithm: HashName = "sha256"

    def __post_init__(self) -> None:
        if self.tlog not in get_args(TlogMode):
            raise UsageError(f"authority {self.name}: unknown transparency-log mode {self.tlog!r}")
        if self.hash_algorithm not in HASH_ALGORITHMS:
            raise UsageError(f"authority {self.name}: unknown hash {self.hash_algorithm!r}")


@dataclass(frozen=True)
class KeylessAuthority:
    """Trust Sigstore keyless signatures whose certificate satisfies ``identity``.

    ``trusted_root`` is a ``trusted_root.json`` path; ``None`` means the Sigstore
    public-good root shipped with sigstore-python (no network needed).  The log entry
    or timestamp a keyless signature needs is the trusted root's rule, never relaxed.
    """

    name: str
    identity: IdentityPolicy
    trusted_root: str | None = None


Authority = KeyAuthority | KeylessAuthority


def _root_fingerprint(path: str | None) -> str:
    if not path:
        return "sigstore-public-good"
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return f"unreadable:{path}"


def _authority_trust(authority: Authority) -> dict[str, Any]:
    root = _root_fingerprint(authority.trusted_root)
    if isinstance(authority, KeyAuthority):
        return {
            "name": authority.name,
            "key": authority.public_key_pem.decode().strip(),
            "trustedRoot": root,
            "tlog": authority.tlog,
            **(
                {"hashAlgorithm": authority.hash_algorithm}
                if authority.hash_algorithm != "sha256"
                else {}
            ),
        }
    identity = authority.identity
    return {
        "name": authority.name,
        "issuer": identity.issuer,
        "issuerRegexp": identity.issuer_regexp,
        "subject": identity.subject,
        "subjectRegexp": identity.subject_regexp,
        "trustedRoot": root,
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
