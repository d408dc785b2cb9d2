"""SBOM generation: scan an image or directory, render CycloneDX 1.6 or SPDX 2.3 JSON.

:func:`generate_sbom` is the entry point (the CLI and ``attest pipeline`` call
it); :func:`scan` returns the :class:`Catalog` without rendering.  The work is
split into ``filesystem`` (the merged tree), ``layers`` (streaming layer
application), ``catalogers/`` (one module per ecosystem), ``scanner``
(orchestration, layer attribution, folding language packages into OS ones)
and the writers ``cyclonedx`` and ``spdx``.
"""

from __future__ import annotations

from attest.sbom.generate import (
    FORMATS,
    SbomDocument,
    SbomOptions,
    SbomResult,
    generate_image_sbom_document,
    generate_sbom,
    render,
    scan,
)
from attest.sbom.model import Catalog, OperatingSystem, Package, Source

__all__ = [
    "FORMATS",
    "Catalog",
    "OperatingSystem",
    "Package",
    "SbomDocument",
    "SbomOptions",
    "SbomResult",
    "Source",
    "generate_image_sbom_document",
    "generate_sbom",
    "render",
    "scan",
]
