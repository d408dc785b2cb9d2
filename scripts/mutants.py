"""``make mutants``: break every registered security check and make sure a test notices.

The register is ``tests/security/checks/*.yaml`` (format in ``tests/security/README.md``):
each entry names a trust check (file, function), an exact ``find`` text and a
``replace`` text that breaks it, and the tests that must then fail.  For each entry
this script copies the repository into a temporary directory (the files git knows
about; ``tests/js/node_modules`` and ``.peers`` are linked, not copied), applies the
break there, and runs only the listed tests with this repository's virtualenv, from
the copy, with the copy first on ``PYTHONPATH`` (it checks that ``attest``,
``admission`` and ``tests`` really import from the copy before running pytest).

A break is *killed* when its tests fail (or hang past the timeout), *survived* when
they all pass.  The run fails when any break survives, when an entry is invalid
(duplicate id, missing file, ``find`` not occurring exactly once, a listed test
that does not exist, a break that does not compile), or when the unbroken tests
do not pass to begin with (the baseline: otherwise every break looks killed).

    .venv/bin/python scripts/mutants.py [-j 2] [--timeout 300] [--only ID ...] [--check]
                                        [--no-baseline] [--keep]

Exit codes: 0 every break killed; 1 a break survived or a run errored; 2 the
register itself is invalid (nothing was run).
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import contextlib
import fnmatch
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ROOT / "tests" / "security" / "checks"
REQUIRED = ("id", "guards", "file", "function", "find", "replace", "tests")
LINKED = ("tests/js/node_modules", ".peers")  # large or shared: linked into each copy
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")

# Run inside the copy: fail loudly unless the code under test comes from the copy,
# then hand over to pytest.
_BOOTSTRAP = """
import os, sys
copy = os.path.realpath(os.getcwd())
import attest, admission, tests
for module in (attest, admission, tests):
    where = os.path.realpath(module.__file__)
    if not where.startswith(copy + os.sep):
        sys.exit(f"mutants: {module.__name__} imports from {where}, not from the copy {copy}")
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


class RegisterError(Exception):
    """The register is unusable; the message names the entry and the cause."""


@dataclass(frozen=True)
class Entry:
    """One registered check and how to break it."""

    id: str
    guards: str
    file: str
    function: str
    find: str
    replace: str
    tests: tuple[str, ...]
    source: str  # the register file it came from


@dataclass
class Outcome:
    """What running one break gave."""

    entry: Entry
    result: str  # "killed" | "timeout" | "survived" | "error"
    seconds: float
    detail: str = ""
    log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result in ("killed", "timeout")


# -- the register ----------------------------------------------------------------------------


def load_register(directory: Path = CHECKS) -> list[Entry]:
    """Every entry of every ``*.yaml`` in ``directory``, validated; raises RegisterError."""
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise RegisterError(f"{directory}: no *.yaml register files")
    entries: list[Entry] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for path in files:
        where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        try:
            items = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            problems.append(f"{where}: not valid YAML ({' '.join(str(err).split())})")
            continue
        if not isinstance(items, list):
            problems.append(f"{where}: expected a list of entries")
            continue
        for index, item in enumerate(items):
            label = f"{where} entry {index + 1}"
            try:
                entry = _entry(item, str(where), label)
            except RegisterError as err:
                problems.append(str(err))
                continue
            if entry.id in seen:
                problems.append(f"{label}: id {entry.id!r} is also used in {seen[entry.id]}")
                continue
            seen[entry.id] = str(where)
            problems.extend(_validate(entry))
            entries.append(entry)
    if problems:
        raise RegisterError("\n".join(problems))
    return entries


def _entry(item: Any, source: str, label: str) -> Entry:
    if not isinstance(item, dict):
        raise RegisterError(f"{label}: expected a mapping")
    missing = [key for key in REQUIRED if key not in item]
    unknown = sorted(set(item) - set(REQUIRED))
    if missing or unknown:
        raise RegisterError(f"{label}: missing {missing or '-'}, unknown {unknown or '-'}")
    for key in ("id", "guards", "file", "function", "find", "replace"):
        if not isinstance(item[key], str) or (key != "replace" and not item[key].strip()):
            raise RegisterError(f"{label}: {key} must be a non-empty string")
    tests = item["tests"]
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise RegisterError(f"{label}: tests must be a non-empty list of pytest node ids")
    if not set(item["id"]) <= _ID_CHARS or item["id"].startswith("-"):
        raise RegisterError(f"{label}: id {item['id']!r} is not kebab-case")
    if item["find"] == item["replace"]:
        raise RegisterError(f"{label} ({item['id']}): replace is the same as find")
    return Entry(
        item["id"],
        item["guards"],
        item["file"],
        item["function"],
        item["find"],
        item["replace"],
        tuple(tests),
        source,
    )


def _continued(text: str, indent: int) -> str:
    """``text`` with every line after the first indented by ``indent`` more spaces."""
    first, *rest = text.split("\n")
    return "\n".join([first, *((" " * indent + line) if line else line for line in rest)])


