"""Sigstore bundles (v0.1–v0.3): build them from signatures, parse them, verify them.

A bundle carries one signature — a ``messageSignature`` over an artifact's
SHA-256, or a ``dsseEnvelope`` — with what a verifier needs: the signer's
certificate (keyless) or a hint naming its key (key-based), transparency-log
entries and RFC 3161 timestamps.  ``make_bundle`` writes v0.3
(``application/vnd.dev.sigstore.bundle.v0.3+json``), the format cosign v3
stores as an OCI referrer.  ``verify_bundle`` checks a bundle against one
authority: keyless bundles with ``hashedrekord``/``dsse`` entries go through
sigstore-python's ``Verifier`` (chain, SCT, identity, inclusion proof, SET,
entry consistency); key-based bundles and ``intoto/0.0.2`` entries, which
sigstore-python refuses, are checked here with ``cryptography`` and
``attest.signing.tlog``/``fulcio``.  A failed check is a reason in the result,
never an exception; only unusable arguments raise.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from pydantic import ValidationError
from rfc3161_client import VerificationError as TimestampVerificationError
from rfc3161_client import VerifierBuilder, decode_timestamp_response
from sigstore.errors import Error as SigstoreError
from sigstore.hashes import Hashed
from sigstore.models import Bundle as SigstoreBundle
from sigstore.verify import Verifier
from sigstore_models.bundle import v1 as bundle_v1
from sigstore_models.common.v1 import HashAlgorithm

from attest.errors import SignatureFormatError, UsageError
from attest.oci.mediatypes import IN_TOTO, SIGSTORE_BUNDLE_V03
from attest.signing.dsse import pae
from attest.signing.fulcio import (
    CertificateError,
    IdentityPolicy,
    certificate_identity,
    verify_certificate,
)
from attest.signing.keys import key_id as key_hint
from attest.signing.keys import verify_bytes_signature
from attest.signing.tlog import TlogEntry, TlogError, check_dsse, check_hashedrekord, verify_entry
from attest.signing.trust import PublicKey, TrustRoot, load_trusted_root

_log = logging.getLogger(__name__)

BUNDLE_V01 = "application/vnd.dev.sigstore.bundle+json;version=0.1"
BUNDLE_V02 = "application/vnd.dev.sigstore.bundle+json;version=0.2"
BUNDLE_V03_ALT = "application/vnd.dev.sigstore.bundle+json;version=0.3"
_SIGSTORE_KINDS = {("hashedrekord", "0.0.1"), ("hashedrekord", "0.0.2"), ("dsse", "0.0.1")}
MAX_BUNDLE_BYTES = 16 * 1024 * 1024
MAX_TIMESTAMPS = 32

TlogMode = Literal["required", "if-present", "ignored"]
"""What a key-based signature's transparency-log entry must be: there and verified (cosign's
default), verified only when present (policy-controller without ``ctlog``), or not looked at
(cosign's ``--insecure-ignore-tlog``)."""
TLOG_REQUIRED: TlogMode = "required"
TLOG_IF_PRESENT: TlogMode = "if-present"
TLOG_IGNORED: TlogMode = "ignored"
NO_TLOG_ENTRY = "no transparency-log entry (pass --insecure-ignore-tlog to verify without one)"


def tlog_mode(*, require: bool, ignore: bool) -> TlogMode:
    """The mode two booleans (cosign's ``IgnoreTlog`` and our ``require_tlog``) stand for."""
    return TLOG_IGNORED if ignore else TLOG_REQUIRED if require else TLOG_IF_PRESENT


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
class DsseEnvelope:
    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def signature(self) -> bytes:
        return self.signatures[0]

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)


@dataclass(frozen=True)
class ParsedBundle:
    """A schema-checked bundle, decoded."""

    media_type: str
    raw: bytes = field(repr=False)
    certificate: x509.Certificate | None
    chain: tuple[x509.Certificate, ...]
    public_key_hint: str | None
    message: MessageSignature | None
    envelope: DsseEnvelope | None
    tlog_entries: tuple[TlogEntry, ...]
    timestamps: tuple[bytes, ...]

    @property
    def keyless(self) -> bool:
        return self.certificate is not None

    @property
    def signature(self) -> bytes:
        """The signature bytes: the DSSE envelope's or the message signature's."""
        if self.envelope is not None:
            return self.envelope.signature
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
        signatures = tuple(s.sig for s in env.signatures)
        if len(signatures) != 1 or not signatures[0]:
            raise SignatureFormatError(f"{what} DSSE envelope must carry exactly one signature")
        envelope = DsseEnvelope(env.payload_type, env.payload, signatures, env.to_dict())
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


