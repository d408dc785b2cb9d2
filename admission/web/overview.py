"""The AppSec overview's aggregates, computed in the database and streamed, never loaded whole.

Counts are ``GROUP BY`` queries over the indexed columns; what only the recorded
document knows (deny messages, per-image provenance) is read as one JSON field per
row through a streaming cursor and folded into bounded counters.  Documents are
canonical JSON (RFC 8785), so a few facts are plain ``LIKE`` tests on the text:
``"checked":false`` (a request the webhook does not judge) and
``"exception":{"applied":true`` (admitted by a signed exception).

These queries are the web view's own for now; ``admission/decisions/stats.py``
(``attest decisions stats``) will become their one home.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import sqlalchemy as sa

from admission.decisions import query
from admission.decisions.model import StoredDecision, normalise_time
from admission.decisions.store import (
    DecisionDatabase,
    checkpoints_table,
    decisions_table,
    images_table,
)
from attest.attestations.slsa import SLSA_PROVENANCE_TYPES

ADMITTED = ("allowed", "warned")
DENIED = ("denied", "timed_out", "error")
UNCHECKED = '%"checked":false%'
EXCEPTED = '%"exception":{"applied":true%'
MAX_REASONS = 10
MAX_UNPROVEN = 50
STREAM = 1000


def _json_field(database: DecisionDatabase, name: str) -> sa.ColumnElement[Any]:
    column = decisions_table.c.document
    if database.is_postgres:
        return sa.func.json_extract_path_text(sa.cast(column, sa.JSON), name)
    return sa.func.json_extract(column, f"$.{name}")


def admissions_over_time(
    database: DecisionDatabase, since: str, until: str, *, hourly: bool
) -> dict[str, Any]:
    """Decisions per day (or hour) and result: ``{"buckets": [...], "series": {result: [...]}}``."""
    table = decisions_table
    bucket = sa.func.substr(table.c.time, 1, 13 if hourly else 10).label("bucket")
    statement = (
        sa.select(bucket, table.c.result, sa.func.count().label("n"))
        .where(table.c.time >= since, table.c.time < until)
        .group_by(bucket, table.c.result)
        .order_by(bucket)
    )
    counts: dict[tuple[str, str], int] = {}
    with database.reading() as conn:
        for row in conn.execute(statement):
            counts[(row.bucket, row.result)] = int(row.n)
    buckets = _buckets(since, until, hourly)
    series = {
        result: [counts.get((b, result), 0) for b in buckets]
        for result in ("allowed", "warned", *DENIED)
    }
    return {"buckets": buckets, "series": series}


def _buckets(since: str, until: str, hourly: bool) -> list[str]:
    start = dt.datetime.fromisoformat(since[:19] + "+00:00")
    end = dt.datetime.fromisoformat(until[:19] + "+00:00")
    step = dt.timedelta(hours=1) if hourly else dt.timedelta(days=1)
    start = (
        start.replace(minute=0, second=0) if hourly else start.replace(hour=0, minute=0, second=0)
    )
    found: list[str] = []
    while start < end and len(found) < 400:
        found.append(start.strftime("%Y-%m-%dT%H" if hourly else "%Y-%m-%d"))
        start += step
    return found


def compliance(database: DecisionDatabase, since: str, until: str) -> dict[str, Any]:
    """Per namespace and overall: admissions of judged requests, how many met every gate
    (``allowed``: no warn mode, no warning, no exception), how many an exception admitted."""
    table = decisions_table
    compliant = sa.func.sum(sa.case((table.c.result == "allowed", 1), else_=0))
    excepted = sa.func.sum(sa.case((table.c.document.like(EXCEPTED), 1), else_=0))
    statement = (
        sa.select(
            table.c.namespace,
            sa.func.count().label("admitted"),
            compliant.label("compliant"),
            excepted.label("excepted"),
        )
        .where(
            table.c.time >= since,
            table.c.time < until,
            table.c.result.in_(ADMITTED),
            table.c.document.not_like(UNCHECKED),
        )
        .group_by(table.c.namespace)
        .order_by(table.c.namespace)
    )
    namespaces = []
    with database.reading() as conn:
        for row in conn.execute(statement):
            namespaces.append(_rate(row.namespace, row.admitted, row.compliant, row.excepted))
    overall = _rate(
        "(all)",
        sum(n["admitted"] for n in namespaces),
        sum(n["compliant"] for n in namespaces),
        sum(n["excepted"] for n in namespaces),
    )
    return {"overall": overall, "namespaces": namespaces}


def _rate(namespace: str, admitted: Any, compliant: Any, excepted: Any) -> dict[str, Any]:
    admitted, compliant, excepted = int(admitted or 0), int(compliant or 0), int(excepted or 0)
    return {
        "namespace": namespace,
        "admitted": admitted,
        "compliant": compliant,
        "excepted": excepted,
        "rate": compliant / admitted if admitted else 1.0,
    }


def reason_of(message: str) -> str:
    """A deny message without the image reference it starts with, so reasons group."""
    head, sep, rest = message.partition(": ")
    return rest if sep and " " not in head and ("/" in head or ":" in head) else message


def top_deny_reasons(database: DecisionDatabase, since: str, until: str) -> list[dict[str, Any]]:
    """The most frequent reasons of denials (each message of a denied decision counted once)."""
    table = decisions_table
    statement = sa.select(_json_field(database, "messages").label("messages")).where(
        table.c.time >= since, table.c.time < until, table.c.result.in_(DENIED)
    )
    counts: Counter[str] = Counter()
    with database.reading() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=STREAM).execute(statement)
        for row in rows:
            for message in _list(row.messages):
                if isinstance(message, str):
                    counts[reason_of(message)[:300]] += 1
            if len(counts) > 10_000:  # bounded: keep the frequent ones
                counts = Counter(dict(counts.most_common(1000)))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))  # ties: by reason
    return [{"reason": r, "count": n} for r, n in ranked[:MAX_REASONS]]


def _list(text: Any) -> list[Any]:
    if not isinstance(text, str):
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []


def has_provenance(image: dict[str, Any]) -> bool:
    """Whether a recorded image had a verified SLSA provenance attestation."""
    verification = image.get("verification")
    if not isinstance(verification, dict):
        return False
    return any(
        isinstance(a, dict)
        and a.get("verified") is True
        and a.get("predicateType") in SLSA_PROVENANCE_TYPES
        for a in verification.get("attestations") or []
    )


def admitted_without_provenance(
    database: DecisionDatabase, since: str, until: str
) -> list[dict[str, Any]]:
    """Images of admitted (judged) requests without verified provenance, most admitted first."""
    table = decisions_table
    statement = sa.select(table.c.namespace, _json_field(database, "images").label("images")).where(
        table.c.time >= since,
        table.c.time < until,
        table.c.result.in_(ADMITTED),
        table.c.document.not_like(UNCHECKED),
    )
    found: dict[str, dict[str, Any]] = {}
    with database.reading() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=STREAM).execute(statement)
        for row in rows:
            for image in _list(row.images):
                if not isinstance(image, dict) or has_provenance(image):
                    continue
                key = str(image.get("digest") or image.get("reference"))
                entry = found.get(key)
                if entry is None:
                    if len(found) >= MAX_UNPROVEN * 20:
                        continue
                    entry = found[key] = {
                        "reference": str(image.get("reference") or ""),
                        "digest": image.get("digest"),
                        "outcome": image.get("outcome"),
                        "namespaces": [],
                        "count": 0,
                    }
                entry["count"] += 1
                if row.namespace not in entry["namespaces"] and len(entry["namespaces"]) < 5:
                    entry["namespaces"].append(row.namespace)
    ranked = sorted(found.values(), key=lambda e: (-e["count"], e["reference"], str(e["digest"])))
    return ranked[:MAX_UNPROVEN]  # ties in a fixed order, whatever order the database reads in


def chain_status(database: DecisionDatabase) -> list[dict[str, Any]]:
    """Per replica: records, head, newest time and how far its newest signed checkpoint covers.

    A quick look from counts, not the full hash check (``attest decisions verify``)."""
    table, marks = decisions_table, checkpoints_table
    with database.reading() as conn:
        heads = conn.execute(
            sa.select(
                table.c.replica,
                sa.func.count().label("records"),
                sa.func.min(table.c.seq).label("first"),
                sa.func.max(table.c.seq).label("head"),
                sa.func.max(table.c.time).label("newest"),
            ).group_by(table.c.replica)
        ).all()
        signed = {
            row.replica: row
            for row in conn.execute(
                sa.select(
                    marks.c.replica,
                    sa.func.max(marks.c.seq).label("seq"),
                    sa.func.max(marks.c.signed_at).label("signed_at"),
                ).group_by(marks.c.replica)
            )
        }
    replicas = []
    for row in heads:
        checkpoint = signed.get(row.replica)
        covered = int(checkpoint.seq) if checkpoint else 0
        gaps = int(row.head) - int(row.first) + 1 - int(row.records)
        uncovered = int(row.head) - covered
        if gaps:
            status = f"{gaps} records missing from the chain"
        elif uncovered > 0:
            status = f"the newest {uncovered} records are not covered by a signed checkpoint"
        else:
            status = "head covered by a signed checkpoint"
        replicas.append(
            {
                "replica": row.replica,
                "records": int(row.records),
                "head": int(row.head),
                "newest": row.newest,
                "checkpoint": covered or None,
                "checkpointSignedAt": checkpoint.signed_at if checkpoint else None,
                "ok": not gaps and uncovered <= 0,
                "status": status,
            }
        )
    return replicas


def image_decisions(
    database: DecisionDatabase, digest: str, limit: int, before: int | None
) -> list[StoredDecision]:
    """Decisions that involved ``digest``, newest first, a page of ``limit`` before record
    id ``before`` (keyset pagination: any depth costs the same)."""
    flt = query.DecisionFilter(digest=digest, limit=limit)
    return page(database, flt, before)


def page(
    database: DecisionDatabase, flt: query.DecisionFilter, before: int | None
) -> list[StoredDecision]:
    """Decisions matching ``flt``, newest first, the ``flt.limit`` that come after record
    ``before`` in that order (keyset pagination over (time, id))."""
    table = decisions_table
    conditions = query._conditions(flt)
    with database.reading() as conn:
        if before is not None:
            anchor = conn.execute(sa.select(table.c.time).where(table.c.id == before)).scalar()
            if anchor is None:
                return []
            conditions.append(
                sa.or_(table.c.time < anchor, sa.and_(table.c.time == anchor, table.c.id < before))
            )
        statement = (
            sa.select(table)
            .where(*conditions)
            .order_by(table.c.time.desc(), table.c.id.desc())
            .limit(flt.limit)
        )
        return query._materialise(conn, list(conn.execute(statement)))


def period(since_text: str, until_text: str, now: dt.datetime) -> tuple[str, str, bool]:
    """The overview's period (default the last 14 days); hourly buckets up to two days."""
    since = query.parse_time(since_text or "14d", now=now)
    until = query.parse_time(until_text, now=now) if until_text else normalise_time(now)
    start = dt.datetime.fromisoformat(since[:19] + "+00:00")
    end = dt.datetime.fromisoformat(until[:19] + "+00:00")
    return since, until, end - start <= dt.timedelta(days=2)


def digests_known(database: DecisionDatabase, digest: str) -> bool:
    with database.reading() as conn:
        return (
            conn.execute(
                sa.select(images_table.c.seq).where(images_table.c.digest == digest).limit(1)
            ).first()
            is not None
        )
