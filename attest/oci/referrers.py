"""OCI referrers: artifacts (signatures, attestations, SBOMs) that point at an image.

Reading uses ``GET /v2/<name>/referrers/<digest>`` where the registry has it and
otherwise the OCI *referrers tag schema*: an image index tagged
``sha256-<hex>`` listing the referrers.  Writing pushes the artifact manifest
(with ``subject``) by digest, then — unless the registry confirms it indexed the
subject itself — adds it to that fallback index.  Layouts always use the tag
schema.
"""

from __future__ import annotations

import logging

from attest.errors import NotFound, RegistryError
from attest.oci import mediatypes as mt
from attest.oci.digest import digest_hex
from attest.oci.manifest import Descriptor, Index, Manifest
from attest.oci.store import ImageStore

log = logging.getLogger(__name__)

_UPDATE_ATTEMPTS = 4


def fallback_tag(subject_digest: str) -> str:
    """The referrers tag schema tag for a subject: ``sha256-<hex>``."""
    algorithm = subject_digest.split(":", 1)[0]
    return f"{algorithm}-{digest_hex(subject_digest)}"


def _read_fallback(store: ImageStore, subject_digest: str) -> Index | None:
    try:
        fetched = store.fetch_manifest(fallback_tag(subject_digest))
    except NotFound:
        return None
    if not isinstance(fetched.parsed, Index):
        log.warning(
            "%s:%s is not an index; ignoring it as a referrers list",
            store.display,
            fallback_tag(subject_digest),
        )
        return None
    return fetched.parsed


def list_referrers(
    store: ImageStore, subject_digest: str, artifact_type: str | None = None
) -> list[Descriptor]:
    """Every referrer of ``subject_digest`` (optionally of one artifact type)."""
    listed = store.referrers_api(subject_digest, artifact_type)
    if listed is None:
        index = _read_fallback(store, subject_digest)
        listed = list(index.manifests) if index else []
    if artifact_type:
        listed = [d for d in listed if d.artifact_type == artifact_type]
    return listed


def _descriptor_for_index(descriptor: Descriptor, manifest: Manifest | Index) -> Descriptor:
    artifact_type = manifest.artifact_type
    if artifact_type is None and isinstance(manifest, Manifest):
        artifact_type = manifest.config.media_type
    return Descriptor(
        descriptor.media_type,
        descriptor.digest,
        descriptor.size,
        annotations=dict(manifest.annotations),
        artifact_type=artifact_type,
    )


def push_referrer(
    store: ImageStore, manifest: Manifest | Index, *, raw: bytes | None = None
) -> Descriptor:
    """Push an artifact manifest whose ``subject`` is set, and make it listable as a referrer.

    ``raw``: the manifest's exact bytes when copying one (keeps its digest).
    """
    if manifest.subject is None:
        raise ValueError("a referrer manifest needs a subject")
    raw = manifest.to_bytes() if raw is None else raw
    descriptor = store.push_manifest(raw, manifest.media_type)
    acknowledged = getattr(store, "last_push_subject_header", None)
    if acknowledged == manifest.subject.digest:
        return descriptor
    if store.referrers_api(manifest.subject.digest) is not None:
        return descriptor
    _update_fallback(
        store, manifest.subject.digest, add=_descriptor_for_index(descriptor, manifest)
    )
    return descriptor


def remove_referrer(store: ImageStore, subject_digest: str, digest: str) -> None:
    """Unlist a referrer from the fallback index and delete its manifest (best effort on the latter)."""
    if store.referrers_api(subject_digest) is None:
        _update_fallback(store, subject_digest, remove=digest)
    try:
        store.delete_manifest(digest)
    except (NotFound, RegistryError) as err:
        log.warning("could not delete referrer %s from %s: %s", digest, store.display, err)


def _update_fallback(
    store: ImageStore,
    subject_digest: str,
    *,
    add: Descriptor | None = None,
    remove: str | None = None,
) -> None:
    tag = fallback_tag(subject_digest)
    for _attempt in range(_UPDATE_ATTEMPTS):
        current = _read_fallback(store, subject_digest)
        entries = list(current.manifests) if current else []
        if add is not None:
            if any(e.digest == add.digest for e in entries):
                return
            entries.append(add)
        if remove is not None:
            if not any(e.digest == remove for e in entries):
                return
            entries = [e for e in entries if e.digest != remove]
        index = Index(mt.OCI_INDEX, tuple(entries), dict(current.annotations) if current else {})
        store.push_manifest(index.to_bytes(), mt.OCI_INDEX, tag)
        # Another writer may have replaced the index between our read and write: check and redo.
        after = _read_fallback(store, subject_digest)
        digests = {e.digest for e in after.manifests} if after else set()
        if (add is None or add.digest in digests) and (remove is None or remove not in digests):
            return
    raise RegistryError(
        f"{store.display}:{tag}: referrers index kept changing under concurrent writers"
    )
