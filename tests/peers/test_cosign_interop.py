"""Two-way interop with the real cosign (v3, built from its module) on the real registry.

Debian's docker-registry (distribution 2.8) has no referrers API, so what meets here
is cosign's and attest's referrers *tag schema* fallback (``sha256-<hex>`` index
tags) for bundles, and cosign's ``.sig``/``.att`` tags for the legacy format.  Logs:
the mock's Rekor v1 (``trust_v1``) and the real Rekor v2 (``trust_v2``, rekor-tiles);
cosign verifies against our trusted roots with ``--trusted-root`` (never TUF).
Each test is one cell of the README's interop matrix.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from attest.testing import DEFAULT_ISSUER, DEFAULT_SUBJECT, SigstoreMock
from tests.peers.conftest import ENV, PASSWORD, Cosign, KeyPair
from tests.support.trust import Trust

PROVENANCE = {
    "buildDefinition": {
        "buildType": "https://attest.dev/buildtypes/generic/v1",
        "externalParameters": {
            "source": {"uri": "git+https://github.com/acme/app", "ref": "refs/heads/main"}
        },
        "resolvedDependencies": [
            {
                "uri": "git+https://github.com/acme/app@refs/heads/main",
                "digest": {"gitCommit": "a" * 40},
            }
        ],
    },
    "runDetails": {"builder": {"id": "https://ci.example.com/builder"}},
}
CYCLONEDX = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": []}
CUSTOM_TYPE = "https://attest.dev/test/custom/v1"
PREDICATES: dict[str, tuple[str, dict[str, Any], str]] = {
    # cosign --type, the predicate, attest --type (cosign's aliases where it has them)
    "slsaprovenance1": ("slsaprovenance1", PROVENANCE, "slsaprovenance1"),
    "cyclonedx": ("cyclonedx", CYCLONEDX, "cyclonedx"),
    "custom": (CUSTOM_TYPE, {"reviewed": True, "by": "security"}, CUSTOM_TYPE),
}


def _image(registry: Any, repo: Any, push_image: Any, tag: str = "v1", marker: str = "one") -> str:
    """Push an image; its reference by digest (what both tools sign)."""
    digest = push_image(repo, tag, marker=marker).digest
    return f"{registry.address}/{repo.repository}@{digest}"


def _trust(name: str, trust_v1: Trust, trust_v2: Trust) -> Trust:
    return {"v1": trust_v1, "v2": trust_v2}[name]


def _identity_token(mock: SigstoreMock, directory: Path) -> Path:
    path = directory / "oidc-token"
    path.write_text(mock.token())
    return path


# -- attest signs, cosign verifies --------------------------------------------------------


@pytest.mark.parametrize(("storage", "log"), [("bundle", "v1"), ("bundle", "v2"), ("legacy", "v1")])
def test_attest_sign_cosign_verify(
    cli, cosign: Cosign, registry, repo, push_image, attest_keys, trust_v1, trust_v2,
    storage: str, log: str,
) -> None:  # fmt: skip
    """attest sign --key logs in Rekor like cosign; cosign verify (tlog required) accepts it."""
    ref = _image(registry, repo, push_image)
    mine, other = attest_keys("mine"), attest_keys("other")
    trust = _trust(log, trust_v1, trust_v2)
    legacy = ["--legacy"] if storage == "legacy" else []
    signed = cli(
        "sign", ref, "--key", mine.private, "--trust-config", str(trust.config), *legacy, env=ENV
    )
    assert signed.exit_code == 0, signed.stderr
    assert f"logged in Rekor v{log[1]}" in signed.stderr

    flags = ["--trusted-root", str(trust.root)]
    if storage == "legacy":
        flags.append("--new-bundle-format=false")
    verified = cosign.ok("verify", "--key", mine.public, *flags, ref)
    (claim,) = json.loads(verified.stdout)
    assert claim["critical"]["image"]["docker-manifest-digest"] == ref.split("@")[1]
    wrong = cosign("verify", "--key", other.public, *flags, ref)
    assert wrong.returncode != 0 and (
        "no matching signatures" in wrong.stderr or "verif" in wrong.stderr
    )


@pytest.mark.parametrize("storage", ["bundle", "legacy"])
def test_attest_unlogged_signature_needs_cosigns_opt_out(
    cli, cosign: Cosign, registry, repo, push_image, attest_keys, trust_v1, storage: str
) -> None:
    """--tlog-upload=false: cosign refuses it by default and takes it with --insecure-ignore-tlog."""
    ref = _image(registry, repo, push_image)
    mine = attest_keys()
    legacy = ["--legacy"] if storage == "legacy" else []
    signed = cli("sign", ref, "--key", mine.private, "--tlog-upload=false", *legacy, env=ENV)
    assert signed.exit_code == 0, signed.stderr
    flags = ["--trusted-root", str(trust_v1.root)]
    if storage == "legacy":
        flags.append("--new-bundle-format=false")
    refused = cosign("verify", "--key", mine.public, *flags, ref)
    assert refused.returncode != 0, refused.stdout
    cosign.ok("verify", "--key", mine.public, *flags, "--insecure-ignore-tlog", ref)


# -- cosign signs, attest verifies and the webhook admits ------------------------------------


def _cosign_sign(cosign: Cosign, key: str, ref: str, how: str, trust_v1: Trust, trust_v2: Trust, mock: SigstoreMock) -> None:  # fmt: skip
    if how in ("v1", "v2"):
        trust = _trust(how, trust_v1, trust_v2)
        cosign.ok("sign", "--key", key, "--signing-config", str(trust.signing),
                  "--trusted-root", str(trust.root), "-y", ref)  # fmt: skip
    elif how == "legacy":
        cosign.ok("sign", "--key", key, "--new-bundle-format=false", "--use-signing-config=false",
                  "--rekor-url", mock.url, "-y", ref)  # fmt: skip
    else:
        assert how == "unlogged"
        cosign.ok(
            "sign", "--key", key, "--use-signing-config=false", "--tlog-upload=false", "-y", ref
        )


@pytest.mark.parametrize("how", ["v1", "v2", "legacy", "unlogged"])
def test_cosign_sign_attest_verify(
    cli, cosign: Cosign, cosign_keys: KeyPair, registry, repo, push_image, trust_v1, trust_v2,
    sigstore_mock, attest_keys, how: str,
) -> None:  # fmt: skip
    ref = _image(registry, repo, push_image)
    _cosign_sign(cosign, cosign_keys.private, ref, how, trust_v1, trust_v2, sigstore_mock)
    root = ["--trusted-root", str(trust_v1.root)]
    result = cli("verify", ref, "--key", cosign_keys.public, *root, "--output", "json")
    if how == "unlogged":
        assert result.exit_code == 1
        (check,) = result.json()["signatures"]
        assert "no transparency-log entry" in check["reasons"][0]
        result = cli(
            "verify", ref, "--key", cosign_keys.public, "--insecure-ignore-tlog", "-o", "json"
        )
    assert result.exit_code == 0, result.stdout + result.stderr
    (check,) = result.json()["signatures"]
    assert check["verified"] and check["storage"] == ("legacy" if how == "legacy" else "bundle")
    if how != "unlogged":
        expected = {
            "v1": "hashedrekord/0.0.1",
            "legacy": "hashedrekord/0.0.1",
            "v2": "hashedrekord/0.0.2",
        }
        # cosign v3 logs the DSSE bundle of a v1 log as a dsse entry, a v2 log as hashedrekord.
        kind = check["tlog"]["kind"]
        assert kind == expected[how] or (how == "v1" and kind == "dsse/0.0.1"), kind
    wrong = cli("verify", ref, "--key", attest_keys().public, *root)
    assert wrong.exit_code == 1


# -- attestations ----------------------------------------------------------------------------


@pytest.mark.parametrize("predicate", sorted(PREDICATES))
def test_cosign_attest_attest_verify_attestation(
    cli, cosign: Cosign, cosign_keys: KeyPair, registry, repo, push_image, trust_v1, tmp_path,
    predicate: str,
) -> None:  # fmt: skip
    ref = _image(registry, repo, push_image)
    cosign_type, body, attest_type = PREDICATES[predicate]
    path = tmp_path / "predicate.json"
    path.write_text(json.dumps(body))
    cosign.ok("attest", "--key", cosign_keys.private, "--type", cosign_type, "--predicate", str(path),
              "--signing-config", str(trust_v1.signing), "--trusted-root", str(trust_v1.root),
              "-y", ref)  # fmt: skip
    result = cli("verify-attestation", ref, "--key", cosign_keys.public, "--type", attest_type,
                 "--trusted-root", str(trust_v1.root), "-o", "json")  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    report = result.json()
    (outcome,) = report["attestations"]
    assert outcome["signatureVerified"] and outcome["passed"]
    assert outcome["statement"]["predicate"] == body
    other = cli("verify-attestation", ref, "--key", cosign_keys.public, "--type", "spdxjson",
                "--trusted-root", str(trust_v1.root))  # fmt: skip
    assert other.exit_code == 1


def test_cosign_legacy_attestation_attest_verify(
    cli, cosign: Cosign, cosign_keys: KeyPair, registry, repo, push_image, trust_v1,
    sigstore_mock, tmp_path,
) -> None:  # fmt: skip
    """cosign's .att tag (dsse Rekor v1 entry) verifies with attest's legacy path."""
    ref = _image(registry, repo, push_image)
    path = tmp_path / "predicate.json"
    path.write_text(json.dumps(PROVENANCE))
    cosign.ok("attest", "--key", cosign_keys.private, "--type", "slsaprovenance1",
              "--predicate", str(path), "--new-bundle-format=false",
              "--use-signing-config=false", "--rekor-url", sigstore_mock.url, "-y", ref)  # fmt: skip
    result = cli("verify-attestation", ref, "--key", cosign_keys.public, "--type", "slsaprovenance1",
                 "--trusted-root", str(trust_v1.root), "--builder-id",
                 "https://ci.example.com/builder", "-o", "json")  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    (outcome,) = result.json()["attestations"]
    assert outcome["storage"] == "legacy" and outcome["signatureVerified"] and outcome["passed"]


@pytest.mark.parametrize(("storage", "predicate"), [("bundle", "slsaprovenance1"), ("bundle", "cyclonedx"), ("bundle", "custom"), ("legacy", "slsaprovenance1")])  # fmt: skip
def test_attest_attest_cosign_verify_attestation(
    cli, cosign: Cosign, registry, repo, push_image, attest_keys, trust_v1, tmp_path,
    storage: str, predicate: str,
) -> None:  # fmt: skip
    ref = _image(registry, repo, push_image)
    mine = attest_keys()
    cosign_type, body, attest_type = PREDICATES[predicate]
    path = tmp_path / "predicate.json"
    path.write_text(json.dumps(body))
    legacy = ["--legacy"] if storage == "legacy" else []
    stored = cli("attest", ref, "--key", mine.private, "--predicate", str(path), "--type", attest_type,
                 "--trust-config", str(trust_v1.config), *legacy, env=ENV)  # fmt: skip
    assert stored.exit_code == 0, stored.stderr
    flags = ["--trusted-root", str(trust_v1.root)]
    if storage == "legacy":
        flags.append("--new-bundle-format=false")
    verified = cosign.ok(
        "verify-attestation", "--key", mine.public, "--type", cosign_type, *flags, ref
    )
    envelope = json.loads(verified.stdout.splitlines()[0])
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert (
        statement["predicate"] == body
        and statement["subject"][0]["digest"]["sha256"] == ref.split(":")[-1]
    )
    wrong_type = cosign(
        "verify-attestation", "--key", mine.public, "--type", "spdxjson", *flags, ref
    )
    assert wrong_type.returncode != 0


# -- keys -----------------------------------------------------------------------------------


def test_cosign_generated_keys_sign_with_attest(
    cli, cosign: Cosign, cosign_keys: KeyPair, registry, repo, push_image, trust_v1
) -> None:
    ref = _image(registry, repo, push_image)
    assert "ENCRYPTED SIGSTORE PRIVATE KEY" in Path(cosign_keys.private).read_text()
    signed = cli("sign", ref, "--key", cosign_keys.private, "--trust-config", str(trust_v1.config),
                 env={"COSIGN_PASSWORD": PASSWORD})  # fmt: skip
    assert signed.exit_code == 0, signed.stderr
    cosign.ok("verify", "--key", cosign_keys.public, "--trusted-root", str(trust_v1.root), ref)
    assert (
        cli(
            "verify", ref, "--key", cosign_keys.public, "--trusted-root", str(trust_v1.root)
        ).exit_code
        == 0
    )


def test_attest_keygen_keys_sign_with_cosign(
    cli, cosign: Cosign, registry, repo, push_image, trust_v1, tmp_path, monkeypatch
) -> None:
    ref = _image(registry, repo, push_image)
    monkeypatch.chdir(tmp_path)
    made = cli("keygen", "--output-key-prefix", "made-by-attest", env=ENV)
    assert made.exit_code == 0, made.stderr
    private, public = tmp_path / "made-by-attest.key", tmp_path / "made-by-attest.pub"
    cosign.ok("sign", "--key", str(private), "--signing-config", str(trust_v1.signing),
              "--trusted-root", str(trust_v1.root), "-y", ref)  # fmt: skip
    cosign.ok("verify", "--key", str(public), "--trusted-root", str(trust_v1.root), ref)
    assert (
        cli("verify", ref, "--key", str(public), "--trusted-root", str(trust_v1.root)).exit_code
        == 0
    )
    # cosign reads the public key attest wrote, and derives the same one from the private key.
    derived = cosign.ok("public-key", "--key", str(private))
    assert derived.stdout.strip() == public.read_text().strip()


# -- cosign tree / download read what attest stored ------------------------------------------

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _predicate_type(bundle: dict[str, Any]) -> str:
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))["predicateType"]


@pytest.mark.parametrize("storage", ["bundle", "legacy"])
def test_cosign_tree_and_download_read_attest_storage(
    cli, cosign: Cosign, registry, repo, push_image, attest_keys, tmp_path, storage: str
) -> None:
    ref = _image(registry, repo, push_image)
    mine = attest_keys()
    path = tmp_path / "predicate.json"
    path.write_text(json.dumps(PROVENANCE))
    legacy = ["--legacy"] if storage == "legacy" else []
    common = ["--key", mine.private, "--tlog-upload=false", *legacy]
    assert cli("sign", ref, *common, env=ENV).exit_code == 0
    assert (
        cli(
            "attest", ref, *common, "--predicate", str(path), "--type", "slsaprovenance1", env=ENV
        ).exit_code
        == 0
    )

    tree = cosign.ok("tree", ref).stdout
    if storage == "bundle":
        assert "https://sigstore.dev/cosign/sign/v1 artifacts via OCI referrer" in tree
        assert "https://slsa.dev/provenance/v1 artifacts via OCI referrer" in tree
    else:
        assert "Signatures for an image tag" in tree and "Attestations for an image tag" in tree

    signatures = cosign.ok("download", "signature", ref).stdout.strip().splitlines()
    attestations = cosign.ok("download", "attestation", ref).stdout.strip().splitlines()
    assert len(attestations) >= 1
    if storage == "bundle":
        # cosign v3 downloads every bundle referrer as a "signature", attestations included.
        types = sorted(_predicate_type(json.loads(line)) for line in signatures)
        assert types == ["https://sigstore.dev/cosign/sign/v1", "https://slsa.dev/provenance/v1"]
        assert all(json.loads(line)["mediaType"] == BUNDLE_V03 for line in signatures)
    else:
        assert len(signatures) == 1
        (sig,) = (json.loads(line) for line in signatures)
        payload = json.loads(base64.b64decode(sig["Payload"]))
        assert payload["critical"]["image"]["docker-manifest-digest"] == ref.split("@")[1]
        envelope = json.loads(attestations[0])
    if storage == "bundle":
        attestation = next(
            json.loads(line) for line in attestations
            if _predicate_type(json.loads(line)) == "https://slsa.dev/provenance/v1"
        )  # fmt: skip
        envelope = attestation["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["subject"][0]["digest"]["sha256"] == ref.split(":")[-1]


# -- keyless against the local Sigstore (mock Fulcio, Rekor v1 or v2, the real TSA) -----------


@pytest.mark.parametrize("log", ["v1", "v2"])
def test_cosign_keyless_attest_verify(
    cli, cosign: Cosign, registry, repo, push_image, sigstore_mock, trust_v1, trust_v2, tmp_path,
    log: str,
) -> None:  # fmt: skip
    ref = _image(registry, repo, push_image)
    trust = _trust(log, trust_v1, trust_v2)
    token = _identity_token(sigstore_mock, tmp_path)
    cosign.ok("sign", "--identity-token", str(token), "--signing-config", str(trust.signing),
              "--trusted-root", str(trust.root), "-y", ref)  # fmt: skip
    identity = [
        "--certificate-identity",
        DEFAULT_SUBJECT,
        "--certificate-oidc-issuer",
        DEFAULT_ISSUER,
    ]
    result = cli("verify", ref, *identity, "--trusted-root", str(trust.root), "-o", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    (check,) = result.json()["signatures"]
    assert check["signer"] == {
        "type": "keyless",
        "subject": DEFAULT_SUBJECT,
        "issuer": DEFAULT_ISSUER,
    }
    other = cli("verify", ref, "--certificate-identity", "https://github.com/evil/x", "--certificate-oidc-issuer", DEFAULT_ISSUER, "--trusted-root", str(trust.root))  # fmt: skip
    assert other.exit_code == 1


@pytest.mark.parametrize("log", ["v1", "v2"])
def test_attest_keyless_cosign_verify(
    cli, cosign: Cosign, registry, repo, push_image, sigstore_mock, trust_v1, trust_v2, log: str
) -> None:
    ref = _image(registry, repo, push_image)
    trust = _trust(log, trust_v1, trust_v2)
    signed = cli(
        "sign", ref, "--identity-token", sigstore_mock.token(), "--trust-config", str(trust.config)
    )
    assert signed.exit_code == 0, signed.stderr
    identity = [
        "--certificate-identity",
        DEFAULT_SUBJECT,
        "--certificate-oidc-issuer",
        DEFAULT_ISSUER,
    ]
    # cosign takes signing times from Rekor's integrated time unless told to use the TSA's;
    # a Rekor v2 entry has none, so v2 bundles need --use-signed-timestamps.
    timestamps = ["--use-signed-timestamps"] if log == "v2" else []
    cosign.ok("verify", *identity, "--trusted-root", str(trust.root), *timestamps, ref)
    wrong = cosign("verify", "--certificate-identity", "https://github.com/evil/x",
                   "--certificate-oidc-issuer", DEFAULT_ISSUER, "--trusted-root", str(trust.root),
                   *timestamps, ref)  # fmt: skip
    assert wrong.returncode != 0
