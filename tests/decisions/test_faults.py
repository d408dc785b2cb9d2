"""Faults: the database down, full or locked never blocks or fails recording; drops are counted."""

from __future__ import annotations

import logging
import sqlite3
import time

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from admission.decisions.recorder import DecisionRecorder
from admission.decisions.store import open_database
from admission.decisions.verify import verify_database
from admission.testing.samples import FakeDecision, decision
from attest.testing.postgres import PostgresServer


def dropped_metric(reason: str) -> float:
    value = REGISTRY.get_sample_value("attest_decision_records_dropped_total", {"reason": reason})
    return value or 0.0


def test_postgres_going_away_drops_records_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    server = PostgresServer().start()
    try:
        url = server.create_database("decisions")
        recorder = DecisionRecorder(url, replica="pod-a", retry_seconds=0.2).start()
        for _ in range(5):
            assert recorder.record(decision())
        assert recorder.flush(30)
        assert recorder.status().state == "ok"

        server.stop()
        before = dropped_metric("database")
        with caplog.at_level(logging.ERROR, logger="attest.decisions"):
            for _ in range(20):
                recorder.record(decision())  # returns at once; never raises
            assert recorder.flush(60)
        status = recorder.status()
        assert status.state == "degraded" and not status.healthy
        assert status.dropped == 20 and status.written == 5
        assert "decision database" in (status.last_error or "")
        assert dropped_metric("database") - before == 20
        alerts = [r for r in caplog.records if r.getMessage().startswith("ALERT decision records")]
        assert alerts and "dropped" in alerts[0].getMessage()
        assert server.url().split("@")[0].split(":")[-1] not in caplog.text  # no password

        server.start()
        for _ in range(200):  # bounded: the writer re-probes every 0.2 s
            if recorder.status().state == "ok":
                break
            time.sleep(0.05)
        assert recorder.status().state == "ok"
        for _ in range(3):
            recorder.record(decision())
        assert recorder.flush(30)
        assert recorder.status().written == 8
        recorder.close()
        database = open_database(url)
        report = verify_database(database)
        database.close()
        assert report.intact, report.problems
        assert report.replicas[0].records == 8
    finally:
        server.stop(remove=True)


def test_postgres_unreachable_at_start_is_degraded_not_fatal() -> None:
    server = PostgresServer()  # never started: nothing listens on its port
    try:
        recorder = DecisionRecorder(server.url(), replica="pod-a").start()
        for _ in range(10):
            assert recorder.record(decision()) in (True, False)
        assert recorder.flush(30)
        status = recorder.status()
        assert status.state == "degraded" and status.dropped == 10 and status.written == 0
        recorder.close()
    finally:
        server.stop(remove=True)


def test_a_full_sqlite_database_drops_records_and_keeps_answering(sqlite_url: str) -> None:
    recorder = DecisionRecorder(sqlite_url, replica="pod-a", retry_seconds=60).start()
    recorder.record(decision())
    assert recorder.flush(30)
    pages = sqlite3.connect(sqlite_url).execute("PRAGMA page_count").fetchone()[0]

    def cap(dbapi_connection, _record) -> None:  # the file may not grow any more
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    sa.event.listen(recorder.database.engine, "connect", cap)
    recorder.database.engine.dispose()
    big = decision(messages=["x" * 200_000])
    for _ in range(3):
        assert recorder.record(big)
    assert recorder.flush(30)
    status = recorder.status()
    assert status.state == "degraded" and status.dropped == 3
    assert "full" in (status.last_error or "")
    recorder.close()
    database = open_database(sqlite_url)
    assert verify_database(database).intact
    database.close()


def test_a_locked_database_fills_the_queue_without_blocking_callers(sqlite_url: str) -> None:
    recorder = DecisionRecorder(sqlite_url, replica="pod-a", queue_size=50, batch_size=10).start()
    recorder.record(decision())
    assert recorder.flush(30)
    blocker = sqlite3.connect(sqlite_url, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # the writer now waits on the lock (busy timeout)
    try:
        accepted = sum(recorder.record(decision()) for _ in range(500))
        # everything above the queue (plus one batch in the writer's hands) was dropped,
        # and all 500 calls returned while the database was still locked
        assert accepted <= 50 + 10
        assert recorder.status().dropped >= 500 - accepted
    finally:
        blocker.rollback()
        blocker.close()
    assert recorder.flush(60)
    recorder.close()


def test_an_unusable_decision_is_dropped_and_counted(sqlite_url: str) -> None:
    recorder = DecisionRecorder(sqlite_url, replica="pod-a").start()
    assert recorder.record(object())  # queued: it is only examined on the writer thread
    assert recorder.record(FakeDecision({"uid": "u", "time": "not a time"}))
    assert recorder.record(decision())
    assert recorder.flush(30)
    status = recorder.status()
    assert status.written == 1 and status.dropped == 2 and status.state == "ok"
    recorder.close()
    assert not recorder.record(decision())  # closed: counted, not raised
    assert recorder.status().dropped == 3
