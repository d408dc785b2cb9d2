"""Decision documents in the shape of CONTRACTS §3 (``admission.verdict.Decision.to_dict()``),
and a key pair to sign records with."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

_counter = itertools.count(1)


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def signature_check(verified: bool, authority: str = "ci-key") -> dict[str, Any]:
    return {
        "kind": "signature",
        "storage": "bundle",
        "location": "127.0.0.1:5000/shop/app@" + digest_of("sig"),
        "verified": verified,
        "reasons": []
        if verified
        else [f"signature does not verify with key of authority {authority}"],
        "authority": authority if verified else None,
        "signer": {"type": "key", "keyId": "abc123"},
        "predicate_type": None,
        "statement": None,
        "annotations": {},
        "tlog": None,
    }


def provenance_check(verified: bool) -> dict[str, Any]:
    return {
        "kind": "attestation",
        "storage": "legacy",
        "location": "127.0.0.1:5000/shop/app:sha256-abc.att",
        "verified": verified,
        "reasons": [] if verified else ["builder id https://evil.example/builder is not allowed"],
        "authority": "ci-key" if verified else None,
        "signer": {
            "type": "keyless",
            "subject": "https://github.com/org/app/.github/workflows/ci.yml@refs/heads/main",
            "issuer": "https://token.actions.githubusercontent.com",
        },
        "predicate_type": "https://slsa.dev/provenance/v1",
        "statement": {"_type": "https://in-toto.io/Statement/v1"},
        "annotations": {},
        "tlog": {"logIndex": 42, "integratedTime": 1715680000},
    }


def image(
    reference: str, *, verified: bool = True, policy: str | None = "prod-images"
) -> dict[str, Any]:
    digest = digest_of(reference)
    return {
        "reference": reference,
        "digest": digest,
        "policy": policy,
        "verification": {
            "reference": reference,
            "digest": digest,
            "signatures": [signature_check(verified)],
            "attestations": [provenance_check(verified)],
            "satisfied_authorities": ["ci-key"] if verified else [],
            "verified": verified,
            "errors": [],
        },
    }


def decision(
    *,
    result: str = "allowed",
    namespace: str = "shop",
    name: str | None = None,
    images: list[dict[str, Any]] | None = None,
    time: dt.datetime | None = None,
    messages: list[str] | None = None,
    warnings: list[str] | None = None,
    kind: str = "Deployment",
) -> dict[str, Any]:
    number = next(_counter)
    images = images if images is not None else [image("127.0.0.1:5000/shop/app:1.0")]
    if messages is None:
        messages = (
            [f"image {images[0]['reference']} is not signed by a trusted authority"]
            if result == "denied"
            else []
        )
    return {
        "uid": f"00000000-0000-4000-8000-{number:012d}",
        "time": (time or dt.datetime.now(dt.UTC)).isoformat().replace("+00:00", "Z"),
        "operation": "CREATE",
        "kind": kind,
        "namespace": namespace,
        "name": name or f"app-{number}",
        "user": "system:serviceaccount:argocd:argocd-application-controller",
        "images": images,
        "input": {
            "request": {"kind": kind, "namespace": namespace, "operation": "CREATE"},
            "images": [{"reference": i["reference"], "digest": i["digest"]} for i in images],
        },
        "result": result,
        "messages": messages,
        "warnings": warnings or [],
        "latency": {"resolve": 1.25, "verify": 12.5, "evaluate": 0.75},
        "bundle_hash": "sha256:" + "b" * 64,
        "trust_fingerprint": "sha256:" + "f" * 64,
        "engine": "regopy",
    }


@dataclass
class FakeDecision:
    """An object with ``to_dict()``, like ``admission.verdict.Decision``."""

    data: dict[str, Any] = field(default_factory=decision)

    def to_dict(self) -> dict[str, Any]:
        return self.data


def write_key_pair(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """An ECDSA P-256 key pair as unencrypted PKCS#8 / PKIX PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = directory / f"{name}.key"
    public = directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public