def locate(text: str, find: str) -> list[tuple[int, int]]:
    """Where ``find`` occurs in ``text``: (position, indent of its later lines) for each.

    YAML block scalars lose the source's indentation, so the lines after the first
    may sit at any (common) extra indentation; the first line matches anywhere.
    """
    find = textwrap.dedent(find)
    if "\n" not in find:
        found, start = [], text.find(find)
        while start != -1:
            found.append((start, 0))
            start = text.find(find, start + 1)
        return found
    found = []
    for indent in range(0, 80):
        candidate, start = _continued(find, indent), 0
        while (start := text.find(candidate, start)) != -1:
            found.append((start, indent))
            start += 1
    return found


def apply(text: str, find: str, replace: str) -> str:
    """``text`` with the one occurrence of ``find`` replaced (``replace`` re-indented alike)."""
    ((start, indent),) = locate(text, find)
    old = _continued(textwrap.dedent(find), indent)
    new = _continued(textwrap.dedent(replace), indent)
    return text[:start] + new + text[start + len(old) :]


def _validate(entry: Entry) -> list[str]:
    label = f"{entry.source} {entry.id}"
    path = ROOT / entry.file
    if not path.is_file():
        return [f"{label}: file {entry.file} does not exist"]
    text = path.read_text()
    problems = []
    found = locate(text, entry.find)
    if len(found) != 1:
        problems.append(
            f"{label}: find occurs {len(found)} times in {entry.file} (needs exactly 1)"
        )
    elif not _inside_function(text, found[0][0], entry.find, entry.function):
        problems.append(f"{label}: find is not inside function {entry.function} of {entry.file}")
    for test in entry.tests:
        problem = _test_problem(test)
        if problem:
            problems.append(f"{label}: test {test}: {problem}")
    return problems


