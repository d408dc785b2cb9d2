"""Decision-record microbenchmark: cost of ``record()`` on the request path, store throughput.

    .venv/bin/python bench/decisions.py [--records N] [--no-postgres]

Prints, for SQLite (WAL) and a throw-away PostgreSQL server (Debian's, on a
loopback port): the latency of ``DecisionRecorder.record`` as the admission
request thread sees it (p50/p99/max, measured while the writer thread is busy
writing), end-to-end throughput (records queued → durably written, batched),
and ``attest decisions verify`` throughput.  A paced run (200 simulated
requests/s, each doing warm-request-sized JSON work in the same process)
shows what the writer thread costs the request path through the GIL:
request p50/p99 with recording off and on.  Decisions are realistic: three
images, each with a signature and a provenance attestation and their reasons.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from admission.decisions.recorder import DecisionRecorder
from admission.decisions.store import open_database
from admission.decisions.verify import verify_database
from admission.testing.samples import FakeDecision, decision, image


def sample(n: int) -> FakeDecision:
    images = [image(f"ghcr.io/org/service-{n % 50}/c{i}:1.{n % 7}") for i in range(3)]
    return FakeDecision(decision(images=images, namespace=f"team-{n % 20}"))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(name: str, target: str, count: int) -> None:
    decisions = [sample(n) for n in range(count)]
    size = len(FakeDecision.to_dict(decisions[0]).__repr__())
    recorder = DecisionRecorder(target, replica="bench", queue_size=count + 1).start()
    recorder.flush(30)
    latencies = []
    started = time.perf_counter()
    for item in decisions:
        before = time.perf_counter_ns()
        recorder.record(item)
        latencies.append((time.perf_counter_ns() - before) / 1000)
    queued = time.perf_counter() - started
    recorder.flush(600)
    elapsed = time.perf_counter() - started
    status = recorder.status()
    recorder.close()
    database = open_database(target)
    verify_started = time.perf_counter()
    report = verify_database(database)
    verify_seconds = time.perf_counter() - verify_started
    database.close()
    assert report.intact and status.written == count, (status, report.problems[:3])
    print(f"{name}: {count} decisions of ~{size // 1024} KiB each")
    print(
        f"  record() on the request path: p50 {statistics.median(latencies):.1f} µs, "
        f"p99 {percentile(latencies, 0.99):.1f} µs, max {max(latencies):.0f} µs "
        f"(all {count} queued in {queued * 1000:.0f} ms)"
    )
    print(
        f"  written: {count / elapsed:,.0f} records/s end to end "
        f"({elapsed:.2f} s, dropped {status.dropped})"
    )
    print(f"  verify: {count / verify_seconds:,.0f} records/s ({verify_seconds:.2f} s)")


def simulated_request(payload: dict) -> None:
    """About a warm admission request's own CPU work (JSON in and out, Rego-sized)."""
    for _ in range(4):
        json.loads(json.dumps(payload))


def paced(target: str | None, count: int, rate: float) -> list[float]:
    """Latency (µs) of simulated requests at ``rate``/s, recording each decision when a target is given."""
    recorder = DecisionRecorder(target, replica="paced").start() if target else None
    decisions = [sample(n) for n in range(count)]
    payload = decisions[0].to_dict()
    latencies = []
    period = 1.0 / rate
    next_tick = time.perf_counter()
    for item in decisions:
        next_tick += period
        before = time.perf_counter_ns()
        simulated_request(payload)
        if recorder is not None:
            recorder.record(item)
        latencies.append((time.perf_counter_ns() - before) / 1000)
        time.sleep(max(0.0, next_tick - time.perf_counter()))
    if recorder is not None:
        recorder.flush(60)
        recorder.close()
    return latencies


def run_paced(count: int, rate: float) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        paced(None, 200, rate)  # warm up
        off = paced(None, count, rate)
        on = paced(str(Path(workdir) / "paced.db"), count, rate)
    print(f"simulated requests at {rate:.0f}/s ({count}), SQLite recording off → on:")
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        before, after = percentile(off, fraction), percentile(on, fraction)
        print(f"  {label}: {before:.0f} µs → {after:.0f} µs ({after - before:+.0f} µs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--rate", type=float, default=200.0, help="paced requests per second")
    args = parser.parse_args()
    run_paced(min(args.records, 3000), args.rate)
    with tempfile.TemporaryDirectory() as workdir:
        run("SQLite (WAL)", str(Path(workdir) / "decisions.db"), args.records)
    if args.no_postgres:
        return
    from attest.testing.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        run("PostgreSQL 15", server.create_database("bench"), args.records)
    finally:
        server.stop(remove=True)


if __name__ == "__main__":
    main()
