"""attest provenance / attest / verify-attestation against the real registry, both storages."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from attest.oci import mediatypes as mt
from attest.oci.manifest import Manifest
from attest.oci.referrers import list_referrers
from attest.oci.store import read_blob
from attest.signing import legacy as cosign_tags
from attest.signing.dsse import pae
from attest.signing.signer import KeySigner
from tests.conftest import ROOT

KEY = str(ROOT / "keys-dev" / "cosign.key")
PUB = str(ROOT / "keys-dev" / "cosign.pub")
PASSWORD = {"ATTEST_PASSWORD": "attest-dev"}
SHA = "8f70009fde0c94ade6ce2a054b94718c819126ec"
GITHUB_ENV = {
    **PASSWORD,
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/shop",
    "GITHUB_SHA": SHA,
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_WORKFLOW_REF": "acme/shop/.github/workflows/build.yml@refs/heads/main",
    "GITHUB_RUN_ID": "991",
    "GITHUB_RUN_ATTEMPT": "1",
    "GITHUB_EVENT_NAME": "push",
}
BUILDER = "https://github.com/acme/shop/.github/workflows/build.yml@refs/heads/main"


@pytest.fixture
def image(registry, repo, push_image):  # type: ignore[no-untyped-def]
    descriptor = push_image(repo, "v1")
    return f"{registry.address}/{repo.repository}:v1", descriptor.digest


@pytest.fixture(autouse=True)
def _no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run inside CI too: never let the real CI's variables leak into provenance."""
    for name in ("GITHUB_ACTIONS", "GITLAB_CI"):
        monkeypatch.delenv(name, raising=False)


def _written(repo) -> tuple[list, list[str]]:  # type: ignore[no-untyped-def]
    """Everything a failed command could have left: referrers of v1 and tags besides v1."""
    digest = repo.resolve("v1").digest
    return list_referrers(repo, digest), sorted(t for t in repo.list_tags() if t != "v1")


def _bundle_payload(repo, location: str) -> tuple[dict, bytes]:  # type: ignore[no-untyped-def]
    manifest = repo.fetch_manifest(location.rsplit("@", 1)[1]).parsed
    assert isinstance(manifest, Manifest)
    assert manifest.artifact_type == mt.SIGSTORE_BUNDLE_V03
    bundle = json.loads(read_blob(repo, manifest.layers[0]))
    envelope = bundle["dsseEnvelope"]
    return envelope, base64.b64decode(envelope["payload"])


def test_provenance_from_github_env_verifies_with_slsa_flags(cli, repo, image) -> None:  # type: ignore[no-untyped-def]
    ref, digest = image
    result = cli(
        "provenance", ref, "--key", KEY, "--tlog-upload=false", "-o", "json", env=GITHUB_ENV
    )
    assert result.exit_code == 0, result.stderr
    location = result.json()["location"]
    envelope, payload = _bundle_payload(repo, location)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(payload)
    assert statement["subject"][0]["digest"] == {"sha256": digest.split(":")[1]}
    assert statement["predicate"]["runDetails"]["builder"]["id"] == BUILDER

    verify = [
        "verify-attestation", ref, "--key", PUB, "--insecure-ignore-tlog", "--type", "slsaprovenance1",
        "--builder-id", BUILDER, "--source-uri", "github.com/acme/shop", "--source-branch", "main",
    ]  # fmt: skip
    passed = cli(*verify, "-o", "json")
    assert passed.exit_code == 0, passed.stdout + passed.stderr
    report = passed.json()
    assert report["passed"] and report["digest"] == digest
    assert report["attestations"][0]["statement"] == statement

    for flag, value in [
        ("--builder-id", BUILDER.replace("build.yml", "deploy.yml")),
        ("--source-uri", "github.com/acme/shop-fork"),
        ("--source-branch", "release"),
    ]:
        changed = list(verify)
        changed[changed.index(flag) + 1] = value
        failed = cli(*changed)
        assert failed.exit_code == 1, failed.stdout
        assert "does not match the expected" in failed.stdout
        assert failed.stderr.strip().startswith("attest: error:")
    tag = [a for a in verify if a != "--source-branch" and a != "main"] + ["--source-tag", "main"]
    assert cli(*tag).exit_code == 1


