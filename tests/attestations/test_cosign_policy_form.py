"""``verify-attestation --policy`` with cosign's policy form (``package signature``, ``allow``).

cosign queries ``data.signature.allow`` and passes only on ``true``; a policy in that
form must never pass here just because it defines no ``deny``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.attestations.test_cli_attestations import KEY, PASSWORD, PUB

REVIEWED = "https://attest.dev/test/review/v1"
COSIGN_FORM = """package signature

import rego.v1

# cosign's form: data.signature.allow must be true
allow if {{
    input.predicateType == "{type}"
    input.predicate.reviewed == {value}
}}
"""


@pytest.fixture
def attested(cli, registry, repo, push_image, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    """An image with a key-signed custom attestation whose predicate says reviewed: true."""
    ref = f"{registry.address}/{repo.repository}@{push_image(repo, 'v1').digest}"
    predicate = tmp_path / "predicate.json"
    predicate.write_text('{"reviewed": true}')
    stored = cli("attest", ref, "--key", KEY, "--predicate", str(predicate), "--type", REVIEWED,
                 "--tlog-upload=false", env=PASSWORD)  # fmt: skip
    assert stored.exit_code == 0, stored.stderr
    return ref


def _verify(cli, ref: str, policy: Path, *extra: str):  # type: ignore[no-untyped-def]
    return cli("verify-attestation", ref, "--key", PUB, "--insecure-ignore-tlog", "--type",
               REVIEWED, "--policy", str(policy), *extra)  # fmt: skip


def test_cosign_form_allow_false_fails(cli, attested: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The attack: a cosign policy that does not allow the Statement must fail verification."""
    policy = tmp_path / "policy.rego"
    policy.write_text(COSIGN_FORM.format(type=REVIEWED, value="false"))
    result = _verify(cli, attested, policy)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "- policy: data.signature.allow is not true (undefined)" in result.stdout
    policy.write_text("package signature\n\nallow := false\n")
    result = _verify(cli, attested, policy)
    assert result.exit_code == 1 and "allow is not true (false)" in result.stdout
    policy.write_text('package signature\n\nallow := "yes"\n')  # only a literal true allows
    result = _verify(cli, attested, policy)
    assert result.exit_code == 1 and 'allow is not true ("yes")' in result.stdout


def test_cosign_form_allow_true_passes(cli, attested: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "policy.rego"
    policy.write_text(COSIGN_FORM.format(type=REVIEWED, value="true"))
    result = _verify(cli, attested, policy, "-o", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.json()["policy"]["package"] == "signature"
    assert result.json()["policy"]["rules"] == ["allow"]
    # allow and deny together: both are read, a deny still fails it
    policy.write_text(COSIGN_FORM.format(type=REVIEWED, value="true")
                      + 'deny contains "not on Sundays" if { true }\n')  # fmt: skip
    result = _verify(cli, attested, policy)
    assert result.exit_code == 1 and "- policy: not on Sundays" in result.stdout


def test_policy_defining_no_verdict_rule_is_refused(cli, attested: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "policy.rego"
    policy.write_text("package signature\n\nallowed if { input.predicate.reviewed }\n")
    result = _verify(cli, attested, policy)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "package signature defines none of allow, deny or warn" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
