"""Differential tests: regopy (the embedded engine) and the real OPA give the same answers.

Every policy of ``policies/`` and every Rego module written in the tests (found in
their source) is evaluated under both engines over a generated corpus of inputs
(hypothesis; admission inputs built by ``build_input``, Statements, and documents
shaped after what the policy reads). The answers compared are what attest
reads: the ``deny`` and ``warn`` sets (each entry's message, image and code), or an
error (a denial) from both.

A difference is either fixed, or a known regopy gap: listed in policies/README.md
and refused by the bundle loader (``unsupported_constructs``), or, where no loader
can see it (it depends on values), listed in :data:`RUNTIME_GAPS`: regopy fails
(closed) where OPA answers, never a different answer.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import regopy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attest.errors import PolicyError
from attest.policy import Finding
from attest.policy.bundle import PolicyBundle, bundle_hash, load_bundle, package_of
from attest.policy.engine import read_rule
from attest.policy.regopy import OPA_ONLY_BUILTINS, RegopyEngine, unsupported_constructs
from tests.conftest import ROOT, vector
from tests.support.opa import OpaServer, opa_builtins
from tests.support.policy_corpus import (
    admission_inputs,
    documents_for,
    input_paths,
    statements,
)

# Errors regopy raises for values OPA handles (no loader can see them coming); each is
# listed in policies/README.md. Any other disagreement fails the test.
RUNTIME_GAPS = {
    "time.parse_rfc3339_ns of a time ending in Z": r"Unable to parse time .*ending in 'Z'",
    "sprintf %s of a string made by concat": r"output that is not JSON .*build it with concat",
    "sprintf with too few arguments": r"sprintf: not enough arguments",
    "sprintf %d or %x of a value of another type": r"sprintf: operand \d+ must be",
}
# Operators and print: regopy evaluates them though it does not list them as built-ins.
NOT_CALLS = {"assign", "eq", "internal.test_case", "print"}
_PACKAGE_LINE = re.compile(r"^\s*package\s+[A-Za-z_][\w.]*\s*$", re.MULTILINE)
_REGO_HINT = re.compile(r"\bimport rego\.v1\b|\bcontains\b|:=|\bif\b")


@dataclass(frozen=True)
class Policy:
    where: str
    modules: dict[str, str]

    @property
    def package(self) -> str:
        name, text = sorted(self.modules.items())[0]
        return package_of(name, text)

    @property
    def text(self) -> str:
        return "\n".join(self.modules.values())


def _test_modules() -> Iterator[Policy]:
    """Every string literal in tests/ that is a Rego module (not a Go one, not a test)."""
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            text = node.value
            if not _PACKAGE_LINE.search(text) or not _REGO_HINT.search(text):
                continue
            if "\nfunc " in text or package_of("m.rego", text).endswith("_test"):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            yield Policy(where, {"m.rego": text})


def _policies() -> list[Policy]:
    default = load_bundle(str(ROOT / "policies"))
    found = [Policy("policies/", dict(default.modules))]
    seen = {json.dumps(found[0].modules, sort_keys=True)}
    for policy in _test_modules():
        key = json.dumps(policy.modules, sort_keys=True)
        if key not in seen:
            seen.add(key)
            found.append(policy)
    return found


POLICIES = _policies()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    started = OpaServer(tmp_path_factory.mktemp("opa-differential")).start()
    yield started
    started.stop()


def _embedded(policy: Policy) -> RegopyEngine | str:
    """The regopy engine for ``policy``, or why it refused the bundle."""
    bundle = PolicyBundle(policy.where, policy.modules, bundle_hash(list(policy.modules.values())))
    try:
        return RegopyEngine(bundle)
    except PolicyError as err:
        return str(err)


def _outcome(read: Any) -> tuple[Any, ...]:
    try:
        return ("answer", *read())
    except PolicyError as err:
        return ("error", str(err))


def regopy_outcome(engine: RegopyEngine, package: str, doc: Any) -> tuple[Any, ...]:
    def read() -> tuple[Any, ...]:
        result = engine.evaluate(doc, package)
        return result.denials, result.warnings

    return _outcome(read)


def opa_outcome(package: str, values: dict[str, list[Any]] | None, error: str = "") -> tuple:
    if values is None:
        return ("error", error)

    def read() -> tuple[Any, ...]:
        rules = {rule: (values[rule] or [None])[0] for rule in ("deny", "warn")}
        return read_rule(package, "deny", rules["deny"]), read_rule(package, "warn", rules["warn"])

    return _outcome(read)


def opa_outcomes(server: OpaServer, package: str, docs: list[Any]) -> list[tuple[Any, ...]]:
    """OPA's outcome for each document: one request for the batch, one per document if any
    document fails (a built-in error fails the whole batch)."""
    batch = server.evaluate_batch(package, docs)
    if batch is not None:
        return [opa_outcome(package, values) for values in batch]
    outcomes = []
    for doc in docs:
        response = server.data(package.replace(".", "/"), doc)
        if response.status_code != 200:
            outcomes.append(opa_outcome(package, None, response.text))
        else:
            document = response.json().get("result", {})
            values = {
                rule: [document[rule]] if rule in document else [] for rule in ("deny", "warn")
            }
            outcomes.append(opa_outcome(package, values))
    return outcomes


def _numbers(value: Any) -> Any:
    """``value`` with every number a float to 15 digits: regopy prints 0.0 as 0 and floats
    with fewer digits (policies/README.md), the same numbers printed differently."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(f"{value:.15g}")
    if isinstance(value, list):
        return [_numbers(item) for item in value]
    return {key: _numbers(item) for key, item in value.items()}


