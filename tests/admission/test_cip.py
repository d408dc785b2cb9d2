"""ClusterImagePolicies in the admission config, judged on real signed images.

Images live in the real docker-registry and are signed and attested by attest
(``world`` in tests/admission/conftest.py: signature, SLSA provenance and an SBOM,
made with ``world.key``).  Each case runs the webhook's own flow offline
(:func:`admission.offline.review_file`, the code behind ``attest admission review``),
so every decision here is what the server would answer.  The attack tests come
first: a CIP that another spelling of the host evades, the wrong key, a Rego policy
that errors, static fail, and warn mode softening a denial that our config enforces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from admission.cip import ClusterPolicy, glob_regex, image_names
from admission.config import load_config
from admission.errors import ConfigError
from admission.offline import review_file
from admission.testing.helpers import BUILDER, deployment, key_policy
from admission.testing.world import REPO, World
from admission.verdict import Decision
from attest.oci.access import resolve_image
from attest.oci.reference import parse_image_reference
from attest.signing import keys
from attest.signing.bundle import SignatureMaterial
from attest.signing.dsse import pae
from attest.signing.signer import KeySigner
from attest.signing.storage import attach_signature

PROVENANCE_REGO = f"""package sigstore
default isCompliant = false
isCompliant {{
  input.predicateType == "https://slsa.dev/provenance/v1"
  input.predicate.runDetails.builder.id == "{BUILDER}"
}}
"""
ERRORING_REGO = """package sigstore
isCompliant {
  to_number("not a number") > 0
}
"""


def cip(name: str, glob: str, *authorities: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy.sigstore.dev/v1beta1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {"images": [{"glob": glob}], "authorities": list(authorities), **spec},
    }


def key(pem: bytes, **extra: Any) -> dict[str, Any]:
    return {"key": {"data": pem.decode()}, **extra}


def write(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def decide(
    tmp_path: Path, config: Path, image: str, *, kind: dict[str, Any] | None = None
) -> Decision:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump(kind or deployment(image)))
    [decision] = review_file(str(manifest), config_path=str(config))
    return decision


def glob_of(world: World) -> str:
    return f"{world.registry.address}/{REPO}/**"


def images(world: World) -> dict[str, str]:
    return world.images  # type: ignore[attr-defined,no-any-return]


# -- attacks -----------------------------------------------------------------------------


DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("glob", "image"),
    [
        ("ghcr.io/acme/**", f"GHCR.IO:443/acme/app@{DIGEST}"),
        ("ghcr.io/acme/**", f"ghcr.io:443/acme/app:v1@{DIGEST}"),
        ("docker.io/acme/*", f"acme/app@{DIGEST}"),
        ("DOCKER.IO/acme/*", f"index.docker.io/acme/app@{DIGEST}"),
        ("index.docker.io/library/nginx*", f"registry-1.docker.io/nginx@{DIGEST}"),
        ("nginx", f"docker.io/library/nginx:1.27@{DIGEST}"),
        ("ghcr.io/acme/app", f"ghcr.io/acme/app:v2@{DIGEST}"),
    ],
)
def test_attack_another_spelling_of_the_image_does_not_evade_a_cip(
    tmp_path: Path, glob: str, image: str
) -> None:
    """Unmatched images are allowed here: only the CIP (static fail) can deny them."""
    config = write(
        tmp_path / "config.yaml",
        {"unmatchedImages": "allow"},
        cip("no-acme", glob, {"static": {"action": "fail", "message": "blocked"}}),
    )
    decision = decide(tmp_path, config, image)
    assert decision.result == "denied", decision.to_dict()
    assert (
        f"{image}: ClusterImagePolicy no-acme: authority authority-0: blocked" in decision.message
    )


def test_glob_matches_every_spelling_but_not_a_neighbour() -> None:
    policy = ClusterPolicy("p", ("ghcr.io/acme/*",), ())
    resource = ("apps", "v1", "deployments", {})
    for spelling in ("ghcr.io/acme/app", "GHCR.io:443/acme/app:v1", f"ghcr.io/acme/app@{DIGEST}"):
        assert policy.applies(parse_image_reference(spelling), spelling, resource), spelling
    for other in ("ghcr.io/acme/team/app", "ghcr.io/acmex/app", "ghcr.io.evil/acme/app"):
        assert not policy.applies(parse_image_reference(other), other, resource), other
    # policy-controller's rules: "*" stays within one path part, "**" crosses them
    assert glob_regex("ghcr.io/acme/**").match("ghcr.io/acme/team/app:v1")
    assert not glob_regex("ghcr.io/*").match("ghcr.io/acme/app")
    assert "index.docker.io/library/nginx:latest" in image_names(
        parse_image_reference("nginx"), "nginx"
    )


def test_attack_signature_by_another_key_is_denied(world: World, tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.yaml", cip("release", glob_of(world), key(world.other_key.public_pem))
    )
    decision = decide(tmp_path, config, images(world)["good"])
    assert decision.result == "denied"
    assert "ClusterImagePolicy release: authority authority-0: no signature verified" in (
        decision.message
    )


def test_attack_attestation_policy_that_errors_denies(world: World, tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.yaml",
        cip(
            "provenance",
            glob_of(world),
            key(
                world.key.public_pem,
                attestations=[
                    {
                        "name": "prov",
                        "predicateType": "slsaprovenance1",
                        "policy": {"type": "rego", "data": ERRORING_REGO},
                    }
                ],
            ),
        ),
    )
    decision = decide(tmp_path, config, images(world)["good"])
    assert decision.result == "denied", decision.to_dict()
    assert "attestation prov: policy error" in decision.message


UNDEFINED_REGO = """package sigstore
isCompliant {
  input.predicate.noSuchField == "x"
}
"""


def _provenance_cip(world: World, pem: bytes, rego: str) -> dict[str, Any]:
    attestation = {"name": "prov", "predicateType": "slsaprovenance1",
                   "policy": {"type": "rego", "data": rego}}  # fmt: skip
    return cip("provenance", glob_of(world), key(pem, attestations=[attestation]))


def test_attack_attestation_policy_leaving_is_compliant_undefined_denies(
    world: World, tmp_path: Path
) -> None:
    config = write(
        tmp_path / "config.yaml", _provenance_cip(world, world.key.public_pem, UNDEFINED_REGO)
    )
    decision = decide(tmp_path, config, images(world)["good"])
    assert decision.result == "denied", decision.to_dict()
    assert "attestation prov: isCompliant is not true" in decision.message


def test_attack_attestation_signed_by_another_key_does_not_count(
    world: World, tmp_path: Path
) -> None:
    """``other`` carries provenance that passes the policy, signed by the other key."""
    config = write(
        tmp_path / "config.yaml", _provenance_cip(world, world.key.public_pem, PROVENANCE_REGO)
    )
    assert decide(tmp_path, config, images(world)["good"]).allowed
    decision = decide(tmp_path, config, images(world)["other"])
    assert decision.result == "denied", decision.to_dict()
    assert "no attestation of type https://slsa.dev/provenance/v1 verified by this authority" in (
        decision.message
    )


def test_attack_static_fail_denies_what_our_policy_admits(world: World, tmp_path: Path) -> None:
    ours = {"imagePolicies": [key_policy("apps", [glob_of(world)], world.key_file)]}
    config = write(tmp_path / "config.yaml", ours)
    assert decide(tmp_path, config, images(world)["good"]).allowed  # ours alone admits it
    config = write(
        tmp_path / "config.yaml",
        ours,
        cip("frozen", glob_of(world), {"static": {"action": "fail"}}),
    )
    decision = decide(tmp_path, config, images(world)["good"])
    assert decision.result == "denied"
    assert "ClusterImagePolicy frozen: authority authority-0: static fail" in decision.message


def test_attack_warn_cip_does_not_soften_our_enforced_denial(world: World, tmp_path: Path) -> None:
    """``other`` is signed by another key: our enforce policy denies it; a warn-mode CIP that
    it passes, or fails, must leave that denial in place."""
    ours = {"imagePolicies": [key_policy("apps", [glob_of(world)], world.key_file)]}
    for trusted in (world.other_key, world.key):
        config = write(
            tmp_path / "config.yaml",
            ours,
            cip("soft", glob_of(world), key(trusted.public_pem), mode="warn"),
        )
        decision = decide(tmp_path, config, images(world)["other"])
        assert decision.result == "denied", decision.to_dict()
        assert "no trusted signature" in decision.message


def test_attack_enforced_cip_denies_under_our_warn_policy(world: World, tmp_path: Path) -> None:
    ours = {"imagePolicies": [key_policy("apps", [glob_of(world)], world.key_file, mode="warn")]}
    config = write(
        tmp_path / "config.yaml",
        ours,
        cip("strict", glob_of(world), key(world.other_key.public_pem)),
    )
    decision = decide(tmp_path, config, images(world)["good"])
    assert decision.result == "denied", decision.to_dict()
    assert "ClusterImagePolicy strict" in decision.message


# -- what works --------------------------------------------------------------------------


def test_key_cip_alone_admits_signed_and_denies_unsigned(world: World, tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.yaml", cip("release", glob_of(world), key(world.key.public_pem))
    )
    good = decide(tmp_path, config, images(world)["good"])
    assert good.result == "allowed", good.to_dict()
    assert good.images[0].policy == "ClusterImagePolicy release"
    [verdict] = good.input["images"][0]["clusterImagePolicies"]  # type: ignore[index]
    assert verdict == {"name": "release", "mode": "enforce", "passed": True, "reasons": []}
    bad = decide(tmp_path, config, images(world)["unsigned"])
    assert bad.result == "denied"


def test_any_authority_may_satisfy_a_cip_and_every_cip_must_pass(
    world: World, tmp_path: Path
) -> None:
    either = cip(
        "either",
        glob_of(world),
        {"name": "old", **key(world.other_key.public_pem)},
        {"name": "new", **key(world.key.public_pem)},
    )
    config = write(tmp_path / "config.yaml", either)
    assert decide(tmp_path, config, images(world)["good"]).allowed
    both = write(
        tmp_path / "config.yaml",
        either,
        cip("old-only", glob_of(world), key(world.other_key.public_pem)),
    )
    decision = decide(tmp_path, config=both, image=images(world)["good"])
    assert decision.result == "denied"
    assert "ClusterImagePolicy old-only" in decision.message and "either" not in decision.message


def test_attestation_with_rego_policy(world: World, tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.yaml",
        cip(
            "provenance",
            glob_of(world),
            key(
                world.key.public_pem,
                attestations=[
                    {
                        "name": "prov",
                        "predicateType": "https://slsa.dev/provenance/v1",
                        "policy": {"type": "rego", "data": PROVENANCE_REGO},
                    }
                ],
            ),
        ),
    )
    assert decide(tmp_path, config, images(world)["good"]).result == "allowed"
    evil = decide(tmp_path, config, images(world)["evil"])
    assert evil.result == "denied"
    assert "attestation prov: isCompliant is not true" in evil.message
    noprov = decide(tmp_path, config, images(world)["noprov"])
    assert "no attestation of type https://slsa.dev/provenance/v1" in noprov.message


def test_policy_level_rego_sees_authority_matches(world: World, tmp_path: Path) -> None:
    rego = """package sigstore
