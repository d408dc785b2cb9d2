"""cosign's legacy signature storage: ``sha256-<hex>.sig`` and ``.att`` tags, written and checked.

Each tag names an OCI image manifest in the image's repository whose layers are
the signed payloads: a simple-signing payload per ``.sig`` layer, a DSSE
envelope per ``.att`` layer.  Layer annotations carry the base64 signature
(``dev.cosignproject.cosign/signature``; empty for ``.att``, whose signature is
inside the envelope), the Fulcio certificate and chain, the Rekor bundle (SET)
and, for attestations, the ``predicateType``.  New signatures are appended to
what is there, never replacing it; a concurrent writer is detected by reading
back and retrying a bounded number of times.  Reading an entry back,
:func:`check_signature` and :func:`check_attestation` check what the payload names
and hand the signature, certificate and log entry to :mod:`attest.signing.checks`,
the checks Sigstore bundles get too.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attest.attestations.statement import predicate_type_of
from attest.errors import AttestError, NotFound, RegistryError, SignatureFormatError, SigningError
from attest.oci import mediatypes as mt
from attest.oci.digest import digest_hex
from attest.oci.manifest import (
    EMPTY_DESCRIPTOR,
    Descriptor,
    FetchedManifest,
    Manifest,
    canonical_json,
)
from attest.oci.store import ImageStore, read_blob
from attest.signing.authority import KeyAuthority
from attest.signing.bundle import SignatureMaterial
from attest.signing.checks import (
    Evidence,
    Failed,
    TrustMaterial,
    annotation_mismatch,
    check_key,
    check_keyless,
    envelope_statement,
)
from attest.signing.dsse import Envelope, decode_base64
from attest.signing.payload import SIMPLE_SIGNING_TYPE, parse_payload
from attest.signing.result import CheckKind, CheckResult, check_result
from attest.signing.tlog import TlogEntry

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
PREDICATE_TYPE_ANNOTATION = "predicateType"
MAX_LAYERS = 1000
MAX_LAYER_BYTES = 4 * 1024 * 1024
_WRITE_ATTEMPTS = 4


def signature_tag(digest: str, suffix: str = "sig") -> str:
    """cosign's tag for signatures (``sig``), attestations (``att``) of ``digest``."""
    algorithm = digest.split(":", 1)[0]
    return f"{algorithm}-{digest_hex(digest)}.{suffix}"


@dataclass(frozen=True)
class LegacyEntry:
    """One layer of a ``.sig``/``.att`` manifest, read back from the store."""

    kind: CheckKind
    location: str  # "<store>@<manifest digest>" and the layer digest
    media_type: str
    payload: bytes  # the simple-signing payload, or the DSSE envelope JSON
    signature_b64: str
    certificate_pem: bytes | None
    chain_pem: bytes | None
    rekor_bundle: str | None
    annotations: dict[str, str] = field(default_factory=dict)


def cosign_bundle_annotation(entry: TlogEntry) -> str:
    """cosign's ``dev.sigstore.cosign/bundle`` value for a log entry with a SET."""
    if entry.signed_entry_timestamp is None or entry.integrated_time is None:
        raise SigningError("the transparency-log entry has no signed entry timestamp to store")
    document = {
        "SignedEntryTimestamp": base64.b64encode(entry.signed_entry_timestamp).decode(),
        "Payload": {
            "body": base64.b64encode(entry.body).decode(),
            "integratedTime": entry.integrated_time,
            "logIndex": entry.log_index,
            "logID": entry.log_id.hex(),
        },
    }
    return json.dumps(document, separators=(",", ":"))


def parse_cosign_bundle(text: str) -> TlogEntry:
    """Parse a ``dev.sigstore.cosign/bundle`` annotation into a log entry (SET, no proof)."""
    try:
        document = json.loads(text)
        payload = document["Payload"]
        body = base64.b64decode(payload["body"], validate=True)
        kind = json.loads(body)
        integrated, index = payload["integratedTime"], payload["logIndex"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (integrated, index)):
            raise ValueError("integratedTime and logIndex must be integers")
        return TlogEntry(
            log_index=index,
            log_id=bytes.fromhex(payload["logID"]),
            kind=str(kind["kind"]),
            version=str(kind["apiVersion"]),
            integrated_time=integrated,
            body=body,
            signed_entry_timestamp=base64.b64decode(
                document["SignedEntryTimestamp"], validate=True
            ),
        )
    except (KeyError, TypeError, ValueError, binascii.Error) as err:
        raise SignatureFormatError(f"Rekor bundle annotation is malformed ({err})") from None


