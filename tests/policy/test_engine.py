"""The policy engines: bundle loading, the embedded regopy engine and the remote OPA engine."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import pytest

from attest.errors import PolicyError
from attest.policy import Finding, load_bundle, make_engine
from attest.policy.bundle import load_tests
from tests.policy.conftest import POLICY


def test_bundle_loads_directory_without_tests_and_hashes_texts(write_bundle) -> None:
    root = write_bundle(
        {"a.rego": POLICY, "sub/b.rego": "package extra\nx := 1\n", "a_test.rego": "package t\n"}
    )
    bundle = load_bundle(str(root))
    assert sorted(bundle.modules) == ["a.rego", "sub/b.rego"]
    assert bundle.packages() == {"attest.admission", "extra"}
    renamed = write_bundle({"z.rego": "package extra\nx := 1\n", "y.rego": POLICY})
    assert load_bundle(str(renamed)).hash == bundle.hash
    changed = write_bundle({"a.rego": POLICY + "\n", "sub/b.rego": "package extra\nx := 1\n"})
    assert load_bundle(str(changed)).hash != bundle.hash
    policies, tests = load_tests(str(root))
    assert list(tests) == ["a_test.rego"] and policies.hash == bundle.hash


@pytest.mark.parametrize(
    ("modules", "expected"),
    [
        ({}, "no .rego policy modules"),
        ({"a.rego": "deny := 1\n"}, "no 'package' declaration"),
    ],
)
def test_bundle_errors(write_bundle, modules, expected) -> None:
    with pytest.raises(PolicyError, match=expected):
        load_bundle(str(write_bundle(modules)))


def test_bundle_missing_and_binary(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such file"):
        load_bundle(str(tmp_path / "absent"))
    (tmp_path / "bad.rego").write_bytes(b"package x\n\xff\xfe")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_bundle(str(tmp_path / "bad.rego"))


def test_regopy_deny_and_warn(write_bundle) -> None:
    engine = make_engine(load_bundle(str(write_bundle({"p.rego": POLICY}))))
    result = engine.evaluate({"images": [{"ref": "b", "ok": False}, {"ref": "a", "ok": False}]})
    assert result.deny == ("a: not ok", "b: not ok")
    assert result.warn == ("labels missing",)
    assert result.engine.startswith("regopy ")
    clean = engine.evaluate({"images": [{"ref": "a", "ok": True}], "labels": {"x": "y"}})
    assert clean.deny == () and clean.warn == ()


STRUCTURED = """package attest.admission
import rego.v1
deny contains {"image": img.ref, "code": "not-ok", "message": concat(": ", [img.ref, "not ok"])} if {
	some img in input.images
	not img.ok
}
deny contains {"msg": "old style"} if input.old
deny contains {"message": 7, "image": "a"} if input.odd
deny contains {"message": "x", "image": ["a"]} if input.odd
warn contains {"message": "no labels", "code": "labels"} if not input.labels
"""


def test_findings_are_read_from_objects_and_strings(write_bundle) -> None:
    engine = make_engine(load_bundle(str(write_bundle({"p.rego": STRUCTURED}))))
    result = engine.evaluate({"images": [{"ref": "b", "ok": False}, {"ref": "a", "ok": False}]})
    assert result.denials == (
        Finding("a: not ok", "a", "not-ok"),
        Finding("b: not ok", "b", "not-ok"),
    )
    assert result.deny == ("a: not ok", "b: not ok")  # the messages, as for string rules
    assert result.warnings == (Finding("no labels", None, "labels"),)
    assert result.to_dict()["denials"][0] == {
        "message": "a: not ok",
        "image": "a",
        "code": "not-ok",
    }
    assert engine.evaluate({"images": [], "labels": 1, "old": True}).denials == (
        Finding("old style"),
    )
    # an object that breaks the contract is still a denial, about no image: its JSON text
    odd = engine.evaluate({"images": [], "labels": 1, "odd": True}).denials
    assert odd == (
        Finding('{"image": "a", "message": 7}'),
        Finding('{"image": ["a"], "message": "x"}'),
    )


def test_regopy_absent_rules_false_values_and_json_marshal(write_bundle) -> None:
    policy = """package attest.admission
