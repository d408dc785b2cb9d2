"""Store and find an image's signatures and attestations, in both of cosign's formats.

*Bundle* storage (cosign v3's default): a Sigstore bundle v0.3 blob in an OCI
manifest with ``artifactType`` ``application/vnd.dev.sigstore.bundle.v0.3+json``,
the empty config and ``subject`` = the image, found through the referrers API
or the referrers tag schema.  An image signature is a DSSE envelope over an
in-toto Statement whose subject is the image digest and whose predicate type is
``https://sigstore.dev/cosign/sign/v1`` (``-a`` annotations go on the subject);
an attestation is the same with the caller's Statement.  *Legacy* storage is
cosign's ``sha256-<hex>.sig``/``.att`` tags (:mod:`attest.signing.legacy`).
Both work for registries and ``oci:`` layouts, since both are an ImageStore.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from attest.attestations.predicates import SIGN_PREDICATE_TYPE
from attest.attestations.statement import (
    IN_TOTO_PAYLOAD_TYPE,
    check_statement_for,
    signature_statement,
)
from attest.deadline import Deadline
from attest.errors import (
    AttestError,
    DeadlineExceeded,
    ManifestError,
    SigningError,
)
from attest.oci import mediatypes as mt
from attest.oci.access import ResolvedImage
from attest.oci.digest import digest_hex
from attest.oci.manifest import EMPTY_DESCRIPTOR, Descriptor, FetchedManifest, Manifest
from attest.oci.referrers import list_referrers, push_referrer
from attest.oci.store import ImageStore, read_blob
from attest.signing import legacy as cosign_tags
from attest.signing.bundle import make_bundle
from attest.signing.payload import make_payload
from attest.signing.result import CheckKind
from attest.signing.signer import Signer

BUNDLE_CONTENT_ANNOTATION = "dev.sigstore.bundle.content"
BUNDLE_PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
TITLE_ANNOTATION = "org.opencontainers.image.title"
MAX_BUNDLE_BYTES = 16 * 1024 * 1024  # SBOM attestations can be large
MAX_REFERRERS = 1000
T = TypeVar("T")


@dataclass(frozen=True)
class SignedImage:
    """What gets signed: the image's repository name and its (top-level) descriptor."""

    name: str
    descriptor: Descriptor

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    @classmethod
    def of(cls, image: ResolvedImage | SignedImage) -> SignedImage:
        if isinstance(image, SignedImage):
            return image
        return cls(image.name, image.descriptor)


# -- writing ---------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def push_bundle(
    store: ImageStore,
    subject: Descriptor,
    bundle_json: bytes,
    *,
    content: str = "dsse-envelope",
    predicate_type: str | None = None,
) -> str:
    """Push a Sigstore bundle as a referrer of ``subject``; returns ``store@manifest-digest``."""
    layer = Descriptor.for_bytes(mt.SIGSTORE_BUNDLE_V03, bundle_json)
    layer = Descriptor(
        layer.media_type,
        layer.digest,
        layer.size,
        annotations={TITLE_ANNOTATION: f"sha256-{digest_hex(layer.digest)}.sigstore.json"},
    )
    annotations = {BUNDLE_CONTENT_ANNOTATION: content, mt.ANNOTATION_CREATED: _now()}
    if predicate_type:
        annotations[BUNDLE_PREDICATE_ANNOTATION] = predicate_type
    store.push_blob(EMPTY_DESCRIPTOR, data=mt.EMPTY_JSON)
    store.push_blob(layer, data=bundle_json)
    manifest = Manifest(
        mt.OCI_MANIFEST,
        EMPTY_DESCRIPTOR,
        (layer,),
        annotations=annotations,
        subject=Descriptor(subject.media_type, subject.digest, subject.size),
        artifact_type=mt.SIGSTORE_BUNDLE_V03,
    )
    pushed = push_referrer(store, manifest)
    return f"{store.display}@{pushed.digest}"


