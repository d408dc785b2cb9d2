"""Manifests from many places, and admission test suites (like ``kyverno test`` / ``gator verify``).

:func:`read_sources` gathers the texts ``attest admission review`` judges: files,
directories (every ``.yaml``/``.yml``/``.json`` below, sorted, hidden entries
skipped) and ``-`` for standard input; each may hold several YAML documents.

A suite (``attest admission test SUITE.yaml``) lists cases, each a set of
manifests with the result expected of every workload in it::

    config: admission.yaml            # optional, relative to the suite file
    cases:
      - name: signed image is admitted
        manifests: [deploy/web.yaml]  # files or directories, relative to the suite
        expect: allowed               # allowed | warn | denied
      - name: latest is refused
        manifest: {apiVersion: v1, kind: Pod, ...}   # or inline (a mapping or a list)
        expect: denied
        messages: ["uses the 'latest' tag"]           # each in some deny/warn message

``allowed`` means admitted without warnings, ``warn`` admitted with warnings,
``denied`` refused (``denied``, ``error`` and ``timed_out`` alike).  A case whose
manifests hold no workload, or whose expectation is not met, fails; a suite that
cannot be read is a :class:`~attest.errors.UsageError` naming the field.
"""

from __future__ import annotations

import os
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from admission.decide import Admission, Verifier
from admission.errors import BadAdmissionReview
from admission.review import load_review_input
from admission.verdict import Decision
from attest.errors import UsageError