import rego.v1
default allowed := false
allowed if input.ok
deny contains "not allowed" if not allowed
deny contains json.marshal(input) if input.echo
"""
    engine = make_engine(load_bundle(str(write_bundle({"p.rego": policy}))))
    assert engine.evaluate({"ok": False}).deny == ("not allowed",)
    assert engine.evaluate({"ok": True}).deny == ()
    assert engine.evaluate({"ok": True, "echo": [1, "x"]}).deny == ('{"echo":[1,"x"],"ok":true}',)
    assert engine.evaluate({"ok": True}).warn == ()


def test_regopy_wrong_rule_type_and_unknown_package(write_bundle) -> None:
    engine = make_engine(
        load_bundle(str(write_bundle({"p.rego": "package attest.admission\ndeny := true\n"})))
    )
    with pytest.raises(PolicyError, match="must be a set of messages"):
        engine.evaluate({})
    with pytest.raises(PolicyError, match="has no package other.pkg"):
        engine.evaluate({}, "other.pkg")
    with pytest.raises(PolicyError, match="not a dotted Rego name"):
        engine.evaluate({}, "bad pkg")


def test_regopy_compile_error_names_file_and_line(write_bundle, capfd) -> None:
    root = write_bundle(
        {"broken.rego": "package attest.admission\nimport rego.v1\ndeny contains x if { x := }\n"}
    )
    with pytest.raises(
        PolicyError, match=r"does not compile: broken.rego:3:\d+: Invalid assignment"
    ):
        make_engine(load_bundle(str(root)))
    out, _err = capfd.readouterr()
    assert "Invalid assignment" not in out  # rego-cpp's own printout was captured


def test_regopy_runtime_errors_fail_closed(write_bundle) -> None:
    policy = """package attest.admission
import rego.v1
deny contains "late" if { time.parse_rfc3339_ns(input.time) > 0; false }
warn contains "div" if { x := 10 / input.n; x > 0 }
"""
    engine = make_engine(load_bundle(str(write_bundle({"p.rego": policy}))))
    assert engine.evaluate({"time": "2024-01-01T00:00:00+00:00", "n": 2}).deny == ()
    with pytest.raises(PolicyError, match=r"Unable to parse time .*ending in 'Z'"):
        engine.evaluate({"time": "2024-01-01T00:00:00Z", "n": 2})
    with pytest.raises(
        PolicyError, match="data.attest.admission.warn: evaluation error: divide by zero"
    ):
        engine.evaluate({"time": "2024-01-01T00:00:00+00:00", "n": 0})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('deny contains x if { x := sprintf("%q", [input.a]) }', "sprintf verb %q"),
        ("deny contains x if { x := http.send({}) }", "http.send is not available"),
        ('deny contains "x" if { net.cidr_contains("10.0.0.0/8", input.ip) }', "net.cidr_contains"),
        ("deny contains x if { x := data.y with input as {} }", "'with input' is not supported"),
        ('deny contains x if { x := object.union(input.a, {"b": {}}) }', "object.union gives"),
        ('deny contains x if { x := strings.split_n(input.a, ",", 2) }', "split_n is not"),
        ('deny contains "x" if { not startswith(input.a.b, "y") }', r"'not' over a call .*input\."),
        ('deny contains "x" if { not count(input[0]) > 1 }', "'not' over a call"),
        ('deny contains x if { x := sprintf("%-5s", [input.a]) }', r"width or precision \(%-5s\)"),
        ('deny contains "x" if { regex.match("(?i)x", input.a) }', "inline flags"),
    ],
)
def test_regopy_rejects_what_it_cannot_run(write_bundle, line, expected) -> None:
    text = f"package attest.admission\nimport rego.v1\n# with input as comment is fine\n{line}\n"
    with pytest.raises(PolicyError, match=rf"p.rego:4: .*{expected}"):
        make_engine(load_bundle(str(write_bundle({"p.rego": text}))))


def test_regopy_one_interpreter_per_thread(write_bundle) -> None:
    engine = make_engine(load_bundle(str(write_bundle({"p.rego": POLICY}))))

    def check(i: int) -> bool:
        result = engine.evaluate({"images": [{"ref": f"r{i}", "ok": False}], "labels": {}})
        return result.deny == (f"r{i}: not ok",)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(check, range(800)))


def test_regopy_unreadable_output_is_a_policy_error(write_bundle) -> None:
    policy = 'package attest.admission\nimport rego.v1\ndeny contains sprintf("(%s)", [concat(";", input.r)]) if true\n'
    engine = make_engine(load_bundle(str(write_bundle({"p.rego": policy}))))
    with pytest.raises(PolicyError, match="not JSON .*build it with concat"):
        engine.evaluate({"r": ["a", "b"]})


def test_fast_input_matches_regopy_input(write_bundle) -> None:
    from attest.policy.regopy import fast_input

    policy = (
        "package attest.admission\nimport rego.v1\ndeny contains json.marshal(input.doc) if true\n"
    )
    engine = make_engine(load_bundle(str(write_bundle({"p.rego": policy}))))
    doc = {
        "doc": {
            "s": "ünïcode ✓",
            "i": -(2**62),
            "f": 1.25,
            "b": False,
            "n": None,
            "l": [1, [2, {"k": "v"}]],
        }
    }
    assert engine.evaluate(doc).deny == (
        '{"b":false,"f":1.25,"i":-4611686018427387904,"l":[1,[2,{"k":"v"}]],"n":null,"s":"ünïcode ✓"}',
    )
    with pytest.raises(TypeError):
        fast_input({1: "non-string key"})
    with pytest.raises(PolicyError, match="not JSON"):
        engine.evaluate({"doc": float("nan")})


def test_fast_input_path_values(write_bundle) -> None:
    policy = """package attest.admission
