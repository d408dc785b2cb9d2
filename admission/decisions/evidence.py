"""Audit evidence: what was admitted in a period, and how far the signed decision chain vouches for it.

One pass of ``verify.verify_database`` (the same checks as ``attest decisions
verify``) reads every record; an observer feeds the records of the period to
``stats.DecisionStats`` and notes, per replica, which records of the period it
saw and which valid checkpoint first covers them.  A record of the period is
*verified* only when a checkpoint that verifies with the trusted key signs a
head at or after it and no problem was found at or before it in its chain;
every other record of the period is listed under ``unverified`` with the
reason, never counted as verified.  Without a trusted key nothing is verified
(the keys stored with the checkpoints prove only consistency).

The predicate (``PREDICATE_TYPE``, schema in docs/evidence.md) is plain data;
``attest evidence`` signs it as an in-toto Statement whose subjects are the
chain heads and the HTML and CSV renderings (``report``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from admission.decisions import query
from admission.decisions.chain import Checkpoint
from admission.decisions.parallel import ChainSlice
from admission.decisions.query import RecordRow
from admission.decisions.stats import DecisionStats, Limits, record_view
from admission.decisions.store import DecisionDatabase, decisions_table
from admission.decisions.verify import (
    ChainPart,
    Problem,
    ReplicaReport,
    VerifyReport,
    check_chain_part,
    verify_database,
    verify_replica,
)
from attest.errors import UsageError
from attest.signing import keys

PREDICATE_TYPE = "https://attest.dev/evidence/v1"
STATUSES = ("verified", "partial", "broken", "unverified")
_MAX_PROBLEMS = 100


def glob_regex(pattern: str) -> re.Pattern[str]:
    """The image glob of ``query`` (``*`` any run, ``?`` one character) as an anchored regex."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("^" + "".join(parts) + "$", re.DOTALL)


@dataclass
class ReplicaPeriod:
    """The records of one replica that fall in the period."""

    replica: str
    records: int = 0
    first_seq: int = 0
    last_seq: int = 0
    seq_ranges: list[list[int]] = field(default_factory=list)
    ranges_truncated: bool = False  # more stretches than the cap: the count is still exact
    covering: Checkpoint | None = None

    def add(self, seq: int, max_ranges: int) -> None:
        self.records += 1
        self.first_seq = self.first_seq or seq
        self.last_seq = seq
        self._add_range(seq, seq, max_ranges)

    def _add_range(self, first: int, last: int, max_ranges: int) -> None:
        if self.seq_ranges and self.seq_ranges[-1][1] == first - 1:
            self.seq_ranges[-1][1] = last
        elif len(self.seq_ranges) < max_ranges:
            self.seq_ranges.append([first, last])
        else:
            self.ranges_truncated = True

    def extend(self, later: ReplicaPeriod, max_ranges: int) -> None:
        """Add the period's records of the next slice of this chain (as if ``add``ed here)."""
        if not later.records:
            return
        self.records += later.records
        self.first_seq = self.first_seq or later.first_seq
        self.last_seq = later.last_seq
        for first, last in later.seq_ranges:
            self._add_range(first, last, max_ranges)
        self.ranges_truncated = self.ranges_truncated or later.ranges_truncated


class _Collector:
    """A ``VerifyObserver``: aggregates the period's records and finds covering checkpoints."""

    def __init__(self, flt: query.DecisionFilter, stats: DecisionStats) -> None:
        self.flt = flt
        self.stats = stats
        self.namespaces = frozenset(flt.namespaces)
        self.image = glob_regex(flt.image) if flt.image else None
        self.periods: dict[str, ReplicaPeriod] = {}

    def _matches(self, row: RecordRow, document: dict[str, Any]) -> bool:
        flt = self.flt
        if (flt.since and row.time < flt.since) or (flt.until and row.time >= flt.until):
            return False
        if self.namespaces and row.namespace not in self.namespaces:
            return False
        if self.image is not None:
            images = document.get("images") or ()
            references = [str(i.get("reference", "")) for i in images if isinstance(i, dict)]
            return any(self.image.match(reference) for reference in references)
        return True

    def record(self, row: RecordRow, document: dict[str, Any] | None) -> None:
        if not self._matches(row, document or {}):
            return
        self.stats.add(record_view(row, document or {}))
        period = self.periods.get(row.replica)
        if period is None:
            period = self.periods[row.replica] = ReplicaPeriod(row.replica)
        period.add(row.seq, self.stats.limits.id_ranges)

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        period = self.periods.get(checkpoint.replica)
        if period is not None and period.covering is None and checkpoint.seq >= period.last_seq:
            period.covering = checkpoint


