"""Finding decisions: filters by time range, namespace, image glob, digest, result and policy.

Times are absolute (``2024-05-14``, ``2024-05-14T10:00:00Z``, any ISO 8601
with an offset) or relative to now (``30m``, ``24h``, ``7d``).  The image glob
(``*`` any run of characters, ``?`` one character, case-sensitive) is matched
against the reference as the workload named it; the digest may be a prefix
(``sha256:3f2a``) of at least 8 characters after ``sha256:``.  ``policy`` is an
image policy name.  Listing is newest first; export streams oldest first.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa

from admission.decisions.model import (
    ImageRow,
    RecordFields,
    StoredDecision,
    load_document,
    normalise_time,
)
from admission.decisions.store import DecisionDatabase, decisions_table, images_table
from admission.errors import DecisionStoreError
from admission.verdict import RESULTS
from attest.errors import UsageError

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DIGEST = re.compile(r"^(sha256:)?[0-9a-f]{8,64}$")


@dataclass(frozen=True)
class DecisionFilter:
    """Conditions a decision must meet (all that are set)."""

    since: str | None = None  # normalised times (see model.normalise_time)
    until: str | None = None
    namespaces: tuple[str, ...] = ()
    image: str | None = None
    digest: str | None = None
    results: tuple[str, ...] = ()
    policy: str | None = None
    limit: int | None = 100


def parse_time(text: str, *, now: dt.datetime | None = None) -> str:
    """An absolute or relative (``24h``, ``7d``) time, normalised; one-line error otherwise."""
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        seconds = int(relative.group(1)) * _UNITS[relative.group(2)]
        return normalise_time((now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=seconds))
    if re.match(r"^\d{4}-\d{2}-\d{2}$", value):
        value += "T00:00:00Z"
    try:
        return normalise_time(value)
    except UsageError:
        raise UsageError(
            f"time {text!r}: use ISO 8601 (2024-05-14, 2024-05-14T10:00:00Z) or 30m, 24h, 7d"
        ) from None


def check_results(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        if value not in RESULTS:
            raise UsageError(f"result {value!r}: expected one of {', '.join(RESULTS)}")
    return values


def check_digest(value: str) -> str:
    text = value.strip().lower()
    if not _DIGEST.match(text):
        raise UsageError(f"digest {value!r}: expected sha256:<hex> (a prefix of 8+ hex digits)")
    return text if text.startswith("sha256:") else "sha256:" + text


def filter_from_text(
    limit: int | None,
    *,
    since: str | None = None,
    until: str | None = None,
    namespaces: tuple[str, ...] = (),
    image: str | None = None,
    digest: str | None = None,
    results: tuple[str, ...] = (),
    policy: str | None = None,
) -> DecisionFilter:
    """A filter from what a user typed (empty means unset); raises ``UsageError`` naming a bad
    time, digest or result."""
    return DecisionFilter(
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
        namespaces=tuple(namespaces),
        image=image or None,
        digest=check_digest(digest) if digest else None,
        results=check_results(tuple(results)),
        policy=policy or None,
        limit=limit,
    )


def glob_to_like(pattern: str) -> str:
    """A shell-style glob (``*``, ``?``) as a SQL LIKE pattern with ``\\`` as escape."""
    out = []
    for char in pattern:
        if char in "\\%_":
            out.append("\\" + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append(char)
    return "".join(out)


class RecordRow(NamedTuple):
    """One row of the decisions table as a plain tuple: readers that go through every record
    use it (attribute access on it costs a tenth of that on an SQLAlchemy ``Row``)."""

    id: int
    replica: str
    seq: int
    time: str
    uid: str
    operation: str
    kind: str
    namespace: str
    name: str
    username: str
    result: str
    bundle_hash: str
    trust_fingerprint: str
    engine: str
    document: str
    prev_hash: str
    hash: str


def record_rows() -> sa.Select[Any]:
    """``SELECT`` of the decisions table's columns in ``RecordRow`` order (``RecordRow._make``
    each row)."""
    return sa.select(*(decisions_table.c[name] for name in RecordRow._fields))


def _image_condition(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    return sa.exists(
        sa.select(images_table.c.seq).where(
            images_table.c.replica == decisions_table.c.replica,
            images_table.c.seq == decisions_table.c.seq,
            *conditions,
        )
    )


def _conditions(flt: DecisionFilter) -> list[sa.ColumnElement[bool]]:
    table = decisions_table
    conditions: list[sa.ColumnElement[bool]] = []
    if flt.since:
        conditions.append(table.c.time >= flt.since)
    if flt.until:
        conditions.append(table.c.time < flt.until)
    if flt.namespaces:
        conditions.append(table.c.namespace.in_(flt.namespaces))
    if flt.results:
        conditions.append(table.c.result.in_(flt.results))
    if flt.image:
        conditions.append(
            _image_condition(images_table.c.reference.like(glob_to_like(flt.image), escape="\\"))
        )
    if flt.digest:
        digest = flt.digest
        condition = (
            images_table.c.digest == digest
            if len(digest) == 71
            else images_table.c.digest.like(glob_to_like(digest) + "%", escape="\\")
        )
        conditions.append(_image_condition(condition))
    if flt.policy:
        conditions.append(_image_condition(images_table.c.policy == flt.policy))
    return conditions


def conditions(flt: DecisionFilter) -> list[sa.ColumnElement[bool]]:
    """The SQL conditions of ``flt`` (for readers that build their own statement)."""
    return _conditions(flt)


def _images_for(
    conn: sa.Connection, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], list[ImageRow]]:
    found: dict[tuple[str, int], list[ImageRow]] = {key: [] for key in keys}
    by_replica: dict[str, list[int]] = {}
    for replica, seq in keys:
        by_replica.setdefault(replica, []).append(seq)
    for replica, seqs in by_replica.items():
        rows = conn.execute(
            sa.select(images_table)
            .where(images_table.c.replica == replica, images_table.c.seq.in_(seqs))
            .order_by(images_table.c.seq, images_table.c.position)
        )
        for row in rows:
            found[(replica, row.seq)].append(
                ImageRow(row.position, row.reference, row.digest, row.policy)
            )
    return found


def _stored(row: sa.Row[Any], images: list[ImageRow]) -> StoredDecision:
    fields = RecordFields(
        time=row.time,
        uid=row.uid,
        operation=row.operation,
        kind=row.kind,
        namespace=row.namespace,
        name=row.name,
        user=row.username,
        result=row.result,
        bundle_hash=row.bundle_hash,
        trust_fingerprint=row.trust_fingerprint,
        engine=row.engine,
        images=tuple(images),
    )
    try:
        document = load_document(row.document)
    except ValueError:
        document = {"unreadable": row.document[:200]}
    return StoredDecision(row.id, row.replica, row.seq, row.prev_hash, row.hash, fields, document)


def _materialise(conn: sa.Connection, rows: list[sa.Row[Any]]) -> list[StoredDecision]:
    images = _images_for(conn, [(row.replica, row.seq) for row in rows])
    return [_stored(row, images[(row.replica, row.seq)]) for row in rows]


def list_decisions(database: DecisionDatabase, flt: DecisionFilter) -> list[StoredDecision]:
    """Decisions matching ``flt``, newest first, at most ``flt.limit``."""
    statement = (
        sa.select(decisions_table)
        .where(*_conditions(flt))
        .order_by(decisions_table.c.time.desc(), decisions_table.c.id.desc())
    )
    if flt.limit is not None:
        statement = statement.limit(flt.limit)
    with database.reading() as conn:
        return _materialise(conn, list(conn.execute(statement)))


def iter_decisions(
    database: DecisionDatabase, flt: DecisionFilter, *, page: int = 500
) -> Iterator[StoredDecision]:
    """Every decision matching ``flt`` (``limit`` ignored), oldest first, read page by page."""
    after = 0
    conditions = _conditions(flt)
    while True:
        with database.reading() as conn:
            rows = list(
                conn.execute(
                    sa.select(decisions_table)
                    .where(decisions_table.c.id > after, *conditions)
                    .order_by(decisions_table.c.id)
                    .limit(page)
                )
            )
            batch = _materialise(conn, rows)
        yield from batch
        if len(rows) < page:
            return
        after = rows[-1].id


def get_decision(database: DecisionDatabase, ident: str) -> StoredDecision:
    """One decision by record id (a number) or by admission request uid."""
    text = ident.strip()
    table = decisions_table
    if text.isdigit():
        condition = table.c.id == int(text)
    elif text:
        condition = table.c.uid == text
    else:
        raise UsageError("decision id: empty")
    with database.reading() as conn:
        rows = list(conn.execute(sa.select(table).where(condition).order_by(table.c.id).limit(2)))
        if not rows:
            raise DecisionStoreError(f"decision {ident}: not found in {database.display}")
        if len(rows) > 1:
            raise UsageError(
                f"decision {ident}: several records have this uid; use a record id "
                f"({', '.join(str(row.id) for row in rows)}, …)"
            )
        return _materialise(conn, rows)[0]