import rego.v1
deny contains input.doc.s if true
deny contains sprintf("%d %v %v %v", [input.doc.i, input.doc.f, input.doc.b, input.doc.l]) if true
"""
    engine = make_engine(load_bundle(str(write_bundle({"p.rego": policy}))))
    assert engine.text_input is False  # type: ignore[attr-defined]
    doc = {"doc": {"s": "ünïcode ✓", "i": 7, "f": 1.25, "b": False, "l": [1, "x"]}}
    assert engine.evaluate(doc).deny == ('7 1.25 false [1, "x"]', "ünïcode ✓")


def test_fast_input_keeps_the_gil() -> None:
    """Building an input is ~a call per value; releasing the GIL around each let another busy
    thread of the worker stall it for its whole switch interval, hundreds of times."""
    import gc
    import sys
    import threading
    import time

    from attest.policy.regopy import fast_input

    doc = {"images": [{"reference": f"r{i}", "n": i, "ok": True, "x": None} for i in range(1500)]}
    ran = [0]
    stop = threading.Event()
    started = threading.Event()

    def other_thread() -> None:
        started.set()
        while not stop.is_set():
            ran[0] += 1
            time.sleep(0.0002)  # gives the GIL back at once; wants it again soon

    interval = sys.getswitchinterval()
    sys.setswitchinterval(30)  # only a GIL release, not a forced switch, can let it run
    thread = threading.Thread(target=other_thread)
    try:
        thread.start()
        started.wait(5)
        time.sleep(0.01)
        gc.collect()  # other tests' engines are freed by GIL-releasing finalizers: not now
        gc.disable()
        before = ran[0]
        value = fast_input(doc)
        del value  # freeing it keeps the GIL too
        during = ran[0] - before
    finally:
        gc.enable()
        stop.set()
        sys.setswitchinterval(interval)
        thread.join()
    assert during == 0


def test_policy_tests_refuse_what_regopy_answers_differently(write_bundle) -> None:
    """A test passing under regopy must mean OPA passes it too: object.union merges nested
    objects in OPA and replaces them in regopy, so a test using it proves nothing."""
    from attest.policy.testing import run_tests

    tests = (
        "package attest.admission_test\nimport rego.v1\n"
        'test_union if object.union({"a": {"b": 1}}, {"a": {}}) == {"a": {}}\n'
    )
    root = write_bundle({"p.rego": POLICY, "p_test.rego": tests})
    with pytest.raises(PolicyError, match=r"p_test.rego:3: built-in object.union gives other"):
        run_tests(str(root))
