"""Bounds on the request-sized parts of the policy input and of decision records.

A request's labels, the annotations of the signatures and attestations found for
its images, and the image strings themselves come from whoever wrote the workload
or pushed to the registry.  Copied whole, a 2.5 MB label set made a 2.5 MB record
(and 2.5 s of Rego, which reads its input at about a microsecond per byte).  So:

* a key or value longer than :data:`MAX_CHARS` (256; Kubernetes allows 63 for a
  label value and 317 for a key) keeps its first :data:`KEPT_CHARS` (128)
  characters, followed by ``…[<length> chars, sha256:<hex>]`` naming the whole
  value, so two different long values never look alike;
* a map keeps its first :data:`MAX_ENTRIES` (64) entries, in key order, plus
  ``attest.dev/truncated: "<n> more of <total> entries, sha256:<hex>"`` (hash of the
  whole map as canonical JSON);
* an image string longer than :data:`MAX_REFERENCE_CHARS` (1024; a valid reference
  is at most about 520) is bounded like a value (it is invalid anyway, and denied).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

MAX_CHARS = 256
KEPT_CHARS = 128
MAX_ENTRIES = 64
MAX_REFERENCE_CHARS = 1024
TRUNCATED_KEY = "attest.dev/truncated"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def bounded_text(text: str, limit: int = MAX_CHARS) -> str:
    """``text`` itself when at most ``limit`` characters, else its start and its hash."""
    if len(text) <= limit:
        return text
    return f"{text[:KEPT_CHARS]}…[{len(text)} chars, sha256:{_sha256(text)}]"


def _bounded_value(value: Any) -> Any:
    if isinstance(value, str):
        return bounded_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return value if len(text) <= MAX_CHARS else bounded_text(text)


def bounded_map(mapping: Mapping[Any, Any]) -> dict[str, Any]:
    """``mapping`` with long keys and values shortened and at most :data:`MAX_ENTRIES`
    entries (the rest summarised under :data:`TRUNCATED_KEY`)."""
    if len(mapping) <= MAX_ENTRIES and all(
        isinstance(k, str) and len(k) <= MAX_CHARS and _bounded_value(v) is v
        for k, v in mapping.items()
    ):
        return dict(mapping)  # the common case: nothing to shorten
    keys = sorted(mapping, key=str)
    bounded = {bounded_text(str(k)): _bounded_value(mapping[k]) for k in keys[:MAX_ENTRIES]}
    if len(keys) > MAX_ENTRIES:
        whole = json.dumps(
            {str(k): mapping[k] for k in keys}, sort_keys=True, separators=(",", ":"), default=str
        )
        bounded[TRUNCATED_KEY] = (
            f"{len(keys) - MAX_ENTRIES} more of {len(keys)} entries, sha256:{_sha256(whole)}"
        )
    return bounded


def bounded_verification(document: dict[str, Any]) -> dict[str, Any]:
    """An ``ImageVerification.to_dict()`` with each check's annotations bounded."""
    bounded = dict(document)
    for key in ("signatures", "attestations"):
        checks = document.get(key)
        if isinstance(checks, list):
            bounded[key] = [
                {**c, "annotations": bounded_map(c["annotations"])}
                if isinstance(c, dict) and isinstance(c.get("annotations"), dict)
                else c
                for c in checks
            ]
    return bounded
