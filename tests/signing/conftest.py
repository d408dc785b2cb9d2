"""Fixtures for signing tests: key pairs, signed images in registries and layouts, a fake Sigstore."""

from __future__ import annotations

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
from tests.conftest import simple_image, vector
from tests.signing.fakesigstore import FakeSigstore


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


@pytest.fixture
def fake_sigstore(tmp_path: Path) -> tuple[FakeSigstore, str]:
    """A fake Sigstore and the path of its trusted_root.json."""
    sigstore = FakeSigstore()
    return sigstore, sigstore.write_trusted_root(tmp_path / "trusted_root.json")


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
