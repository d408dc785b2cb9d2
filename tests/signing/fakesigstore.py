"""A Sigstore instance in-process for tests: our own Fulcio CA, Rekor log key and CT log key.

It issues Fulcio-shaped leaf certificates (identity in the SAN, OIDC issuer in
extension 1.3.6.1.4.1.57264.1.8, code-signing EKU, an embedded SCT signed by
our CT key), logs signatures as Rekor v1 entries (body, SET, and a one-leaf
inclusion proof with a signed checkpoint) and writes a ``trusted_root.json``
naming all three keys.  With it the keyless checks can be driven where real
services cannot go: a certificate expired at the log time, a SAN crafted to
test regex anchoring, a log the verifier does not trust.  Everything is real
cryptography (``cryptography``); only the services are replaced.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from attest.signing.bundle import SignatureMaterial
from attest.signing.dsse import pae
from attest.signing.tlog import InclusionProof, TlogEntry

ISSUER_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
ORIGIN = "rekor.test - 1"
NOTE_SIGNER = "rekor.test"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _der_utf8(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def _der_octets(data: bytes) -> bytes:
    length = len(data)
    if length < 128:
        return bytes([0x04, length]) + data
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x04, 0x80 | len(encoded)]) + encoded + data


@dataclass
class Leaf:
    """A leaf certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


