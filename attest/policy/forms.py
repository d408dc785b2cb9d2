"""Which verdict rules a policy package defines, and how ``allow`` is read.

Two forms of policy judge a Statement: attest's (``deny``/``warn``, sets of
messages) and cosign's (``package signature`` with a boolean ``allow``, as
``cosign verify-attestation --policy`` queries ``data.signature.allow``).  A
package may define both.  ``allow`` is fail-closed: when the package defines
it, anything but ``true`` (``false``, undefined, a string) is a violation
(:meth:`attest.policy.engine.PolicyResult.allow_violation`).  A
package that defines none of the three would judge nothing, so it is refused
rather than passing every Statement.

Rule names come from a scan of the module text (comments and strings blanked,
heads at brace depth 0), which is enough to know *which* rules exist; their
values always come from the engine.
"""

from __future__ import annotations

import re

from attest.errors import PolicyError
from attest.policy.bundle import PolicyBundle, package_of

VERDICT_RULES = ("allow", "deny", "warn")
COSIGN_PACKAGE = "signature"
_HEAD = re.compile(
    r"(?:default[ \t]+)?([A-Za-z_]\w*)(?=[ \t]*(?:\bif\b|\bcontains\b|\{|:=|=|\[|\(|\.|$))",
    re.MULTILINE,
)
_KEYWORDS = frozenset({"package", "import", "default", "else", "some", "every", "not"})
# A call of a built-in or function by its dotted name, in code_only() text.
CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")


def code_only(text: str) -> str:
    """``text`` with comments and string contents blanked (line numbers kept)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif ch in '"`':
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if ch == '"' and text[j] == "\\" else 1
            body = text[i + 1 : min(j, n)]
            out.append(ch + re.sub(r"[^\n]", " ", body) + (ch if j < n else ""))
            i = j + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def top_level_spans(code: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each line start at bracket depth 0 in comment-free ``code``."""
    starts: list[tuple[int, int]] = []
    depth = 0
    line_start = 0
    at_depth_zero = True
    for index, char in enumerate(code):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        elif char == "\n":
            if at_depth_zero:
                starts.append((line_start, index))
            line_start = index + 1
            at_depth_zero = depth == 0
    if at_depth_zero:
        starts.append((line_start, len(code)))
    return starts


def defined_rules(text: str) -> frozenset[str]:
    """Names of the rules (and functions) a module's text defines at its top level."""
    code = code_only(text)
    names: set[str] = set()
    for start, end in top_level_spans(code):
        line = code[start:end]
        match = _HEAD.match(line.lstrip())
        if match and match.group(1) not in _KEYWORDS:
            names.add(match.group(1))
    return frozenset(names)


def package_rules(bundle: PolicyBundle, package: str) -> frozenset[str]:
    """Every rule name the modules of ``package`` define."""
    names: set[str] = set()
    for name, text in bundle.modules.items():
        if package_of(name, text) == package:
            names |= defined_rules(text)
    return frozenset(names)


def verdict_rules(bundle: PolicyBundle, package: str) -> frozenset[str]:
    """Which of ``allow``/``deny``/``warn`` ``package`` defines; :class:`PolicyError` if none."""
    found = package_rules(bundle, package) & frozenset(VERDICT_RULES)
    if not found:
        raise PolicyError(
            f"policy {bundle.path}: package {package} defines none of allow, deny or warn, "
            "so it would judge nothing (cosign's form is 'package signature' with 'allow')"
        )
    return found


def choose_package(bundle: PolicyBundle, default: str) -> str:
    """The package to read when none was named: the only one declared, cosign's
    ``signature`` when it is declared and ``default`` is not, else ``default``."""
    declared = bundle.packages()
    if len(declared) == 1:
        return next(iter(declared))
    if COSIGN_PACKAGE in declared and default not in declared:
        return COSIGN_PACKAGE
    return default
