"""Real admission decisions (unsigned image in the real registry) recorded, shown and replayed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from admission.decisions.recorder import DecisionRecorder
from admission.offline import review_file
from attest.signing import keys

PERMISSIVE = """package attest.admission

import rego.v1

warn contains msg if {
	some img in input.images
	msg := sprintf("%s: admitted by the relaxed policy", [img.reference])
}
"""

BROKEN = """package attest.admission

import rego.v1

deny contains msg if {
	msg := input.images[0].no_such_field.deeper
}
deny contains 1 if true
"""


@pytest.fixture
def recorded(registry, repo, push_image, tmp_path: Path) -> tuple[str, str, Path]:
    """A Deployment with one unsigned image, judged by the real flow and recorded."""
    push_image(repo, "v1")
    reference = f"{registry.address}/{repo.repository}:v1"
    public = tmp_path / "ci.pub"
    public.write_bytes(keys.generate_key_pair(b"pw").public_pem)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "imagePolicies": [
                    {
                        "name": "test-images",
                        "images": [f"{registry.address}/**"],
                        "authorities": [{"name": "ci", "key": {"path": str(public)}}],
                    }
                ]
            }
        )
    )
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "checkout", "namespace": "payments"},
                "spec": {
                    "selector": {"matchLabels": {"app": "checkout"}},
                    "template": {
                        "metadata": {"labels": {"app": "checkout"}},
                        "spec": {"containers": [{"name": "app", "image": reference}]},
                    },
                },
            }
        )
    )
    (decision,) = review_file(str(manifest), config_path=str(config))
    assert decision.result == "denied"
    db = str(tmp_path / "decisions.db")
    recorder = DecisionRecorder(db, replica="review").start()
    recorder.record(decision)
    assert recorder.flush(30) and recorder.status().written == 1
    recorder.close()
    return db, reference, config


def test_a_real_decision_is_shown_with_its_reasons(cli, recorded) -> None:
    db, reference, _config = recorded
    shown = cli("decisions", "show", "--db", db, "1")
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.startswith("Decision 1: DENIED")
    assert "CREATE Deployment payments/checkout" in shown.stdout
    assert f"[1] {reference}" in shown.stdout
    assert "policy:    test-images" in shown.stdout
    assert "no trusted signature" in shown.stdout
    listed = cli("decisions", "list", "--db", db, "--image", f"{reference.rsplit(':', 1)[0]}:*")
    assert listed.exit_code == 0 and "DENIED" in listed.stdout
    unsigned = cli("decisions", "verify", "--db", db)  # recorded without a signing key
    assert unsigned.exit_code == 3 and "chain intact, but NOT covered" in unsigned.stdout


def test_replay_under_the_same_policy_changes_nothing(cli, recorded) -> None:
    db, _reference, config = recorded
    same = cli("decisions", "replay", "--db", db, "1", "--config", str(config))
    assert same.exit_code == 0, same.stdout + same.stderr
    assert "result: denied → denied (same)" in same.stdout
    assert "unchanged deny:" in same.stdout and "no trusted signature" in same.stdout
    assert "0 of 1 decisions would change" in same.stderr


def test_replay_under_a_new_policy_shows_the_difference(cli, recorded, tmp_path: Path) -> None:
    """A bundle with only warn rules drops Rego's denials, never the webhook's own: the
    unsigned image stays denied (the threshold is judged in code), the difference shows."""
    db, reference, _config = recorded
    relaxed = tmp_path / "relaxed.rego"
    relaxed.write_text(PERMISSIVE)
    changed = cli("decisions", "replay", "--db", db, "1", "--bundle", str(relaxed))
    assert changed.exit_code == 1, changed.stderr
    out = changed.stdout
    assert "result: denied → denied (CHANGED)" in out
    assert f"deny no longer:\n    - {reference}: no verified SLSA provenance attestation" in out
    assert f"new warn:\n    - {reference}: admitted by the relaxed policy" in out
    carried = out.split("carried over (not from Rego):", 1)[1]
    assert f"{reference}: no trusted signature: 0 of 1" in carried
    as_json = cli("decisions", "replay", "--db", db, "--bundle", str(relaxed), "-o", "json")
    (result,) = as_json.json()
    assert result["changed"] and result["replayed"]["result"] == "denied"
    assert result["recorded"]["bundleHash"] != result["replayed"]["bundleHash"]
    assert result["diff"]["removedDeny"] and not result["diff"]["addedDeny"]


def test_replay_with_a_broken_policy_fails_closed(cli, recorded, tmp_path: Path) -> None:
    db, _reference, _config = recorded
    broken = tmp_path / "broken.rego"
    broken.write_text(BROKEN)
    result = cli("decisions", "replay", "--db", db, "1", "--bundle", str(broken))
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr
    missing = cli("decisions", "replay", "--db", db, "1", "--bundle", str(tmp_path / "none"))
    assert missing.exit_code == 2 and "none" in missing.stderr
    both = cli("decisions", "replay", "--db", db, "1", "--bundle", "x", "--config", "y")
    assert both.exit_code == 2 and "not both" in both.stderr


def test_replay_applies_the_webhooks_own_rules_to_every_outcome(tmp_path: Path) -> None:
    """Decisions of every kind (warn mode, invalid, unmatched denied or allowed, registry
    error, UPDATE of an unchanged image) replay to exactly the recorded result."""
    from admission.config import DEFAULT_BUNDLE
    from admission.decide import Admission
    from admission.decisions import query
    from admission.decisions.replay import replay
    from admission.decisions.store import open_database
    from admission.review import parse_review
    from admission.testing.helpers import deployment, key_policy, new_key, review, write_config
    from attest.policy import load_bundle, make_engine
    from tests.admission.test_decide import AUDIT, BAD, BROKEN, GOOD, REGISTRY, FakeVerifier

    audit_bad = f"{REGISTRY}/audit/bad@sha256:{'6' * 64}"
    unmatched = f"other.example.com/x/y@sha256:{'7' * 64}"
    key_file = new_key().write(tmp_path / "k.pub")
    policies = [
        key_policy("apps", [f"{REGISTRY}/apps/*"], key_file),
        key_policy("audit", [f"{REGISTRY}/audit/*"], key_file, mode="warn"),
    ]
    strict = write_config(tmp_path / "strict.yaml", policies)
    lenient = write_config(tmp_path / "lenient.yaml", policies, unmatchedImages="allow")
    cases = [
        (strict, review(deployment(GOOD), uid="good")),
        (strict, review(deployment(GOOD, BAD), uid="bad")),
        (strict, review(deployment(AUDIT, audit_bad), uid="warn-mode")),
        (strict, review(deployment("Not A Reference!"), uid="invalid")),
        (strict, review(deployment(GOOD, unmatched), uid="unmatched-denied")),
        (lenient, review(deployment(GOOD, unmatched), uid="unmatched-allowed")),
        (strict, review(deployment(BROKEN), uid="registry-error")),
        (
            strict,
            review(
                deployment(BAD, GOOD),
                uid="update",
                operation="UPDATE",
                old=deployment(BAD),
            ),
        ),
    ]
    db = str(tmp_path / "decisions.db")
    recorder = DecisionRecorder(db, replica="rules").start()
    decided = {}
    for config, document in cases:
        service = Admission(str(config), verifier=FakeVerifier())
        try:
            decision = service.decide(parse_review(document), recorder=recorder)
        finally:
            service.close()
        decided[decision.uid] = decision.result
    assert recorder.flush(30) and recorder.status().written == len(cases)
    recorder.close()
    assert set(decided.values()) == {"allowed", "denied", "warned"}
    assert decided["update"] == "denied" and decided["unmatched-allowed"] != "denied"

    engine = make_engine(load_bundle(str(DEFAULT_BUNDLE)))
    database = open_database(db)
    try:
        for record in query.list_decisions(database, query.DecisionFilter(limit=None)):
            result = replay(record, engine, "attest.admission")
            assert result.replayed.result == decided[record.fields.uid], record.fields.uid
            assert not result.changed, (record.fields.uid, result.to_dict())
    finally:
        database.close()
        engine.close()
