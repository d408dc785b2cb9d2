"""The plain data an SBOM scan produces: packages, the operating system, the scanned source.

Catalogers create :class:`Package` values; the scanner sets the layer that
introduced each one and folds language packages into the OS packages that own
their files; the writers (``cyclonedx.py``, ``spdx.py``) turn a :class:`Catalog`
into a document.  Nothing here knows about files, layers or output formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from packageurl import PackageURL

ComponentKind = Literal["library", "application"]
"""What a package is, as CycloneDX names component types."""
LIBRARY: ComponentKind = "library"
APPLICATION: ComponentKind = "application"
SourceKind = Literal["image", "directory"]


@dataclass
class Package:
    """One installed package found by a cataloger."""

    type: str  # purl type: deb, apk, rpm, pypi, npm, golang, maven
    name: str
    version: str
    purl: PackageURL
    cataloger: str
    location: str  # where the evidence is, e.g. "/var/lib/dpkg/status" or "/app.war!lib/x.jar"
    ref: str  # identifier unique within one cataloger run (dependency edges point at it)
    group: str | None = None  # maven groupId
    licenses: tuple[str, ...] = ()  # SPDX ids/expressions, or free-form names
    description: str | None = None
    supplier: str | None = None
    homepage: str | None = None
    kind: ComponentKind = LIBRARY
    properties: dict[str, str] = field(default_factory=dict)  # "attest:…" name -> value
    depends: tuple[str, ...] = ()  # refs of packages this one depends on
    files: frozenset[str] = frozenset()  # files it owns (relative paths, no leading "/")
    sha256: str | None = None  # of the archive or binary the package was read from
    layer: str | None = None  # diffID of the layer that introduced it
    provides: tuple[str, ...] = ()  # purls of language packages folded into this OS package

    @cached_property
    def purl_string(self) -> str:
        """The purl as text (computed once: writers and the scanner need it several times)."""
        return self.purl.to_string()

    @property
    def identity(self) -> tuple[str, ...]:
        """What makes two sightings 'the same package at the same version' across layers."""
        qualifiers = self.purl.qualifiers if isinstance(self.purl.qualifiers, dict) else {}
        return (self.cataloger, self.name, self.version, qualifiers.get("arch", ""), self.location)

    @property
    def is_os_package(self) -> bool:
        return self.type in OS_PACKAGE_TYPES


OS_PACKAGE_TYPES = frozenset({"deb", "apk", "rpm"})


@dataclass(frozen=True)
class OperatingSystem:
    """The distribution, from ``etc/os-release``."""

    id: str  # "debian"
    version_id: str | None  # "12"
    name: str | None = None  # "Debian GNU/Linux"
    pretty_name: str | None = None
    version_codename: str | None = None
    id_like: tuple[str, ...] = ()
    home_url: str | None = None

    @property
    def distro(self) -> str:
        """The purl ``distro`` qualifier, e.g. ``debian-12`` (codename when there is no version)."""
        version = self.version_id or self.version_codename
        return f"{self.id}-{version}" if version else self.id


@dataclass(frozen=True)
class Source:
    """What was scanned: an image (with digest and layers) or a directory."""

    kind: SourceKind
    name: str  # "host/repo" / "oci:PATH" / the directory path
    digest: str | None = None  # what the reference names (index or manifest)
    manifest_digest: str | None = None  # the platform manifest
    tag: str | None = None
    repository_url: str | None = None  # "host/repo" for registry images
    platform: str | None = None
    layers: tuple[str, ...] = ()  # diffIDs, lowest first
    config_digest: str | None = None


@dataclass
class Catalog:
    """Everything one scan found, in a stable order."""

    source: Source
    packages: list[Package]
    operating_system: OperatingSystem | None
    warnings: list[str]
