"""Hypothesis strategies for policy inputs, built the way attest builds them.

* :func:`admission_inputs`: the admission input document, made by
  ``admission.policy_input.build_input`` from generated requests, image policies
  and verification results (with real SLSA provenance Statements, so the flat
  ``provenance`` facts come from attest's own parser);
* :func:`statements`: in-toto Statements with SLSA v1 predicates, the input of
  ``attest verify-attestation --policy`` (``Statement.to_dict()``);
* :func:`documents_for`: documents that set the ``input.<path>`` references a
  policy reads to arbitrary JSON, for policies written against other shapes.

Strings come from small pools that mix realistic values with what tends to
split engines: dots and slashes around glob patterns, ``%`` and quotes in
``sprintf`` arguments, non-ASCII text, empty strings.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from hypothesis import strategies as st

from admission.config import ImagePolicy, NamespaceFilter
from admission.policy_input import ImageCheck, build_input
from admission.review import AdmissionRequest, GroupVersionKind
from admission.verdict import OUTCOMES
from admission.workloads import ContainerImage
from attest.attestations.predicates import (
    COSIGN_VULN,
    CYCLONEDX_BOM,
    SLSA_PROVENANCE_V02,
    SLSA_PROVENANCE_V1,
    SPDX_DOCUMENT,
)
from attest.attestations.provenance import GENERIC_BUILD_TYPE, BuildContext, provenance_statement
from attest.oci.reference import parse_image_reference
from attest.signing.authority import KeyAuthority, VerificationPolicy
from attest.signing.result import CheckResult, SignerIdentity
from attest.verify import ImageVerification

HEX = "0c3a2b1f" * 8
PREDICATE_TYPES = (
    SLSA_PROVENANCE_V1,
    SLSA_PROVENANCE_V02,
    CYCLONEDX_BOM,
    SPDX_DOCUMENT,
    COSIGN_VULN,
    "https://example.com/custom/v1",
)
AUTHORITIES = ("release", "ci", "team-key")
NAMES = ("apps", "shop", "p.q", "ünï", 'q"uote', "100%")

texts = st.sampled_from(("", "a", "a.b", "x/y", "%s", "%d", '"', "\\", "ü", "✓", " ", "*"))
builders = st.sampled_from(
    (
        "https://ci.example.com/builder",
        "https://ci.example.com/x@v2",
        "https://ci.example.com/a.b/c",
        "https://github.com/actions/runner/github-hosted",
        "https://evil.example/builder",
        "https://ci.example.com",
    )
)
sources = st.sampled_from(
    (
        "git+https://github.com/acme/app",
        "git+https://github.com/acme/my.app",
        "git+https://github.com/acme/app/sub",
        "git+https://github.com/evil/app",
        "git+https://gitlab.example/acme/app",
        "git+https://github.com/acme/",
    )
)
patterns = st.sampled_from(
    (
        "https://ci.example.com/builder",
        "https://ci.example.com/*",
        "https://ci.example.com/**",
        "https://github.com/actions/runner/*",
        "github.com/acme/*",
        "github.com/acme/**",
        "github.com/*/app",
        "github.com/acme/app",
        "github.com/acme/?pp",
        "github.com/acme/[ab]pp",
        "github.com/acme/{app,web}",
        "github.com/acme/[!x]pp",
        "*",
        "**",
        "",
        "github.com\\/acme/*",
    )
)
references = st.sampled_from(
    (
        "registry.example.com/app:v1",
        "registry.example.com/shop/web:1.4",
        f"registry.example.com/app@sha256:{HEX}",
        "nginx",
        "127.0.0.1:5000/admission-e2e/good:v1",
        "ghcr.io/acme/app:v1.2.3-rc.1",
    )
)


def _parameters() -> st.SearchStrategy[dict[str, Any]]:
    flag = st.sampled_from((True, False, None, "no", 0, [], {}))
    return st.fixed_dictionaries(
        {},
        optional={
            "allowedBuilders": st.lists(patterns, max_size=3),
            "allowedSources": st.lists(patterns, max_size=3),
            "requireProvenance": flag,
            "extra": st.one_of(texts, st.integers(-3, 3)),
        },
    )


@st.composite
def image_policies(draw: st.DrawFn) -> ImagePolicy:
    names = draw(st.lists(st.sampled_from(AUTHORITIES), min_size=1, max_size=3, unique=True))
    authorities = tuple(KeyAuthority(name, b"not a key") for name in names)
    return ImagePolicy(
        name=draw(st.sampled_from(NAMES)),
        images=("**",),
        verification=VerificationPolicy(
            authorities, threshold=draw(st.integers(1, len(authorities)))
        ),
        mode=draw(st.sampled_from(("enforce", "warn"))),
        namespaces=NamespaceFilter(),
        attestations=tuple(draw(st.lists(st.sampled_from(PREDICATE_TYPES), max_size=2))),
        parameters=draw(_parameters()),
    )


@st.composite
def _statement_for(draw: st.DrawFn, predicate_type: str, name: str) -> dict[str, Any]:
    if predicate_type == SLSA_PROVENANCE_V1:
        context = BuildContext(
            system="generic",
            builder_id=draw(builders),
            build_type=GENERIC_BUILD_TYPE,
            source_uri=draw(sources),
            source_ref=draw(st.sampled_from(("refs/heads/main", "refs/tags/v1", None))),
            source_digest={"gitCommit": "a" * 40},
        )
        started = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)
        statement = provenance_statement(
            name,
            f"sha256:{HEX}",
            context,
            started_on=started,
            finished_on=started + dt.timedelta(minutes=1),
        )
        return json.loads(statement.raw)
    if predicate_type == SLSA_PROVENANCE_V02:
        return {
            "_type": "https://in-toto.io/Statement/v0.1",
            "subject": [{"name": name, "digest": {"sha256": HEX}}],
            "predicateType": predicate_type,
            "predicate": {
                "builder": {"id": draw(st.one_of(builders, texts))},
                "buildType": draw(texts),
                "invocation": {
                    "configSource": {
                        "uri": draw(sources) + draw(st.sampled_from(("", "@refs/heads/main"))),
                        "digest": {"sha1": "b" * 40},
                    }
                },
            },
        }
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": HEX}}],
        "predicateType": predicate_type,
        "predicate": {"note": draw(texts)},
    }


@st.composite
def check_results(draw: st.DrawFn, kind: str, name: str) -> CheckResult:
    verified = draw(st.booleans())
    predicate_type = draw(st.sampled_from(PREDICATE_TYPES)) if kind == "attestation" else None
    signer = draw(
        st.sampled_from(
            (
                SignerIdentity.key("k"),
                SignerIdentity.keyless(
                    "https://github.com/acme/app/.github/x.yml@main",
                    "https://token.actions.githubusercontent.com",
                ),
            )
        )
    )
    return CheckResult(
        kind=kind,
        storage=draw(st.sampled_from(("bundle", "legacy"))),
        location=f"{name}@sha256:{HEX}",
        verified=verified,
        reasons=() if verified else tuple(draw(st.lists(texts, max_size=2))),
        authority=draw(st.sampled_from(AUTHORITIES)) if verified else None,
        signer=signer,
        predicate_type=predicate_type,
        statement=draw(_statement_for(predicate_type, name)) if predicate_type else None,
        annotations=draw(st.sampled_from(({}, {"env": "prod"}))),
        tlog=draw(st.sampled_from((None, {"logIndex": 1234, "integratedTime": 1772359100}))),
    )


@st.composite
def image_checks(draw: st.DrawFn) -> ImageCheck:
    reference = draw(references)
    parsed = parse_image_reference(reference)
    containers = [
        ContainerImage(reference, draw(st.sampled_from(("c0", "app", "ü"))), kind, "spec")
        for kind in draw(
            st.lists(
                st.sampled_from(("container", "initContainer", "ephemeralContainer")),
                min_size=1,
                max_size=2,
            )
        )
    ]
    policy = draw(st.one_of(st.none(), image_policies()))
    verification = None
    if draw(st.booleans()):
        signatures = tuple(draw(st.lists(check_results("signature", parsed.name), max_size=2)))
        attestations = tuple(draw(st.lists(check_results("attestation", parsed.name), max_size=3)))
        satisfied = tuple(sorted({s.authority for s in signatures if s.authority}))
        verification = ImageVerification(
            reference=reference,
            digest=f"sha256:{HEX}",
            signatures=signatures,
            attestations=attestations,
            satisfied_authorities=satisfied,
            verified=draw(st.booleans()) if satisfied else False,
            errors=tuple(draw(st.lists(texts, max_size=1))),
        )
    return ImageCheck(
        reference=reference,
        containers=containers,
        parsed=parsed,
        digest=draw(st.sampled_from((None, f"sha256:{HEX}"))),
        policy=policy,
        outcome=draw(st.sampled_from(OUTCOMES)),
        error=draw(st.one_of(st.none(), texts)),
        verification=verification,
        cached=draw(st.booleans()),
        unchanged=draw(st.booleans()),
    )


@st.composite
def admission_inputs(draw: st.DrawFn) -> dict[str, Any]:
    """One admission input document (``build_input``), with zero to four images."""
    kind = draw(
        st.sampled_from(
            (
                GroupVersionKind("apps", "v1", "Deployment"),
                GroupVersionKind("", "v1", "Pod"),
                GroupVersionKind("batch", "v1", "CronJob"),
            )
        )
    )
    request = AdmissionRequest(
        uid="uid-1",
        kind=kind,
        operation=draw(st.sampled_from(("CREATE", "UPDATE"))),
        namespace=draw(st.sampled_from(("apps", "shop", ""))),
        name=draw(st.sampled_from(("web", "ü", ""))),
        resource="pods",
        sub_resource=draw(st.sampled_from(("", "ephemeralcontainers"))),
        username="alice@example.com",
        groups=("dev", "system:authenticated"),
        dry_run=draw(st.booleans()),
        metadata={"labels": draw(st.sampled_from(({}, {"app": "web"}, {"a.b/c": "ü"})))},
    )
    now = dt.datetime(2026, 3, 1, 10, 0, 0, draw(st.integers(0, 999_999)), tzinfo=dt.UTC)
    checks = draw(st.lists(image_checks(), max_size=4))
    return build_input(request, checks, now, statements=draw(st.booleans()))


@st.composite
def statements(draw: st.DrawFn, template: dict[str, Any]) -> dict[str, Any]:
    """``template`` (a SLSA v1 Statement) with builder, event and runner varied or removed."""
    statement = json.loads(json.dumps(template))
    predicate = statement["predicate"]
    github = predicate["buildDefinition"]["internalParameters"]["github"]
    for key, pool in (
        ("event_name", ("push", "workflow_dispatch", "pull_request", "")),
        ("runner_environment", ("github-hosted", "self-hosted", "")),
    ):
        choice = draw(st.sampled_from((None, *pool)))
        if choice is None:
            github.pop(key, None)
        else:
            github[key] = choice
    builder = draw(
        st.sampled_from(
            (
                predicate["runDetails"]["builder"]["id"],
                "https://github.com/loosebazooka/other/release.yml@refs/heads/main",
                "https://github.com/evil/x/.github/workflows/release.yml@refs/heads/main",
                "https://github.com/loosebazooka/",
                "",
            )
        )
    )
    predicate["runDetails"]["builder"]["id"] = builder
    return statement


_INPUT_PATH = re.compile(r"\binput((?:\.[A-Za-z_]\w*)+)")
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53), 2**53),
        st.floats(allow_nan=False, allow_infinity=False, width=32),
        texts,
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)


def input_paths(text: str) -> list[tuple[str, ...]]:
    """The ``input.a.b`` paths a policy reads, as key tuples."""
    return sorted({tuple(m.group(1).split(".")[1:]) for m in _INPUT_PATH.finditer(text)})


@st.composite
def documents_for(draw: st.DrawFn, paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """A document with each of ``paths`` either absent or set to an arbitrary JSON value."""
    document: dict[str, Any] = {}
    for path in paths:
        if not draw(st.booleans()):
            continue
        node = document
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[path[-1]] = draw(json_values)
    return document
