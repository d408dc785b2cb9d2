"""``attest policy test`` and ``attest policy eval`` through the CLI."""

from __future__ import annotations

import json

from tests.policy.conftest import POLICY

TESTS = """package attest.admission_test
import rego.v1
import data.attest.admission

test_passes if { 1 + 1 == 2 }
test_fails if { count([]) == 1 }
test_uses_with if {
  admission.deny == {"a: not ok"} with input as {"images": [{"ref": "a", "ok": false}]}
}
test_errors if { x := 1 / 0; x > 0 }
test_multi_line if {
  true
}
fake_count(_) := 99
test_with_mock if { admission.deny with count as fake_count }
test_with_fails if { count(admission.deny) == 0 with input.images as [{"ref": "b"}] }
test_with_in_comprehension if { count([x | x := input.a with input as {"a": 1}]) == 1 }
"""


def test_policy_test_reports_each_outcome(cli, write_bundle) -> None:
    root = write_bundle({"p.rego": POLICY, "p_test.rego": TESTS})
    result = cli("policy", "test", str(root), "--output", "json")
    assert result.exit_code == 1, result.stderr
    report = result.json()
    statuses = {t["name"].rsplit(".", 1)[1]: (t["status"], t["detail"]) for t in report["tests"]}
    assert statuses["test_passes"] == ("pass", "")
    assert statuses["test_multi_line"] == ("pass", "")
    assert statuses["test_fails"][0] == "fail"
    assert statuses["test_uses_with"] == ("pass", "")
    assert statuses["test_with_fails"][0] == "fail"
    assert statuses["test_with_mock"][0] == "error" and statuses["test_with_mock"][1].startswith(
        "cannot run: 'with count as"
    )
    assert statuses["test_with_in_comprehension"] == (  # found unrunnable before running
        "error",
        "cannot run: 'with' inside a comprehension or a call is not supported",
    )
    assert statuses["test_errors"] == ("error", "divide by zero")
    assert (report["passed"], report["total"]) == (3, 8)
    assert [t["line"] for t in report["tests"]][:2] == [5, 6]
    text = cli("policy", "test", str(root))  # like opa test: failures, then the counts
    assert text.stdout.splitlines()[-3:] == ["PASS: 3/8", "FAIL: 2/8", "ERROR: 3/8"]
    assert "p_test.rego:6:\ndata.attest.admission_test.test_fails: FAIL" in text.stdout
    assert "test_passes" not in text.stdout
    verbose = cli("policy", "test", "-v", str(root))
    assert "data.attest.admission_test.test_passes: PASS (" in verbose.stdout


def test_policy_test_all_pass_and_unusable_inputs(cli, write_bundle, tmp_path) -> None:
    ok = write_bundle(
        {"p.rego": POLICY, "p_test.rego": "package t\nimport rego.v1\ntest_a if true\n"}
    )
    result = cli("policy", "test", str(ok))
    assert result.exit_code == 0 and result.stdout.splitlines() == ["-" * 80, "PASS: 1/1"]
    none = write_bundle({"p.rego": POLICY})
    result = cli("policy", "test", str(none))
    assert result.exit_code == 2 and "no test_* rules" in result.stderr
    broken = write_bundle({"p.rego": POLICY, "p_test.rego": "package t\ntest_a if {\n"})
    result = cli("policy", "test", str(broken))
    assert result.exit_code == 2 and "policy tests do not compile" in result.stderr


def test_policy_eval(cli, write_bundle, tmp_path) -> None:
    root = write_bundle({"p.rego": POLICY})
    doc = tmp_path / "in.json"
    doc.write_text(json.dumps({"images": [{"ref": "a", "ok": False}], "labels": {"a": "b"}}))
    result = cli("policy", "eval", str(root), "--input", str(doc), "-o", "json")
    assert result.exit_code == 1 and result.json()["deny"] == ["a: not ok"]
    doc.write_text(json.dumps({"images": []}))
    result = cli("policy", "eval", str(root), "--input", str(doc))
    assert result.exit_code == 0 and result.stdout.strip() == "warn: labels missing"
    doc.write_text("[1]")
    result = cli("policy", "eval", str(root), "--input", str(doc))
    assert result.exit_code == 2 and "must be a JSON object" in result.stderr


def test_default_bundle_leaves_out_the_examples() -> None:
    """policies/examples/ holds separate bundles (each its own attest.admission): never
    part of the default bundle, whose hash and denials they would change."""
    from attest.policy import load_bundle
    from tests.conftest import ROOT

    bundle = load_bundle(str(ROOT / "policies"))
    assert sorted(bundle.modules) == ["admission.rego"]
    assert (ROOT / "policies" / "examples" / "no-latest" / "policy.rego").is_file()
