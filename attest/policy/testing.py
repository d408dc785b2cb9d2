"""``attest policy test``: run the ``test_*`` rules of ``*_test.rego`` files with the embedded engine.

A test passes when its rule is ``true``; ``false`` or undefined fails it, an
evaluation error is an error.  The tests run in a child process: regopy
crashes the whole process on some constructs (``with input as …`` over rules
that call built-ins), and a crash must become one failed test with a clear
reason, not the end of the run.  After a crash the child is restarted for the
remaining tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Literal

from attest.errors import PolicyError
from attest.policy.bundle import load_tests, package_of

_TEST_RULE = re.compile(r"^[ \t]*(test_\w+)\b(?=\s*(?:if\b|\{|:=|=|contains\b))", re.MULTILINE)
CHILD_TIMEOUT_SECONDS = 120.0
WITH_UNSUPPORTED = (
    "uses 'with', which the embedded engine (regopy) cannot evaluate over rules that call "
    "built-ins: call the policy's functions with a document instead, or run it with 'opa test'"
)


TestStatus = Literal["pass", "fail", "error"]


@dataclass(frozen=True)
class TestOutcome:
    """One test rule's result: ``pass``, ``fail`` or ``error`` (with why)."""

    module: str
    package: str
    rule: str
    status: TestStatus
    detail: str = ""
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"data.{self.package}.{self.rule}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 6),
        }


def _rule_end(code: str, head_end: int) -> int:
    """Where the rule whose head ends at ``head_end`` ends (its closing brace or line)."""
    brace = re.compile(r"\s*(?:if\s*)?\{").match(code, head_end)
    if not brace:
        line_end = code.find("\n", head_end)
        return len(code) if line_end < 0 else line_end
    depth = 0
    for index in range(brace.end() - 1, len(code)):
        if code[index] == "{":
            depth += 1
        elif code[index] == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return len(code)


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def discover(tests: dict[str, str]) -> tuple[list[tuple[str, str, str]], set[str], dict[str, str]]:
    """Every distinct ``test_*`` rule as ``(module, package, rule)`` in file order, the names
    of those that use ``with`` (the embedded engine cannot run them), and the test modules
    with those rules blanked out so the rest can compile."""
    from attest.policy.regopy import code_only

    found: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    uses_with: set[str] = set()
    runnable: dict[str, str] = {}
    for module, text in sorted(tests.items()):
        package = package_of(module, text)
        code = code_only(text)
        spans = []
        for match in _TEST_RULE.finditer(code):
            key = (package, match.group(1))
            end = _rule_end(code, match.end())
            spans.append((match.group(1), match.start(), end))
            if re.search(r"\bwith\s+(input|data)\b", code[match.start() : end]):
                uses_with.add(f"data.{package}.{match.group(1)}")
            if key not in seen:
                seen.add(key)
                found.append((module, package, match.group(1)))
        for rule, start, end in reversed(spans):
            if f"data.{package}.{rule}" in uses_with:
                text = _blank(text, start, end)
        runnable[module] = text
    return found, uses_with, runnable


def run_tests(path: str) -> list[TestOutcome]:
    """Run every test of the bundle directory (or file) ``path``."""
    from attest.policy.regopy import unsupported_constructs

    bundle, test_modules = load_tests(path)
    for name, text in sorted({**bundle.modules, **test_modules}.items()):
        problems = unsupported_constructs(name, text, allow_with=True)
        if problems:  # a passing test would prove nothing about what OPA answers
            raise PolicyError(f"policy tests {path}: {problems[0]}")
    cases, uses_with, runnable = discover(test_modules)
    if not cases:
        raise PolicyError(f"policy tests {path}: no test_* rules in any *_test.rego file")
    modules = {**bundle.modules, **runnable}
    unsupported = {
        (m, p, r): TestOutcome(m, p, r, "error", WITH_UNSUPPORTED)
        for m, p, r in cases
        if f"data.{p}.{r}" in uses_with
    }
    to_run = [case for case in cases if case not in unsupported]
    ran: list[TestOutcome] = []
    while len(ran) < len(to_run):
        ran.extend(_run_child(modules, to_run[len(ran) :]))
    by_case = {(o.module, o.package, o.rule): o for o in ran}
    return [unsupported.get(case) or by_case[case] for case in cases]