def layer_annotations(
    material: SignatureMaterial,
    *,
    attestation: bool,
    predicate_type: str | None = None,
) -> dict[str, str]:
    """The cosign layer annotations for ``material`` (signature, certificate, chain, SET)."""
    annotations = {
        SIGNATURE_ANNOTATION: "" if attestation else base64.b64encode(material.signature).decode()
    }
    if material.certificate is not None:
        cert = x509.load_der_x509_certificate(material.certificate)
        annotations[CERTIFICATE_ANNOTATION] = cert.public_bytes(serialization.Encoding.PEM).decode()
        if material.chain:
            annotations[CHAIN_ANNOTATION] = "".join(
                x509.load_der_x509_certificate(der)
                .public_bytes(serialization.Encoding.PEM)
                .decode()
                for der in material.chain
            )
    with_set = [e for e in material.tlog_entries if e.signed_entry_timestamp is not None]
    if with_set:
        annotations[BUNDLE_ANNOTATION] = cosign_bundle_annotation(with_set[0])
    elif material.tlog_entries:
        # cosign's annotation carries a Rekor v1 SET; dropping a v2 entry would store a
        # signature that looks logged to its signer and unlogged to every verifier.
        raise SigningError(
            "legacy .sig/.att storage needs a Rekor v1 entry (with a signed entry timestamp); "
            "this log gave none: store a bundle instead (drop --legacy)"
        )
    if predicate_type:
        annotations[PREDICATE_TYPE_ANNOTATION] = predicate_type
    return annotations


def _current_layers(store: ImageStore, tag: str) -> list[Descriptor]:
    try:
        fetched = store.fetch_manifest(tag)
    except NotFound:
        return []
    if not isinstance(fetched.parsed, Manifest):
        raise SigningError(f"{store.display}:{tag} is an index, not a cosign signature manifest")
    return list(fetched.parsed.layers)


def _config_for(layers: list[Descriptor]) -> bytes:
    """A minimal image config naming the layers, as cosign writes for signature images."""
    return canonical_json(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
        }
    )


def _same_entry(a: Descriptor, b: Descriptor) -> bool:
    return a.digest == b.digest and a.annotations.get(SIGNATURE_ANNOTATION) == b.annotations.get(
        SIGNATURE_ANNOTATION
    )


def append_layer(
    store: ImageStore, tag: str, media_type: str, content: bytes, annotations: dict[str, str]
) -> str:
    """Add one layer to the manifest at ``tag`` (creating it); returns ``store@manifest-digest``."""
    layer = Descriptor.for_bytes(media_type, content, annotations=annotations)
    store.push_blob(layer, data=content)
    for _attempt in range(_WRITE_ATTEMPTS):
        layers = _current_layers(store, tag)
        if not any(_same_entry(existing, layer) for existing in layers):
            layers.append(layer)
        if len(layers) > MAX_LAYERS:
            raise SigningError(f"{store.display}:{tag} already holds {MAX_LAYERS} entries")
        config_bytes = _config_for(layers)
        config = Descriptor.for_bytes(mt.OCI_CONFIG, config_bytes)
        store.push_blob(config, data=config_bytes)
        manifest = Manifest(mt.OCI_MANIFEST, config, tuple(layers))
        pushed = store.push_manifest(manifest.to_bytes(), mt.OCI_MANIFEST, tag)
        # Another signer may have replaced the tag between our read and write: check and redo.
        if any(_same_entry(existing, layer) for existing in _current_layers(store, tag)):
            return f"{store.display}@{pushed.digest}"
    raise RegistryError(f"{store.display}:{tag}: kept changing under concurrent writers")


def fetch_entries_manifest(
    store: ImageStore, digest: str, kind: CheckKind
) -> FetchedManifest | None:
    """The ``.sig``/``.att`` manifest of ``digest``, or ``None`` when the tag does not exist."""
    try:
        return store.fetch_manifest(signature_tag(digest, _SUFFIX[kind]))
    except NotFound:
        return None


_SUFFIX: dict[CheckKind, str] = {"signature": "sig", "attestation": "att"}


@dataclass(frozen=True)
class EntriesPlan:
    """The layer reads a fetched ``.sig``/``.att`` manifest needs, and how to turn them into
    entries: callers may run ``reads`` in any way (concurrently) and hand the results,
    in order (each payload or the :class:`AttestError` it raised), to :meth:`finish`."""

    kind: CheckKind
    location: str
    layers: tuple[tuple[int, Descriptor], ...]
    reads: tuple[Callable[[], bytes], ...]
    problems: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, store: ImageStore, digest: str, fetched: FetchedManifest, kind: CheckKind
    ) -> EntriesPlan:
        location = f"{store.display}@{fetched.digest}"
        if not isinstance(fetched.parsed, Manifest):
            tag = signature_tag(digest, _SUFFIX[kind])
            problem = f"{store.display}:{tag} is an index, not a cosign signature manifest"
            return cls(kind, location, (), (), (problem,))
        layers = tuple(
            (index, layer)
            for index, layer in enumerate(fetched.parsed.layers[:MAX_LAYERS])
            if not (layer.digest == EMPTY_DESCRIPTOR.digest and layer.media_type == mt.OCI_EMPTY)
        )
        reads = tuple(
            functools.partial(read_blob, store, layer, limit=MAX_LAYER_BYTES)
            for _index, layer in layers
        )
        return cls(kind, location, layers, reads)

    def finish(self, contents: list[bytes | AttestError]) -> tuple[list[LegacyEntry], list[str]]:
        entries: list[LegacyEntry] = []
        problems = list(self.problems)
        for (index, layer), content in zip(self.layers, contents, strict=True):
            if isinstance(content, AttestError):
                problems.append(
                    f"{self.location} layer {index} ({layer.digest}): unreadable ({content})"
                )
                continue
            annotations = dict(layer.annotations)
            certificate = annotations.get(CERTIFICATE_ANNOTATION)
            chain = annotations.get(CHAIN_ANNOTATION)
            entries.append(
                LegacyEntry(
                    kind=self.kind,
                    location=f"{self.location} layer {index}",
                    media_type=layer.media_type,
                    payload=content,
                    signature_b64=annotations.get(SIGNATURE_ANNOTATION, ""),
                    certificate_pem=certificate.encode() if certificate else None,
                    chain_pem=chain.encode() if chain else None,
                    rekor_bundle=annotations.get(BUNDLE_ANNOTATION),
                    annotations=annotations,
                )
            )
        return entries, problems