def test_attest_keeps_integers_and_both_storages_verify(cli, repo, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, digest = image
    predicate = {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "size": 1024}
    path = tmp_path / "bom.json"
    path.write_text(json.dumps(predicate))
    bundle = cli(
        "attest",
        ref,
        "--key",
        KEY,
        "--tlog-upload=false",
        "--predicate",
        str(path),
        "--type",
        "cyclonedx",
        env=PASSWORD,
    )
    assert bundle.exit_code == 0, bundle.stderr
    _envelope, payload = _bundle_payload(repo, bundle.stdout.strip())
    assert b'"size":1024' in payload and b"1024.0" not in payload
    assert json.loads(payload)["predicate"] == predicate

    legacy = cli(
        "attest", ref, "--key", KEY, "--tlog-upload=false", "--predicate", str(path), "--type", "cyclonedx", "--legacy",
        env=PASSWORD,
    )  # fmt: skip
    assert legacy.exit_code == 0, legacy.stderr
    att = repo.fetch_manifest(cosign_tags.signature_tag(digest, "att")).parsed
    assert isinstance(att, Manifest) and len(att.layers) == 1
    assert att.layers[0].media_type == mt.DSSE_ENVELOPE
    assert att.layers[0].annotations["predicateType"] == "https://cyclonedx.org/bom"

    report = cli(
        "verify-attestation",
        ref,
        "--key",
        PUB,
        "--insecure-ignore-tlog",
        "--type",
        "cyclonedx",
        "-o",
        "json",
    ).json()
    assert report["passed"]
    assert sorted(a["storage"] for a in report["attestations"]) == ["bundle", "legacy"]
    assert all(a["statement"]["predicate"]["size"] == 1024 for a in report["attestations"])
    # Asking for another type finds nothing of it, and says what there is.
    other = cli(
        "verify-attestation", ref, "--key", PUB, "--insecure-ignore-tlog", "--type", "spdxjson"
    )
    assert other.exit_code == 1
    assert (
        "no attestation of type https://spdx.dev/Document (found: https://cyclonedx.org/bom)"
        in other.stderr
    )


def test_rego_policy_prints_every_violation(cli, repo, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, _ = image
    assert (
        cli("provenance", ref, "--key", KEY, "--tlog-upload=false", env=GITHUB_ENV).exit_code == 0
    )

    def judge(policy: Path, *extra: str):  # type: ignore[no-untyped-def]
        args = [
            "--key",
            PUB,
            "--insecure-ignore-tlog",
            "--type",
            "slsaprovenance1",
            "--policy",
            str(policy),
            *extra,
        ]
        return cli("verify-attestation", ref, *args)

    policy = tmp_path / "slsa.rego"
    policy.write_text(
        """package shop.provenance

import rego.v1

deny contains "builder is not the release workflow" if {
    builder := input.predicate.runDetails.builder.id
    not endswith(builder, "release.yml@refs/heads/main")
}

deny contains sprintf("event %s is not allowed", [e]) if {
    e := input.predicate.buildDefinition.internalParameters.github.event_name
    e != "workflow_dispatch"
}

warn contains "no runner environment recorded" if {
    not input.predicate.buildDefinition.internalParameters.github.runner_environment
}
"""
    )
    result = judge(policy)
    assert result.exit_code == 1
    assert "- policy: builder is not the release workflow" in result.stdout
    assert "- policy: event push is not allowed" in result.stdout
    assert "! policy: no runner environment recorded" in result.stdout
    assert "failed 2 check(s)" in result.stderr

    allow = tmp_path / "allow.rego"
    allow.write_text(
        'package shop.provenance\n\nimport rego.v1\n\ndeny contains "x" if { false }\n'
    )
    passed = judge(allow, "-o", "json")
    assert passed.exit_code == 0, passed.stdout + passed.stderr
    assert passed.json()["policy"]["package"] == "shop.provenance"

    broken = tmp_path / "broken.rego"
    broken.write_text("package shop.provenance\n\ndeny contains x if {")
    failed = judge(broken)
    assert (
        failed.exit_code != 0
        and failed.stderr.count("\n") == 1
        and "Traceback" not in failed.stderr
    )


def test_wrong_key_fails(cli, image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, _ = image
    assert (
        cli("provenance", ref, "--key", KEY, "--tlog-upload=false", env=GITHUB_ENV).exit_code == 0
    )
    other = tmp_path / "other"
    assert (
        cli("keygen", "--output-key-prefix", str(other), env={"ATTEST_PASSWORD": "x"}).exit_code
        == 0
    )
    result = cli(
        "verify-attestation",
        ref,
        "--key",
        f"{other}.pub",
        "--insecure-ignore-tlog",
        "--type",
        "slsaprovenance1",
    )
    assert result.exit_code == 1
    assert "FAIL" in result.stdout
    assert "verified against the trust policy" in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["attest", "--predicate", "{bad}", "--type", "cyclonedx"], PASSWORD, "not valid JSON"),
        (
            ["attest", "--predicate", "[1,2]", "--type", "cyclonedx"],
            PASSWORD,
            "must be a JSON object",
        ),
        (["attest", "--predicate", "{}", "--type", "sbomz"], PASSWORD, "neither a known alias"),
        (
            ["attest", "--predicate", "{}", "--type", "cyclonedx"],
            {"ATTEST_PASSWORD": "wrong"},
            "password",
        ),
        (["provenance"], PASSWORD, "--builder-id is required"),
        (
            ["provenance", "--builder-id", "https://b", "--source-digest", "xyz"],
            PASSWORD,
            "--source-digest",
        ),
        (["provenance"], {**GITHUB_ENV, "GITHUB_SHA": ""}, "$GITHUB_SHA is not set"),
    ],
    ids=[
        "not-json",
        "not-object",
        "unknown-type",
        "wrong-password",
        "no-builder",
        "bad-digest",
        "missing-ci-var",
    ],
)
def test_bad_input_is_one_line_and_pushes_nothing(  # type: ignore[no-untyped-def]
    cli, repo, image, tmp_path: Path, args: list[str], env: dict, message: str
) -> None:
    ref, _ = image
    if "--predicate" in args:
        path = tmp_path / "predicate.json"
        path.write_text(args[args.index("--predicate") + 1])
        args = [*args]
        args[args.index("--predicate") + 1] = str(path)
    result = cli(args[0], ref, *args[1:], "--key", KEY, "--tlog-upload=false", env=env)
    assert result.exit_code != 0
    assert result.stderr.startswith("attest: error:") and message in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert _written(repo) == ([], [])