MAX_INPUT_BYTES = 16 * 1024 * 1024
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
EXPECTATIONS = ("allowed", "warn", "denied")


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise BadAdmissionReview(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadAdmissionReview(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise BadAdmissionReview(f"{path}: {err.strerror}") from None


def _directory_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        found.extend(
            Path(directory, n)
            for n in names
            if n.endswith(MANIFEST_SUFFIXES) and not n.startswith(".")
        )
    return sorted(found)


def read_sources(paths: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """``(where, text)`` for each file of ``paths``: files, directories, ``-`` for stdin."""
    sources: list[tuple[str, str]] = []
    for path in paths:
        if path == "-":
            text = sys.stdin.read(MAX_INPUT_BYTES + 1)
            if len(text) > MAX_INPUT_BYTES:
                raise BadAdmissionReview(f"stdin: larger than {MAX_INPUT_BYTES} bytes")
            sources.append(("stdin", text))
        elif Path(path).is_dir():
            files = _directory_files(Path(path))
            if not files:
                raise BadAdmissionReview(f"{path}: no .yaml, .yml or .json files")
            sources.extend((str(f), _read(f)) for f in files)
        else:
            sources.append((path, _read(Path(path))))
    return sources


def review_sources(
    sources: list[tuple[str, str]],
    *,
    config_path: str | None = None,
    verifier: Verifier | None = None,
) -> list[Decision]:
    """One :class:`Decision` per workload of every source, with one admission service
    (every input is read before the first decision, so a bad file decides nothing)."""
    requests = [r for where, text in sources for r in load_review_input(text, where)]
    service = Admission(config_path, verifier=verifier, reload_interval=float("inf"))
    try:
        return [service.decide(request) for request in requests]
    finally:
        service.close()


def outcome_of(decision: Decision) -> str:
    """``allowed``, ``warn`` or ``denied``: what a suite expectation compares with."""
    if decision.result == "allowed":
        return "warn" if decision.warnings else "allowed"
    if decision.result == "warned":
        return "warn"
    return "denied"


@dataclass(frozen=True)
class Case:
    """One suite case: where its manifests come from and what is expected."""

    name: str
    sources: tuple[tuple[str, str], ...]
    expect: str
    messages: tuple[str, ...] = ()


@dataclass
class CaseResult:
    """A case after judging: its decisions and every mismatch (empty when it passed)."""

    case: Case
    decisions: list[Decision] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems and not self.error


def _field(case: dict[str, Any], key: str, where: str, kind: type, default: Any = None) -> Any:
    value = case.get(key, default)
    if value is not None and not isinstance(value, kind):
        raise UsageError(f"{where}: field '{key}' must be a {kind.__name__}")
    return value


def load_suite(path: str) -> tuple[str | None, list[Case]]:
    """The config path (absolute, or None) and the cases of suite file ``path``."""
    import yaml

    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"suite {path}: {err.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UsageError(f"suite {path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(document, dict):
        raise UsageError(f"suite {path}: must be a mapping with 'cases'")
    unknown = sorted(set(document) - {"apiVersion", "kind", "name", "config", "cases"})
    if unknown:
        raise UsageError(f"suite {path}: unknown field '{unknown[0]}'")
    base = Path(path).resolve().parent
    config = _field(document, "config", f"suite {path}", str)
    cases_doc = _field(document, "cases", f"suite {path}", list)
    if not cases_doc:
        raise UsageError(f"suite {path}: 'cases' must list at least one case")
    cases: list[Case] = []
    for index, case in enumerate(cases_doc):
        where = f"suite {path}: case {index + 1}"
        if not isinstance(case, dict):
            raise UsageError(f"{where}: must be a mapping")
        unknown = sorted(set(case) - {"name", "manifests", "manifest", "expect", "messages"})
        if unknown:
            raise UsageError(f"{where}: unknown field '{unknown[0]}'")
        name = _field(case, "name", where, str) or f"case {index + 1}"
        where = f"suite {path}: case {name!r}"
        expect = _field(case, "expect", where, str)
        if expect not in EXPECTATIONS:
            raise UsageError(f"{where}: 'expect' must be one of {', '.join(EXPECTATIONS)}")
        messages = _field(case, "messages", where, list, [])
        if not all(isinstance(m, str) for m in messages):
            raise UsageError(f"{where}: 'messages' must be a list of strings")
        files = _field(case, "manifests", where, list, [])
        inline = case.get("manifest")
        if bool(files) == (inline is not None):
            raise UsageError(f"{where}: give either 'manifests' (files) or 'manifest' (inline)")
        try:
            if files:
                sources = read_sources([str(base / str(f)) for f in files])
            else:
                documents = inline if isinstance(inline, list) else [inline]
                sources = [(f"{path} ({name})", yaml.safe_dump_all(documents))]
        except BadAdmissionReview as err:
            raise UsageError(f"{where}: {err}") from None
        cases.append(Case(name, tuple(sources), expect, tuple(messages)))
    return (str(base / config) if config else None), cases


def run_suite(
    path: str, *, config_path: str | None = None, verifier: Verifier | None = None
) -> list[CaseResult]:
    """Judge every case of suite ``path`` (``config_path`` overrides the suite's config)."""
    suite_config, cases = load_suite(path)
    results: list[CaseResult] = []
    for case in cases:
        began = time.monotonic()
        result = CaseResult(case)
        try:
            result.decisions = review_sources(
                list(case.sources), config_path=config_path or suite_config, verifier=verifier
            )
        except BadAdmissionReview as err:
            result.error = str(err)
        result.problems = [] if result.error else _mismatches(case, result.decisions)
        result.seconds = time.monotonic() - began
        results.append(result)
    return results


def _mismatches(case: Case, decisions: list[Decision]) -> list[str]:
    workloads = [d for d in decisions if d.checked]
    if not workloads:
        return ["no workload in the manifests (nothing was judged)"]
    problems = []
    for decision in workloads:
        got = outcome_of(decision)
        if got != case.expect:
            said = "; ".join((*decision.messages, *decision.warnings)) or "no messages"
            problems.append(
                f"{decision.kind} {decision.name}: expected {case.expect}, got {got} ({said})"
            )
    said_all = [m for d in workloads for m in (*d.messages, *d.warnings)]
    for wanted in case.messages:
        if not any(wanted in message for message in said_all):
            problems.append(f"no message contains {wanted!r}")
    return problems


def junit_xml(suite_name: str, results: list[CaseResult]) -> bytes:
    """The results as JUnit XML (one testsuite; failures for mismatches, errors for bad input)."""
    failures = sum(1 for r in results if r.problems)
    errors = sum(1 for r in results if r.error)
    total_seconds = sum(r.seconds for r in results)
    root = ET.Element("testsuites", tests=str(len(results)), failures=str(failures),
                      errors=str(errors), time=f"{total_seconds:.3f}")  # fmt: skip
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(results)),
                          failures=str(failures), errors=str(errors), skipped="0",
                          time=f"{total_seconds:.3f}")  # fmt: skip
    for result in results:
        case = ET.SubElement(suite, "testcase", classname=suite_name, name=result.case.name,
                             time=f"{result.seconds:.3f}")  # fmt: skip
        if result.error:
            ET.SubElement(case, "error", message=result.error[:500]).text = result.error
        elif result.problems:
            failure = ET.SubElement(case, "failure", message=result.problems[0][:500])
            failure.text = "\n".join(result.problems)
    written: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return written
