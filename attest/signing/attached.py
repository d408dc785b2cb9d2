"""Everything attached to an image: find it, copy it with the image, delete it.

One inventory serves ``attest tree``, ``download``, ``copy``, ``clean`` and
``promote``: the image's OCI referrers (Sigstore bundles, and any other artifact
with ``subject`` = the image) and cosign's ``sha256-<hex>.sig``/``.att``/``.sbom``
tags.  Each attached manifest is listed with its layers, each layer classified
as a signature, an attestation (with its predicate type) or an SBOM.  The
classification reads annotations, which nobody signs: it is for listing and
selecting what to copy or delete, never for trust (that is :mod:`attest.verify`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from attest.attestations.predicates import SIGN_PREDICATE_TYPE
from attest.attestations.statement import IN_TOTO_PAYLOAD_TYPE
from attest.deadline import Deadline
from attest.errors import ManifestError, NotFound, UsageError
from attest.oci import mediatypes as mt
from attest.oci.access import identifier_for, open_store
from attest.oci.manifest import Descriptor, FetchedManifest, Index, Manifest
from attest.oci.reference import ImageReference, LayoutReference
from attest.oci.referrers import list_referrers, push_referrer, remove_referrer
from attest.oci.store import ImageStore
from attest.oci.transport import RegistryOptions
from attest.signing.legacy import PREDICATE_TYPE_ANNOTATION, signature_tag
from attest.signing.storage import BUNDLE_PREDICATE_ANNOTATION

log = logging.getLogger(__name__)

Kind = Literal["signature", "attestation", "sbom", "other"]
KINDS: tuple[Kind, ...] = ("signature", "attestation", "sbom", "other")
SBOM_PREDICATE_TYPES = frozenset(
    {
        "https://cyclonedx.org/bom",
        "https://spdx.dev/Document",
        "https://spdx.dev/Document/v2.3",
        "https://spdx.dev/Document/v3.0",
    }
)
SBOM_MEDIA_TYPES = frozenset(
    {
        "application/vnd.cyclonedx+json",
        "application/vnd.cyclonedx+xml",
        "application/spdx+json",
        "text/spdx",
        "text/spdx+xml",
    }
)
# cosign's tag suffixes and what each holds.
TAG_KINDS: dict[str, Kind] = {"sig": "signature", "att": "attestation", "sbom": "sbom"}
MAX_ATTACHED = 1000


@dataclass(frozen=True)
class AttachedLayer:
    """One entry of an attached manifest: a signature, an attestation or an SBOM."""

    kind: Kind
    descriptor: Descriptor
    predicate_type: str | None = None

    @property
    def is_sbom(self) -> bool:
        return self.kind == "sbom" or self.predicate_type in SBOM_PREDICATE_TYPES


@dataclass(frozen=True)
class AttachedManifest:
    """A manifest attached to the image: an OCI referrer, or a cosign ``.sig/.att/.sbom`` tag."""

    storage: Literal["referrer", "tag"]
    location: str  # "store@digest" (referrer) or "store:tag" (tag)
    fetched: FetchedManifest
    layers: tuple[AttachedLayer, ...]
    tag: str | None = None

    @property
    def digest(self) -> str:
        return self.fetched.digest

    def kinds(self) -> frozenset[Kind]:
        """What the manifest holds (an SBOM attestation counts as attestation and SBOM)."""
        kinds: set[Kind] = {layer.kind for layer in self.layers}
        if any(layer.is_sbom for layer in self.layers):
            kinds.add("sbom")
        return frozenset(kinds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "storage": self.storage,
            "location": self.location,
            "digest": self.digest,
            "mediaType": self.fetched.media_type,
            "artifactType": getattr(self.fetched.parsed, "artifact_type", None),
            "tag": self.tag,
            "layers": [
                {
                    "kind": layer.kind,
                    "digest": layer.descriptor.digest,
                    "mediaType": layer.descriptor.media_type,
                    "size": layer.descriptor.size,
                    "predicateType": layer.predicate_type,
                    "sbom": layer.is_sbom,
                }
                for layer in self.layers
            ],
        }


@dataclass(frozen=True)
class Attached:
    """What is attached to one image digest in one store."""

    store: str
    digest: str
    manifests: tuple[AttachedManifest, ...]
    problems: tuple[str, ...] = field(default_factory=tuple)

    def layers(self, kind: Kind) -> list[tuple[AttachedManifest, AttachedLayer]]:
        """Every layer of ``kind`` (``sbom`` includes SBOM attestations), in listing order."""
        return [
            (manifest, layer)
            for manifest in self.manifests
            for layer in manifest.layers
            if layer.kind == kind or (kind == "sbom" and layer.is_sbom)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": f"{self.store}@{self.digest}",
            "digest": self.digest,
            "attached": [m.to_dict() for m in self.manifests],
            "problems": list(self.problems),
        }


def _referrer_kind(manifest: Manifest | Index, layer: Descriptor) -> AttachedLayer:
    artifact_type = manifest.artifact_type or (
        manifest.config.media_type if isinstance(manifest, Manifest) else None
    )
    if artifact_type == mt.SIGSTORE_BUNDLE_V03 or layer.media_type == mt.SIGSTORE_BUNDLE_V03:
        predicate_type = manifest.annotations.get(BUNDLE_PREDICATE_ANNOTATION)
        if predicate_type in (None, SIGN_PREDICATE_TYPE):
            return AttachedLayer("signature", layer, predicate_type)
        return AttachedLayer("attestation", layer, predicate_type)
    if artifact_type in SBOM_MEDIA_TYPES or layer.media_type in SBOM_MEDIA_TYPES:
        return AttachedLayer("sbom", layer)
    if layer.media_type in (mt.DSSE_ENVELOPE, IN_TOTO_PAYLOAD_TYPE):
        return AttachedLayer("attestation", layer, layer.annotations.get(PREDICATE_TYPE_ANNOTATION))
    return AttachedLayer("other", layer)


def _tag_layer(kind: Kind, layer: Descriptor) -> AttachedLayer:
    predicate_type = layer.annotations.get(PREDICATE_TYPE_ANNOTATION)
    return AttachedLayer(kind, layer, predicate_type if kind == "attestation" else None)


def find_attached(store: ImageStore, digest: str) -> Attached:
    """Every referrer and cosign tag of ``digest`` in ``store`` (registry or layout).

    A manifest that cannot be read is a problem listed in the result, not an error:
    a listing shows what it can.  A registry failure while listing raises.
    """
    manifests: list[AttachedManifest] = []
    problems: list[str] = []
    referrers = list_referrers(store, digest)
    if len(referrers) > MAX_ATTACHED:
        problems.append(f"{store.display}@{digest}: only the first {MAX_ATTACHED} referrers read")
    for descriptor in referrers[:MAX_ATTACHED]:
        location = f"{store.display}@{descriptor.digest}"
        try:
            fetched = store.fetch_manifest(descriptor.digest)
        except (NotFound, ManifestError) as err:
            problems.append(f"{location}: unreadable referrer ({err})")
            continue
        parsed = fetched.parsed
        if parsed.subject is None or parsed.subject.digest != digest:
            problems.append(f"{location}: listed as a referrer but its subject is not {digest}")
            continue
        children = parsed.layers if isinstance(parsed, Manifest) else parsed.manifests
        layers = tuple(_referrer_kind(parsed, layer) for layer in children)
        manifests.append(AttachedManifest("referrer", location, fetched, layers))
    for suffix, kind in TAG_KINDS.items():
        tag = signature_tag(digest, suffix)
        try:
            fetched = store.fetch_manifest(tag)
        except NotFound:
            continue
        except ManifestError as err:
            problems.append(f"{store.display}:{tag}: unreadable ({err})")
            continue
        if not isinstance(fetched.parsed, Manifest):
            problems.append(f"{store.display}:{tag}: an index, not a cosign manifest")
            continue
        layers = tuple(_tag_layer(kind, layer) for layer in fetched.parsed.layers[:MAX_ATTACHED])
        manifests.append(
            AttachedManifest("tag", f"{store.display}:{tag}", fetched, layers, tag=tag)
        )
    return Attached(store.display, digest, tuple(manifests), tuple(problems))


# -- copying ----------------------------------------------------------------------------------


def copy_blob(source: ImageStore, destination: ImageStore, descriptor: Descriptor) -> None:
    """Copy one blob (verified against its digest while read), unless already there."""
    if destination.blob_exists(descriptor.digest):
        return
    handle, path = tempfile.mkstemp(prefix=".attest-copy-")
    try:
        with os.fdopen(handle, "wb") as out, source.open_blob(descriptor) as reader:
            while chunk := reader.read(1 << 20):
                out.write(chunk)
        destination.push_blob(descriptor, path=path)
    finally:
        os.unlink(path)


def copy_manifest(
    source: ImageStore, destination: ImageStore, fetched: FetchedManifest, tag: str | None = None
) -> Descriptor:
    """Copy a manifest with everything it references (index children first), byte for byte:
    the destination digest is the source digest."""
    parsed = fetched.parsed
    if isinstance(parsed, Index):
        for child in parsed.manifests:
            copy_manifest(source, destination, source.fetch_manifest(child.digest))
    else:
        for blob in (parsed.config, *parsed.layers):
            copy_blob(source, destination, blob)
    pushed = destination.push_manifest(fetched.raw, fetched.media_type, tag)
    if pushed.digest != fetched.digest:  # a store that rewrote the bytes: never silently
        raise ManifestError(
            f"{destination.display}: stored {fetched.digest} as {pushed.digest}; digest not kept"
        )
    return pushed


def copy_attached(
    source: ImageStore, destination: ImageStore, attached: Attached, kinds: Iterable[Kind] = KINDS
) -> list[str]:
    """Copy the attached manifests holding any of ``kinds``; returns where each went."""
    wanted = set(kinds)
    copied: list[str] = []
    for manifest in attached.manifests:
        if not manifest.kinds() & wanted:
            continue
        parsed = manifest.fetched.parsed
        if manifest.storage == "tag":
            copy_manifest(source, destination, manifest.fetched, manifest.tag)
            copied.append(f"{destination.display}:{manifest.tag}")
            continue
        if isinstance(parsed, Manifest):
            for blob in (parsed.config, *parsed.layers):
                copy_blob(source, destination, blob)
        else:
            for child in parsed.manifests:
                copy_manifest(source, destination, source.fetch_manifest(child.digest))
        pushed = push_referrer(destination, parsed, raw=manifest.fetched.raw)
        copied.append(f"{destination.display}@{pushed.digest}")
    return copied


def image_digests(store: ImageStore, fetched: FetchedManifest) -> list[str]:
    """The digest of an image and, for an index, of each platform manifest (cosign
    ``sign --recursive`` signs those too)."""
    digests = [fetched.digest]
    if isinstance(fetched.parsed, Index):
        digests += [child.digest for child in fetched.parsed.manifests]
    return digests


@contextlib.contextmanager
def opened(
    target: ImageReference | LayoutReference,
    options: RegistryOptions,
    deadline: Deadline,
    *,
    create: bool = False,
) -> Iterator[ImageStore]:
    """The store of ``target``, closed (a layout archive written) when the block ends."""
    store = open_store(target, options, create=create, deadline=deadline)
    with store:  # both kinds of store are context managers
        yield store


def copy_image(
    source: ImageReference | LayoutReference,
    destination: ImageReference | LayoutReference,
    options: RegistryOptions,
    kinds: Iterable[Kind] = KINDS,
    *,
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """Copy ``source`` (every platform) and what is attached to it to ``destination``,
    keeping the digest.  The destination tag defaults to the source's; a layout needs one.
    """
    kinds = tuple(kinds)
    deadline = deadline or Deadline.after(options.timeout)
    with contextlib.ExitStack() as stack:
        src_store = stack.enter_context(opened(source, options, deadline))
        top = src_store.fetch_manifest(identifier_for(source, src_store))
        if destination.digest and destination.digest != top.digest:
            raise UsageError(
                f"{destination}: names {destination.digest}, but {source} is {top.digest}"
            )
        tag = destination.tag or (source.tag if not destination.digest else None)
        if tag is None and isinstance(destination, LayoutReference):
            raise UsageError(f"{destination}: give a :TAG to copy into a layout")
        dst_store = stack.enter_context(opened(destination, options, deadline, create=True))
        copy_manifest(src_store, dst_store, top, tag)
        copied: list[str] = []
        for digest in image_digests(src_store, top):
            copied += copy_attached(src_store, dst_store, find_attached(src_store, digest), kinds)
    return {
        "source": f"{source.name}@{top.digest}",
        "destination": f"{destination.name}{':' + tag if tag else ''}@{top.digest}",
        "digest": top.digest,
        "mediaType": top.media_type,
        "size": len(top.raw),
        "attached": copied,
    }


# -- cleaning ----------------------------------------------------------------------------------


def clean_attached(store: ImageStore, attached: Attached, kinds: Iterable[Kind]) -> list[str]:
    """Delete the attached manifests holding any of ``kinds``; returns what was deleted.

    A cosign tag manifest mixing kinds goes whole when any of its kinds is asked for
    (cosign's ``clean`` does the same: a tag is one manifest).
    """
    wanted = set(kinds)
    if not wanted <= set(KINDS):
        raise UsageError(f"unknown attachment kinds: {', '.join(sorted(wanted - set(KINDS)))}")
    deleted: list[str] = []
    for manifest in attached.manifests:
        if not manifest.kinds() & wanted:
            continue
        if manifest.storage == "tag":
            assert manifest.tag is not None
            store.delete_manifest(manifest.tag)
        else:
            remove_referrer(store, attached.digest, manifest.digest)
        deleted.append(manifest.location)
    return deleted
