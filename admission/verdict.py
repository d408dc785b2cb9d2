"""What the webhook answers: the decision, its vocabulary, and the rules that reach it.

The values a decision is made of (results, image outcomes, modes) are defined
here once, as ``Literal`` types; :class:`Decision` is what the HTTP layer
answers with and what decision records store; :func:`judge` is the webhook's
rules as a pure function of image outcomes and Rego's answer, so the live flow
(:mod:`admission.decide`) and ``decisions replay`` (:mod:`admission.decisions.replay`)
reach the same result from the same facts.  A :class:`Recorder` is anything
that keeps decisions; the flow is handed one explicitly.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

Result = Literal["allowed", "denied", "warned", "timed_out", "error"]
RESULTS: tuple[Result, ...] = get_args(Result)
Outcome = Literal[
    "verified",
    "unverified",
    "invalid_provenance",
    "timed_out",
    "error",
    "invalid",
    "unmatched",
]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
# Outcomes whose verification finished: the image policy's own requirements are judged.
FINISHED: tuple[Outcome, ...] = ("verified", "unverified", "invalid_provenance")
Mode = Literal["enforce", "warn"]
MODES: tuple[Mode, ...] = get_args(Mode)
UnmatchedImages = Literal["deny", "allow"]
UNMATCHED_IMAGES: tuple[UnmatchedImages, ...] = get_args(UnmatchedImages)

_REFERENCE_CHARS_BEFORE = r"(?<![\w./@:-])"
_REFERENCE_CHARS_AFTER = r"(?![\w.@/-]|:\w)"


def rfc3339(moment: dt.datetime) -> str:
    """UTC with microseconds and ``+00:00`` (the embedded engine cannot parse ``Z``)."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class ImageDecision:
    """One distinct image: what the workload named, what it resolved to, how it was judged.

    ``name`` is the canonical ``registry/repository`` (None for an invalid reference):
    the identity the policy was matched on, whatever spelling ``reference`` used."""

    reference: str
    digest: str | None
    policy: str | None
    outcome: Outcome
    verification: dict[str, Any] | None
    error: str | None = None
    cached: bool = False
    unchanged: bool = False
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "name": self.name,
            "digest": self.digest,
            "policy": self.policy,
            "outcome": self.outcome,
            "error": self.error,
            "cached": self.cached,
            "unchanged": self.unchanged,
            "verification": self.verification,
        }


@dataclass(frozen=True)
class Decision:
    """The outcome of one admission request, with every reason and what produced it."""

    uid: str
    time: float
    operation: str
    kind: str
    namespace: str
    name: str
    user: str
    result: Result
    messages: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    images: tuple[ImageDecision, ...] = ()
    input: dict[str, Any] | None = None
    latency: dict[str, float] = field(default_factory=dict)
    bundle_hash: str = ""
    trust_fingerprint: str = ""
    engine: str = ""
    checked: bool = True
    code: int = 200
    dry_run: bool = False
    caller: str = ""  # the client certificate subject the request came with ("" without one)

    @property
    def allowed(self) -> bool:
        return self.result in ("allowed", "warned")

    @property
    def message(self) -> str:
        """The one-line answer the API server shows the user."""
        return "; ".join(self.messages)

    def to_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "time": rfc3339(dt.datetime.fromtimestamp(self.time, dt.UTC)),
            "operation": self.operation,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "user": self.user,
            "caller": self.caller,
            "result": self.result,
            "allowed": self.allowed,
            "checked": self.checked,
            "dryRun": self.dry_run,
            "messages": list(self.messages),
            "warnings": list(self.warnings),
            "images": [image.to_dict() for image in self.images],
            "input": self.input,
            "latency": dict(self.latency),
            "bundleHash": self.bundle_hash,
            "trustFingerprint": self.trust_fingerprint,
            "engine": self.engine,
        }


class Recorder(Protocol):
    """Keeps decisions (a database writer, a queue to one, a test's list); never raises,
    never waits: ``record`` says whether the decision was taken or had to be dropped."""

    def record(self, decision: Decision) -> bool: ...


def mentions(message: str, reference: str) -> bool:
    """Whether ``message`` names ``reference`` as a whole reference (not a prefix of another)."""
    pattern = _REFERENCE_CHARS_BEFORE + re.escape(reference) + _REFERENCE_CHARS_AFTER
    return re.search(pattern, message) is not None


@dataclass(frozen=True)
class ImageOutcome:
    """What the answer's rules need to know about one image (from a check or a record).

    ``findings`` are the denials the webhook itself owes this image, whatever Rego
    says: its policy's threshold not met, a required attestation missing, an
    invalid provenance (see :func:`image_outcome`)."""

    reference: str
    outcome: str  # an Outcome when live; a record may hold anything
    error: str | None = None
    unchanged: bool = False
    policy: str | None = None  # matched image policy name
    mode: str | None = None  # its mode: a Mode when live
    findings: tuple[str, ...] = ()


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _untrusted(reference: str, entry: dict[str, Any], policy: dict[str, Any]) -> str:
    """Why the threshold was not met, in the words of the default policy's old rule."""
    signatures = _dicts(entry.get("signatures"))
    if not signatures:
        reason = "no signature found"
    else:
        reason = "; ".join(_strings(signatures[0].get("reasons"))) or (
            "signatures verified, but too few authorities"
        )
    return (
        f"{reference}: no trusted signature: {len(_strings(entry.get('satisfiedAuthorities')))} "
        f"of {policy.get('threshold')} required authorities of policy {policy.get('name')} "
        f"verified it ({reason})"
    )


