"""Keyless attestations through a local Sigstore, and our bundles checked by sigstore-js.

The local Sigstore is @sigstore/mock's Fulcio and Rekor behind a Node server (fixture
``sigstore_mock``); the independent verifier is ``@sigstore/verify`` run by
``tests/js/verify-bundle.js``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attest.oci.manifest import Manifest
from attest.oci.referrers import list_referrers
from attest.oci.store import read_blob
from attest.testing import DEFAULT_ISSUER, SigstoreMock
from tests.attestations.test_cli_attestations import GITHUB_ENV, KEY, PUB
from tests.support.sigstore import verify_with_sigstore_js

BUILDER = GITHUB_ENV["GITHUB_WORKFLOW_REF"].split("/", 2)[2]
SUBJECT = f"https://github.com/acme/shop/{BUILDER}"


pytestmark = pytest.mark.usefixtures("no_ci")


def sigstore_js(bundle: bytes, trusted_root: str, tmp_path: Path, *trust: str) -> dict:
    """Verify ``bundle`` with @sigstore/verify; returns its JSON verdict."""
    path = tmp_path / "bundle.sigstore.json"
    path.write_bytes(bundle)
    return verify_with_sigstore_js(path, trusted_root, *trust)


def _bundles(repo, digest: str) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """Every bundle referrer of ``digest``, by its predicate type annotation."""
    found = {}
    for descriptor in list_referrers(repo, digest):
        manifest = repo.fetch_manifest(descriptor.digest).parsed
        assert isinstance(manifest, Manifest)
        predicate_type = manifest.annotations.get("dev.sigstore.bundle.predicateType", "")
        found[predicate_type] = read_blob(repo, manifest.layers[0])
    return found


def test_keyless_provenance_verifies_here_and_with_sigstore_js(  # type: ignore[no-untyped-def]
    cli, registry, repo, push_image, sigstore_mock: SigstoreMock, tmp_path: Path
) -> None:
    digest = push_image(repo, "v1").digest
    ref = f"{registry.address}/{repo.repository}:v1"
    token = sigstore_mock.token(subject=SUBJECT)
    result = cli(
        "provenance", ref, "--identity-token", token, "--trust-config", sigstore_mock.trust_config,
        env=GITHUB_ENV,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr

    verify = [
        "verify-attestation", ref, "--type", "slsaprovenance1",
        "--certificate-identity", SUBJECT, "--certificate-oidc-issuer", DEFAULT_ISSUER,
        "--trusted-root", sigstore_mock.trusted_root,
        "--builder-id", SUBJECT, "--source-uri", "github.com/acme/shop", "--source-branch", "main",
    ]  # fmt: skip
    passed = cli(*verify, "-o", "json")
    assert passed.exit_code == 0, passed.stdout + passed.stderr
    outcome = passed.json()["attestations"][0]
    # The certificate identity and the provenance's builder id name the same workflow.
    assert outcome["signer"]["subject"] == SUBJECT
    assert outcome["statement"]["predicate"]["runDetails"]["builder"]["id"] == SUBJECT

    other_identity = [a if a != SUBJECT else SUBJECT.replace("shop", "evil") for a in verify]
    assert cli(*other_identity).exit_code == 1
    regexp = [*verify]
    regexp[regexp.index("--certificate-identity")] = "--certificate-identity-regexp"
    regexp[regexp.index(SUBJECT)] = "https://github.com/acme/.*"
    assert cli(*regexp).exit_code == 0

    bundle = _bundles(repo, digest)["https://slsa.dev/provenance/v1"]
    verdict = sigstore_js(
        bundle,
        sigstore_mock.trusted_root,
        tmp_path,
        "--identity",
        SUBJECT,
        "--issuer",
        DEFAULT_ISSUER,
    )
    assert verdict["verified"], verdict
    wrong = sigstore_js(
        bundle,
        sigstore_mock.trusted_root,
        tmp_path,
        "--identity",
        SUBJECT + "x",
        "--issuer",
        DEFAULT_ISSUER,
    )
    assert not wrong["verified"]


def test_key_based_attestation_bundle_verifies_with_sigstore_js(  # type: ignore[no-untyped-def]
    cli, registry, repo, push_image, sigstore_mock: SigstoreMock, tmp_path: Path
) -> None:
    digest = push_image(repo, "v1").digest
    ref = f"{registry.address}/{repo.repository}:v1"
    predicate = tmp_path / "vuln.json"
    predicate.write_text(
        json.dumps({"scanner": {"uri": "pkg:github/aquasecurity/trivy", "result": {"count": 0}}})
    )
    result = cli(
        "attest", ref, "--key", KEY, "--tlog-upload=false", "--predicate", str(predicate), "--type", "vuln",
        env={"ATTEST_PASSWORD": "attest-dev"},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    bundle = _bundles(repo, digest)["https://cosign.sigstore.dev/attestation/vuln/v1"]
    verdict = sigstore_js(bundle, sigstore_mock.trusted_root, tmp_path, "--key", PUB, "--no-tlog")
    assert verdict["verified"], verdict
    other = tmp_path / "other"
    assert (
        cli("keygen", "--output-key-prefix", str(other), env={"ATTEST_PASSWORD": "x"}).exit_code
        == 0
    )
    assert not sigstore_js(
        bundle, sigstore_mock.trusted_root, tmp_path, "--key", f"{other}.pub", "--no-tlog"
    )["verified"]
