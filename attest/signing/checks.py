"""The checks every stored signature goes through, whichever format stored it.

A Sigstore bundle and a cosign ``.sig``/``.att`` layer hold the same evidence in
different wrappers: a signature over a message or over a DSSE envelope's PAE, a
signing certificate (keyless) or none (key-based), transparency-log entries and
RFC 3161 timestamps.  :mod:`attest.signing.bundle_verify` and
:mod:`attest.signing.legacy` each read their format into an :class:`Evidence`,
make the few checks that belong to the format (what the bundle claims to be about,
what the simple-signing payload names) and hand it here: :func:`check_key` for a
key authority, :func:`check_keyless` for a keyless one.  So a signature verifies
by the same rules in both formats, and a check that guards trust exists once.

A failed check raises :class:`Failed` with the reason; callers turn it into data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from rfc3161_client import VerificationError as TimestampVerificationError
from rfc3161_client import VerifierBuilder, decode_timestamp_response

from attest.attestations.statement import (
    IN_TOTO_PAYLOAD_TYPE,
    decode_statement,
    statement_problems,
)
from attest.signing import keys
from attest.signing.authority import (
    TLOG_IGNORED,
    TLOG_REQUIRED,
    KeyAuthority,
    KeylessAuthority,
    VerificationPolicy,
)
from attest.signing.dsse import Envelope, verify_envelope
from attest.signing.fulcio import (
    CertificateError,
    IdentityPolicy,
    certificate_identity,
    verify_certificate,
)
from attest.signing.result import SignerIdentity
from attest.signing.tlog import TlogEntry, TlogError, check_dsse, check_hashedrekord, verify_entry
from attest.signing.trust import TrustRoot, load_trusted_root

MAX_TIMESTAMPS = 32
NO_TLOG_ENTRY = "no transparency-log entry (pass --insecure-ignore-tlog to verify without one)"


class Failed(Exception):
    """A verification step failed; the message is the reason."""


@dataclass(frozen=True)
class Evidence:
    """One stored signature and what vouches for it, read from either storage format.

    ``envelope`` set: DSSE, every signature of ``signatures`` covers its PAE.  Otherwise a
    message signature over ``message``, or — when only its SHA-256 is known — over a
    message with digest ``message_digest``.  ``certificate`` (and the untrusted ``chain``
    above it) make it keyless.  ``tlog_problem`` is why a stored log entry could not be
    read at all; ``require_proof`` asks each log entry for an inclusion proof (bundles
    v0.2 and later), else a signed entry timestamp suffices.
    """

    signatures: tuple[bytes, ...]
    envelope: Envelope | None = None
    message: bytes | None = None
    message_digest: bytes | None = None
    certificate: x509.Certificate | None = None
    chain: tuple[x509.Certificate, ...] = ()
    tlog_entries: tuple[TlogEntry, ...] = ()
    tlog_problem: str | None = None
    timestamps: tuple[bytes, ...] = ()
    require_proof: bool = True

    @property
    def what(self) -> str:
        return "DSSE signature" if self.envelope is not None else "signature"

    def verifies_with(self, key: keys.PublicKey, hash_algorithm: keys.HashName = "sha256") -> bool:
        """Whether a signature verifies with ``key`` over what it signs (over ``hash_algorithm``:
        :func:`attest.signing.keys.verify_signature`)."""
        if self.envelope is not None:
            return verify_envelope(
                self.envelope,
                lambda sig, data: keys.verify_signature(
                    key, sig, data, hash_algorithm=hash_algorithm
                ),
            )
        return any(
            keys.verify_signature(
                key, sig, self.message, sha256=self.message_digest, hash_algorithm=hash_algorithm
            )
            for sig in self.signatures
        )

    def signer(
        self, verified_key: keys.PublicKey | None, claimed_key_id: str | None
    ) -> SignerIdentity:
        """Who made it: the certificate's identity; else the key it verified with, or the key
        the signature names (``claimed_key_id``, unauthenticated) when none did."""
        if self.certificate is not None:
            identity = certificate_identity(self.certificate)
            return SignerIdentity.keyless(identity.subject, identity.issuer)
        if verified_key is not None:
            return SignerIdentity.key(keys.key_id(verified_key))
        return SignerIdentity.key(claimed_key_id)


# -- what vouches for the signing time -----------------------------------------------------


def _check_log(
    evidence: Evidence,
    entries: tuple[TlogEntry, ...],
    root: TrustRoot,
    verifier: keys.PublicKey | x509.Certificate,
) -> list[datetime]:
    """Every log entry verifies against ``root`` and records this very signature; returns
    the times signed entry timestamps vouch for."""
    if len(entries) > 1:
        raise Failed("bundle carries more than one transparency-log entry")
    times = []
    for entry in entries:
        try:
            when = verify_entry(entry, root, require_proof=evidence.require_proof)
            if evidence.envelope is not None:
                check_dsse(
                    entry,
                    payload=evidence.envelope.payload,
                    signatures=evidence.signatures,
                    verifier=verifier,
                    pae=evidence.envelope.pae(),
                )
            else:
                digest = evidence.message_digest
                if digest is None and evidence.message is not None:
                    digest = hashlib.sha256(evidence.message).digest()
                if digest is None:
                    raise TlogError("the artifact digest is needed to check the log entry")
                check_hashedrekord(
                    entry, signature=evidence.signatures[0], digest=digest, verifier=verifier
                )
        except TlogError as err:
            raise Failed(f"transparency log: {err}") from None
        if when is not None:
            times.append(when)
    return times


def check_timestamps(evidence: Evidence, root: TrustRoot) -> list[datetime]:
    """The RFC 3161 signing times ``root``'s timestamp authorities vouch for (a bad or
    untrusted timestamp fails)."""
    if len(evidence.timestamps) > MAX_TIMESTAMPS:
        raise Failed(f"bundle carries more than {MAX_TIMESTAMPS} timestamps")
    times = []
    for raw in evidence.timestamps:
        try:
            response = decode_timestamp_response(raw)
        except ValueError:
            raise Failed("bundle carries an unreadable RFC 3161 timestamp") from None
        for authority in root.timestamp_authorities:
            certs = authority.certificates
            if len(certs) < 2:
                continue
            builder = VerifierBuilder().tsa_certificate(certs[0]).add_root_certificate(certs[-1])
            for intermediate in certs[1:-1]:
                builder = builder.add_intermediate_certificate(intermediate)
            try:
                builder.build().verify_message(response, evidence.signatures[0])
            except TimestampVerificationError:
                continue
            gen_time = response.tst_info.gen_time
            if authority.valid.contains(gen_time):
                times.append(gen_time)
                break
        else:
            raise Failed("an RFC 3161 timestamp does not verify with a trusted timestamp authority")
    return times


# -- the two kinds of authority -------------------------------------------------------------


def check_key(
    evidence: Evidence, authority: KeyAuthority, key: keys.PublicKey, root: TrustRoot | None
) -> list[datetime]:
    """A key authority's checks: the signature (with ``key``, the authority's, over its hash),
    then the log entry its ``tlog`` mode asks for (against ``root``, default Sigstore public
    good) and any timestamps; returns the verified times."""
    if not evidence.verifies_with(key, authority.hash_algorithm):
        raise Failed(f"{evidence.what} does not verify with the key")
    mode = authority.tlog
    entries = () if mode == TLOG_IGNORED else evidence.tlog_entries
    if mode != TLOG_IGNORED and evidence.tlog_problem:
        raise Failed(evidence.tlog_problem)
    if not entries and not evidence.timestamps:
        if mode == TLOG_REQUIRED:
            raise Failed(NO_TLOG_ENTRY)
        return []
    root = root or load_trusted_root(None)
    times = _check_log(evidence, entries, root, key)
    times += check_timestamps(evidence, root)
    if mode == TLOG_REQUIRED and not entries:
        raise Failed(NO_TLOG_ENTRY)
    return times


def check_keyless(evidence: Evidence, identity: IdentityPolicy, root: TrustRoot) -> list[datetime]:
    """A keyless authority's checks on a signature that carries a certificate.

    The signing time comes from the log (a signed entry timestamp) or an RFC 3161
    timestamp; the certificate must chain to the root's Fulcio CA, carry a trusted SCT
    and name ``identity`` at every such time, and its key must verify the signature.
    Without a log entry the trusted root decides, as the Sigstore client spec has it: a
    root that lists transparency logs requires an entry from one of them; a root without
    logs (a TSA-only deployment) accepts a verified timestamp instead.
    """
    cert = evidence.certificate
    assert cert is not None, "the format's reader checks for a certificate first"
    if evidence.tlog_problem:
        raise Failed(evidence.tlog_problem)
    if not evidence.tlog_entries:
        if root.tlogs:
            raise Failed(
                f"keyless signature has no transparency-log entry (trusted root {root.name} "
                "lists transparency logs, so one is required)"
            )
        if not evidence.timestamps:
            raise Failed(
                "keyless signature has neither a transparency-log entry nor an RFC 3161 timestamp"
            )
    times = _check_log(evidence, evidence.tlog_entries, root, cert)
    times += check_timestamps(evidence, root)
    if not times:
        raise Failed("no verified signing time (signed entry timestamp or RFC 3161 timestamp)")
    try:
        for moment in times:
            verify_certificate(cert, root, moment, identity, untrusted_intermediates=evidence.chain)
    except CertificateError as err:
        raise Failed(str(err)) from None
    key = keys.as_public_key(cert.public_key())
    if key is None or not evidence.verifies_with(key):
        raise Failed(f"{evidence.what} does not verify with the certificate's key")
    return times


# -- what the signed content says --------------------------------------------------------------


def envelope_statement(envelope: Envelope, digest: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The in-toto Statement an image's DSSE envelope carries, and why it is not one about
    the image ``digest`` (payload type, statement type, subject, predicate type)."""
    statement = decode_statement(envelope.payload)
    problems = []
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        problems.append(
            f"DSSE payloadType is {envelope.payload_type!r}, not {IN_TOTO_PAYLOAD_TYPE!r}"
        )
    return statement, problems + statement_problems(statement, digest)