# -- authorities and results --------------------------------------------------------------------


class KeyAuthorityLike(Protocol):
    """What ``attest.verify.KeyAuthority`` provides."""

    name: str
    public_key_pem: bytes


class KeylessAuthorityLike(Protocol):
    """What ``attest.verify.KeylessAuthority`` provides."""

    name: str
    issuer: str | None
    issuer_regexp: str | None
    subject: str | None
    subject_regexp: str | None
    trusted_root: str | None


@dataclass(frozen=True)
class BundleVerification:
    """The outcome of checking one bundle against one authority (plain data)."""

    verified: bool
    reasons: tuple[str, ...]
    content: str  # "message" | "dsse"
    signer: dict[str, Any]
    payload_type: str | None = None
    payload: bytes | None = None  # DSSE payload: trust it only when verified
    message_digest: str | None = None  # "sha256:<hex>" a message signature covers
    tlog: dict[str, Any] | None = None
    signed_times: tuple[str, ...] = ()  # verified signing times (ISO 8601)

    def statement(self) -> dict[str, Any] | None:
        """The DSSE payload decoded as an in-toto Statement, if it is one."""
        if self.payload_type != IN_TOTO or self.payload is None:
            return None
        try:
            data = json.loads(self.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None


class _Failed(Exception):
    """A verification step failed; the message is the reason."""


def _normalise_digest(digest: str | bytes | None) -> bytes | None:
    if digest is None or isinstance(digest, bytes):
        return digest
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise UsageError(f"artifact digest {digest!r} is not sha256:<64 hex digits>")
    try:
        return bytes.fromhex(hexdigest)
    except ValueError:
        raise UsageError(f"artifact digest {digest!r} is not sha256:<64 hex digits>") from None


def _content_name(parsed: ParsedBundle) -> str:
    return "dsse" if parsed.envelope is not None else "message"


def _tlog_summary(parsed: ParsedBundle) -> dict[str, Any] | None:
    return parsed.tlog_entries[0].summary() if parsed.tlog_entries else None


def _subject_digests(payload: bytes) -> list[str]:
    try:
        statement = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _Failed("DSSE payload is not JSON") from None
    subjects = statement.get("subject") if isinstance(statement, dict) else None
    if not isinstance(subjects, list):
        raise _Failed("DSSE payload is not an in-toto Statement (no subject list)")
    found = []
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if isinstance(digests, dict) and isinstance(digests.get("sha256"), str):
            found.append(digests["sha256"].lower())
    return found


def _check_artifact(
    parsed: ParsedBundle, artifact: bytes | None, digest: bytes | None, payload_type: str | None
) -> None:
    """The bundle is about the artifact: message digest, or a statement subject."""
    if parsed.envelope is not None:
        expected_type = payload_type or (IN_TOTO if digest is not None else None)
        if expected_type is not None and parsed.envelope.payload_type != expected_type:
            raise _Failed(
                f"DSSE payloadType is {parsed.envelope.payload_type!r}, expected {expected_type!r}"
            )
        if digest is not None and digest.hex() not in _subject_digests(parsed.envelope.payload):
            raise _Failed(f"no subject of the in-toto statement has digest sha256:{digest.hex()}")
        return
    assert parsed.message is not None
    if digest is None:
        raise _Failed("a message signature needs the artifact or its digest to verify")
    if parsed.message.digest is not None and parsed.message.digest != digest:
        raise _Failed("bundle message digest does not match the artifact")


# -- key-based signatures ----------------------------------------------------------------


def load_verification_key(pem: bytes) -> PublicKey:
    """A PKIX PEM public key usable for verification (ECDSA, RSA, Ed25519)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        raise UsageError(f"public key is not a PEM PKIX key ({err})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise UsageError("public key type is not supported (ECDSA, RSA or Ed25519 only)")
    return key


def verify_signature(
    key: PublicKey,
    signature: bytes,
    *,
    data: bytes | None = None,
    sha256: bytes | None = None,
    hash_algorithm: str = "sha256",
) -> bool:
    """Whether ``signature`` verifies over ``data`` (or a message with SHA-256 ``sha256``)."""
    if data is not None:
        return verify_bytes_signature(key, signature, data, hash_algorithm)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return False  # Ed25519 signs the message itself, not a digest
    assert sha256 is not None
    prehashed = utils.Prehashed(hashes.SHA256())
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, sha256, ec.ECDSA(prehashed))
        else:
            key.verify(signature, sha256, padding.PKCS1v15(), prehashed)
    except (InvalidSignature, ValueError):
        return False
    return True


def _verify_timestamps(parsed: ParsedBundle, root: TrustRoot, signature: bytes) -> list[datetime]:
    """Verified RFC 3161 times over the signature (a bad or untrusted one fails)."""
    if len(parsed.timestamps) > MAX_TIMESTAMPS:
        raise _Failed(f"bundle carries more than {MAX_TIMESTAMPS} timestamps")
    times = []
    for raw in parsed.timestamps:
        try:
            response = decode_timestamp_response(raw)
        except ValueError:
            raise _Failed("bundle carries an unreadable RFC 3161 timestamp") from None
        for authority in root.timestamp_authorities:
            certs = authority.certificates
            if len(certs) < 2:
                continue
            builder = VerifierBuilder().tsa_certificate(certs[0]).add_root_certificate(certs[-1])
            for intermediate in certs[1:-1]:
                builder = builder.add_intermediate_certificate(intermediate)
            try:
                builder.build().verify_message(response, signature)
            except TimestampVerificationError:
                continue
            gen_time = response.tst_info.gen_time
            if authority.valid.contains(gen_time):
                times.append(gen_time)
                break
        else:
            raise _Failed(
                "an RFC 3161 timestamp does not verify with a trusted timestamp authority"
            )
    return times


def _verify_tlog(
    parsed: ParsedBundle,
    root: TrustRoot,
    *,
    verifier: PublicKey | x509.Certificate,
    digest: bytes | None,
) -> list[datetime]:
    """Every tlog entry verifies and records this signature; returns the SET-vouched times."""
    times = []
    if len(parsed.tlog_entries) > 1:
        raise _Failed("bundle carries more than one transparency-log entry")
    for entry in parsed.tlog_entries:
        try:
            when = verify_entry(entry, root, require_proof=parsed.version != "0.1")
            if parsed.envelope is not None:
                check_dsse(
                    entry,
                    payload=parsed.envelope.payload,
                    signatures=parsed.envelope.signatures,
                    verifier=verifier,
                    pae=parsed.envelope.pae(),
                )
            else:
                assert parsed.message is not None
                if digest is None:
                    raise TlogError("the artifact digest is needed to check the log entry")
                check_hashedrekord(
                    entry, signature=parsed.message.signature, digest=digest, verifier=verifier
                )
        except TlogError as err:
            raise _Failed(f"transparency log: {err}") from None
        if when is not None:
            times.append(when)
    return times


def _verify_key_based(
    parsed: ParsedBundle,
    key: PublicKey,
    root: TrustRoot | None,
    artifact: bytes | None,
    digest: bytes | None,
    payload_type: str | None,
    tlog: TlogMode,
    hash_algorithm: str = "sha256",
) -> list[datetime]:
    if parsed.keyless:
        raise _Failed("bundle is signed keylessly (certificate), not with a key")
    _check_artifact(parsed, artifact, digest, payload_type)
    if parsed.envelope is not None:
        pae, signature = parsed.envelope.pae(), parsed.envelope.signature
        if not verify_signature(key, signature, data=pae, hash_algorithm=hash_algorithm):
            raise _Failed("DSSE signature does not verify with the key")
    else:
        assert parsed.message is not None and digest is not None
        if not verify_signature(key, parsed.message.signature, data=artifact, sha256=digest):
            raise _Failed("signature does not verify with the key")
    if tlog == TLOG_IGNORED:  # cosign's --insecure-ignore-tlog: the log is not looked at
        parsed = dataclasses.replace(parsed, tlog_entries=())
    if not parsed.tlog_entries and not parsed.timestamps:
        if tlog == TLOG_REQUIRED:
            raise _Failed(NO_TLOG_ENTRY)
        return []
    root = root or load_trusted_root(None)
    times = _verify_tlog(parsed, root, verifier=key, digest=digest)
    times += _verify_timestamps(parsed, root, parsed.signature)
    if tlog == TLOG_REQUIRED and not parsed.tlog_entries:
        raise _Failed(NO_TLOG_ENTRY)
    return times


# -- keyless signatures --------------------------------------------------------------------


@lru_cache(maxsize=16)
def _sigstore_verifier(root: TrustRoot) -> Verifier:
    return Verifier(trusted_root=root.sigstore)


def _is_root_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca and cert.issuer == cert.subject


def _uses_sigstore(parsed: ParsedBundle) -> bool:
    """sigstore-python checks bundles with exactly the log entries it knows (and no others)."""
    return bool(parsed.tlog_entries) and all(
        (e.kind, e.version) in _SIGSTORE_KINDS for e in parsed.tlog_entries
    )


def _verify_keyless_sigstore(
    parsed: ParsedBundle,
    root: TrustRoot,
    policy: IdentityPolicy,
    artifact: bytes | None,
    digest: bytes | None,
) -> None:
    for entry in parsed.tlog_entries:
        if (entry.kind, entry.version) == ("dsse", "0.0.1") and b'"proposedContent"' in entry.body:
            raise _Failed(
                "transparency log: entry is an uncanonicalised DSSE proposal, not a logged entry"
            )
    try:
        bundle = SigstoreBundle.from_json(parsed.raw)
        verifier = _sigstore_verifier(root)
        if parsed.envelope is not None:
            verifier.verify_dsse(bundle, policy)
        else:
            assert digest is not None
            subject: bytes | Hashed = (
                artifact
                if artifact is not None
                else Hashed(algorithm=HashAlgorithm.SHA2_256, digest=digest)
            )
            verifier.verify_artifact(subject, bundle, policy)
    except (SigstoreError, ValueError) as err:
        raise _Failed(_one_line(str(err))) from None
    except Exception as err:  # sigstore-python crashing on odd input still means "not verified"
        raise _Failed(
            f"sigstore-python could not verify the bundle: {type(err).__name__}: {err}"
        ) from None


def _verify_keyless_own(
    parsed: ParsedBundle,
    root: TrustRoot,
    policy: IdentityPolicy,
    digest: bytes | None,
) -> list[datetime]:
    """Keyless checks sigstore-python cannot make: ``intoto/0.0.2`` entries, and bundles
    with no log entry at all.

    Without an entry the trusted root decides, as the Sigstore client spec has it: a
    root that lists transparency logs requires an entry from one of them; a root
    without logs (a TSA-only deployment) accepts a verified RFC 3161 timestamp as the
    signing time instead.
    """
    cert = parsed.certificate
    assert cert is not None
    if not parsed.tlog_entries:
        if root.tlogs:
            raise _Failed(
                f"keyless bundle has no transparency-log entry (trusted root {root.name} "
                "lists transparency logs, so one is required)"
            )
        if not parsed.timestamps:
            raise _Failed(
                "keyless bundle has neither a transparency-log entry nor an RFC 3161 timestamp"
            )
    times = _verify_tlog(parsed, root, verifier=cert, digest=digest)
    times += _verify_timestamps(parsed, root, parsed.signature)
    if not times:
        raise _Failed("no verified signing time (signed entry timestamp or RFC 3161 timestamp)")
    try:
        for moment in times:
            verify_certificate(cert, root, moment, policy)
    except CertificateError as err:
        raise _Failed(str(err)) from None
    key = cert.public_key()
    if parsed.envelope is not None:
        ok = isinstance(
            key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
        ) and (verify_signature(key, parsed.envelope.signature, data=parsed.envelope.pae()))
        if not ok:
            raise _Failed("DSSE signature does not verify with the certificate's key")
    else:
        assert parsed.message is not None and digest is not None
        ok = isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey) and verify_signature(
            key, parsed.message.signature, sha256=digest
        )
        if not ok:
            raise _Failed("signature does not verify with the certificate's key")
    return times


def _verify_keyless(
    parsed: ParsedBundle,
    root: TrustRoot,
    policy: IdentityPolicy,
    artifact: bytes | None,
    digest: bytes | None,
    payload_type: str | None,
) -> list[datetime]:
    if not parsed.keyless:
        raise _Failed("bundle is signed with a key, not keylessly (no certificate)")
    if any(_is_root_ca(cert) for cert in parsed.chain):
        raise _Failed(
            "bundle's certificate chain includes a root CA (trust comes from the trusted root)"
        )
    _check_artifact(parsed, artifact, digest, payload_type)
    if _uses_sigstore(parsed):
        _verify_keyless_sigstore(parsed, root, policy, artifact, digest)
        times = []
        entry = parsed.tlog_entries[0]
        if entry.integrated_time and entry.signed_entry_timestamp:
            times.append(datetime.fromtimestamp(entry.integrated_time, tz=UTC))
        # For the report: sigstore-python verified the timestamps, it does not say when.
        with contextlib.suppress(_Failed):
            times += _verify_timestamps(parsed, root, parsed.signature)
        return times
    return _verify_keyless_own(parsed, root, policy, digest)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


# -- the entry point ---------------------------------------------------------------------------


def verify_bundle(
    bundle: bytes | str | ParsedBundle,
    authority: KeyAuthorityLike | KeylessAuthorityLike,
    *,
    artifact: bytes | None = None,
    artifact_digest: str | bytes | None = None,
    payload_type: str | None = None,
    trusted_root: TrustRoot | None = None,
    require_tlog: bool = False,
    ignore_tlog: bool = False,
) -> BundleVerification:
    """Check ``bundle`` against one authority; never raises for a bad bundle or signature.

    ``artifact`` (bytes) or ``artifact_digest`` (``sha256:<hex>`` or raw 32 bytes) names
    what the bundle must be about: a message signature's input, or for a DSSE
    envelope the digest of one in-toto statement subject.  ``payload_type`` pins the
    DSSE payload type (default in-toto whenever a digest is given).  Keyless
    authorities use their ``trusted_root`` file (default: Sigstore public good, offline);
    ``trusted_root`` overrides it and also holds the Rekor keys for key-based bundles.
    For key-based bundles ``require_tlog`` demands a verified transparency-log entry
    (cosign's default) and ``ignore_tlog`` skips the log altogether (cosign's
    ``--insecure-ignore-tlog``); with neither, an entry is checked only when present.
    Keyless bundles always follow the trusted root's rules.
    """
    if require_tlog and ignore_tlog:
        raise UsageError("require_tlog and ignore_tlog contradict each other")
    digest = _normalise_digest(artifact_digest)
    if artifact is not None:
        computed = hashlib.sha256(artifact).digest()
        if digest is not None and digest != computed:
            raise UsageError("artifact and artifact digest disagree")
        digest = computed
    try:
        parsed = bundle if isinstance(bundle, ParsedBundle) else parse_bundle(bundle)
    except SignatureFormatError as err:
        return BundleVerification(False, (str(err),), "unknown", {"type": "unknown"})
    content = _content_name(parsed)
    payload_kind = parsed.envelope.payload_type if parsed.envelope else None
    payload = parsed.envelope.payload if parsed.envelope else None
    message_digest = None
    if parsed.message is not None and (parsed.message.digest or digest):
        message_digest = "sha256:" + (parsed.message.digest or digest or b"").hex()

    def result(
        ok: bool, reasons: tuple[str, ...], signer: dict[str, Any], times: list[datetime]
    ) -> BundleVerification:
        return BundleVerification(
            verified=ok,
            reasons=reasons,
            content=content,
            signer=signer,
            payload_type=payload_kind,
            payload=payload,
            message_digest=message_digest,
            tlog=_tlog_summary(parsed),
            signed_times=tuple(t.isoformat() for t in times),
        )

    public_key_pem = getattr(authority, "public_key_pem", None)
    if public_key_pem is not None:
        key = load_verification_key(public_key_pem)
        signer = {"type": "key", "keyId": key_hint(key)}
        try:
            mode = tlog_mode(require=require_tlog, ignore=ignore_tlog)
            times = _verify_key_based(
                parsed,
                key,
                trusted_root,
                artifact,
                digest,
                payload_type,
                mode,
                getattr(authority, "hash_algorithm", "sha256"),
            )
        except _Failed as err:
            return result(False, (str(err),), signer, [])
        return result(True, (), signer, times)

    policy = IdentityPolicy(
        subject=getattr(authority, "subject", None),
        subject_regexp=getattr(authority, "subject_regexp", None),
        issuer=getattr(authority, "issuer", None),
        issuer_regexp=getattr(authority, "issuer_regexp", None),
    )
    signer: dict[str, Any] = {"type": "keyless"}
    if parsed.certificate is not None:
        identity = certificate_identity(parsed.certificate)
        signer = {"type": "keyless", "subject": identity.subject, "issuer": identity.issuer}
    root = trusted_root or load_trusted_root(getattr(authority, "trusted_root", None))
    try:
        times = _verify_keyless(parsed, root, policy, artifact, digest, payload_type)
    except _Failed as err:
        return result(False, (str(err),), signer, [])
    return result(True, (), signer, times)