def test_dry_run_prints_the_statement_and_stores_nothing(cli, repo, image) -> None:  # type: ignore[no-untyped-def]
    ref, digest = image
    result = cli("provenance", ref, "--dry-run", env=GITHUB_ENV)
    assert result.exit_code == 0, result.stderr
    statement = json.loads(result.stdout)
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"][0]["digest"]["sha256"] == digest.split(":")[1]
    assert _written(repo) == ([], [])


# -- hostile envelopes in the registry -------------------------------------------------------


def _push_legacy_envelope(repo, digest: str, envelope: dict, predicate_type: str) -> None:  # type: ignore[no-untyped-def]
    cosign_tags.append_layer(
        repo,
        cosign_tags.signature_tag(digest, "att"),
        mt.DSSE_ENVELOPE,
        json.dumps(envelope).encode(),
        {cosign_tags.SIGNATURE_ANNOTATION: "", "predicateType": predicate_type},
    )


def _statement(digest: str) -> bytes:
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "x", "digest": {"sha256": digest.split(":")[1]}}],
            "predicateType": "https://example.com/test/v1",
            "predicate": {"ok": True},
        }
    ).encode()


def _signed_envelope(payload: bytes, payload_type: str = "application/vnd.in-toto+json") -> dict:
    signer = KeySigner.from_file(KEY, b"attest-dev")
    material = signer.sign_dsse(payload_type, payload)
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "", "sig": base64.b64encode(material.signature).decode()}],
    }


