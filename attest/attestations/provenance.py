"""SLSA Provenance v1 predicates, filled from the CI system the command runs in.

Three sources of facts, in this order:

* **GitHub Actions** (``GITHUB_ACTIONS=true``): the predicate has the shape GitHub's
  own ``actions/attest-build-provenance`` writes (build type
  ``https://actions.github.io/buildtypes/workflow/v1``), so slsa-verifier and
  ``gh attestation verify`` read ours like theirs.  The builder id is the
  workflow at its ref (``https://github.com/OWNER/REPO/.github/workflows/X.yml@refs/heads/main``,
  from ``GITHUB_WORKFLOW_REF``) — the same string as the keyless certificate's
  identity for a non-reusable workflow; the source is ``git+<server>/<repo>@<ref>``
  with the commit from ``GITHUB_SHA``.
* **GitLab CI** (``GITLAB_CI=true``): builder id
  ``<server>/<project>//<ci config path>@<ref>``, which is how Fulcio names a
  GitLab pipeline identity; source from ``CI_PROJECT_URL``, ref and ``CI_COMMIT_SHA``.
* **Generic flags** (``--builder-id``, ``--source-uri``, ``--source-digest``,
  ``--build-type``, ``--invocation-id``) anywhere else.  Flags also override
  detected values (e.g. ``--builder-id`` for a reusable workflow).

Every required variable must be present: provenance with silently missing
facts would be worse than none, so a missing one is an error naming it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import resource_descriptor_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor

from attest.attestations.predicates import SLSA_PROVENANCE_V1
from attest.attestations.statement import Statement, build_statement, subject_for_image
from attest.errors import AttestationError, UsageError

GITHUB_BUILD_TYPE = "https://actions.github.io/buildtypes/workflow/v1"
GITLAB_BUILD_TYPE = "https://attest.dev/buildtypes/gitlab-ci/v1"
GENERIC_BUILD_TYPE = "https://attest.dev/buildtypes/generic/v1"

_GIT_COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?\Z")
_DIGEST_VALUE = re.compile(r"[0-9a-fA-F]{32,128}\Z")


@dataclass(frozen=True)
class ProvenanceOptions:
    """Command-line facts; each one, when set, wins over what the CI environment says."""

    builder_id: str | None = None
    source_uri: str | None = None
    source_digest: str | None = None
    build_type: str | None = None
    invocation_id: str | None = None
    started_on: dt.datetime | None = None
    finished_on: dt.datetime | None = None


CiSystem = Literal["github-actions", "gitlab-ci", "generic"]
"""The CI system a build ran in, as the provenance records it."""


@dataclass(frozen=True)
class BuildContext:
    """What the provenance says about a build: builder, build type, source and invocation."""

    system: CiSystem
    builder_id: str
    build_type: str
    source_uri: str | None = None  # git+https://host/owner/repo (no ref)
    source_ref: str | None = None  # refs/heads/main, refs/tags/v1
    source_digest: dict[str, str] = field(default_factory=dict)  # {"gitCommit": "<sha>"}
    invocation_id: str | None = None
    external_parameters: dict[str, Any] = field(default_factory=dict)
    internal_parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def source_dependency(self) -> dict[str, Any] | None:
        """The resolvedDependencies entry of the source (``git+…@ref`` + commit)."""
        if not self.source_uri:
            return None
        entry: dict[str, Any] = {
            "uri": f"{self.source_uri}@{self.source_ref}" if self.source_ref else self.source_uri
        }
        if self.source_digest:
            entry["digest"] = dict(self.source_digest)
        return entry


def detect_build_context(
    env: Mapping[str, str], options: ProvenanceOptions | None = None
) -> BuildContext:
    """The build context from ``env`` (GitHub Actions, GitLab CI, else generic) plus ``options``."""
    options = options or ProvenanceOptions()
    if env.get("GITHUB_ACTIONS") == "true":
        context = _github_context(env)
    elif env.get("GITLAB_CI") == "true":
        context = _gitlab_context(env)
    else:
        context = _generic_context(options)
    return _apply_overrides(context, options)


def _require(env: Mapping[str, str], name: str, system: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise UsageError(
            f"{system} detected but ${name} is not set: cannot record provenance without it "
            "(set it, or pass the matching --builder-id/--source-* flag)"
        )
    return value


def _github_context(env: Mapping[str, str]) -> BuildContext:
    system = "GitHub Actions"
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    repository = _require(env, "GITHUB_REPOSITORY", system)
    sha = _require(env, "GITHUB_SHA", system)
    ref = _require(env, "GITHUB_REF", system)
    workflow_ref = _require(env, "GITHUB_WORKFLOW_REF", system)
    run_id = _require(env, "GITHUB_RUN_ID", system)
    attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
    workflow_path, _, workflow_at = workflow_ref.removeprefix(f"{repository}/").partition("@")
    return BuildContext(
        system="github-actions",
        builder_id=f"{server}/{workflow_ref}",
        build_type=GITHUB_BUILD_TYPE,
        source_uri=f"git+{server}/{repository}",
        source_ref=ref,
        source_digest={"gitCommit": sha},
        invocation_id=f"{server}/{repository}/actions/runs/{run_id}/attempts/{attempt}",
        external_parameters={
            "workflow": {
                "ref": workflow_at or ref,
                "repository": f"{server}/{repository}",
                "path": workflow_path,
            }
        },
        internal_parameters={
            "github": {
                key: env[var]
                for key, var in (
                    ("event_name", "GITHUB_EVENT_NAME"),
                    ("repository_id", "GITHUB_REPOSITORY_ID"),
                    ("repository_owner_id", "GITHUB_REPOSITORY_OWNER_ID"),
                    ("runner_environment", "RUNNER_ENVIRONMENT"),
                )
                if env.get(var)
            }
        },
    )


def _gitlab_context(env: Mapping[str, str]) -> BuildContext:
    system = "GitLab CI"
    server = _require(env, "CI_SERVER_URL", system).rstrip("/")
    project_path = _require(env, "CI_PROJECT_PATH", system)
    project_url = env.get("CI_PROJECT_URL", f"{server}/{project_path}").rstrip("/")
    sha = _require(env, "CI_COMMIT_SHA", system)
    config_path = env.get("CI_CONFIG_PATH") or ".gitlab-ci.yml"
    if env.get("CI_COMMIT_TAG"):
        ref = f"refs/tags/{env['CI_COMMIT_TAG']}"
    elif env.get("CI_MERGE_REQUEST_REF_PATH"):
        ref = env["CI_MERGE_REQUEST_REF_PATH"]
    else:
        ref = f"refs/heads/{env.get('CI_COMMIT_BRANCH') or _require(env, 'CI_COMMIT_REF_NAME', system)}"
    job_url = _require(env, "CI_JOB_URL", system)
    return BuildContext(
        system="gitlab-ci",
        builder_id=f"{server}/{project_path}//{config_path}@{ref}",
        build_type=GITLAB_BUILD_TYPE,
        source_uri=f"git+{project_url}",
        source_ref=ref,
        source_digest={"gitCommit": sha},
        invocation_id=job_url,
        external_parameters={
            "source": {"repository": project_url, "ref": ref},
            "pipeline": {
                "configPath": config_path,
                "source": env.get("CI_PIPELINE_SOURCE", ""),
                "job": env.get("CI_JOB_NAME", ""),
            },
        },
        internal_parameters={
            "gitlab": {
                key: env[var]
                for key, var in (
                    ("project_id", "CI_PROJECT_ID"),
                    ("pipeline_id", "CI_PIPELINE_ID"),
                    ("job_id", "CI_JOB_ID"),
                    ("runner_id", "CI_RUNNER_ID"),
                    ("server_url", "CI_SERVER_URL"),
                )
                if env.get(var)
            }
        },
    )


def _generic_context(options: ProvenanceOptions) -> BuildContext:
    if not options.builder_id:
        raise UsageError(
            "no CI system detected (neither GitHub Actions nor GitLab CI): "
            "--builder-id is required to record who built the image"
        )
    return BuildContext(
        system="generic",
        builder_id=options.builder_id,
        build_type=options.build_type or GENERIC_BUILD_TYPE,
    )


def _apply_overrides(context: BuildContext, options: ProvenanceOptions) -> BuildContext:
    changes: dict[str, Any] = {}
    if options.builder_id:
        changes["builder_id"] = _check_uri(options.builder_id, "--builder-id")
    if options.build_type:
        changes["build_type"] = _check_uri(options.build_type, "--build-type")
    if options.invocation_id:
        changes["invocation_id"] = options.invocation_id
    if options.source_uri:
        uri, ref = split_source_uri(options.source_uri)
        changes["source_uri"] = uri
        changes["source_ref"] = ref or (context.source_ref if context.source_uri else None)
    if options.source_digest:
        changes["source_digest"] = parse_source_digest(options.source_digest)
    if options.source_digest and not (options.source_uri or context.source_uri):
        raise UsageError("--source-digest needs --source-uri (which repository is it a commit of?)")
    merged = BuildContext(**{**context.__dict__, **changes})
    if context.system == "generic" and merged.source_uri:
        source: dict[str, Any] = {"uri": merged.source_uri}
        if merged.source_ref:
            source["ref"] = merged.source_ref
        merged = BuildContext(**{**merged.__dict__, "external_parameters": {"source": source}})
    return merged


def _check_uri(value: str, flag: str) -> str:
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:\S+\Z", value):
        raise UsageError(f"{flag} {value!r} must be a URI (e.g. https://ci.example.com/builder)")
    return value


def split_source_uri(text: str) -> tuple[str, str | None]:
    """Normalise a source URI to ``git+<scheme>://host/path`` and split off an ``@ref``.

    Accepts ``github.com/o/r``, ``https://github.com/o/r``, ``git+https://…@refs/heads/main``.
    """
    value = text.strip()
    if not value:
        raise UsageError("--source-uri is empty")
    if not value.startswith("git+"):
        value = "git+" + (value if "://" in value else f"https://{value}")
    scheme, sep, rest = value.partition("://")
    if not sep or not rest or "/" not in rest:
        raise UsageError(f"source URI {text!r} is not of the form [git+]https://host/path[@ref]")
    authority, _, path = rest.partition("/")
    path, at, ref = path.partition("@")
    uri = f"{scheme}://{authority}/{path}".rstrip("/")
    if uri.endswith(".git"):
        uri = uri[: -len(".git")]
    if at and not ref:
        raise UsageError(f"source URI {text!r} has an empty ref after '@'")
    return uri, ref or None


def parse_source_digest(text: str) -> dict[str, str]:
    """``gitCommit:<sha>``, ``sha1:<hex>``, ``sha256:<hex>`` or a bare 40-hex commit."""
    value = text.strip()
    if _GIT_COMMIT.match(value):
        return {"gitCommit": value}
    algorithm, sep, hex_value = value.partition(":")
    if not sep or not algorithm or not _DIGEST_VALUE.match(hex_value):
        raise UsageError(
            f"--source-digest {text!r} must be a commit SHA or ALGORITHM:HEX (e.g. gitCommit:<sha>)"
        )
    return {algorithm: hex_value.lower()}


def rfc3339(moment: dt.datetime) -> str:
    """UTC, second precision, ``Z`` suffix: what SLSA timestamps look like."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def provenance_predicate(
    context: BuildContext, *, started_on: dt.datetime, finished_on: dt.datetime
) -> dict[str, Any]:
    """The SLSA Provenance v1 predicate for ``context``."""
    build_definition: dict[str, Any] = {
        "buildType": context.build_type,
        "externalParameters": context.external_parameters,
    }
    if context.internal_parameters:
        build_definition["internalParameters"] = context.internal_parameters
    dependency = context.source_dependency
    if dependency:
        build_definition["resolvedDependencies"] = [dependency]
    metadata: dict[str, Any] = {}
    if context.invocation_id:
        metadata["invocationId"] = context.invocation_id
    metadata["startedOn"] = rfc3339(started_on)
    metadata["finishedOn"] = rfc3339(finished_on)
    predicate = {
        "buildDefinition": build_definition,
        "runDetails": {"builder": {"id": context.builder_id}, "metadata": metadata},
    }
    validate_provenance_predicate(predicate)
    return predicate


