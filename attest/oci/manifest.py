"""Manifests, indexes and descriptors as plain data, parsed strictly from JSON bytes.

The bytes a manifest was fetched as are what its digest covers, so they are kept
alongside the parsed form (:class:`FetchedManifest`); re-serialising a parsed
manifest is only done for manifests we create ourselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from attest.errors import InvalidReference, ManifestError
from attest.oci import mediatypes as mt
from attest.oci.digest import sha256_digest
from attest.oci.reference import validate_digest


@dataclass(frozen=True)
class Platform:
    """An OCI platform: ``os/architecture[/variant]``."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``linux/amd64`` or ``linux/arm64/v8``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidReference(f"platform {text!r} is not OS/ARCH[/VARIANT]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Platform:
        return cls(
            os=str(data.get("os", "")),
            architecture=str(data.get("architecture", "")),
            variant=data.get("variant"),
            os_version=data.get("os.version"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        return out

    def matches(self, wanted: Platform) -> bool:
        """Whether this platform satisfies ``wanted`` (a missing wanted variant matches any)."""
        if (self.os, self.architecture) != (wanted.os, wanted.architecture):
            return False
        if wanted.variant is None:
            return True
        mine = self.variant or ("v8" if self.architecture == "arm64" else None)
        return mine == wanted.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


DEFAULT_PLATFORM = Platform("linux", "amd64")


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Any, *, what: str = "descriptor") -> Descriptor:
        if not isinstance(data, dict):
            raise ManifestError(f"{what} is not a JSON object")
        try:
            media_type = data["mediaType"]
            digest = data["digest"]
            size = data["size"]
        except KeyError as missing:
            raise ManifestError(f"{what} lacks required field {missing.args[0]!r}") from None
        if not isinstance(media_type, str) or not isinstance(digest, str):
            raise ManifestError(f"{what} has a non-string mediaType or digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"{what} has an invalid size {size!r}")
        try:
            validate_digest(digest, what=f"{what} digest")
        except InvalidReference as err:
            raise ManifestError(str(err)) from None
        annotations = data.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise ManifestError(f"{what} annotations must map strings to strings")
        platform = data.get("platform")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=dict(annotations),
            platform=Platform.from_dict(platform) if isinstance(platform, dict) else None,
            artifact_type=data.get("artifactType"),
            urls=tuple(data.get("urls") or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = self.platform.to_dict()
        return out

    @classmethod
    def for_bytes(cls, media_type: str, data: bytes, **extra: Any) -> Descriptor:
        """A descriptor of ``data`` (digest and size computed)."""
        return cls(media_type=media_type, digest=sha256_digest(data), size=len(data), **extra)


EMPTY_DESCRIPTOR = Descriptor(mt.OCI_EMPTY, mt.EMPTY_DIGEST, 2)


def _manifest_dict(
    media_type: str,
    artifact_type: str | None,
    body: dict[str, Any],
    subject: Descriptor | None,
    annotations: dict[str, str],
) -> dict[str, Any]:
    """The JSON object of a manifest or index, fields in the spec's order."""
    out: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type:
        out["artifactType"] = artifact_type
    out.update(body)
    if subject:
        out["subject"] = subject.to_dict()
    if annotations:
        out["annotations"] = dict(annotations)
    return out


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker v2 schema 2)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body = {
            "config": self.config.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
        }
        return _manifest_dict(
            self.media_type, self.artifact_type, body, self.subject, self.annotations
        )

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())


@dataclass(frozen=True)
class Index:
    """An image index (OCI) or manifest list (Docker)."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body = {"manifests": [m.to_dict() for m in self.manifests]}
        return _manifest_dict(
            self.media_type, self.artifact_type, body, self.subject, self.annotations
        )

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest or index with the exact bytes and digest it was fetched as."""

    digest: str
    media_type: str
    raw: bytes
    parsed: Manifest | Index

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw))

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.raw)  # parse_manifest checked it is an object
        return data


def canonical_json(data: Any) -> bytes:
    """Compact, key-sorted JSON: the stable serialisation we use for what we create."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_manifest(
    raw: bytes, media_type: str | None = None, *, what: str = "manifest"
) -> Manifest | Index:
    """Parse manifest bytes; ``media_type`` (e.g. the Content-Type) is used when the JSON lacks one."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"{what} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{what} is not a JSON object")
    declared = data.get("mediaType")
    header_type = (media_type or "").split(";")[0].strip() or None
    kind = declared or header_type
    if kind is None:
        kind = (
            mt.OCI_INDEX if "manifests" in data else mt.OCI_MANIFEST if "config" in data else None
        )
    if kind in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED) or data.get("schemaVersion") == 1:
        raise ManifestError(f"{what} is Docker schema 1, which is deprecated and not supported")
    if kind == mt.OCI_ARTIFACT_MANIFEST:
        raise ManifestError(f"{what} is an OCI artifact manifest, which is not supported")
    if kind not in mt.ALL_MANIFESTS:
        raise ManifestError(f"{what} has unsupported media type {kind!r}")
    if data.get("schemaVersion") != 2:
        raise ManifestError(f"{what} has schemaVersion {data.get('schemaVersion')!r}, expected 2")
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ManifestError(f"{what} annotations must be an object")
    subject = data.get("subject")
    subject_desc = Descriptor.from_dict(subject, what=f"{what} subject") if subject else None
    if kind in mt.IMAGE_INDEXES:
        entries = data.get("manifests")
        if not isinstance(entries, list):
            raise ManifestError(f"{what} (an index) has no 'manifests' list")
        return Index(
            media_type=kind,
            manifests=tuple(
                Descriptor.from_dict(e, what=f"{what} manifests[{i}]")
                for i, e in enumerate(entries)
            ),
            annotations=dict(annotations),
            subject=subject_desc,
            artifact_type=data.get("artifactType"),
        )
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise ManifestError(f"{what} has no 'layers' list")
    return Manifest(
        media_type=kind,
        config=Descriptor.from_dict(data.get("config"), what=f"{what} config"),
        layers=tuple(
            Descriptor.from_dict(e, what=f"{what} layers[{i}]") for i, e in enumerate(layers)
        ),
        annotations=dict(annotations),
        subject=subject_desc,
        artifact_type=data.get("artifactType"),
    )


def select_platform(index: Index, wanted: Platform, *, what: str) -> Descriptor:
    """The manifest descriptor in ``index`` for ``wanted``; raises listing what is available."""
    from attest.errors import PlatformNotFound

    candidates = [d for d in index.manifests if d.media_type in mt.IMAGE_MANIFESTS]
    for descriptor in candidates:
        if descriptor.platform and descriptor.platform.matches(wanted):
            return descriptor
    available = sorted(
        {str(d.platform) for d in candidates if d.platform and d.platform.os != "unknown"}
    )
    raise PlatformNotFound(
        f"{what} has no image for platform {wanted}; available: {', '.join(available) or 'none'}"
    )