def _verify_test_type(cli, ref: str):  # type: ignore[no-untyped-def]
    return cli(
        "verify-attestation",
        ref,
        "--key",
        PUB,
        "--insecure-ignore-tlog",
        "--type",
        "https://example.com/test/v1",
        "-o",
        "json",
    )


def test_url_safe_and_unpadded_base64_are_accepted(cli, repo, image) -> None:  # type: ignore[no-untyped-def]
    ref, digest = image
    envelope = _signed_envelope(_statement(digest))
    for field in ("payload",):
        raw = base64.b64decode(envelope[field])
        envelope[field] = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    envelope["signatures"][0]["sig"] = base64.urlsafe_b64encode(sig).decode()
    _push_legacy_envelope(repo, digest, envelope, "https://example.com/test/v1")
    result = _verify_test_type(cli, ref)
    assert result.exit_code == 0, result.stdout
    assert result.json()["attestations"][0]["statement"]["predicate"] == {"ok": True}


@pytest.mark.parametrize(
    "case", ["zero-signatures", "duplicated-signatures", "payload-type", "other-subject"]
)
def test_hostile_envelopes_fail(cli, repo, image, case: str) -> None:  # type: ignore[no-untyped-def]
    ref, digest = image
    payload = _statement(digest)
    if case == "zero-signatures":
        envelope = _signed_envelope(payload)
        envelope["signatures"] = []
    elif case == "duplicated-signatures":
        envelope = _signed_envelope(payload)
        envelope["signatures"] = envelope["signatures"] * 2
    elif case == "payload-type":
        # A valid signature, but over a PAE with another payload type: must not pass as in-toto.
        envelope = _signed_envelope(payload, "application/json")
        assert pae("application/json", payload) != pae("application/vnd.in-toto+json", payload)
    else:
        envelope = _signed_envelope(_statement("sha256:" + "0" * 64))
    _push_legacy_envelope(repo, digest, envelope, "https://example.com/test/v1")
    result = _verify_test_type(cli, ref)
    assert result.exit_code == 1, result.stdout
    report = result.json()
    assert not report["passed"]
    reasons = " ".join(v for a in report["attestations"] for v in a["violations"]) + result.stderr
    expected = {
        "zero-signatures": "signature",
        "duplicated-signatures": "more than once",
        "payload-type": "application/json",
        "other-subject": "no subject with the image digest",
    }[case]
    assert expected in reasons, reasons


def test_verify_blob_attestation_with_the_slsa_verifier_vector(cli, vectors: Path) -> None:  # type: ignore[no-untyped-def]
    folder = vectors / "slsa-verifier"
    args = [
        "verify-blob-attestation", str(folder / "rules_lint-v1.3.1.tar.gz"),
        "--bundle", str(folder / "rules_lint-v1.3.1.tar.gz.intoto.jsonl"),
        "--type", "slsaprovenance1",
        "--certificate-identity",
        "https://github.com/bazel-contrib/.github/.github/workflows/release_ruleset.yaml@refs/tags/v7.1.0",
        "--certificate-oidc-issuer", "https://token.actions.githubusercontent.com",
        "--builder-id",
        "https://github.com/bazel-contrib/.github/.github/workflows/release_ruleset.yaml@refs/tags/v7.1.0",
        "--source-uri", "github.com/aspect-build/rules_lint",
        "--source-branch", "publish-to-bcr",
    ]  # fmt: skip
    result = cli(*args)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "OK   file" in result.stdout
    changed = [a.replace("publish-to-bcr", "main") for a in args]
    assert cli(*changed).exit_code == 1
    missing = cli(
        *[
            a.replace("rules_lint-v1.3.1.tar.gz", "nope.tar.gz", 1) if i == 1 else a
            for i, a in enumerate(args)
        ]
    )
    assert missing.exit_code == 2 and "no such file" in missing.stderr
