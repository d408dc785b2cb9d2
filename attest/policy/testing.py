"""``attest policy test``: run the ``test_*`` rules of ``*_test.rego`` files with the embedded engine.

A test passes when its rule is ``true``; ``false`` or undefined fails it, an
evaluation error is an error.  Test rules that use ``with`` (on which regopy
crashes) are rewritten into a chain of queries with the substituted input or
data (:mod:`attest.policy.withtests`); one that cannot be rewritten is an
error, never a skip.  The tests run in a child process: a crash of the engine
must become one failed test with a clear reason, not the end of the run.
After a crash the child is restarted for the remaining tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

from attest.errors import PolicyError
from attest.policy.bundle import load_tests, package_of
from attest.policy.forms import defined_rules
from attest.policy.withtests import Chain, Step, Unrunnable, module_names, plan

_TEST_RULE = re.compile(r"^[ \t]*(test_\w+)\b(?=\s*(?:if\b|\{|:=|=|contains\b))", re.MULTILINE)
CHILD_TIMEOUT_SECONDS = 120.0


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
    line: int = 0

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
            "line": self.line,
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


def discover(
    tests: dict[str, str], policies: dict[str, str] | None = None
) -> tuple[list[tuple[str, str, str]], dict[str, list[Step] | str], dict[str, str], dict[str, int]]:
    """Every distinct ``test_*`` rule as ``(module, package, rule)`` in file order; for
    those that use ``with``, the query chain that runs them (or why none can); the test
    modules with those rules blanked out so the rest can compile; each test's line."""
    from attest.policy.forms import code_only

    found: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    plans: dict[str, list[Step] | str] = {}
    lines: dict[str, int] = {}
    runnable: dict[str, str] = {}
    rules: dict[str, frozenset[str]] = {}
    for module, text in {**(policies or {}), **tests}.items():
        package = package_of(module, text)
        rules[package] = rules.get(package, frozenset()) | defined_rules(text)
    for module, text in sorted(tests.items()):
        package = package_of(module, text)
        code = code_only(text)
        names = module_names(text, package, rules[package])
        spans = []
        for match in _TEST_RULE.finditer(code):
            key = (package, match.group(1))
            name = f"data.{package}.{match.group(1)}"
            end = _rule_end(code, match.end())
            spans.append((name, match.start(), end))
            if re.search(r"\bwith\s+(input|data)\b|\bwith\s", code[match.start() : end]):
                try:
                    plans[name] = plan(text, match.start(), end, names)
                except Unrunnable as err:
                    plans[name] = str(err)
            if key not in seen:
                seen.add(key)
                lines[name] = code.count("\n", 0, match.start()) + 1
                found.append((module, package, match.group(1)))
        for name, start, end in reversed(spans):
            if name in plans:
                text = _blank(text, start, end)
        runnable[module] = text
    return found, plans, runnable, lines


def run_tests(path: str) -> list[TestOutcome]:
    """Run every test of the bundle directory (or file) ``path``."""
    from attest.policy.regopy import unsupported_constructs

    bundle, test_modules = load_tests(path)
    for name, text in sorted({**bundle.modules, **test_modules}.items()):
        problems = unsupported_constructs(name, text, allow_with=True)
        if problems:  # a passing test would prove nothing about what OPA answers
            raise PolicyError(f"policy tests {path}: {problems[0]}")
    cases, plans, runnable, lines = discover(test_modules, bundle.modules)
    if not cases:
        raise PolicyError(f"policy tests {path}: no test_* rules in any *_test.rego file")
    modules = {**bundle.modules, **runnable}
    unrunnable = {
        (m, p, r): TestOutcome(m, p, r, "error", f"cannot run: {plans[f'data.{p}.{r}']}")
        for m, p, r in cases
        if isinstance(plans.get(f"data.{p}.{r}"), str)
    }
    to_run = [case for case in cases if case not in unrunnable]
    chains = {
        name: [step.to_json() for step in steps]
        for name, steps in plans.items()
        if not isinstance(steps, str)
    }
    ran: list[TestOutcome] = []
    while len(ran) < len(to_run):
        ran.extend(_run_child(modules, to_run[len(ran) :], chains))
    by_case = {(o.module, o.package, o.rule): o for o in ran}
    return [
        replace(unrunnable.get(case) or by_case[case], line=lines[f"data.{case[1]}.{case[2]}"])
        for case in cases
    ]


