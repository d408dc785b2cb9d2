"""Decisions as readable text: one line per decision for lists, every reason for ``show``.

The document of a decision is whatever ``Decision.to_dict()`` recorded, so the
reader looks up both snake_case and camelCase spellings and prints what is
there, never failing on a missing part.
"""

from __future__ import annotations

from typing import Any

from admission.decisions.model import StoredDecision, pick
from attest.signing.result import SignerIdentity

_STAGES = ("resolve", "verify", "evaluate", "total")


def coded(code: object) -> str:
    """`` [code]`` after a message that has a code, else nothing."""
    return f" [{code}]" if isinstance(code, str) and code else ""


def _short(value: str, width: int = 19) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def _messages(document: dict[str, Any], *names: str) -> list[str]:
    value = pick(document, *names, default=[]) or []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]


def summary_line(record: StoredDecision) -> str:
    """``ID  TIME  RESULT  OPERATION KIND NAMESPACE/NAME  IMAGES  first message``."""
    fields = record.fields
    target = f"{fields.namespace}/{fields.name}" if fields.namespace else fields.name
    images = ", ".join(image.reference for image in fields.images) or "-"
    messages = _messages(record.document, "messages") or _messages(record.document, "warnings")
    first = f"  {messages[0]}" if messages else ""
    return (
        f"{record.id:>6}  {fields.time[:19]}Z  {fields.result.upper():<9}  "
        f"{fields.operation} {fields.kind} {target}  [{images}]{first}"
    )


def _latency(document: dict[str, Any]) -> str:
    latency = pick(document, "latency", "latency_ms", "latencyMs", default={})
    if not isinstance(latency, dict) or not latency:
        return "-"
    parts = []
    stages = [s for s in _STAGES if s in latency] + [s for s in latency if s not in _STAGES]
    for stage in stages:
        value = latency[stage]
        if isinstance(value, int | float):
            parts.append(f"{stage} {value:.1f} ms" if value >= 0.1 else f"{stage} {value} ms")
        else:
            parts.append(f"{stage} {value}")
    return ", ".join(parts)


def _signer(check: dict[str, Any]) -> str:
    signer = pick(check, "signer")
    if not isinstance(signer, dict) or not signer:
        return ""
    return f" signer {SignerIdentity.from_dict(signer).describe()}"


def _check_lines(check: dict[str, Any], indent: str) -> list[str]:
    verified = bool(pick(check, "verified", default=False))
    mark = "✓" if verified else "✗"
    what = pick(check, "predicate_type", "predicateType") or pick(check, "kind", default="")
    storage = pick(check, "storage", default="")
    location = pick(check, "location", default="")
    authority = pick(check, "authority")
    by = f" by authority {authority}" if authority else ""
    lines = [f"{indent}{mark} {what} [{storage}] {location}{by}{_signer(check)}".rstrip()]
    for reason in pick(check, "reasons", default=[]) or []:
        lines.append(f"{indent}    - {reason}")
    tlog = pick(check, "tlog")
    if isinstance(tlog, dict) and tlog:
        index = pick(tlog, "logIndex", "log_index")
        lines.append(f"{indent}    transparency log index {index}")
    return lines


def _image_lines(position: int, image: dict[str, Any]) -> list[str]:
    verification = pick(image, "verification", default={}) or {}
    reference = pick(image, "reference", "image", default="?")
    lines = [f"  [{position + 1}] {reference}"]
    lines.append(f"      digest:    {pick(image, 'digest') or pick(verification, 'digest') or '-'}")
    policy = pick(image, "policy", "matched_policy", "matchedPolicy")
    if isinstance(policy, dict):
        policy = pick(policy, "name")
    lines.append(f"      policy:    {policy or '(no policy matched)'}")
    outcome = pick(image, "outcome")
    if outcome:
        notes = [
            n
            for n, key in (("cached", "cached"), ("unchanged by update", "unchanged"))
            if image.get(key)
        ]
        lines.append(f"      outcome:   {outcome}" + (f" ({', '.join(notes)})" if notes else ""))
    if pick(image, "error"):
        lines.append(f"      error:     {image['error']}")
    if isinstance(verification, dict) and verification:
        satisfied = pick(verification, "satisfied_authorities", "satisfiedAuthorities") or []
        verdict = "yes" if pick(verification, "verified") else "no"
        extra = f" (authorities: {', '.join(satisfied)})" if satisfied else ""
        lines.append(f"      verified:  {verdict}{extra}")
        for title, key in (("signatures", "signatures"), ("attestations", "attestations")):
            checks = pick(verification, key, default=[]) or []
            lines.append(f"      {title}: {'none found' if not checks else ''}".rstrip())
            for check in checks:
                if isinstance(check, dict):
                    lines.extend(_check_lines(check, "        "))
        for error in pick(verification, "errors", default=[]) or []:
            lines.append(f"      error:     {error}")
    for reason in _messages(image, "messages", "reasons"):
        lines.append(f"      - {reason}")
    return lines


def detail(record: StoredDecision) -> str:
    """Every recorded fact and reason of one decision, for a human."""
    fields, document = record.fields, record.document
    target = f"{fields.namespace}/{fields.name}" if fields.namespace else fields.name
    lines = [
        f"Decision {record.id}: {fields.result.upper() or '?'}",
        f"  time:      {fields.time}",
        f"  request:   {fields.operation} {fields.kind} {target} (uid {fields.uid or '-'})"
        + (" (dry run: nothing was created)" if pick(document, "dryRun", "dry_run") else ""),
        f"  user:      {fields.user or '-'}",
        f"  caller:    {pick(document, 'caller', default='') or '(no client certificate)'}",
        f"  policy:    bundle {fields.bundle_hash or '-'}, engine {fields.engine or '-'}",
        f"  trust:     {fields.trust_fingerprint or '-'}",
        f"  latency:   {_latency(document)}",
        f"  chain:     replica {record.replica} #{record.seq}, hash {_short(record.hash, 16)}",
    ]
    codes = pick(document, "codes", default={})
    codes = codes if isinstance(codes, dict) else {}
    for title in ("messages", "warnings"):
        messages = _messages(document, title)
        lines.append(f"{title}:" + ("" if messages else " none"))
        lines.extend(f"  - {message}{coded(codes.get(message))}" for message in messages)
    images = pick(document, "images", default=[]) or []
    lines.append("images:" + ("" if images else " none"))
    for position, image in enumerate(images):
        if isinstance(image, dict):
            lines.extend(_image_lines(position, image))
        else:
            lines.append(f"  [{position + 1}] {image}")
    return "\n".join(lines)
