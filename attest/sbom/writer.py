"""The interface of an SBOM format: the catalog model knows nothing of formats.

Each format is one module with one :class:`Writer` (``cyclonedx.WRITER``,
``spdx.WRITER``), as cyclonedx-python-lib keeps one serializer per format apart
from its model: adding a format touches no scanner or model code, only
:data:`attest.sbom.generate.FORMATS` learns its name.  Schema validation stays out
of the runtime path (the tests validate every writer's output).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, Protocol

from attest.sbom.model import Catalog

SbomFormat = Literal["cyclonedx-json", "spdx-json"]


class Writer(Protocol):
    """One SBOM format: what its documents are, and how to render a catalog as one."""

    @property
    def format(self) -> SbomFormat:
        """The ``--format`` name."""
        ...

    @property
    def media_type(self) -> str:
        """The document's media type."""
        ...

    @property
    def predicate_type(self) -> str:
        """The in-toto predicate type that attests such a document."""
        ...

    def render(self, catalog: Catalog, *, timestamp: datetime, serial: uuid.UUID) -> bytes:
        """The document's bytes (deterministic for a given timestamp and serial)."""
        ...
