"""How exceptions change a decision: only a denial, only for the images they name, loudly.

A decision the webhook's rules deny (``denied``, or ``timed_out``/``error`` for a
failure) is admitted when every denial names at least one image and every image it
names is covered by a trusted, unexpired exception for the request's namespace and
that image (canonical name glob and/or digest).  An image that timed out is covered
only by an exception that ``covers: [timeout]``, one whose check failed (registry or
verification error) only with ``covers: [error]``, and a policy evaluation error only
when every image of the request is covered with ``error``.  A denial that names no
image (a Rego rule about something else) is never excused.  Malformed requests and
crashes while deciding never reach this point: they stay denied whatever exists.

The admitted answer is ``warned``: the first warnings say which exception admitted
which image, then the excused denials follow.  Every exception that concerned the
request (same namespace, or the image's name or digest) is recorded, applied or not,
with the reason (see :func:`exception_record`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from admission.exceptions.document import LoadedException
from admission.exceptions.settings import ExceptionSet
from admission.policy_input import ImageCheck
from admission.verdict import CODES, Judgement, Result, is_about

DENIED: tuple[Result, ...] = ("denied", "timed_out", "error")
LOUD = "EXCEPTION "  # the first warnings of an admission by exception
EXCUSED = "excepted: "  # each denial it excused, as a warning
MAX_RECORDED = 20
# the record's ``category``: ``applied``, or why not (admission.metrics.EXCEPTION_REASONS)


@dataclass(frozen=True)
class ImageFacts:
    """What exceptions are matched on for one image of the request."""

    reference: str
    name: str | None  # canonical registry/repository (None: unparsable)
    digest: str | None  # resolved (None: not resolved, e.g. timed out)
    outcome: str


@dataclass(frozen=True)
class Outcome:
    """The (possibly changed) answer and what the record says about each exception."""

    result: Result
    messages: tuple[str, ...]
    warnings: tuple[str, ...]
    code: int
    codes: dict[str, str]  # message or warning -> its code (Decision.codes)
    records: tuple[dict[str, Any], ...] = ()


def _needs(image: ImageFacts, policy_error: bool) -> set[str]:
    needs = set()
    if image.outcome == "timed_out":
        needs.add("timeout")
    if image.outcome == "error" or policy_error:
        needs.add("error")
    return needs


def why_not(
    loaded: LoadedException, image: ImageFacts, namespace: str, needs: set[str], now: dt.datetime
) -> tuple[str, str] | None:
    """``(category, reason)`` when ``loaded`` does not cover ``image`` here and now, else None."""
    document = loaded.document
    if document is None or not loaded.trusted:
        return "untrusted", loaded.problem or "not signed by a trusted exception signer"
    if now >= document.expires_at:
        return "expired", f"it expired at {document.expires}"
    if document.namespace != namespace:
        return "namespace", f"it is for namespace {document.namespace}, not {namespace}"
    mismatch = document.image.mismatch(image.name, image.digest)
    if mismatch:
        return "image", mismatch
    missing = sorted(needs - set(document.covers))
    if missing:
        failure = {"timeout": "a verification timeout", "error": "an error"}[missing[0]]
        return (
            "not_covered",
            f"the denial is {failure}, which it does not cover (covers: [{missing[0]}])",
        )
    return None


def exception_record(
    loaded: LoadedException, image: str, *, applied: bool, why: str, category: str
) -> dict[str, Any]:
    """The ``exception`` field of a decision record (read by ``attest evidence``)."""
    document = loaded.document
    return {
        "id": document.id if document else None,
        "signer": loaded.signer or None,
        "reason": document.reason if document else None,
        "ticket": document.ticket if document else None,
        "expires": document.expires if document else None,
        "namespace": document.namespace if document else None,
        "scope": document.image.text() if document else None,
        "image": image,
        "source": loaded.source,
        "applied": applied,
        "why": why,
        "category": category,
    }


def apply_exceptions(
    judgement: Judgement,
    images: Sequence[ImageFacts],
    namespace: str,
    exceptions: ExceptionSet | None,
    now: dt.datetime,
) -> Outcome:
    """The answer :func:`admission.verdict.judge` gave, with the exceptions applied.

    A denial names the images it is about (:func:`admission.verdict.is_about`: the
    finding's ``image``, else the reference its message starts with), the webhook's
    own attribution of findings to images."""
    unchanged = Outcome(
        judgement.result,
        judgement.messages,
        judgement.warning_messages,
        judgement.code,
        judgement.codes,
    )
    if exceptions is None or judgement.result not in DENIED or judgement.code == 400:
        return unchanged
    policy_error = judgement.result == "error"
    covering: dict[str, LoadedException] = {}
    rejected: list[dict[str, Any]] = []
    for image in images:
        needs = _needs(image, policy_error)
        for loaded in exceptions.exceptions:
            document = loaded.document
            if document is None or not (
                document.namespace == namespace or document.image.concerns(image.name, image.digest)
            ):
                continue
            problem = why_not(loaded, image, namespace, needs, now)
            if problem is None and image.reference in covering:
                problem = ("taken", f"exception {covering[image.reference].ident} covers it first")
            if problem is None:
                covering[image.reference] = loaded
            else:
                category, why = problem
                rejected.append(
                    exception_record(
                        loaded, image.reference, applied=False, why=why, category=category
                    )
                )
    if not covering:
        return _with(unchanged, rejected)
    excused: list[str] = []
    remaining: list[str] = []
    for denial in judgement.denials:
        if policy_error and denial.code == CODES["policy_error"]:
            named = list(images)
        else:
            named = [i for i in images if is_about(denial, i.reference)]
        covered = bool(named) and all(i.reference in covering for i in named)
        (excused if covered else remaining).append(denial.message)
    admitted = not remaining and bool(excused)
    applied = [
        exception_record(
            loaded,
            reference,
            applied=admitted,
            why=f"admits {reference} in namespace {namespace}"
            if admitted
            else f"it covers {reference}, but another denial remains: {remaining[0]}",
            category="applied" if admitted else "other_denials",
        )
        for reference, loaded in covering.items()
    ]
    if admitted:  # what policy alone answered, for replay (see without_exception)
        applied = [{**record, "overrides": unchanged.result} for record in applied]
    if not admitted:
        return _with(unchanged, applied + rejected)
    loud = [
        f"{LOUD}{loaded.ident} admits {reference}, which policy denies: signed by "
        f"{loaded.signer}, ticket {loaded.document.ticket if loaded.document else '?'}, "
        f"expires {loaded.document.expires if loaded.document else '?'}"
        for reference, loaded in covering.items()
    ]
    warnings = (*loud, *(f"{EXCUSED}{m}" for m in excused), *unchanged.warnings)
    codes = {f"{EXCUSED}{m}": unchanged.codes[m] for m in excused if m in unchanged.codes}
    codes.update((w, c) for w, c in unchanged.codes.items() if w in unchanged.warnings)
    return _with(Outcome("warned", (), warnings, 200, codes), applied + rejected)


def _with(outcome: Outcome, records: list[dict[str, Any]]) -> Outcome:
    return replace(outcome, records=tuple(records[:MAX_RECORDED]))


def image_facts(checks: Sequence[ImageCheck]) -> list[ImageFacts]:
    """The facts of the webhook's image checks (``admission.policy_input.ImageCheck``)."""
    return [ImageFacts(c.reference, c.name, c.digest, c.outcome) for c in checks]


def without_exception(document: dict[str, Any]) -> dict[str, Any]:
    """A recorded decision as policy alone answered it, before an exception admitted it
    (``decisions replay`` compares a new policy's answer with this); others unchanged."""
    exception = document.get("exception")
    if not isinstance(exception, dict) or exception.get("applied") is not True:
        return document
    warnings = [w for w in document.get("warnings") or [] if isinstance(w, str)]
    return {
        **document,
        "result": exception.get("overrides") or "denied",
        "messages": [w.removeprefix(EXCUSED) for w in warnings if w.startswith(EXCUSED)],
        "warnings": [w for w in warnings if not w.startswith((EXCUSED, LOUD))],
    }