def attach_signature(
    store: ImageStore,
    image: ResolvedImage | SignedImage,
    signer: Signer,
    *,
    annotations: dict[str, str] | None = None,
    legacy: bool = False,
) -> str:
    """Sign the image digest and store the signature; returns where it went."""
    target = SignedImage.of(image)
    annotations = dict(annotations or {})
    if legacy:
        payload = make_payload(target.name, target.digest, annotations)
        material = signer.sign(payload)
        return cosign_tags.append_layer(
            store,
            cosign_tags.signature_tag(target.digest, "sig"),
            mt.COSIGN_SIMPLESIGNING,
            payload,
            cosign_tags.layer_annotations(material, attestation=False),
        )
    statement = signature_statement(target.digest, annotations, name=target.name)
    material = signer.sign_dsse(IN_TOTO_PAYLOAD_TYPE, statement)
    return push_bundle(
        store, target.descriptor, make_bundle(material), predicate_type=SIGN_PREDICATE_TYPE
    )


def attach_attestation(
    store: ImageStore,
    image: ResolvedImage | SignedImage,
    statement_json: bytes,
    signer: Signer,
    legacy: bool = False,
) -> str:
    """DSSE-sign an in-toto Statement about the image and store it; returns where it went.

    The Statement must name the image digest as a subject.  Bundle storage pushes
    an OCI referrer; ``legacy`` appends a layer to cosign's ``.att`` manifest with
    the ``predicateType`` annotation.
    """
    target = SignedImage.of(image)
    statement = check_statement_for(statement_json, target.digest)
    predicate_type = statement["predicateType"]
    material = signer.sign_dsse(IN_TOTO_PAYLOAD_TYPE, statement_json)
    if legacy:
        if material.payload_type is None:
            raise SigningError(f"{signer.description}: signer returned no DSSE envelope")
        return cosign_tags.append_layer(
            store,
            cosign_tags.signature_tag(target.digest, "att"),
            mt.DSSE_ENVELOPE,
            material.envelope().to_json(),
            cosign_tags.layer_annotations(
                material, attestation=True, predicate_type=predicate_type
            ),
        )
    return push_bundle(
        store, target.descriptor, make_bundle(material), predicate_type=predicate_type
    )


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoundBundle:
    """A Sigstore bundle stored as a referrer of the image."""

    location: str
    bundle_json: bytes
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FoundSignatures:
    """Everything stored for one image digest, and the problems met while looking."""

    bundles: tuple[FoundBundle, ...]
    legacy_signatures: tuple[cosign_tags.LegacyEntry, ...]
    legacy_attestations: tuple[cosign_tags.LegacyEntry, ...]
    problems: tuple[str, ...]


def _read_bundle(store: ImageStore, descriptor: Descriptor, digest: str) -> FoundBundle:
    location = f"{store.display}@{descriptor.digest}"
    fetched = store.fetch_manifest(descriptor.digest)
    manifest = fetched.parsed
    if not isinstance(manifest, Manifest):
        raise ManifestError(f"{location}: referrer is an index, not a bundle manifest")
    if manifest.subject is None or manifest.subject.digest != digest:
        raise ManifestError(f"{location}: referrer's subject is not {digest}")
    layers = [layer for layer in manifest.layers if layer.media_type == mt.SIGSTORE_BUNDLE_V03]
    if len(layers) != 1:
        raise ManifestError(f"{location}: expected one Sigstore bundle layer, found {len(layers)}")
    return FoundBundle(
        location=location,
        bundle_json=read_blob(store, layers[0], limit=MAX_BUNDLE_BYTES),
        annotations=dict(manifest.annotations),
    )


