"""SLSA Provenance v1 predicates from GitHub Actions, GitLab CI and generic flags."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

from attest.attestations.predicates import SLSA_PROVENANCE_V1
from attest.attestations.provenance import (
    GENERIC_BUILD_TYPE,
    GITHUB_BUILD_TYPE,
    GITLAB_BUILD_TYPE,
    ProvenanceOptions,
    detect_build_context,
    parse_source_digest,
    provenance_statement,
    split_source_uri,
    validate_provenance_predicate,
)
from attest.attestations.statement import parse_statement, validate_with_in_toto
from attest.errors import AttestationError, UsageError

DIGEST = "sha256:" + "12" * 32
SHA = "8f70009fde0c94ade6ce2a054b94718c819126ec"
START = dt.datetime(2025, 3, 26, 23, 40, 0, tzinfo=dt.UTC)
END = dt.datetime(2025, 3, 26, 23, 47, 15, 123456, tzinfo=dt.UTC)

GITHUB_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/shop",
    "GITHUB_SHA": SHA,
    "GITHUB_REF": "refs/tags/v1.2.0",
    "GITHUB_WORKFLOW_REF": "acme/shop/.github/workflows/release.yml@refs/tags/v1.2.0",
    "GITHUB_RUN_ID": "14095611671",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_EVENT_NAME": "push",
    "GITHUB_REPOSITORY_ID": "631710741",
    "GITHUB_REPOSITORY_OWNER_ID": "60951090",
    "RUNNER_ENVIRONMENT": "github-hosted",
}

GITLAB_ENV = {
    "GITLAB_CI": "true",
    "CI_SERVER_URL": "https://gitlab.example.com",
    "CI_PROJECT_PATH": "group/shop",
    "CI_PROJECT_URL": "https://gitlab.example.com/group/shop",
    "CI_COMMIT_SHA": SHA,
    "CI_COMMIT_BRANCH": "main",
    "CI_COMMIT_REF_NAME": "main",
    "CI_CONFIG_PATH": ".gitlab-ci.yml",
    "CI_JOB_URL": "https://gitlab.example.com/group/shop/-/jobs/77",
    "CI_JOB_ID": "77",
    "CI_PIPELINE_ID": "12",
    "CI_PROJECT_ID": "5",
    "CI_PIPELINE_SOURCE": "push",
    "CI_JOB_NAME": "attest",
}


def _statement(env: dict[str, str], options: ProvenanceOptions | None = None) -> dict:
    context = detect_build_context(env, options)
    statement = provenance_statement(
        "registry.example.com/shop", DIGEST, context, started_on=START, finished_on=END
    )
    return json.loads(statement.raw)


def _round_trip(predicate: dict) -> None:
    """The predicate survives in-toto-attestation's Provenance model unchanged."""
    message = json_format.ParseDict(predicate, provenance_pb2.Provenance())
    assert json_format.MessageToDict(message) == predicate


def test_github_actions_provenance_has_githubs_shape() -> None:
    statement = _statement(GITHUB_ENV)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == SLSA_PROVENANCE_V1
    assert statement["subject"] == [
        {"name": "registry.example.com/shop", "digest": {"sha256": "12" * 32}}
    ]
    predicate = statement["predicate"]
    definition = predicate["buildDefinition"]
    assert definition["buildType"] == GITHUB_BUILD_TYPE
    assert definition["externalParameters"] == {
        "workflow": {
            "ref": "refs/tags/v1.2.0",
            "repository": "https://github.com/acme/shop",
            "path": ".github/workflows/release.yml",
        }
    }
    assert definition["internalParameters"]["github"] == {
        "event_name": "push",
        "repository_id": "631710741",
        "repository_owner_id": "60951090",
        "runner_environment": "github-hosted",
    }
    assert definition["resolvedDependencies"] == [
        {"uri": "git+https://github.com/acme/shop@refs/tags/v1.2.0", "digest": {"gitCommit": SHA}}
    ]
    assert predicate["runDetails"] == {
        "builder": {
            "id": "https://github.com/acme/shop/.github/workflows/release.yml@refs/tags/v1.2.0"
        },
        "metadata": {
            "invocationId": "https://github.com/acme/shop/actions/runs/14095611671/attempts/2",
            "startedOn": "2025-03-26T23:40:00Z",
            "finishedOn": "2025-03-26T23:47:15Z",
        },
    }
    _round_trip(predicate)
    validate_with_in_toto(statement)


def test_gitlab_ci_provenance_names_the_pipeline_like_fulcio() -> None:
    statement = _statement(GITLAB_ENV)
    predicate = statement["predicate"]
    assert predicate["buildDefinition"]["buildType"] == GITLAB_BUILD_TYPE
    assert predicate["runDetails"]["builder"]["id"] == (
        "https://gitlab.example.com/group/shop//.gitlab-ci.yml@refs/heads/main"
    )
    assert predicate["buildDefinition"]["resolvedDependencies"] == [
        {
            "uri": "git+https://gitlab.example.com/group/shop@refs/heads/main",
            "digest": {"gitCommit": SHA},
        }
    ]
    assert predicate["buildDefinition"]["externalParameters"]["source"] == {
        "repository": "https://gitlab.example.com/group/shop",
        "ref": "refs/heads/main",
    }
    assert predicate["runDetails"]["metadata"]["invocationId"] == GITLAB_ENV["CI_JOB_URL"]
    assert predicate["buildDefinition"]["internalParameters"]["gitlab"]["job_id"] == "77"
    _round_trip(predicate)
    tagged = _statement({**GITLAB_ENV, "CI_COMMIT_TAG": "v2.0.0"})
    assert tagged["predicate"]["runDetails"]["builder"]["id"].endswith("@refs/tags/v2.0.0")


