"""Evidence over chains cut into slices (checked by several processes) says what one pass says.

``attest evidence`` splits each replica's chain into ``seq`` ranges checked in other
processes (``parallel.plan_slices``).  Splitting must not change a word of the
evidence, tampered or not, and a link broken exactly where two slices meet must be
found as it is in one pass.  Both databases (the slices are SQL range reads).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from admission.decisions import parallel
from admission.decisions.chain import load_head_signer, load_trusted_key, record_hash
from admission.decisions.evidence import build_evidence
from admission.decisions.query import filter_from_text
from admission.decisions.store import DecisionDatabase, open_database, record_now
from tests.decisions.conftest import write_key_pair
from tests.decisions.test_evidence import _tamper, period_documents

NOW = dt.datetime(2026, 8, 2, tzinfo=dt.UTC)


@pytest.fixture
def checkpoint_keys(tmp_path: Path) -> tuple[Path, Path]:
    return write_key_pair(tmp_path, "decisions")


def seed(db: str, key: Path) -> None:
    """pod-a and pod-b: 24 signed records each; pod-c: 3 signed, then 3 unsigned."""
    signer = load_head_signer(str(key))
    documents = period_documents()
    for replica in ("pod-a", "pod-b"):
        for _batch in range(3):
            record_now(db, documents, replica=replica, signer=signer)
    record_now(db, documents[:3], replica="pod-c", signer=signer)
    record_now(db, documents[3:6], replica="pod-c")


def evidence(db: str, public: Path, jobs: int) -> dict[str, Any]:
    database = open_database(db)
    try:
        flt = filter_from_text(None, since="2026-07-01", until="2026-08-01")
        found = build_evidence(
            database, flt, trusted_key=load_trusted_key(str(public)), jobs=jobs, now=NOW
        )
    finally:
        database.close()
    return found.predicate


def slices(db: str) -> list[parallel.ChainSlice]:
    database = open_database(db)
    try:
        return parallel.plan_slices(database, ["pod-a", "pod-b", "pod-c"], 2)
    finally:
        database.close()


def test_sliced_chains_give_the_evidence_of_one_pass(
    db_url: str,
    checkpoint_keys: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private, public = checkpoint_keys
    seed(db_url, private)
    _tamper(
        db_url,
        "UPDATE attest_decisions SET document = replace(document, 'denied', 'allowed') "
        "WHERE replica = 'pod-a' AND seq = 14",
    )
    _tamper(db_url, "DELETE FROM attest_decision_images WHERE replica = 'pod-b' AND seq = 7")
    _tamper(db_url, "DELETE FROM attest_decisions WHERE replica = 'pod-b' AND seq = 7")
    one_pass = evidence(db_url, public, jobs=1)

    monkeypatch.setattr(parallel, "_SPLIT_FROM", 1)
    planned = slices(db_url)
    assert len([s for s in planned if s.replica == "pod-a"]) > 2  # really cut into pieces
    sliced = evidence(db_url, public, jobs=2)

    assert sliced == one_pass
    chain = sliced["chain"]
    assert chain["status"] == "broken"
    found = {(p["replica"], p["seq"], p["problem"].split(" ")[0]) for p in chain["problems"]}
    assert {("pod-a", 14, "record"), ("pod-b", 8, "records")} <= found  # modified; gap
    assert [span["replica"] for span in chain["unverified"]] == ["pod-a", "pod-b", "pod-c"]
    assert sliced["summary"]["records"] == 21 + 20 + 6  # the 8th of each 8 is after the period


def test_a_broken_link_where_two_slices_meet_is_found(
    db_url: str,
    checkpoint_keys: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private, public = checkpoint_keys
    seed(db_url, private)
    monkeypatch.setattr(parallel, "_SPLIT_FROM", 1)
    boundary = next(s.after for s in slices(db_url) if s.replica == "pod-a" and s.after)
    assert boundary is not None
    # rewrite the last record of one slice with its own hash recomputed: only the link
    # of the next slice's first record shows it
    database = DecisionDatabase(db_url)
    with database.engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "SELECT document, prev_hash FROM attest_decisions "
                "WHERE replica = 'pod-a' AND seq = :s"
            ),
            {"s": boundary},
        ).one()
        forged = row.document.replace('"resolve":1.25', '"resolve":9.25')
        assert forged != row.document
        conn.execute(
            sa.text(
                "UPDATE attest_decisions SET document = :d, hash = :h "
                "WHERE replica = 'pod-a' AND seq = :s"
            ),
            {
                "d": forged,
                "h": record_hash("pod-a", boundary, row.prev_hash, forged.encode()),
                "s": boundary,
            },
        )
    database.close()
    chain = evidence(db_url, public, jobs=2)["chain"]
    assert chain["status"] == "broken"
    first = chain["problems"][0]
    assert (first["replica"], first["seq"]) == ("pod-a", boundary + 1)
    assert "link to the previous record does not match" in first["problem"]