def checkpoint_dict(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "replica": checkpoint.replica,
        "seq": checkpoint.seq,
        "hash": checkpoint.hash,
        "signedAt": checkpoint.signed_at,
        "keyId": checkpoint.key_id,
        "signature": checkpoint.signature,
    }


def _unverified_span(
    database: DecisionDatabase, flt: query.DecisionFilter, replica: str, after: int
) -> dict[str, Any]:
    """Count and time span of the period's records of ``replica`` beyond seq ``after``."""
    table = decisions_table
    with database.reading() as conn:
        row = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.min(table.c.seq),
                sa.func.max(table.c.seq),
                sa.func.min(table.c.time),
                sa.func.max(table.c.time),
            ).where(table.c.replica == replica, table.c.seq > after, *query.conditions(flt))
        ).one()
    return {"records": row[0], "fromSeq": row[1], "toSeq": row[2], "from": row[3], "until": row[4]}


def _replica_entries(
    database: DecisionDatabase,
    flt: query.DecisionFilter,
    report: VerifyReport,
    periods: dict[str, ReplicaPeriod],
    trusted: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per replica: its chain state and period; and every unverified stretch of the period."""
    first_problem = {problem.replica: problem.seq for problem in report.first_broken()}
    entries, unverified = [], []
    for replica in report.replicas:
        period = periods.get(replica.replica)
        through = replica.signed_seq if trusted else 0
        if replica.replica in first_problem:
            through = min(through, first_problem[replica.replica] - 1)
        entry: dict[str, Any] = {
            **replica.to_dict(),
            "verifiedThroughSeq": through,
            "period": None,
        }
        if period is not None:
            covering = period.covering if trusted and period.last_seq <= through else None
            entry["period"] = {
                "records": period.records,
                "firstSeq": period.first_seq,
                "lastSeq": period.last_seq,
                "seqRanges": period.seq_ranges,
                "seqRangesTruncated": period.ranges_truncated,
                "coveringCheckpoint": checkpoint_dict(covering) if covering else None,
            }
            if period.last_seq > through:
                span = _unverified_span(database, flt, replica.replica, through)
                if not trusted:
                    why = "no trusted checkpoint key was given"
                elif (
                    replica.replica in first_problem
                    and first_problem[replica.replica] <= period.last_seq
                ):
                    why = f"the chain is broken at #{first_problem[replica.replica]}"
                else:
                    why = "not covered by a checkpoint signed with the trusted key"
                unverified.append({"replica": replica.replica, **span, "reason": why})
        entries.append(entry)
    return entries, unverified


def read_pipeline_summaries(directory: str) -> dict[str, list[dict[str, Any]]]:
    """``attest pipeline --output-file`` summaries in ``directory`` (``*.json``), by image digest."""
    root = Path(directory)
    if not root.is_dir():
        raise UsageError(f"--pipeline-summaries {directory}: not a directory")
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(root.glob("*.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise UsageError(f"pipeline summary {path}: unreadable ({err})") from None
        digest = summary.get("digest") if isinstance(summary, dict) else None
        if not isinstance(digest, str) or not digest.startswith("sha256:"):
            raise UsageError(
                f"pipeline summary {path}: no image digest (not an attest pipeline summary)"
            )
        build = summary.get("build") if isinstance(summary.get("build"), dict) else {}
        runs.setdefault(digest, []).append(
            {
                "file": path.name,
                "image": summary.get("image"),
                "signer": summary.get("signer"),
                "verified": bool((summary.get("verification") or {}).get("verified")),
                "ciRun": build.get("invocationId"),
                "builder": build.get("builderId"),
                "sourceRepository": build.get("sourceUri"),
                "commit": (build.get("sourceDigest") or {}).get("gitCommit"),
                "startedOn": build.get("startedOn"),
            }
        )
    return runs


SliceResult = tuple[ChainPart, DecisionStats, ReplicaPeriod | None]


def _verify_slice(
    target: str,
    piece: ChainSlice,
    flt: query.DecisionFilter,
    bucket: str,
    limits: Limits | None,
) -> SliceResult:
    """Check and aggregate one slice of a chain in a worker process (see ``parallel``)."""
    database = DecisionDatabase(target, create=False)
    collector = _Collector(flt, DecisionStats(bucket=bucket, limits=limits))
    try:
        with database.reading() as conn:
            part = check_chain_part(
                conn, piece.replica, after=piece.after, through=piece.through, observer=collector
            )
    finally:
        database.close()
    return part, collector.stats, collector.periods.get(piece.replica)


def _parallel_replicas(
    database: DecisionDatabase,
    collector: _Collector,
    trusted_key: keys.PublicKey | None,
    jobs: int,
) -> Any:
    """A ``verify_database(replicas=…)`` runner: the chains cut into slices checked by ``jobs``
    processes, their statistics and periods merged into ``collector``; the checkpoints are
    then checked here, against the joined chains."""
    from admission.decisions.parallel import plan_slices, process_pool

    stats = collector.stats

    def run(names: list[str]) -> list[tuple[ReplicaReport, list[Problem]]]:
        slices = plan_slices(database, names, jobs)
        if len(slices) < 2:  # nothing to split: no processes to start
            with database.reading() as conn:
                return [verify_replica(conn, name, trusted_key, collector) for name in names]
        parts: dict[str, list[ChainPart]] = {name: [] for name in names}
        with process_pool(jobs) as pool:
            futures = [
                pool.submit(
                    _verify_slice, database.target, piece, collector.flt, stats.bucket, stats.limits
                )
                for piece in slices
            ]
            for piece, future in zip(slices, futures, strict=True):  # in chain order
                part, piece_stats, period = future.result()
                parts[piece.replica].append(part)
                stats.merge(piece_stats)
                if period is not None:
                    mine = collector.periods.setdefault(piece.replica, ReplicaPeriod(piece.replica))
                    mine.extend(period, stats.limits.id_ranges)
        with database.reading() as conn:
            return [
                verify_replica(conn, name, trusted_key, collector, parts=parts[name])
                for name in names
            ]

    return run


@dataclass(frozen=True)
class Evidence:
    """The predicate, the chain heads it names, and the admitted images (also in the CSV)."""

    predicate: dict[str, Any]
    heads: list[tuple[str, int, str]]  # replica, seq, hash
    images: list[dict[str, Any]]

    @property
    def status(self) -> str:
        return str(self.predicate["chain"]["status"])


def build_evidence(
    database: DecisionDatabase,
    flt: query.DecisionFilter,
    *,
    trusted_key: keys.PublicKey | None,
    anchors: Iterable[Checkpoint] = (),
    pipeline_runs: dict[str, list[dict[str, Any]]] | None = None,
    bucket: str = "day",
    limits: Limits | None = None,
    now: dt.datetime | None = None,
    jobs: int = 1,
) -> Evidence:
    """Verify the database and aggregate the period ``flt`` selects, in one pass (replicas
    split across ``jobs`` processes)."""
    from attest import __version__

    stats = DecisionStats(bucket=bucket, limits=limits)
    collector = _Collector(flt, stats)
    runner = _parallel_replicas(database, collector, trusted_key, jobs) if jobs > 1 else None
    report = verify_database(
        database, trusted_key=trusted_key, anchors=anchors, observer=collector, replicas=runner
    )
    trusted = trusted_key is not None
    replicas, unverified = _replica_entries(database, flt, report, collector.periods, trusted)
    if not trusted:
        status = "unverified"
    elif not report.intact:
        status = "broken"
    elif unverified:
        status = "partial"
    else:
        status = "verified"
    runs = pipeline_runs or {}
    images = stats.image_list()
    for image in images:
        image["ciRuns"] = runs.get(image["digest"], [])
    predicate = {
        "generator": {"name": "attest", "version": __version__},
        "generatedAt": (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "database": database.display,
        "period": {"since": flt.since, "until": flt.until},
        "filters": {"namespaces": list(flt.namespaces), "image": flt.image},
        "chain": {
            "status": status,
            "verifiedRecords": stats.total - sum(span["records"] for span in unverified),
            "keySource": report.key_source,
            "trustedKeyId": keys.key_id(trusted_key) if trusted_key is not None else None,
            "anchors": report.anchors,
            "replicas": replicas,
            "unverified": unverified,
            "problems": [problem.to_dict() for problem in report.problems[:_MAX_PROBLEMS]],
            "problemCount": len(report.problems),
        },
        "decisions": {
            "records": stats.total,
            "replicas": [
                {
                    "replica": p.replica,
                    "records": p.records,
                    "seqRanges": p.seq_ranges,
                    "seqRangesTruncated": p.ranges_truncated,
                }
                for _, p in sorted(collector.periods.items())
            ],
        },
        "summary": stats.to_dict(),
        "admittedImages": images,
        "pipelineSummaries": len(runs),
    }
    heads = [(r.replica, r.head_seq, r.head_hash) for r in report.replicas if r.head_seq > 0]
    return Evidence(predicate, heads, images)