class FakeSigstore:
    """CA + Rekor + CT keys, a trusted root for them, and helpers to sign keylessly."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.log_id = hashlib.sha256(_spki(self.rekor_key.public_key())).digest()
        self.ct_log_id = hashlib.sha256(_spki(self.ct_key.public_key())).digest()
        start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"{name}.test"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-root"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=365 * 30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.index = 0
        self.log_valid_from = "2020-01-01T00:00:00Z"  # of the Rekor key, in the trusted root

    # -- trust material --------------------------------------------------------------

    def _log(
        self, key: ec.EllipticCurvePrivateKey, url: str, start: str = "2020-01-01T00:00:00Z"
    ) -> dict[str, object]:
        der = _spki(key.public_key())
        return {
            "baseUrl": url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": _b64(der),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": start},
            },
            "logId": {"keyId": _b64(hashlib.sha256(der).digest())},
        }

    def trusted_root(self) -> dict[str, object]:
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [
                self._log(self.rekor_key, f"https://rekor.{self.name}.test", self.log_valid_from)
            ],
            "certificateAuthorities": [
                {
                    "subject": {"organization": f"{self.name}.test", "commonName": "root"},
                    "uri": f"https://fulcio.{self.name}.test",
                    "certChain": {
                        "certificates": [
                            {
                                "rawBytes": _b64(
                                    self.ca_cert.public_bytes(serialization.Encoding.DER)
                                )
                            }
                        ]
                    },
                    "validFor": {"start": "2020-01-01T00:00:00Z"},
                }
            ],
            "ctlogs": [self._log(self.ct_key, f"https://ct.{self.name}.test")],
            "timestampAuthorities": [],
        }

    def write_trusted_root(self, path: Path) -> str:
        path.write_text(json.dumps(self.trusted_root()))
        return str(path)

    # -- certificates -------------------------------------------------------------------

    def _leaf_builder(
        self,
        key: ec.EllipticCurvePrivateKey,
        identity: str,
        issuer: str,
        not_before: dt.datetime,
        serial: int,
        eku: x509.ObjectIdentifier = ExtendedKeyUsageOID.CODE_SIGNING,
    ) -> x509.CertificateBuilder:
        san: x509.GeneralName = (
            x509.UniformResourceIdentifier(identity)
            if "://" in identity
            else x509.RFC822Name(identity)
        )
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_before + dt.timedelta(minutes=10))
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(
                x509.UnrecognizedExtension(ISSUER_OID, _der_utf8(issuer)), critical=False
            )
        )

    def _sct(self, tbs_precert: bytes, when: dt.datetime) -> bytes:
        millis = int(when.timestamp() * 1000)
        issuer_key_hash = hashlib.sha256(_spki(self.ca_key.public_key())).digest()
        signed = (
            struct.pack(">BBQH", 0, 0, millis, 1)
            + issuer_key_hash
            + len(tbs_precert).to_bytes(3, "big")
            + tbs_precert
            + (0).to_bytes(2, "big")
        )
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            bytes([0])
            + self.ct_log_id
            + struct.pack(">Q", millis)
            + (0).to_bytes(2, "big")
            + bytes([4, 3])
            + len(signature).to_bytes(2, "big")
            + signature
        )
        listed = len(sct).to_bytes(2, "big") + sct
        return _der_octets(len(listed).to_bytes(2, "big") + listed)

    def issue(
        self,
        identity: str,
        issuer: str = "https://issuer.test",
        *,
        not_before: dt.datetime | None = None,
        eku: x509.ObjectIdentifier = ExtendedKeyUsageOID.CODE_SIGNING,
    ) -> Leaf:
        """A Fulcio-shaped leaf for ``identity``/``issuer``, valid 10 minutes from ``not_before``
        (extended key usage ``eku``: code signing, as Fulcio issues them)."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = (not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).replace(
            microsecond=0
        )
        serial = x509.random_serial_number()
        precert = self._leaf_builder(key, identity, issuer, start, serial, eku).sign(
            self.ca_key, hashes.SHA256()
        )
        sct = self._sct(precert.tbs_certificate_bytes, start)
        cert = (
            self._leaf_builder(key, identity, issuer, start, serial, eku)
            .add_extension(x509.UnrecognizedExtension(SCT_OID, sct), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        assert cert.tbs_precertificate_bytes == precert.tbs_certificate_bytes
        return Leaf(cert, key)

    # -- the log ---------------------------------------------------------------------------

    def log(self, body: dict[str, object], integrated: dt.datetime) -> TlogEntry:
        """Log ``body`` at ``integrated``: a SET and a one-leaf inclusion proof with checkpoint."""
        raw = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        index = self.index
        self.index += 1
        entry = TlogEntry(
            log_index=index,
            log_id=self.log_id,
            kind=str(body["kind"]),
            version=str(body["apiVersion"]),
            integrated_time=int(integrated.timestamp()),
            body=raw,
        )
        promise = rfc8785.dumps(
            {
                "body": _b64(raw),
                "integratedTime": entry.integrated_time,
                "logID": self.log_id.hex(),
                "logIndex": index,
            }
        )
        root_hash = hashlib.sha256(b"\x00" + raw).digest()
        note = f"{ORIGIN}\n1\n{_b64(root_hash)}\n"
        note_sig = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = f"{note}\n\u2014 {NOTE_SIGNER} {_b64(self.log_id[:4] + note_sig)}\n"
        return TlogEntry(
            log_index=index,
            log_id=self.log_id,
            kind=entry.kind,
            version=entry.version,
            integrated_time=entry.integrated_time,
            body=raw,
            signed_entry_timestamp=self.rekor_key.sign(promise, ec.ECDSA(hashes.SHA256())),
            inclusion_proof=InclusionProof(0, root_hash, 1, (), checkpoint),
        )


class FakeKeylessSigner:
    """A Signer that signs as ``identity`` through a :class:`FakeSigstore` (certificate + log)."""

    def __init__(
        self,
        sigstore: FakeSigstore,
        identity: str,
        issuer: str = "https://issuer.test",
        *,
        not_before: dt.datetime | None = None,
        log_time: dt.datetime | None = None,
        with_log: bool = True,
        eku: x509.ObjectIdentifier = ExtendedKeyUsageOID.CODE_SIGNING,
    ) -> None:
        self.sigstore = sigstore
        self.leaf = sigstore.issue(identity, issuer, not_before=not_before, eku=eku)
        self.log_time = log_time
        self.with_log = with_log
        self.description = f"fake keyless {identity}"

    def _when(self) -> dt.datetime:
        return self.log_time or self.leaf.certificate.not_valid_before_utc + dt.timedelta(minutes=1)

    def _material(
        self, signature: bytes, payload: bytes, payload_type: str | None, body: dict[str, object]
    ) -> SignatureMaterial:
        entries = (self.sigstore.log(body, self._when()),) if self.with_log else ()
        return SignatureMaterial(
            signature=signature,
            payload=payload,
            payload_type=payload_type,
            certificate=self.leaf.der,
            tlog_entries=entries,
            chain=(self.sigstore.ca_cert.public_bytes(serialization.Encoding.DER),),
        )

    def sign(self, data: bytes) -> SignatureMaterial:
        signature = self.leaf.key.sign(data, ec.ECDSA(hashes.SHA256()))
        body = {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {
                    "hash": {"algorithm": "sha256", "value": hashlib.sha256(data).hexdigest()}
                },
                "signature": {
                    "content": _b64(signature),
                    "publicKey": {"content": _b64(self.leaf.pem)},
                },
            },
        }
        return self._material(signature, data, None, body)

    def sign_dsse(self, payload_type: str, payload: bytes) -> SignatureMaterial:
        signature = self.leaf.key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
        body = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(payload).hexdigest(),
                },
                "envelopeHash": {"algorithm": "sha256", "value": "0" * 64},
                "signatures": [{"signature": _b64(signature), "verifier": _b64(self.leaf.pem)}],
            },
        }
        return self._material(signature, payload, payload_type, body)
