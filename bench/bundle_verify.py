"""Time Sigstore bundle verification (and keyless signing against a local Sigstore).

Prints the median and p95 of N verifications, already parsed from bytes each
time, for: a key-based DSSE bundle (no log), the key-based conformance bundle
with its Rekor entry (our code), a keyless public-good bundle through
sigstore-python, and cosign's DSSE bundle.  With node and tests/js installed it
also times keyless signing (Fulcio + Rekor round trips) against the local mock.

    .venv/bin/python bench/bundle_verify.py [--runs 100]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest.signing.fulcio import IdentityPolicy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attest.signing.authority import (  # noqa: E402
    TLOG_IF_PRESENT,
    TLOG_REQUIRED,
    KeyAuthority,
    KeylessAuthority,
)
from attest.signing.bundle import SignatureMaterial, make_bundle  # noqa: E402
from attest.signing.bundle_verify import verify_bundle  # noqa: E402
from attest.signing.trust import load_trusted_root  # noqa: E402

VECTORS = ROOT.parent / "shared" / "vectors"
BEACON = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)


def measure(label: str, runs: int, action: Callable[[], object]) -> None:
    action()  # warm caches (trusted roots, verifiers)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    print(f"{label:62} median {statistics.median(times):7.2f} ms  p95 {p95:7.2f} ms  (n={runs})")


def key_based(runs: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.sha256(b"image").hexdigest()
    payload = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "x", "digest": {"sha256": digest}}],
            "predicateType": "https://sigstore.dev/cosign/sign/v1",
            "predicate": {},
        }
    ).encode()
    kind = b"application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)
    bundle = make_bundle(
        SignatureMaterial(key.sign(pae, ec.ECDSA(hashes.SHA256())), payload, kind.decode())
    )

    def verify() -> None:
        assert verify_bundle(
            bundle, KeyAuthority("k", pem, tlog=TLOG_IF_PRESENT), artifact_digest="sha256:" + digest
        ).verified

    measure("key-based DSSE bundle, no log (ours)", runs, verify)


def vectors(runs: int) -> None:
    conformance = VECTORS / "sigstore-conformance"
    if not conformance.is_dir():
        print("(shared vectors absent: skipping vector timings)")
        return
    case = conformance / "managed-key-and-trusted-root"
    bundle = (case / "bundle.sigstore.json").read_bytes()
    root = load_trusted_root(str(case / "trusted_root.json"))
    artifact = (conformance / "a.txt").read_bytes()
    key = KeyAuthority("k", (case / "key.pub").read_bytes(), tlog=TLOG_REQUIRED)
    measure(
        "key-based message bundle + Rekor proof/checkpoint/SET (ours)",
        runs,
        lambda: verify_bundle(bundle, key, artifact=artifact, trusted_root=root),
    )
    happy = (conformance / "happy-path-v0.3-new-mediaType" / "bundle.sigstore.json").read_bytes()
    beacon = KeylessAuthority(
        "ci", IdentityPolicy(issuer="https://token.actions.githubusercontent.com", subject=BEACON)
    )
    measure(
        "keyless public-good bundle (sigstore-python)",
        runs,
        lambda: verify_bundle(happy, beacon, artifact=artifact),
    )
    cosign = VECTORS / "cosign-bundle"
    cosign_bundle = (cosign / "oci-attestation.sigstore.json").read_bytes()
    cody = KeylessAuthority(
        "c",
        IdentityPolicy(issuer="https://github.com/login/oauth", subject="cody@soyland.com"),
        trusted_root=str(cosign / "trusted_root_pgi.json"),
    )
    measure(
        "cosign DSSE bundle, keyless (sigstore-python)",
        runs,
        lambda: verify_bundle(
            cosign_bundle,
            cody,
            artifact_digest="sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4",
        ),
    )


def keyless_signing(runs: int) -> None:
    from attest.testing import SigstoreMock, node_harness_missing

    missing = node_harness_missing()
    if missing:
        print(f"(keyless signing skipped: {missing})")
        return
    from attest.signing.keyless import KeylessSigner

    with tempfile.TemporaryDirectory() as tmp:
        mock = SigstoreMock(Path(tmp) / "sigstore").start()
        try:

            def sign() -> None:
                with KeylessSigner(
                    identity_token=mock.token(), trust_config=mock.trust_config
                ) as signer:
                    signer.sign(b"payload")

            measure("keyless sign: token -> Fulcio cert -> Rekor (local mock)", min(runs, 50), sign)
        finally:
            mock.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    key_based(args.runs)
    vectors(args.runs)
    keyless_signing(args.runs)


if __name__ == "__main__":
    main()
