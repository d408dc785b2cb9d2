"""The real RFC 3161 timestamp authority (sigstore's ``timestamp-server``) on loopback.

``TimestampAuthority`` starts ``timestamp-server serve`` with a file-based signer and
a certificate chain made here (a root CA and a TSA leaf with the critical
``timeStamping`` extended key usage), so a test controls the leaf's validity
window.  ``authority_entry`` is the TSA as a trusted root lists it.  NTP
monitoring is off: the suite has no network.  timestamp-server v2.1.3 always serves
its metrics on ``:2112`` (every interface, no flag to move it), so only one can run
on a machine at a time: ``start`` takes a machine-wide lock (waiting for another suite's
authority, e.g. a parallel ``make mutants`` copy, to stop) and ``stop`` releases it.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from attest.testing import free_port, stop_process, wait_http

UTC = dt.UTC


@dataclass(frozen=True)
class TsaChain:
    """A TSA signing key and its chain (leaf first), as PEM files and certificates."""

    key_path: Path
    chain_path: Path
    leaf: x509.Certificate
    root: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "attest tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_chain(
    directory: Path,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> TsaChain:
    """A root CA and a TSA leaf valid from ``not_before`` to ``not_after`` (default: ±1 day)."""
    now = dt.datetime.now(UTC)
    leaf_start = not_before or now - dt.timedelta(days=1)
    leaf_end = not_after or now + dt.timedelta(days=1)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name("attest test TSA root")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(leaf_start, now) - dt.timedelta(days=1))
        .not_valid_after(max(leaf_end, now) + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("attest test TSA"))
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(leaf_start)
        .not_valid_after(leaf_end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / "tsa.key"
    key_path.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"tsa-test"),
        )
    )
    chain_path = directory / "tsa-chain.pem"
    chain_path.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + root.public_bytes(serialization.Encoding.PEM)
    )
    return TsaChain(key_path, chain_path, leaf, root)


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


METRICS_LOCK = Path(tempfile.gettempdir()) / "attest-timestamp-server-2112.lock"
METRICS_LOCK_WAIT_SECONDS = 900.0


@dataclass
class TimestampAuthority:
    """One ``timestamp-server`` process; ``url`` is its RFC 3161 endpoint."""

    binary: str
    chain: TsaChain
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="attest-tsa-")))
    process: subprocess.Popen[bytes] | None = None
    _lock: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/api/v1/timestamp"

    def _take_metrics_port(self) -> None:
        """Wait (bounded) until no other timestamp-server of this machine holds :2112."""
        self._lock = open(METRICS_LOCK, "a")  # noqa: SIM115 - held until stop()
        deadline = time.monotonic() + METRICS_LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._lock.close()
                    self._lock = None
                    raise RuntimeError(
                        f"another timestamp-server held :2112 for {METRICS_LOCK_WAIT_SECONDS:.0f} s"
                        f" ({METRICS_LOCK})"
                    ) from None
                time.sleep(0.2)

    def start(self) -> TimestampAuthority:
        self._take_metrics_port()
        log = (self.workdir / "timestamp-server.log").open("wb")
        self.process = subprocess.Popen(
            [
                self.binary,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--timestamp-signer",
                "file",
                "--file-signer-key-path",
                str(self.chain.key_path),
                "--file-signer-passwd",
                "tsa-test",
                "--certificate-chain-path",
                str(self.chain.chain_path),
                "--disable-ntp-monitoring",
                "--log-type",
                "prod",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        try:
            wait_http(f"{self.base_url}/ping", timeout=30)
        except RuntimeError:
            self.stop()
            tail = (self.workdir / "timestamp-server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"timestamp-server did not start:\n{tail}") from None
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def authority_entry(
        self, *, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> dict[str, Any]:
        """This TSA as a trusted root's ``timestampAuthorities`` item (chain leaf first)."""
        valid_for: dict[str, str] = {
            "start": _rfc3339(start or self.chain.leaf.not_valid_before_utc)
        }
        if end is not None:
            valid_for["end"] = _rfc3339(end)
        return {
            "subject": {"organization": "attest tests", "commonName": "attest test TSA"},
            "uri": self.url,
            "certChain": {
                "certificates": [
                    {
                        "rawBytes": base64.b64encode(
                            c.public_bytes(serialization.Encoding.DER)
                        ).decode()
                    }
                    for c in (self.chain.leaf, self.chain.root)
                ]
            },
            "validFor": valid_for,
        }
