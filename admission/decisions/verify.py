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

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from admission.decisions.chain import (
    GENESIS,
    Checkpoint,
    checkpoint_signature_valid,
    record_hash,
    stored_public_key,
)
from admission.decisions.model import ImageRow, load_document, record_fields
from admission.decisions.store import (
    DecisionDatabase,
    checkpoints_table,
    decisions_table,
    images_table,
)
from attest.errors import UsageError
from attest.signing import keys

_PAGE = 1000
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

    def record(self, row: sa.Row[Any], document: dict[str, Any] | None) -> None:
        """One record in ``seq`` order (``document`` is None when unreadable)."""

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        """One checkpoint that verified and names a stored record with its hash."""


def _rows(conn: sa.Connection, replica: str) -> Iterator[tuple[sa.Row[Any], list[ImageRow]]]:
    after = -1
    while True:
        rows = list(
            conn.execute(
                sa.select(decisions_table)
                .where(decisions_table.c.replica == replica, decisions_table.c.seq > after)
                .order_by(decisions_table.c.seq)
                .limit(_PAGE)
            )
        )
        if not rows:
            return
        images: dict[int, list[ImageRow]] = {row.seq: [] for row in rows}
        for image in conn.execute(
            sa.select(images_table)
            .where(
                images_table.c.replica == replica,
                images_table.c.seq > after,
                images_table.c.seq <= rows[-1].seq,
            )
            .order_by(images_table.c.seq, images_table.c.position)
        ):
            images.setdefault(image.seq, []).append(
                ImageRow(image.position, image.reference, image.digest, image.policy)
            )
        for row in rows:
            yield row, images.get(row.seq, [])
        after = rows[-1].seq


def _check_columns(
    row: sa.Row[Any], images: list[ImageRow]
) -> tuple[str | None, dict[str, Any] | None]:
    """What is wrong with the derived columns (None when nothing), and the parsed document."""
    try:
        document = load_document(row.document)
        fields = record_fields(document)
    except Exception as err:
        return f"document is not a readable decision ({type(err).__name__})", None
    for name, value in fields.columns().items():
        stored = getattr(row, name)
        if stored != value:
            return (
                f"column {name}={stored!r} does not match the recorded decision ({value!r})",
                document,
            )
    if tuple(images) != fields.images:
        return "image rows do not match the recorded decision", document
    return None, document


def _check_chain(
    conn: sa.Connection,
    report: ReplicaReport,
    problems: list[Problem],
    observer: VerifyObserver | None = None,
) -> None:
    replica = report.replica
    prev_seq, prev_hash = 0, GENESIS
    for row, images in _rows(conn, replica):
        report.records += 1
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
    report.head_seq, report.head_hash = prev_seq, prev_hash


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
) -> tuple[ReplicaReport, list[Problem]]:
    """Check one replica's chain and checkpoints (what ``verify_database`` does per replica)."""
    replica = ReplicaReport(name)
    problems: list[Problem] = []
    _check_chain(conn, replica, problems, observer)
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
