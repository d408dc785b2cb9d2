"""``attest policy test`` against the real ``opa test``: the same test files, the same
pass/fail per test (the shipped examples, and a corpus of ``with`` forms)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.opa import opa

EXAMPLES = sorted(p.parent for p in (ROOT / "policies" / "examples").glob("*/policy.rego"))
CORPUS = ROOT / "tests" / "policy" / "with_corpus"
# What the embedded engine cannot run (reported as an error saying so, never a pass).
CANNOT_RUN = {
    "data.corpus_test.test_with_object_comprehension",
    "data.corpus_test.test_with_function_mocked_by_function",
}


def _opa_results(path: Path) -> dict[str, bool]:
    done = opa("test", "--format", "json", str(path))
    assert done.returncode in (0, 2), done.stderr
    return {
        f"{t['package']}.{t['name']}": not (t.get("fail") or t.get("error"))
        for t in json.loads(done.stdout)
    }


def _our_results(cli, path: Path) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    result = cli("policy", "test", str(path), "-o", "json")
    assert result.exit_code in (0, 1), result.stderr
    return {t["name"]: t for t in result.json()["tests"]}


def test_examples_count() -> None:
    assert len(EXAMPLES) >= 8
    for example in EXAMPLES:
        assert (example / "policy.rego").is_file() and (example / "policy_test.rego").is_file()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_under_both(cli, example: Path) -> None:  # type: ignore[no-untyped-def]
    theirs = _opa_results(example)
    ours = _our_results(cli, example)
    assert set(ours) == set(theirs)
    assert all(theirs.values()), theirs
    assert {n: t["status"] for n, t in ours.items() if t["status"] != "pass"} == {}


def test_with_corpus_agrees_with_opa(cli) -> None:  # type: ignore[no-untyped-def]
    theirs = _opa_results(CORPUS)
    ours = _our_results(cli, CORPUS)
    assert set(ours) == set(theirs)
    assert sum(not v for v in theirs.values()) >= 5 and sum(theirs.values()) >= 10
    for name, passed in theirs.items():
        if name in CANNOT_RUN:
            assert ours[name]["status"] == "error" and "cannot run" in ours[name]["detail"]
        else:
            assert (ours[name]["status"] == "pass") == passed, (name, ours[name])
