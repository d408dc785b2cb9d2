"""The recorder in its own lower-priority process (what ``attest admission serve`` runs)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from admission.decisions import query
from admission.decisions.process import RecorderProcess
from admission.decisions.store import open_database
from admission.decisions.verify import verify_database
from admission.testing.samples import FakeDecision, decision
from tests.conftest import ROOT


def test_records_go_through_the_child_which_signs_its_head_on_close(db_url: str, key_pair) -> None:
    private, public = key_pair
    recorder = RecorderProcess(db_url, signing_key=str(private)).start()
    try:
        documents = [decision(namespace=f"ns-{i}") for i in range(25)]
        assert all(recorder.record(FakeDecision(d)) for d in documents)
        assert recorder.flush(60)
        status = recorder.status()
        assert status.state == "ok" and status.written == 25 and status.queued == 0
        child = recorder._process.pid
        assert child is not None and child != os.getpid()
        assert status.replica.endswith(f"-{child}")  # the child's own chain
        # it only gets the CPU the workers leave idle
        assert os.sched_getscheduler(child) == os.SCHED_IDLE or (
            os.getpriority(os.PRIO_PROCESS, child) >= 10
        )
    finally:
        recorder.close()
    assert recorder.status().state == "closed"
    assert not recorder._process.is_alive()
    database = open_database(db_url)
    try:
        stored = query.list_decisions(database, query.DecisionFilter(limit=None))
        assert sorted(r.fields.namespace for r in stored) == sorted(f"ns-{i}" for i in range(25))
        from admission.decisions.chain import load_trusted_key

        report = verify_database(database, trusted_key=load_trusted_key(str(public)))
        assert report.ok
        (replica,) = report.replicas
        assert replica.signed_seq == replica.head_seq == 25
    finally:
        database.close()


def test_drops_on_the_worker_side_are_counted(sqlite_url: str) -> None:
    recorder = RecorderProcess(sqlite_url, queue_size=2)
    # not started yet: nothing drains the queue, so the third record does not fit
    assert recorder.record(decision()) and recorder.record(decision())
    assert not recorder.record(decision())
    assert recorder.status().dropped == 1
    recorder.start()
    try:
        assert recorder.flush(60)
        assert recorder.status().written == 2 and recorder.status().dropped == 1
        assert recorder.record(object())  # queued; the feeder finds nothing to record in it
        assert recorder.flush(60)
        assert recorder.status().dropped == 2 and recorder.status().written == 2
    finally:
        recorder.close()
    assert not recorder.record(decision())  # closed: dropped, never raises
    assert recorder.status().dropped == 3


def test_the_child_writes_what_it_has_and_exits_when_the_worker_dies(
    sqlite_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys, time
            sys.path.insert(0, {str(ROOT)!r})
            from admission.decisions.process import RecorderProcess
            from admission.testing.samples import decision
            recorder = RecorderProcess({sqlite_url!r}).start()
            while recorder.status().state == "starting":  # the child is up
                time.sleep(0.02)
            for _ in range(5):
                recorder.record(decision(namespace="orphaned"))
            print(recorder._process.pid, flush=True)
            time.sleep(0.1)  # the queue's feeder thread hands them over
            os._exit(0)  # killed: no close(), no atexit
            """
        )
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    child = int(run.stdout.strip())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists(), "the writer process outlived its worker"
    database = open_database(sqlite_url)
    try:
        stored = query.list_decisions(database, query.DecisionFilter(namespaces=("orphaned",)))
        assert len(stored) == 5
    finally:
        database.close()


def test_an_unusable_database_is_reported_not_raised(tmp_path: Path) -> None:
    recorder = RecorderProcess(str(tmp_path / "missing" / "d.db")).start()
    try:
        assert recorder.record(decision())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and recorder.status().state == "starting":
            time.sleep(0.05)
        status = recorder.status()
        assert status.state == "degraded" and "missing" in (status.last_error or "")
        assert recorder.flush(20)
        assert recorder.status().dropped == 1
    finally:
        recorder.close()


def test_a_starved_writer_still_writes_and_signs_everything_when_closed(
    sqlite_url: str, key_pair
) -> None:
    """On a saturated machine an idle-priority writer gets next to no CPU: closing it must
    give it enough to write what it holds and sign its head within the grace period.

    A busy loop pinned to the writer's CPU stands for the saturated webhook."""
    from admission.decisions.chain import load_trusted_key

    private, public = key_pair
    cpu = min(os.sched_getaffinity(0))
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    recorder = RecorderProcess(sqlite_url, signing_key=str(private)).start()
    try:
        os.sched_setaffinity(hog.pid, {cpu})
        child = recorder._process.pid
        assert child is not None
        os.sched_setaffinity(child, {cpu})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and recorder.status().state == "starting":
            time.sleep(0.05)
        assert os.sched_getscheduler(child) == os.SCHED_IDLE
        for index in range(2000):
            assert recorder.record(FakeDecision(decision(namespace=f"busy-{index % 7}")))
        began = time.monotonic()
        recorder.close(timeout=15)
        assert time.monotonic() - began < 15, "the writer had to be killed"
    finally:
        hog.kill()
        hog.wait()
        recorder.close()
    database = open_database(sqlite_url)
    try:
        report = verify_database(database, trusted_key=load_trusted_key(str(public)))
    finally:
        database.close()
    assert report.ok, report.problems
    assert sum(r.records for r in report.replicas) == 2000