def test_generic_flags_outside_ci() -> None:
    options = ProvenanceOptions(
        builder_id="https://ci.example.com/builders/linux@v3",
        source_uri="https://git.example.com/team/app.git@refs/heads/release",
        source_digest=f"gitCommit:{SHA}",
        invocation_id="https://ci.example.com/runs/991",
    )
    predicate = _statement({"PATH": "/usr/bin"}, options)["predicate"]
    assert predicate["buildDefinition"]["buildType"] == GENERIC_BUILD_TYPE
    assert predicate["buildDefinition"]["externalParameters"] == {
        "source": {"uri": "git+https://git.example.com/team/app", "ref": "refs/heads/release"}
    }
    assert predicate["buildDefinition"]["resolvedDependencies"] == [
        {
            "uri": "git+https://git.example.com/team/app@refs/heads/release",
            "digest": {"gitCommit": SHA},
        }
    ]
    assert predicate["runDetails"]["builder"]["id"] == "https://ci.example.com/builders/linux@v3"
    assert predicate["runDetails"]["metadata"]["invocationId"] == "https://ci.example.com/runs/991"
    _round_trip(predicate)


def test_flags_override_what_ci_says() -> None:
    options = ProvenanceOptions(
        builder_id="https://github.com/org/.github/.github/workflows/reusable.yml@refs/tags/v7",
        build_type="https://example.com/buildtypes/custom/v1",
    )
    predicate = _statement(GITHUB_ENV, options)["predicate"]
    assert predicate["runDetails"]["builder"]["id"].endswith("reusable.yml@refs/tags/v7")
    assert predicate["buildDefinition"]["buildType"] == "https://example.com/buildtypes/custom/v1"
    # The source still comes from the environment.
    assert predicate["buildDefinition"]["resolvedDependencies"][0]["digest"] == {"gitCommit": SHA}


@pytest.mark.parametrize("missing", ["GITHUB_SHA", "GITHUB_REPOSITORY", "GITHUB_WORKFLOW_REF"])
def test_missing_github_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in GITHUB_ENV.items() if k != missing}
    with pytest.raises(UsageError, match=rf"\${missing} is not set"):
        detect_build_context(env)


def test_missing_gitlab_variable_is_named() -> None:
    env = {k: v for k, v in GITLAB_ENV.items() if k != "CI_COMMIT_SHA"}
    with pytest.raises(UsageError, match=r"GitLab CI detected but \$CI_COMMIT_SHA"):
        detect_build_context(env)


def test_generic_needs_a_builder_id_and_sane_flags() -> None:
    with pytest.raises(UsageError, match="--builder-id is required"):
        detect_build_context({})
    with pytest.raises(UsageError, match="must be a URI"):
        detect_build_context({}, ProvenanceOptions(builder_id="my laptop"))
    with pytest.raises(UsageError, match="needs --source-uri"):
        detect_build_context({}, ProvenanceOptions(builder_id="https://b", source_digest=SHA))
    with pytest.raises(UsageError, match="--source-digest"):
        parse_source_digest("main")
    with pytest.raises(UsageError, match="empty ref"):
        split_source_uri("github.com/a/b@")
    context = detect_build_context({}, ProvenanceOptions(builder_id="https://b"))
    with pytest.raises(UsageError, match="after its finish"):
        provenance_statement("r/a", DIGEST, context, started_on=END, finished_on=START)


def test_source_uri_forms_normalise_alike() -> None:
    expected = ("git+https://github.com/o/r", None)
    assert split_source_uri("github.com/o/r") == expected
    assert split_source_uri("https://github.com/o/r.git") == expected
    assert split_source_uri("git+https://github.com/o/r") == expected
    assert split_source_uri("git+https://github.com/o/r@refs/heads/x") == (
        expected[0],
        "refs/heads/x",
    )
    assert parse_source_digest(SHA) == {"gitCommit": SHA}
    assert parse_source_digest("sha256:" + "AB" * 32) == {"sha256": "ab" * 32}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("buildDefinition"), "buildDefinition is required"),
        (lambda p: p["buildDefinition"].pop("buildType"), "buildType is required"),
        (
            lambda p: p["buildDefinition"].pop("externalParameters"),
            "externalParameters is required",
        ),
        (lambda p: p["buildDefinition"].update(externalParameters=[]), "must be a JSON object"),
        (lambda p: p["runDetails"]["builder"].pop("id"), "builder.id is required"),
        (lambda p: p["runDetails"].pop("builder"), "builder is required"),
        (lambda p: p["runDetails"]["metadata"].update(startedOn="yesterday"), "v1 schema"),
        (lambda p: p["runDetails"]["metadata"].update(startedOn="2030-01-01T00:00:00Z"), "after"),
        (lambda p: p["buildDefinition"].update(resolvedDependencies=[{}]), "resolvedDependencies"),
        (lambda p: p["buildDefinition"].update(resolvedDependencies={}), "must be a list"),
        (lambda p: p.update(extra=1), "v1 schema"),
    ],
)
def test_invalid_provenance_is_rejected(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    predicate = _statement(GITHUB_ENV)["predicate"]
    mutate(predicate)
    with pytest.raises(AttestationError, match=message):
        validate_provenance_predicate(predicate)


def test_readers_ignore_unknown_fields_but_writers_do_not() -> None:
    predicate = _statement(GITHUB_ENV)["predicate"]
    predicate["futureField"] = {"x": 1}
    validate_provenance_predicate(predicate, strict=False)
    with pytest.raises(AttestationError):
        validate_provenance_predicate(predicate)


def test_provenance_statement_parses_back() -> None:
    raw = json.dumps(_statement(GITLAB_ENV)).encode()
    assert parse_statement(raw).predicate_type == SLSA_PROVENANCE_V1
