"""Render a :class:`Catalog` as SPDX 2.3 JSON.

The document DESCRIBES one package for the image (purpose ``CONTAINER``) or
directory, which CONTAINS the operating system and every package; package
dependencies are DEPENDS_ON relationships.  purls are ``PACKAGE-MANAGER``
external references; language packages folded into an OS package are listed
on it as ``OTHER`` references of type ``attest-provides``.  License names that
are not SPDX become ``LicenseRef-`` entries in ``hasExtractedLicensingInfos``.
SPDX has no per-package properties, so the layer and path go in
``sourceInfo``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from attest import __version__
from attest.attestations.predicates import SPDX_DOCUMENT
from attest.sbom import licenses as license_names
from attest.sbom.cyclonedx import image_purl
from attest.sbom.model import APPLICATION, Catalog, Package
from attest.sbom.writer import SbomFormat

MEDIA_TYPE = "application/spdx+json"
NOASSERTION = "NOASSERTION"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
_URL = re.compile(r"https?://[^\s<>\"{}|\\^`]+\Z")
_EMAIL = re.compile(r"\s*<([^>]*)>\s*")


def _spdx_id(prefix: str, text: str) -> str:
    return f"SPDXRef-{prefix}-{_ID_UNSAFE.sub('-', text).strip('-')[:60]}"


def _supplier(text: str | None) -> str:
    if not text:
        return NOASSERTION
    text = " ".join(text.split())
    email = _EMAIL.search(text)
    if email:
        text = _EMAIL.sub(" ", text).strip() + f" ({email.group(1)})"
    return f"Organization: {text}"


class _Licenses:
    """Collects ``LicenseRef-`` entries for license names that are not SPDX."""

    def __init__(self) -> None:
        self.extracted: dict[str, str] = {}

    def expression(self, values: tuple[str, ...]) -> str:
        if not values:
            return NOASSERTION
        parts = []
        for value in values:
            if license_names.is_spdx(value):
                parts.append(f"({value})" if " " in value and len(values) > 1 else value)
            else:
                ref = "LicenseRef-" + (_ID_UNSAFE.sub("-", value).strip("-") or "unnamed")
                self.extracted.setdefault(ref, value)
                parts.append(ref)
        return " AND ".join(parts)

    def infos(self) -> list[dict[str, str]]:
        return [
            {
                "licenseId": ref,
                "name": name,
                "extractedText": f"The package metadata names this license {name!r}; "
                "its text was not extracted.",
            }
            for ref, name in sorted(self.extracted.items())
        ]


def _package(package: Package, spdx_id: str, licenses: _Licenses) -> dict[str, Any]:
    where = f"found by the {package.cataloger} cataloger at {package.location}"
    if package.layer:
        where += f" in layer {package.layer}"
    external = [
        {
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": package.purl_string,
        }
    ]
    external.extend(
        {"referenceCategory": "OTHER", "referenceType": "attest-provides", "referenceLocator": purl}
        for purl in package.provides
    )
    entry: dict[str, Any] = {
        "name": package.name,
        "SPDXID": spdx_id,
        "versionInfo": package.version,
        "supplier": _supplier(package.supplier),
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": licenses.expression(package.licenses),
        "copyrightText": NOASSERTION,
        "sourceInfo": where,
        "externalRefs": external,
        "primaryPackagePurpose": "APPLICATION" if package.kind == APPLICATION else "LIBRARY",
    }
    if package.homepage and _URL.match(package.homepage):
        entry["homepage"] = package.homepage
    if package.description:
        entry["summary"] = package.description
    if package.sha256:
        entry["checksums"] = [{"algorithm": "SHA256", "checksumValue": package.sha256}]
    return entry


def _bare(name: str, spdx_id: str, purpose: str) -> dict[str, Any]:
    """A package entry with everything we cannot assert set to NOASSERTION."""
    return {
        "name": name,
        "SPDXID": spdx_id,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "supplier": NOASSERTION,
        "primaryPackagePurpose": purpose,
    }


def _root(catalog: Catalog) -> dict[str, Any]:
    source = catalog.source
    image = source.kind == "image"
    entry = _bare(
        source.name,
        "SPDXRef-Image" if image else "SPDXRef-Directory",
        "CONTAINER" if image else "SOURCE",
    )
    if source.digest:
        entry["versionInfo"] = source.digest
        if source.digest.startswith("sha256:"):
            entry["checksums"] = [{"algorithm": "SHA256", "checksumValue": source.digest[7:]}]
    purl = image_purl(catalog)
    if purl is not None:
        entry["externalRefs"] = [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl.to_string(),
            }
        ]
    if source.layers:
        entry["sourceInfo"] = "layers (diffIDs, lowest first): " + ", ".join(source.layers)
    return entry


def render(catalog: Catalog, *, timestamp: datetime, serial: uuid.UUID) -> bytes:
    """The catalog as SPDX 2.3 JSON bytes."""
    licenses = _Licenses()
    root = _root(catalog)
    packages = [root]
    relationships = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relatedSpdxElement": root["SPDXID"],
            "relationshipType": "DESCRIBES",
        }
    ]
    os_info = catalog.operating_system
    if os_info is not None:
        entry = _bare(os_info.id, "SPDXRef-OperatingSystem", "OPERATING-SYSTEM")
        entry["versionInfo"] = os_info.version_id or os_info.version_codename or NOASSERTION
        if os_info.pretty_name:
            entry["description"] = os_info.pretty_name
        packages.append(entry)
        relationships.append(
            {
                "spdxElementId": root["SPDXID"],
                "relatedSpdxElement": "SPDXRef-OperatingSystem",
                "relationshipType": "CONTAINS",
            }
        )
    ids: dict[str, str] = {}
    for package in catalog.packages:
        digest = hashlib.sha256(package.ref.encode()).hexdigest()[:12]
        ids[package.ref] = _spdx_id("Package", f"{package.type}-{package.name}-{digest}")
    for package in catalog.packages:
        packages.append(_package(package, ids[package.ref], licenses))
        relationships.append(
            {
                "spdxElementId": root["SPDXID"],
                "relatedSpdxElement": ids[package.ref],
                "relationshipType": "CONTAINS",
            }
        )
        relationships.extend(
            {
                "spdxElementId": ids[package.ref],
                "relatedSpdxElement": ids[ref],
                "relationshipType": "DEPENDS_ON",
            }
            for ref in package.depends
            if ref in ids
        )
    slug = _ID_UNSAFE.sub("-", catalog.source.name).strip("-") or "sbom"
    document: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": catalog.source.name
        + (f"@{catalog.source.digest}" if catalog.source.digest else ""),
        "documentNamespace": f"https://spdx.org/spdxdocs/attest/{slug}-{serial}",
        "creationInfo": {
            "created": timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "creators": [f"Tool: attest-{__version__}"],
        },
        "packages": packages,
        "relationships": relationships,
    }
    if catalog.warnings:
        document["comment"] = "Scan warnings: " + "; ".join(catalog.warnings)
    if licenses.extracted:
        document["hasExtractedLicensingInfos"] = licenses.infos()
    return json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"


class SpdxWriter:
    """The ``spdx-json`` :class:`~attest.sbom.writer.Writer`."""

    format: SbomFormat = "spdx-json"
    media_type = MEDIA_TYPE
    predicate_type = SPDX_DOCUMENT

    def render(self, catalog: Catalog, *, timestamp: datetime, serial: uuid.UUID) -> bytes:
        return render(catalog, timestamp=timestamp, serial=serial)


WRITER = SpdxWriter()
