"""The ``attest`` command: thin click doors onto the library."""

from __future__ import annotations
