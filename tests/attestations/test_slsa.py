"""slsa-verifier-style checks (builder id, source URI, branch, tag) over SLSA v1 Statements."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from attest.attestations.predicates import SLSA_PROVENANCE_V1
from attest.attestations.provenance import (
    ProvenanceOptions,
    detect_build_context,
    provenance_statement,
)
from attest.attestations.slsa import (
    SlsaExpectations,
    builder_id_matches,
    check_provenance,
    provenance_facts,
)
from attest.attestations.statement import (
    Statement,
    build_statement,
    parse_statement,
    subject_for_image,
)
from attest.attestations.verification import Judge, read_bundles, verify_blob_attestation
from attest.errors import UsageError
from attest.signing.authority import KeylessAuthority
from attest.signing.fulcio import IdentityPolicy

GITHUB_ATTEST = SlsaExpectations(
    builder_id="https://github.com/loosebazooka/aa-test/.github/workflows/provenance.yaml@refs/heads/main",
    source_uri="github.com/loosebazooka/aa-test",
    source_branch="main",
)
RULES_LINT = SlsaExpectations(
    builder_id="https://github.com/bazel-contrib/.github/.github/workflows/release_ruleset.yaml@refs/tags/v7.1.0",
    source_uri="github.com/aspect-build/rules_lint",
    source_branch="publish-to-bcr",
)


def github_attest_statement(vectors: Path) -> Statement:
    return parse_statement((vectors / "slsa-statement-github-attest.json").read_bytes())


def rules_lint_statement(vectors: Path) -> Statement:
    bundle = json.loads(
        (vectors / "slsa-verifier" / "rules_lint-v1.3.1.tar.gz.intoto.jsonl").read_bytes()
    )
    return parse_statement(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


def changed_expectations(expected: SlsaExpectations) -> list[SlsaExpectations]:
    """Each expectation altered in one way that must make the check fail."""
    assert expected.builder_id and expected.source_uri and expected.source_branch
    return [
        dataclasses.replace(expected, builder_id=expected.builder_id + "x"),
        dataclasses.replace(expected, builder_id=expected.builder_id.replace("@refs/", "@refs/x")),
        dataclasses.replace(expected, builder_id=expected.builder_id.split("@")[0] + "2"),
        dataclasses.replace(expected, source_uri=expected.source_uri + "-fork"),
        dataclasses.replace(
            expected, source_uri="gitlab.com/" + expected.source_uri.split("/", 1)[1]
        ),
        dataclasses.replace(expected, source_uri=f"{expected.source_uri}@refs/heads/other"),
        dataclasses.replace(expected, source_branch=expected.source_branch + "2"),
        dataclasses.replace(expected, source_branch=None, source_tag=expected.source_branch),
    ]


@pytest.mark.parametrize(
    ("load", "expected"),
    [(github_attest_statement, GITHUB_ATTEST), (rules_lint_statement, RULES_LINT)],
    ids=["github-attest", "slsa-verifier-rules_lint"],
)
def test_vectors_pass_with_recorded_values_and_fail_when_any_changes(
    vectors: Path,
    load,
    expected: SlsaExpectations,  # type: ignore[no-untyped-def]
) -> None:
    statement = load(vectors)
    assert check_provenance(statement, expected) == []
    # Loose builder match: the name alone (any version) passes too, like slsa-verifier.
    assert (
        check_provenance(
            statement, dataclasses.replace(expected, builder_id=expected.builder_id.split("@")[0])
        )
        == []
    )
    for changed in changed_expectations(expected):
        problems = check_provenance(statement, changed)
        assert problems, f"{changed} should have failed"


def test_rules_lint_subject_is_the_released_tarball(vectors: Path) -> None:
    statement = rules_lint_statement(vectors)
    tarball = (vectors / "slsa-verifier" / "rules_lint-v1.3.1.tar.gz").read_bytes()
    assert statement.matches_digest("sha256:" + hashlib.sha256(tarball).hexdigest())
    facts = provenance_facts(statement)
    assert facts.source_digest == {"gitCommit": "8f70009fde0c94ade6ce2a054b94718c819126ec"}
    assert facts.trigger_uri == facts.source_uri == "git+https://github.com/aspect-build/rules_lint"


def test_our_provenance_passes_the_same_checks() -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_SHA": "a" * 40,
        "GITHUB_REF": "refs/tags/v3.1.0",
        "GITHUB_WORKFLOW_REF": "acme/shop/.github/workflows/ci.yml@refs/tags/v3.1.0",
        "GITHUB_RUN_ID": "5",
    }
    statement = provenance_statement(
        "r/a",
        "sha256:" + "0" * 64,
        detect_build_context(env),
        started_on=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    )
    good = SlsaExpectations(
        builder_id="https://github.com/acme/shop/.github/workflows/ci.yml",
        source_uri="https://github.com/acme/shop",
        source_tag="v3.1.0",
    )
    assert check_provenance(statement, good) == []
    assert check_provenance(statement, dataclasses.replace(good, source_tag="v3.1.1"))
    assert check_provenance(
        statement, dataclasses.replace(good, source_tag=None, source_branch="v3.1.0")
    ) == ["source ref 'refs/tags/v3.1.0' is not a branch (expected refs/heads/v3.1.0)"]


def test_generic_provenance_checks_its_source() -> None:
    context = detect_build_context(
        {},
        ProvenanceOptions(
            builder_id="https://ci.example.com/b",
            source_uri="git+https://git.example.com/t/app@refs/heads/main",
            source_digest="b" * 40,
        ),
    )
    statement = provenance_statement(
        "r/a", "sha256:" + "0" * 64, context, started_on=dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    )
    expected = SlsaExpectations(source_uri="git.example.com/t/app", source_branch="main")
    assert check_provenance(statement, expected) == []
    assert check_provenance(
        statement, dataclasses.replace(expected, source_uri="git.example.com/t/ap")
    )


def test_non_provenance_and_sourceless_statements_fail_closed() -> None:
    sbom = build_statement(
        [subject_for_image("x", "sha256:" + "0" * 64)], "https://cyclonedx.org/bom", {"a": 1}
    )
    assert "not SLSA provenance v1" in check_provenance(sbom, SlsaExpectations(builder_id="x"))[0]
    context = detect_build_context({}, ProvenanceOptions(builder_id="https://ci.example.com/b"))
    bare = provenance_statement(
        "r/a", "sha256:" + "0" * 64, context, started_on=dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    )
    assert check_provenance(bare, SlsaExpectations(source_uri="github.com/o/r")) == [
        "provenance records no git source in resolvedDependencies"
    ]
    assert "no source ref" in check_provenance(bare, SlsaExpectations(source_branch="main"))[0]


def test_builder_id_matching_rules() -> None:
    actual = "https://github.com/o/r/.github/workflows/x.yml@refs/tags/v1"
    assert builder_id_matches(actual, actual)
    assert builder_id_matches(actual, actual.split("@")[0])
    assert not builder_id_matches(actual, actual.split("@")[0] + "@refs/tags/v2")
    assert not builder_id_matches(actual, "https://github.com/o/r/.github/workflows/x.y")
    assert not builder_id_matches(actual, "https://github.com/o/r")


def test_contradictory_expectations_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="mutually exclusive"):
        SlsaExpectations(source_tag="v1", source_branch="main")
    with pytest.raises(UsageError, match="source URI"):
        SlsaExpectations(source_uri="nothing")


# -- the slsa-verifier bundle, signature and all -------------------------------------------------

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


def _verify_rules_lint(
    vectors: Path,
    *,
    subject: str | None = None,
    issuer: str = GITHUB_ISSUER,
    expected: SlsaExpectations = RULES_LINT,
    artifact: bytes | None = None,
    bundle: bytes | None = None,
):  # type: ignore[no-untyped-def]
    folder = vectors / "slsa-verifier"
    data = artifact if artifact is not None else (folder / "rules_lint-v1.3.1.tar.gz").read_bytes()
    raw = (
        bundle
        if bundle is not None
        else (folder / "rules_lint-v1.3.1.tar.gz.intoto.jsonl").read_bytes()
    )
    authority = KeylessAuthority(
        name="github",
        identity=IdentityPolicy(issuer=issuer, subject=subject or RULES_LINT.builder_id),
    )
    return verify_blob_attestation(
        read_bundles(raw, what="bundle"),
        "sha256:" + hashlib.sha256(data).hexdigest(),
        authority,
        Judge(SLSA_PROVENANCE_V1, slsa=expected),
        reference="rules_lint-v1.3.1.tar.gz",
    )


def test_slsa_verifier_bundle_verifies_offline_against_the_production_root(vectors: Path) -> None:
    report = _verify_rules_lint(vectors)
    assert report.passed, report.to_dict()
    outcome = report.outcomes[0]
    assert outcome.signer.to_dict() == {
        "type": "keyless",
        "subject": RULES_LINT.builder_id,
        "issuer": GITHUB_ISSUER,
    }
    assert outcome.statement["subject"][0]["name"] == "rules_lint-v1.3.1.tar.gz"


@pytest.mark.parametrize(
    "change",
    [
        {"subject": RULES_LINT.builder_id.replace("v7.1.0", "v7.1.1")},
        {"issuer": "https://accounts.google.com"},
        {"artifact": b"not the released tarball"},
        *({"expected": changed} for changed in changed_expectations(RULES_LINT)),
    ],
    ids=lambda change: next(iter(change)),
)
def test_slsa_verifier_bundle_fails_when_any_expected_value_changes(
    vectors: Path, change: dict
) -> None:
    report = _verify_rules_lint(vectors, **change)
    assert not report.passed
    assert report.failure_summary()


def test_slsa_verifier_bundle_tampered_payload_fails(vectors: Path) -> None:
    path = vectors / "slsa-verifier" / "rules_lint-v1.3.1.tar.gz.intoto.jsonl"
    bundle = json.loads(path.read_bytes())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["runDetails"]["builder"]["id"] += "-evil"
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    report = _verify_rules_lint(vectors, bundle=json.dumps(bundle).encode())
    assert not report.passed
    assert not report.outcomes[0].signature_verified
