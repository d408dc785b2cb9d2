"""What the AppSec pages show, as plain dictionaries built from stored decisions.

The recorded document is whatever ``Decision.to_dict()`` gave at the time, so
every value is looked up in both spellings and a missing part is shown as
missing, never as an error.  Templates only print these values (Jinja
autoescaping makes every one of them text, never markup).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from admission.decisions.model import StoredDecision, pick
from admission.decisions.query import DecisionFilter, filter_from_text
from admission.verdict import RESULTS, Result
from attest.signing.result import SignerIdentity

FILTER_FIELDS = ("since", "until", "namespace", "image", "digest", "result", "policy", "limit")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class FilterForm:
    """The list page's filters as typed (shown back in the form) and as a query filter."""

    values: dict[str, str]
    flt: DecisionFilter


def parse_filters(args: Any) -> FilterForm:
    """Query-string filters → ``DecisionFilter``; raises ``UsageError`` naming a bad field."""
    from attest.errors import UsageError

    values = {name: (args.get(name) or "").strip() for name in FILTER_FIELDS}
    limit = DEFAULT_LIMIT
    if values["limit"]:
        if not values["limit"].isdigit() or not 1 <= int(values["limit"]) <= MAX_LIMIT:
            raise UsageError(f"limit {values['limit']!r}: a number from 1 to {MAX_LIMIT}")
        limit = int(values["limit"])
    namespaces = tuple(n.strip() for n in values["namespace"].split(",") if n.strip())
    flt = filter_from_text(
        limit,
        since=values["since"],
        until=values["until"],
        namespaces=namespaces,
        image=values["image"],
        digest=values["digest"],
        results=(values["result"],) if values["result"] else (),
        policy=values["policy"],
    )
    return FilterForm(values, flt)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return []


def summary(record: StoredDecision) -> dict[str, Any]:
    """One row of the list page."""
    fields = record.fields
    messages = _strings(pick(record.document, "messages")) or _strings(
        pick(record.document, "warnings")
    )
    return {
        "id": record.id,
        "time": fields.time[:19].replace("T", " ") + "Z",
        "result": fields.result,
        "operation": fields.operation,
        "kind": fields.kind,
        "target": f"{fields.namespace}/{fields.name}" if fields.namespace else fields.name,
        "user": fields.user,
        "images": [
            {"reference": image.reference, "digest": image.digest or "", "policy": image.policy}
            for image in fields.images
        ],
        "message": messages[0] if messages else "",
    }


def _check(check: dict[str, Any]) -> dict[str, Any]:
    signer = pick(check, "signer")
    who = SignerIdentity.from_dict(signer).describe() if isinstance(signer, dict) and signer else ""
    tlog = pick(check, "tlog")
    return {
        "verified": bool(pick(check, "verified", default=False)),
        "what": pick(check, "predicate_type", "predicateType") or pick(check, "kind", default=""),
        "storage": pick(check, "storage", default=""),
        "location": pick(check, "location", default=""),
        "authority": pick(check, "authority") or "",
        "signer": who,
        "reasons": _strings(pick(check, "reasons", default=[])),
        "tlog": pick(tlog, "logIndex", "log_index") if isinstance(tlog, dict) else None,
    }


def _image(image: Any) -> dict[str, Any]:
    if not isinstance(image, dict):
        return {"reference": str(image), "signatures": [], "attestations": [], "errors": []}
    verification = pick(image, "verification", default={}) or {}
    if not isinstance(verification, dict):
        verification = {}
    policy = pick(image, "policy", "matched_policy", "matchedPolicy")
    if isinstance(policy, dict):
        policy = pick(policy, "name")
    return {
        "reference": pick(image, "reference", "image", default="?"),
        "digest": pick(image, "digest") or pick(verification, "digest") or "",
        "policy": policy or "",
        "outcome": pick(image, "outcome", default=""),
        "error": pick(image, "error") or "",
        "cached": bool(image.get("cached")),
        "unchanged": bool(image.get("unchanged")),
        "verified": pick(verification, "verified") if verification else None,
        "authorities": _strings(
            pick(verification, "satisfied_authorities", "satisfiedAuthorities", default=[])
        ),
        "signatures": [
            _check(c)
            for c in pick(verification, "signatures", default=[]) or []
            if isinstance(c, dict)
        ],
        "attestations": [
            _check(c)
            for c in pick(verification, "attestations", default=[]) or []
            if isinstance(c, dict)
        ],
        "errors": _strings(pick(verification, "errors", default=[])),
    }


def _coded(messages: list[str], codes: Any) -> list[tuple[str, str]]:
    """Each message with its code (``""`` when the record has none for it)."""
    if not isinstance(codes, dict):
        codes = {}
    return [(message, str(codes.get(message) or "")) for message in messages]


def _latency(document: dict[str, Any]) -> list[tuple[str, str]]:
    latency = pick(document, "latency", "latency_ms", "latencyMs", default={})
    if not isinstance(latency, dict):
        return []
    return [
        (stage, f"{value:.1f} ms" if isinstance(value, int | float) else str(value))
        for stage, value in latency.items()
    ]


def detail(record: StoredDecision) -> dict[str, Any]:
    """Everything recorded about one decision, for its page."""
    fields, document = record.fields, record.document
    policy_input = pick(document, "input")
    codes = pick(document, "codes", default={})
    return {
        **summary(record),
        "uid": fields.uid,
        "namespace": fields.namespace,
        "name": fields.name,
        "full_time": fields.time,
        "bundle_hash": fields.bundle_hash,
        "trust_fingerprint": fields.trust_fingerprint,
        "engine": fields.engine,
        "replica": record.replica,
        "seq": record.seq,
        "hash": record.hash,
        "prev_hash": record.prev_hash,
        "messages": _coded(_strings(pick(document, "messages")), codes),
        "warnings": _coded(_strings(pick(document, "warnings")), codes),
        "latency": _latency(document),
        "checked": pick(document, "checked", default=True),
        "caller": str(pick(document, "caller", default="") or ""),
        "dry_run": bool(pick(document, "dryRun", "dry_run", default=False)),
        "images_detail": [_image(image) for image in pick(document, "images", default=[]) or []],
        "exceptions": [
            e for e in pick(document, "exceptions", default=[]) or [] if isinstance(e, dict)
        ],
        "input_json": json.dumps(policy_input, indent=2, sort_keys=True)
        if policy_input is not None
        else "",
    }


def result_choices() -> tuple[Result, ...]:
    return RESULTS
