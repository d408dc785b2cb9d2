"""The reference CycloneDX writer: the same model built with ``cyclonedx-python-lib``.

``attest.sbom.cyclonedx`` writes the JSON directly (for speed) and promises the
bytes ``cyclonedx-python-lib``'s ``JsonV1Dot6`` writes for the same model; this
module builds that model with the library (as attest itself did before) so the
tests can hold the fast writer to that promise on real catalogs.
"""

from __future__ import annotations

import uuid
import warnings
from datetime import datetime

from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
from cyclonedx.output.json import JsonV1Dot6

from attest import __version__
from attest.sbom import licenses as license_names
from attest.sbom.cyclonedx import _BAD_URI, _URL, TOOL_NAME, bom_refs, image_purl
from attest.sbom.model import APPLICATION, Catalog, Package


def _licenses(values: tuple[str, ...]) -> list[DisjunctiveLicense | LicenseExpression]:
    """CycloneDX allows either license entries or exactly one expression."""
    from cyclonedx import spdx

    if not values:
        return []
    compound = [v for v in values if not spdx.is_supported_id(v) and spdx.is_expression(v)]
    if compound and all(license_names.is_spdx(v) for v in values):
        if len(values) == 1:
            return [LicenseExpression(values[0])]
        return [LicenseExpression(" AND ".join(f"({v})" if v in compound else v for v in values))]
    return [
        DisjunctiveLicense(id=v) if spdx.is_supported_id(v) else DisjunctiveLicense(name=v)
        for v in values
    ]


def _external(homepage: str | None) -> list[ExternalReference]:
    if not homepage or not _URL.match(homepage) or _BAD_URI.search(homepage):
        return []
    return [ExternalReference(type=ExternalReferenceType.WEBSITE, url=XsUri(homepage))]


def _root(catalog: Catalog) -> Component:
    source = catalog.source
    if source.kind != "image":
        return Component(type=ComponentType.FILE, name=source.name, bom_ref="source")
    properties = []
    if source.manifest_digest and source.manifest_digest != source.digest:
        properties.append(
            Property(name="attest:image:manifest-digest", value=source.manifest_digest)
        )
    if source.config_digest:
        properties.append(Property(name="attest:image:config-digest", value=source.config_digest))
    if source.platform:
        properties.append(Property(name="attest:image:platform", value=source.platform))
    for index, diff_id in enumerate(source.layers):
        properties.append(Property(name=f"attest:image:layer:{index}", value=diff_id))
    digest = source.digest or ""
    return Component(
        type=ComponentType.CONTAINER,
        name=source.name,
        version=digest or None,
        purl=image_purl(catalog),
        bom_ref="image",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest.split(":", 1)[1])]
        if digest.startswith("sha256:")
        else None,
        properties=properties,
    )


def _component(package: Package, bom_ref: str) -> Component:
    properties = [Property(name=k, value=v) for k, v in sorted(package.properties.items())]
    properties.append(Property(name="attest:cataloger", value=package.cataloger))
    properties.append(Property(name="attest:path", value=package.location))
    if package.layer:
        properties.append(Property(name="attest:layer", value=package.layer))
    properties.extend(Property(name="attest:provides", value=purl) for purl in package.provides)
    group, name = package.group, package.name
    if package.type == "npm" and name.startswith("@") and "/" in name:
        group, name = name.split("/", 1)
    return Component(
        type=ComponentType.APPLICATION if package.kind == APPLICATION else ComponentType.LIBRARY,
        name=name,
        group=group,
        version=package.version,
        purl=package.purl,
        bom_ref=bom_ref,
        licenses=_licenses(package.licenses),
        description=package.description,
        publisher=package.supplier,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=package.sha256)]
        if package.sha256
        else None,
        external_references=_external(package.homepage),
        properties=properties,
    )


def render(catalog: Catalog, *, timestamp: datetime, serial: uuid.UUID) -> bytes:
    """The catalog as CycloneDX 1.6 JSON bytes."""
    bom = Bom(serial_number=serial)
    bom.metadata.timestamp = timestamp
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name=TOOL_NAME, version=__version__)
    )
    root = _root(catalog)
    bom.metadata.component = root
    for warning in catalog.warnings:
        bom.metadata.properties.add(Property(name="attest:scan-warning", value=warning))
    refs = bom_refs(catalog.packages)
    components: dict[str, Component] = {}
    top_level: list[Component] = []
    os_info = catalog.operating_system
    if os_info is not None:
        os_component = Component(
            type=ComponentType.OPERATING_SYSTEM,
            name=os_info.id,
            version=os_info.version_id,
            description=os_info.pretty_name,
            bom_ref=f"os:{os_info.distro}",
            external_references=_external(os_info.home_url),
            properties=[Property(name="attest:os:codename", value=os_info.version_codename)]
            if os_info.version_codename
            else None,
        )
        bom.components.add(os_component)
        top_level.append(os_component)
    for package in catalog.packages:
        component = _component(package, refs[package.ref])
        components[package.ref] = component
        bom.components.add(component)
    depended_on = {ref for package in catalog.packages for ref in package.depends}
    for package in catalog.packages:
        targets = [components[ref] for ref in package.depends if ref in components]
        bom.register_dependency(components[package.ref], targets)
        if package.ref not in depended_on:
            top_level.append(components[package.ref])
    bom.register_dependency(root, top_level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        text = JsonV1Dot6(bom).output_as_string(indent=2)
    return text.encode() + b"\n"
