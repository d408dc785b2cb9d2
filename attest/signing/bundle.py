"""Sigstore bundles (v0.1–v0.3): build them from signatures and parse them.

A bundle carries one signature — a ``messageSignature`` over an artifact's
SHA-256, or a ``dsseEnvelope`` — with what a verifier needs: the signer's
certificate (keyless) or a hint naming its key (key-based), transparency-log
entries and RFC 3161 timestamps.  ``make_bundle`` writes v0.3
(``application/vnd.dev.sigstore.bundle.v0.3+json``), the format cosign v3
stores as an OCI referrer; ``parse_bundle`` schema-checks and decodes any
version.  Verifying one is :mod:`attest.signing.bundle_verify`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError
from sigstore.models import Bundle as SigstoreBundle
from sigstore_models.bundle import v1 as bundle_v1
from sigstore_models.common.v1 import HashAlgorithm

from attest.errors import SignatureFormatError
from attest.oci.mediatypes import SIGSTORE_BUNDLE_V03
from attest.signing.dsse import Envelope, EnvelopeSignature
from attest.signing.tlog import TlogEntry

BUNDLE_V01 = "application/vnd.dev.sigstore.bundle+json;version=0.1"
BUNDLE_V02 = "application/vnd.dev.sigstore.bundle+json;version=0.2"
BUNDLE_V03_ALT = "application/vnd.dev.sigstore.bundle+json;version=0.3"
MAX_BUNDLE_BYTES = 16 * 1024 * 1024


# -- building -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureMaterial:
    """What a signer produced, ready to become a bundle.

    ``payload_type`` set means a DSSE envelope over ``payload`` (the signature covers
    the PAE); None means a message signature over SHA-256(``payload``).
    ``certificate`` (DER) makes a keyless bundle; otherwise ``public_key_hint`` names
    the key (cosign: base64 SHA-256 of the PKIX DER).  ``chain`` (DER, issuer first)
    is the Fulcio CA chain for cosign's legacy chain annotation; v0.3 bundles omit it.
    """

    signature: bytes
    payload: bytes
    payload_type: str | None = None
    certificate: bytes | None = None
    public_key_hint: str | None = None
    tlog_entries: tuple[TlogEntry, ...] = ()
    timestamps: tuple[bytes, ...] = ()  # DER RFC 3161 TimeStampResponses
    chain: tuple[bytes, ...] = ()

    @property
    def is_dsse(self) -> bool:
        return self.payload_type is not None

    def envelope(self) -> Envelope:
        """The DSSE envelope a ``sign_dsse`` material stands for."""
        assert self.payload_type is not None
        return Envelope(self.payload_type, self.payload, (EnvelopeSignature(self.signature),))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bundle_dict(material: SignatureMaterial) -> dict[str, Any]:
    """The v0.3 bundle for ``material`` as a JSON-ready dict."""
    verification: dict[str, Any] = {}
    if material.certificate is not None:
        verification["certificate"] = {"rawBytes": _b64(material.certificate)}
    else:
        verification["publicKey"] = {"hint": material.public_key_hint or ""}
    verification["tlogEntries"] = [entry.to_bundle_dict() for entry in material.tlog_entries]
    verification["timestampVerificationData"] = {
        "rfc3161Timestamps": [{"signedTimestamp": _b64(ts)} for ts in material.timestamps]
    }
    out: dict[str, Any] = {"mediaType": SIGSTORE_BUNDLE_V03, "verificationMaterial": verification}
    if material.is_dsse:
        out["dsseEnvelope"] = {
            "payload": _b64(material.payload),
            "payloadType": material.payload_type,
            "signatures": [{"sig": _b64(material.signature), "keyid": ""}],
        }
    else:
        out["messageSignature"] = {
            "messageDigest": {
                "algorithm": "SHA2_256",
                "digest": _b64(hashlib.sha256(material.payload).digest()),
            },
            "signature": _b64(material.signature),
        }
    return out


def make_bundle(material: SignatureMaterial) -> bytes:
    """Serialize ``material`` as a Sigstore bundle v0.3 (compact JSON bytes)."""
    return json.dumps(bundle_dict(material), separators=(",", ":")).encode()


def material_from_sigstore(bundle: SigstoreBundle, payload: bytes) -> SignatureMaterial:
    """Turn a bundle sigstore-python signed into our material (``payload`` = what was signed)."""
    parsed = parse_bundle(bundle.to_json())
    envelope = parsed.envelope
    return SignatureMaterial(
        signature=parsed.signature,
        payload=envelope.payload if envelope else payload,
        payload_type=envelope.payload_type if envelope else None,
        certificate=parsed.certificate.public_bytes(serialization.Encoding.DER)
        if parsed.certificate
        else None,
        tlog_entries=parsed.tlog_entries,
        timestamps=parsed.timestamps,
    )


# -- parsing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageSignature:
    signature: bytes
    digest: bytes | None  # SHA-256 the bundle claims (an unauthenticated hint)


@dataclass(frozen=True)
class ParsedBundle:
    """A schema-checked bundle, decoded."""

    media_type: str
    raw: bytes = field(repr=False)
    certificate: x509.Certificate | None
    chain: tuple[x509.Certificate, ...]
    public_key_hint: str | None
    message: MessageSignature | None
    envelope: Envelope | None
    tlog_entries: tuple[TlogEntry, ...]
    timestamps: tuple[bytes, ...]

    @property
    def keyless(self) -> bool:
        return self.certificate is not None

    @property
    def signature(self) -> bytes:
        """The signature bytes: the DSSE envelope's or the message signature's."""
        if self.envelope is not None:
            return self.envelope.signatures[0].sig
        assert self.message is not None
        return self.message.signature

    @property
    def version(self) -> str:
        return (
            "0.1"
            if self.media_type == BUNDLE_V01
            else "0.2"
            if self.media_type == BUNDLE_V02
            else "0.3"
        )


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "bundle"
    return f"{where}: {first.get('msg', 'invalid')}"


def _with_proto3_defaults(data: bytes) -> bytes:
    """``data`` with the proto3 defaults that protobuf's JSON encoding leaves out filled in.

    Go's protojson (cosign v3, sigstore-go) omits zero values: a log index of 0, an
    inclusion proof without sibling hashes (a tree of one), an empty ``tlogEntries``
    list.  They mean exactly 0 and ``[]``, but sigstore-models (and so sigstore-python)
    calls them missing; so they are written back before the schema check.  Anything
    that is not such a bundle is returned unchanged, for the schema check to reject.
    """
    try:
        document = json.loads(data)
        material = document["verificationMaterial"]
        entries = material.setdefault("tlogEntries", [])
        for entry in entries:
            entry.setdefault("logIndex", "0")
            proof = entry.get("inclusionProof")
            if isinstance(proof, dict):
                proof.setdefault("logIndex", "0")
                proof.setdefault("hashes", [])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return data
    return json.dumps(document, separators=(",", ":")).encode()


def parse_bundle(raw: bytes | str, *, what: str = "Sigstore bundle") -> ParsedBundle:
    """Schema-check and decode a bundle; raises ``SignatureFormatError`` (one line) if malformed."""
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > MAX_BUNDLE_BYTES:
        raise SignatureFormatError(f"{what} is larger than {MAX_BUNDLE_BYTES} bytes")
    data = _with_proto3_defaults(data)
    try:
        model = bundle_v1.Bundle.from_json(data)
    except ValidationError as err:
        if err.errors() and err.errors()[0].get("type") == "json_invalid":
            raise SignatureFormatError(f"{what} is not JSON") from None
        raise SignatureFormatError(f"{what} is malformed ({_first_error(err)})") from None
    except ValueError as err:
        raise SignatureFormatError(f"{what} is malformed ({err})") from None
    material = model.verification_material
    try:
        certificate = None
        chain: tuple[x509.Certificate, ...] = ()
        if material.certificate is not None:
            certificate = x509.load_der_x509_certificate(material.certificate.raw_bytes)
        elif material.x509_certificate_chain is not None:
            certs = [
                x509.load_der_x509_certificate(c.raw_bytes)
                for c in material.x509_certificate_chain.certificates
            ]
            if not certs:
                raise SignatureFormatError(f"{what} has an empty certificate chain")
            certificate, chain = certs[0], tuple(certs[1:])
    except ValueError as err:
        raise SignatureFormatError(f"{what} has an unreadable certificate ({err})") from None
    if (
        certificate is not None
        and model.media_type in (SIGSTORE_BUNDLE_V03, BUNDLE_V03_ALT)
        and chain
    ):
        raise SignatureFormatError(f"{what} v0.3 must carry a single certificate")
    message = None
    envelope = None
    if model.message_signature is not None:
        sig = model.message_signature
        if not sig.signature:
            raise SignatureFormatError(f"{what} has an empty signature")
        digest = None
        if sig.message_digest is not None:
            if sig.message_digest.algorithm != HashAlgorithm.SHA2_256:
                raise SignatureFormatError(f"{what} message digest is not SHA-256")
            digest = sig.message_digest.digest
        message = MessageSignature(sig.signature, digest)
    else:
        env = model.dsse_envelope
        assert env is not None
        signatures = tuple(EnvelopeSignature(s.sig, s.keyid or "") for s in env.signatures)
        if len(signatures) != 1 or not signatures[0].sig:
            raise SignatureFormatError(f"{what} DSSE envelope must carry exactly one signature")
        envelope = Envelope(env.payload_type, env.payload, signatures)
    tlog_dicts = json.loads(data)["verificationMaterial"].get("tlogEntries") or []
    tvd = material.timestamp_verification_data
    timestamps = tuple(t.signed_timestamp for t in (tvd.rfc3161_timestamps if tvd else []))
    return ParsedBundle(
        media_type=model.media_type,
        raw=data,
        certificate=certificate,
        chain=chain,
        public_key_hint=material.public_key.hint if material.public_key else None,
        message=message,
        envelope=envelope,
        tlog_entries=tuple(TlogEntry.from_bundle_dict(e) for e in tlog_dicts),
        timestamps=timestamps,
    )
