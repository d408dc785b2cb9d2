"""attest: software supply chain attestation and admission, cosign-compatible."""

from __future__ import annotations

__version__ = "0.1.0"
