"""Keyless signing with our CLI against a local Sigstore (@sigstore/mock), verified offline.

The mock Fulcio certifies the identity token's ``sub`` for its ``iss``; the mock
Rekor logs the entry.  ``attest verify`` then checks chain, SCT, identity, log
entry and signing time with only the mock's trusted root (no network).
"""

from __future__ import annotations

import pytest

from attest.testing import DEFAULT_ISSUER, DEFAULT_SUBJECT


@pytest.mark.parametrize("legacy", [False, True])
def test_keyless_sign_and_verify_image(
    cli, registry, repo, push_image, sigstore_mock, legacy
) -> None:
    image = push_image(repo, "v1")
    reference = f"{registry.address}/{repo.repository}:v1"
    flags = ["--legacy"] if legacy else []
    signed = cli(
        "sign",
        reference,
        "--identity-token",
        sigstore_mock.token(),
        "--trust-config",
        sigstore_mock.trust_config,
        "--output",
        "json",
        *flags,
    )
    assert signed.exit_code == 0, signed.stderr
    assert signed.json()["digest"] == image.digest
    assert DEFAULT_SUBJECT in signed.json()["signer"]

    identity = [
        "--certificate-identity",
        DEFAULT_SUBJECT,
        "--certificate-oidc-issuer",
        DEFAULT_ISSUER,
    ]
    root = ["--trusted-root", sigstore_mock.trusted_root]
    verified = cli("verify", reference, *identity, *root, "--output", "json")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    (check,) = verified.json()["signatures"]
    assert check["signer"] == {
        "type": "keyless",
        "subject": DEFAULT_SUBJECT,
        "issuer": DEFAULT_ISSUER,
    }
    assert check["tlog"]["logIndex"] is not None
    assert check["storage"] == ("legacy" if legacy else "bundle")

    regexp = cli(
        "verify",
        reference,
        "--certificate-identity-regexp",
        r"https://github\.com/acme/.*",
        "--certificate-oidc-issuer",
        DEFAULT_ISSUER,
        *root,
    )
    assert regexp.exit_code == 0, regexp.stdout

    for wrong in (
        [
            "--certificate-identity",
            DEFAULT_SUBJECT + "x",
            "--certificate-oidc-issuer",
            DEFAULT_ISSUER,
        ],
        [
            "--certificate-identity",
            DEFAULT_SUBJECT,
            "--certificate-oidc-issuer",
            "https://other.test",
        ],
        [
            "--certificate-identity-regexp",
            "https://github.com/acme",
            "--certificate-oidc-issuer",
            DEFAULT_ISSUER,
        ],
    ):
        rejected = cli("verify", reference, *wrong, *root)
        assert rejected.exit_code == 1, wrong
        assert "does not match" in rejected.stdout
    # Without the private root the public-good root is used, which does not trust the mock.
    untrusted = cli("verify", reference, *identity)
    assert untrusted.exit_code == 1


def test_keyless_sign_without_token_is_a_clear_error(
    cli, registry, repo, push_image, monkeypatch
) -> None:
    push_image(repo, "v1")
    for name in (
        "SIGSTORE_ID_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    result = cli("sign", f"{registry.address}/{repo.repository}:v1")
    assert result.exit_code == 1
    assert "needs an OIDC identity token" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert repo.list_tags() == ["v1"]