def _message(message: str) -> str:
    """A message that prints a JSON value (a policy's non-string message) as that value;
    regopy also orders object keys that JSON escapes differently."""
    try:
        return json.dumps(_numbers(json.loads(message)), sort_keys=True)
    except ValueError:
        return message


def _finding(finding: Finding) -> tuple[str, str, str]:
    return _message(finding.message), finding.image or "", finding.code or ""


def agree(ours: tuple[Any, ...], theirs: tuple[Any, ...], *, texts: bool = True) -> bool:
    """Both failed, or regopy failed for a listed reason, or the same deny and warn sets
    (only the same sizes when ``texts`` is false: see :func:`corpus`)."""
    if ours[0] == theirs[0] == "error":
        return True
    if ours[0] == "error" and theirs[0] == "answer":
        return any(re.search(pattern, ours[1]) for pattern in RUNTIME_GAPS.values())
    if ours[0] != theirs[0]:
        return False
    if not texts:
        return [len(rule) for rule in ours[1:]] == [len(rule) for rule in theirs[1:]]
    return all(
        sorted(map(_finding, a)) == sorted(map(_finding, b))
        for a, b in zip(ours[1:], theirs[1:], strict=True)
    )


def corpus(policy: Policy) -> st.SearchStrategy[tuple[Any, bool]]:
    """Inputs for ``policy``, each with whether its messages must match word for word.

    Admission inputs and Statements (when the policy reads their fields) are shaped as
    attest builds them: same messages. Documents that set every ``input.*`` path the
    policy reads to arbitrary JSON put numbers and arrays where the policy formats
    strings with ``sprintf("%s")``, which regopy and OPA print differently (listed in
    policies/README.md): for those only the sizes of the deny and warn sets must match.
    """
    paths = input_paths(policy.text)
    heads = {path[0] for path in paths}
    choices = [documents_for(paths).map(lambda doc: (doc, False))]
    if heads & {"images", "request", "time"} or policy.package == "attest.admission":
        choices.append(admission_inputs().map(lambda doc: (doc, True)))
    if heads & {"predicate", "subject"} or policy.package != "attest.admission":
        template = json.loads(vector("slsa-statement-github-attest.json").read_text())
        choices.append(statements(template).map(lambda doc: (doc, True)))
    return st.one_of(choices)


def test_every_policy_is_found() -> None:
    where = {policy.where.split(":")[0] for policy in POLICIES}
    assert {"policies/", "tests/policy/conftest.py", "tests/decisions/test_replay.py"} <= where
    assert "tests/attestations/test_verification.py" in where
    assert len(POLICIES) >= 15


