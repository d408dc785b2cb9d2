"""The security-check register is valid, and the mutants runner really tests the broken copy.

``make mutants`` itself runs after ``make test``; these checks keep a drifted register
(a ``find`` text edited away, a renamed test) from surviving until then.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutants", ROOT / "scripts" / "mutants.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutants"] = module
    spec.loader.exec_module(module)
    return module


mutants = _runner()


def test_the_register_is_valid() -> None:
    entries = mutants.load_register()
    assert len({entry.id for entry in entries}) == len(entries)
    assert {"signing.yaml", "records.yaml"} <= {Path(e.source).name for e in entries}


def test_an_invalid_register_names_every_problem(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        """
- id: twice
  guards: g
  file: attest/verify.py
  function: _evaluate
  find: "this text is nowhere"
  replace: "x"
  tests: [tests/signing/test_policy.py::test_no_such_test]
- id: twice
  guards: g
  file: attest/missing.py
  function: f
  find: "a"
  replace: "b"
  tests: [tests/signing/test_policy.py::test_policy_validation]
"""
    )
    with pytest.raises(mutants.RegisterError) as caught:
        mutants.load_register(tmp_path)
    message = str(caught.value)
    assert "find occurs 0 times in attest/verify.py" in message
    assert "no test test_no_such_test" in message
    assert "id 'twice' is also used" in message


def test_multi_line_breaks_match_and_keep_their_indentation() -> None:
    source = "def f(x):\n    if x:\n        return 1\n    return 2\n"
    find = "if x:\n    return 1"  # as a YAML block scalar delivers it: indentation dropped
    assert mutants.locate(source, find) == [(source.index("if x"), 4)]
    broken = mutants.apply(source, find, "if False:\n    return 1")
    assert broken == "def f(x):\n    if False:\n        return 1\n    return 2\n"


def test_a_break_is_tested_in_a_copy_that_imports_from_itself() -> None:
    """Were the tests run against the original tree, the listed test would pass (code 0)."""
    entry = mutants.Entry(
        id="record-hash",
        guards="a record's hash covers its document",
        file="admission/decisions/verify.py",
        function="_check_chain",
        find="if expected != row.hash:",
        replace="if False:",
        tests=(
            "tests/decisions/test_chain.py"
            "::test_editing_a_decision_breaks_the_chain_at_that_record[sqlite]",
        ),
        source="test",
    )
    copy = mutants.make_copy(mutants.repository_files(), entry, keep=False)
    try:
        assert "if False:" in (copy / entry.file).read_text()
        assert "if expected != row.hash:" in (ROOT / entry.file).read_text()  # untouched
        code, output = mutants.run_tests(copy, entry.tests, timeout=120)
        assert code == 1, output  # the listed test failed against the broken copy
        assert "imports from" not in output
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
