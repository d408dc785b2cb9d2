"""The webhook's own rules, fast: in-process decisions with verification results injected
at the verifier boundary (the end-to-end attacks are in test_fail_closed.py and
test_identity.py).  These are the tests the security-check register names for the
code-level fail-closed rule, thresholds, required attestations, invalid provenance
and the cache's trust fingerprint, since they take a second, not a registry.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import pytest

from admission.decide import Admission
from admission.review import parse_review
from admission.testing.helpers import (
    deployment,
    fake_verification,
    key_policy,
    new_key,
    review,
    write_config,
)
from admission.verdict import Decision
from attest.attestations.predicates import COSIGN_VULN, SLSA_PROVENANCE_V02, SLSA_PROVENANCE_V1
from attest.verify import ImageVerification

REGISTRY = "registry.example.com"
GOOD = f"{REGISTRY}/apps/good@sha256:{'1' * 64}"
UNSIGNED = f"{REGISTRY}/apps/bad@sha256:{'2' * 64}"
FOO = f"{REGISTRY}/apps/foo@sha256:{'3' * 64}"
STRING_BUILDER = f"{REGISTRY}/apps/string-builder@sha256:{'4' * 64}"
AUDIT = f"{REGISTRY}/audit/bad@sha256:{'5' * 64}"
WARN_ONLY = """package attest.admission

import rego.v1

warn contains msg if {
	some img in input.images
	msg := sprintf("%s: seen", [img.reference])
}
"""
PREDICATES = {
    "foo": (SLSA_PROVENANCE_V1, {"foo": "bar"}),
    "string-builder": (SLSA_PROVENANCE_V02, {"builder": "https://b", "buildType": "t"}),
}


class Verifier:
    """verify_image's answers: ``bad`` unsigned; ``foo``/``string-builder`` signed with a
    trusted provenance attestation whose predicate is not provenance."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, target: Any, policy: Any, **kwargs: Any) -> ImageVerification:
        self.calls += 1
        name = target.name.rsplit("/", 1)[1]
        result = fake_verification(str(target), target.digest, verified=name != "bad")
        if name in PREDICATES:
            predicate_type, predicate = PREDICATES[name]
            provenance = result.attestations[0]
            statement = {**(provenance.statement or {}), "predicateType": predicate_type}
            statement["predicate"] = predicate
            bad = dataclasses.replace(
                provenance, predicate_type=predicate_type, statement=statement
            )
            result = dataclasses.replace(result, attestations=(bad, *result.attestations[1:]))
        return result


def service(tmp_path: Path, *, bundle: str | None = None, **policy: Any) -> Admission:
    key_file = new_key().write(tmp_path / "k.pub")
    extra = {}
    if bundle is not None:
        (tmp_path / "bundle").mkdir(exist_ok=True)
        (tmp_path / "bundle" / "p.rego").write_text(bundle)
        extra["policy"] = {"bundle": str(tmp_path / "bundle")}
    config = write_config(
        tmp_path / "c.yaml",
        [
            key_policy("apps", [f"{REGISTRY}/apps/*"], key_file, **policy),
            key_policy("audit", [f"{REGISTRY}/audit/*"], key_file, mode="warn"),
        ],
        **extra,
    )
    return Admission(str(config), verifier=Verifier(), reload_interval=0)


def decide(admission: Admission, image: str) -> Decision:
    return admission.decide(parse_review(review(deployment(image))))


@pytest.mark.parametrize("bundle", [None, WARN_ONLY], ids=["default-bundle", "warn-only-bundle"])
def test_threshold_not_met_is_denied_whatever_the_bundle(
    tmp_path: Path, bundle: str | None
) -> None:
    admission = service(tmp_path, bundle=bundle)
    try:
        denied = decide(admission, UNSIGNED)
        assert denied.result == "denied" and denied.code == 403
        assert denied.messages[0] == (
            f"{UNSIGNED}: no trusted signature: 0 of 1 required authorities of policy apps "
            "verified it (signature does not verify with key k)"
        )
        warned = decide(admission, AUDIT)  # warn mode: the same finding is a warning
        assert warned.allowed and any(
            w.startswith(f"warn mode (audit): {AUDIT}: no trusted signature")
            for w in warned.warnings
        )
        assert decide(admission, GOOD).allowed
    finally:
        admission.close()


@pytest.mark.parametrize("bundle", [None, WARN_ONLY], ids=["default-bundle", "warn-only-bundle"])
def test_missing_required_attestation_is_denied_whatever_the_bundle(
    tmp_path: Path, bundle: str | None
) -> None:
    admission = service(tmp_path, bundle=bundle, attestations=["vuln"])
    try:
        denied = decide(admission, GOOD)
        assert denied.result == "denied"
        assert denied.messages == (
            f"{GOOD}: no verified attestation of type {COSIGN_VULN} (required by policy apps)",
        )
    finally:
        admission.close()


@pytest.mark.parametrize("bundle", [None, WARN_ONLY], ids=["default-bundle", "warn-only-bundle"])
def test_invalid_provenance_is_denied_whatever_the_bundle(
    tmp_path: Path, bundle: str | None
) -> None:
    admission = service(tmp_path, bundle=bundle)
    try:
        foo = decide(admission, FOO)
        assert foo.result == "denied"
        assert foo.messages == (
            f"{FOO}: invalid provenance: SLSA v1 provenance: buildDefinition is required",
        )
        assert foo.images[0].outcome == "invalid_provenance"
        string_builder = decide(admission, STRING_BUILDER)
        assert string_builder.result == "denied"
        assert string_builder.messages == (
            f"{STRING_BUILDER}: invalid provenance: SLSA v0.2 provenance: builder must be a "
            "JSON object",
        )
        (entry,) = string_builder.input["images"]  # type: ignore[index]
        (bad, _sbom) = entry["attestations"]
        assert bad["provenance"] is None and "builder must be" in bad["provenanceError"]
    finally:
        admission.close()


def test_a_change_of_trust_never_reuses_a_cached_verification(tmp_path: Path) -> None:
    admission = service(tmp_path)
    try:
        first = decide(admission, GOOD)
        again = decide(admission, GOOD)
        assert [first.images[0].cached, again.images[0].cached] == [False, True]
        calls = admission.verifier.calls  # type: ignore[attr-defined]
        new_key().write(tmp_path / "k.pub")  # the key is rotated: other trust material
        later = time.time_ns() + 10**9
        os.utime(tmp_path / "k.pub", ns=(later, later))
        rotated = decide(admission, GOOD)
        assert rotated.trust_fingerprint != first.trust_fingerprint
        assert rotated.images[0].cached is False
        assert admission.verifier.calls == calls + 1  # type: ignore[attr-defined]
    finally:
        admission.close()