def annotation_mismatch(found: dict[str, Any], required: dict[str, str]) -> str | None:
    """Why the signed annotations ``found`` lack what the policy requires, or None."""
    missing = [
        f"{key}={value}" for key, value in sorted(required.items()) if str(found.get(key)) != value
    ]
    if not missing:
        return None
    return f"required annotations not signed: {', '.join(missing)}"


class TrustMaterial:
    """A policy's keys and trusted roots, loaded (and so validated) before any signature is
    looked at: unusable trust material is an error, never a failed signature."""

    def __init__(self, policy: VerificationPolicy) -> None:
        self.policy = policy
        self._keys: dict[str, keys.PublicKey] = {}
        self._roots: dict[str, TrustRoot] = {}
        for authority in policy.authorities:
            if authority.trusted_root or isinstance(authority, KeylessAuthority):
                self._roots[authority.name] = load_trusted_root(authority.trusted_root)
            if isinstance(authority, KeyAuthority):
                self._keys[authority.name] = keys.load_public_key(
                    authority.public_key_pem, what=f"authority {authority.name}"
                )

    def key(self, authority: KeyAuthority) -> keys.PublicKey:
        return self._keys[authority.name]

    def root(self, authority: KeyAuthority | KeylessAuthority) -> TrustRoot | None:
        """The authority's trusted root; None for a key authority without one (public good,
        loaded only if a log entry needs it)."""
        return self._roots.get(authority.name)
