"""The one signing abstraction every command uses, and the key-based implementation.

A :class:`Signer` signs raw bytes (cosign's simple-signing payload of a legacy
signature) or a DSSE payload (in-toto statements: v3 image signatures and
attestations) and returns :class:`SignatureMaterial`: the signature plus what a
verifier needs to check it — a public key (key-based) or a certificate chain
and a transparency-log entry (keyless).  :class:`KeySigner` signs with a cosign
key file; the keyless Sigstore signer lives in :mod:`attest.signing.keyless`.
Storage code turns the material into a Sigstore bundle or cosign annotations.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from attest.errors import SignatureFormatError
from attest.signing import keys
from attest.signing.dsse import Envelope, EnvelopeSignature, pae


@dataclass(frozen=True)
class TlogEntry:
    """A Rekor (v1) transparency-log entry as it travels with a signature."""

    log_index: int
    log_id: str  # hex SHA-256 of the log's public key
    integrated_time: int  # Unix seconds
    kind: str  # "hashedrekord" | "dsse" | "intoto"
    version: str  # "0.0.1"
    canonicalized_body: bytes
    signed_entry_timestamp: bytes | None = None  # the SET (inclusion promise)
    inclusion_proof: dict[str, Any] | None = None  # bundle JSON form, as the log gave it

    def to_bundle_dict(self) -> dict[str, Any]:
        """The ``verificationMaterial.tlogEntries[]`` item of a Sigstore bundle."""
        out: dict[str, Any] = {
            "logIndex": str(self.log_index),
            "logId": {"keyId": base64.b64encode(bytes.fromhex(self.log_id)).decode()},
            "kindVersion": {"kind": self.kind, "version": self.version},
            "integratedTime": str(self.integrated_time),
            "canonicalizedBody": base64.b64encode(self.canonicalized_body).decode(),
        }
        if self.signed_entry_timestamp is not None:
            out["inclusionPromise"] = {
                "signedEntryTimestamp": base64.b64encode(self.signed_entry_timestamp).decode()
            }
        if self.inclusion_proof is not None:
            out["inclusionProof"] = self.inclusion_proof
        return out

    @classmethod
    def from_bundle_dict(cls, data: Any) -> TlogEntry:
        """Parse a bundle's ``tlogEntries[]`` item."""
        try:
            promise = data.get("inclusionPromise") or {}
            set_b64 = promise.get("signedEntryTimestamp")
            return cls(
                log_index=int(data["logIndex"]),
                log_id=base64.b64decode(data["logId"]["keyId"]).hex(),
                integrated_time=int(data.get("integratedTime") or 0),
                kind=str(data["kindVersion"]["kind"]),
                version=str(data["kindVersion"]["version"]),
                canonicalized_body=base64.b64decode(data["canonicalizedBody"]),
                signed_entry_timestamp=base64.b64decode(set_b64) if set_b64 else None,
                inclusion_proof=data.get("inclusionProof"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise SignatureFormatError(f"transparency-log entry is malformed ({err})") from None

    def to_cosign_bundle(self) -> dict[str, Any]:
        """cosign's ``dev.sigstore.cosign/bundle`` annotation value (SET + payload)."""
        if self.signed_entry_timestamp is None:
            raise SignatureFormatError("transparency-log entry has no signed entry timestamp")
        return {
            "SignedEntryTimestamp": base64.b64encode(self.signed_entry_timestamp).decode(),
            "Payload": {
                "body": base64.b64encode(self.canonicalized_body).decode(),
                "integratedTime": self.integrated_time,
                "logIndex": self.log_index,
                "logID": self.log_id,
            },
        }

    def summary(self) -> dict[str, Any]:
        return {"logIndex": self.log_index, "integratedTime": self.integrated_time}


@dataclass(frozen=True)
class SignatureMaterial:
    """A signature and everything a verifier needs to check it.

    ``signature`` covers the signed bytes (``sign``) or the DSSE PAE
    (``sign_dsse``, then ``envelope`` is set too).  Key-based material has
    ``public_key_pem``/``key_id``; keyless material has ``certificate_pem``,
    ``chain_pem`` (intermediates then root) and a ``tlog_entry``.  A signer that
    already produced a complete Sigstore bundle (sigstore-python does) puts it in
    ``bundle`` so it is stored as-is.
    """

    signature: bytes
    public_key_pem: bytes | None = None
    key_id: str | None = None
    certificate_pem: bytes | None = None
    chain_pem: tuple[bytes, ...] = ()
    tlog_entry: TlogEntry | None = None
    envelope: Envelope | None = None
    bundle: dict[str, Any] | None = None
    rfc3161_timestamps: tuple[bytes, ...] = ()
    signer: dict[str, Any] = field(default_factory=dict)

    @property
    def is_keyless(self) -> bool:
        return self.certificate_pem is not None


@runtime_checkable
class Signer(Protocol):
    """Anything that can sign for ``attest sign``/``attest attest``/``attest pipeline``."""

    @property
    def description(self) -> str:
        """A short human description (``key cosign.key``, ``keyless alice@example.com``)."""
        ...

    def sign(self, data: bytes) -> SignatureMaterial:
        """Sign ``data`` itself (a message signature, e.g. a simple-signing payload)."""
        ...

    def sign_dsse(self, payload_type: str, payload: bytes) -> SignatureMaterial:
        """Sign a DSSE envelope over ``payload``; the material's ``envelope`` is set."""
        ...


class KeySigner:
    """Signs with a private key (normally decrypted from a cosign key file)."""

    def __init__(self, private_key: keys.PrivateKey, *, source: str = "key") -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.public_key_pem = keys.public_key_pem(self.public_key)
        self.key_id = keys.key_id(self.public_key)
        self.source = source

    @classmethod
    def from_file(cls, path: str, password: bytes | None = None) -> KeySigner:
        """Load a cosign key file (password from the argument, the environment or a prompt)."""
        return cls(keys.load_private_key_file(path, password), source=path)

    @property
    def description(self) -> str:
        return f"key {self.source}"

    def _material(self, signature: bytes) -> SignatureMaterial:
        return SignatureMaterial(
            signature=signature,
            public_key_pem=self.public_key_pem,
            key_id=self.key_id,
            signer={"type": "key", "keyId": self.key_id},
        )

    def sign(self, data: bytes) -> SignatureMaterial:
        return self._material(keys.sign_bytes(self._key, data))

    def sign_dsse(self, payload_type: str, payload: bytes) -> SignatureMaterial:
        signature = keys.sign_bytes(self._key, pae(payload_type, payload))
        envelope = Envelope(payload_type, payload, (EnvelopeSignature(signature, ""),))
        return replace(self._material(signature), envelope=envelope)
