"""Checking a decision database: every chain link, every derived column, every checkpoint.

For each replica, records are read in ``seq`` order and each is checked: its
hash recomputed from the stored canonical JSON, its link to the previous
record, no gap in ``seq``, and its filter columns and image rows equal to what
its document says (so a forged ``result`` column cannot hide a denial).  Each
checkpoint must sign an existing record with the same hash, with the trusted
key when one is given (else the key recorded with it, which proves only
consistency).  The report lists every problem; the first one per replica is
the first broken link.

Links alone prove nothing against someone who can write to the database: a
rewritten chain with every hash recomputed is consistent.  Only a checkpoint
signed with the trusted key vouches for records, and only for those up to the
head it signs.  So a chain is *covered* when a valid checkpoint signs its
current head; the report says which replicas are not and from which record
(``uncovered``), and ``attest decisions verify`` fails on them with exit 3.

What no check of the database alone can see is a consistent step back: a
replica's whole chain deleted with its checkpoints, or a chain rolled back to an
earlier signed head.  Copies of the checkpoints kept elsewhere (*anchors*: the
server logs each one, ``event: decision_chain_checkpoint``) close that gap: each
anchor must verify with the trusted key and name a record that is still there,
with the same hash.
"""

from __future__ import annotations

import datetime as dt
import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import sqlalchemy as sa

from admission.decisions.chain import (
    GENESIS,
    Checkpoint,
    checkpoint_signature_valid,
    record_hash,
    stored_public_key,
)
from admission.decisions.model import load_document, record_fields
from admission.decisions.query import RecordRow, record_rows
from admission.decisions.store import (
    DecisionDatabase,
    checkpoints_table,
    decisions_table,
    images_table,
)
from attest.errors import UsageError
from attest.signing import keys

_PAGE = 2000
ANCHOR_EVENT = "decision_chain_checkpoint"


@dataclass(frozen=True)
class Problem:
    """One broken thing, located by replica, sequence number and record id."""

    replica: str
    seq: int
    record_id: int | None
    what: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "seq": self.seq,
            "id": self.record_id,
            "problem": self.what,
        }


@dataclass
class ReplicaReport:
    """The state of one replica's chain."""

    replica: str
    records: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    signed_seq: int = 0  # highest seq covered by a valid checkpoint
    signed_at: str | None = None  # when that checkpoint was signed
    checkpoints: int = 0

    @property
    def covered(self) -> bool:
        """Whether a valid checkpoint signs the current head (an empty chain needs none)."""
        return self.signed_seq >= self.head_seq

    def to_dict(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "records": self.records,
            "headSeq": self.head_seq,
            "headHash": self.head_hash,
            "signedSeq": self.signed_seq,
            "signedAt": self.signed_at,
            "unsignedRecords": max(0, self.head_seq - self.signed_seq),
            "covered": self.covered,
            "checkpoints": self.checkpoints,
        }


