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

:func:`predicate_facts` is the one reading of a SLSA provenance predicate (v1 or
v0.2): it checks the predicate's shape and gives its facts, or says why it is
not provenance.  ``attest attest`` runs it before signing and the admission
webhook on every trusted provenance attestation, so what one writes the other
reads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attest.attestations.predicates import SLSA_PROVENANCE_V02, SLSA_PROVENANCE_V1
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
    started_on: str | None = None  # when the build ran, as the provenance says (RFC 3339)
    finished_on: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


SLSA_PROVENANCE_TYPES = (SLSA_PROVENANCE_V1, SLSA_PROVENANCE_V02)


def provenance_facts(statement: Statement) -> ProvenanceFacts:
    """Extract builder, build type, source and trigger from a SLSA v1 Statement."""
    if statement.predicate_type != SLSA_PROVENANCE_V1:
        raise AttestationError(
            f"predicate type {statement.predicate_type!r} is not SLSA provenance v1 "
            f"({SLSA_PROVENANCE_V1})"
        )
    return predicate_facts(SLSA_PROVENANCE_V1, statement.predicate)


def predicate_facts(predicate_type: str, predicate: Any) -> ProvenanceFacts:
    """The facts of a SLSA provenance predicate (v1 or v0.2) once its shape is checked.

    Raises :class:`AttestationError` saying why ``predicate`` is not valid provenance
    of that version (unknown fields are allowed, as the spec tells consumers).
    """
    if not isinstance(predicate, Mapping):
        raise AttestationError(
            f"SLSA provenance predicate must be a JSON object, not {type(predicate).__name__}"
        )
    try:
        if predicate_type == SLSA_PROVENANCE_V1:
            return _v1_facts(predicate)
        if predicate_type == SLSA_PROVENANCE_V02:
            return _v02_facts(predicate)
    except UsageError as err:  # split_source_uri's message, about signed content here
        raise AttestationError(f"SLSA provenance: {err}") from None
    raise AttestationError(f"predicate type {predicate_type!r} is not SLSA provenance")


def _v1_facts(predicate: Mapping[str, Any]) -> ProvenanceFacts:
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
    metadata = predicate["runDetails"].get("metadata") or {}
    return ProvenanceFacts(
        builder_id=predicate["runDetails"]["builder"]["id"],
        build_type=definition["buildType"],
        source_uri=source_uri,
        source_ref=source_ref,
        trigger_uri=trigger_uri,
        trigger_ref=trigger_ref,
        source_digest=source_digest,
        started_on=metadata.get("startedOn"),
        finished_on=metadata.get("finishedOn"),
    )


_V02 = "SLSA v0.2 provenance"


def _v02_facts(predicate: Mapping[str, Any]) -> ProvenanceFacts:
    """Check a v0.2 predicate against the field types of its spec; give its facts."""
    builder = _field(predicate, "builder", dict, required=True)
    if not isinstance(builder.get("id"), str) or not builder["id"]:
        raise AttestationError(f"{_V02}: builder.id is required (a URI)")
    build_type = _field(predicate, "buildType", str, required=True)
    if not build_type:
        raise AttestationError(f"{_V02}: buildType is required (a URI)")
    invocation = _field(predicate, "invocation", dict) or {}
    source = _field(invocation, "configSource", dict, "invocation.") or {}
    uri = _field(source, "uri", str, "invocation.configSource.")
    digest = _digest_set(source.get("digest"), "invocation.configSource.digest")
    _field(source, "entryPoint", str, "invocation.configSource.")
    metadata = _field(predicate, "metadata", dict) or {}
    _field(metadata, "buildInvocationId", str, "metadata.")
    for key in ("buildStartedOn", "buildFinishedOn"):
        moment = _field(metadata, key, str, "metadata.")
        if moment is not None:
            try:
                dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
            except ValueError:
                raise AttestationError(f"{_V02}: metadata.{key} is not a timestamp") from None
    completeness = _field(metadata, "completeness", dict, "metadata.") or {}
    for key in ("parameters", "environment", "materials"):
        _field(completeness, key, bool, "metadata.completeness.")
    _field(metadata, "reproducible", bool, "metadata.")
    materials = _field(predicate, "materials", list) or []
    for i, material in enumerate(materials):
        if not isinstance(material, dict):
            raise AttestationError(f"{_V02}: materials[{i}] must be a JSON object")
        _field(material, "uri", str, f"materials[{i}].")
        _digest_set(material.get("digest"), f"materials[{i}].digest")
    source_uri, source_ref = uri, None
    if uri:
        try:
            source_uri, source_ref = split_source_uri(uri)
        except UsageError:  # not a git source (a config file URL…): given as written
            source_uri = uri
    return ProvenanceFacts(
        builder_id=builder["id"],
        build_type=build_type,
        source_uri=source_uri or None,
        source_ref=source_ref,
        trigger_uri=None,
        trigger_ref=None,
        source_digest=digest,
        started_on=metadata.get("buildStartedOn"),
        finished_on=metadata.get("buildFinishedOn"),
    )


def _field(
    parent: Mapping[str, Any], key: str, kind: type, prefix: str = "", *, required: bool = False
) -> Any:
    """``parent[key]`` if it has type ``kind``; absent (or null) is None unless required."""
    value = parent.get(key)
    if value is None:
        if required:
            raise AttestationError(f"{_V02}: {prefix}{key} is required")
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        names = {dict: "a JSON object", list: "a list", str: "a string", bool: "true or false"}
        raise AttestationError(f"{_V02}: {prefix}{key} must be {names[kind]}")
    return value


def _digest_set(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise AttestationError(f"{_V02}: {what} must map algorithm names to hex strings")
    return dict(value)


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
