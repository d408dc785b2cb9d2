"""The one interface every policy engine offers, and the shared reading of its answer.

An engine evaluates the rules ``deny`` and ``warn`` of a Rego package against an
input document.  Each is a set whose entries are messages (strings) or objects
``{"image": reference, "code": rule-id, "message": text}``, read here into
:class:`Finding` values, so both engines give the same answer whatever their JSON
looks like.  A rule that is absent reads as an empty set; a package that no
module declares, a rule of the wrong type, or any compile or runtime error raises
:class:`~attest.errors.PolicyError`, so callers fail closed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from attest.errors import PolicyError

DEFAULT_PACKAGE = "attest.admission"
RULES = ("deny", "warn")
_PACKAGE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")
MAX_MESSAGES = 1000


@dataclass(frozen=True)
class Finding:
    """One ``deny`` or ``warn`` entry: its message and, when the policy gives them, the image
    it is about (``image``: the ``reference`` of an ``input.images`` entry) and a stable
    code naming the rule (``code``), so callers need not read either out of the prose."""

    message: str
    image: str | None = None
    code: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"message": self.message, "image": self.image, "code": self.code}


@dataclass(frozen=True)
class PolicyResult:
    """What a policy said: every ``deny`` and ``warn`` entry, sorted, and who said it."""

    denials: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    engine: str
    bundle_hash: str
    allow: Any = None  # cosign's form: the value of ``allow``, when the package defines it

    @property
    def deny(self) -> tuple[str, ...]:
        """The ``deny`` messages, sorted, each once."""
        return messages(self.denials)

    @property
    def warn(self) -> tuple[str, ...]:
        """The ``warn`` messages, sorted, each once."""
        return messages(self.warnings)

    def allow_violation(self, package: str) -> str | None:
        """cosign's form (:mod:`attest.policy.forms`): the violation when ``allow`` is not
        exactly ``true`` (None when it is)."""
        if self.allow is True:
            return None
        shown = "undefined" if self.allow is None else json.dumps(self.allow)[:80]
        return f"data.{package}.allow is not true ({shown})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "deny": list(self.deny),
            "warn": list(self.warn),
            "denials": [finding.to_dict() for finding in self.denials],
            "warnings": [finding.to_dict() for finding in self.warnings],
            "engine": self.engine,
            "bundleHash": self.bundle_hash,
        }


class PolicyEngine(Protocol):
    """Evaluates a compiled bundle; implementations are safe to call from many threads."""

    name: str
    bundle_hash: str
    # whether answers are a pure function of input and bundle, so may be cached
    # (admission.policy_cache); False when unsure
    cacheable: bool

    def evaluate(self, input_doc: dict[str, Any], package: str = DEFAULT_PACKAGE) -> PolicyResult:
        """``deny`` and ``warn`` of ``package`` for ``input_doc``; :class:`PolicyError` on failure."""
        ...

    def close(self) -> None:
        """Release connections or interpreters."""
        ...


def check_package(package: str) -> str:
    """``package`` if it is a dotted Rego name, else :class:`PolicyError`."""
    if not _PACKAGE_NAME.match(package):
        raise PolicyError(f"policy package {package!r} is not a dotted Rego name")
    return package


def messages(findings: tuple[Finding, ...]) -> tuple[str, ...]:
    """The messages of ``findings``, sorted, each once."""
    return tuple(sorted({finding.message for finding in findings}))


def _finding(value: Any) -> Finding:
    """An entry of ``deny``/``warn``: a string; an object with a string ``message`` and
    optional string ``image`` and ``code`` (other keys are ignored); an object with a string
    ``msg``.  Anything else is kept as its JSON text, a message no image claims."""
    if isinstance(value, str):
        return Finding(value)
    if isinstance(value, dict):
        message, image, code = value.get("message"), value.get("image"), value.get("code")
        if "message" in value:
            if isinstance(message, str) and all(
                v is None or isinstance(v, str) for v in (image, code)
            ):
                return Finding(message, image, code)
        elif isinstance(value.get("msg"), str):
            return Finding(value["msg"])
    return Finding(json.dumps(value, sort_keys=True))


def _order(finding: Finding) -> tuple[str, str, str]:
    return finding.message, finding.image or "", finding.code or ""


def read_rule(package: str, rule: str, value: Any) -> tuple[Finding, ...]:
    """A ``deny``/``warn`` value as sorted findings, each once; undefined (``None``) is empty."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise PolicyError(
            f"policy rule data.{package}.{rule} must be a set of messages, "
            f"not {type(value).__name__} {json.dumps(value)[:80]}"
        )
    if len(value) > MAX_MESSAGES:
        raise PolicyError(
            f"policy rule data.{package}.{rule} gave more than {MAX_MESSAGES} messages"
        )
    return tuple(sorted({_finding(item) for item in value}, key=_order))