@dataclass
class VerifyReport:
    """Everything ``attest decisions verify`` found."""

    database: str
    key_source: str  # "trusted key <id>" or "keys recorded with the checkpoints"
    replicas: list[ReplicaReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    anchors: int = 0  # checkpoints from outside the database that were checked

    @property
    def intact(self) -> bool:
        """No broken link, forged column or bad checkpoint (says nothing about coverage)."""
        return not self.problems

    @property
    def uncovered(self) -> list[ReplicaReport]:
        """Replicas whose head no valid checkpoint signs: their newest records are unprotected."""
        return [replica for replica in self.replicas if not replica.covered]

    @property
    def ok(self) -> bool:
        """Intact, and every replica's head signed by a valid checkpoint."""
        return self.intact and not self.uncovered

    @property
    def status(self) -> str:
        """``intact``, ``broken`` or ``uncovered`` (intact, but some head is not signed)."""
        if not self.intact:
            return "broken"
        return "uncovered" if self.uncovered else "intact"

    def first_broken(self) -> list[Problem]:
        """The first problem of each replica's chain, in replica order."""
        seen: dict[str, Problem] = {}
        for problem in self.problems:
            current = seen.get(problem.replica)
            if current is None or problem.seq < current.seq:
                seen[problem.replica] = problem
        return [seen[name] for name in sorted(seen)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "ok": self.ok,
            "status": self.status,
            "keySource": self.key_source,
            "anchors": self.anchors,
            "replicas": [replica.to_dict() for replica in self.replicas],
            "firstBroken": [problem.to_dict() for problem in self.first_broken()],
            "problems": [problem.to_dict() for problem in self.problems],
        }


class VerifyObserver(Protocol):
    """Sees what verification reads, so a report built alongside parses each record once."""

    def record(self, row: RecordRow, document: dict[str, Any] | None) -> None:
        """One record in ``seq`` order (``document`` is None when unreadable)."""

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        """One checkpoint that verified and names a stored record with its hash."""


def _rows(
    conn: sa.Connection, replica: str, after: int | None, through: int | None
) -> Iterator[tuple[RecordRow, list[ImageTuple]]]:
    """``replica``'s records with ``after < seq <= through`` (unbounded where None), in ``seq``
    order, each with its image rows; read a page at a time (bounded memory, short queries)."""
    table = decisions_table
    seq = table.c.seq
    make = RecordRow._make
    while True:
        conditions = [table.c.replica == replica]
        if after is not None:
            conditions.append(seq > after)
        if through is not None:
            conditions.append(seq <= through)
        rows = [
            make(row)
            for row in conn.execute(record_rows().where(*conditions).order_by(seq).limit(_PAGE))
        ]
        if not rows:
            return
        low, high = rows[0].seq, rows[-1].seq
        images: dict[int, list[ImageTuple]] = {}
        for image_seq, position, reference, digest, policy in conn.execute(
            sa.select(
                images_table.c.seq,
                images_table.c.position,
                images_table.c.reference,
                images_table.c.digest,
                images_table.c.policy,
            )
            .where(
                images_table.c.replica == replica,
                images_table.c.seq >= low,
                images_table.c.seq <= high,
            )
            .order_by(images_table.c.seq, images_table.c.position)
        ):
            images.setdefault(image_seq, []).append((position, reference, digest, policy))
        for row in rows:
            yield row, images.get(row.seq, [])
        after = high


_FIELD_NAMES = tuple(record_fields({"time": "2026-01-01T00:00:00Z"}).columns())
_stored_fields = operator.itemgetter(*(RecordRow._fields.index(name) for name in _FIELD_NAMES))
ImageTuple = tuple[int, str, str | None, str | None]  # an ImageRow's fields, in order


class Derived(NamedTuple):
    """The columns ``record_fields`` derives from a document, as plain tuples to compare with
    what is stored: the scalar columns in ``_FIELD_NAMES`` order, and the image rows."""

    columns: tuple[str, ...]
    images: tuple[ImageTuple, ...]


def derive(document: dict[str, Any]) -> Derived:
    """``record_fields(document)`` as ``Derived`` (raises as it does on an unusable document)."""
    fast = plain_derive(document)
    if fast is not None:
        return fast
    fields = record_fields(document)
    images = tuple((i.position, i.reference, i.digest, i.policy) for i in fields.images)
    return Derived(tuple(fields.columns().values()), images)


_PLAIN_TIME = re.compile(
    r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}(?:Z|\+00:00)"
)
_PLAIN_KEYS = (
    *("uid", "operation", "kind", "namespace", "name", "user", "result"),
    *("bundleHash", "trustFingerprint", "engine"),
)


