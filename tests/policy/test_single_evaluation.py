"""The embedded engine answers deny, warn and allow in one evaluation, exactly as rule by rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from regopy import rego_shared as _c

from attest.errors import PolicyError
from attest.policy import PolicyBundle, load_bundle, make_engine
from attest.policy.bundle import bundle_hash
from attest.policy.regopy import RegopyEngine
from tests.policy.conftest import POLICY

COSIGN_FORM = """package signature
import rego.v1
default allow := false
allow if input.ok
"""
UNDEFINED_ALLOW = """package signature
import rego.v1
allow if input.ok
deny contains "no" if input.no
"""
WRONG_TYPES = """package attest.admission
import rego.v1
deny := 5 if input.five
warn contains "x" if input.x
"""


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The entry points the engine evaluates, in order."""
    seen: list[bytes] = []
    original = _c.rego.regoBundleQueryEntrypoint

    def counting(interpreter: Any, bundle: Any, entrypoint: bytes) -> Any:
        seen.append(entrypoint)
        return original(interpreter, bundle, entrypoint)

    monkeypatch.setattr(_c.rego, "regoBundleQueryEntrypoint", counting)
    return seen


def test_one_evaluation_answers_every_rule(write_bundle, queries: list[bytes]) -> None:
    engine = make_engine(load_bundle(str(write_bundle({"p.rego": POLICY}))))
    result = engine.evaluate({"images": [{"ref": "a", "ok": False}]})
    assert result.deny == ("a: not ok",) and result.warn == ("labels missing",)
    assert queries == [b"attest_internal/answers/p0"]


def test_allow_false_undefined_and_true_stay_apart(write_bundle, queries: list[bytes]) -> None:
    defaulted = make_engine(load_bundle(str(write_bundle({"s.rego": COSIGN_FORM}))))
    assert defaulted.evaluate({}, "signature").allow is False
    assert defaulted.evaluate({"ok": True}, "signature").allow is True
    bare = make_engine(load_bundle(str(write_bundle({"s.rego": UNDEFINED_ALLOW}))))
    undefined = bare.evaluate({"no": True}, "signature")
    assert undefined.allow is None and undefined.deny == ("no",)
    assert undefined.allow_violation("signature") == "data.signature.allow is not true (undefined)"
    assert len(queries) == 3  # one each


def test_a_rule_of_the_wrong_type_is_still_an_error(write_bundle) -> None:
    engine = make_engine(load_bundle(str(write_bundle({"p.rego": WRONG_TYPES}))))
    assert engine.evaluate({"x": True}).warn == ("x",)  # deny undefined: no denials
    with pytest.raises(PolicyError, match="data.attest.admission.deny must be a set"):
        engine.evaluate({"five": True, "x": True})


def test_a_runtime_error_is_retried_rule_by_rule_to_name_its_rule(
    write_bundle, queries: list[bytes]
) -> None:
    policy = 'package attest.admission\nimport rego.v1\nwarn contains "d" if { 10 / input.n > 0 }\n'
    engine = make_engine(load_bundle(str(write_bundle({"p.rego": policy}))))
    with pytest.raises(PolicyError, match="data.attest.admission.warn: evaluation error"):
        engine.evaluate({"n": 0})
    assert queries[0] == b"attest_internal/answers/p0"
    assert b"attest/admission/warn" in queries[1:]


def test_every_package_has_its_own_entry_point(write_bundle, queries: list[bytes]) -> None:
    engine = make_engine(load_bundle(str(write_bundle({"p.rego": POLICY, "s.rego": COSIGN_FORM}))))
    assert engine.evaluate({"ok": True}, "signature").allow is True
    assert engine.evaluate({"images": [], "labels": {}}).deny == ()
    assert queries == [b"attest_internal/answers/p1", b"attest_internal/answers/p0"]


@pytest.mark.parametrize("package", ["attest_internal", "attest_internal.answers"])
def test_the_generated_package_cannot_be_declared_by_a_bundle(
    write_bundle, package: str, tmp_path: Path
) -> None:
    """A module in the reserved package could answer in the engine's place (p0 := no denials)."""
    forged = f'package {package}\np0 := {{"deny": [], "warn": []}}\n'
    with pytest.raises(PolicyError, match="reserved for attest's own entry points"):
        load_bundle(str(write_bundle({"p.rego": POLICY, "x.rego": forged})))
    modules = {"p.rego": POLICY, "x.rego": forged}
    direct = PolicyBundle(str(tmp_path), modules, bundle_hash(list(modules.values())))
    with pytest.raises(PolicyError, match="reserved"):
        RegopyEngine(direct)