# -- checking entries read back --------------------------------------------------------------


def check_signature(entry: LegacyEntry, digest: str, trust: TrustMaterial) -> CheckResult:
    """Check a ``.sig`` layer: a simple-signing payload naming the image ``digest``, signed."""
    common: list[str] = []
    optional: dict[str, Any] = {}
    try:
        signature = decode_base64(entry.signature_b64, what="signature annotation")
    except SignatureFormatError as err:
        return check_result("signature", "legacy", entry.location, [str(err)], {})
    try:
        payload = parse_payload(entry.payload)
        optional = payload.optional
        if payload.manifest_digest != digest:
            common.append(
                f"payload names image {payload.manifest_digest}, not {digest} "
                "(signature copied from another image?)"
            )
        if payload.type.lower() != SIMPLE_SIGNING_TYPE:
            common.append(f"payload type {payload.type!r} is not {SIMPLE_SIGNING_TYPE!r}")
        mismatch = annotation_mismatch(optional, trust.policy.required_annotations)
        if mismatch:
            common.append(mismatch)
    except SignatureFormatError as err:
        common.append(str(err))
    if entry.media_type != mt.COSIGN_SIMPLESIGNING:
        common.append(f"layer media type {entry.media_type!r} is not a simple-signing payload")
    evidence = Evidence(signatures=(signature,), message=entry.payload)
    return _check(entry, "signature", common, evidence, trust, annotations=optional)


def check_attestation(entry: LegacyEntry, digest: str, trust: TrustMaterial) -> CheckResult:
    """Check an ``.att`` layer: a DSSE envelope over an in-toto Statement about ``digest``."""
    try:
        envelope = Envelope.parse(entry.payload, what="DSSE envelope")
    except SignatureFormatError as err:
        return check_result("attestation", "legacy", entry.location, [str(err)], {})
    statement, common = envelope_statement(envelope, digest)
    predicate_type = predicate_type_of(statement) if statement else None
    declared = entry.annotations.get(PREDICATE_TYPE_ANNOTATION)
    if declared is not None and declared != predicate_type:
        common.append(
            f"layer annotation predicateType {declared!r} differs from the signed "
            f"statement's {predicate_type!r}"
        )
    evidence = Evidence(signatures=tuple(s.sig for s in envelope.signatures), envelope=envelope)
    return _check(
        entry,
        "attestation",
        common,
        evidence,
        trust,
        statement=statement,
        predicate_type=predicate_type,
    )


def _check(
    entry: LegacyEntry,
    kind: CheckKind,
    common: list[str],
    signed: Evidence,
    trust: TrustMaterial,
    *,
    annotations: dict[str, Any] | None = None,
    statement: dict[str, Any] | None = None,
    predicate_type: str | None = None,
) -> CheckResult:
    """The entry's certificate and Rekor bundle annotations join its signature, and every
    authority checks the lot."""
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
    evidence = dataclasses.replace(
        signed,
        certificate=cert,
        chain=chain,
        tlog_entries=(log_entry,) if log_entry else (),
        tlog_problem=log_problem,
        require_proof=False,  # the annotation holds a SET, never an inclusion proof
    )
    per_authority: dict[str, list[str]] = {}
    verified_key = None
    for authority in trust.policy.authorities:
        try:
            if isinstance(authority, KeyAuthority):
                key = trust.key(authority)
                check_key(evidence, authority, key, trust.root(authority))
                verified_key = verified_key or key
            elif cert_problem:
                raise Failed(cert_problem)
            elif cert is None:
                raise Failed("signed with a key, not keylessly (no certificate annotation)")
            else:
                root = trust.root(authority)
                assert root is not None  # keyless roots are always loaded
                check_keyless(evidence, authority.identity, root)
        except Failed as err:
            per_authority[authority.name] = [str(err)]
        else:
            per_authority[authority.name] = []
    return check_result(
        kind,
        "legacy",
        entry.location,
        common,
        per_authority,
        signer=evidence.signer(verified_key, None),
        annotations=annotations,
        statement=statement,
        predicate_type=predicate_type,
        tlog=log_entry.summary() if log_entry else None,
    )