def plain_derive(document: dict[str, Any]) -> Derived | None:
    """``derive(document)`` for the shape the webhook records, else None.

    That shape: the time in UTC with microseconds, every column a string under its
    camelCase name (no snake_case spelling that ``record_fields`` would prefer), and
    each image a reference string or an object with string ``reference`` and
    ``digest`` (or no digest anywhere) and a string or absent ``policy``.  Anything
    else gives None and ``record_fields`` decides, so the result is always the same
    (tests/decisions/test_verify_fast.py holds them equal).  Verification derives the
    columns of every record; this is several times faster than the general way.
    """
    get = document.get
    time = get("time")
    if type(time) is not str or not _PLAIN_TIME.fullmatch(time):
        return None
    try:
        dt.datetime.fromisoformat(time[:26])  # a real date and time, as normalise_time needs
    except ValueError:
        return None
    if get("bundle_hash") is not None or get("trust_fingerprint") is not None:
        return None
    values: list[Any] = [get(key) for key in _PLAIN_KEYS]
    for value in values:
        if type(value) is not str:
            return None
    uid, operation, kind, namespace, name, user, result, bundle, trust, engine = values
    images = get("images")
    if images is None:
        images = []
    elif type(images) is not list:
        return None
    rows: list[ImageTuple] = []
    for position, image in enumerate(images):
        if type(image) is str:
            rows.append((position, image, None, None))
            continue
        if type(image) is not dict:
            return None
        reference, digest, policy = image.get("reference"), image.get("digest"), image.get("policy")
        if type(reference) is not str:
            return None
        if digest is None:  # unresolved: none in the verification either
            verification = image.get("verification")
            if verification is not None and (
                type(verification) is not dict or verification.get("digest") is not None
            ):
                return None
        elif type(digest) is not str or not digest:
            return None
        if policy is None:
            if image.get("matched_policy") is not None or image.get("matchedPolicy") is not None:
                return None
        elif type(policy) is not str:
            return None
        rows.append((position, reference, digest, policy or None))
    columns: tuple[str, ...] = (time[:26] + "Z", uid, operation.upper(), kind, namespace, name)
    columns += (user, result.lower(), bundle, trust, engine)
    return Derived(columns, tuple(rows))


def _check_columns(
    row: RecordRow, images: list[ImageTuple]
) -> tuple[str | None, dict[str, Any] | None]:
    """What is wrong with the derived columns (None when nothing), and the parsed document."""
    try:
        document = load_document(row.document)
        fields = derive(document)
    except Exception as err:
        return f"document is not a readable decision ({type(err).__name__})", None
    if _stored_fields(row) != fields.columns:
        for name, value in zip(_FIELD_NAMES, fields.columns, strict=True):
            stored = getattr(row, name)
            if stored != value:
                return (
                    f"column {name}={stored!r} does not match the recorded decision ({value!r})",
                    document,
                )
        return "columns do not match the recorded decision", document
    if tuple(images) != fields.images:
        return "image rows do not match the recorded decision", document
    return None, document


@dataclass
class ChainPart:
    """What checking one stretch of a replica's chain found (``check_chain_part``)."""

    replica: str
    records: int = 0
    head: tuple[int, str] | None = None  # the last record read: seq, hash
    problems: list[Problem] = field(default_factory=list)