def _run_child(
    modules: dict[str, str],
    cases: list[tuple[str, str, str]],
    chains: dict[str, list[dict[str, Any]]],
) -> list[TestOutcome]:
    """Run ``cases`` in one child; stops at a crash, reporting the test that crashed it."""
    request = json.dumps(
        {"modules": modules, "tests": [[p, r] for _m, p, r in cases], "chains": chains}
    )
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
                f"the embedded engine crashed on this test ({how or 'no output'}); "
                "run it with 'opa test'",
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

    def make(modules: dict[str, str]) -> Any:
        made = regopy.Interpreter()
        made.strict_built_in_errors = True
        for name, text in sorted(modules.items()):
            made.add_module(name, text)
        made.set_input_term("{}")
        return made

    interpreter, error, printed = captured_stdout(lambda: make(request["modules"]))
    if interpreter is None:
        print(json.dumps({"compile_error": compile_error_message(printed, error)}), flush=True)
        return 0
    for package, rule in request["tests"]:
        print(json.dumps({"start": f"{package}.{rule}"}), flush=True)
        began = time.monotonic()
        chain = request["chains"].get(f"data.{package}.{rule}")
        if chain is None:
            interpreter.set_input_term("{}")  # a chain before may have set another
            status, detail = _evaluate(c, interpreter, f"data.{package}.{rule}")
        else:
            status, detail = _run_chain(c, request["modules"], make, interpreter, chain)
        seconds = time.monotonic() - began
        print(json.dumps({"status": status, "detail": detail, "seconds": seconds}), flush=True)
    return 0


def _run_chain(
    c: Any, modules: dict[str, str], make: Any, interpreter: Any, steps: list[dict[str, Any]]
) -> tuple[str, str]:
    """A test rule with ``with``, run as its query chain (:mod:`attest.policy.withtests`)."""
    chain = Chain(c, modules, make, interpreter)
    try:
        passed = chain.run(steps, {})
    except Unrunnable as err:
        return "error", f"cannot run: {err}"
    except RuntimeError as err:
        return "error", str(err)
    return ("pass", "") if passed else ("fail", "undefined or false")


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


def _duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3f}ms"
    return f"{seconds:.3f}s"


def report_text(outcomes: list[TestOutcome], *, verbose: bool = False) -> str:
    """The report as ``opa test`` prints it: each test (only failures unless ``verbose``)
    under its ``file:line:``, then ``PASS: n/total`` and ``FAIL``/``ERROR`` counts."""
    lines: list[str] = []
    shown = [o for o in outcomes if verbose or o.status != "pass"]
    for outcome in shown:
        lines.append(f"{outcome.module}:{outcome.line}:")
        line = f"{outcome.name}: {outcome.status.upper()} ({_duration(outcome.seconds)})"
        lines.append(line + (f": {outcome.detail}" if outcome.detail and not verbose else ""))
    failing = [o for o in outcomes if o.status != "pass"]
    if verbose and failing:
        lines += ["-" * 80, "FAILURES", "-" * 80]
        for outcome in failing:
            lines += [f"{outcome.name}: {outcome.status.upper()}", f"  {outcome.detail}", ""]
    lines.append("-" * 80)
    total = len(outcomes)
    for status in ("pass", "fail", "error"):
        count = sum(1 for o in outcomes if o.status == status)
        if count:
            lines.append(f"{status.upper()}: {count}/{total}")
    return "\n".join(lines)