def test_opa_only_builtins_are_what_opa_has_and_regopy_lacks() -> None:
    interpreter = regopy.Interpreter()
    lacking = {name for name in opa_builtins() if not interpreter.is_builtin(name)}
    assert lacking - NOT_CALLS == OPA_ONLY_BUILTINS


@pytest.mark.parametrize("policy", POLICIES, ids=[p.where for p in POLICIES])
def test_regopy_and_opa_give_the_same_answers(server: OpaServer, policy: Policy) -> None:
    engine = _embedded(policy)
    refused = server.replace_policies(policy.modules)
    if isinstance(engine, str):
        if refused is None:  # OPA runs it: regopy may refuse only what it knowingly cannot run
            assert "embedded engine (regopy" in engine, engine
            assert unsupported_constructs(policy.where, policy.text, allow_with=False)
        return
    assert refused is None, f"OPA refuses what regopy compiles: {refused.text}"
    package = policy.package
    examples = 10 if policy.where == "policies/" else 4
    seen: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(corpus(policy), min_size=30, max_size=30))
    def same_answers(batch: list[tuple[Any, bool]]) -> None:
        docs = [doc for doc, _texts in batch]
        theirs = opa_outcomes(server, package, docs)
        for (doc, texts), opa_says in zip(batch, theirs, strict=True):
            ours = regopy_outcome(engine, package, doc)
            seen.append(ours[0] if ours[0] == "error" else f"deny={bool(ours[1])}")
            assert agree(ours, opa_says, texts=texts), (
                f"{policy.where}: regopy {ours} but OPA {opa_says} for input {json.dumps(doc)[:2000]}"
            )

    same_answers()
    assert len(seen) >= 30
    if policy.where == "policies/":  # the corpus reaches both answers of the default policy
        assert {"deny=True", "deny=False"} <= set(seen)


