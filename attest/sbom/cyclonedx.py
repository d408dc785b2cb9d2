"""Render a :class:`Catalog` as CycloneDX 1.6 JSON.

The scanned image is ``metadata.component`` (type ``container``, purl
``pkg:oci/NAME@sha256:…``; a directory is a ``file`` component), the
distribution an ``operating-system`` component, and every package a
``library`` (Go main modules: ``application``) with its purl, licenses and
our own properties: ``attest:layer`` (the diffID that introduced it),
``attest:path`` (where it was found), ``attest:cataloger`` and, on OS packages,
``attest:provides`` for language packages folded into them.  bom-refs are the
purls (suffixed only where two components share one), so they are stable.

The document is written directly as plain data, byte for byte what
``cyclonedx-python-lib``'s ``JsonV1Dot6`` writes for the same model (its key
order, its sorted sets, its URI escaping): building that model costs seconds
for a thousand components (sorted sets of rich comparisons, a quadratic
dependency registry), which dominated large scans.  ``tests/sbom`` renders the
same catalogs through the library and compares the bytes, and validates the
result with the library's strict JSON schema validator.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime
from typing import Any

from packageurl import PackageURL

from attest import __version__
from attest.attestations.predicates import CYCLONEDX_BOM
from attest.sbom import licenses as license_names
from attest.sbom.model import APPLICATION, Catalog, Package
from attest.sbom.writer import SbomFormat

TOOL_NAME = "attest"
MEDIA_TYPE = "application/vnd.cyclonedx+json"
SCHEMA = "http://cyclonedx.org/schema/bom-1.6.schema.json"
_URL = re.compile(r"https?://[^\s<>\"{}|\\^`]+\Z")
# What cyclonedx-python-lib's XsUri refuses (a stray '%', two '#') and what it escapes.
_BAD_URI = re.compile(r"%(?![0-9A-F]{2})|#.*#", re.IGNORECASE | re.MULTILINE)
_URI_ESCAPES = str.maketrans({"'": "%27", "[": "%5B", "]": "%5D"})
SHA_256 = "SHA-256"

Json = dict[str, Any]


def _licenses(values: tuple[str, ...]) -> list[Json]:
    """CycloneDX allows either license entries or exactly one expression."""
    if not values:
        return []
    is_id = license_names.is_spdx_id
    compound = [v for v in values if not is_id(v) and license_names.is_spdx_expression(v)]
    if compound and all(license_names.is_spdx(v) for v in values):
        if len(values) == 1:
            return [{"expression": values[0]}]
        return [{"expression": " AND ".join(f"({v})" if v in compound else v for v in values)}]
    ids = sorted({v for v in values if is_id(v)})
    names = sorted({v for v in values if not is_id(v)})
    return [{"license": {"id": v}} for v in ids] + [{"license": {"name": v}} for v in names]


def _external(homepage: str | None) -> list[Json]:
    if not homepage or not _URL.match(homepage) or _BAD_URI.search(homepage):
        return []
    return [{"type": "website", "url": homepage.translate(_URI_ESCAPES)}]


def _properties(pairs: list[tuple[str, str]]) -> list[Json]:
    return [{"name": name, "value": value} for name, value in sorted(set(pairs))]


def image_purl(catalog: Catalog) -> PackageURL | None:
    """``pkg:oci/NAME@DIGEST?repository_url=…&tag=…&arch=…`` for an image source."""
    source = catalog.source
    if source.kind != "image" or not source.digest:
        return None
    name = source.name.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower() or "image"
    qualifiers: dict[str, str] = {}
    if source.repository_url:
        qualifiers["repository_url"] = source.repository_url
    if source.tag:
        qualifiers["tag"] = source.tag
    if source.platform:
        parts = source.platform.split("/")
        if len(parts) > 1:
            qualifiers["arch"] = parts[1]
    return PackageURL("oci", None, name, source.digest, qualifiers or None)


def bom_refs(packages: list[Package]) -> dict[str, str]:
    """Package ref -> bom-ref: the purl, suffixed with a short hash where purls collide."""
    counts: dict[str, int] = {}
    for package in packages:
        purl = package.purl_string
        counts[purl] = counts.get(purl, 0) + 1
    refs = {}
    for package in packages:
        purl = package.purl_string
        if counts[purl] > 1:
            purl = f"{purl}#{hashlib.sha256(package.ref.encode()).hexdigest()[:12]}"
        refs[package.ref] = purl
    return refs


def _root(catalog: Catalog) -> Json:
    source = catalog.source
    if source.kind != "image":
        return {"bom-ref": "source", "name": source.name, "type": "file"}
    properties = []
    if source.manifest_digest and source.manifest_digest != source.digest:
        properties.append(("attest:image:manifest-digest", source.manifest_digest))
    if source.config_digest:
        properties.append(("attest:image:config-digest", source.config_digest))
    if source.platform:
        properties.append(("attest:image:platform", source.platform))
    for index, diff_id in enumerate(source.layers):
        properties.append((f"attest:image:layer:{index}", diff_id))
    digest = source.digest or ""
    purl = image_purl(catalog)
    return _compact(
        {
            "bom-ref": "image",
            "hashes": [{"alg": SHA_256, "content": digest.split(":", 1)[1]}]
            if digest.startswith("sha256:")
            else None,
            "name": source.name,
            "properties": _properties(properties),
            "purl": purl.to_string() if purl is not None else None,
            "type": "container",
            "version": digest or None,
        }
    )


def _compact(fields: Json) -> Json:
    """Without the empty fields (the library omits None and empty lists)."""
    return {key: value for key, value in fields.items() if value is not None and value != []}


def _component(package: Package, bom_ref: str) -> Json:
    properties = list(package.properties.items())
    properties.append(("attest:cataloger", package.cataloger))
    properties.append(("attest:path", package.location))
    if package.layer:
        properties.append(("attest:layer", package.layer))
    properties.extend(("attest:provides", purl) for purl in package.provides)
    group, name = package.group, package.name
    if package.type == "npm" and name.startswith("@") and "/" in name:
        group, name = name.split("/", 1)
    return _compact(
        {
            "bom-ref": bom_ref,
            "description": package.description,
            "externalReferences": _external(package.homepage),
            "group": group,
            "hashes": [{"alg": SHA_256, "content": package.sha256}] if package.sha256 else None,
            "licenses": _licenses(package.licenses),
            "name": name,
            "properties": _properties(properties),
            "publisher": package.supplier,
            "purl": package.purl_string,
            "type": "application" if package.kind == APPLICATION else "library",
            "version": package.version,
        }
    )


def _order(component: Json) -> tuple[str | bool, ...]:
    """The library's component order: type, group, name, version, bom-ref (None sorts last)."""
    group, version = component.get("group"), component.get("version")
    return (
        component["type"],
        group is None,
        group or "",
        component["name"],
        version is None,
        version or "",
        component["bom-ref"],
    )


