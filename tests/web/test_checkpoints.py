"""Signed chain heads from the real server: on its schedule, and whenever a worker goes away.

The attack these guard against: records written after the last signed head can be
rewritten or deleted without trace.  So every way a gunicorn worker can end (SIGTERM
to the worker, SIGKILL to it, SIGTERM to the whole process group as systemd sends it,
SIGTERM to the arbiter) must leave its chain head signed, and while it runs the head
is signed on the ``--checkpoint-interval`` schedule.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from admission.decisions import query
from admission.decisions.chain import load_trusted_key
from admission.decisions.store import open_database
from admission.decisions.verify import VerifyReport, verify_database
from admission.errors import DecisionStoreError
from admission.testing import webhook
from admission.testing.helpers import TlsFiles, deployment, review
from admission.testing.samples import write_key_pair
from admission.testing.serve import Serve, serve_command, wait_for
from attest.testing import free_port


def report(db: str, public: Path) -> VerifyReport:
    database = open_database(db)
    try:
        return verify_database(database, trusted_key=load_trusted_key(str(public)))
    finally:
        database.close()


def writer_of(worker: int) -> str:
    """The replica (chain) name of a worker's decision writer process: ``<host>-<its pid>``."""

    def writers() -> list[str]:
        children = Path(f"/proc/{worker}/task/{worker}/children").read_text().split()
        return [  # not multiprocessing's resource tracker, the other child
            pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]

    (pid,) = wait_for(writers, timeout=30, what=f"worker {worker}'s writer process")
    return f"{os.uname().nodename}-{pid}"


def records(db: str) -> int:
    try:
        database = open_database(db)
    except DecisionStoreError:  # no file or no tables yet
        return 0
    try:
        return len(query.list_decisions(database, query.DecisionFilter(limit=None)))
    finally:
        database.close()


def covered(db: str, public: Path, replica: str) -> bool:
    found = {r.replica: r for r in report(db, public).replicas}
    return replica in found and found[replica].records > 0 and found[replica].covered


@pytest.fixture
def own_group(tls: TlsFiles, tmp_path: Path) -> Iterator[list[Serve]]:
    """Servers started in their own session (process group), so the group can be signalled."""
    started: list[Serve] = []
    yield started
    for server in started:
        server.stop()


def start_in_own_group(
    config: Path, tls: TlsFiles, workdir: Path, db: str, extra: tuple[str, ...]
) -> Serve:
    port, web_port = free_port(), free_port()
    command = serve_command(
        config, tls, port=port, web_port=web_port, db=db, token_file=None, workers=2, extra=extra
    )
    log = workdir / f"serve-{port}.log"
    process = subprocess.Popen(
        command, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    server = Serve(process, port, tls.ca, log, web_port, "", command)
    webhook.wait_until_ready(server, lambda: server.get("/healthz").status_code == 200)
    return server


def workers_of(server: Serve) -> set[int]:
    text = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text()
    return {int(pid) for pid in text.split()}


def test_every_way_a_worker_ends_leaves_its_chain_head_signed(
    world, tls: TlsFiles, tmp_path: Path, own_group: list[Serve], cli
) -> None:
    private, public = write_key_pair(tmp_path)
    db = str(tmp_path / "decisions.db")
    # a schedule that never fires in this test: only the exits can sign
    schedule = ("--checkpoint-interval", "3600", "--checkpoint-records", "1000000")
    server = start_in_own_group(
        world.config(tmp_path / "config.yaml"),
        tls,
        tmp_path,
        db,
        ("--signing-key", str(private), *schedule),
    )
    own_group.append(server)
    good = world.images["good"]

    def send(count: int, prefix: str) -> None:
        for index in range(count):
            answer = server.post("/validate", review(deployment(good), uid=f"{prefix}-{index}"))
            assert answer["allowed"] is True

    first, second = sorted(wait_for(lambda: len(w := workers_of(server)) == 2 and w))
    killed_writer, termed_writer = writer_of(first), writer_of(second)
    sent = 0
    while sent < 400:  # a new connection per request: go on until both workers recorded some
        send(10, f"a{sent}")
        sent += 10
        wait_for(lambda n=sent: records(db) == n, timeout=60, what=f"{sent} records written")
        if {killed_writer, termed_writer} <= {r.replica for r in report(db, public).replicas}:
            break
    assert not covered(db, public, killed_writer) and not covered(db, public, termed_writer)

    os.kill(first, signal.SIGKILL)  # no cleanup in the worker: its writer sees the pipe close
    os.kill(second, signal.SIGTERM)  # gunicorn's graceful worker exit
    for replica in (killed_writer, termed_writer):
        wait_for(lambda r=replica: covered(db, public, r), timeout=30, what=f"{replica} signed")

    wait_for(lambda: len(w := workers_of(server)) == 2 and not {first, second} & w, timeout=60)
    send(20, "b")  # the replacement workers record too
    wait_for(lambda: records(db) == sent + 20, timeout=60, what="the later records written")
    unsigned = report(db, public)
    assert unsigned.intact and unsigned.uncovered, "a live writer's newest records wait"

    os.killpg(server.process.pid, signal.SIGTERM)  # systemd's KillMode=control-group
    assert server.process.wait(timeout=60) == 0
    verified = cli("decisions", "verify", "--db", db, "--key", str(public))
    assert verified.exit_code == 0, verified.stdout
    assert verified.stdout.rstrip().endswith("chain intact")
    listed = cli("decisions", "list", "--db", db, "--limit", "1000", "--output", "json").json()
    assert len(listed) == sent + 20 == len({r["decision"]["uid"] for r in listed})


def test_the_head_is_signed_on_schedule_while_serving(serve, world, tmp_path: Path) -> None:
    private, public = write_key_pair(tmp_path)
    db = str(tmp_path / "decisions.db")
    server = serve(
        world.config(tmp_path / "config.yaml"),
        db=db,
        extra=("--signing-key", str(private), "--checkpoint-interval", "0.5"),
    )
    for index in range(5):
        server.post("/validate", review(deployment(world.images["good"]), uid=f"s-{index}"))
    wait_for(lambda: records(db) == 5, timeout=60, what="5 records written")
    signed = wait_for(  # still serving: only the schedule can have signed it
        lambda: (found := report(db, public)).ok and found.replicas and found,
        timeout=30,
        what="the schedule to sign the head",
    )
    assert sum(r.records for r in signed.replicas) == 5
    assert server.process.poll() is None
    logged = wait_for(  # the writer logs the checkpoint after storing it
        lambda: [
            line for line in server.log_lines() if line.get("event") == "decision_chain_checkpoint"
        ],
        what="the checkpoint's log line",
    )
    assert {"replica", "seq", "hash", "signedAt", "keyId", "signature"} <= set(logged[0])


def test_bad_checkpoint_options_are_one_line(cli, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("policies: []\n")
    for option, value in (("--checkpoint-interval", "0"), ("--checkpoint-records", "0")):
        result = cli(
            "admission", "serve", "--config", str(config), "--tls-cert", "c", "--tls-key", "k",
            option, value,
        )  # fmt: skip
        assert result.exit_code == 2 and option in result.stderr
