"""Benchmark key-based image verification against a local registry.

Starts a real ``docker-registry`` on loopback, pushes a small image, signs it
with a fresh ECDSA P-256 key (bundle referrer and legacy ``.sig`` in separate
repositories) and prints the median (and p95) of N verifications:

* ``full``: ``verify_image`` with a new registry connection each time (what
  ``attest verify`` does: resolve, list referrers/tags, fetch, check);
* ``reused store``: the same through one open store (connection reuse, as a
  long-running server would);
* ``already fetched``: ``check_signatures`` on signatures fetched once (crypto
  and policy checks only).

Usage: .venv/bin/python bench/verify.py [--runs 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from attest.oci.access import resolve_image  # noqa: E402
from attest.oci.builder import ImageBuilder  # noqa: E402
from attest.oci.reference import parse_target  # noqa: E402
from attest.oci.registry import RegistryRepository  # noqa: E402
from attest.oci.transport import RegistryClient, RegistryOptions  # noqa: E402
from attest.signing import keys  # noqa: E402
from attest.signing.authority import TLOG_IGNORED, KeyAuthority, VerificationPolicy  # noqa: E402
from attest.signing.signer import KeySigner  # noqa: E402
from attest.signing.storage import attach_signature, find_signatures  # noqa: E402
from attest.testing import RegistryServer  # noqa: E402
from attest.verify import check_signatures, verify_image  # noqa: E402


def _timed(runs: int, action: Callable[[], bool]) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        if not action():
            raise SystemExit("verification unexpectedly failed")
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def _push_signed(
    server: RegistryServer, name: str, signer: KeySigner, legacy: bool, work: Path
) -> str:
    options = RegistryOptions(timeout=60)
    store = RegistryRepository(RegistryClient(server.address, options=options), name)
    builder = ImageBuilder(config={"Entrypoint": ["/bin/app"]})
    builder.layer().file("bin/app", "#!/bin/sh\necho bench\n", mode=0o755).file(
        "etc/os-release", "ID=bench\n"
    )
    builder.build(work / name.replace("/", "-")).push(store, "v1")
    reference = f"{server.address}/{name}:v1"
    attach_signature(store, resolve_image(store, parse_target(reference)), signer, legacy=legacy)  # type: ignore[arg-type]
    store.close()
    return reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    signer = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    # The signer logs nowhere, so the policy opts out of the log (--insecure-ignore-tlog).
    authority = KeyAuthority("bench", keys.public_key_pem(signer.public_key), tlog=TLOG_IGNORED)
    policy = VerificationPolicy((authority,))
    options = RegistryOptions(timeout=60)
    server = RegistryServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            print(f"key-based verification, {args.runs} runs each (milliseconds)")
            for label, legacy in (("bundle referrer", False), ("legacy .sig tag", True)):
                name = "bench/" + ("legacy" if legacy else "bundle")
                reference = _push_signed(server, name, signer, legacy, work)
                full = _timed(
                    args.runs,
                    lambda r=reference: (
                        verify_image(r, policy, options=options, attestations=False).verified
                    ),
                )
                store = RegistryRepository(RegistryClient(server.address, options=options), name)
                reused = _timed(
                    args.runs,
                    lambda r=reference, s=store: (
                        verify_image(r, policy, store=s, attestations=False).verified
                    ),
                )
                digest = store.resolve("v1").digest
                found = find_signatures(store, digest, attestations=False)
                fetched = _timed(
                    args.runs,
                    lambda r=reference, d=digest, f=found: (
                        check_signatures(r, d, f, policy, attestations=False).verified
                    ),
                )
                store.close()
                for what, (median, p95) in (
                    ("full (new connection)", full),
                    ("reused store", reused),
                    ("already fetched", fetched),
                ):
                    print(f"  {label:<16} {what:<22} median {median:7.2f}  p95 {p95:7.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