# One expression per line, each evaluated alone under both engines: the built-ins and
# forms policies use, with the arguments where engines tend to part (non-ASCII, sets,
# floats, escapes). A difference must be refused by the loader, be a RUNTIME_GAP, or be
# listed below (and in policies/README.md); an agreement must not be listed.
PROBES = r"""
object.union({"a": {"b": 1}}, {"a": {"c": 2}})
object.union_n([{"a": {"b": 1}}, {"a": {"c": 2}}])
object.get({"a": {"b": 1}}, ["a", "b"], 0)
object.get({"a": false}, "a", 0)
object.remove({"a": 1, "b": 2}, ["a"])
object.filter({"a": 1, "b": 2}, ["a"])
object.keys({"a": 1})
object.subset({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}})
sprintf("%v", [1.5])
sprintf("%d", [3])
sprintf("%v", [{"a": [1, "x"]}])
sprintf("%v", [{"b", "a"}])
sprintf("%s", [["a", "b"]])
sprintf("%s", [1])
sprintf("%d", [1.5])
sprintf("%d", [9007199254740993])
sprintf("%s %s", ["a"])
sprintf("%5s|", ["ab"])
sprintf("%.3s", ["abcdef"])
sprintf("%x", [255])
sprintf("%x", ["hi"])
sprintf("%.2f", [3.14159])
sprintf("%05d", [3])
sprintf("%q", ["x"])
sprintf("%s", [concat("", ["a", "b"])])
sprintf("%v", ["ü✓"])
sprintf("%v", [null])
format_int(255, 16)
format_int(-255, 16)
concat(",", ["b", "a"])
concat(",", {"b", "a"})
split("a.b.c", ".")
replace("aaa", "a", "b")
strings.replace_n({"a": "b", "b": "c"}, "ab")
trim_space("\t x \n")
lower("AB")
lower("ÄB")
upper("äb")
substring("héllo", 1, 3)
indexof("héllo", "l")
count("héllo")
startswith("abc", "")
endswith("abc", "bc")
regex.match("^a+$", "aaa")
regex.match("(?i)A", "a")
regex.match("\\pL", "ü")
regex.match("^.$", "ü")
regex.find_n("a.", "a1a2a3", 2)
regex.replace("a1b2", "\\d", "#")
glob.match("*.example.com", null, "a.b.example.com")
glob.match("*.example.com", ["."], "a.b.example.com")
glob.match("github.com/acme/*", null, "github.com/acme/my.app")
glob.match("github.com/acme/*", ["/"], "github.com/acme/my/app")
glob.match("{app,web}", null, "web")
glob.match("[!x]pp", null, "app")
glob.match("a\\*c", null, "a*c")
json.marshal({"b": 1, "a": [true, null]})
json.marshal("<&>")
json.unmarshal("{\"a\": 1.50}")
yaml.marshal({"a": [1, "x"]})
base64.encode("héllo")
base64.is_valid("a")
hex.encode("ü")
urlquery.encode("a b&c")
semver.compare("1.2.3-rc.1", "1.2.3")
semver.is_valid("v1.2.3")
units.parse_bytes("1KiB")
to_number("1e3")
to_number("0x10")
round(-2.5)
1 / 3
-7 % 3
0.1 + 0.2
max([1, 2.0])
sort([3, "a", 1, null, true])
{1, 2} | {2, 3}
time.parse_rfc3339_ns("2024-01-01T00:00:00Z")
time.parse_rfc3339_ns("2024-01-01T00:00:00.123456+01:00")
time.date(1772359200123456000)
time.diff(1772359200123456000, 0)
time.format(1772359200123456000)
time.add_date(1772359200123456000, 0, 1, 0)
crypto.sha256("abc")
walk({"a": [1]})
[k | some k, _ in [7, 8]]
strings.split_n("a,b,c", ",", 2)
net.cidr_contains("10.0.0.0/8", "10.1.1.1")
"""
VALUE_GAPS = {
    'sprintf("%s", [["a", "b"]])': "%s of an array prints nothing",
    'sprintf("%s", [1])': "%s of a number prints the number",
    'sprintf("%d", [9007199254740993])': "%d of an integer above 2^53",
    'concat(",", {"b", "a"})': "sets keep insertion order (OPA sorts them)",
    'lower("ÄB")': "lower/upper change ASCII letters only",
    'upper("äb")': "lower/upper change ASCII letters only",
    'regex.match("^.$", "ü")': "regular expressions match bytes, not characters",
    r'glob.match("a\\*c", null, "a*c")': "glob patterns have no backslash escapes",
    'to_number("0x10")': "to_number accepts hexadecimal and spaces (OPA fails)",
    'sort([3, "a", 1, null, true])': "sort orders mixed types differently",
    "[k | some k, _ in [7, 8]]": "some k, _ in over an array does not compile",
}
# What regopy refuses at compile time on its own (one-line error, no wrong answer).
COMPILE_GAPS = {"[k | some k, _ in [7, 8]]"}


def _probe_modules() -> list[tuple[str, str]]:
    return [
        (e, f"package probe{i}\nimport rego.v1\ndeny contains x if {{ x := {e} }}\n")
        for i, e in enumerate(line for line in PROBES.splitlines() if line.strip())
    ]


def test_builtin_probes_agree_or_are_known_gaps(server: OpaServer) -> None:
    server.replace_policies({})
    unexplained, stale = [], []
    for index, (expression, text) in enumerate(_probe_modules()):
        engine = _embedded(Policy(f"probe{index}.rego", {"m.rego": text}))
        assert server.put_policy(f"probe{index}", text).status_code == 200, expression
        (theirs,) = opa_outcomes(server, f"probe{index}", [{}])
        if isinstance(engine, str):
            ours: tuple[Any, ...] = ("refused", engine)
            known = "embedded engine (regopy" in engine or expression in COMPILE_GAPS
        else:
            ours = regopy_outcome(engine, f"probe{index}", {})
            known = False
        same = agree(ours, theirs) if ours[0] != "refused" else False
        if same and expression in VALUE_GAPS:
            stale.append(expression)
        elif not same and not known and expression not in VALUE_GAPS:
            unexplained.append(f"{expression}: regopy {ours} but OPA {theirs}")
    assert unexplained == []
    assert stale == []  # regopy now agrees: take it off the list (and policies/README.md)
