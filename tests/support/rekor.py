"""A real Rekor v2 (rekor-tiles, POSIX storage in a directory) on loopback.

``RekorTiles`` starts the ``rekor-server`` built from ``github.com/sigstore/rekor-tiles/v2``
with a fresh Ed25519 checkpoint key and its own storage directory; ``tlog_entry``
is the log as a trusted root lists it (log id = the C2SP signed-note key hash of
origin and key, as rekor-tiles computes it).  Its checkpoint interval is short so
an upload answers within about a second.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from attest.testing import free_port, stop_process, wait_http

# The checkpoint origin is the log's host name: sigstore-go checks notes signed under the
# host of the trusted root's baseUrl (without the port).
ORIGIN = "127.0.0.1"


@dataclass
class RekorTiles:
    """One rekor-tiles process; ``url`` is its base URL (``POST /api/v2/log/entries``)."""

    binary: str
    origin: str = ORIGIN
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="attest-rekor-")))
    key: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_id(self) -> bytes:
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return hashlib.sha256(self.origin.encode() + b"\n\x01" + raw).digest()

    def start(self) -> RekorTiles:
        key_path = self.workdir / "checkpoint.key"
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        log = (self.workdir / "rekor.log").open("wb")
        self.process = subprocess.Popen(
            [
                self.binary,
                "serve",
                "--storage-dir",
                str(self.workdir / "log"),
                "--signer-filepath",
                str(key_path),
                "--hostname",
                self.origin,
                "--http-address",
                "127.0.0.1",
                "--http-port",
                str(self.http_port),
                "--grpc-address",
                "127.0.0.1",
                "--grpc-port",
                str(self.grpc_port),
                "--http-metrics-port",
                str(self.metrics_port),
                "--checkpoint-interval",
                "500ms",
                "--batch-max-age",
                "50ms",
                "--log-level",
                "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        try:
            wait_http(f"{self.url}/healthz", timeout=30)
        except RuntimeError:
            self.stop()
            tail = (self.workdir / "rekor.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"rekor-tiles did not start:\n{tail}") from None
        return self

    def stop(self) -> None:
        stop_process(self.process, timeout=15)
        self.process = None

    def tlog_entry(self, start: str = "2020-01-01T00:00:00Z") -> dict[str, Any]:
        """This log as a trusted root's ``tlogs`` item."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "baseUrl": self.url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": base64.b64encode(der).decode(),
                "keyDetails": "PKIX_ED25519",
                "validFor": {"start": start},
            },
            "logId": {"keyId": base64.b64encode(self.log_id).decode()},
        }
