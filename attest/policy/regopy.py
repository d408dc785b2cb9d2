"""The embedded Rego engine: rego-cpp through ``regopy``, compiled once, one interpreter per thread.

The bundle is compiled once into a binary plan; every thread that evaluates
loads that plan into its own interpreter (sharing an interpreter across
threads crashes regopy).  Known regopy gaps are handled here, each as a clear
:class:`~attest.errors.PolicyError` instead of a wrong answer:

* one evaluation per call reads every verdict rule, through a generated entry
  point in the reserved package ``attest_internal.answers``
  (:func:`answers_module`);
* the input is passed as a regopy ``Input`` for speed, and again as JSON text
  when that evaluation fails (``Input(dict)`` breaks ``json.marshal(input)``),
  then with one evaluation per rule so the error names its rule;
* rules are read through compiled entry points, where a rule whose value is
  ``false`` is ``false`` (a plain query reads it as undefined);
* built-in errors are strict and become policy errors (not a JSON decode
  error, not a silently undefined ``deny``); ``time.parse_rfc3339_ns`` cannot
  parse times ending in ``Z``, and the message says so; output that is not
  JSON (``sprintf`` of a ``concat`` result leaves quotes unescaped) is a
  policy error naming the likely cause;
* modules are rejected at load when they use what regopy cannot run or runs
  differently from OPA (found by tests/peers/test_opa_differential.py against
  the real OPA; policies/README.md lists them): ``with`` (crashes the
  process), built-ins OPA has and regopy lacks (:data:`OPA_ONLY_BUILTINS`),
  built-ins whose answers differ (:data:`DIVERGENT_BUILTINS`), ``sprintf``
  ``%q`` (printed literally) and width or precision on ``%s``/``%v``
  (ignored), literal regular expressions with inline flags or Unicode
  classes (rejected or matched bytewise), and ``not`` over a call with a
  reference argument (``not f(input.x)``: OPA evaluates the reference outside
  the negation, so an undefined one makes the expression false, not true).

rego-cpp prints compile errors on stdout; they are captured and put in the
error message instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import regopy
from regopy import rego_shared as _c

from attest.errors import PolicyError
from attest.policy.bundle import RESERVED_PACKAGE, PolicyBundle, check_not_reserved, package_of
from attest.policy.engine import DEFAULT_PACKAGE, RULES, PolicyResult, check_package, read_rule
from attest.policy.forms import CALL, code_only, package_rules
from attest.policy.purity import nondeterministic_calls

ENGINE_NAME = f"regopy {regopy.__version__}"
ANSWERS_PACKAGE = f"{RESERVED_PACKAGE}.answers"
ANSWERS_MODULE = f"{RESERVED_PACKAGE}/answers.rego"
T = TypeVar("T")

# Built-ins of OPA v1.22 that regopy lacks (operators and print excluded: regopy runs
# those); calling one fails only at evaluation, with a garbled error.  The peers tests
# check this set against `opa capabilities` and regopy.
OPA_ONLY_BUILTINS = frozenset(
    {
        "all", "any", "cast_array", "cast_boolean", "cast_null", "cast_object", "cast_set",
        "cast_string", "crypto.x509.parse_and_verify_certificates_with_options",
        "graphql.is_valid", "graphql.parse", "graphql.parse_and_verify", "graphql.parse_query",
        "graphql.parse_schema", "graphql.schema_is_valid", "http.send", "json.match_schema",
        "json.verify_schema", "net.cidr_contains", "net.cidr_contains_matches",
        "net.cidr_expand", "net.cidr_intersects", "net.cidr_is_valid", "net.cidr_merge",
        "net.cidr_overlap", "net.lookup_ip_addr", "providers.aws.sign_req", "re_match",
        "rego.metadata.chain", "rego.metadata.rule", "rego.parse_module", "set_diff",
        "strings.render_template", "strings.split_n", "trace",
    }
)  # fmt: skip
# Built-ins regopy has but answers differently from OPA for ordinary arguments: a
# policy using one could allow what OPA denies, so such bundles are refused.
DIVERGENT_BUILTINS = {
    "object.union": "merges only top-level keys; OPA merges nested objects",
    "object.union_n": "merges only top-level keys; OPA merges nested objects",
    "strings.replace_n": "replaces repeatedly; OPA makes one pass",
    "walk": "gives one array of every pair; OPA gives each pair",
    "format_int": "negative numbers come out as two's complement",
    "hex.encode": "non-ASCII bytes come out sign-extended",
    "time.diff": "gives wrong differences",
    "time.format": "pads the fraction to nine digits",
    "semver.compare": "orders pre-releases after releases and refuses a v prefix",
    "semver.is_valid": "refuses a v prefix",
    "base64.is_valid": "accepts invalid input",
    "urlquery.encode": "encodes spaces as %20; OPA as +",
    "urlquery.encode_object": "encodes spaces as %20; OPA as +",
    "urlquery.decode_object": "leaves + undecoded",
    "yaml.marshal": "indents lists differently",
}
_WITH = re.compile(r"\bwith\s+(input|data)\b")
_STRING = r'"((?:[^"\\]|\\.)*)"'
_SPRINTF = re.compile(r"\bsprintf\s*\(\s*" + _STRING)
_SPRINTF_UNSUPPORTED = re.compile(r"%(q)|%[-+ #0]*(\d+|\d*\.\d+)[sv]")
_REGEX_LITERAL = re.compile(r"\bregex\.\w+\s*\(\s*" + _STRING)
_REGEX_UNSUPPORTED = re.compile(r"\(\?[a-zA-Z]|\\\\[pP]")
_NOT = re.compile(r"\bnot\s+[^\n;]*?[A-Za-z_][\w.]*\s*\(")
_REFERENCE = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\s*\[[^\]]*\])+")
_STDOUT_LOCK = threading.Lock()
_LIBC = ctypes.CDLL(None)


def _holding_the_gil(names: tuple[str, ...]) -> Any:
    """rego-cpp's functions ``names`` called *without* releasing the GIL (``ctypes.PyDLL``).

    regopy calls everything through ``ctypes.CDLL``, which releases and retakes the
    GIL around each call.  Building an input takes ~600 calls of a microsecond each;
    with another busy thread in the worker, every retake can wait for that thread's
    switch interval (5 ms): the convoy effect turned 0.4 ms into 200 ms.  Calls that
    take microseconds therefore keep the GIL; evaluation (regopy's own binding)
    releases it.
    """
    library = ctypes.PyDLL(_c.rego._name)
    for name in names:
        source, target = getattr(_c.rego, name), getattr(library, name)
        target.argtypes, target.restype = source.argtypes, source.restype
    return library


_HELD = _holding_the_gil(
    (
        "regoNewInput",
        "regoInputString",
        "regoInputInt",
        "regoInputFloat",
        "regoInputBoolean",
        "regoInputNull",
        "regoInputObjectItem",
        "regoInputObject",
        "regoInputArray",
        "regoSetInput",
        "regoOutputOk",
        "regoOutputJSONSize",
        "regoOutputJSON",
        "regoFreeOutput",
        "regoFreeInput",
    )
)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def unsupported_constructs(name: str, text: str, *, allow_with: bool = False) -> list[str]:
    """Reasons the embedded engine cannot run module ``name`` as OPA would (empty when it can)."""
    problems: list[str] = []
    code = code_only(text)
    for match in CALL.finditer(code):
        where, builtin = f"{name}:{_line_of(code, match.start())}", match.group(1)
        if builtin in OPA_ONLY_BUILTINS:
            problems.append(
                f"{where}: built-in {builtin} is not available in the embedded engine (regopy); "
                "use --opa-url"
            )
        elif builtin in DIVERGENT_BUILTINS:
            problems.append(
                f"{where}: built-in {builtin} gives other answers in the embedded engine (regopy "
                f"{DIVERGENT_BUILTINS[builtin]}); avoid it or use --opa-url"
            )
    if not allow_with:
        for match in _WITH.finditer(code):
            problems.append(
                f"{name}:{_line_of(code, match.start())}: 'with {match.group(1)}' is not supported "
                "by the embedded engine (regopy crashes on it); use --opa-url or call a function "
                "with the document instead"
            )
    for match in _NOT.finditer(code):
        arguments = _call_arguments(code, match.end())
        reference = _REFERENCE.search(arguments)
        if reference:
            problems.append(
                f"{name}:{_line_of(code, match.start())}: 'not' over a call with a reference "
                f"argument ({reference.group(0)}) is true in the embedded engine (regopy) "
                "when the reference is undefined, false in OPA; assign the reference to a "
                "variable before the 'not'"
            )
    for match in _SPRINTF.finditer(text):
        verb = _SPRINTF_UNSUPPORTED.search(match.group(1))
        if verb and verb.group(1):
            problems.append(
                f"{name}:{_line_of(text, match.start())}: sprintf verb %q is not supported by the "
                "embedded engine (regopy prints it literally); use %v or %s"
            )
        elif verb:
            problems.append(
                f"{name}:{_line_of(text, match.start())}: sprintf width or precision "
                f"({verb.group(0)}) is ignored by the embedded engine (regopy); pad with "
                "concat or use --opa-url"
            )
    for match in _REGEX_LITERAL.finditer(text):
        if _REGEX_UNSUPPORTED.search(match.group(1)):
            problems.append(
                f"{name}:{_line_of(text, match.start())}: inline flags (?i) and Unicode classes "
                "\\p in regular expressions are not supported by the embedded engine (regopy); "
                "use lower() or explicit character sets, or --opa-url"
            )
    return problems


def _call_arguments(code: str, start: int) -> str:
    """The text of the call arguments that begin at ``start`` (just after the '(')."""
    depth = 1
    for index in range(start, len(code)):
        depth += {"(": 1, ")": -1}.get(code[index], 0)
        if depth == 0:
            return code[start:index]
    return code[start:]


def captured_stdout(action: Callable[[], T]) -> tuple[T | None, BaseException | None, str]:
    """Run ``action`` with file descriptor 1 captured (rego-cpp prints compile errors there)."""
    with _STDOUT_LOCK, tempfile.TemporaryFile() as sink:
        sys.stdout.flush()
        saved = os.dup(1)
        result: T | None = None
        error: BaseException | None = None
        try:
            os.dup2(sink.fileno(), 1)
            try:
                result = action()
            except Exception as err:  # regopy raises RegoError, ValueError, AssertionError
                error = err
            _LIBC.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        sink.seek(0)
        printed = sink.read().decode("utf-8", "replace")
    return result, error, printed


def compile_error_message(printed: str, error: BaseException | None) -> str:
    """One line from rego-cpp's printed diagnostics (``file:line:col: message``)."""
    lines = [line.strip() for line in printed.splitlines() if line.strip()]
    if lines and lines[0] == "Errors:":
        lines = lines[1:]
    message = lines[0] if lines else ""
    where = next((line[3:].strip() for line in lines if line.startswith("-- ") and ":" in line), "")
    if message and where:
        return f"{where}: {message}"
    if message:
        return message
    text = str(error or "")
    found = re.findall(r"errormsg \d+:([^)\n]*)", text)
    return found[0].strip() if found else (text.strip().splitlines() or ["unknown error"])[0]


def _node_children(node: int) -> Iterator[int]:
    for index in range(_c.rego_node_size(node)):
        yield _c.rego_node_get(node, index)


def runtime_errors(node: int) -> list[str]:
    """Messages (with the offending value) of an error output node tree."""
    messages: list[str] = []
    stack = [node]
    while stack and len(messages) < 5:
        current = stack.pop()
        try:
            kind = _c.rego_node_type(current)
        except ValueError:
            continue
        if kind == _c.NodeKind.Error:
            message, value = "", ""
            for child in _node_children(current):
                child_kind = _c.rego_node_type(child)
                if child_kind == _c.NodeKind.ErrorMessage:
                    message = _c.rego_node_value(child)
                elif child_kind == _c.NodeKind.ErrorAst:
                    for leaf in _node_children(child):
                        with contextlib.suppress(Exception):
                            value = _c.rego_node_json(leaf)
            messages.append(_explain(message, value))
        else:
            stack.extend(reversed(list(_node_children(current))))
    return messages or ["evaluation failed without a message"]


def _explain(message: str, value: str) -> str:
    text = message or "error"
    if value and not value.startswith("rego-") and len(value) < 200:
        text += f" ({value})"
    if message == "Unable to parse time" and value.rstrip('"').endswith("Z"):
        text += (
            "; the embedded engine cannot parse RFC 3339 times ending in 'Z' "
            "(write +00:00, or use the input's *_ns numbers)"
        )
    return text


class _HeldInput(regopy.Input):  # type: ignore[misc]  # regopy ships no types
    """A regopy ``Input`` whose handle is freed without releasing the GIL."""

    def __init__(self, handle: int) -> None:  # no super(): the handle is built by fast_input
        self._impl: int | None = handle

    def __del__(self) -> None:
        if getattr(self, "_impl", None):
            _HELD.regoFreeInput(self._impl)
            self._impl = None


def fast_input(document: Any) -> Any:
    """A regopy ``Input`` for a JSON-like document, built with direct calls into rego-cpp.

    Same result as ``regopy.Input(document)``, about three times faster: exact type
    dispatch, bytes passed straight to C, no per-value wrapper functions, and the GIL
    kept across the calls (see :func:`_holding_the_gil`).
    """
    lib = _HELD
    handle = lib.regoNewInput()
    add_str, add_int, add_float = lib.regoInputString, lib.regoInputInt, lib.regoInputFloat
    add_bool, add_null = lib.regoInputBoolean, lib.regoInputNull
    add_item, add_object, add_array = (
        lib.regoInputObjectItem,
        lib.regoInputObject,
        lib.regoInputArray,
    )
    failed = 0

    def add(value: Any) -> None:
        nonlocal failed
        kind = type(value)
        if kind is str:
            failed |= add_str(handle, value.encode())
        elif kind is dict:
            for key, item in value.items():
                if type(key) is not str:
                    raise TypeError(f"object key {key!r} is not a string")
                failed |= add_str(handle, key.encode())
                add(item)
                failed |= add_item(handle)
            failed |= add_object(handle, len(value))
        elif kind is list or kind is tuple:
            for item in value:
                add(item)
            failed |= add_array(handle, len(value))
        elif kind is bool:
            failed |= add_bool(handle, value)
        elif kind is int:
            if not -(2**63) <= value < 2**63:
                raise ValueError(f"integer {value} does not fit the engine's 64 bits")
            failed |= add_int(handle, value)
        elif kind is float:
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{value} is not a JSON number")
            failed |= add_float(handle, value)
        elif value is None:
            failed |= add_null(handle)
        else:
            raise TypeError(f"{kind.__name__} is not JSON")

    wrapper = _HeldInput(handle)
    add(document)
    if failed:
        raise ValueError("the engine refused part of the input")
    return wrapper


def _set_input(interpreter: Any, value: Any) -> None:
    if _HELD.regoSetInput(interpreter._impl, value._impl) != _c.Code.OK:
        raise _c.RegoError(_c.rego_get_error(interpreter._impl))


def _set_input_text(interpreter: Any, input_doc: dict[str, Any]) -> None:
    """Hand ``input_doc`` over as JSON text (the slower path that marshalling needs)."""
    try:
        term = json.dumps(input_doc, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise PolicyError(f"policy input is not JSON: {err}") from None
    try:
        interpreter.set_input_term(term)
    except _c.RegoError as err:
        raise PolicyError(f"policy input rejected by the engine: {err}") from None


def _output_text(output: int) -> str:
    size = _HELD.regoOutputJSONSize(output)
    buffer = ctypes.create_string_buffer(size)
    if _HELD.regoOutputJSON(output, buffer, size) != _c.Code.OK:
        raise _c.RegoError("the engine could not write its output")
    return buffer.value.decode("utf-8")


class _ThreadState(threading.local):
    interpreter: Any = None
    bundle: Any = None


def answers_module(packages: list[str], allow_packages: frozenset[str]) -> str:
    """The generated module whose rule ``p<i>`` reads every verdict rule of ``packages[i]``.

    Each rule becomes a one-element array when defined and an empty one when undefined
    (an absent rule, or a complete rule whose body failed), so one query answers them
    all and undefined stays distinguishable from ``false``.  ``deny`` and ``warn`` are
    read whether or not the package seems to define them (a scan that missed one must
    not read as no denials); ``allow`` only in cosign-form packages, as before.
    """
    lines = [f"package {ANSWERS_PACKAGE}", ""]
    for index, package in enumerate(packages):
        rules = RULES + (("allow",) if package in allow_packages else ())
        fields = ", ".join(f'"{rule}": [x | x := data.{package}.{rule}]' for rule in rules)
        lines.append(f"p{index} := {{{fields}}}")
    return "\n".join(lines) + "\n"


class RegopyEngine:
    """Evaluates a :class:`PolicyBundle` in-process with rego-cpp."""

    def __init__(self, bundle: PolicyBundle) -> None:
        self.name = ENGINE_NAME
        self.bundle_hash = bundle.hash
        self.path = bundle.path
        problems = [
            problem
            for name, text in sorted(bundle.modules.items())
            for problem in unsupported_constructs(name, text)
        ]
        if problems:
            raise PolicyError(f"policy bundle {bundle.path}: {problems[0]}")
        for name, text in sorted(bundle.modules.items()):
            check_not_reserved(name, package_of(name, text))
        self.packages = frozenset(package_of(n, t) for n, t in bundle.modules.items())
        # cosign's form: packages that define ``allow`` have it read too (forms.py)
        self.allow_packages = frozenset(
            p for p in self.packages if "allow" in package_rules(bundle, p)
        )
        # json.marshal/yaml.marshal cannot serialise an Input built value by value:
        # bundles that marshal get their input as JSON text (slower, always right).
        self.text_input = any(".marshal" in code_only(t) for t in bundle.modules.values())
        # answers are a pure function of input and bundle unless it calls the clock & co.
        self.impure = nondeterministic_calls(bundle)
        self.cacheable = not self.impure
        self._answers = {
            package: f"{ANSWERS_PACKAGE.replace('.', '/')}/p{index}"
            for index, package in enumerate(sorted(self.packages))
        }
        self._plan = self._compile(bundle)
        self._local = _ThreadState()

    def _compile(self, bundle: PolicyBundle) -> bytes:
        entrypoints = (
            list(self._answers.values())
            + [
                f"{package.replace('.', '/')}/{rule}"
                for package in sorted(self.packages)
                for rule in RULES
            ]
            + [f"{package.replace('.', '/')}/allow" for package in sorted(self.allow_packages)]
        )
        generated = answers_module(sorted(self.packages), self.allow_packages)

        def build() -> bytes:
            builder = regopy.Interpreter()
            for name, text in sorted(bundle.modules.items()):
                builder.add_module(name, text)
            builder.add_module(ANSWERS_MODULE, generated)
            compiled = builder.build(None, entrypoints)
            if not compiled.ok():
                raise PolicyError("the compiler rejected the bundle")
            with tempfile.TemporaryDirectory(prefix="attest-rego-") as tmp:
                plan = os.path.join(tmp, "plan.rbb")
                builder.save_bundle(plan, compiled, regopy.BundleFormat.Binary)
                with open(plan, "rb") as handle:
                    return handle.read()

        plan, error, printed = captured_stdout(build)
        if plan is None:
            raise PolicyError(
                f"policy bundle {bundle.path} does not compile: {compile_error_message(printed, error)}"
            )
        return plan

    def _thread_interpreter(self) -> tuple[Any, Any]:
        state = self._local
        if state.interpreter is None:
            interpreter = regopy.Interpreter()
            interpreter.strict_built_in_errors = True
            with tempfile.NamedTemporaryFile(prefix="attest-rego-", suffix=".rbb") as plan:
                plan.write(self._plan)
                plan.flush()
                loaded = interpreter.load_bundle(plan.name, regopy.BundleFormat.Binary)
            if not loaded.ok():
                raise PolicyError(f"policy bundle {self.path}: compiled plan failed to load")
            state.interpreter, state.bundle = interpreter, loaded
        return state.interpreter, state.bundle

    def _query(self, interpreter: Any, bundle: Any, entrypoint: str, what: str) -> Any:
        """The value of ``entrypoint`` (None when undefined); ``what`` names it in errors."""
        try:
            # Evaluation takes ~0.3 ms: this call releases the GIL, so the worker's other
            # requests run meanwhile.
            output = _c.rego.regoBundleQueryEntrypoint(
                interpreter._impl, bundle._impl, entrypoint.encode()
            )
        except (_c.RegoError, ValueError) as err:
            raise PolicyError(f"{what}: evaluation failed: {err}") from None
        if not output:  # regopy misses its own NULL check (ctypes gives None, not 0)
            raise PolicyError(f"{what}: evaluation failed: {_c.rego_get_error(interpreter._impl)}")
        try:
            if not _HELD.regoOutputOk(output):
                errors = runtime_errors(_c.rego_output_node(output))
                raise PolicyError(f"{what}: evaluation error: {'; '.join(errors)}")
            text = _output_text(output)
        finally:
            _HELD.regoFreeOutput(output)
        if text == "undefined":
            return None
        try:
            document = json.loads(text)
        except ValueError:
            raise PolicyError(
                f"{what}: the engine produced output that is not JSON ({text[:80]!r}); a regopy "
                "built-in bug, e.g. sprintf %s of a string made by concat: build it with concat"
            ) from None
        if isinstance(document, list):
            document = document[0] if document else {}
        expressions = document.get("expressions") if isinstance(document, dict) else None
        if not expressions:
            return None
        return expressions[0]

    def _query_all(
        self, interpreter: Any, bundle: Any, package: str, rules: tuple[str, ...]
    ) -> dict[str, Any]:
        """Every rule of ``rules`` in one evaluation of the generated entry point."""
        what = f"policy data.{package}"
        answers = self._query(interpreter, bundle, self._answers[package], what)
        if not isinstance(answers, dict):
            raise PolicyError(f"{what}: the generated entry point gave {type(answers).__name__}")
        values: dict[str, Any] = {}
        for rule in rules:
            found = answers.get(rule)
            if not isinstance(found, list) or len(found) > 1:
                raise PolicyError(f"{what}.{rule}: the generated entry point gave {found!r:.80}")
            values[rule] = found[0] if found else None
        return values

    def _query_each(
        self, interpreter: Any, bundle: Any, package: str, rules: tuple[str, ...]
    ) -> dict[str, Any]:
        """Every rule of ``rules``, one evaluation each: an error names the rule it is in."""
        prefix = package.replace(".", "/")
        return {
            rule: self._query(
                interpreter, bundle, f"{prefix}/{rule}", f"policy rule data.{package}.{rule}"
            )
            for rule in rules
        }

    def evaluate(self, input_doc: dict[str, Any], package: str = DEFAULT_PACKAGE) -> PolicyResult:
        """``deny`` and ``warn`` (and cosign's ``allow``) of ``package`` for ``input_doc``.

        One evaluation reads them all (:func:`answers_module`).  The input is handed
        over as a regopy ``Input`` (about three times faster than JSON text, and the
        engine reads input at roughly a microsecond per byte), except for bundles that
        marshal values to JSON/YAML, which fails on that path.  Any evaluation error is
        retried once with the input as JSON text and each rule evaluated on its own
        (so an error names its rule); that answer stands.
        """
        check_package(package)
        if package not in self.packages:
            raise PolicyError(f"policy bundle {self.path} has no package {package}")
        interpreter, bundle = self._thread_interpreter()
        rules = RULES + (("allow",) if package in self.allow_packages else ())
        try:
            if self.text_input:
                _set_input_text(interpreter, input_doc)
            else:
                _set_input(interpreter, fast_input(input_doc))  # the engine keeps a copy
            values = self._query_all(interpreter, bundle, package, rules)
        except (PolicyError, _c.RegoError, TypeError, ValueError):
            _set_input_text(interpreter, input_doc)
            values = self._query_each(interpreter, bundle, package, rules)
        return PolicyResult(
            denials=read_rule(package, "deny", values["deny"]),
            warnings=read_rule(package, "warn", values["warn"]),
            engine=self.name,
            bundle_hash=self.bundle_hash,
            allow=values.get("allow"),
        )

    def close(self) -> None:
        self._local = _ThreadState()
