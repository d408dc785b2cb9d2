"""Fixtures for the Sigstore tests: extra local Sigstore instances and authority helpers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from tests.conftest import VECTORS, vector
from tests.support.sigstore import SigstoreMock, node_harness_missing

CONFORMANCE = VECTORS / "sigstore-conformance"
COSIGN_BUNDLE = VECTORS / "cosign-bundle"


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
