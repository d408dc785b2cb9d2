"""The library entry point: ``generate_sbom(target)`` -> document bytes and what they describe.

``target`` is text as the CLI takes it (registry reference, ``oci:``,
``oci-archive:``, ``dir:``), a parsed reference, or an already
:class:`ResolvedImage` with its store (what ``attest pipeline`` holds).
With ``SOURCE_DATE_EPOCH`` set (or ``source_date_epoch`` given) the document
is reproducible: its timestamp is that time and its serial number a UUIDv5 of
the target and the catalog, so two runs on the same image are byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from attest.deadline import Deadline
from attest.errors import UsageError
from attest.oci.access import ResolvedImage, open_store, resolve_image
from attest.oci.manifest import Platform
from attest.oci.reference import DirectoryReference, ImageReference, LayoutReference, parse_target
from attest.oci.store import ImageStore
from attest.oci.transport import RegistryOptions
from attest.sbom import cyclonedx, spdx
from attest.sbom.catalogers.base import Limits
from attest.sbom.model import Catalog
from attest.sbom.progress import Progress
from attest.sbom.scanner import scan_directory, scan_image
from attest.sbom.writer import Writer

_WRITERS: dict[str, Writer] = {w.format: w for w in (cyclonedx.WRITER, spdx.WRITER)}
FORMATS = tuple(_WRITERS)
_SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "attest:sbom:serial-number")


@dataclass(frozen=True)
class SbomOptions:
    """How to scan: registry access, size limits, progress, reproducibility."""

    registry: RegistryOptions = field(default_factory=RegistryOptions)
    limits: Limits = field(default_factory=Limits)
    progress: bool | None = None  # None: only when stderr is a terminal
    source_date_epoch: int | None = None  # None: $SOURCE_DATE_EPOCH, else now


@dataclass(frozen=True)
class SbomResult:
    """A rendered SBOM and the facts a caller needs to store or attest it."""

    document: bytes
    format: str
    media_type: str
    predicate_type: str  # in-toto predicate type for attesting this document
    component_count: int  # packages, plus the operating system when known
    image_digest: str | None  # what the reference names (index or manifest); None for dir:
    manifest_digest: str | None  # the platform manifest that was scanned
    target: str  # the pinned reference or directory
    warnings: tuple[str, ...]
    catalog: Catalog


def source_date_epoch(explicit: int | None = None) -> int | None:
    """The reproducible-build timestamp: ``explicit``, else ``$SOURCE_DATE_EPOCH``, else None."""
    if explicit is not None:
        return explicit
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not a non-negative integer")
    return int(value)


def _writer(fmt: str) -> Writer:
    """The writer of ``fmt`` (``cyclonedx-json`` or ``spdx-json``)."""
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise UsageError(f"unknown SBOM format {fmt!r} (choose from {', '.join(FORMATS)})")
    return writer


def render(catalog: Catalog, fmt: str, *, epoch: int | None = None) -> bytes:
    """Render ``catalog`` in ``fmt``; deterministic when ``epoch`` is given."""
    writer = _writer(fmt)
    if epoch is None:
        timestamp = datetime.now(UTC).replace(microsecond=0)
        serial = uuid.uuid4()
    else:
        timestamp = datetime.fromtimestamp(epoch, UTC)
        serial = uuid.uuid5(_SERIAL_NAMESPACE, _fingerprint(catalog, fmt, epoch))
    return writer.render(catalog, timestamp=timestamp, serial=serial)


def _fingerprint(catalog: Catalog, fmt: str, epoch: int) -> str:
    digest = hashlib.sha256()
    source = catalog.source
    for part in (
        fmt,
        str(epoch),
        source.kind,
        source.name,
        source.digest or "",
        source.manifest_digest or "",
    ):
        digest.update(part.encode() + b"\0")
    for package in catalog.packages:
        digest.update(
            "\0".join((package.purl_string, package.location, package.layer or "")).encode()
        )
        digest.update(b"\n")
    return digest.hexdigest()


def scan(
    target: str | ImageReference | LayoutReference | DirectoryReference | ResolvedImage,
    *,
    platform: Platform | None = None,
    options: SbomOptions | None = None,
    store: ImageStore | None = None,
    deadline: Deadline | None = None,
) -> Catalog:
    """Scan ``target`` into a :class:`Catalog` (see :func:`generate_sbom`)."""
    options = options or SbomOptions()
    progress = Progress(enabled=options.progress)
    if isinstance(target, str):
        target = parse_target(target, allow_dir=True)
    if isinstance(target, DirectoryReference):
        return scan_directory(target.path, limits=options.limits)
    if isinstance(target, ResolvedImage):
        if store is None:
            raise UsageError("a resolved image needs the store it was resolved from")
        return scan_image(
            store, target, limits=options.limits, progress=progress, deadline=deadline
        )
    if deadline is None and isinstance(target, ImageReference):  # --timeout bounds registry work
        deadline = Deadline.after(options.registry.timeout)
    if store is not None:
        image = resolve_image(store, target, platform)
        return scan_image(store, image, limits=options.limits, progress=progress, deadline=deadline)
    with open_store(target, options.registry, deadline=deadline) as opened:
        image = resolve_image(opened, target, platform)
        return scan_image(
            opened, image, limits=options.limits, progress=progress, deadline=deadline
        )


def generate_sbom(
    target: str | ImageReference | LayoutReference | DirectoryReference | ResolvedImage,
    *,
    fmt: str = "cyclonedx-json",
    platform: Platform | None = None,
    options: SbomOptions | None = None,
    store: ImageStore | None = None,
    deadline: Deadline | None = None,
) -> SbomResult:
    """Scan ``target`` and render its SBOM in ``fmt`` (``cyclonedx-json`` or ``spdx-json``)."""
    writer = _writer(fmt)  # before scanning: an unknown format fails at once
    options = options or SbomOptions()
    epoch = source_date_epoch(options.source_date_epoch)
    catalog = scan(target, platform=platform, options=options, store=store, deadline=deadline)
    document = render(catalog, fmt, epoch=epoch)
    source = catalog.source
    pinned = f"{source.name}@{source.digest}" if source.digest else f"dir:{source.name}"
    return SbomResult(
        document=document,
        format=fmt,
        media_type=writer.media_type,
        predicate_type=writer.predicate_type,
        component_count=len(catalog.packages) + (1 if catalog.operating_system else 0),
        image_digest=source.digest,
        manifest_digest=source.manifest_digest,
        target=pinned,
        warnings=tuple(catalog.warnings),
        catalog=catalog,
    )


@dataclass(frozen=True)
class SbomDocument:
    """The CycloneDX SBOM of a resolved image as ``attest pipeline`` consumes it."""

    document: dict[str, Any]
    components: int
    spec_version: str | None
    result: SbomResult


def generate_image_sbom_document(
    store: ImageStore,
    image: ResolvedImage,
    *,
    deadline: Deadline | None = None,
    options: SbomOptions | None = None,
) -> SbomDocument:
    """CycloneDX SBOM of an already resolved image, parsed (for an in-toto predicate)."""
    result = generate_sbom(image, store=store, deadline=deadline, options=options)
    document = json.loads(result.document)
    spec_version = document.get("specVersion")
    return SbomDocument(
        document=document,
        components=result.component_count,
        spec_version=spec_version if isinstance(spec_version, str) else None,
        result=result,
    )
