"""Verify an image's signatures and attestations against a policy (the library API).

:func:`verify_image` resolves the image to its digest, finds every signature and
attestation stored for it (Sigstore bundles as OCI referrers, cosign's legacy
``.sig``/``.att`` tags), checks each against every authority of the
:class:`VerificationPolicy` and returns plain data: what was found, what
verified, and every reason each one failed.  A bad signature is a result, never
an exception; exceptions are for unusable input and registry failures.  The
cryptographic checks live in :mod:`attest.signing`; this module orchestrates.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from attest.deadline import Deadline
from attest.errors import SignatureFormatError, UsageError
from attest.oci import mediatypes as mt
from attest.oci.access import identifier_for, open_store, parse_image_target
from attest.oci.reference import ImageReference, LayoutReference
from attest.oci.registry import RegistryOptions
from attest.oci.store import ImageStore
from attest.signing import keys
from attest.signing.bundle import (
    NO_TLOG_ENTRY,
    TLOG_IF_PRESENT,
    TLOG_IGNORED,
    TLOG_REQUIRED,
    TlogMode,
    parse_bundle,
    verify_bundle,
)
from attest.signing.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, decode_base64
from attest.signing.fulcio import (
    CertificateError,
    IdentityPolicy,
    certificate_identity,
    verify_certificate,
)
from attest.signing.legacy import (
    PREDICATE_TYPE_ANNOTATION,
    LegacyEntry,
    parse_cosign_bundle,
)
from attest.signing.payload import SIMPLE_SIGNING_TYPE, parse_payload
from attest.signing.storage import (
    SIGN_PREDICATE_TYPE,
    STATEMENT_TYPES,
    FoundBundle,
    FoundSignatures,
    find_signatures,
    subject_matches,
)
from attest.signing.tlog import TlogEntry, TlogError, check_dsse, check_hashedrekord, verify_entry
from attest.signing.trust import TrustRoot, load_trusted_root


@dataclass(frozen=True)
class KeyAuthority:
    """Trust signatures made with one public key (PKIX PEM: ECDSA, RSA or Ed25519).

    ``tlog`` says what the signature's transparency-log entry must be. The default,
    like ``cosign verify --key``, requires one that verifies against ``trusted_root``
    (``None``: Sigstore public good) and records this very signature; ``"if-present"``
    checks an entry only when there is one; ``"ignored"`` (cosign's
    ``--insecure-ignore-tlog``) never looks at it.
    """

    name: str
    public_key_pem: bytes
    trusted_root: str | None = None
    tlog: TlogMode = TLOG_REQUIRED
    hash_algorithm: str = "sha256"  # of the signed data (policy-controller's hashAlgorithm)

    def __post_init__(self) -> None:
        if self.tlog not in (TLOG_REQUIRED, TLOG_IF_PRESENT, TLOG_IGNORED):
            raise UsageError(f"authority {self.name}: unknown transparency-log mode {self.tlog!r}")
        if self.hash_algorithm not in keys.HASH_ALGORITHMS:
            raise UsageError(f"authority {self.name}: unknown hash {self.hash_algorithm!r}")


@dataclass(frozen=True)
class KeylessAuthority:
    """Trust Sigstore keyless signatures whose certificate names this identity and issuer.

    Regular expressions must match the whole value (they are anchored).
    ``trusted_root`` is a ``trusted_root.json`` path; ``None`` means the Sigstore
    public-good root shipped with sigstore-python (no network needed).
    """

    name: str
    issuer: str | None = None
    issuer_regexp: str | None = None
    subject: str | None = None
    subject_regexp: str | None = None
    trusted_root: str | None = None

    def __post_init__(self) -> None:
        if not (self.issuer or self.issuer_regexp):
            raise UsageError(f"authority {self.name}: a keyless authority needs an OIDC issuer")
        if not (self.subject or self.subject_regexp):
            raise UsageError(
                f"authority {self.name}: a keyless authority needs a certificate identity"
            )


Authority = KeyAuthority | KeylessAuthority


def _root_fingerprint(path: str | None) -> str:
    if not path:
        return "sigstore-public-good"
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return f"unreadable:{path}"


def _authority_trust(authority: Authority) -> dict[str, Any]:
    root = _root_fingerprint(authority.trusted_root)
    if isinstance(authority, KeyAuthority):
        return {
            "name": authority.name,
            "key": authority.public_key_pem.decode().strip(),
            "trustedRoot": root,
            "tlog": authority.tlog,
            **(
                {"hashAlgorithm": authority.hash_algorithm}
                if authority.hash_algorithm != "sha256"
                else {}
            ),
        }
    return {
        "name": authority.name,
        "issuer": authority.issuer,
        "issuerRegexp": authority.issuer_regexp,
        "subject": authority.subject,
        "subjectRegexp": authority.subject_regexp,
        "trustedRoot": root,
    }


@dataclass(frozen=True)
class VerificationPolicy:
    """Who must have signed: ``threshold`` distinct authorities, each with a verified signature."""

    authorities: tuple[Authority, ...]
    threshold: int = 1
    required_annotations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.authorities:
            raise UsageError("verification policy: no authorities (give --key or an identity)")
        names = [a.name for a in self.authorities]
        if len(set(names)) != len(names):
            raise UsageError("verification policy: authority names must be unique")
        if not 1 <= self.threshold <= len(self.authorities):
            raise UsageError(
                f"verification policy: threshold {self.threshold} must be between 1 and "
                f"{len(self.authorities)} (the number of authorities)"
            )

    def fingerprint(self) -> str:
        """SHA-256 over all trust material (keys, identities, roots): a cache key."""
        document = {
            "authorities": [_authority_trust(a) for a in self.authorities],
            "threshold": self.threshold,
            "requiredAnnotations": dict(sorted(self.required_annotations.items())),
        }
        encoded = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True)
class CheckResult:
    """One signature or attestation found for the image, and what checking it gave."""

    kind: str  # "signature" | "attestation"
    storage: str  # "bundle" (OCI referrer, Sigstore bundle v0.3) | "legacy" (.sig/.att tag)
    location: str  # e.g. "host/repo@sha256:<artifact manifest digest>"
    verified: bool
    reasons: tuple[str, ...]  # every reason it failed (empty when verified)
    authority: str | None  # name of the authority that verified it
    signer: dict[
        str, Any
    ]  # {"type": "key", "keyId": …} | {"type": "keyless", "subject": …, "issuer": …}
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
            "signer": dict(self.signer),
            "predicateType": self.predicate_type,
            "statement": self.statement,
            "annotations": dict(self.annotations),
            "tlog": self.tlog,
        }


@dataclass(frozen=True)
class ImageVerification:
    """The outcome of verifying one image against a policy."""

    reference: str
    digest: str
    signatures: tuple[CheckResult, ...]
    attestations: tuple[CheckResult, ...]
    satisfied_authorities: tuple[str, ...]
    verified: bool  # threshold met by verified signatures
    errors: tuple[str, ...]  # problems while looking (registry errors etc.)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "verified": self.verified,
            "satisfiedAuthorities": list(self.satisfied_authorities),
            "signatures": [s.to_dict() for s in self.signatures],
            "attestations": [a.to_dict() for a in self.attestations],
            "errors": list(self.errors),
        }


# -- checking ------------------------------------------------------------------------------


def _annotation_mismatch(found: dict[str, Any], required: dict[str, str]) -> str | None:
    missing = [
        f"{key}={value}" for key, value in sorted(required.items()) if str(found.get(key)) != value
    ]
    if not missing:
        return None
    return f"required annotations not signed: {', '.join(missing)}"


def _statement_of(payload: bytes | None) -> dict[str, Any] | None:
    if payload is None:
        return None
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _subject_annotations(statement: dict[str, Any], digest: str) -> dict[str, Any]:
    """Annotations of the statement subject naming ``digest`` (cosign v3 puts ``-a`` there)."""
    algorithm, _, hex_part = digest.partition(":")
    for subject in statement.get("subject") or []:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if isinstance(digests, dict) and str(digests.get(algorithm, "")).lower() == hex_part:
            annotations = subject.get("annotations")
            return dict(annotations) if isinstance(annotations, dict) else {}
    return {}


def _statement_problems(statement: dict[str, Any] | None, digest: str) -> list[str]:
    if statement is None:
        return ["payload is not an in-toto Statement (not a JSON object)"]
    problems = []
    statement_type = statement.get("_type")  # signed yet hostile: any JSON value
    if not isinstance(statement_type, str) or statement_type not in STATEMENT_TYPES:
        problems.append(f"statement _type {statement.get('_type')!r} is not an in-toto Statement")
    if not subject_matches(statement, digest):
        problems.append(f"statement has no subject with the image digest {digest}")
    predicate_type = statement.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        problems.append("statement has no predicateType")
    return problems


class _Checker:
    """Checks found signatures of one image digest against every authority of a policy."""

    def __init__(self, policy: VerificationPolicy, digest: str) -> None:
        self.policy = policy
        self.digest = digest
        self.keys: dict[str, keys.PublicKey] = {}
        self.roots: dict[str, TrustRoot] = {}
        for authority in policy.authorities:
            # Load (and so validate) all trust material before looking at signatures.
            if authority.trusted_root or isinstance(authority, KeylessAuthority):
                self.roots[authority.name] = load_trusted_root(authority.trusted_root)
            if isinstance(authority, KeyAuthority):
                self.keys[authority.name] = keys.load_public_key(
                    authority.public_key_pem, what=f"authority {authority.name}"
                )
            else:
                IdentityPolicy(
                    subject=authority.subject,
                    subject_regexp=authority.subject_regexp,
                    issuer=authority.issuer,
                    issuer_regexp=authority.issuer_regexp,
                )

    def _root_for(self, authority: Authority) -> TrustRoot:
        return self.roots.get(authority.name) or load_trusted_root(None)

    # -- Sigstore bundles (OCI referrers) --------------------------------------------------

    def bundle(self, found: FoundBundle) -> CheckResult:
        try:
            parsed = parse_bundle(found.bundle_json, what=f"bundle {found.location}")
        except SignatureFormatError as err:
            return self._result("signature", "bundle", found.location, [str(err)], {}, {})
        if parsed.envelope is None:
            return self._result(
                "signature",
                "bundle",
                found.location,
                ["bundle holds a message signature; image signatures are DSSE in-toto statements"],
                {},
                {},
            )
        statement = _statement_of(parsed.envelope.payload)
        predicate_type = statement.get("predicateType") if statement else None
        kind = "signature" if predicate_type == SIGN_PREDICATE_TYPE else "attestation"
        common = []
        if parsed.envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
            common.append(
                f"DSSE payloadType is {parsed.envelope.payload_type!r}, not {IN_TOTO_PAYLOAD_TYPE!r}"
            )
        common += _statement_problems(statement, self.digest)
        signed_annotations = _subject_annotations(statement or {}, self.digest)
        if kind == "signature":
            mismatch = _annotation_mismatch(signed_annotations, self.policy.required_annotations)
            if mismatch:
                common.append(mismatch)
        per_authority: dict[str, list[str]] = {}
        tlog = parsed.tlog_entries[0].summary() if parsed.tlog_entries else None
        for authority in self.policy.authorities:
            mode = authority.tlog if isinstance(authority, KeyAuthority) else TLOG_IF_PRESENT
            outcome = verify_bundle(
                parsed,
                authority,
                artifact_digest=self.digest,
                payload_type=IN_TOTO_PAYLOAD_TYPE,
                trusted_root=self.roots.get(authority.name),
                require_tlog=mode == TLOG_REQUIRED,
                ignore_tlog=mode == TLOG_IGNORED,
            )
            per_authority[authority.name] = list(outcome.reasons) if not outcome.verified else []
        signer: dict[str, Any] = {"type": "key", "keyId": parsed.public_key_hint}
        if parsed.certificate is not None:
            identity = certificate_identity(parsed.certificate)
            signer = {"type": "keyless", "subject": identity.subject, "issuer": identity.issuer}
        return self._result(
            kind,
            "bundle",
            found.location,
            common,
            per_authority,
            signed_annotations,
            signer=signer,
            statement=statement,
            predicate_type=predicate_type if isinstance(predicate_type, str) else None,
            tlog=tlog,
        )

    # -- cosign legacy .sig / .att layers -------------------------------------------------

    def legacy_signature(self, entry: LegacyEntry) -> CheckResult:
        common: list[str] = []
        optional: dict[str, Any] = {}
        try:
            signature = decode_base64(entry.signature_b64, what="signature annotation")
        except SignatureFormatError as err:
            return self._result("signature", "legacy", entry.location, [str(err)], {}, {})
        try:
            payload = parse_payload(entry.payload)
            optional = payload.optional
            if payload.manifest_digest != self.digest:
                common.append(
                    f"payload names image {payload.manifest_digest}, not {self.digest} "
                    "(signature copied from another image?)"
                )
            if payload.type.lower() != SIMPLE_SIGNING_TYPE:
                common.append(f"payload type {payload.type!r} is not {SIMPLE_SIGNING_TYPE!r}")
            mismatch = _annotation_mismatch(optional, self.policy.required_annotations)
            if mismatch:
                common.append(mismatch)
        except SignatureFormatError as err:
            common.append(str(err))
        if entry.media_type != mt.COSIGN_SIMPLESIGNING:
            common.append(f"layer media type {entry.media_type!r} is not a simple-signing payload")

        def check_log(log_entry: TlogEntry, verifier: Any) -> None:
            check_hashedrekord(
                log_entry,
                signature=signature,
                digest=hashlib.sha256(entry.payload).digest(),
                verifier=verifier,
            )

        return self._legacy(
            entry, "signature", common, entry.payload, (signature,), check_log, optional
        )

    def legacy_attestation(self, entry: LegacyEntry) -> CheckResult:
        common: list[str] = []
        try:
            envelope = Envelope.parse(entry.payload, what="DSSE envelope")
        except SignatureFormatError as err:
            return self._result("attestation", "legacy", entry.location, [str(err)], {}, {})
        statement = _statement_of(envelope.payload)
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
            common.append(
                f"DSSE payloadType is {envelope.payload_type!r}, not {IN_TOTO_PAYLOAD_TYPE!r}"
            )
        common += _statement_problems(statement, self.digest)
        predicate_type = statement.get("predicateType") if statement else None
        declared = entry.annotations.get(PREDICATE_TYPE_ANNOTATION)
        if declared is not None and declared != predicate_type:
            common.append(
                f"layer annotation predicateType {declared!r} differs from the signed "
                f"statement's {predicate_type!r}"
            )
        signatures = tuple(s.sig for s in envelope.signatures)

        def check_log(log_entry: TlogEntry, verifier: Any) -> None:
            check_dsse(
                log_entry,
                payload=envelope.payload,
                signatures=signatures,
                verifier=verifier,
                pae=envelope.pae(),
            )

        return self._legacy(
            entry,
            "attestation",
            common,
            envelope.pae(),
            signatures,
            check_log,
            {},
            statement=statement,
            predicate_type=predicate_type if isinstance(predicate_type, str) else None,
        )

    def _legacy(
        self,
        entry: LegacyEntry,
        kind: str,
        common: list[str],
        signed: bytes,
        signatures: tuple[bytes, ...],
        check_log: Any,
        signed_annotations: dict[str, Any],
        **extra: Any,
    ) -> CheckResult:
        log_entry: TlogEntry | None = None
        log_problem = None
        if entry.rekor_bundle:
            try:
                log_entry = parse_cosign_bundle(entry.rekor_bundle)
            except SignatureFormatError as err:
                log_problem = str(err)
        cert: x509.Certificate | None = None
        chain: tuple[x509.Certificate, ...] = ()
        cert_problem = None
        if entry.certificate_pem:
            try:
                cert = x509.load_pem_x509_certificate(entry.certificate_pem)
                if entry.chain_pem:
                    chain = tuple(x509.load_pem_x509_certificates(entry.chain_pem))
            except ValueError as err:
                cert_problem = f"certificate annotation is unreadable ({err})"
        per_authority: dict[str, list[str]] = {}
        for authority in self.policy.authorities:
            reasons: list[str] = []
            if isinstance(authority, KeyAuthority):
                key = self.keys[authority.name]
                if not any(
                    keys.verify_bytes_signature(key, sig, signed, authority.hash_algorithm)
                    for sig in signatures
                ):
                    reasons.append("signature does not verify with the key")
                elif authority.tlog == TLOG_IGNORED:
                    pass  # cosign's --insecure-ignore-tlog: the Rekor bundle is not looked at
                elif log_problem:
                    reasons.append(log_problem)
                elif log_entry is not None:
                    reasons += self._log_reasons(log_entry, authority, key, check_log)
                elif authority.tlog == TLOG_REQUIRED:
                    reasons.append(NO_TLOG_ENTRY)
            else:
                if log_problem:
                    reasons.append(log_problem)
                reasons += self._keyless_legacy(
                    authority, cert, cert_problem, chain, log_entry, signed, signatures, check_log
                )
            per_authority[authority.name] = reasons
        if cert is not None:
            identity = certificate_identity(cert)
            signer = {"type": "keyless", "subject": identity.subject, "issuer": identity.issuer}
        else:
            matching = [
                keys.key_id(self.keys[name])
                for name, reasons in per_authority.items()
                if name in self.keys and not reasons
            ]
            signer = {"type": "key", "keyId": matching[0] if matching else None}
        return self._result(
            kind,
            "legacy",
            entry.location,
            common,
            per_authority,
            signed_annotations,
            signer=signer,
            tlog=log_entry.summary() if log_entry else None,
            **extra,
        )

    def _log_reasons(
        self, log_entry: TlogEntry, authority: Authority, verifier: Any, check_log: Any
    ) -> list[str]:
        try:
            verify_entry(log_entry, self._root_for(authority), require_proof=False)
            check_log(log_entry, verifier)
        except TlogError as err:
            return [f"transparency log: {err}"]
        return []

    def _keyless_legacy(
        self,
        authority: KeylessAuthority,
        cert: x509.Certificate | None,
        cert_problem: str | None,
        chain: tuple[x509.Certificate, ...],
        log_entry: TlogEntry | None,
        signed: bytes,
        signatures: tuple[bytes, ...],
        check_log: Any,
    ) -> list[str]:
        if cert_problem:
            return [cert_problem]
        if cert is None:
            return ["signed with a key, not keylessly (no certificate annotation)"]
        if log_entry is None:
            return ["no transparency-log entry (keyless signatures need a Rekor bundle)"]
        root = self._root_for(authority)
        try:
            moment = verify_entry(log_entry, root, require_proof=False)
            check_log(log_entry, cert)
        except TlogError as err:
            return [f"transparency log: {err}"]
        if moment is None:
            return ["transparency-log entry has no verified signing time"]
        reasons = []
        try:
            verify_certificate(
                cert,
                root,
                moment,
                IdentityPolicy(
                    subject=authority.subject,
                    subject_regexp=authority.subject_regexp,
                    issuer=authority.issuer,
                    issuer_regexp=authority.issuer_regexp,
                ),
                untrusted_intermediates=chain,
            )
        except CertificateError as err:
            reasons.append(str(err))
        key = cert.public_key()
        if not isinstance(
            key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
        ) or not any(keys.verify_bytes_signature(key, sig, signed) for sig in signatures):
            reasons.append("signature does not verify with the certificate's key")
        return reasons

    # -- results ----------------------------------------------------------------------------

    def _result(
        self,
        kind: str,
        storage: str,
        location: str,
        common: list[str],
        per_authority: dict[str, list[str]],
        signed_annotations: dict[str, Any],
        *,
        signer: dict[str, Any] | None = None,
        statement: dict[str, Any] | None = None,
        predicate_type: str | None = None,
        tlog: dict[str, Any] | None = None,
    ) -> CheckResult:
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
            signer=signer or {"type": "unknown"},
            predicate_type=predicate_type,
            statement=statement,
            annotations=dict(signed_annotations),
            tlog=tlog,
        )


# -- the entry point ---------------------------------------------------------------------------


def verify_image(
    target: str | ImageReference | LayoutReference,
    policy: VerificationPolicy,
    *,
    store: ImageStore | None = None,
    options: RegistryOptions | None = None,
    deadline: Deadline | None = None,
    attestations: bool = True,
    resolve: bool = True,
) -> ImageVerification:
    """Find and check every signature (and attestation) of an image against ``policy``.

    A tag is resolved to its digest first; signatures must name that digest.  A
    reference with a digest is looked up too, unless ``resolve`` is false: callers
    that just resolved the tag (or take a pinned digest as given) skip that round
    trip, since every signature is checked against the digest either way.  Never
    raises for a bad signature (that is a failed :class:`CheckResult`); raises
    :class:`~attest.errors.AttestError` subclasses for unusable input (bad keys or
    trusted roots, unparseable references) and registry failures, and
    :class:`~attest.errors.DeadlineExceeded` when ``deadline`` runs out.
    """
    reference = parse_image_target(target) if isinstance(target, str) else target
    deadline = deadline or Deadline.after(options.timeout if options else None)
    own_store = store is None
    active = store or open_store(reference, options, deadline=deadline)
    try:
        deadline.check(f"verify {reference}")
        if not resolve and isinstance(reference, ImageReference) and reference.digest:
            digest = reference.digest
        else:
            digest = active.resolve(identifier_for(reference, active)).digest
        checker = _Checker(policy, digest)  # bad keys or roots fail before any more fetching
        found = find_signatures(active, digest, attestations=attestations)
        deadline.check(f"verify {reference}")
    finally:
        if own_store:
            active.close()
    return _evaluate(str(reference), digest, found, checker, attestations=attestations)


def check_signatures(
    reference: str,
    digest: str,
    found: FoundSignatures,
    policy: VerificationPolicy,
    *,
    attestations: bool = True,
) -> ImageVerification:
    """Check signatures already fetched with :func:`~attest.signing.storage.find_signatures`.

    No network: callers that cache what a registry holds (admission) re-check here.
    """
    return _evaluate(reference, digest, found, _Checker(policy, digest), attestations=attestations)


def _evaluate(
    reference: str,
    digest: str,
    found: FoundSignatures,
    checker: _Checker,
    *,
    attestations: bool,
) -> ImageVerification:
    checked = [checker.bundle(b) for b in found.bundles]
    checked += [checker.legacy_signature(e) for e in found.legacy_signatures]
    if attestations:
        checked += [checker.legacy_attestation(e) for e in found.legacy_attestations]
    signatures = tuple(c for c in checked if c.kind == "signature")
    found_attestations = tuple(c for c in checked if c.kind == "attestation")
    policy = checker.policy
    satisfied = tuple(
        a.name for a in policy.authorities if any(s.authority == a.name for s in signatures)
    )
    return ImageVerification(
        reference=reference,
        digest=digest,
        signatures=signatures,
        attestations=found_attestations if attestations else (),
        satisfied_authorities=satisfied,
        verified=len(satisfied) >= policy.threshold,
        errors=found.problems,
    )