default isCompliant = false
isCompliant {
  count(input.authorityMatches.release.signatures) > 0
  not input.authorityMatches.static
}
"""
    config = write(
        tmp_path / "config.yaml",
        cip(
            "levels",
            glob_of(world),
            {"name": "release", **key(world.key.public_pem)},
            policy={"type": "rego", "data": rego},
        ),
    )
    assert decide(tmp_path, config, images(world)["good"]).allowed
    config = write(
        tmp_path / "config.yaml",
        cip(
            "levels",
            glob_of(world),
            {"name": "release", **key(world.key.public_pem)},
            {"name": "static", "static": {"action": "pass"}},
            policy={"type": "rego", "data": rego},
        ),
    )
    decision = decide(tmp_path, config, images(world)["good"])
    assert decision.result == "denied" and "policy: isCompliant is not true" in decision.message


def test_warn_mode_cip_warns_and_admits(world: World, tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.yaml",
        cip("soft", glob_of(world), key(world.other_key.public_pem), mode="warn"),
    )
    decision = decide(tmp_path, config, images(world)["good"])
    assert decision.result == "warned", decision.to_dict()
    assert any("warn mode (ClusterImagePolicy soft)" in w for w in decision.warnings)


def test_match_selects_resources_and_labels(world: World, tmp_path: Path) -> None:
    match = [{"group": "apps", "version": "v1", "resource": "deployments",
              "selector": {"matchLabels": {"app": "web"}}}]  # fmt: skip
    config = write(
        tmp_path / "config.yaml",
        {"unmatchedImages": "allow"},
        cip("web-only", glob_of(world), {"static": {"action": "fail"}}, match=match),
    )
    image = images(world)["good"]
    assert decide(tmp_path, config, image).result == "denied"  # a Deployment labelled app=web
    assert decide(tmp_path, config, image, kind=deployment(image, name="api")).allowed
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "c", "image": image}]}}  # fmt: skip
    assert decide(tmp_path, config, image, kind=pod).allowed


def test_secret_ref_reads_the_mounted_secret(world: World, tmp_path: Path) -> None:
    secret = tmp_path / "secrets" / "release-key"
    secret.mkdir(parents=True)
    (secret / "cosign.pub").write_bytes(world.key.public_pem)
    config = write(
        tmp_path / "config.yaml",
        cip("release", glob_of(world), {"key": {"secretRef": {"name": "release-key"}}}),
    )
    assert decide(tmp_path, config, images(world)["good"]).allowed
    (secret / "other.pub").write_bytes(world.other_key.public_pem)
    with pytest.raises(
        ConfigError, match=r"spec.authorities\[0\].key.secretRef: .* exactly one key"
    ):
        load_config(str(config))


def test_config_directory_combines_our_config_and_cips(world: World, tmp_path: Path) -> None:
    directory = tmp_path / "config"
    directory.mkdir()
    write(
        directory / "10-attest.yaml",
        {"imagePolicies": [key_policy("apps", [glob_of(world)], world.key_file)]},
    )
    write(directory / "20-cip.yaml", cip("frozen", glob_of(world), {"static": {"action": "fail"}}))
    (directory / "README.txt").write_text("not configuration")
    (directory / "..data").mkdir()
    config = load_config(str(directory))
    assert [p.name for p in config.policies] == ["apps"]
    assert [c.name for c in config.cluster_policies] == ["frozen"]
    decision = decide(tmp_path, directory, images(world)["good"])
    assert decision.result == "denied" and "ClusterImagePolicy frozen" in decision.message


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        (
            [{"kind": "TrustRoot", "apiVersion": "policy.sigstore.dev/v1alpha1"}],
            "kind 'TrustRoot' is not supported",
        ),
        (
            [{"unmatchedImages": "allow"}, {"unmatchedImages": "deny"}],
            "more than one attest configuration",
        ),
        ([cip("x", "**", {"static": {"action": "pass"}}, extra=1)], "spec.extra: unknown field"),
        (
            [cip("x", "**", {"static": {"action": "pass"}, "colour": "red"})],
            r"spec.authorities\[0\].colour: unknown field",
        ),
        (
            [
                cip("x", "**", {"static": {"action": "pass"}}),
                cip("x", "**", {"static": {"action": "pass"}}),
            ],
            "name 'x' is used twice",
        ),
        (
            [cip("x", "**", {"key": {"kms": "gcpkms://k"}})],
            r"spec.authorities\[0\].key.kms: .* not supported",
        ),
        (
            [
                {
                    **cip("x", "**", {"static": {"action": "pass"}}),
                    "apiVersion": "policy.sigstore.dev/v2",
                }
            ],
            "apiVersion: invalid value",
        ),
    ],
)
def test_bad_documents_are_refused_in_one_line(
    tmp_path: Path, documents: list[Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(str(write(tmp_path / "config.yaml", *documents)))
    assert "\n" not in str(caught.value)


def test_directory_reload_sees_a_new_policy_file(tmp_path: Path) -> None:
    from admission.watcher import ConfigWatcher

    directory = tmp_path / "config"
    directory.mkdir()
    write(directory / "a.yaml", cip("first", "**", {"static": {"action": "pass"}}))
    watcher = ConfigWatcher(str(directory), lambda config: None, interval=0)
    assert [c.name for c in watcher.current().config.cluster_policies] == ["first"]
    write(directory / "b.yaml", cip("second", "**", {"static": {"action": "fail"}}))
    assert [c.name for c in watcher.current().config.cluster_policies] == ["first", "second"]
    (directory / "b.yaml").write_text("kind: ClusterImagePolicy\nspec: {}\n")
    assert [c.name for c in watcher.current().config.cluster_policies] == ["first", "second"]
    assert watcher.last_error and "metadata.name: missing field" in watcher.last_error


def test_cli_refuses_an_unsupported_cip_in_one_line(cli: Any, tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.yaml",
        cip("kms", "**", {"key": {"kms": "awskms:///alias/release"}}),
    )
    manifest = tmp_path / "app.yaml"
    manifest.write_text(yaml.safe_dump(deployment("ghcr.io/acme/app:v1")))
    result = cli("admission", "review", str(manifest), "--config", str(config))
    assert result.exit_code == 2
    assert "spec.authorities[0].key.kms: a KMS key reference" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


class Sha512Signer(KeySigner):
    """Signs over SHA-512, as a KMS key configured for it does (cosign signs over SHA-256)."""

    def sign(self, data: bytes) -> SignatureMaterial:
        signature = self._key.sign(data, ec.ECDSA(hashes.SHA512()))  # type: ignore[union-attr,call-arg]
        return SignatureMaterial(signature=signature, payload=data, public_key_hint=self.key_id)

    def sign_dsse(self, payload_type: str, payload: bytes) -> SignatureMaterial:
        signature = self._key.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA512()))  # type: ignore[union-attr,call-arg]
        return SignatureMaterial(
            signature=signature, payload=payload, payload_type=payload_type,
            public_key_hint=self.key_id,
        )  # fmt: skip


@pytest.mark.parametrize("legacy", [False, True], ids=["bundle", "legacy"])
def test_hash_algorithm_sha512(world: World, tmp_path: Path, legacy: bool) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    signer = Sha512Signer(private)
    name = f"sha512-{'legacy' if legacy else 'bundle'}"
    reference = world.push(name)
    store = world.store(name)
    attach_signature(
        store, resolve_image(store, parse_image_reference(reference)), signer, legacy=legacy
    )
    pem = signer.public_key_pem
    sha512 = write(
        tmp_path / "sha512.yaml",
        cip("sha512", glob_of(world), {"key": {"data": pem.decode(), "hashAlgorithm": "sha512"}}),
    )
    decision = decide(tmp_path, sha512, reference)
    assert decision.result == "allowed", decision.to_dict()
    default = write(tmp_path / "sha256.yaml", cip("sha256", glob_of(world), key(pem)))
    decision = decide(tmp_path, default, reference)
    assert decision.result == "denied"
    assert "signature does not verify with the key" in decision.message


def test_hash_algorithm_other_than_sha256_with_a_required_log_is_refused(tmp_path: Path) -> None:
    pem = keys.public_key_pem(ec.generate_private_key(ec.SECP256R1()).public_key()).decode()
    config = write(
        tmp_path / "config.yaml",
        cip(
            "x",
            "**",
            {"key": {"data": pem, "hashAlgorithm": "sha384"}, "ctlog": {"url": "http://rekor"}},
        ),
    )
    with pytest.raises(
        ConfigError, match=r"spec.authorities\[0\].key.hashAlgorithm: sha384 with ctlog"
    ):
        load_config(str(config))
