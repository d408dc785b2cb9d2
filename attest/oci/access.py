"""Open any image target and resolve it to a pinned, platform-selected image."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from attest.deadline import Deadline
from attest.errors import ManifestError, UsageError
from attest.oci.layout import LayoutStore
from attest.oci.manifest import (
    DEFAULT_PLATFORM,
    Descriptor,
    FetchedManifest,
    Index,
    Manifest,
    Platform,
    select_platform,
)
from attest.oci.reference import DEFAULT_TAG, ImageReference, LayoutReference, Target, parse_target
from attest.oci.registry import RegistryRepository
from attest.oci.store import ImageStore, read_blob
from attest.oci.transport import RegistryClient, RegistryOptions

MAX_CONFIG_BYTES = 16 * 1024 * 1024


def open_store(
    target: ImageReference | LayoutReference,
    options: RegistryOptions | None = None,
    *,
    create: bool = False,
    deadline: Deadline | None = None,
    client: RegistryClient | None = None,
) -> ImageStore:
    """The store holding ``target``: a registry repository or a layout (created if asked)."""
    if isinstance(target, LayoutReference):
        return LayoutStore(target.path, archive=target.is_archive, create=create)
    options = options or RegistryOptions()
    client = client or RegistryClient(target.registry, options=options)
    return RegistryRepository(client, target.repository, deadline=deadline)


@dataclass(frozen=True)
class ResolvedImage:
    """An image pinned to its digest, with the manifest for the chosen platform."""

    target: ImageReference | LayoutReference
    descriptor: Descriptor
    top: FetchedManifest
    manifest: FetchedManifest
    platform: Platform | None

    @property
    def digest(self) -> str:
        """The digest of what the reference names (the index for multi-platform images)."""
        return self.descriptor.digest

    @property
    def name(self) -> str:
        """Repository name without tag/digest (``host/repo`` or ``oci:PATH``)."""
        return self.target.name

    @property
    def pinned(self) -> str:
        """``name@digest``."""
        return f"{self.target.name}@{self.digest}"

    @property
    def image_manifest(self) -> Manifest:
        assert isinstance(self.manifest.parsed, Manifest)
        return self.manifest.parsed


def identifier_for(target: ImageReference | LayoutReference, store: ImageStore) -> str:
    """What to ask the store for: the digest, else the tag, else the layout's only image."""
    if target.digest:
        return target.digest
    if target.tag:
        return target.tag
    if isinstance(store, LayoutStore):
        return store.default_identifier()
    return DEFAULT_TAG


def resolve_image(
    store: ImageStore, target: ImageReference | LayoutReference, platform: Platform | None = None
) -> ResolvedImage:
    """Fetch the top manifest and, for an index, the manifest of ``platform`` (default linux/amd64)."""
    identifier = identifier_for(target, store)
    top = store.fetch_manifest(identifier)
    manifest = top
    chosen: Platform | None = None
    if isinstance(top.parsed, Index):
        wanted = platform or DEFAULT_PLATFORM
        child = select_platform(top.parsed, wanted, what=str(target))
        manifest = store.fetch_manifest(child.digest)
        chosen = child.platform
        if isinstance(manifest.parsed, Index):
            raise ManifestError(f"{target}: nested index for platform {wanted} is not supported")
    return ResolvedImage(
        target=target.with_digest(top.digest),
        descriptor=top.descriptor,
        top=top,
        manifest=manifest,
        platform=chosen,
    )


def load_config(store: ImageStore, manifest: Manifest, *, what: str) -> dict[str, Any]:
    """The image configuration JSON of ``manifest``."""
    raw = read_blob(store, manifest.config, limit=MAX_CONFIG_BYTES)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(
            f"{what}: image config {manifest.config.digest} is not JSON ({err})"
        ) from None
    if not isinstance(data, dict):
        raise ManifestError(f"{what}: image config {manifest.config.digest} is not a JSON object")
    return data


def parse_image_target(text: str) -> ImageReference | LayoutReference:
    """Parse a target that must be an image (not ``dir:``)."""
    target: Target = parse_target(text)
    if not isinstance(target, ImageReference | LayoutReference):
        raise UsageError(f"{text}: not an image reference")
    return target
