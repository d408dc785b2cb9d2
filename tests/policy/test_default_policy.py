"""The default policy bundle in policies/: it compiles, its Rego unit tests pass, it denies by default."""

from __future__ import annotations

from attest.policy import load_bundle, make_engine
from attest.policy.testing import run_tests
from tests.conftest import ROOT

POLICIES = str(ROOT / "policies")


def test_default_policy_unit_tests_pass() -> None:
    outcomes = run_tests(POLICIES)
    assert len(outcomes) >= 10
    failed = [(o.name, o.status, o.detail) for o in outcomes if o.status != "pass"]
    assert failed == []


def test_default_policy_reads_the_input_document() -> None:
    engine = make_engine(load_bundle(POLICIES))
    image = {
        "reference": "r.example/app:v1",
        "digest": "sha256:" + "0" * 64,
        "policy": {"name": "apps", "threshold": 1, "requiredAttestations": [], "parameters": {}},
        "outcome": "unverified",
        "thresholdMet": False,
        "satisfiedAuthorities": [],
        "signatures": [],
        "attestations": [],
    }
    result = engine.evaluate({"images": [image]})
    # the threshold is the webhook's own denial (judge()), not repeated by the policy
    assert set(result.deny) == {"r.example/app:v1: no verified SLSA provenance attestation"}
    assert result.warn == ("r.example/app:v1: no verified SBOM attestation (CycloneDX or SPDX)",)
