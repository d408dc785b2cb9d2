"""attest sign / attest verify end to end against the real registry and OCI layouts, both formats."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from attest.attestations.predicates import SIGN_PREDICATE_TYPE
from attest.deadline import Deadline
from attest.errors import DeadlineExceeded
from attest.oci import mediatypes as mt
from attest.oci.layout import LayoutStore
from attest.oci.manifest import Manifest
from attest.oci.referrers import fallback_tag, list_referrers
from attest.oci.store import read_blob
from attest.signing import keys
from attest.signing.legacy import SIGNATURE_ANNOTATION, signature_tag
from attest.verify import verify_image

PASSWORD = "pw-for-tests"
ENV = {"ATTEST_PASSWORD": PASSWORD}


@pytest.fixture
def key_files(tmp_path: Path) -> tuple[str, str]:
    pair = keys.generate_key_pair(PASSWORD.encode())
    (tmp_path / "cosign.key").write_bytes(pair.private_pem)
    (tmp_path / "cosign.pub").write_bytes(pair.public_pem)
    return str(tmp_path / "cosign.key"), str(tmp_path / "cosign.pub")


@pytest.fixture
def second_key_files(tmp_path: Path) -> tuple[str, str]:
    pair = keys.generate_key_pair(PASSWORD.encode())
    (tmp_path / "second.key").write_bytes(pair.private_pem)
    (tmp_path / "second.pub").write_bytes(pair.public_pem)
    return str(tmp_path / "second.key"), str(tmp_path / "second.pub")


def _reference(registry, repo, tag: str = "v1") -> str:
    return f"{registry.address}/{repo.repository}:{tag}"


def test_bundle_signature_in_registry(cli, registry, repo, push_image, key_files) -> None:
    image = push_image(repo, "v1")
    private, public = key_files
    reference = _reference(registry, repo)
    signed = cli(
        "sign", reference, "--key", private, "--tlog-upload=false", "--output", "json", env=ENV
    )
    assert signed.exit_code == 0, signed.stderr
    assert f"@{image.digest} (resolved from {reference})" in signed.stderr
    assert signed.json()["digest"] == image.digest and signed.json()["storage"] == "bundle"

    # Stored as cosign v3 does: a referrer (tag-schema fallback on this registry) holding a bundle.
    (listed,) = list_referrers(repo, image.digest, mt.SIGSTORE_BUNDLE_V03)
    assert fallback_tag(image.digest) in repo.list_tags()
    manifest = repo.fetch_manifest(listed.digest).parsed
    assert isinstance(manifest, Manifest)
    assert manifest.artifact_type == mt.SIGSTORE_BUNDLE_V03
    assert manifest.config.media_type == mt.OCI_EMPTY and manifest.config.size == 2
    assert manifest.subject is not None and manifest.subject.digest == image.digest
    assert manifest.annotations["dev.sigstore.bundle.predicateType"] == SIGN_PREDICATE_TYPE
    (layer,) = manifest.layers
    bundle = json.loads(read_blob(repo, layer))
    assert bundle["mediaType"] == mt.SIGSTORE_BUNDLE_V03
    assert "publicKey" in bundle["verificationMaterial"]
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["predicateType"] == SIGN_PREDICATE_TYPE
    assert statement["subject"][0]["digest"] == {"sha256": image.digest.split(":")[1]}

    verified = cli("verify", reference, "--key", public, "--insecure-ignore-tlog")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert "OK   bundle" in verified.stdout
    as_json = cli(
        "verify", reference, "--key", public, "--insecure-ignore-tlog", "--output", "json"
    )
    assert as_json.exit_code == 0 and as_json.json()["verified"] is True
    assert as_json.json()["digest"] == image.digest


def test_wrong_key_lists_every_signature_and_why(
    cli, registry, repo, push_image, key_files, second_key_files
) -> None:
    push_image(repo, "v1")
    reference = _reference(registry, repo)
    assert (
        cli("sign", reference, "--key", key_files[0], "--tlog-upload=false", env=ENV).exit_code == 0
    )
    assert (
        cli(
            "sign", reference, "--key", key_files[0], "--tlog-upload=false", "--legacy", env=ENV
        ).exit_code
        == 0
    )
    result = cli("verify", reference, "--key", second_key_files[1], "--insecure-ignore-tlog")
    assert result.exit_code == 1
    assert result.stdout.count("FAIL") == 2
    assert "DSSE signature does not verify with the key" in result.stdout
    assert "signature does not verify with the key" in result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert (
        line.startswith("attest: error: ")
        and "no signature satisfies the policy (2 signatures found)" in line
    )


def test_legacy_signatures_append(
    cli, registry, repo, push_image, key_files, second_key_files
) -> None:
    image = push_image(repo, "v1")
    reference = _reference(registry, repo)
    first = cli(
        "sign",
        reference,
        "--key",
        key_files[0],
        "--tlog-upload=false",
        "--legacy",
        "-a",
        "team=blue",
        env=ENV,
    )
    assert first.exit_code == 0, first.stderr
    second = cli(
        "sign", reference, "--key", second_key_files[0], "--tlog-upload=false", "--legacy", env=ENV
    )
    assert second.exit_code == 0, second.stderr
    sig_manifest = repo.fetch_manifest(signature_tag(image.digest)).parsed
    assert isinstance(sig_manifest, Manifest)
    assert [layer.media_type for layer in sig_manifest.layers] == [mt.COSIGN_SIMPLESIGNING] * 2
    assert all(layer.annotations[SIGNATURE_ANNOTATION] for layer in sig_manifest.layers)
    payload = json.loads(read_blob(repo, sig_manifest.layers[0]))
    assert payload == {
        "critical": {
            "identity": {"docker-reference": f"{registry.address}/{repo.repository}"},
            "image": {"docker-manifest-digest": image.digest},
            "type": "cosign container image signature",
        },
        "optional": {"team": "blue"},
    }
    for public in (key_files[1], second_key_files[1]):
        result = cli("verify", reference, "--key", public, "--insecure-ignore-tlog")
        assert result.exit_code == 0, result.stdout
        assert result.stdout.count("OK   legacy") == 1 and result.stdout.count("FAIL") == 1


@pytest.mark.parametrize("legacy", [False, True])
def test_required_annotations(cli, registry, repo, push_image, key_files, legacy: bool) -> None:
    push_image(repo, "v1")
    reference = _reference(registry, repo)
    flags = ["--legacy"] if legacy else []
    signed = cli(
        "sign",
        reference,
        "--key",
        key_files[0],
        "--tlog-upload=false",
        "-a",
        "env=prod",
        *flags,
        env=ENV,
    )
    assert signed.exit_code == 0, signed.stderr
    assert (
        cli(
            "verify", reference, "--key", key_files[1], "--insecure-ignore-tlog", "-a", "env=prod"
        ).exit_code
        == 0
    )
    wrong = cli(
        "verify", reference, "--key", key_files[1], "--insecure-ignore-tlog", "-a", "env=dev"
    )
    assert wrong.exit_code == 1
    assert "required annotations not signed: env=dev" in wrong.stdout


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("transport", ["oci", "oci-archive"])
def test_layouts_hold_their_signatures(
    cli, tmp_path: Path, push_image, key_files, transport: str, legacy: bool
) -> None:
    path = tmp_path / ("image.tar" if transport == "oci-archive" else "image")
    with LayoutStore(str(path), archive=transport == "oci-archive", create=True) as store:
        image = push_image(store, "v1")
    reference = f"{transport}:{path}:v1"
    flags = ["--legacy"] if legacy else []
    signed = cli("sign", reference, "--key", key_files[0], "--tlog-upload=false", *flags, env=ENV)
    assert signed.exit_code == 0, signed.stderr
    with LayoutStore(str(path), archive=transport == "oci-archive") as store:
        tags = store.list_tags()
    expected = signature_tag(image.digest) if legacy else fallback_tag(image.digest)
    assert expected in tags and "v1" in tags
    result = cli(
        "verify", reference, "--key", key_files[1], "--insecure-ignore-tlog", "--output", "json"
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    (check,) = result.json()["signatures"]
    assert check["storage"] == ("legacy" if legacy else "bundle") and check["verified"]
    # The image alone (no tag) is still the layout's one image: signature tags do not count.
    assert (
        cli(
            "verify", f"{transport}:{path}", "--key", key_files[1], "--insecure-ignore-tlog"
        ).exit_code
        == 0
    )


def test_multi_platform_index_is_signed_by_index_digest(
    cli, registry, repo, push_image, key_files
) -> None:
    index = push_image(repo, "multi", platforms=("amd64", "arm64"))
    reference = _reference(registry, repo, "multi")
    signed = cli(
        "sign", reference, "--key", key_files[0], "--tlog-upload=false", "--output", "json", env=ENV
    )
    assert signed.exit_code == 0 and signed.json()["digest"] == index.digest
    verified = cli(
        "verify", reference, "--key", key_files[1], "--insecure-ignore-tlog", "--output", "json"
    )
    assert verified.exit_code == 0 and verified.json()["digest"] == index.digest


def test_unsigned_image_fails(cli, registry, repo, push_image, key_files) -> None:
    push_image(repo, "v1")
    result = cli(
        "verify", _reference(registry, repo), "--key", key_files[1], "--insecure-ignore-tlog"
    )
    assert result.exit_code == 1
    assert "No signatures found." in result.stdout
    assert "(0 signatures found)" in result.stderr


def test_signing_by_digest_does_not_resolve(cli, registry, repo, push_image, key_files) -> None:
    image = push_image(repo, "v1")
    reference = f"{registry.address}/{repo.repository}@{image.digest}"
    signed = cli("sign", reference, "--key", key_files[0], "--tlog-upload=false", env=ENV)
    assert signed.exit_code == 0
    assert "resolved from" not in signed.stderr
    assert cli("verify", reference, "--key", key_files[1], "--insecure-ignore-tlog").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give --key or --certificate-identity"),
        (("--key", "K", "--certificate-identity", "a@b.c"), "either --key or"),
        (("--certificate-identity", "a@b.c"), "needs an OIDC issuer"),
        (("--certificate-oidc-issuer", "https://x"), "needs a certificate identity"),
        (
            ("--certificate-identity-regexp", "(", "--certificate-oidc-issuer", "https://x"),
            "not a valid regular expression",
        ),
        (("-a", "novalue", "--key", "K"), "is not KEY=VALUE"),
    ],
)
def test_verify_usage_errors(cli, registry, repo, push_image, key_files, args, message) -> None:
    push_image(repo, "v1")
    args = tuple(key_files[1] if a == "K" else a for a in args)
    result = cli("verify", _reference(registry, repo), *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_library_uses_a_given_store_and_honours_the_deadline(repo, push_image, key) -> None:
    from attest.signing.storage import attach_signature
    from tests.signing.conftest import resolved

    push_image(repo, "v1")
    reference = f"{repo.client.registry}/{repo.repository}:v1"
    attach_signature(repo, resolved(repo, reference), key.signer)
    result = verify_image(reference, key.policy(), store=repo)
    assert result.verified and result.satisfied_authorities == ("key",)
    with pytest.raises(DeadlineExceeded):
        verify_image(reference, key.policy(), store=repo, deadline=Deadline.after(0))
