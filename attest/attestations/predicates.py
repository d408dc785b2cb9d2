"""Predicate types: cosign's short aliases and full type URIs, and loading predicate files.

``attest attest --type`` and ``attest verify-attestation --type`` take either one
of cosign's aliases (``slsaprovenance1``, ``cyclonedx``, ``spdxjson``, ``vuln``,
``custom`` …) or a full type URI, and mean exactly what cosign means by them, so
an attestation written by one tool is found by the other.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from attest.errors import UsageError

SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
SLSA_PROVENANCE_V02 = "https://slsa.dev/provenance/v0.2"
CYCLONEDX_BOM = "https://cyclonedx.org/bom"
SPDX_DOCUMENT = "https://spdx.dev/Document"
IN_TOTO_LINK_V1 = "https://in-toto.io/Link/v1"
COSIGN_CUSTOM = "https://cosign.sigstore.dev/attestation/v1"
COSIGN_VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
OPENVEX = "https://openvex.dev/ns"
SIGN_PREDICATE_TYPE = "https://sigstore.dev/cosign/sign/v1"
"""cosign v3's image signature: a Statement with this type whose subject is the image."""

# The same mapping as cosign's ``--type`` flag (cmd/cosign/cli/options/predicate.go).
PREDICATE_TYPE_ALIASES: dict[str, str] = {
    "custom": COSIGN_CUSTOM,
    "slsaprovenance": SLSA_PROVENANCE_V02,
    "slsaprovenance02": SLSA_PROVENANCE_V02,
    "slsaprovenance1": SLSA_PROVENANCE_V1,
    "spdx": SPDX_DOCUMENT,
    "spdxjson": SPDX_DOCUMENT,
    "cyclonedx": CYCLONEDX_BOM,
    "link": IN_TOTO_LINK_V1,
    "vuln": COSIGN_VULN,
    "openvex": OPENVEX,
}

_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/]+(/\S*)?\Z")
_URN = re.compile(r"urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:\S+\Z", re.IGNORECASE)

MAX_PREDICATE_BYTES = 64 * 1024 * 1024


def resolve_predicate_type(text: str) -> str:
    """The type URI for an alias or a full URI; anything else is a usage error."""
    alias = PREDICATE_TYPE_ALIASES.get(text.strip().lower())
    if alias:
        return alias
    if _ABSOLUTE_URI.match(text) or _URN.match(text):
        return text
    raise UsageError(
        f"predicate type {text!r} is neither a known alias "
        f"({', '.join(sorted(PREDICATE_TYPE_ALIASES))}) nor an absolute URI"
    )


def parse_predicate(raw: bytes, *, what: str) -> dict[str, Any]:
    """A predicate from JSON bytes: must be UTF-8 JSON whose top level is an object."""
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise UsageError(f"{what}: not UTF-8 text, so not JSON") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"{what}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{what}: a predicate must be a JSON object, not {_json_kind(data)}")
    return data


def load_predicate(path: str | Path) -> dict[str, Any]:
    """Read and parse a predicate file (``-`` is not accepted: CI logs need a named file)."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_PREDICATE_BYTES:
            raise UsageError(f"predicate {file}: {size} bytes is above {MAX_PREDICATE_BYTES}")
        raw = file.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"predicate {file}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"predicate {file}: is a directory, not a JSON file") from None
    except PermissionError:
        raise UsageError(f"predicate {file}: permission denied") from None
    return parse_predicate(raw, what=f"predicate {file}")


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"
