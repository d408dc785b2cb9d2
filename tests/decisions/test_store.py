"""Recording decisions and reading them back, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading

import pytest

from admission.decisions import query
from admission.decisions.model import canonical_bytes, decision_document
from admission.decisions.recorder import DecisionRecorder
from admission.decisions.store import DecisionDatabase, open_database, prepare, record_now
from admission.decisions.verify import verify_database
from admission.errors import DecisionStoreError
from admission.testing.samples import FakeDecision, decision, digest_of, image
from attest.errors import UsageError


def record_all(db_url: str, documents: list, **options) -> DecisionRecorder:
    recorder = DecisionRecorder(db_url, replica=options.pop("replica", "pod-a"), **options).start()
    for document in documents:
        assert recorder.record(document)
    assert recorder.flush(30)
    return recorder


def test_records_round_trip_with_every_field(db_url: str) -> None:
    allowed = FakeDecision(decision())
    denied = decision(
        result="denied",
        images=[image("127.0.0.1:5000/shop/app:1.0", verified=False), image("busybox:1.36")],
        warnings=["image busybox:1.36 has no SBOM"],
    )
    recorder = record_all(db_url, [allowed, denied])
    assert recorder.status().to_dict()["written"] == 2
    assert recorder.status().state == "ok"
    recorder.close()

    database = open_database(db_url)
    records = query.list_decisions(database, query.DecisionFilter())
    assert [r.fields.result for r in records] == ["denied", "allowed"]  # newest first
    stored = query.get_decision(database, str(records[0].id))
    assert stored.document == decision_document(denied)  # as given, less decoded Statements
    checks = stored.document["images"][0]["verification"]["attestations"]
    assert checks and all("statement" not in check for check in checks)
    assert checks[0]["reasons"] == denied["images"][0]["verification"]["attestations"][0]["reasons"]
    assert "statement" in denied["images"][0]["verification"]["attestations"][0]  # not mutated
    assert stored.fields.namespace == "shop" and stored.fields.kind == "Deployment"
    assert stored.fields.user == "system:serviceaccount:argocd:argocd-application-controller"
    assert [i.reference for i in stored.fields.images] == [
        "127.0.0.1:5000/shop/app:1.0",
        "busybox:1.36",
    ]
    assert stored.fields.images[1].digest == digest_of("busybox:1.36")
    assert stored.fields.images[0].policy == "prod-images"
    assert query.get_decision(database, denied["uid"]).id == stored.id
    assert stored.replica == "pod-a" and stored.seq == 2 and stored.prev_hash == records[1].hash
    database.close()


def test_filters_select_exactly_the_matching_decisions(db_url: str) -> None:
    now = dt.datetime.now(dt.UTC)
    old = decision(namespace="shop", time=now - dt.timedelta(days=10))
    payments = decision(
        result="denied",
        namespace="payments",
        images=[image("ghcr.io/org/pay_svc:2.0", policy="payments")],
        time=now - dt.timedelta(hours=2),
    )
    warned = decision(
        result="warned",
        namespace="shop",
        images=[image("ghcr.io/org/web:1.0"), image("docker.io/library/redis:7")],
        time=now - dt.timedelta(minutes=5),
    )
    literal = decision(namespace="shop", images=[image("ghcr.io/org/payXsvc:2.0")])
    record_all(db_url, [old, payments, warned, literal]).close()
    database = open_database(db_url)

    def uids(**conditions) -> list[str]:
        found = query.list_decisions(database, query.DecisionFilter(**conditions))
        return sorted(r.document["uid"] for r in found)

    assert uids(since=query.parse_time("3d")) == sorted(
        [payments["uid"], warned["uid"], literal["uid"]]
    )
    assert uids(until=query.parse_time("1d")) == [old["uid"]]
    assert uids(since=query.parse_time("3h"), until=query.parse_time("1h")) == [payments["uid"]]
    assert uids(namespaces=("payments",)) == [payments["uid"]]
    assert uids(results=("denied", "warned")) == sorted([payments["uid"], warned["uid"]])
    assert uids(image="ghcr.io/org/*") == sorted([payments["uid"], warned["uid"], literal["uid"]])
    # "_" in a glob is a literal character, not SQL's any-character
    assert uids(image="ghcr.io/org/pay_svc:*") == [payments["uid"]]
    assert uids(image="*redis*") == [warned["uid"]]
    assert uids(image="GHCR.IO/*") == []  # case-sensitive on both databases
    digest = digest_of("docker.io/library/redis:7")
    assert uids(digest=digest) == [warned["uid"]]
    assert uids(digest=query.check_digest(digest[7:19])) == [warned["uid"]]
    assert uids(policy="payments") == [payments["uid"]]
    assert uids(policy="payments", results=("allowed",)) == []
    assert len(query.list_decisions(database, query.DecisionFilter(limit=2))) == 2
    exported = list(
        query.iter_decisions(database, query.DecisionFilter(namespaces=("shop",)), page=2)
    )
    assert [r.document["uid"] for r in exported] == [old["uid"], warned["uid"], literal["uid"]]
    database.close()


def test_two_replicas_write_concurrently_and_each_chain_stays_intact(db_url: str) -> None:
    recorders = [DecisionRecorder(db_url, replica=f"pod-{n}").start() for n in range(2)]

    def feed(recorder: DecisionRecorder) -> None:
        for _ in range(150):
            recorder.record(decision())

    threads = [threading.Thread(target=feed, args=(r,)) for r in recorders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for recorder in recorders:
        assert recorder.flush(60)
        assert recorder.status().written == 150 and recorder.status().dropped == 0
        recorder.close()
    database = open_database(db_url)
    report = verify_database(database)
    assert report.intact, report.problems
    assert {r.replica: r.records for r in report.replicas} == {"pod-0": 150, "pod-1": 150}
    database.close()


def test_a_writer_with_a_stale_head_rereads_it_and_keeps_one_chain(db_url: str) -> None:
    database = DecisionDatabase(db_url)
    first = database.append("cli-host", [prepare(decision())])
    database.append("cli-host", [prepare(decision())])  # another writer moves the head
    head = database.append("cli-host", [prepare(decision())], head=first)  # stale
    assert head.seq == 3
    assert verify_database(database).intact
    database.close()


def test_a_recorder_resumes_its_replica_chain_after_a_restart(db_url: str) -> None:
    record_all(db_url, [decision(), decision()], replica="pod-x").close()
    recorder = record_all(db_url, [decision()], replica="pod-x")
    assert recorder.status().head_seq == 3
    recorder.close()
    database = open_database(db_url)
    assert verify_database(database).intact
    database.close()


def test_record_now_writes_synchronously(sqlite_url: str) -> None:
    head = record_now(sqlite_url, [FakeDecision(decision(result="denied"))], replica="review")
    assert head.seq == 1
    with pytest.raises(DecisionStoreError, match="directory /nonexistent-dir missing"):
        record_now("/nonexistent-dir/x.db", [decision()], replica="review")


def test_sqlite_is_in_wal_mode(sqlite_url: str) -> None:
    record_all(sqlite_url, [decision()]).close()
    with sqlite3.connect(sqlite_url) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_canonical_json_is_what_is_stored(sqlite_url: str) -> None:
    document = decision(messages=['ünïcode and <html> & "quotes"'])
    record_all(sqlite_url, [document]).close()
    with sqlite3.connect(sqlite_url) as conn:
        stored = conn.execute("SELECT document FROM attest_decisions").fetchone()[0]
    assert stored.encode() == canonical_bytes(decision_document(document))


def test_unusable_targets_fail_with_one_line(tmp_path, postgres) -> None:
    with pytest.raises(UsageError, match="no decision database"):
        open_database("")
    with pytest.raises(DecisionStoreError, match="no such file"):
        open_database(str(tmp_path / "missing.db"))
    (tmp_path / "empty.db").touch()  # an SQLite file that is not a decision database
    with pytest.raises(DecisionStoreError, match="no decision records yet"):
        open_database(str(tmp_path / "empty.db"))
    wrong = postgres.url().replace("attest-test-pass", "wrong-password")
    with pytest.raises(DecisionStoreError) as caught:
        open_database(wrong)
    message = str(caught.value)
    assert "password authentication failed" in message
    assert "wrong-password" not in message and "\n" not in message
    for malformed in ("postgresql://bad url:x", "postgresql://host:notaport/db"):
        with pytest.raises(UsageError, match="is not a valid URL"):
            open_database(malformed)
