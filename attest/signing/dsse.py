"""DSSE (Dead Simple Signing Envelope): PAE, envelopes, signing and verifying.

The signature covers the Pre-Authentication Encoding
``DSSEv1 <len(type)> <type> <len(payload)> <payload>`` (lengths in ASCII
decimal, byte counts), never the JSON envelope, so the payload type cannot be
swapped without breaking the signature.  The spec allows standard and URL-safe
base64 for ``payload`` and ``sig``; both are accepted here, with or without
padding.  We write standard base64 with padding, as cosign and sigstore do.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from attest.errors import SignatureFormatError

_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}\Z")


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 Pre-Authentication Encoding of ``payload_type`` and ``payload``."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def decode_base64(text: Any, *, what: str) -> bytes:
    """Decode standard or URL-safe base64 (padding optional), as DSSE allows."""
    if not isinstance(text, str) or not _BASE64.match(text):
        raise SignatureFormatError(f"{what} is not base64")
    body = text.rstrip("=")
    if len(body) % 4 == 1:
        raise SignatureFormatError(f"{what} is not base64 (bad length)")
    padded = body + "=" * (-len(body) % 4)
    try:
        if "-" in body or "_" in body:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureFormatError(f"{what} is not base64") from None


@dataclass(frozen=True)
class EnvelopeSignature:
    """One signature of an envelope: raw signature bytes and an optional key id."""

    sig: bytes
    keyid: str = ""


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope with decoded payload and signature bytes."""

    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def to_dict(self) -> dict[str, Any]:
        signatures = []
        for signature in self.signatures:
            entry = {"sig": base64.b64encode(signature.sig).decode()}
            if signature.keyid:
                entry["keyid"] = signature.keyid
            signatures.append(entry)
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode(),
            "signatures": signatures,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: Any, *, what: str = "DSSE envelope") -> Envelope:
        """Parse an envelope; rejects missing fields, zero or duplicated signatures."""
        if not isinstance(data, dict):
            raise SignatureFormatError(f"{what} is not a JSON object")
        payload_type = data.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type:
            raise SignatureFormatError(f"{what} has no payloadType")
        payload = decode_base64(data.get("payload"), what=f"{what} payload")
        raw_signatures = data.get("signatures")
        if not isinstance(raw_signatures, list) or not raw_signatures:
            raise SignatureFormatError(f"{what} has no signatures")
        signatures: list[EnvelopeSignature] = []
        for index, entry in enumerate(raw_signatures):
            if not isinstance(entry, dict):
                raise SignatureFormatError(f"{what} signatures[{index}] is not an object")
            keyid = entry.get("keyid") or ""
            if not isinstance(keyid, str):
                raise SignatureFormatError(f"{what} signatures[{index}].keyid is not a string")
            sig = decode_base64(entry.get("sig"), what=f"{what} signatures[{index}].sig")
            if not sig:
                raise SignatureFormatError(f"{what} signatures[{index}].sig is empty")
            signatures.append(EnvelopeSignature(sig, keyid))
        if len({s.sig for s in signatures}) != len(signatures):
            raise SignatureFormatError(f"{what} carries the same signature more than once")
        return cls(payload_type, payload, tuple(signatures))

    @classmethod
    def parse(cls, raw: bytes, *, what: str = "DSSE envelope") -> Envelope:
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SignatureFormatError(f"{what} is not JSON ({err})") from None
        return cls.from_dict(data, what=what)


def verify_envelope(envelope: Envelope, verify: Callable[[bytes, bytes], bool]) -> bool:
    """Whether any signature verifies over the envelope's PAE (``verify(sig, data)``)."""
    message = envelope.pae()
    return any(verify(signature.sig, message) for signature in envelope.signatures)
