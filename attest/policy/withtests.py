"""Run OPA test rules that use ``with`` on the embedded engine, which crashes on ``with``.

A test rule ``test_x if { s1; e2 with input as v; s3 }`` is split into its
statements and run as a chain of queries, carrying the variable bindings of
each query into the next as ``name := <value>`` (values written back as Rego
terms, so sets stay sets).  A statement with ``with`` clauses is run alone:

* ``with input as V`` / ``with input.a.b as V``: ``V`` is evaluated first (under
  the outer input and the bindings so far), then the statement runs with that
  input (or the outer input with ``a.b`` replaced);
* ``with time.now_ns as V`` (a built-in replaced by a value): every call of it in
  the modules is replaced by ``V``;
* ``with data.pkg.rule as V``: an interpreter whose modules have every
  definition of ``rule`` in ``pkg`` blanked and one added module
  ``package pkg`` / ``rule := V``; a path no module defines is added the same way.

A statement that yields several results (``some x in xs``) is backtracked over,
as Rego does: the test passes when one chain of results reaches the end with
the last statement true.  What cannot be rewritten faithfully (a function replaced by
a function, ``with f as g``, a ``with`` over a whole package, rules with several bodies or
``else``) is a test error saying so: a test that cannot run is never a pass.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from attest.policy.bundle import package_of
from attest.policy.forms import defined_rules, top_level_spans

MAX_QUERIES = 10_000
_VAR = re.compile(r"[A-Za-z_]\w*\Z")
_PATH = re.compile(r"(input|data)((?:\.[A-Za-z_]\w*)*)\Z")
_FUNCTION = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\Z")
_WITH_WORD = re.compile(r"(?<![\w.])with\s")
_AS_WORD = re.compile(r"\sas\s")
_HEAD = re.compile(r"[ \t]*test_\w+[ \t]*(?:if\b)?[ \t]*")
INTERNAL = "__attest_"


class Unrunnable(Exception):
    """A test rule this rewrite cannot run as OPA would (the message says why)."""


@dataclass(frozen=True)
class Step:
    """One query of the chain: Rego text and its ``with`` clauses ``(target, value text)``."""

    query: str
    clauses: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"query": self.query, "with": [list(c) for c in self.clauses]}


def _depths(code: str) -> list[int]:
    """Bracket depth before each character of comment-free ``code``."""
    depths, depth = [], 0
    for char in code:
        if char in ")]}":
            depth = max(0, depth - 1)
        depths.append(depth)
        if char in "([{":
            depth += 1
    return depths


def rule_body(text: str, code: str, start: int, end: int) -> tuple[int, int]:
    """Start and end offsets of the body of the test rule spanning ``start:end``."""
    head = _HEAD.match(code, start)
    if head is None:
        raise Unrunnable("the rule head is not 'test_name if { … }'")
    position = head.end()
    if position < end and code[position] == "{":
        close = code.rfind("}", position, end)
        body = (position + 1, close)
    else:
        body = (position, end)
    if re.search(r"\belse\b", code[body[1] : end]) or code[body[1] + 1 : end].strip():
        raise Unrunnable("rules with 'else' or several bodies are not supported with 'with'")
    return body


def statements(text: str, code: str, start: int, end: int) -> list[tuple[str, str]]:
    """The body's statements as ``(text, code)``: split on ';' and newlines at depth 0, a
    line that starts with 'with' joining the statement before it."""
    depths = _depths(code[start:end])
    parts: list[tuple[int, int]] = []
    begin = start
    for offset, char in enumerate(code[start:end]):
        if depths[offset] == 0 and char in ";\n":
            parts.append((begin, start + offset))
            begin = start + offset + 1
    parts.append((begin, end))
    joined: list[tuple[str, str]] = []
    for a, b in parts:
        piece, piece_code = text[a:b].strip(), code[a:b].strip()
        if not piece_code:
            continue
        if joined and (piece_code.startswith("with ") or joined[-1][1].endswith(("with", ","))):
            last_text, last_code = joined[-1]
            joined[-1] = (f"{last_text} {piece}", f"{last_code} {piece_code}")
        else:
            joined.append((piece, piece_code))
    return joined


def split_with(text: str, code: str) -> Step:
    """One statement as a :class:`Step`: the expression and its ``with`` clauses."""
    depths = _depths(code)
    words = list(_WITH_WORD.finditer(code))
    if any(depths[m.start()] for m in words):
        raise Unrunnable("'with' inside a comprehension or a call is not supported")
    cuts = [m.start() for m in words]
    if not cuts:
        return Step(text)
    expression = text[: cuts[0]].strip()
    clauses = []
    for index, cut in enumerate(cuts):
        stop = cuts[index + 1] if index + 1 < len(cuts) else len(code)
        clause, clause_code = text[cut + 4 : stop], code[cut + 4 : stop]
        as_at = next(
            (m for m in _AS_WORD.finditer(clause_code) if depths[cut + 4 + m.start()] == 0), None
        )
        if as_at is None:
            raise Unrunnable(f"cannot read the with clause {clause.strip()[:60]!r}")
        target, value = clause[: as_at.start()].strip(), clause[as_at.end() :].strip()
        if target == "data" or not (_PATH.match(target) or _FUNCTION.match(target)):
            raise Unrunnable(
                f"'with {target} as …' replaces the whole data document: only input, "
                "input.<path>, data.<package>.<rule> and built-in functions (by a value) "
                "can be run by the embedded engine"
            )
        clauses.append((target, value))
    return Step(expression, tuple(clauses))


_IMPORT = re.compile(
    r"^[ \t]*import[ \t]+((?:data|input)(?:\.[A-Za-z_]\w*)*)(?:[ \t]+as[ \t]+([A-Za-z_]\w*))?",
    re.MULTILINE,
)
_NAME = re.compile(r"(?<![\w.$])([A-Za-z_]\w*)(?![\w])")


def module_names(text: str, package: str, rules: frozenset[str]) -> dict[str, str]:
    """What bare names mean in a module outside it: import aliases and the package's rules
    (a query runs at the root of ``data``, where neither is in scope)."""
    from attest.policy.forms import code_only

    names = {rule: f"data.{package}.{rule}" for rule in rules}
    for match in _IMPORT.finditer(code_only(text)):
        path = match.group(1)
        if path in ("data", "input"):
            continue
        names[match.group(2) or path.rsplit(".", 1)[1]] = path
    return names


def qualify(text: str, code: str, names: dict[str, str]) -> str:
    """``text`` with every bare name of ``names`` replaced by its full reference (a name
    being assigned, ``x :=``, is a local variable and stays)."""
    out, last = [], 0
    for match in _NAME.finditer(code):
        name = match.group(1)
        if name not in names or re.match(r"\s*:=", code[match.end() :]):
            continue
        out.append(text[last : match.start()] + names[name])
        last = match.end()
    return "".join(out) + text[last:]


def plan(text: str, start: int, end: int, names: dict[str, str]) -> list[Step]:
    """The chain of steps that runs the test rule at ``text[start:end]`` (group plain
    statements together; each statement with ``with`` alone); ``names`` as
    :func:`module_names` gives them."""
    from attest.policy.forms import code_only

    code = code_only(text)
    body_start, body_end = rule_body(text, code, start, end)
    steps: list[Step] = []
    plain: list[str] = []
    for piece, piece_code in statements(text, code, body_start, body_end):
        piece = qualify(piece, piece_code, names)
        step = split_with(piece, code_only(piece))
        if step.clauses:
            if plain:
                steps.append(Step("; ".join(plain)))
                plain = []
            steps.append(step)
        else:
            plain.append(piece)
    if plain:
        steps.append(Step("; ".join(plain)))
    return steps


def definition_spans(text: str, rule: str) -> list[tuple[int, int]]:
    """Where ``text`` defines top-level rule ``rule`` (each span to blank it)."""
    from attest.policy.forms import code_only

    code = code_only(text)
    lines = top_level_spans(code)
    head = re.compile(rf"[ \t]*(?:default[ \t]+)?{re.escape(rule)}\b(?![ \t]*\.)")
    spans = []
    for index, (start, _end) in enumerate(lines):
        if not head.match(code, start) or code[start:_end].strip().startswith(
            ("import", "package")
        ):
            continue
        stop = len(code)
        for later_start, _later_end in lines[index + 1 :]:
            if code[later_start:_later_end].strip() and not re.match(
                r"\s*(else\b|\{)", code[later_start:_later_end]
            ):
                stop = later_start
                break
        spans.append((start, stop))
    return spans


def mock_calls(modules: dict[str, str], function: str, term: str) -> dict[str, str]:
    """``modules`` with every call of built-in ``function`` replaced by the value ``term``
    (OPA's ``with time.now_ns as 1``: the call returns that value)."""
    from attest.policy.forms import code_only
    from attest.policy.regopy import _call_arguments

    call = re.compile(rf"(?<![\w.]){re.escape(function)}\s*\(")
    changed = {}
    for name, text in modules.items():
        code = code_only(text)
        for match in reversed(list(call.finditer(code))):
            end = match.end() + len(_call_arguments(code, match.end())) + 1
            text = text[: match.start()] + f"({term})" + text[end:]
            code = code[: match.start()] + f"({term})" + code[end:]
        changed[name] = text
    return changed


def override_modules(modules: dict[str, str], path: str, term: str, number: int) -> dict[str, str]:
    """``modules`` with ``data.<path>`` (or calls of built-in ``path``) replaced by ``term``."""
    if not path.startswith("data."):
        return mock_calls(modules, path, term)
    segments = path.split(".")[1:]
    if len(segments) < 2:
        raise Unrunnable(f"'with {path} as …' replaces a whole package")
    package, rule = ".".join(segments[:-1]), segments[-1]
    changed = dict(modules)
    for name, text in modules.items():
        declared = package_of(name, text)
        if declared == ".".join(segments) or declared.startswith(".".join(segments) + "."):
            raise Unrunnable(f"'with {path} as …' replaces a package")
        for depth in range(1, len(segments) - 1):
            prefix = ".".join(segments[:depth])
            if declared == prefix and segments[depth] in defined_rules(text):
                raise Unrunnable(
                    f"'with {path} as …' replaces part of rule data.{prefix}.{segments[depth]}"
                )
        if declared == package:
            for begin, stop in reversed(definition_spans(text, rule)):
                text = text[:begin] + re.sub(r"[^\n]", " ", text[begin:stop]) + text[stop:]
            changed[name] = text
    changed[f"{INTERNAL}with_{number}.rego"] = f"package {package}\n\n{rule} := {term}\n"
    return changed


# -- the child side: evaluation with regopy ---------------------------------------------


class RegoSet(list):  # type: ignore[type-arg]
    """A Rego set read from the engine (kept apart from arrays so it is written back as a set)."""


def node_term(c: Any, node: int) -> Any:
    """An engine output node as Python: dict (keys as Rego text), list, RegoSet, or a
    scalar kept as its JSON text in a tuple ``("scalar", text)``."""
    kind = c.rego_node_type(node)
    children = [c.rego_node_get(node, i) for i in range(c.rego_node_size(node))]
    if kind in (c.NodeKind.Term, c.NodeKind.Scalar):
        return node_term(c, children[0])
    if kind == c.NodeKind.Array:
        return [node_term(c, child) for child in children]
    if kind == c.NodeKind.Set:
        return RegoSet(node_term(c, child) for child in children)
    if kind == c.NodeKind.Object:
        result = {}
        for item in children:
            key, value = (c.rego_node_get(item, i) for i in range(2))
            result[render(node_term(c, key))] = node_term(c, value)
        return result
    if kind == c.NodeKind.Boolean:
        return ("scalar", c.rego_node_value(node))
    return ("scalar", c.rego_node_json(node))


def render(term: Any) -> str:
    """Rego source text for a term from :func:`node_term`."""
    if isinstance(term, RegoSet):
        return "{" + ", ".join(render(t) for t in term) + "}" if term else "set()"
    if isinstance(term, list):
        return "[" + ", ".join(render(t) for t in term) + "]"
    if isinstance(term, dict):
        return "{" + ", ".join(f"{k}: {render(v)}" for k, v in term.items()) + "}"
    return str(term[1])


def replace_path(document: Any, path: list[str], value: Any) -> Any:
    """``document`` with the object path ``path`` set to ``value`` (objects made on the way)."""
    if not path:
        return value
    base = dict(document) if isinstance(document, dict) else {}
    key = json.dumps(path[0])
    base[key] = replace_path(base.get(key), path[1:], value)
    return base


class Chain:
    """Runs one test plan; ``make`` builds an interpreter from modules (set to strict)."""

    def __init__(self, c: Any, modules: dict[str, str], make: Any, base: Any) -> None:
        self.c, self.modules, self.make, self.base = c, modules, make, base
        self.interpreters: dict[str, Any] = {}
        self.queries = 0

    def query(self, interpreter: Any, input_term: Any, text: str) -> list[dict[str, Any]]:
        """Every result's bindings of ``text``; :class:`RuntimeError` on an engine error."""
        from attest.policy.regopy import captured_stdout, runtime_errors

        self.queries += 1
        if self.queries > MAX_QUERIES:
            raise RuntimeError(f"more than {MAX_QUERIES} queries: too many results to backtrack")
        interpreter.set_input_term(render(input_term))
        c = self.c
        output, error, printed = captured_stdout(lambda: c.rego_query(interpreter._impl, text))
        if not output:
            reason = error or c.rego_get_error(interpreter._impl)
            raise RuntimeError((printed.strip().splitlines() or [str(reason)])[0])
        try:
            if not c.rego_output_ok(output):
                raise RuntimeError("; ".join(runtime_errors(c.rego_output_node(output))))
            root = c.rego_output_node(output)
            results: list[dict[str, Any]] = []
            if c.rego_node_type(root) != c.NodeKind.Results:
                return results  # undefined
            for index in range(c.rego_node_size(root)):
                result = c.rego_node_get(root, index)
                bindings: dict[str, Any] = {}
                for part_index in range(c.rego_node_size(result)):
                    part = c.rego_node_get(result, part_index)
                    if c.rego_node_type(part) != c.NodeKind.Bindings:
                        continue
                    for b in range(c.rego_node_size(part)):
                        binding = c.rego_node_get(part, b)
                        var = c.rego_node_value(c.rego_node_get(binding, 0))
                        if _VAR.match(var):
                            bindings[var] = node_term(c, c.rego_node_get(binding, 1))
                results.append(bindings)
            return results
        finally:
            c.rego_free_output(output)

    def interpreter_for(self, overrides: list[tuple[str, str]]) -> Any:
        if not overrides:
            return self.base
        key = json.dumps(overrides)
        if key not in self.interpreters:
            modules = self.modules
            for number, (path, term) in enumerate(overrides):
                modules = override_modules(modules, path, term, number)
            from attest.policy.regopy import captured_stdout, compile_error_message

            made, error, printed = captured_stdout(lambda: self.make(modules))
            if made is None:
                raise RuntimeError(
                    f"the test does not compile with its data replaced: "
                    f"{compile_error_message(printed, error)}"
                )
            self.interpreters[key] = made
        return self.interpreters[key]

    def run(self, steps: list[dict[str, Any]], input_term: Any) -> bool:
        return self._from(steps, 0, {}, input_term)

    def _from(
        self, steps: list[dict[str, Any]], index: int, bound: dict[str, Any], input_term: Any
    ) -> bool:
        if index == len(steps):
            return True
        step = steps[index]
        prefix = "".join(
            f"{v} := {render(t)}; " for v, t in bound.items() if not v.startswith(INTERNAL)
        )
        interpreter, step_input, overrides = self.base, input_term, []
        for target, value_text in step["with"]:
            query = f"{prefix}{INTERNAL}v := ({value_text})"
            if _PATH.match(target):
                found = self.query(self.base, input_term, query)
            else:
                try:
                    found = self.query(self.base, input_term, query)
                except RuntimeError:
                    found = []
                if not found:  # a function reference has no value of its own
                    raise Unrunnable(
                        f"'with {target} as {value_text[:40]}' mocks a function with another "
                        "function: only a value can replace a function in the embedded engine"
                    )
            if not found:
                return False  # an undefined with value makes the expression undefined
            value = found[0][f"{INTERNAL}v"]
            if target.startswith("input"):
                step_input = replace_path(step_input, target.split(".")[1:], value)
            else:
                overrides.append((target, render(value)))
        interpreter = self.interpreter_for(overrides)
        for result in self.query(
            interpreter, step_input, f"{prefix}{INTERNAL}t := true; {step['query']}"
        ):
            if self._from(steps, index + 1, {**bound, **result}, input_term):
                return True
        return False
