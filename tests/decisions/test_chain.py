"""Tamper evidence: verify finds the first broken link after rows are edited, deleted or forged."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from admission.decisions.chain import (
    GENESIS,
    Checkpoint,
    checkpoint_signature_valid,
    load_head_signer,
    load_trusted_key,
    record_hash,
)
from admission.decisions.model import decision_document
from admission.decisions.recorder import CHECKPOINT_EVENT, DecisionRecorder
from admission.decisions.store import DecisionDatabase, open_database, prepare
from admission.decisions.verify import verify_database
from admission.testing.samples import decision, write_key_pair
from attest.errors import KeyFileError
from attest.signing import keys


def fill(db_url: str, signer_key: Path | None, count: int = 6, **options) -> None:
    signer = load_head_signer(str(signer_key)) if signer_key else None
    recorder = DecisionRecorder(db_url, replica="pod-a", signer=signer, **options).start()
    for n in range(count):
        recorder.record(decision(result="denied" if n == 2 else "allowed"))
    assert recorder.flush(30)
    recorder.close()


def execute(db_url: str, statement: str, **params) -> None:
    database = DecisionDatabase(db_url)
    with database.engine.begin() as conn:
        conn.execute(sa.text(statement), params)
    database.close()


def report_for(db_url: str, key: Path | None = None):
    database = open_database(db_url)
    try:
        return verify_database(database, trusted_key=load_trusted_key(str(key)) if key else None)
    finally:
        database.close()


def test_an_untouched_chain_verifies_with_signed_heads(db_url: str, key_pair) -> None:
    private, public = key_pair
    fill(db_url, private, count=7, checkpoint_every=3, batch_size=1)
    report = report_for(db_url, public)
    assert report.ok, report.problems
    (replica,) = report.replicas
    assert replica.records == 7 and replica.head_seq == 7
    assert replica.checkpoints >= 2
    assert replica.signed_seq == 7  # close() signs the final head
    assert report.key_source.startswith("trusted key ")


def test_editing_a_decision_breaks_the_chain_at_that_record(db_url: str, key_pair) -> None:
    private, public = key_pair
    fill(db_url, private)
    execute(
        db_url,
        "UPDATE attest_decisions SET document = replace(document, '\"denied\"', '\"allowed\"') "
        "WHERE seq = 3",
    )
    report = report_for(db_url, public)
    assert not report.ok
    (first,) = report.first_broken()
    assert first.seq == 3 and "modified" in first.what


def test_editing_a_record_and_recomputing_its_hash_breaks_the_next_link(db_url: str) -> None:
    fill(db_url, None)
    database = DecisionDatabase(db_url)
    with database.engine.begin() as conn:
        row = conn.execute(
            sa.text("SELECT document, prev_hash FROM attest_decisions WHERE seq = 3")
        ).one()
        forged = row.document.replace('"denied"', '"allowed"')
        conn.execute(
            sa.text(
                "UPDATE attest_decisions SET document = :d, hash = :h, result = 'allowed' WHERE seq = 3"
            ),
            {"d": forged, "h": record_hash("pod-a", 3, row.prev_hash, forged.encode())},
        )
    database.close()
    first = report_for(db_url).first_broken()[0]
    assert first.seq == 4 and "link" in first.what


def test_a_forged_filter_column_is_detected(db_url: str) -> None:
    fill(db_url, None)
    execute(db_url, "UPDATE attest_decisions SET result = 'allowed' WHERE seq = 3")
    (first,) = report_for(db_url).first_broken()
    assert first.seq == 3 and "column result='allowed'" in first.what


def test_a_forged_image_row_is_detected(db_url: str) -> None:
    fill(db_url, None)
    execute(db_url, "UPDATE attest_decision_images SET digest = 'sha256:0000' WHERE seq = 2")
    (first,) = report_for(db_url).first_broken()
    assert first.seq == 2 and "image rows" in first.what


def test_deleting_a_record_leaves_a_gap(db_url: str) -> None:
    fill(db_url, None)
    execute(db_url, "DELETE FROM attest_decisions WHERE seq = 3")
    (first,) = report_for(db_url).first_broken()
    assert first.seq == 4 and "missing" in first.what


def test_truncating_below_a_signed_head_is_detected(db_url: str, key_pair) -> None:
    private, public = key_pair
    fill(db_url, private)
    execute(db_url, "DELETE FROM attest_decisions WHERE seq >= 5")
    report = report_for(db_url, public)
    assert not report.ok
    assert any("signed head is missing" in p.what for p in report.problems)


def test_a_checkpoint_signed_with_another_key_is_rejected(db_url: str, key_pair, tmp_path) -> None:
    private, _public = key_pair
    fill(db_url, private)
    _other_private, other_public = write_key_pair(tmp_path, "other")
    report = report_for(db_url, other_public)
    assert not report.ok
    assert "does not verify with the trusted key" in report.first_broken()[0].what
    # with the keys recorded alongside, the same chain is consistent
    assert report_for(db_url).ok


def test_a_forged_checkpoint_signature_is_rejected(db_url: str, key_pair) -> None:
    private, public = key_pair
    fill(db_url, private)
    execute(db_url, "UPDATE attest_decision_checkpoints SET hash = :h", h="1" * 64)
    report = report_for(db_url, public)
    assert any("checkpoint signature does not verify" in p.what for p in report.problems)


def test_cosign_key_files_sign_checkpoints(sqlite_url: str, tmp_path, monkeypatch) -> None:
    pair = keys.generate_key_pair(b"pw")
    (tmp_path / "cosign.key").write_bytes(pair.private_pem)
    (tmp_path / "cosign.pub").write_bytes(pair.public_pem)
    monkeypatch.setenv("ATTEST_PASSWORD", "pw")
    fill(sqlite_url, tmp_path / "cosign.key")
    report = report_for(sqlite_url, tmp_path / "cosign.pub")
    assert report.ok and report.replicas[0].signed_seq == 6
    monkeypatch.setenv("ATTEST_PASSWORD", "wrong")
    with pytest.raises(KeyFileError):
        load_head_signer(str(tmp_path / "cosign.key"))


def test_the_first_record_links_to_genesis(sqlite_url: str) -> None:
    fill(sqlite_url, None, count=1)
    database = open_database(sqlite_url)
    with database.reading() as conn:
        assert conn.execute(sa.text("SELECT prev_hash FROM attest_decisions")).scalar() == GENESIS
    database.close()


def test_each_process_gets_its_own_chain_name(monkeypatch) -> None:
    import os

    from admission.decisions.chain import check_replica, default_replica
    from attest.errors import UsageError

    monkeypatch.setenv("ATTEST_REPLICA", "attest-admission-7d9f")
    assert default_replica() == f"attest-admission-7d9f-{os.getpid()}"
    monkeypatch.setenv("ATTEST_REPLICA", "../odd name\n")
    assert default_replica() == f"odd-name--{os.getpid()}"
    with pytest.raises(UsageError):
        check_replica("bad\nname")


def rewrite_from(db_url: str, seq: int) -> None:
    """The attacker's rewrite: record ``seq`` (a denial) becomes "allowed", every later hash
    and link recomputed, so the whole chain is consistent again."""
    database = DecisionDatabase(db_url)
    with database.engine.begin() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT seq, document, prev_hash FROM attest_decisions "
                "WHERE replica = 'pod-a' ORDER BY seq"
            )
        ).all()
        prev = GENESIS
        for row in rows:
            document = row.document
            if row.seq == seq:
                assert '"denied"' in document
                document = document.replace('"denied"', '"allowed"')
            digest = record_hash("pod-a", row.seq, prev, document.encode())
            conn.execute(
                sa.text(
                    "UPDATE attest_decisions SET document = :d, prev_hash = :p, hash = :h, "
                    "result = CASE WHEN seq = :s THEN 'allowed' ELSE result END "
                    "WHERE replica = 'pod-a' AND seq = :q"
                ),
                {"d": document, "p": prev, "h": digest, "s": seq, "q": row.seq},
            )
            prev = digest
    database.close()


def test_a_recomputed_chain_without_its_checkpoints_is_not_vouched_for(
    db_url: str, key_pair
) -> None:
    """The attack: delete the checkpoints, turn the denial into "allowed" and recompute every
    hash.  Every link is consistent again, so only the missing signature can tell."""
    private, public = key_pair
    fill(db_url, private)
    execute(db_url, "DELETE FROM attest_decision_checkpoints")
    rewrite_from(db_url, 3)
    report = report_for(db_url, public)
    assert report.intact  # the links alone cannot see it
    assert not report.ok and report.status == "uncovered"
    (replica,) = report.uncovered
    assert (replica.replica, replica.signed_seq, replica.head_seq) == ("pod-a", 0, 6)


def test_a_recomputed_chain_after_a_signed_head_is_uncovered_from_there(
    db_url: str, key_pair
) -> None:
    """Keeping the checkpoints below the rewrite leaves the head unsigned from that point."""
    private, public = key_pair
    fill(db_url, private, count=6, checkpoint_every=2, batch_size=1)
    execute(db_url, "DELETE FROM attest_decision_checkpoints WHERE seq >= 3")
    rewrite_from(db_url, 3)
    report = report_for(db_url, public)
    assert report.status == "uncovered"
    assert report.uncovered[0].signed_seq == 2


def test_records_after_the_last_signed_head_are_reported_unsigned(db_url: str, key_pair) -> None:
    """Records written after the last checkpoint are not vouched for until the next one."""
    private, public = key_pair
    fill(db_url, private, count=4)
    database = DecisionDatabase(db_url)
    head = database.append("pod-a", [prepare(decision_document(decision())) for _ in range(2)])
    database.close()
    report = report_for(db_url, public)
    assert report.intact and report.status == "uncovered"
    assert (report.uncovered[0].signed_seq, head.seq) == (4, 6)


def test_a_recorder_signs_on_its_schedule_and_when_closed(db_url: str, key_pair) -> None:
    private, public = key_pair
    signer = load_head_signer(str(private))
    recorder = DecisionRecorder(
        db_url, replica="pod-a", signer=signer, checkpoint_seconds=0.3, checkpoint_every=10_000
    ).start()
    try:
        for _ in range(3):
            recorder.record(decision())
        assert recorder.flush(30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not report_for(db_url, public).ok:
            time.sleep(0.1)  # signed by the schedule, with the recorder still open
        assert report_for(db_url, public).ok
        recorder.record(decision())
        assert recorder.flush(30)
    finally:
        recorder.close()
    report = report_for(db_url, public)
    assert report.ok and report.replicas[0].signed_seq == 4


def test_records_a_crashed_process_left_unsigned_are_signed_by_its_successor(
    db_url: str, key_pair
) -> None:
    private, public = key_pair
    fill(db_url, private, count=2)
    database = DecisionDatabase(db_url)  # a crash: written, never signed
    database.append("pod-a", [prepare(decision_document(decision()))])
    database.close()
    assert report_for(db_url, public).status == "uncovered"
    signer = load_head_signer(str(private))
    recorder = DecisionRecorder(db_url, replica="pod-a", signer=signer).start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and recorder.status().state != "ok":
        time.sleep(0.05)
    recorder.close()  # nothing new written: the inherited head is signed anyway
    report = report_for(db_url, public)
    assert report.ok and report.replicas[0].signed_seq == 3


def test_each_checkpoint_is_logged_in_full(sqlite_url: str, key_pair, caplog) -> None:
    """A copy of every signed head outside the database (the JSON log) for external anchoring."""
    import logging

    private, public = key_pair
    with caplog.at_level(logging.INFO, logger="attest.decisions"):
        fill(sqlite_url, private, count=5, checkpoint_every=2, batch_size=1)
    logged = [r.fields for r in caplog.records if getattr(r, "event", "") == CHECKPOINT_EVENT]
    assert [entry["seq"] for entry in logged] == [2, 4, 5]
    trusted = load_trusted_key(str(public))
    for entry in logged:
        checkpoint = Checkpoint(
            entry["replica"],
            entry["seq"],
            entry["hash"],
            entry["signedAt"],
            entry["keyId"],
            entry["signature"],
            "",
        )
        assert checkpoint_signature_valid(checkpoint, trusted)


def logged_anchors(db_url: str, private: Path, caplog, tmp_path: Path, **options) -> Path:
    """Fill pod-a, keeping the checkpoint log lines as an anchors file (JSON lines)."""
    import json
    import logging

    with caplog.at_level(logging.INFO, logger="attest.decisions"):
        fill(db_url, private, **options)
    anchors = tmp_path / "server.log"
    lines = [json.dumps({"event": "admission_decision", "uid": "x"}), "a text line"]
    lines += [
        json.dumps({"event": CHECKPOINT_EVENT, **r.fields})
        for r in caplog.records
        if getattr(r, "event", "") == CHECKPOINT_EVENT
    ]
    anchors.write_text("\n".join(lines) + "\n")
    return anchors


def anchored_report(db_url: str, public: Path, anchors: Path):
    from admission.decisions.verify import read_anchors

    database = open_database(db_url)
    try:
        return verify_database(
            database,
            trusted_key=load_trusted_key(str(public)),
            anchors=read_anchors(str(anchors)),
        )
    finally:
        database.close()


def test_anchors_detect_a_rollback_to_an_earlier_signed_head(
    db_url: str, key_pair, caplog, tmp_path: Path
) -> None:
    """Deleting the newest records and their checkpoints leaves a consistent, signed chain:
    only a copy of the later checkpoints kept elsewhere can tell."""
    private, public = key_pair
    anchors = logged_anchors(db_url, private, caplog, tmp_path, checkpoint_every=2, batch_size=1)
    assert anchored_report(db_url, public, anchors).ok
    execute(db_url, "DELETE FROM attest_decisions WHERE seq > 4")
    execute(db_url, "DELETE FROM attest_decision_images WHERE seq > 4")
    execute(db_url, "DELETE FROM attest_decision_checkpoints WHERE seq > 4")
    assert report_for(db_url, public).ok  # the database alone cannot see it
    report = anchored_report(db_url, public, anchors)
    assert report.anchors == 3 and not report.intact
    (first,) = report.first_broken()
    assert first.seq == 6 and "anchored signed head is missing" in first.what


def test_anchors_detect_a_deleted_replica(db_url: str, key_pair, caplog, tmp_path: Path) -> None:
    private, public = key_pair
    anchors = logged_anchors(db_url, private, caplog, tmp_path)
    for table in ("attest_decisions", "attest_decision_images", "attest_decision_checkpoints"):
        execute(db_url, f"DELETE FROM {table} WHERE replica = 'pod-a'")
    assert report_for(db_url, public).ok  # nothing left to contradict
    report = anchored_report(db_url, public, anchors)
    assert not report.intact
    assert any(p.replica == "pod-a" and "missing" in p.what for p in report.problems)


def test_anchors_that_do_not_verify_are_problems(db_url: str, key_pair, tmp_path: Path) -> None:
    import json

    from attest.errors import UsageError

    private, public = key_pair
    fill(db_url, private)
    forged = tmp_path / "forged.log"
    entry = {"replica": "pod-a", "seq": 6, "hash": "0" * 64, "signedAt": "x", "signature": "AA=="}
    forged.write_text(json.dumps({"event": CHECKPOINT_EVENT, **entry}) + "\n")
    report = anchored_report(db_url, public, forged)
    assert "does not verify with the trusted key" in report.first_broken()[0].what
    empty = tmp_path / "empty.log"
    empty.write_text("nothing here\n")
    with pytest.raises(UsageError, match="no decision_chain_checkpoint lines"):
        anchored_report(db_url, public, empty)


def test_a_chain_rewritten_under_its_checkpoints_is_caught(db_url: str, key_pair) -> None:
    """Recomputing every hash after a rewrite leaves the old signed heads behind: they no
    longer match, and only the checkpoint below the rewrite still vouches for anything."""
    private, public = key_pair
    fill(db_url, private, count=6, checkpoint_every=2, batch_size=1)
    rewrite_from(db_url, 3)
    report = report_for(db_url, public)
    assert report.status == "broken"
    (first,) = report.first_broken()
    assert first.seq == 4 and "record differs from the signed chain head" in first.what
    assert report.replicas[0].signed_seq == 2
