"""cosign's ``verify-attestation --policy`` and ours give the same verdict on cosign-form policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.peers.conftest import ENV, Cosign

CUSTOM_TYPE = "https://attest.dev/test/custom/v1"
POLICIES = {
    "allow-true": "package signature\n\nimport rego.v1\n\nallow if { input.predicate.reviewed == true }\n",
    "allow-false": "package signature\n\nimport rego.v1\n\nallow if { input.predicate.reviewed == false }\n",
    "allow-literal-false": "package signature\n\nimport rego.v1\n\nallow := false\n",
    "allow-string": 'package signature\n\nimport rego.v1\n\nallow := "true"\n',
    "default-false": "package signature\n\nimport rego.v1\n\ndefault allow := false\n",
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_cosign_and_attest_agree_on_allow(
    cli, cosign: Cosign, registry, repo, push_image, attest_keys, trust_v1, tmp_path: Path, name: str
) -> None:  # fmt: skip
    ref = f"{registry.address}/{repo.repository}@{push_image(repo, 'v1').digest}"
    keys = attest_keys()
    predicate = tmp_path / "predicate.json"
    predicate.write_text(json.dumps({"reviewed": True}))
    stored = cli("attest", ref, "--key", keys.private, "--predicate", str(predicate), "--type",
                 CUSTOM_TYPE, "--trust-config", str(trust_v1.config), env=ENV)  # fmt: skip
    assert stored.exit_code == 0, stored.stderr
    policy = tmp_path / "policy.rego"
    policy.write_text(POLICIES[name])
    theirs = cosign("verify-attestation", "--key", keys.public, "--type", CUSTOM_TYPE,
                    "--trusted-root", str(trust_v1.root), "--policy", str(policy), ref)  # fmt: skip
    ours = cli("verify-attestation", ref, "--key", keys.public, "--type", CUSTOM_TYPE,
               "--trusted-root", str(trust_v1.root), "--policy", str(policy))  # fmt: skip
    assert ours.exit_code in (0, 1), ours.stderr
    assert (theirs.returncode == 0) == (ours.exit_code == 0), (theirs.stderr, ours.stdout)
    assert (ours.exit_code == 0) == (name == "allow-true")
