"""cosign's simple-signing payload: the JSON a legacy image signature signs.

``{"critical": {"identity": {"docker-reference": NAME}, "image":
{"docker-manifest-digest": DIGEST}, "type": "cosign container image
signature"}, "optional": {…annotations…} | null}``.  The signature covers these
exact bytes, so verification parses the bytes that were signed and never
re-serialises them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from attest.errors import SignatureFormatError

SIMPLE_SIGNING_TYPE = "cosign container image signature"
MAX_PAYLOAD_BYTES = 1024 * 1024


@dataclass(frozen=True)
class SimpleSigningPayload:
    """The parts of a simple-signing payload a verifier looks at."""

    docker_reference: str
    manifest_digest: str
    type: str
    optional: dict[str, Any] = field(default_factory=dict)


def make_payload(docker_reference: str, digest: str, annotations: dict[str, str]) -> bytes:
    """The payload bytes cosign would sign for ``docker_reference@digest``."""
    document = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": dict(annotations) if annotations else None,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def parse_payload(raw: bytes) -> SimpleSigningPayload:
    """Parse signed payload bytes strictly; raises :class:`SignatureFormatError`."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise SignatureFormatError("simple-signing payload is larger than 1 MiB")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SignatureFormatError(f"simple-signing payload is not JSON ({err})") from None
    critical = document.get("critical") if isinstance(document, dict) else None
    if not isinstance(critical, dict):
        raise SignatureFormatError("simple-signing payload has no 'critical' object")
    image = critical.get("image")
    identity = critical.get("identity")
    kind = critical.get("type")
    digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(digest, str) or not digest:
        raise SignatureFormatError(
            "simple-signing payload has no critical.image.docker-manifest-digest"
        )
    if not isinstance(kind, str):
        raise SignatureFormatError("simple-signing payload has no critical.type")
    reference = identity.get("docker-reference") if isinstance(identity, dict) else None
    optional = document.get("optional")
    if optional is not None and not isinstance(optional, dict):
        raise SignatureFormatError("simple-signing payload 'optional' is not an object")
    return SimpleSigningPayload(
        docker_reference=reference if isinstance(reference, str) else "",
        manifest_digest=digest,
        type=kind,
        optional=dict(optional or {}),
    )
