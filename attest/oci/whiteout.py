"""Whiteouts: how an OCI image layer deletes what lower layers created.

A layer hides ``dir/name`` of the layers below with an empty file ``dir/.wh.name``,
and everything below in ``dir`` with ``dir/.wh..wh..opq`` (the OCI image spec's
layer changesets).  Other names starting ``.wh..wh.`` are reserved (AUFS hard-link
bookkeeping such as ``.wh..wh.plnk``) and mean nothing to a reader.  The image
builder writes them and the SBOM's layer walk reads them.
"""

from __future__ import annotations

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
