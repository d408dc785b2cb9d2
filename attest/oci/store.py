"""The one interface over where images live: a registry repository or an OCI layout.

Everything above this layer (inspect, SBOM, signing, verification) talks to an
:class:`ImageStore` and never cares whether the bytes come from HTTP or disk.
"""

from __future__ import annotations

from typing import Protocol, Self, runtime_checkable

from attest.oci.digest import VerifyingReader
from attest.oci.manifest import Descriptor, FetchedManifest


@runtime_checkable
class ImageStore(Protocol):
    """One repository of images, addressed by tag or digest."""

    @property
    def display(self) -> str:
        """A human name for messages (``host/repo`` or ``oci:PATH``)."""
        ...

    def resolve(self, identifier: str) -> Descriptor:
        """The descriptor a tag or digest names."""
        ...

    def fetch_manifest(self, identifier: str) -> FetchedManifest:
        """A manifest or index, by tag or digest, with its exact bytes."""
        ...

    def push_manifest(self, raw: bytes, media_type: str, tag: str | None = None) -> Descriptor:
        """Store manifest bytes, optionally under ``tag``."""
        ...

    def delete_manifest(self, identifier: str) -> str:
        """Remove a manifest; returns its digest."""
        ...

    def list_tags(self) -> list[str]: ...

    def blob_exists(self, digest: str) -> bool: ...

    def open_blob(self, descriptor: Descriptor) -> VerifyingReader:
        """A stream of the blob that verifies size and digest at EOF."""
        ...

    def push_blob(
        self, descriptor: Descriptor, *, data: bytes | None = None, path: str | None = None
    ) -> None: ...

    def referrers_api(
        self, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        """The native referrers listing, or ``None`` where there is none (use the tag fallback)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: object, exc: object, tb: object, /) -> None: ...


def read_blob(store: ImageStore, descriptor: Descriptor, *, limit: int = 64 * 1024 * 1024) -> bytes:
    """Read a whole (small) blob into memory, verified; refuses blobs above ``limit``."""
    from attest.errors import ManifestError

    if descriptor.size > limit:
        raise ManifestError(
            f"blob {descriptor.digest} in {store.display} is {descriptor.size} bytes, above {limit}"
        )
    with store.open_blob(descriptor) as reader:
        return reader.read()


def copy_blob_to_file(store: ImageStore, descriptor: Descriptor, path: str) -> None:
    """Stream a blob to ``path`` atomically (a temp file renamed only after verification)."""
    from attest.files import atomic_write

    with atomic_write(path, prefix=".blob-") as out, store.open_blob(descriptor) as reader:
        while chunk := reader.read(1 << 20):
            out.write(chunk)
