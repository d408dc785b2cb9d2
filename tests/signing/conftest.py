"""Fixtures for signing tests: key pairs, signed images in registries and layouts, extra local
Sigstore instances (the Node mock, like ``sigstore_mock``) and the vectors they read."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attest.oci.access import ResolvedImage, resolve_image
from attest.oci.layout import LayoutStore
from attest.oci.reference import parse_target
from attest.oci.store import ImageStore
from attest.signing import keys
from attest.signing.authority import (
    TLOG_IGNORED,
    KeyAuthority,
    KeylessAuthority,
    TlogMode,
    VerificationPolicy,
)
from attest.signing.fulcio import IdentityPolicy
from attest.signing.signer import KeySigner
from attest.testing import SigstoreMock, node_harness_missing
from attest.testing.images import simple_image
from tests.conftest import VECTORS, vector

CONFORMANCE = VECTORS / "sigstore-conformance"
COSIGN_BUNDLE = VECTORS / "cosign-bundle"


@dataclass
class SigningKey:
    signer: KeySigner
    public_pem: bytes

    def policy(
        self, name: str = "key", *, tlog: TlogMode = TLOG_IGNORED, **extra: object
    ) -> VerificationPolicy:
        """A policy trusting this key.  These signers log nowhere (``--tlog-upload=false``),
        so by default the policy opts out of the log as ``--insecure-ignore-tlog`` does."""
        authority = KeyAuthority(name, self.public_pem, tlog=tlog)
        return VerificationPolicy((authority,), **extra)  # type: ignore[arg-type]


def make_key() -> SigningKey:
    signer = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    return SigningKey(signer, keys.public_key_pem(signer.public_key))


@pytest.fixture
def key() -> SigningKey:
    return make_key()


@pytest.fixture
def other_key() -> SigningKey:
    return make_key()


@pytest.fixture
def vectors() -> Path:
    """The vectors folder (tests/vectors); its absence fails the test."""
    return vector("cosign-legacy").parent


@pytest.fixture
def layout_image(tmp_path: Path) -> Iterator[tuple[str, LayoutStore, ResolvedImage]]:
    """An OCI layout with one image tagged v1: (reference text, open store, resolved image)."""
    path = tmp_path / "layout"
    store = LayoutStore(str(path), create=True)
    simple_image(tmp_path).build(tmp_path / "build").push(store, "v1")
    reference = f"oci:{path}:v1"
    image = resolve_image(store, parse_target(reference))  # type: ignore[arg-type]
    yield reference, store, image
    store.close()


def resolved(store: ImageStore, reference: str) -> ResolvedImage:
    return resolve_image(store, parse_target(reference))  # type: ignore[arg-type]


def statement_for(digest: str, predicate_type: str = "https://example.com/test/v1") -> bytes:
    algorithm, hex_part = digest.split(":")
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "image", "digest": {algorithm: hex_part}}],
            "predicateType": predicate_type,
            "predicate": {"count": 3},
        }
    ).encode()


def keyless_policy(
    root: str | None,
    *,
    subject: str | None = None,
    subject_regexp: str | None = None,
    issuer: str | None = "https://issuer.test",
    issuer_regexp: str | None = None,
    **extra: object,
) -> VerificationPolicy:
    authority = KeylessAuthority(
        "identity",
        IdentityPolicy(
            issuer=issuer,
            issuer_regexp=issuer_regexp,
            subject=subject,
            subject_regexp=subject_regexp,
        ),
        trusted_root=root,
    )
    return VerificationPolicy((authority,), **extra)  # type: ignore[arg-type]


def needs_vectors(folder: str) -> pytest.MarkDecorator:
    """Mark a test as reading ``tests/vectors/<folder>``; a missing folder fails the test."""
    return pytest.mark.usefixtures(f"vectors_{folder.replace('-', '_')}")


@pytest.fixture
def vectors_sigstore_conformance() -> None:
    vector("sigstore-conformance")


@pytest.fixture
def vectors_cosign_bundle() -> None:
    vector("cosign-bundle")


def statement(digest_hex: str, predicate_type: str = "https://example.com/test/v1") -> bytes:
    """A minimal in-toto Statement v1 about one sha256 subject."""
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "registry.test/app", "digest": {"sha256": digest_hex}}],
            "predicateType": predicate_type,
            "predicate": {"built": True},
        },
        separators=(",", ":"),
    ).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _start(tmp_path_factory: pytest.TempPathFactory, name: str, **options: object) -> SigstoreMock:
    missing = node_harness_missing()
    if missing:
        pytest.fail(missing)
    return SigstoreMock(tmp_path_factory.mktemp(name), **options).start()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def other_sigstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigstoreMock]:
    """A second, unrelated instance: its root must not trust the first one's certificates."""
    server = _start(tmp_path_factory, "sigstore-other")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def skewed_sigstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigstoreMock]:
    """An instance whose Rekor logs entries an hour after Fulcio's 10-minute certificates expire."""
    server = _start(tmp_path_factory, "sigstore-skewed", rekor_time_offset=3600)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def echo_sigstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigstoreMock]:
    """An instance whose Rekor echoes DSSE proposals uncanonicalised (the raw mock)."""
    server = _start(tmp_path_factory, "sigstore-echo", dsse="echo")
    yield server
    server.stop()
