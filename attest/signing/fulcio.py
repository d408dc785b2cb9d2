"""Fulcio signing certificates: identity policies and the checks a keyless verifier makes.

A keyless signature is made with a short-lived key whose certificate Fulcio
issued for an OIDC identity: the subject alternative name is the identity (an
email, a URI such as a GitHub workflow, or Sigstore's other-name) and an
extension records the OIDC issuer.  ``IdentityPolicy`` matches both, exactly
or with a regular expression that must match the *whole* value (``re.fullmatch``,
so ``.*@example.com`` does not match ``evil@example.com.attacker.io``).  It
implements sigstore-python's ``VerificationPolicy`` protocol so the same policy
drives sigstore's verifier.  ``verify_certificate`` makes the checks sigstore
makes, for the paths it does not cover (cosign's legacy ``.sig`` certificate
annotations and ``intoto`` log entries): chain to a trusted Fulcio CA at the
signing time, embedded SCTs from a trusted CT log, key usage and identity.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat import asn1
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import VerificationError as X509VerificationError
from sigstore.errors import VerificationError as SigstoreVerificationError

from attest.errors import UsageError
from attest.signing.keys import verify_signature
from attest.signing.trust import TrustRoot

ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OTHERNAME_SAN = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


class CertificateError(SigstoreVerificationError):
    """A certificate failed a check (also a sigstore ``VerificationError`` so sigstore re-raises it)."""


@dataclass(frozen=True)
class CertificateIdentity:
    """Who a Fulcio certificate was issued to."""

    subjects: tuple[str, ...]
    issuer: str | None

    @property
    def subject(self) -> str:
        return self.subjects[0] if self.subjects else ""


def _decode_utf8_der(value: bytes) -> str | None:
    try:
        return asn1.decode_der(str, value)
    except Exception:  # not a DER UTF8String
        return None


def certificate_identity(cert: x509.Certificate) -> CertificateIdentity:
    """The SAN identities and OIDC issuer recorded in a Fulcio certificate."""
    subjects: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        subjects.extend(san.get_values_for_type(x509.RFC822Name))
        subjects.extend(san.get_values_for_type(x509.UniformResourceIdentifier))
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id == OTHERNAME_SAN:
                text = _decode_utf8_der(other.value)
                if text is not None:
                    subjects.append(text)
    except (x509.ExtensionNotFound, ValueError):
        pass
    issuer = None
    for oid, decode in ((ISSUER_V2, _decode_utf8_der), (ISSUER_V1, _decode_raw)):
        try:
            ext = cert.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        issuer = decode(ext.value)  # type: ignore[attr-defined]
        if issuer is not None:
            break
    return CertificateIdentity(tuple(subjects), issuer)


def _decode_raw(value: bytes) -> str | None:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None


def _compile(pattern: str | None, what: str) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as err:
        raise UsageError(f"{what} {pattern!r} is not a valid regular expression ({err})") from None


@dataclass(frozen=True)
class IdentityPolicy:
    """Expected certificate identity and issuer: exact values or whole-string regexps.

    At least one of ``subject``/``subject_regexp`` and one of ``issuer``/``issuer_regexp``
    must be set (like cosign, an identity policy without both is refused).
    """

    subject: str | None = None
    subject_regexp: str | None = None
    issuer: str | None = None
    issuer_regexp: str | None = None

    def __post_init__(self) -> None:
        if not (self.issuer or self.issuer_regexp):
            raise UsageError("a keyless identity needs an OIDC issuer (exact or regexp)")
        if not (self.subject or self.subject_regexp):
            raise UsageError("a keyless identity needs a certificate identity (exact or regexp)")
        _compile(self.subject_regexp, "certificate identity regexp")
        _compile(self.issuer_regexp, "certificate OIDC issuer regexp")

    def describe(self) -> str:
        subject = self.subject or f"~{self.subject_regexp}"
        issuer = self.issuer or f"~{self.issuer_regexp}"
        return f"{subject} from {issuer}"

    def mismatch(self, identity: CertificateIdentity) -> str | None:
        """Why ``identity`` does not satisfy the policy, or None when it does."""
        if identity.issuer is None:
            return "certificate records no OIDC issuer"
        issuer_ok = (self.issuer is None or identity.issuer == self.issuer) and (
            self.issuer_regexp is None
            or re.fullmatch(self.issuer_regexp, identity.issuer) is not None
        )
        if not issuer_ok:
            return f"certificate issuer {identity.issuer!r} does not match {self.issuer or self.issuer_regexp!r}"

        def subject_ok(value: str) -> bool:
            if self.subject is not None and value != self.subject:
                return False
            return (
                self.subject_regexp is None or re.fullmatch(self.subject_regexp, value) is not None
            )

        if not any(subject_ok(value) for value in identity.subjects):
            got = ", ".join(repr(s) for s in identity.subjects) or "none"
            return (
                f"certificate identity {got} does not match {self.subject or self.subject_regexp!r}"
            )
        return None

    def verify(self, cert: x509.Certificate) -> None:
        """sigstore-python ``VerificationPolicy`` protocol: raise on mismatch."""
        reason = self.mismatch(certificate_identity(cert))
        if reason is not None:
            raise CertificateError(reason)


def _leaf_policy() -> tuple[ExtensionPolicy, ExtensionPolicy]:
    # Fulcio leaves carry the code-signing EKU, not client-auth: allow any EKU here and
    # check code signing explicitly, keeping the other WebPKI extension rules.
    ca = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    return ca, ee


def verify_chain(
    cert: x509.Certificate,
    root: TrustRoot,
    at: datetime,
    *,
    untrusted_intermediates: tuple[x509.Certificate, ...] = (),
) -> list[x509.Certificate]:
    """Chain ``cert`` to a Fulcio CA of ``root`` valid at ``at``; returns the chain above it."""
    anchors = root.fulcio_certificates()
    if not anchors:
        raise CertificateError(f"trusted root {root.name} has no certificate authority")
    ca_policy, ee_policy = _leaf_policy()
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        chain = verifier.verify(cert, list(untrusted_intermediates)).chain[1:]
    except (X509VerificationError, x509.UnsupportedGeneralNameType) as err:
        raise CertificateError(
            f"certificate does not chain to a trusted Fulcio CA of {root.name} at {at.isoformat()} ({err})"
        ) from None
    return chain


def _sct_signed_data(
    sct: x509.certificate_transparency.SignedCertificateTimestamp,
    cert: x509.Certificate,
    issuer: x509.Certificate,
) -> bytes:
    issuer_key_hash = hashlib.sha256(
        issuer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).digest()
    tbs = cert.tbs_precertificate_bytes
    timestamp = sct.timestamp.replace(tzinfo=UTC) if sct.timestamp.tzinfo is None else sct.timestamp
    millis = int(timestamp.timestamp() * 1000 + 0.5)
    extensions = sct.extension_bytes
    return (
        struct.pack(">BBQH", 0, 0, millis, 1)  # v1, certificate_timestamp, time, precert_entry
        + issuer_key_hash
        + len(tbs).to_bytes(3, "big")
        + tbs
        + len(extensions).to_bytes(2, "big")
        + extensions
    )


def verify_scts(cert: x509.Certificate, issuer: x509.Certificate, root: TrustRoot) -> None:
    """At least one embedded SCT verifies with a CT log key from ``root``."""
    try:
        scts = cert.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps
        ).value
    except x509.ExtensionNotFound:
        raise CertificateError("certificate has no embedded signed certificate timestamp") from None
    for sct in scts:
        log = root.ctlog_for(sct.log_id)
        if log is None:
            continue
        if verify_signature(log.key, sct.signature, _sct_signed_data(sct, cert, issuer)):
            return
    raise CertificateError("no embedded SCT verifies with a CT log of the trusted root")


def check_usage(cert: x509.Certificate) -> None:
    """Fulcio leaves must allow digital signatures and code signing."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise CertificateError("certificate lacks key usage or extended key usage") from None
    if not usage.digital_signature:
        raise CertificateError("certificate key usage does not allow digital signatures")
    if ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise CertificateError("certificate extended key usage lacks code signing")


def verify_certificate(
    cert: x509.Certificate,
    root: TrustRoot,
    at: datetime,
    policy: IdentityPolicy,
    *,
    untrusted_intermediates: tuple[x509.Certificate, ...] = (),
) -> CertificateIdentity:
    """Every keyless certificate check at signing time ``at``; returns the identity."""
    if not (cert.not_valid_before_utc <= at <= cert.not_valid_after_utc):
        raise CertificateError(
            f"certificate was not valid at the signing time {at.isoformat()} "
            f"(valid {cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()})"
        )
    chain = verify_chain(cert, root, at, untrusted_intermediates=untrusted_intermediates)
    verify_scts(cert, chain[0], root)
    check_usage(cert)
    identity = certificate_identity(cert)
    reason = policy.mismatch(identity)
    if reason is not None:
        raise CertificateError(reason)
    return identity
