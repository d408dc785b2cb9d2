"""The web overview's aggregates (SQL over the columns plus JSON fields of the documents) give
the same answers on PostgreSQL as on SQLite: its queries use each database's JSON functions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from admission.decisions.chain import load_head_signer
from admission.decisions.store import open_database, record_now
from admission.web.pages import overview_data
from tests.decisions.conftest import write_key_pair
from tests.decisions.test_evidence import period_documents

NOW = dt.datetime(2026, 8, 1, tzinfo=dt.UTC)


def overview(db: str) -> dict[str, Any]:
    database = open_database(db)
    try:
        return overview_data(database, {"since": "2026-07-01", "until": "2026-08-01"}, NOW, None)
    finally:
        database.close()


def test_the_overview_is_the_same_on_postgresql_and_sqlite(
    sqlite_url: str, pg_url: str, tmp_path: Path
) -> None:
    private, _public = write_key_pair(tmp_path)
    signer = load_head_signer(str(private))
    for db in (sqlite_url, pg_url):
        record_now(db, period_documents(), replica="pod-a", signer=signer)
        record_now(db, period_documents()[:2], replica="pod-b")  # unsigned
    on_sqlite, on_postgres = overview(sqlite_url), overview(pg_url)
    for data in (on_sqlite, on_postgres):  # chain heads differ: checkpoint times
        for chain in data["chains"]:
            chain.pop("checkpointSignedAt")
    assert on_postgres == on_sqlite

    data = on_postgres
    series = data["admissions"]["series"]
    assert (sum(series["allowed"]), sum(series["warned"]), sum(series["denied"])) == (6, 1, 2)
    overall = data["compliance"]["overall"]
    assert (overall["admitted"], overall["compliant"], overall["excepted"]) == (7, 6, 1)
    reasons = data["denyReasons"]
    assert sum(reason["count"] for reason in reasons) == 2
    assert all("is not signed by a trusted authority" in r["reason"] for r in reasons)
    assert {image["reference"] for image in data["withoutProvenance"]} >= {"reg/acme/web:2.0"}
    chains = {chain["replica"]: chain for chain in data["chains"]}
    assert chains["pod-a"]["ok"] and chains["pod-a"]["records"] == 8
    assert not chains["pod-b"]["ok"] and "not covered" in chains["pod-b"]["status"]
