"""``attest-conformance sign-bundle`` against the local Sigstore, then ``verify-bundle``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from attest.cli.conformance import main as conformance_main
from attest.testing import DEFAULT_ISSUER, DEFAULT_SUBJECT, SigstoreMock
from tests.signing.conftest import statement


def _sign(mock: SigstoreMock, artifact: Path, bundle: Path, *extra: str) -> int:
    return conformance_main(
        [
            "sign-bundle",
            *extra,
            "--identity-token",
            mock.token(),
            "--bundle",
            str(bundle),
            "--trusted-root",
            mock.trusted_root,
            "--signing-config",
            mock.signing_config,
            str(artifact),
        ]
    )


def _verify(
    mock: SigstoreMock, bundle: Path, artifact: str, identity: str = DEFAULT_SUBJECT
) -> int:
    return conformance_main(
        [
            "verify-bundle",
            "--bundle",
            str(bundle),
            "--certificate-identity",
            identity,
            "--certificate-oidc-issuer",
            DEFAULT_ISSUER,
            "--trusted-root",
            mock.trusted_root,
            artifact,
        ]
    )


def test_sign_then_verify_artifact(sigstore_mock: SigstoreMock, tmp_path: Path) -> None:
    artifact = tmp_path / "artifact.txt"
    artifact.write_text("release notes\n")
    bundle = tmp_path / "artifact.sigstore.json"
    assert _sign(sigstore_mock, artifact, bundle) == 0
    assert json.loads(bundle.read_text())["messageSignature"]
    assert not (tmp_path / "artifact.sigstore.json.partial").exists()
    assert _verify(sigstore_mock, bundle, str(artifact)) == 0
    digest = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert _verify(sigstore_mock, bundle, digest) == 0
    assert _verify(sigstore_mock, bundle, str(artifact), identity="someone@else") == 1


def test_sign_in_toto_statement(sigstore_mock: SigstoreMock, tmp_path: Path) -> None:
    subject = tmp_path / "app.tar"
    subject.write_bytes(b"app")
    stmt = tmp_path / "statement.json"
    stmt.write_bytes(statement(hashlib.sha256(b"app").hexdigest()))
    bundle = tmp_path / "statement.sigstore.json"
    assert _sign(sigstore_mock, stmt, bundle, "--in-toto") == 0
    assert (
        json.loads(bundle.read_text())["dsseEnvelope"]["payloadType"]
        == "application/vnd.in-toto+json"
    )
    assert _verify(sigstore_mock, bundle, str(subject)) == 0
    other = tmp_path / "other.tar"
    other.write_bytes(b"other")
    assert _verify(sigstore_mock, bundle, str(other)) == 1


def test_sign_errors_are_one_line(
    sigstore_mock: SigstoreMock, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "b.json"
    code = conformance_main(
        [
            "sign-bundle",
            "--staging",
            "--identity-token",
            sigstore_mock.token(),
            "--bundle",
            str(bundle),
            str(bundle),
        ]
    )
    assert code == 2 and "--staging" in capfd.readouterr().err
    code = _sign(sigstore_mock, tmp_path / "missing.txt", bundle)
    err = capfd.readouterr().err
    assert code == 2 and "missing.txt" in err and len(err.strip().splitlines()) == 1
    assert not bundle.exists()
