"""Property-based tests over predicate and Statement shapes (issue 10, finding 3).

Each example signs a generated Statement with the trusted key (as raw DSSE bytes, so
shapes our own ``attest attest`` would refuse are produced too), stores it in the
real registry next to a fresh image, and asks the real decision flow (real
verification, the default Rego bundle).  Properties:

* no shape crashes ``decide()``: every answer is a well-formed decision, never an
  internal error;
* no shape turns a denial into an admission: an image whose own signature is missing,
  or which lacks the attestation type its policy requires (a type never generated),
  stays denied whatever else is attested about it.

A cheaper property covers the rules ``decisions replay`` applies to recorded (and
possibly tampered) input documents: no document shape crashes them, and an image
whose threshold is not ``true`` is always denied.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from admission.decide import Admission
from admission.review import parse_review
from admission.testing.helpers import deployment, key_policy, provenance_json, review, write_config
from admission.testing.world import REPO, World
from admission.verdict import RESULTS, image_outcome, judge
from attest.attestations.predicates import (
    CYCLONEDX_BOM,
    SLSA_PROVENANCE_V02,
    SLSA_PROVENANCE_V1,
    SPDX_DOCUMENT,
)
from attest.attestations.statement import IN_TOTO_PAYLOAD_TYPE
from attest.oci.access import resolve_image
from attest.oci.reference import parse_image_reference
from attest.policy import Finding
from attest.signing.bundle import make_bundle
from attest.signing.storage import attach_signature, push_bundle
from tests.admission.test_fail_closed import GOOD_V02

REQUIRED = "https://attest.dev/test/never-generated/v1"
EXAMPLES = int(os.environ.get("ATTEST_PROPERTY_EXAMPLES", "40"))  # more for a deeper search
TYPES = [SLSA_PROVENANCE_V1, SLSA_PROVENANCE_V02, CYCLONEDX_BOM, SPDX_DOCUMENT, "https://x.test/p"]
VALID_V1 = json.loads(provenance_json("r/app", "sha256:" + "0" * 64))["predicate"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with one to three fields replaced by any JSON value, or deleted."""
    document = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(document))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return document


predicates = st.one_of(json_values, mutated(VALID_V1), mutated(GOOD_V02))


@st.composite
def statements(draw: st.DrawFn) -> dict[str, Any]:
    """A Statement about the image (``subject`` filled in later) in any shape."""
    statement: dict[str, Any] = {
        "_type": draw(
            st.sampled_from(
                ["https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"]
            )
        ),
        "predicateType": draw(st.sampled_from(TYPES) | st.text(max_size=8)),
        "predicate": draw(predicates),
    }
    if draw(st.booleans()):
        statement.update(
            draw(
                st.dictionaries(
                    st.sampled_from(["x", "_type", "predicate"]), json_values, max_size=2
                )
            )
        )
    return statement


@pytest.fixture(scope="module")
def flows(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Admission]]:
    """Two real decision flows: one requiring a trusted signature, one also requiring an
    attestation type that is never generated."""
    directory = tmp_path_factory.mktemp("properties")
    glob = f"127.0.0.1:*/{REPO}/*"
    made = {
        "signature": Admission(
            str(write_config(directory / "a.yaml", [key_policy("sig", [glob], world.key_file)]))
        ),
        "required": Admission(
            str(
                write_config(
                    directory / "b.yaml",
                    [key_policy("req", [glob], world.key_file, attestations=[REQUIRED])],
                )
            )
        ),
    }
    yield made
    for admission in made.values():
        admission.close()


_counter = itertools.count()


def _attest_raw(world: World, name: str, reference: str, statement: dict[str, Any]) -> None:
    """Sign ``statement`` as it is (no validation on our side) and store it as a referrer."""
    store = world.store(name)
    image = resolve_image(store, parse_image_reference(reference))
    algorithm, hex_value = image.digest.split(":")
    document = {"subject": [{"name": image.name, "digest": {algorithm: hex_value}}], **statement}
    material = world.key.signer.sign_dsse(IN_TOTO_PAYLOAD_TYPE, json.dumps(document).encode())
    predicate_type = document.get("predicateType")
    push_bundle(
        store,
        image.descriptor,
        make_bundle(material),
        predicate_type=predicate_type if isinstance(predicate_type, str) else "",
    )


def _decide(admission: Admission, reference: str) -> Any:
    decision = admission.decide(parse_review(review(deployment(reference), uid="p")))
    assert decision.result in RESULTS
    assert not any("internal error" in m for m in (*decision.messages, *decision.warnings))
    assert decision.code in (200, 403), decision.messages
    return decision


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(statement=statements())
def test_no_statement_shape_crashes_or_admits(
    world: World, flows: dict[str, Admission], statement: dict[str, Any]
) -> None:
    name = f"prop-{next(_counter)}"
    reference = world.push(name)
    _attest_raw(world, name, reference, statement)
    unsigned = _decide(flows["signature"], reference)
    assert not unsigned.allowed, (statement, unsigned.messages)
    assert "no trusted signature" in unsigned.message
    store = world.store(name)
    attach_signature(
        store, resolve_image(store, parse_image_reference(reference)), world.key.signer
    )
    missing = _decide(flows["required"], reference)
    assert not missing.allowed, (statement, missing.messages)
    assert f"no verified attestation of type {REQUIRED}" in missing.message


entries = st.fixed_dictionaries(
    {},
    optional={
        "reference": json_values,
        "outcome": st.sampled_from(["verified", "unverified", "invalid_provenance"]) | json_values,
        "error": json_values,
        "unchanged": json_values,
        "policy": st.fixed_dictionaries(
            {},
            optional={
                "name": json_values,
                "mode": st.sampled_from(["enforce", "warn"]) | json_values,
                "threshold": json_values,
                "requiredAttestations": json_values,
            },
        )
        | json_values,
        "thresholdMet": json_values,
        "satisfiedAuthorities": json_values,
        "signatures": json_values,
        "attestations": json_values,
    },
)


@settings(max_examples=EXAMPLES * 8, deadline=None, database=None)
@given(images=st.lists(entries, max_size=3), deny=st.lists(st.text(max_size=20), max_size=2))
def test_recorded_inputs_of_any_shape_are_judged_without_crashing(
    images: list[dict[str, Any]], deny: list[str]
) -> None:
    outcomes = [image_outcome(entry) for entry in images]
    judgement = judge(
        outcomes,
        operation="CREATE",
        unmatched_images="allow",
        deny=tuple(Finding(message) for message in deny),
        warn=(),
        policy_error=None,
    )
    for entry, outcome in zip(images, outcomes, strict=True):
        enforced = isinstance(entry.get("policy"), dict) and entry["policy"].get("mode") != "warn"
        finished = entry.get("outcome") in ("verified", "unverified", "invalid_provenance")
        if enforced and finished and entry.get("thresholdMet") is not True:
            assert outcome.findings and not judgement.result.startswith("allow")
            assert judgement.result not in ("allowed", "warned")
