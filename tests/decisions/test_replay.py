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
    assert cli("decisions", "verify", "--db", db).exit_code == 0


def test_replay_under_the_same_policy_changes_nothing(cli, recorded) -> None:
    db, _reference, config = recorded
    same = cli("decisions", "replay", "--db", db, "1", "--config", str(config))
    assert same.exit_code == 0, same.stdout + same.stderr
    assert "result: denied → denied (same)" in same.stdout
    assert "unchanged deny:" in same.stdout and "no trusted signature" in same.stdout
    assert "0 of 1 decisions would change" in same.stderr


def test_replay_under_a_new_policy_shows_the_difference(cli, recorded, tmp_path: Path) -> None:
    db, reference, _config = recorded
    relaxed = tmp_path / "relaxed.rego"
    relaxed.write_text(PERMISSIVE)
    changed = cli("decisions", "replay", "--db", db, "1", "--bundle", str(relaxed))
    assert changed.exit_code == 1, changed.stderr
    out = changed.stdout
    assert "result: denied → warned (CHANGED)" in out
    assert "deny no longer:" in out and "no trusted signature" in out
    assert f"new warn:\n    - {reference}: admitted by the relaxed policy" in out
    as_json = cli("decisions", "replay", "--db", db, "--bundle", str(relaxed), "-o", "json")
    (result,) = as_json.json()
    assert result["changed"] and result["replayed"]["result"] == "warned"
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