def render(catalog: Catalog, *, timestamp: datetime, serial: uuid.UUID) -> bytes:
    """The catalog as CycloneDX 1.6 JSON bytes."""
    root = _root(catalog)
    refs = bom_refs(catalog.packages)
    components: list[Json] = []
    depends: dict[str, set[str]] = {root["bom-ref"]: set()}
    top_level = depends[root["bom-ref"]]
    os_info = catalog.operating_system
    if os_info is not None:
        os_component = _compact(
            {
                "bom-ref": f"os:{os_info.distro}",
                "description": os_info.pretty_name,
                "externalReferences": _external(os_info.home_url),
                "name": os_info.id,
                "properties": _properties([("attest:os:codename", os_info.version_codename)])
                if os_info.version_codename
                else None,
                "type": "operating-system",
                "version": os_info.version_id,
            }
        )
        components.append(os_component)
        depends[os_component["bom-ref"]] = set()
        top_level.add(os_component["bom-ref"])
    for package in catalog.packages:
        components.append(_component(package, refs[package.ref]))
        depends[refs[package.ref]] = {refs[ref] for ref in package.depends if ref in refs}
    depended_on = {ref for package in catalog.packages for ref in package.depends}
    top_level.update(refs[p.ref] for p in catalog.packages if p.ref not in depended_on)
    metadata = _compact(
        {
            "component": root,
            "properties": _properties([("attest:scan-warning", w) for w in catalog.warnings]),
            "timestamp": timestamp.isoformat(),
            "tools": {
                "components": [{"name": TOOL_NAME, "type": "application", "version": __version__}]
            },
        }
    )
    document = _compact(
        {
            "components": sorted(components, key=_order),
            "dependencies": [
                {"dependsOn": sorted(targets), "ref": ref} if targets else {"ref": ref}
                for ref, targets in sorted(depends.items())
            ],
            "metadata": metadata,
            "serialNumber": serial.urn,
            "version": 1,
            "$schema": SCHEMA,
            "bomFormat": "CycloneDX",
            "specVersion": "1.6",
        }
    )
    return json.dumps(document, indent=2).encode() + b"\n"


class CycloneDxWriter:
    """The ``cyclonedx-json`` :class:`~attest.sbom.writer.Writer`."""

    format: SbomFormat = "cyclonedx-json"
    media_type = MEDIA_TYPE
    predicate_type = CYCLONEDX_BOM

    def render(self, catalog: Catalog, *, timestamp: datetime, serial: uuid.UUID) -> bytes:
        return render(catalog, timestamp=timestamp, serial=serial)


WRITER = CycloneDxWriter()