def check_chain_part(
    conn: sa.Connection,
    replica: str,
    *,
    after: int | None = None,
    through: int | None = None,
    observer: VerifyObserver | None = None,
) -> ChainPart:
    """Check the records of ``replica`` with ``after < seq <= through`` (all when None).

    The first of them must link to the record before it, whoever checks that one: a
    chain split into consecutive parts (checked in several processes, say) gives
    the same problems as when checked in one piece.
    """
    part = ChainPart(replica)
    problems = part.problems
    prev_seq, prev_hash = 0, GENESIS
    if after is not None:
        before = conn.execute(
            sa.select(decisions_table.c.seq, decisions_table.c.hash)
            .where(decisions_table.c.replica == replica, decisions_table.c.seq <= after)
            .order_by(decisions_table.c.seq.desc())
            .limit(1)
        ).first()
        if before is not None:
            prev_seq, prev_hash = before.seq, before.hash
    for row, images in _rows(conn, replica, after, through):
        part.records += 1
        where = (replica, row.seq, row.id)
        if row.seq != prev_seq + 1:
            problems.append(
                Problem(*where, f"records {prev_seq + 1}..{row.seq - 1} are missing (gap)")
            )
        elif row.prev_hash != prev_hash:
            problems.append(Problem(*where, "link to the previous record does not match"))
        expected = record_hash(replica, row.seq, row.prev_hash, row.document.encode())
        if expected != row.hash:
            problems.append(Problem(*where, "record was modified (its hash does not match)"))
        mismatch, document = _check_columns(row, images)
        if mismatch:
            problems.append(Problem(*where, mismatch))
        if observer is not None:
            observer.record(row, document)
        prev_seq, prev_hash = row.seq, row.hash
        part.head = (prev_seq, prev_hash)
    return part


def join_parts(replica: str, parts: Iterable[ChainPart]) -> tuple[ReplicaReport, list[Problem]]:
    """One replica's chain state from its consecutive parts, in ``seq`` order."""
    report = ReplicaReport(replica)
    problems: list[Problem] = []
    for part in parts:
        report.records += part.records
        problems.extend(part.problems)
        if part.head is not None:
            report.head_seq, report.head_hash = part.head
    return report, problems


def _check_checkpoints(
    conn: sa.Connection,
    report: ReplicaReport,
    trusted: keys.PublicKey | None,
    problems: list[Problem],
    observer: VerifyObserver | None = None,
) -> None:
    replica = report.replica
    for row in conn.execute(
        sa.select(checkpoints_table)
        .where(checkpoints_table.c.replica == replica)
        .order_by(checkpoints_table.c.seq, checkpoints_table.c.id)
    ):
        report.checkpoints += 1
        checkpoint = Checkpoint(
            row.replica, row.seq, row.hash, row.signed_at, row.key_id, row.signature, row.public_key
        )
        key = trusted or stored_public_key(checkpoint)
        if key is None or not checkpoint_signature_valid(checkpoint, key):
            who = "the trusted key" if trusted else "its recorded key"
            problems.append(
                Problem(replica, row.seq, None, f"checkpoint signature does not verify with {who}")
            )
            continue
        record = conn.execute(
            sa.select(decisions_table.c.id, decisions_table.c.hash).where(
                decisions_table.c.replica == replica, decisions_table.c.seq == row.seq
            )
        ).first()
        if record is None:
            problems.append(
                Problem(replica, row.seq, None, "signed head is missing (records were deleted)")
            )
        elif record.hash != row.hash:
            problems.append(
                Problem(replica, row.seq, record.id, "record differs from the signed chain head")
            )
        elif row.seq >= report.signed_seq:
            report.signed_seq, report.signed_at = row.seq, row.signed_at
        if observer is not None and record is not None and record.hash == row.hash:
            observer.checkpoint(checkpoint)  # verified above, and names its record