def fetch_all(store: ImageStore, calls: list[Callable[[], T]]) -> list[T | AttestError]:
    """Run independent reads of ``store``; each result is the value or the AttestError raised.

    Registry stores (``parallel_reads``) run them concurrently on a shared pool, so
    the round trips overlap; other stores (layouts) read one after another.  A
    registry's ``read_slots`` (one semaphore per host) bound how many of the pool's
    threads it holds at once, across all callers: the caller waits for a slot (until
    the store's deadline), so a registry that stalls holds only its own slots.  Any
    other exception is a bug and propagates.
    """

    def attempt(call: Callable[[], T]) -> T | AttestError:
        try:
            return call()
        except AttestError as err:
            return err

    if len(calls) < 2 or not getattr(store, "parallel_reads", False):
        return [attempt(call) for call in calls]
    slots: threading.Semaphore | None = getattr(store, "read_slots", None)
    if slots is None:
        futures = [_fetch_pool().submit(attempt, call) for call in calls]
        return [future.result() for future in futures]
    deadline: Deadline = store.deadline  # type: ignore[attr-defined]

    def holding_slot(call: Callable[[], T]) -> T | AttestError:
        try:
            return attempt(call)
        finally:
            slots.release()

    results: list[concurrent.futures.Future[T | AttestError] | AttestError] = []
    for call in calls:
        if slots.acquire(timeout=deadline.remaining()):
            results.append(_fetch_pool().submit(holding_slot, call))
        else:
            results.append(
                DeadlineExceeded(
                    f"{store.display}: no read of this registry finished before the deadline "
                    "(all its parallel-read slots are busy)"
                )
            )
    return [r if isinstance(r, AttestError) else r.result() for r in results]


_POOL: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()
_POOL_THREADS = 32


def _fetch_pool() -> concurrent.futures.ThreadPoolExecutor:
    """This process's fetch pool, created on first use (a forked child makes its own: the
    parent's threads do not exist there)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            _POOL = (
                os.getpid(),
                concurrent.futures.ThreadPoolExecutor(
                    max_workers=_POOL_THREADS, thread_name_prefix="attest-fetch"
                ),
            )
        return _POOL[1]


def find_signatures(
    store: ImageStore, digest: str, *, attestations: bool = True
) -> FoundSignatures:
    """Every bundle referrer and legacy ``.sig`` (and ``.att``) entry stored for ``digest``.

    With ``attestations=False``, referrers listed as attestations and the ``.att`` tag
    are not fetched.  Two rounds of independent requests, each concurrent on
    registries: the referrers listing with the ``.sig``/``.att`` manifests, then
    every referrer bundle and legacy layer.  Results keep listing and layer order.
    """
    kinds: list[CheckKind] = ["signature", "attestation"] if attestations else ["signature"]
    first: list[Callable[[], Any]] = [
        functools.partial(list_referrers, store, digest, mt.SIGSTORE_BUNDLE_V03)
    ]
    first += [
        functools.partial(cosign_tags.fetch_entries_manifest, store, digest, k) for k in kinds
    ]
    listed = fetch_all(store, first)
    for result in listed:  # a registry failure while listing is the caller's error
        if isinstance(result, AttestError):
            raise result
    referrers: list[Descriptor] = listed[0]  # type: ignore[assignment]  # errors raised above
    problems: list[str] = []
    if len(referrers) > MAX_REFERRERS:
        problems.append(
            f"{store.display}@{digest}: only the first {MAX_REFERRERS} referrers were read"
        )
    # Only an optimisation (the listing's annotations are not signed): without
    # attestations, skip bundles the listing says are not image signatures.
    wanted = [
        descriptor
        for descriptor in referrers[:MAX_REFERRERS]
        if attestations
        or descriptor.annotations.get(BUNDLE_PREDICATE_ANNOTATION) in (None, SIGN_PREDICATE_TYPE)
    ]
    plans = [
        cosign_tags.EntriesPlan.of(store, digest, fetched, kind)
        for kind, fetched in zip(kinds, listed[1:], strict=True)
        if isinstance(fetched, FetchedManifest)  # None: no such tag
    ]
    reads: list[Callable[[], Any]] = [
        functools.partial(_read_bundle, store, d, digest) for d in wanted
    ]
    for plan in plans:
        reads.extend(plan.reads)
    results = fetch_all(store, reads)
    bundles: list[FoundBundle] = []
    for result in results[: len(wanted)]:
        if isinstance(result, AttestError):
            problems.append(str(result))
        else:
            bundles.append(result)
    legacy: dict[str, list[cosign_tags.LegacyEntry]] = {"signature": [], "attestation": []}
    offset = len(wanted)
    for plan in plans:
        entries, plan_problems = plan.finish(results[offset : offset + len(plan.reads)])
        offset += len(plan.reads)
        legacy[plan.kind] = entries
        problems.extend(plan_problems)
    return FoundSignatures(
        tuple(bundles),
        tuple(legacy["signature"]),
        tuple(legacy["attestation"]),
        tuple(problems),
    )
