"""The one interface every policy engine offers, and the shared reading of its answer.

An engine evaluates the rules ``deny`` and ``warn`` (sets of strings) of a Rego
package against an input document.  A rule that is absent reads as an empty
set; a package that no module declares, a rule of the wrong type, or any
compile or runtime error raises :class:`~attest.errors.PolicyError`, so callers
fail closed.
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
class PolicyResult:
    """What a policy said: every ``deny`` and ``warn`` message, sorted, and who said it."""

    deny: tuple[str, ...]
    warn: tuple[str, ...]
    engine: str
    bundle_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "deny": list(self.deny),
            "warn": list(self.warn),
            "engine": self.engine,
            "bundleHash": self.bundle_hash,
        }


class PolicyEngine(Protocol):
    """Evaluates a compiled bundle; implementations are safe to call from many threads."""

    name: str
    bundle_hash: str

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


def _message(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("msg"), str):
        return value["msg"]
    return json.dumps(value, sort_keys=True)


def read_rule(package: str, rule: str, value: Any) -> tuple[str, ...]:
    """A ``deny``/``warn`` value as sorted messages; undefined (``None``) is empty."""
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
    return tuple(sorted({_message(item) for item in value}))

