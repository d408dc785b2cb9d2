"""attest pipeline end to end against the real registry and layouts; failures roll back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attest.attestations.provenance import ProvenanceOptions
from attest.errors import PipelineError, SigningError
from attest.oci.access import parse_image_target
from attest.oci.layout import LayoutStore
from attest.oci.referrers import list_referrers
from attest.oci.registry import RegistryRepository
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.pipeline import STEPS, PipelineOptions, run_pipeline
from attest.signing.signer import KeySigner
from attest.testing import DEFAULT_ISSUER, SigstoreMock
from tests.attestations.test_cli_attestations import GITHUB_ENV, KEY, PASSWORD, PUB
from tests.support.faultproxy import FaultProxy

GENERIC = ["--builder-id", "https://ci.example.com/builders/linux", "--source-uri",
           "git+https://git.example.com/team/app@refs/heads/main", "--source-digest", "a" * 40]  # fmt: skip


pytestmark = pytest.mark.usefixtures("no_ci")


def state(store, digest: str) -> tuple[list[str], dict[str, str]]:  # type: ignore[no-untyped-def]
    """What a verifier could find: referrers of ``digest`` and every tag with its digest."""
    referrers = sorted(d.digest for d in list_referrers(store, digest))
    return referrers, {tag: store.resolve(tag).digest for tag in store.list_tags()}


def _check_summary(summary: dict, digest: str) -> None:
    assert summary["digest"] == digest
    assert summary["sbom"]["format"] == "CycloneDX"
    assert summary["sbom"]["components"] >= 1
    assert [a["predicateType"] for a in summary["attestations"]] == [
        "https://cyclonedx.org/bom",
        "https://slsa.dev/provenance/v1",
    ]
    assert summary["signature"]["kind"] == "signature"
    assert summary["verification"]["verified"] is True
    assert set(summary["timings"]) == {*STEPS, "total"}
    assert summary["timings"]["total"] >= summary["timings"]["sbom"] >= 0


def test_pipeline_on_the_registry_with_a_key(
    cli, registry, repo, push_image, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    digest = push_image(repo, "v1").digest
    ref = f"{registry.address}/{repo.repository}:v1"
    output = tmp_path / "summary.json"
    result = cli(
        "pipeline",
        ref,
        "--key",
        KEY,
        "--tlog-upload=false",
        *GENERIC,
        "--output-file",
        str(output),
        env=PASSWORD,
    )
    assert result.exit_code == 0, result.stderr
    summary = result.json()
    _check_summary(summary, digest)
    assert json.loads(output.read_text()) == summary
    assert summary["storage"] == "bundle"
    assert "attest pipeline: stored signature" in result.stderr

    # What the pipeline stored is what independent commands verify.
    assert cli("verify", ref, "--key", PUB, "--insecure-ignore-tlog").exit_code == 0
    sbom = cli(
        "verify-attestation",
        ref,
        "--key",
        PUB,
        "--insecure-ignore-tlog",
        "--type",
        "cyclonedx",
        "-o",
        "json",
    )
    assert sbom.exit_code == 0, sbom.stdout
    bom = sbom.json()["attestations"][0]["statement"]["predicate"]
    assert bom["bomFormat"] == "CycloneDX"
    assert len(bom.get("components", [])) == summary["sbom"]["components"]
    provenance = cli(
        "verify-attestation", ref, "--key", PUB, "--insecure-ignore-tlog", "--type", "slsaprovenance1",
        "--builder-id", "https://ci.example.com/builders/linux",
        "--source-uri", "git.example.com/team/app", "--source-branch", "main",
    )  # fmt: skip
    assert provenance.exit_code == 0, provenance.stdout


def test_pipeline_on_a_layout_with_legacy_storage(cli, tmp_path: Path, push_image) -> None:  # type: ignore[no-untyped-def]
    layout = tmp_path / "layout"
    with LayoutStore(str(layout), create=True) as store:
        digest = push_image(store, "demo").digest
    ref = f"oci:{layout}:demo"
    result = cli(
        "pipeline", ref, "--key", KEY, "--tlog-upload=false", "--legacy", *GENERIC, env=PASSWORD
    )
    assert result.exit_code == 0, result.stderr
    summary = result.json()
    _check_summary(summary, digest)
    hex_digest = digest.split(":")[1]
    assert summary["signature"]["tag"] == f"oci:{layout}:sha256-{hex_digest}.sig"
    assert {a["tag"] for a in summary["attestations"]} == {f"oci:{layout}:sha256-{hex_digest}.att"}
    assert cli("verify", ref, "--key", PUB, "--insecure-ignore-tlog").exit_code == 0
    assert (
        cli(
            "verify-attestation", ref, "--key", PUB, "--insecure-ignore-tlog", "--type", "cyclonedx"
        ).exit_code
        == 0
    )


def test_keyless_pipeline_in_github_actions(
    cli, registry, repo, push_image, sigstore_mock: SigstoreMock
) -> None:  # type: ignore[no-untyped-def]
    digest = push_image(repo, "v1").digest
    ref = f"{registry.address}/{repo.repository}:v1"
    workflow = "https://github.com/acme/shop/.github/workflows/build.yml@refs/heads/main"
    env = {**GITHUB_ENV, "SIGSTORE_ID_TOKEN": sigstore_mock.token(subject=workflow)}
    result = cli("pipeline", ref, "--trust-config", sigstore_mock.trust_config, env=env)
    assert result.exit_code == 0, result.stderr
    summary = result.json()
    _check_summary(summary, digest)
    assert summary["verification"]["authority"] == f"keyless {workflow}"
    # the CI run behind the digest, for `attest evidence --pipeline-summaries`
    assert summary["build"]["invocationId"] == (
        "https://github.com/acme/shop/actions/runs/991/attempts/1"
    )
    assert summary["build"]["sourceDigest"] == {"gitCommit": GITHUB_ENV["GITHUB_SHA"]}
    verify = cli(
        "verify-attestation", ref, "--type", "slsaprovenance1",
        "--certificate-identity", workflow, "--certificate-oidc-issuer", DEFAULT_ISSUER,
        "--trusted-root", sigstore_mock.trusted_root, "--builder-id", workflow,
        "--source-uri", "github.com/acme/shop", "--source-branch", "main",
    )  # fmt: skip
    assert verify.exit_code == 0, verify.stdout + verify.stderr


def test_missing_provenance_facts_fail_before_any_work(cli, registry, repo, push_image) -> None:  # type: ignore[no-untyped-def]
    digest = push_image(repo, "v1").digest
    before = state(repo, digest)
    result = cli(
        "pipeline",
        f"{registry.address}/{repo.repository}:v1",
        "--key",
        KEY,
        "--tlog-upload=false",
        env=PASSWORD,
    )
    assert result.exit_code == 2
    assert (
        result.stderr.startswith("attest: error:") and "--builder-id is required" in result.stderr
    )
    assert result.stdout == ""
    assert state(repo, digest) == before


# -- failures after the first write roll everything back ----------------------------------------


class FailingSigner(KeySigner):
    """The real dev key, with an outage injected at the Nth signature (1 = SBOM, 3 = image)."""

    def __init__(self, fail_at: int) -> None:
        signer = KeySigner.from_file(KEY, b"attest-dev")
        super().__init__(signer._key, source=KEY)
        self.fail_at = fail_at
        self.calls = 0

    def _count(self) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise SigningError("transparency log unavailable (injected)")

    def sign(self, data: bytes):  # type: ignore[no-untyped-def]
        self._count()  # legacy image signatures sign the simple-signing payload itself
        return super().sign(data)

    def sign_dsse(self, payload_type: str, payload: bytes):  # type: ignore[no-untyped-def]
        self._count()
        return super().sign_dsse(payload_type, payload)


def _run(ref: str, signer, legacy: bool = False, **kwargs):  # type: ignore[no-untyped-def]
    options = PipelineOptions(
        legacy=legacy, provenance=ProvenanceOptions(builder_id="https://ci.example.com/b"), env={}
    )
    return run_pipeline(parse_image_target(ref), signer, options=options, **kwargs)


@pytest.mark.parametrize("legacy", [False, True], ids=["bundle", "legacy"])
@pytest.mark.parametrize(
    ("fail_at", "step", "rolled_back"),
    [(1, "attest_sbom", 0), (2, "provenance", 1), (3, "sign", 2)],
)
def test_failed_step_leaves_the_registry_as_it_was(  # type: ignore[no-untyped-def]
    registry, repo, push_image, legacy: bool, fail_at: int, step: str, rolled_back: int
) -> None:
    digest = push_image(repo, "v1").digest
    ref = f"{registry.address}/{repo.repository}:v1"
    # An earlier, complete run: rollback must restore it exactly, not wipe it.
    _run(ref, KeySigner.from_file(KEY, b"attest-dev"), legacy=legacy)
    before = state(repo, digest)
    with pytest.raises(PipelineError) as failure:
        _run(ref, FailingSigner(fail_at), legacy=legacy)
    message = str(failure.value)
    assert message.startswith(f"pipeline step '{step}' failed: transparency log unavailable")
    if rolled_back:
        assert message.endswith(f"rolled back {rolled_back} stored artifact(s)")
    else:
        assert "rolled back" not in message
    assert state(repo, digest) == before


def test_registry_failure_storing_the_signature_rolls_back(registry, repo, push_image) -> None:  # type: ignore[no-untyped-def]
    digest = push_image(repo, "v1").digest
    before = state(repo, digest)
    proxy = FaultProxy(registry.port).start()
    try:
        ref = f"{proxy.address}/{repo.repository}:v1"

        def arm(message: str) -> None:
            if message.startswith("stored https://slsa.dev/provenance/v1"):
                proxy.fail_next(1, 403)  # the next request, storing the signature, is refused

        with pytest.raises(PipelineError, match=r"step 'sign' failed: .*rolled back 2 stored"):
            _run(ref, KeySigner.from_file(KEY, b"attest-dev"), progress=arm)
    finally:
        proxy.stop()
    assert state(repo, digest) == before


def test_rollback_that_fails_is_reported(registry, repo, push_image) -> None:  # type: ignore[no-untyped-def]
    digest = push_image(repo, "v1").digest
    proxy = FaultProxy(registry.port).start()
    try:
        ref = f"{proxy.address}/{repo.repository}:v1"

        def arm(message: str) -> None:
            if message.startswith("stored https://slsa.dev/provenance/v1"):
                proxy.fail_next(1000, 403)  # the registry refuses everything from now on

        with pytest.raises(PipelineError) as failure:
            _run(ref, KeySigner.from_file(KEY, b"attest-dev"), progress=arm)
    finally:
        proxy.stop()
    message = str(failure.value)
    assert "step 'sign' failed" in message and "COULD NOT roll back" in message
    # Two attestations but no signature: what a killed job leaves; signature checks fail closed.
    referrers, _tags = state(repo, digest)
    assert len(referrers) == 2
    client = RegistryClient(registry.address, options=RegistryOptions(timeout=30))
    from attest.signing.authority import KeyAuthority, VerificationPolicy
    from attest.verify import verify_image

    policy = VerificationPolicy((KeyAuthority("dev", Path(PUB).read_bytes()),))
    result = verify_image(
        parse_image_target(f"{registry.address}/{repo.repository}:v1"),
        policy,
        store=RegistryRepository(client, repo.repository),
    )
    assert not result.verified and len(result.attestations) == 2


class LyingSigner(KeySigner):
    """Signs with the dev key but claims another public key: the read-back cannot verify."""

    def __init__(self, other_public_pem: bytes) -> None:
        signer = KeySigner.from_file(KEY, b"attest-dev")
        super().__init__(signer._key, source=KEY)
        self.public_key_pem = other_public_pem


def test_read_back_that_does_not_verify_rolls_back(
    cli, registry, repo, push_image, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    digest = push_image(repo, "v1").digest
    before = state(repo, digest)
    other = tmp_path / "other"
    assert (
        cli("keygen", "--output-key-prefix", str(other), env={"ATTEST_PASSWORD": "x"}).exit_code
        == 0
    )
    signer = LyingSigner(Path(f"{other}.pub").read_bytes())
    with pytest.raises(
        PipelineError, match=r"step 'verify' failed: signature does not verify.*rolled back 3"
    ):
        _run(f"{registry.address}/{repo.repository}:v1", signer)
    assert state(repo, digest) == before


def test_multi_platform_image_signs_the_index_and_scans_the_platform(  # type: ignore[no-untyped-def]
    cli, registry, repo, push_image
) -> None:
    index = push_image(repo, "multi", platforms=("amd64", "arm64")).digest
    ref = f"{registry.address}/{repo.repository}:multi"
    result = cli(
        "pipeline",
        ref,
        "--key",
        KEY,
        "--tlog-upload=false",
        "--platform",
        "linux/arm64",
        *GENERIC,
        env=PASSWORD,
    )
    assert result.exit_code == 0, result.stderr
    summary = result.json()
    assert summary["digest"] == index  # what the reference names is what gets signed
    assert summary["platform"] == "linux/arm64"
    assert cli("verify", ref, "--key", PUB, "--insecure-ignore-tlog").exit_code == 0