def _functions(tree: ast.AST) -> list[tuple[str, int, int]]:
    """(qualified name, first line, last line) of every function, method and class."""
    found: list[tuple[str, int, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                found.append((name, child.lineno, child.end_lineno or child.lineno))
                walk(child, f"{name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return found


def _inside_function(text: str, position: int, find: str, function: str) -> bool:
    """Whether ``find`` at ``position`` lies within a function or class named (or ending)
    ``function``; ``<module>`` accepts module-level code."""
    if function == "<module>":
        return True
    start = text[:position].count("\n") + 1
    end = start + textwrap.dedent(find).count("\n")
    for name, first, last in _functions(ast.parse(text)):
        if (name == function or name.endswith(f".{function}")) and first <= start <= end <= last:
            return True
    return False


def _test_problem(node_id: str) -> str | None:
    """Why ``node_id`` (path::[Class::]name[params]) names no test, or None."""
    path, sep, rest = node_id.partition("::")
    if not sep or not rest:
        return "expected tests/path.py::test_name"
    file = ROOT / path
    if not file.is_file():
        return f"{path} does not exist"
    parts = rest.split("[", 1)[0].split("::")
    names = {name for name, _first, _last in _functions(ast.parse(file.read_text()))}
    if ".".join(parts) not in names:
        return f"no test {'.'.join(parts)} in {path}"
    return None


# -- copies --------------------------------------------------------------------------------


_NOT_COPIED = {".git", ".venv", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache"}


def repository_files() -> list[str]:
    """The files to copy: what git tracks plus new files it does not ignore (outside a git
    checkout, e.g. an unpacked source archive: every file but caches and environments)."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        names = [name for name in done.stdout.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        names = [
            str(path.relative_to(ROOT))
            for path in ROOT.rglob("*")
            if not _NOT_COPIED & set(path.relative_to(ROOT).parts)
        ]
    return [n for n in names if (ROOT / n).is_file() and not n.startswith(LINKED)]


def make_copy(files: list[str], entry: Entry | None, keep: bool) -> Path:
    """A fresh copy of the repository under a temporary directory, with ``entry`` applied
    (removed again, unless ``keep``, when anything goes wrong)."""
    directory = Path(tempfile.mkdtemp(prefix=f"attest-mutant-{entry.id if entry else 'base'}-"))
    copy = directory / "repo"
    try:
        for name in files:
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)
        for name in LINKED:
            if (ROOT / name).exists():
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                (copy / name).symlink_to((ROOT / name).resolve())
        if entry is not None:
            target = copy / entry.file
            broken = apply(target.read_text(), entry.find, entry.replace)
            target.write_text(broken)
            try:
                compile(broken, str(target), "exec")
            except SyntaxError as err:
                raise RegisterError(
                    f"{entry.source} {entry.id}: the break does not compile ({err})"
                ) from None
    except BaseException:
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    return copy


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int | None, str]:
    """pytest on ``tests`` inside ``copy``; (exit code or None on timeout, output tail)."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(copy), *filter(None, [environment.get("PYTHONPATH")])]
    )
    environment.pop("PYTEST_ADDOPTS", None)
    command = [
        sys.executable,  # this checkout's environment (make mutants runs .venv/bin/python)
        "-c",
        _BOOTSTRAP,
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        f"timeout={max(10, int(timeout) - 20)}",  # pytest-timeout first, so teardown runs
        *tests,
    ]
    process = subprocess.Popen(
        command,
        cwd=copy,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        return None, output.decode(errors="replace")
    return process.returncode, output.decode(errors="replace")


def run_entry(entry: Entry, files: list[str], timeout: float, keep: bool) -> Outcome:
    """Apply one break in a fresh copy and run its tests."""
    began = time.monotonic()
    try:
        copy = make_copy(files, entry, keep)
    except (RegisterError, OSError, ValueError) as err:
        return Outcome(entry, "error", time.monotonic() - began, str(err))
    try:
        code, output = run_tests(copy, entry.tests, timeout)
    finally:
        if not keep:
            shutil.rmtree(copy.parent, ignore_errors=True)
    seconds = time.monotonic() - began
    tail = output.strip().splitlines()[-15:]
    if code is None:
        return Outcome(entry, "timeout", seconds, f"tests ran past {timeout:.0f}s", tail)
    if code in (1, 2):  # tests failed (or collection broke on the broken module)
        return Outcome(entry, "killed", seconds, "", tail)
    if code == 0:
        return Outcome(entry, "survived", seconds, "every listed test passed", tail)
    return Outcome(entry, "error", seconds, f"pytest exited {code}", tail)


def run_baseline(entries: list[Entry], files: list[str], timeout: float, keep: bool) -> str | None:
    """Run every listed test once, unbroken; why they do not all pass, or None."""
    tests = tuple(dict.fromkeys(test for entry in entries for test in entry.tests))
    copy = make_copy(files, None, keep)
    try:
        code, output = run_tests(copy, tests, timeout)
    finally:
        if not keep:
            shutil.rmtree(copy.parent, ignore_errors=True)
    if code == 0:
        return None
    tail = "\n".join(output.strip().splitlines()[-30:])
    return f"the unbroken tests do not pass (pytest exit {code}):\n{tail}"


# -- the command ------------------------------------------------------------------------------


def _select(entries: list[Entry], patterns: list[str]) -> list[Entry]:
    if not patterns:
        return entries
    chosen = [e for e in entries if any(fnmatch.fnmatchcase(e.id, p) for p in patterns)]
    if not chosen:
        raise RegisterError(f"--only {' '.join(patterns)}: no entry matches")
    return chosen


def _table(outcomes: list[Outcome]) -> str:
    width = max([len(o.entry.id) for o in outcomes] + [2])
    lines = [f"{'id':<{width}}  {'result':<9} {'seconds':>7}"]
    for outcome in outcomes:
        lines.append(f"{outcome.entry.id:<{width}}  {outcome.result:<9} {outcome.seconds:>7.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-j", "--jobs", type=int, default=2, help="breaks run at once (2)")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds per break's test run (300)"
    )
    parser.add_argument("--only", nargs="+", default=[], metavar="ID", help="ids or globs")
    parser.add_argument("--check", action="store_true", help="validate the register only")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unbroken run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("-j must be at least 1")
    began = time.monotonic()
    try:
        entries = _select(load_register(), args.only)
    except RegisterError as err:
        print(f"mutants: invalid register:\n{err}", file=sys.stderr)
        return 2
    references = sum(len(e.tests) for e in entries)
    print(
        f"mutants: {len(entries)} entries, {references} test references, -j {args.jobs}", flush=True
    )
    if args.check:
        return 0
    copied = repository_files()
    if not args.no_baseline:
        problem = run_baseline(entries, copied, args.timeout * 2, args.keep)
        if problem:
            print(f"mutants: {problem}", file=sys.stderr)
            return 1
        print(f"mutants: baseline passed ({time.monotonic() - began:.0f}s)", flush=True)
    outcomes: list[Outcome] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_entry, e, copied, args.timeout, args.keep) for e in entries]
        for future in concurrent.futures.as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            print(
                f"  {outcome.result:<8} {outcome.entry.id} ({outcome.seconds:.1f}s)"
                + (f": {outcome.detail}" if outcome.detail else ""),
                flush=True,
            )
    order = {entry.id: index for index, entry in enumerate(entries)}
    outcomes.sort(key=lambda o: order[o.entry.id])
    print()
    print(_table(outcomes))
    bad = [o for o in outcomes if not o.ok]
    for outcome in bad:
        print(f"\n{outcome.result.upper()}: {outcome.entry.id} ({outcome.entry.source})")
        print(f"  guards: {outcome.entry.guards}")
        print(f"  {outcome.entry.file}:{outcome.entry.function}: {outcome.detail}")
        for line in outcome.log:
            print(f"  | {line}")
    counts = {r: sum(o.result == r for o in outcomes) for r in ("killed", "timeout")}
    print(
        f"\nmutants: {len(outcomes)} entries: {counts['killed']} killed, {counts['timeout']} "
        f"killed by timeout, {sum(o.result == 'survived' for o in outcomes)} survived, "
        f"{sum(o.result == 'error' for o in outcomes)} errors; "
        f"{time.monotonic() - began:.0f}s wall"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
