"""What the webhook answers: the decision, its vocabulary, and the rules that reach it.

The values a decision is made of (results, image outcomes, modes) are defined
here once, as ``Literal`` types; :class:`Decision` is what the HTTP layer
answers with and what decision records store; :func:`judge` is the webhook's
rules as a pure function of image outcomes and Rego's answer, so the live flow
(:mod:`admission.decide`) and ``decisions replay`` (:mod:`admission.decisions.replay`)
reach the same result from the same facts.  Every reason is a
:class:`~attest.policy.Finding`: a message, the image it is about and a stable
code, whether Rego gave it or the webhook's own rules did (:data:`CODES`), so no
rule has to read an image out of a message.  A :class:`Recorder` is anything that
keeps decisions; the flow is handed one explicitly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, get_args

from admission.cip import CLUSTER_CODE, cluster_outcomes
from attest.policy import Finding

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
# The codes of the webhook's own reasons (Rego's come from the bundle; policies/README.md).
CODES = {
    "invalid": "invalid-reference",
    "unmatched": "unmatched-image",
    "timed_out": "timed-out",
    "error": "verification-error",
    "untrusted": "untrusted",
    "attestation": "missing-attestation",
    "invalid_provenance": "invalid-provenance",
    "policy_error": "policy-error",
    "cluster": CLUSTER_CODE,
}
UNCHANGED_NOTE = " (image unchanged by this update)"


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
    codes: dict[str, str] = field(default_factory=dict)  # message or warning -> its code
    # the signed exceptions that concerned it (admission.exceptions.apply.exception_record)
    exceptions: tuple[dict[str, Any], ...] = ()
    # the policy answer: "hit" (from the policy result cache), "miss" (evaluated, then
    # cached), "off" (evaluated, not cacheable); "" when no policy was evaluated
    policy_cache: str = ""

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
            "codes": dict(self.codes),
            **({"policyCache": self.policy_cache} if self.policy_cache else {}),
            **exception_fields(self.exceptions, self.namespace),
        }


def exception_fields(records: Sequence[dict[str, Any]], namespace: str) -> dict[str, Any]:
    """The decision document's exception fields: none without exceptions (older records
    keep their exact bytes); ``exception`` is the applied one, else the first considered
    one written for the request's namespace, else the first; ``exceptions`` lists every
    one considered."""
    if not records:
        return {}
    first = next(
        (r for r in records if r["applied"]),
        next((r for r in records if r["namespace"] == namespace), records[0]),
    )
    return {"exception": first, "exceptions": list(records)}


class Recorder(Protocol):
    """Keeps decisions (a database writer, a queue to one, a test's list); never raises,
    never waits: ``record`` says whether the decision was taken or had to be dropped."""

    def record(self, decision: Decision) -> bool: ...


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
    findings: tuple[Finding, ...] = ()
    cluster_denials: tuple[Finding, ...] = ()  # failed ClusterImagePolicies, by their own mode
    cluster_warnings: tuple[Finding, ...] = ()

    @property
    def warn_mode(self) -> bool:
        """Whether its denials are only warnings (an image policy in ``warn`` mode)."""
        return self.policy is not None and self.mode == "warn"


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _untrusted(reference: str, entry: dict[str, Any], policy: dict[str, Any]) -> Finding:
    """Why the threshold was not met, in the words of the default policy's old rule."""
    signatures = _dicts(entry.get("signatures"))
    if not signatures:
        reason = "no signature found"
    else:
        reason = "; ".join(_strings(signatures[0].get("reasons"))) or (
            "signatures verified, but too few authorities"
        )
    satisfied = len(_strings(entry.get("satisfiedAuthorities")))
    return Finding(
        f"{reference}: no trusted signature: {satisfied} of {policy.get('threshold')} required "
        f"authorities of policy {policy.get('name')} verified it ({reason})",
        reference,
        CODES["untrusted"],
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
    findings: list[Finding] = []
    if policy is not None and outcome in FINISHED:
        if entry.get("thresholdMet") is not True:
            findings.append(_untrusted(reference, entry, policy))
        verified_types = {
            a.get("predicateType")
            for a in _dicts(entry.get("attestations"))
            if a.get("verified") is True
        }
        findings.extend(
            Finding(
                f"{reference}: no verified attestation of type {wanted} "
                f"(required by policy {policy.get('name')})",
                reference,
                CODES["attestation"],
            )
            for wanted in _strings(policy.get("requiredAttestations"))
            if wanted not in verified_types
        )
        if outcome == "invalid_provenance":
            findings.append(
                Finding(
                    f"{reference}: {error or 'invalid provenance'}",
                    reference,
                    CODES["invalid_provenance"],
                )
            )
    cluster_denials, cluster_warnings = cluster_outcomes(reference, entry)
    return ImageOutcome(
        reference=reference,
        outcome=outcome,
        error=error,
        unchanged=bool(entry.get("unchanged")),
        policy=str(policy["name"]) if policy and policy.get("name") else None,
        mode=str(policy["mode"]) if policy and policy.get("mode") else None,
        findings=tuple(findings),
        cluster_denials=cluster_denials,
        cluster_warnings=cluster_warnings,
    )


@dataclass(frozen=True)
class Judgement:
    """The answer: result, the denials, the warnings (each with its code), the status code."""

    result: Result
    denials: tuple[Finding, ...]
    warnings: tuple[Finding, ...]
    code: int

    @property
    def messages(self) -> tuple[str, ...]:
        return tuple(finding.message for finding in self.denials)

    @property
    def warning_messages(self) -> tuple[str, ...]:
        return tuple(finding.message for finding in self.warnings)

    @property
    def codes(self) -> dict[str, str]:
        """Each denial's and warning's message -> its code (those that have one)."""
        return {f.message: f.code for f in (*self.denials, *self.warnings) if f.code}


def is_about(finding: Finding, reference: str) -> bool:
    """Whether a finding is about the image ``reference`` (as in ``input.images``): the one
    its ``image`` names; for a plain message, the one it starts with (``<reference>: …``)."""
    if finding.image is not None:
        return finding.image == reference
    return finding.message.startswith(f"{reference}: ")


def about(finding: Finding, images: Sequence[ImageOutcome]) -> list[ImageOutcome]:
    """The images a finding is about (:func:`is_about`)."""
    return [i for i in images if is_about(finding, i.reference)]


def judge(
    images: Sequence[ImageOutcome],
    *,
    operation: str,
    unmatched_images: UnmatchedImages,
    deny: Sequence[Finding],
    warn: Sequence[Finding],
    policy_error: str | None,
) -> Judgement:
    """The webhook's rules, as a pure function: image outcomes plus Rego's answer → the result.

    Fail closed in code, whatever the bundle says: invalid references, unmatched
    images (unless allowed), timeouts, registry errors and every finding of
    :func:`image_outcome` (threshold, required attestations, invalid provenance)
    deny; for images under a ``warn``-mode policy they are warnings.  Rego can only
    add denials: a ``deny`` about (:func:`about`) only ``warn``-mode images is a
    warning, and one repeating a finding word for word is not said twice.  On UPDATE
    a denial about an image the update did not change says so; a policy error is an
    error.  ``decisions replay`` uses this too, so a replay follows the webhook exactly.
    """
    denials: list[Finding] = []
    warnings: list[Finding] = []
    timed_out = False

    def add(finding: Finding, named: Sequence[ImageOutcome], *, warn_mode: bool) -> None:
        if warn_mode:
            message = f"warn mode ({named[0].policy}): {finding.message}"
            warnings.append(replace(finding, message=message))
        elif operation == "UPDATE" and any(i.unchanged for i in named):
            denials.append(replace(finding, message=finding.message + UNCHANGED_NOTE))
        else:
            denials.append(finding)

    said: set[str] = set()
    for image in images:
        text, code = f"{image.reference}: ", CODES.get(image.outcome)
        if image.outcome == "invalid":
            reason = f"invalid image reference: {image.error}"
            add(Finding(text + reason, image.reference, code), [image], warn_mode=False)
        elif image.outcome == "unmatched" and unmatched_images == "deny":
            reason = "matches no image policy (unmatched images are denied)"
            add(Finding(text + reason, image.reference, code), [image], warn_mode=False)
        elif image.outcome in ("timed_out", "error"):
            reason = image.error or image.outcome
            add(Finding(text + reason, image.reference, code), [image], warn_mode=image.warn_mode)
            if not image.warn_mode:
                timed_out = timed_out or image.outcome == "timed_out"
        for finding in image.findings:
            add(finding, [image], warn_mode=image.warn_mode)
            said.add(finding.message)
        for finding in image.cluster_denials:  # by the ClusterImagePolicy's mode, not ours
            add(finding, [image], warn_mode=False)
        warnings.extend(image.cluster_warnings)
    for finding in deny:
        if finding.message in said:
            continue
        said.add(finding.message)
        named = about(finding, images)
        add(finding, named, warn_mode=bool(named) and all(i.warn_mode for i in named))
    warnings.extend(warn)
    if policy_error:
        error = Finding(f"policy error: {policy_error}", None, CODES["policy_error"])
        return Judgement("error", (error, *denials), tuple(warnings), 500)
    if denials:
        result: Result = "timed_out" if timed_out else "denied"
        return Judgement(result, tuple(denials), tuple(warnings), 403)
    return Judgement("warned" if warnings else "allowed", (), tuple(warnings), 200)
