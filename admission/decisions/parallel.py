"""Reading a big decision database on several cores: verification by chain slice, stats by id.

Parsing and checking a record is pure Python (about 25,000 records a second per
core), so ``attest evidence`` and ``attest decisions stats`` split the work across
``jobs`` processes (started with ``spawn``: no inherited database connections or
threads), each with its own connection and its own ``DecisionStats``, and merge
the results (``DecisionStats.merge`` is order-independent).  Verification splits
each replica's chain into consecutive ``seq`` ranges (``plan_slices``): each
slice is checked from the record before it, so the slices together give exactly
the problems of one pass.  Aggregation alone splits by record id.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from admission.decisions import query
from admission.decisions.stats import DecisionStats, Limits, stream_records
from admission.decisions.store import DecisionDatabase, decisions_table

_SPLIT_FROM = 20_000  # fewer records than this are read in one process (starting others costs more)
_SLICES_PER_JOB = 4  # smaller pieces than one per process, so a slow one does not hold up the end


def default_jobs() -> int:
    """One process per core, at most 4."""
    return max(1, min(os.cpu_count() or 1, 4))


@contextmanager
def process_pool(jobs: int) -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        yield pool


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """``items`` in at most ``parts`` contiguous, non-empty chunks of nearly equal length."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    chunks, start = [], 0
    for index in range(parts):
        end = start + size + (index < extra)
        chunks.append(items[start:end])
        start = end
    return [chunk for chunk in chunks if chunk]


@dataclass(frozen=True)
class ChainSlice:
    """The records of ``replica`` with ``after < seq <= through`` (unbounded where None)."""

    replica: str
    after: int | None = None
    through: int | None = None


def plan_slices(
    database: DecisionDatabase, names: list[str], jobs: int, *, split_from: int | None = None
) -> list[ChainSlice]:
    """Each named replica's chain as consecutive slices, in replica and ``seq`` order.

    A chain is cut into pieces of about total / (jobs × 4) records, none smaller than
    ``split_from`` (default ``_SPLIT_FROM``); the first slice of a chain has no lower
    bound and the last none above, so every record (even one outside the expected
    ``seq`` range) is in exactly one slice.
    """
    table = decisions_table
    with database.reading() as conn:
        extents = {
            row.replica: (int(row.low), int(row.high), int(row.records))
            for row in conn.execute(
                sa.select(
                    table.c.replica,
                    sa.func.min(table.c.seq).label("low"),
                    sa.func.max(table.c.seq).label("high"),
                    sa.func.count().label("records"),
                ).group_by(table.c.replica)
            )
        }
    total = sum(records for _low, _high, records in extents.values())
    size = max(_SPLIT_FROM if split_from is None else split_from, 1)
    size = max(size, -(-total // max(1, jobs * _SLICES_PER_JOB)))
    slices: list[ChainSlice] = []
    for name in names:
        low, high, records = extents.get(name, (0, 0, 0))
        pieces = max(1, min(-(-records // size), high - low + 1))
        step = -(-(high - low + 1) // pieces)
        bounds: list[int | None] = [None, *(low - 1 + step * k for k in range(1, pieces)), None]
        slices += [ChainSlice(name, a, b) for a, b in itertools.pairwise(bounds)]
    return slices


def _stats_chunk(
    target: str, flt: query.DecisionFilter, bucket: str, limits: Limits, low: int, high: int
) -> DecisionStats:
    database = DecisionDatabase(target, create=False)
    try:
        stats = DecisionStats(bucket=bucket, limits=limits)
        table = decisions_table
        conditions = [*query.conditions(flt), table.c.id >= low, table.c.id <= high]
        for record in stream_records(database, conditions):
            stats.add(record)
        return stats
    finally:
        database.close()


def collect_stats(
    database: DecisionDatabase,
    flt: query.DecisionFilter,
    *,
    bucket: str = "day",
    limits: Limits | None = None,
    jobs: int = 1,
) -> DecisionStats:
    """``DecisionStats`` over the records ``flt`` selects, read by ``jobs`` processes."""
    limits = limits or Limits()
    conditions = query.conditions(flt)
    table = decisions_table
    if jobs > 1:
        with database.reading() as conn:
            low, high = conn.execute(
                sa.select(sa.func.min(table.c.id), sa.func.max(table.c.id)).where(*conditions)
            ).one()
        if low is None or high - low < _SPLIT_FROM:
            jobs = 1
    if jobs <= 1:
        stats = DecisionStats(bucket=bucket, limits=limits)
        for record in stream_records(database, conditions):
            stats.add(record)
        return stats
    stats = DecisionStats(bucket=bucket, limits=limits)
    step = (high - low) // jobs + 1
    with process_pool(jobs) as pool:
        futures: list[Future[DecisionStats]] = [
            pool.submit(
                _stats_chunk,
                database.target,
                flt,
                bucket,
                limits,
                start,
                min(high, start + step - 1),
            )
            for start in range(low, high + 1, step)
        ]
        for future in futures:
            stats.merge(future.result())
    return stats
