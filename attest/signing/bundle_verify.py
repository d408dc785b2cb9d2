"""Verify Sigstore bundles: against one authority, or as an image's signatures and attestations.

:func:`verify_bundle` checks a bundle against one authority.  What belongs to the
format is checked here — the artifact or statement subject the bundle is about,
its payload type, whether its verification material is a key or a certificate, a
chain without a root CA — and the rest is :mod:`attest.signing.checks`, the same
checks legacy ``.sig``/``.att`` entries get.  One exception: keyless bundles whose
only log entries are ``hashedrekord``/``dsse`` go through sigstore-python's
``Verifier`` (chain, SCT, identity, inclusion proof, SET, entry consistency), as the
reference implementation; key-based bundles and ``intoto/0.0.2`` entries, which it
refuses, take our own path.  :func:`check_bundle` checks one bundle stored for an
image against every authority of a policy.  A failed check is a reason in the
result, never an exception; only unusable arguments raise.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from sigstore.errors import Error as SigstoreError
from sigstore.hashes import Hashed
from sigstore.models import Bundle as SigstoreBundle
from sigstore_models.common.v1 import HashAlgorithm

from attest.attestations.predicates import SIGN_PREDICATE_TYPE
from attest.attestations.statement import (
    IN_TOTO_PAYLOAD_TYPE,
    decode_statement,
    predicate_type_of,
    subject_annotations,
    subject_matches,
)
from attest.errors import SignatureFormatError, UsageError
from attest.signing import keys
from attest.signing.authority import Authority, KeyAuthority
from attest.signing.bundle import ParsedBundle, parse_bundle
from attest.signing.checks import (
    Evidence,
    Failed,
    TrustMaterial,
    annotation_mismatch,
    check_key,
    check_keyless,
    check_timestamps,
    envelope_statement,
)
from attest.signing.fulcio import IdentityPolicy
from attest.signing.result import CheckKind, CheckResult, SignerIdentity, check_result
from attest.signing.trust import TrustRoot, load_trusted_root

if TYPE_CHECKING:
    from sigstore.verify import Verifier

_SIGSTORE_KINDS = {("hashedrekord", "0.0.1"), ("hashedrekord", "0.0.2"), ("dsse", "0.0.1")}

BundleContent = Literal["message", "dsse", "unknown"]


@dataclass(frozen=True)
class BundleVerification:
    """The outcome of checking one bundle against one authority (plain data)."""

    verified: bool
    reasons: tuple[str, ...]
    content: BundleContent
    signer: SignerIdentity
    payload_type: str | None = None
    payload: bytes | None = None  # DSSE payload: trust it only when verified
    message_digest: str | None = None  # "sha256:<hex>" a message signature covers
    tlog: dict[str, Any] | None = None
    signed_times: tuple[str, ...] = ()  # verified signing times (ISO 8601)

    def statement(self) -> dict[str, Any] | None:
        """The DSSE payload decoded as an in-toto Statement, if it is one."""
        if self.payload_type != IN_TOTO_PAYLOAD_TYPE:
            return None
        return decode_statement(self.payload)


# -- what the bundle is about ---------------------------------------------------------------


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


def _check_subject(payload: bytes, digest: bytes) -> None:
    statement = decode_statement(payload)
    if statement is None or not isinstance(statement.get("subject"), list):
        raise Failed("DSSE payload is not an in-toto Statement (no subject list)")
    if not subject_matches(statement, "sha256:" + digest.hex()):
        raise Failed(f"no subject of the in-toto statement has digest sha256:{digest.hex()}")


def _check_artifact(parsed: ParsedBundle, digest: bytes | None, payload_type: str | None) -> None:
    """The bundle is about the artifact: message digest, or a statement subject."""
    if parsed.envelope is not None:
        expected_type = payload_type or (IN_TOTO_PAYLOAD_TYPE if digest is not None else None)
        if expected_type is not None and parsed.envelope.payload_type != expected_type:
            raise Failed(
                f"DSSE payloadType is {parsed.envelope.payload_type!r}, expected {expected_type!r}"
            )
        if digest is not None:
            _check_subject(parsed.envelope.payload, digest)
        return
    assert parsed.message is not None
    if digest is None:
        raise Failed("a message signature needs the artifact or its digest to verify")
    if parsed.message.digest is not None and parsed.message.digest != digest:
        raise Failed("bundle message digest does not match the artifact")


def _evidence(parsed: ParsedBundle, artifact: bytes | None, digest: bytes | None) -> Evidence:
    envelope = parsed.envelope
    return Evidence(
        signatures=tuple(s.sig for s in envelope.signatures) if envelope else (parsed.signature,),
        envelope=envelope,
        message=artifact if envelope is None else None,
        message_digest=digest if envelope is None else None,
        certificate=parsed.certificate,
        chain=parsed.chain,
        tlog_entries=parsed.tlog_entries,
        timestamps=parsed.timestamps,
        require_proof=parsed.version != "0.1",
    )


# -- keyless bundles sigstore-python verifies ------------------------------------------------


@lru_cache(maxsize=16)
def _sigstore_verifier(root: TrustRoot) -> Verifier:
    # Imported here: only keyless bundles need it, and it costs a key-based
    # `attest verify` (or pipeline read-back) some 50 ms of imports.
    from sigstore.verify import Verifier

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


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _verify_keyless_sigstore(
    parsed: ParsedBundle,
    root: TrustRoot,
    policy: IdentityPolicy,
    artifact: bytes | None,
    digest: bytes | None,
) -> None:
    for entry in parsed.tlog_entries:
        if (entry.kind, entry.version) == ("dsse", "0.0.1") and b'"proposedContent"' in entry.body:
            raise Failed(
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
        raise Failed(_one_line(str(err))) from None
    except Exception as err:  # sigstore-python crashing on odd input still means "not verified"
        raise Failed(
            f"sigstore-python could not verify the bundle: {type(err).__name__}: {err}"
        ) from None


# -- one bundle, one authority --------------------------------------------------------------


def _verify_key_based(
    parsed: ParsedBundle,
    evidence: Evidence,
    authority: KeyAuthority,
    key: keys.PublicKey,
    root: TrustRoot | None,
    digest: bytes | None,
    payload_type: str | None,
) -> list[datetime]:
    if parsed.keyless:
        raise Failed("bundle is signed keylessly (certificate), not with a key")
    _check_artifact(parsed, digest, payload_type)
    return check_key(evidence, authority, key, root)


def _verify_keyless(
    parsed: ParsedBundle,
    evidence: Evidence,
    policy: IdentityPolicy,
    root: TrustRoot,
    artifact: bytes | None,
    digest: bytes | None,
    payload_type: str | None,
) -> list[datetime]:
    if not parsed.keyless:
        raise Failed("bundle is signed with a key, not keylessly (no certificate)")
    if any(_is_root_ca(cert) for cert in parsed.chain):
        raise Failed(
            "bundle's certificate chain includes a root CA (trust comes from the trusted root)"
        )
    _check_artifact(parsed, digest, payload_type)
    if not _uses_sigstore(parsed):
        return check_keyless(evidence, policy, root)
    _verify_keyless_sigstore(parsed, root, policy, artifact, digest)
    times = []
    entry = parsed.tlog_entries[0]
    if entry.integrated_time and entry.signed_entry_timestamp:
        times.append(datetime.fromtimestamp(entry.integrated_time, tz=UTC))
    # For the report: sigstore-python verified the timestamps, it does not say when.
    with contextlib.suppress(Failed):
        times += check_timestamps(evidence, root)
    return times


def _verify(
    parsed: ParsedBundle,
    authority: Authority,
    key: keys.PublicKey | None,
    root: TrustRoot | None,
    *,
    artifact: bytes | None,
    digest: bytes | None,
    payload_type: str | None,
) -> tuple[list[str], list[datetime]]:
    """Why ``parsed`` does not verify for ``authority`` (empty: it does), and its signing times."""
    evidence = _evidence(parsed, artifact, digest)
    try:
        if isinstance(authority, KeyAuthority):
            assert key is not None
            times = _verify_key_based(parsed, evidence, authority, key, root, digest, payload_type)
        else:
            root = root or load_trusted_root(authority.trusted_root)
            times = _verify_keyless(
                parsed, evidence, authority.identity, root, artifact, digest, payload_type
            )
    except Failed as err:
        return [str(err)], []
    return [], times


def _signer(parsed: ParsedBundle, key: keys.PublicKey | None, verified: bool) -> SignerIdentity:
    evidence = Evidence(signatures=(), certificate=parsed.certificate)
    return evidence.signer(key if verified else None, parsed.public_key_hint)


def verify_bundle(
    bundle: bytes | str | ParsedBundle,
    authority: Authority,
    *,
    artifact: bytes | None = None,
    artifact_digest: str | bytes | None = None,
    payload_type: str | None = None,
    trusted_root: TrustRoot | None = None,
) -> BundleVerification:
    """Check ``bundle`` against one authority; never raises for a bad bundle or signature.

    ``artifact`` (bytes) or ``artifact_digest`` (``sha256:<hex>`` or raw 32 bytes) names
    what the bundle must be about: a message signature's input, or for a DSSE
    envelope the digest of one in-toto statement subject.  ``payload_type`` pins the
    DSSE payload type (default in-toto whenever a digest is given).  The authority's
    ``trusted_root`` file holds the Fulcio CA and logs (default: Sigstore public good,
    offline); ``trusted_root`` overrides it with one already loaded.  A key authority's
    ``tlog`` mode says what its log entry must be; keyless bundles always follow the
    trusted root's rules.
    """
    digest = _normalise_digest(artifact_digest)
    if artifact is not None:
        computed = hashlib.sha256(artifact).digest()
        if digest is not None and digest != computed:
            raise UsageError("artifact and artifact digest disagree")
        digest = computed
    try:
        parsed = bundle if isinstance(bundle, ParsedBundle) else parse_bundle(bundle)
    except SignatureFormatError as err:
        return BundleVerification(False, (str(err),), "unknown", SignerIdentity.unknown())
    key = None
    if isinstance(authority, KeyAuthority):
        key = keys.load_public_key(authority.public_key_pem, what=f"authority {authority.name}")
        if trusted_root is None and authority.trusted_root:
            trusted_root = load_trusted_root(authority.trusted_root)
    reasons, times = _verify(
        parsed,
        authority,
        key,
        trusted_root,
        artifact=artifact,
        digest=digest,
        payload_type=payload_type,
    )
    envelope = parsed.envelope
    message_digest = None
    if parsed.message is not None and (parsed.message.digest or digest):
        message_digest = "sha256:" + (parsed.message.digest or digest or b"").hex()
    return BundleVerification(
        verified=not reasons,
        reasons=tuple(reasons),
        content="dsse" if envelope is not None else "message",
        signer=_signer(parsed, key, not reasons),
        payload_type=envelope.payload_type if envelope else None,
        payload=envelope.payload if envelope else None,
        message_digest=message_digest,
        tlog=parsed.tlog_entries[0].summary() if parsed.tlog_entries else None,
        signed_times=tuple(t.isoformat() for t in times),
    )


# -- one bundle stored for an image, every authority ------------------------------------------


def check_bundle(
    location: str, bundle_json: bytes, digest: str, trust: TrustMaterial
) -> CheckResult:
    """Check a bundle stored as a referrer of the image ``digest`` against every authority.

    It must be a DSSE envelope over an in-toto Statement naming the image; the signed
    predicate type decides whether it is the image's signature (cosign's sign
    predicate, whose subject annotations must hold the required ones) or an attestation.
    """
    try:
        parsed = parse_bundle(bundle_json, what=f"bundle {location}")
    except SignatureFormatError as err:
        return check_result("signature", "bundle", location, [str(err)], {})
    if parsed.envelope is None:
        return check_result(
            "signature",
            "bundle",
            location,
            ["bundle holds a message signature; image signatures are DSSE in-toto statements"],
            {},
        )
    statement, common = envelope_statement(parsed.envelope, digest)
    predicate_type = predicate_type_of(statement) if statement else None
    kind: CheckKind = "signature" if predicate_type == SIGN_PREDICATE_TYPE else "attestation"
    signed_annotations = subject_annotations(statement or {}, digest)
    if kind == "signature":
        mismatch = annotation_mismatch(signed_annotations, trust.policy.required_annotations)
        if mismatch:
            common.append(mismatch)
    raw_digest = _normalise_digest(digest)
    per_authority: dict[str, list[str]] = {}
    verified_key = None
    for authority in trust.policy.authorities:
        key = trust.key(authority) if isinstance(authority, KeyAuthority) else None
        per_authority[authority.name], _times = _verify(
            parsed,
            authority,
            key,
            trust.root(authority),
            artifact=None,
            digest=raw_digest,
            payload_type=IN_TOTO_PAYLOAD_TYPE,
        )
        if key is not None and verified_key is None and not per_authority[authority.name]:
            verified_key = key
    return check_result(
        kind,
        "bundle",
        location,
        common,
        per_authority,
        signer=_signer(parsed, verified_key, verified_key is not None),
        annotations=signed_annotations,
        statement=statement,
        predicate_type=predicate_type,
        tlog=parsed.tlog_entries[0].summary() if parsed.tlog_entries else None,
    )
