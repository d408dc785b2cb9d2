"""Judging verified attestations: subject digest, predicate type, SLSA checks and Rego policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attest.attestations.predicates import SLSA_PROVENANCE_V1
from attest.attestations.slsa import SlsaExpectations
from attest.attestations.verification import Judge, build_report, judge_statement
from attest.errors import PolicyError
from attest.policy import load_bundle, make_engine
from attest.signing.result import CheckResult, SignerIdentity
from attest.verify import ImageVerification

ATTEST_DIGEST = "sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"

POLICY = """
package attest.attestation

import rego.v1

deny contains msg if {
    builder := input.predicate.runDetails.builder.id
    not startswith(builder, "https://github.com/loosebazooka/")
    msg := sprintf("untrusted builder %s", [builder])
}

deny contains msg if {
    input.predicate.buildDefinition.internalParameters.github.runner_environment != "github-hosted"
    msg := "not built on a GitHub-hosted runner"
}

warn contains "built from a workflow_dispatch event" if {
    input.predicate.buildDefinition.internalParameters.github.event_name == "workflow_dispatch"
}
"""


@pytest.fixture
def statement(vectors: Path) -> dict:
    return json.loads((vectors / "slsa-statement-github-attest.json").read_bytes())


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "provenance.rego"
    path.write_text(POLICY)
    engine = make_engine(load_bundle(str(path)))
    yield engine
    engine.close()


def test_verified_statement_passes_policy_and_slsa(statement: dict, engine) -> None:  # type: ignore[no-untyped-def]
    violations, warnings = judge_statement(
        statement,
        ATTEST_DIGEST,
        SLSA_PROVENANCE_V1,
        slsa=SlsaExpectations(source_uri="github.com/loosebazooka/aa-test", source_branch="main"),
        engine=engine,
    )
    assert violations == []
    assert warnings == ["policy: built from a workflow_dispatch event"]


def test_every_violation_is_reported(statement: dict, engine) -> None:  # type: ignore[no-untyped-def]
    statement["predicate"]["runDetails"]["builder"]["id"] = "https://evil.example/builder"
    statement["predicate"]["buildDefinition"]["internalParameters"]["github"][
        "runner_environment"
    ] = "self-hosted"
    violations, _ = judge_statement(
        statement,
        ATTEST_DIGEST,
        SLSA_PROVENANCE_V1,
        slsa=SlsaExpectations(builder_id="https://github.com/loosebazooka/aa-test/x.yml"),
        engine=engine,
    )
    assert sorted(violations) == sorted(
        [
            "builder id 'https://evil.example/builder' does not match the expected "
            "'https://github.com/loosebazooka/aa-test/x.yml'",
            "policy: untrusted builder https://evil.example/builder",
            "policy: not built on a GitHub-hosted runner",
        ]
    )


def test_subject_type_and_shape_are_checked_before_policy(statement: dict, engine) -> None:  # type: ignore[no-untyped-def]
    other = "sha256:" + "0" * 64
    violations, _ = judge_statement(statement, other, SLSA_PROVENANCE_V1, engine=engine)
    assert len(violations) == 1 and "no subject digest equals the image digest" in violations[0]
    violations, _ = judge_statement(statement, ATTEST_DIGEST, "https://cyclonedx.org/bom")
    assert violations == [
        "predicate type 'https://slsa.dev/provenance/v1' is not the expected "
        "'https://cyclonedx.org/bom'"
    ]
    assert judge_statement(None, ATTEST_DIGEST, SLSA_PROVENANCE_V1)[0] == [
        "attestation payload is not an in-toto Statement"
    ]
    broken = dict(statement, subject=[])
    assert "no subject" in judge_statement(broken, ATTEST_DIGEST, SLSA_PROVENANCE_V1)[0][0]


def test_policy_errors_fail_closed(statement: dict, tmp_path: Path) -> None:
    path = tmp_path / "broken.rego"
    path.write_text("package attest.attestation\n\ndeny contains msg if { msg := 1 / 0 }\n")
    engine = make_engine(load_bundle(str(path)))
    with pytest.raises(PolicyError):
        judge_statement(statement, ATTEST_DIGEST, SLSA_PROVENANCE_V1, engine=engine)


def _check(statement: dict | None, *, verified: bool, location: str) -> CheckResult:
    return CheckResult(
        kind="attestation",
        storage="bundle",
        location=location,
        verified=verified,
        reasons=() if verified else ("signature does not verify with key k",),
        authority="k" if verified else None,
        signer=SignerIdentity.key("abc"),
        predicate_type=(statement or {}).get("predicateType"),
        statement=statement,
    )


def test_report_needs_a_verified_attestation_and_all_verified_ones_to_pass(
    statement: dict,
) -> None:
    def verification(*checks: CheckResult) -> ImageVerification:
        return ImageVerification("reg/a@" + ATTEST_DIGEST, ATTEST_DIGEST, (), checks, (), False, ())

    sbom = {**statement, "predicateType": "https://cyclonedx.org/bom", "predicate": {"a": 1}}
    good = _check(statement, verified=True, location="r@sha256:1")
    unsigned = _check(statement, verified=False, location="r@sha256:2")
    report = build_report(
        verification(good, unsigned, _check(sbom, verified=True, location="x")),
        Judge(SLSA_PROVENANCE_V1),
    )
    assert report.passed
    assert [o.location for o in report.outcomes] == ["r@sha256:1", "r@sha256:2"]
    assert report.other_types == ("https://cyclonedx.org/bom",)
    assert report.outcomes[1].violations == ("signature does not verify with key k",)

    only_unsigned = build_report(verification(unsigned), Judge(SLSA_PROVENANCE_V1))
    assert not only_unsigned.passed
    assert "verified against the trust policy" in only_unsigned.failure_summary()

    none = build_report(
        verification(_check(sbom, verified=True, location="x")), Judge(SLSA_PROVENANCE_V1)
    )
    assert not none.passed
    assert (
        "no attestation of type https://slsa.dev/provenance/v1 (found: https://cyclonedx.org/bom)"
        in none.failure_summary()
    )

    strict = SlsaExpectations(source_branch="release")
    bad = build_report(verification(good), Judge(SLSA_PROVENANCE_V1, slsa=strict))
    assert not bad.passed
    assert "failed 1 check(s)" in bad.failure_summary()
    assert bad.to_dict()["attestations"][0]["violations"] == [
        "source branch 'main' does not match the expected 'release'"
    ]
