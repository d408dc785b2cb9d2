"""Digest pinning: a JSONPatch that rewrites admitted image tags to the digests that were verified.

The mutating webhook (``POST /mutate``, off unless the configuration says
``pinDigests: true``) runs the same decision as ``/validate``; for an admitted
workload every container whose image was verified by tag gets
``image: <as written>@<verified digest>``, so the kubelet pulls exactly what
was verified even if the tag moves later.  Images already pinned, not
verified (warn mode, unmatched-but-allowed) or of a denied workload are left
alone: ``/mutate`` never denies; the validating webhook judges the pinned
object and its decision is the one recorded.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from admission.workloads import workload_images

_INDEXED = re.compile(r"^(?P<key>[^\[\]]+)\[(?P<index>\d+)\]$")


def json_pointer(dotted: str) -> str:
    """``spec.template.spec.containers[0].image`` as ``/spec/template/spec/containers/0/image``."""
    parts: list[str] = []
    for segment in dotted.split("."):
        match = _INDEXED.match(segment)
        if match:
            parts.extend((match["key"], match["index"]))
        else:
            parts.append(segment)
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def pin_patch(kind: str, obj: dict[str, Any], decision: Any) -> list[dict[str, str]]:
    """JSONPatch operations pinning every verified, not yet pinned image of an admitted object."""
    if not decision.allowed or not decision.checked:
        return []
    verified = {
        image.reference: image.digest
        for image in decision.images
        if image.outcome == "verified" and image.digest
    }
    operations = []
    for container in workload_images(kind, obj):
        digest = verified.get(container.image)
        if digest is None or "@" in container.image:
            continue
        operations.append(
            {
                "op": "replace",
                "path": json_pointer(container.path),
                "value": f"{container.image}@{digest}",
            }
        )
    return operations


def encode_patch(operations: list[dict[str, str]]) -> str:
    """The AdmissionReview ``response.patch`` field: base64 of the JSONPatch document."""
    return base64.b64encode(json.dumps(operations, separators=(",", ":")).encode()).decode()
