"""What checking one stored signature gave, as plain data: who signed, and every reason it failed.

:class:`SignerIdentity` is who a signature says made it — a key (by its cosign key id)
or a keyless identity (the Fulcio certificate's subject and issuer) — with the one
way to print it (:meth:`SignerIdentity.describe`) and the JSON that reports and
decision records keep (:meth:`SignerIdentity.to_dict`, read back by
:meth:`SignerIdentity.from_dict`).  :class:`CheckResult` is one signature or
attestation found for an image; :func:`check_result` folds the problems common to
all authorities and each authority's reasons into it, the same way for every
storage format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

CheckKind = Literal["signature", "attestation"]
"""An image signature (cosign's sign predicate, or a simple-signing payload) or an attestation."""
Storage = Literal["bundle", "legacy"]
"""Where signatures are stored: Sigstore bundle referrers (cosign v3), cosign's ``.sig``/``.att`` tags."""
SignerKind = Literal["key", "keyless", "unknown"]


@dataclass(frozen=True)
class SignerIdentity:
    """Who a signature says made it: a key, a keyless certificate identity, or unknown.

    A key's id is the one the signature material names (a bundle's key hint), or the
    id of the trusted key it verified with; ``None`` when neither is known.
    """

    kind: SignerKind
    key_id: str | None = None
    subject: str | None = None
    issuer: str | None = None

    @classmethod
    def key(cls, key_id: str | None) -> SignerIdentity:
        return cls("key", key_id=key_id)

    @classmethod
    def keyless(cls, subject: str, issuer: str | None) -> SignerIdentity:
        return cls("keyless", subject=subject, issuer=issuer)

    @classmethod
    def unknown(cls) -> SignerIdentity:
        return cls("unknown")

    def describe(self) -> str:
        """One short line for people: ``keyless SUBJECT (ISSUER)``, ``key KEYID``."""
        if self.kind == "keyless":
            return f"keyless {self.subject or '?'} ({self.issuer or '?'})"
        if self.kind == "key":
            return f"key {self.key_id or '?'}"
        return "unknown signer"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form reports and decision records keep."""
        if self.kind == "keyless":
            return {"type": "keyless", "subject": self.subject, "issuer": self.issuer}
        if self.kind == "key":
            return {"type": "key", "keyId": self.key_id}
        return {"type": "unknown"}

    @classmethod
    def from_dict(cls, data: Any) -> SignerIdentity:
        """Read :meth:`to_dict`'s JSON back (older records may say ``key_id``); anything
        unreadable is an unknown signer."""
        if not isinstance(data, Mapping):
            return cls.unknown()
        if data.get("type") == "keyless":
            subject, issuer = data.get("subject"), data.get("issuer")
            return cls(
                "keyless",
                subject=subject if isinstance(subject, str) else None,
                issuer=issuer if isinstance(issuer, str) else None,
            )
        if data.get("type") == "key":
            key_id = data.get("keyId", data.get("key_id"))
            return cls.key(key_id if isinstance(key_id, str) else None)
        return cls.unknown()


@dataclass(frozen=True)
class CheckResult:
    """One signature or attestation found for the image, and what checking it gave."""

    kind: CheckKind
    storage: Storage
    location: str  # e.g. "host/repo@sha256:<artifact manifest digest>"
    verified: bool
    reasons: tuple[str, ...]  # every reason it failed (empty when verified)
    authority: str | None  # name of the authority that verified it
    signer: SignerIdentity
    predicate_type: str | None = None
    statement: dict[str, Any] | None = None  # decoded in-toto Statement (trust only if verified)
    annotations: dict[str, Any] = field(default_factory=dict)  # signed ones only (-a values)
    tlog: dict[str, Any] | None = None  # {"logIndex": …, "integratedTime": …}
    authorities: tuple[str, ...] = ()  # every authority that verified it (``authority``: the first)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "storage": self.storage,
            "location": self.location,
            "verified": self.verified,
            "reasons": list(self.reasons),
            "authority": self.authority,
            "signer": self.signer.to_dict(),
            "predicateType": self.predicate_type,
            "statement": self.statement,
            "annotations": dict(self.annotations),
            "tlog": self.tlog,
        }


def check_result(
    kind: CheckKind,
    storage: Storage,
    location: str,
    common: list[str],
    per_authority: dict[str, list[str]],
    *,
    signer: SignerIdentity | None = None,
    annotations: dict[str, Any] | None = None,
    statement: dict[str, Any] | None = None,
    predicate_type: str | None = None,
    tlog: dict[str, Any] | None = None,
) -> CheckResult:
    """The result of one entry: verified when nothing common is wrong and an authority accepts
    it (the first such names it, ``authorities`` all of them); otherwise every common problem and authority's reason."""
    satisfied = [name for name, reasons in per_authority.items() if not reasons]
    verified = not common and bool(satisfied)
    if verified:
        reasons: tuple[str, ...] = ()
    else:
        failures = [
            f"{name}: {reason}"
            for name, authority_reasons in per_authority.items()
            for reason in authority_reasons
        ]
        reasons = tuple(common + failures) or ("no authority could check it",)
    return CheckResult(
        kind=kind,
        storage=storage,
        location=location,
        verified=verified,
        reasons=reasons,
        authority=satisfied[0] if verified else None,
        authorities=tuple(satisfied) if verified else (),
        signer=signer or SignerIdentity.unknown(),
        predicate_type=predicate_type,
        statement=statement,
        annotations=dict(annotations or {}),
        tlog=tlog,
    )
