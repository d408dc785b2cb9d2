"""slsa-verifier's provenance checks over a *verified* SLSA v1 Statement.

``--builder-id``: the provenance's ``runDetails.builder.id`` must match; as in
slsa-verifier, an expected id without ``@ref`` matches any version of that
builder, one with ``@ref`` must match exactly.

``--source-uri``: ``github.com/o/r``, ``https://…`` or ``git+https://…`` (normalised
to ``git+https://host/path``); the source in ``resolvedDependencies`` must be that
repository, and so must the trigger recorded in ``externalParameters`` (GitHub's
workflow, our GitLab/generic ``source``) where there is one — and source and
trigger must agree on the ref, as slsa-verifier requires.

``--source-branch`` / ``--source-tag``: the source ref must be ``refs/heads/<branch>``
/ ``refs/tags/<tag>``.

These checks read signed content, so they only mean something after the
envelope signature and the signer's identity were verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from attest.attestations.predicates import SLSA_PROVENANCE_V1
from attest.attestations.provenance import (
    GENERIC_BUILD_TYPE,
    GITHUB_BUILD_TYPE,
    GITLAB_BUILD_TYPE,
    split_source_uri,
    validate_provenance_predicate,
)
from attest.attestations.statement import Statement
from attest.errors import AttestationError, UsageError


@dataclass(frozen=True)
class SlsaExpectations:
    """What the user expects the provenance to say (``None`` = not checked)."""

    builder_id: str | None = None
    source_uri: str | None = None
    source_tag: str | None = None
    source_branch: str | None = None

    def __post_init__(self) -> None:
        if self.source_tag and self.source_branch:
            raise UsageError("--source-tag and --source-branch are mutually exclusive")
        if self.source_uri:
            split_source_uri(self.source_uri)  # a malformed expectation is a usage error

    @property
    def any(self) -> bool:
        return any((self.builder_id, self.source_uri, self.source_tag, self.source_branch))


@dataclass(frozen=True)
class ProvenanceFacts:
    """The facts of a SLSA v1 predicate that the checks compare."""

    builder_id: str
    build_type: str
    source_uri: str | None
    source_ref: str | None
    trigger_uri: str | None
    trigger_ref: str | None
    source_digest: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def provenance_facts(statement: Statement) -> ProvenanceFacts:
    """Extract builder, build type, source and trigger from a SLSA v1 Statement."""
    if statement.predicate_type != SLSA_PROVENANCE_V1:
        raise AttestationError(
            f"predicate type {statement.predicate_type!r} is not SLSA provenance v1 "
            f"({SLSA_PROVENANCE_V1})"
        )
    predicate = statement.predicate
    validate_provenance_predicate(predicate, strict=False)
    definition = predicate["buildDefinition"]
    source_uri = source_ref = None
    source_digest: dict[str, str] = {}
    for dependency in definition.get("resolvedDependencies", []):
        uri = dependency.get("uri") if isinstance(dependency, dict) else None
        if isinstance(uri, str) and uri.startswith("git+"):
            source_uri, source_ref = split_source_uri(uri)
            digest = dependency.get("digest")
            source_digest = dict(digest) if isinstance(digest, dict) else {}
            break
    trigger_uri, trigger_ref = _trigger(definition.get("buildType"), definition)
    return ProvenanceFacts(
        builder_id=predicate["runDetails"]["builder"]["id"],
        build_type=definition["buildType"],
        source_uri=source_uri,
        source_ref=source_ref,
        trigger_uri=trigger_uri,
        trigger_ref=trigger_ref,
        source_digest=source_digest,
    )


def _trigger(build_type: str, definition: dict[str, Any]) -> tuple[str | None, str | None]:
    external = definition.get("externalParameters") or {}
    if build_type == GITHUB_BUILD_TYPE:
        block, uri_key = external.get("workflow"), "repository"
    elif build_type == GITLAB_BUILD_TYPE:
        block, uri_key = external.get("source"), "repository"
    elif build_type == GENERIC_BUILD_TYPE and "source" in external:
        block, uri_key = external.get("source"), "uri"
    else:
        return None, None
    if not isinstance(block, dict) or not isinstance(block.get(uri_key), str):
        raise AttestationError(
            f"provenance of build type {build_type} lacks externalParameters trigger {uri_key!r}"
        )
    uri, _ = split_source_uri(block[uri_key])
    ref = block.get("ref")
    return uri, ref if isinstance(ref, str) and ref else None


def builder_id_matches(actual: str, expected: str) -> bool:
    """slsa-verifier's loose match: names equal; versions equal when ``expected`` has one."""
    actual_name, _, actual_version = actual.partition("@")
    expected_name, has_version, expected_version = expected.partition("@")
    if actual_name != expected_name:
        return False
    return not has_version or actual_version == expected_version


def check_provenance(statement: Statement, expected: SlsaExpectations) -> list[str]:
    """Every way the provenance differs from ``expected`` (empty when it passes)."""
    try:
        facts = provenance_facts(statement)
    except AttestationError as err:
        return [str(err)]
    problems: list[str] = []
    if expected.builder_id and not builder_id_matches(facts.builder_id, expected.builder_id):
        problems.append(
            f"builder id {facts.builder_id!r} does not match the expected {expected.builder_id!r}"
        )
    if expected.source_uri:
        problems.extend(_check_source(facts, expected.source_uri))
    ref = facts.source_ref or facts.trigger_ref
    if expected.source_branch:
        problems.extend(_check_ref(ref, "refs/heads/", expected.source_branch, "branch"))
    if expected.source_tag:
        problems.extend(_check_ref(ref, "refs/tags/", expected.source_tag, "tag"))
    return problems


def _check_source(facts: ProvenanceFacts, expected_text: str) -> list[str]:
    expected_uri, expected_ref = split_source_uri(expected_text)
    problems = []
    if facts.source_uri is None:
        return ["provenance records no git source in resolvedDependencies"]
    if facts.source_uri != expected_uri:
        problems.append(f"source {facts.source_uri!r} does not match the expected {expected_uri!r}")
    if facts.trigger_uri is not None and facts.trigger_uri != expected_uri:
        problems.append(
            f"build trigger {facts.trigger_uri!r} does not match the expected {expected_uri!r}"
        )
    if facts.source_ref is None:
        problems.append(f"source {facts.source_uri!r} has no ref")
    elif facts.trigger_ref is not None and facts.trigger_ref != facts.source_ref:
        problems.append(
            f"source ref {facts.source_ref!r} and trigger ref {facts.trigger_ref!r} disagree"
        )
    if expected_ref and facts.source_ref != expected_ref:
        problems.append(
            f"source ref {facts.source_ref!r} does not match the expected {expected_ref!r}"
        )
    return problems


def _check_ref(ref: str | None, prefix: str, expected: str, kind: str) -> list[str]:
    if ref is None:
        return [f"provenance records no source ref, expected {kind} {expected!r}"]
    if not ref.startswith(prefix):
        return [f"source ref {ref!r} is not a {kind} (expected {prefix}{expected})"]
    if ref[len(prefix) :] != expected:
        return [f"source {kind} {ref[len(prefix) :]!r} does not match the expected {expected!r}"]
    return []