def image_outcome(entry: dict[str, Any]) -> ImageOutcome:
    """One ``input.images`` entry (live, or from a record) as the webhook's rules see it.

    The image policy's requirements are checked here, in code, from the same facts
    Rego gets: for an image whose verification finished, a threshold not met
    (anything but ``thresholdMet: true``), each required attestation type without a
    verified attestation, and an invalid provenance are findings.
    """
    reference = str(entry.get("reference") or "")
    outcome = str(entry.get("outcome") or "")
    error = entry.get("error") if isinstance(entry.get("error"), str) else None
    policy = entry.get("policy") if isinstance(entry.get("policy"), dict) else None
    findings: list[str] = []
    if policy is not None and outcome in FINISHED:
        if entry.get("thresholdMet") is not True:
            findings.append(_untrusted(reference, entry, policy))
        verified_types = {
            a.get("predicateType")
            for a in _dicts(entry.get("attestations"))
            if a.get("verified") is True
        }
        findings.extend(
            f"{reference}: no verified attestation of type {wanted} "
            f"(required by policy {policy.get('name')})"
            for wanted in _strings(policy.get("requiredAttestations"))
            if wanted not in verified_types
        )
        if outcome == "invalid_provenance":
            findings.append(f"{reference}: {error or 'invalid provenance'}")
    return ImageOutcome(
        reference=reference,
        outcome=outcome,
        error=error,
        unchanged=bool(entry.get("unchanged")),
        policy=str(policy["name"]) if policy and policy.get("name") else None,
        mode=str(policy["mode"]) if policy and policy.get("mode") else None,
        findings=tuple(findings),
    )


@dataclass(frozen=True)
class Judgement:
    """The answer: result, the denial messages, the warnings, and the status code."""

    result: Result
    messages: tuple[str, ...]
    warnings: tuple[str, ...]
    code: int


def judge(
    images: list[ImageOutcome],
    *,
    operation: str,
    unmatched_images: str,
    deny: tuple[str, ...],
    warn: tuple[str, ...],
    policy_error: str | None,
) -> Judgement:
    """The webhook's rules, as a pure function: image outcomes plus Rego's answer → the result.

    Fail closed in code, whatever the bundle says: invalid references, unmatched
    images (unless allowed), timeouts, registry errors and every finding of
    :func:`image_outcome` (threshold, required attestations, invalid provenance)
    deny; for images under a ``warn``-mode policy they are warnings.  Rego can only
    add denials: a ``deny`` that names only ``warn``-mode images is a warning, and
    one repeating a finding word for word is not said twice.  On UPDATE a denial
    naming an image the update did not change says so; a policy error is an error.
    ``decisions replay`` uses this too, so a replay follows the webhook exactly.
    """
    denials: list[str] = []
    warnings: list[str] = []
    timed_out = False

    def unchanged_note(message: str) -> str:
        if operation != "UPDATE":
            return message
        same = [i.reference for i in images if i.unchanged and mentions(message, i.reference)]
        return message + (" (image unchanged by this update)" if same else "")

    def refuse(image: ImageOutcome, message: str) -> None:
        if image.policy is not None and image.mode == "warn":
            warnings.append(f"warn mode ({image.policy}): {message}")
        else:
            denials.append(unchanged_note(message))

    findings: set[str] = set()
    for image in images:
        text = f"{image.reference}: "
        if image.outcome == "invalid":
            denials.append(unchanged_note(text + f"invalid image reference: {image.error}"))
        elif image.outcome == "unmatched" and unmatched_images == "deny":
            denials.append(
                unchanged_note(text + "matches no image policy (unmatched images are denied)")
            )
        elif image.outcome in ("timed_out", "error"):
            refuse(image, text + (image.error or image.outcome))
            if image.mode != "warn":
                timed_out = timed_out or image.outcome == "timed_out"
        for finding in image.findings:
            refuse(image, finding)
            findings.add(finding)
    for message in deny:
        if message in findings:
            continue
        named = [i for i in images if mentions(message, i.reference)]
        if named and all(i.policy is not None and i.mode == "warn" for i in named):
            warnings.append(f"warn mode ({named[0].policy}): {message}")
        else:
            denials.append(unchanged_note(message))
    warnings.extend(warn)
    if policy_error:
        return Judgement("error", (f"policy error: {policy_error}", *denials), tuple(warnings), 500)
    if denials:
        return Judgement(
            "timed_out" if timed_out else "denied", tuple(denials), tuple(warnings), 403
        )
    return Judgement("warned" if warnings else "allowed", (), tuple(warnings), 200)