def read_anchors(path: str) -> list[Checkpoint]:
    """The logged checkpoints in ``path``: JSON lines with ``event: decision_chain_checkpoint``.

    Other lines (other events, text) are skipped; a checkpoint line that lacks a
    field is an error, and so is a file without any.
    """
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as err:
        raise UsageError(f"--anchors {path}: {err.strerror or err}") from None
    anchors = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("event") != ANCHOR_EVENT:
            continue
        try:
            anchors.append(
                Checkpoint(
                    str(entry["replica"]),
                    int(entry["seq"]),
                    str(entry["hash"]),
                    str(entry["signedAt"]),
                    str(entry.get("keyId", "")),
                    str(entry["signature"]),
                    "",
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise UsageError(f"--anchors {path}:{number}: checkpoint line lacks {err}") from None
    if not anchors:
        raise UsageError(f"--anchors {path}: no {ANCHOR_EVENT} lines")
    return anchors


def _check_anchors(
    conn: sa.Connection,
    anchors: Iterable[Checkpoint],
    trusted: keys.PublicKey,
    problems: list[Problem],
) -> int:
    """Every anchored checkpoint verifies and names a stored record with the same hash."""
    count = 0
    for anchor in anchors:
        count += 1
        if not checkpoint_signature_valid(anchor, trusted):
            problems.append(
                Problem(
                    anchor.replica,
                    anchor.seq,
                    None,
                    "anchored checkpoint does not verify with the trusted key",
                )
            )
            continue
        record = conn.execute(
            sa.select(decisions_table.c.id, decisions_table.c.hash).where(
                decisions_table.c.replica == anchor.replica, decisions_table.c.seq == anchor.seq
            )
        ).first()
        if record is None:
            problems.append(
                Problem(
                    anchor.replica,
                    anchor.seq,
                    None,
                    "an anchored signed head is missing (records deleted or rolled back)",
                )
            )
        elif record.hash != anchor.hash:
            problems.append(
                Problem(
                    anchor.replica,
                    anchor.seq,
                    record.id,
                    "record differs from the anchored signed head",
                )
            )
    return count


def verify_replica(
    conn: sa.Connection,
    name: str,
    trusted_key: keys.PublicKey | None = None,
    observer: VerifyObserver | None = None,
    parts: list[ChainPart] | None = None,
) -> tuple[ReplicaReport, list[Problem]]:
    """Check one replica's chain and checkpoints (what ``verify_database`` does per replica).

    ``parts``: its chain already checked in consecutive parts (by other processes);
    then only the checkpoints are read here.
    """
    if parts is None:
        parts = [check_chain_part(conn, name, observer=observer)]
    replica, problems = join_parts(name, parts)
    _check_checkpoints(conn, replica, trusted_key, problems, observer)
    problems.sort(key=lambda problem: problem.seq)
    return replica, problems


ReplicaResults = Iterable[tuple[ReplicaReport, list[Problem]]]


def verify_database(
    database: DecisionDatabase,
    *,
    trusted_key: keys.PublicKey | None = None,
    anchors: Iterable[Checkpoint] = (),
    observer: VerifyObserver | None = None,
    replicas: Callable[[list[str]], ReplicaResults] | None = None,
) -> VerifyReport:
    """Check every replica's chain and checkpoints in ``database`` (and ``anchors``, which
    need ``trusted_key``); ``observer`` sees every record and every valid checkpoint.

    ``replicas``, when given, runs ``verify_replica`` for the named replicas itself (in
    other processes, say) and returns the results in the same order.
    """
    anchors = list(anchors)
    if anchors and trusted_key is None:
        raise UsageError("checking anchored checkpoints needs the trusted key (--key)")
    source = (
        f"trusted key {keys.key_id(trusted_key)}"
        if trusted_key is not None
        else "keys recorded with the checkpoints (pass --key to check against a trusted key)"
    )
    report = VerifyReport(database=database.display, key_source=source)
    with database.reading() as conn:
        names = set(conn.execute(sa.select(decisions_table.c.replica).distinct()).scalars())
        names |= set(conn.execute(sa.select(checkpoints_table.c.replica).distinct()).scalars())
        ordered = sorted(names)
        results = (
            replicas(ordered)
            if replicas is not None
            else (verify_replica(conn, name, trusted_key, observer) for name in ordered)
        )
        for replica, problems in results:
            report.replicas.append(replica)
            report.problems.extend(problems)
        if anchors:
            assert trusted_key is not None
            anchored: list[Problem] = []
            report.anchors = _check_anchors(conn, anchors, trusted_key, anchored)
            report.problems.extend(sorted(anchored, key=lambda p: (p.replica, p.seq)))
    return report
