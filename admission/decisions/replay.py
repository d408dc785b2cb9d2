"""Replaying a recorded decision's policy input under another Rego bundle, and the difference.

Only the policy is re-run: the recorded input (images, digests, every
signature and attestation with its outcome) is taken as it was, so the answer
is "what would this exact request get under the new policy".  The result comes
from the webhook's own rules (:func:`admission.verdict.judge`) applied to the
recorded image outcomes and the new Rego answer; the unmatched-images setting
is the one the record shows.  Messages that never came from Rego (an invalid
reference, an unmatched image, a timeout or registry error, and the webhook's
own findings: a threshold not met, a required attestation missing, an invalid
provenance) are listed as carried over from the record: no bundle can remove
them, so a replay under a bundle with only ``warn`` rules still denies an
unsigned image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from admission.decisions.model import StoredDecision, pick
from admission.exceptions.apply import without_exception
from admission.verdict import UNCHANGED_NOTE, ImageOutcome, UnmatchedImages, image_outcome, judge
from attest.errors import PolicyError, UsageError
from attest.policy import PolicyEngine
from attest.policy.engine import messages

_WARN_MODE = re.compile(r"^warn mode \([^)]*\): ")
_NOT_FROM_REGO = ("invalid", "unmatched", "timed_out", "error", "invalid_provenance")


@dataclass(frozen=True)
class PolicyOutcome:
    """A result with the Rego ``deny``/``warn`` messages behind it."""

    result: str
    deny: tuple[str, ...]
    warn: tuple[str, ...]
    bundle_hash: str
    engine: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "deny": list(self.deny),
            "warn": list(self.warn),
            "bundleHash": self.bundle_hash,
            "engine": self.engine,
        }


@dataclass(frozen=True)
class Replay:
    """A recorded decision next to its replay, with what changed."""

    record_id: int
    recorded: PolicyOutcome
    replayed: PolicyOutcome
    carried: tuple[str, ...]  # messages kept from the record (not from Rego)

    @property
    def added_deny(self) -> tuple[str, ...]:
        return tuple(m for m in self.replayed.deny if m not in self.recorded.deny)

    @property
    def removed_deny(self) -> tuple[str, ...]:
        return tuple(m for m in self.recorded.deny if m not in self.replayed.deny)

    @property
    def added_warn(self) -> tuple[str, ...]:
        return tuple(m for m in self.replayed.warn if m not in self.recorded.warn)

    @property
    def removed_warn(self) -> tuple[str, ...]:
        return tuple(m for m in self.recorded.warn if m not in self.replayed.warn)

    @property
    def changed(self) -> bool:
        return self.recorded.result != self.replayed.result or bool(
            self.added_deny or self.removed_deny or self.added_warn or self.removed_warn
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.record_id,
            "changed": self.changed,
            "recorded": self.recorded.to_dict(),
            "replayed": self.replayed.to_dict(),
            "carried": list(self.carried),
            "diff": {
                "addedDeny": list(self.added_deny),
                "removedDeny": list(self.removed_deny),
                "addedWarn": list(self.added_warn),
                "removedWarn": list(self.removed_warn),
            },
        }


def _strings(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list | tuple) else []


def _images(policy_input: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in policy_input.get("images") or [] if isinstance(i, dict)]


def _carried(document: dict[str, Any], outcomes: list[ImageOutcome]) -> set[str]:
    """Recorded messages the webhook's own rules gave, not Rego: about images whose
    outcome did not come from Rego, the findings of every image, and what its
    ClusterImagePolicies said."""
    prefixes = tuple(f"{o.reference}: " for o in outcomes if o.outcome in _NOT_FROM_REGO)
    findings = {finding.message for o in outcomes for finding in o.findings}
    cluster = {f.message for o in outcomes for f in (*o.cluster_denials, *o.cluster_warnings)}
    recorded = _strings(document.get("messages")) + _strings(document.get("warnings"))
    carried = set()
    for message in recorded:
        bare = _WARN_MODE.sub("", message).removesuffix(UNCHANGED_NOTE)
        if (
            message.removesuffix(UNCHANGED_NOTE) in cluster
            or bare in findings
            or (prefixes and bare.startswith(prefixes))
        ):
            carried.add(message)
    return carried


def _recorded(document: dict[str, Any], carried: set[str]) -> PolicyOutcome:
    deny, warn = [], []
    for message in _strings(document.get("messages")):
        if message in carried or message.startswith("policy error: "):
            continue
        deny.append(message.removesuffix(UNCHANGED_NOTE))
    for message in _strings(document.get("warnings")):
        if message in carried:
            continue
        if _WARN_MODE.match(message):
            deny.append(_WARN_MODE.sub("", message))  # a Rego deny judged in warn mode
        else:
            warn.append(message)
    return PolicyOutcome(
        result=str(document.get("result", "")),
        deny=tuple(sorted(set(deny))),
        warn=tuple(sorted(set(warn))),
        bundle_hash=str(pick(document, "bundleHash", "bundle_hash", default="")),
        engine=str(document.get("engine", "")),
    )


_UNMATCHED_DENIED = ": matches no image policy (unmatched images are denied)"


def _unmatched_setting(document: dict[str, Any]) -> UnmatchedImages:
    """``deny`` unless the record admitted an unmatched image without that denial."""
    messages = _strings(document.get("messages"))
    if any(m.removesuffix(UNCHANGED_NOTE).endswith(_UNMATCHED_DENIED) for m in messages):
        return "deny"
    images = _images(document.get("input") or {})
    return "allow" if any(i.get("outcome") == "unmatched" for i in images) else "deny"


def replay(record: StoredDecision, engine: PolicyEngine, package: str) -> Replay:
    """Evaluate ``record``'s policy input with ``engine`` and compare with what was decided
    (by policy: an exception's admission is compared as the denial it overrode)."""
    document = without_exception(record.document)
    policy_input = document.get("input")
    if not isinstance(policy_input, dict):
        reason = "; ".join(_strings(document.get("messages"))) or "no input recorded"
        raise UsageError(f"decision {record.id}: no policy input to replay ({reason})")
    images = _images(policy_input)
    outcomes = [image_outcome(image) for image in images]
    carried = _carried(document, outcomes)
    recorded = _recorded(document, carried)
    try:
        result = engine.evaluate(policy_input, package)
        denials, warnings, error = result.denials, result.warnings, None
    except PolicyError as err:
        denials, warnings, error = (), (), str(err)
    request = policy_input.get("request")
    request = request if isinstance(request, dict) else {}
    judgement = judge(
        outcomes,
        operation=str(request.get("operation") or ""),
        unmatched_images=_unmatched_setting(document),
        deny=denials,
        warn=warnings,
        policy_error=error,
    )
    findings = {finding.message for o in outcomes for finding in o.findings}
    deny = {finding.message for finding in denials}
    replayed = PolicyOutcome(
        result=judgement.result,
        deny=tuple(sorted(deny - findings)) if not error else (f"policy error: {error}",),
        warn=messages(warnings),
        bundle_hash=engine.bundle_hash,
        engine=engine.name,
    )
    return Replay(record.id, recorded, replayed, tuple(sorted(carried)))