def _run_child(modules: dict[str, str], cases: list[tuple[str, str, str]]) -> list[TestOutcome]:
    """Run ``cases`` in one child; stops at a crash, reporting the test that crashed it."""
    request = json.dumps({"modules": modules, "tests": [[p, r] for _m, p, r in cases]})
    proc = subprocess.Popen(
        [sys.executable, "-m", "attest.policy.testing"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(request, timeout=CHILD_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err = f"tests did not finish within {CHILD_TIMEOUT_SECONDS:.0f}s"
    outcomes: list[TestOutcome] = []
    started = 0.0
    for line in out.splitlines():
        record = json.loads(line)
        if "compile_error" in record:
            raise PolicyError(f"policy tests do not compile: {record['compile_error']}")
        if record.get("start") is not None:
            started = time.monotonic()
            continue
        module, package, rule = cases[len(outcomes)]
        outcomes.append(
            TestOutcome(
                module, package, rule, record["status"], record.get("detail", ""), record["seconds"]
            )
        )
    if len(outcomes) < len(cases):
        module, package, rule = cases[len(outcomes)]
        how = (
            f"signal {-proc.returncode}" if proc.returncode and proc.returncode < 0 else err.strip()
        )
        outcomes.append(
            TestOutcome(
                module,
                package,
                rule,
                "error",
                f"the embedded engine crashed on this test ({how or 'no output'}); regopy cannot "
                "evaluate 'with input as …' over rules that call built-ins: call the policy's "
                "functions with a document instead, or run it with 'opa test'",
                time.monotonic() - started if started else 0.0,
            )
        )
    return outcomes


def _child_main() -> int:
    """The child side: compile, then one JSON line per test (a start line before each)."""
    import regopy
    from regopy import rego_shared as c

    from attest.policy.regopy import captured_stdout, compile_error_message

    request = json.loads(sys.stdin.read())
    interpreter = regopy.Interpreter()
    interpreter.strict_built_in_errors = True

    def load() -> None:
        for name, text in sorted(request["modules"].items()):
            interpreter.add_module(name, text)
        interpreter.set_input_term("{}")

    _result, error, printed = captured_stdout(load)
    if error is not None:
        print(json.dumps({"compile_error": compile_error_message(printed, error)}), flush=True)
        return 0
    for package, rule in request["tests"]:
        print(json.dumps({"start": f"{package}.{rule}"}), flush=True)
        began = time.monotonic()
        status, detail = _evaluate(c, interpreter, f"data.{package}.{rule}")
        seconds = time.monotonic() - began
        print(json.dumps({"status": status, "detail": detail, "seconds": seconds}), flush=True)
    return 0


def _evaluate(c: Any, interpreter: Any, query: str) -> tuple[str, str]:
    from attest.policy.regopy import captured_stdout, runtime_errors

    output, error, printed = captured_stdout(lambda: c.rego_query(interpreter._impl, query))
    if not output:
        reason = error or c.rego_get_error(interpreter._impl)
        return "error", (printed.strip().splitlines() or [str(reason)])[0]
    try:
        if not c.rego_output_ok(output):
            return "error", "; ".join(runtime_errors(c.rego_output_node(output)))
        text = c.rego_output_string(output)
    finally:
        c.rego_free_output(output)
    if text == "undefined":
        return "fail", "undefined"
    value = json.loads(text)
    if isinstance(value, list):
        value = value[0] if value else {}
    expressions = value.get("expressions") or [None]
    if expressions[0] is True:
        return "pass", ""
    return "fail", f"value {json.dumps(expressions[0])[:80]}"


if __name__ == "__main__":
    sys.exit(_child_main())