def provenance_statement(
    image_name: str,
    digest: str,
    context: BuildContext,
    *,
    started_on: dt.datetime,
    finished_on: dt.datetime | None = None,
) -> Statement:
    """A v1 Statement about the image ``image_name@digest`` with a SLSA v1 predicate."""
    finished = finished_on or dt.datetime.now(dt.UTC)
    if started_on > finished:
        raise UsageError(
            f"build start {rfc3339(started_on)} is after its finish {rfc3339(finished)}"
        )
    predicate = provenance_predicate(context, started_on=started_on, finished_on=finished)
    return build_statement([subject_for_image(image_name, digest)], SLSA_PROVENANCE_V1, predicate)


def validate_provenance_predicate(predicate: Mapping[str, Any], *, strict: bool = True) -> None:
    """Check the SLSA v1 required fields and types, then parse with in-toto's Provenance model.

    ``strict`` rejects fields the v1 schema does not define (for what we write); readers
    pass ``strict=False`` since the spec tells consumers to ignore unknown fields.
    """
    what = "SLSA v1 provenance"
    definition = _object(predicate, "buildDefinition", what, required=True)
    build_type = definition.get("buildType")
    if not isinstance(build_type, str) or not build_type:
        raise AttestationError(f"{what}: buildDefinition.buildType is required (a URI)")
    _object(definition, "externalParameters", f"{what} buildDefinition", required=True)
    _object(definition, "internalParameters", f"{what} buildDefinition", required=False)
    dependencies = definition.get("resolvedDependencies", [])
    if not isinstance(dependencies, list):
        raise AttestationError(f"{what}: buildDefinition.resolvedDependencies must be a list")
    run = _object(predicate, "runDetails", what, required=True)
    builder = _object(run, "builder", f"{what} runDetails", required=True)
    if not isinstance(builder.get("id"), str) or not builder["id"]:
        raise AttestationError(f"{what}: runDetails.builder.id is required (a URI)")
    metadata = _object(run, "metadata", f"{what} runDetails", required=False)
    if "invocationId" in metadata and not isinstance(metadata["invocationId"], str):
        raise AttestationError(f"{what}: runDetails.metadata.invocationId must be a string")
    try:
        message = json_format.ParseDict(
            dict(predicate), provenance_pb2.Provenance(), ignore_unknown_fields=not strict
        )
    except json_format.ParseError as err:
        raise AttestationError(f"{what} does not match the v1 schema: {err}") from None
    for i, dependency in enumerate(message.build_definition.resolved_dependencies):
        _validate_descriptor(dependency, f"{what}: resolvedDependencies[{i}]")
    for i, dependency in enumerate(message.run_details.builder.builder_dependencies):
        _validate_descriptor(dependency, f"{what}: builder.builderDependencies[{i}]")
    started, finished = (
        message.run_details.metadata.started_on,
        message.run_details.metadata.finished_on,
    )
    if (
        "startedOn" in metadata
        and "finishedOn" in metadata
        and started.ToNanoseconds() > finished.ToNanoseconds()
    ):
        raise AttestationError(f"{what}: startedOn is after finishedOn")


def _validate_descriptor(descriptor: resource_descriptor_pb2.ResourceDescriptor, what: str) -> None:
    try:
        ResourceDescriptor.copy_from_pb(descriptor).validate()
    except ValueError as err:
        raise AttestationError(f"{what}: {err}") from None


def _object(parent: Mapping[str, Any], key: str, what: str, *, required: bool) -> Mapping[str, Any]:
    value = parent.get(key)
    if value is None:
        if required:
            raise AttestationError(f"{what}: {key} is required")
        return {}
    if not isinstance(value, dict):
        raise AttestationError(f"{what}: {key} must be a JSON object")
    return value
