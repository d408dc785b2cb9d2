"""What decision recording costs the webhook: warm requests with recording off vs on, A/B.

Starts ``attest admission serve`` (gunicorn, TLS, 2 workers) several times on the same
machine at once — recording off (``--no-record``), recording to SQLite (WAL, with a
signing key for chain heads) and, with ``--postgres``, recording to a local PostgreSQL
server — and drives them with the same warm load as ``bench/admission.py`` (its
load-generator process; a Deployment with 3 signed images, verification cached).
The modes take turns, round after round, in a rotating order, so background load on a
shared machine hits all of them alike; the table shows the median over rounds, and
the last line the p99 difference (target: recording adds under 1 ms at p99).  After
the runs, each recording server's /metrics must show every request written and none
dropped.

    .venv/bin/python bench/admission_recording.py [--rounds 6] [--requests 2000] [--postgres]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _load_admission_bench() -> Any:
    spec = importlib.util.spec_from_file_location(
        "bench_admission", ROOT / "bench" / "admission.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recorded(server: Any) -> tuple[float, float]:
    from admission.metrics import label_values

    text = server.ops("/metrics").text
    written = sum(v for _, v in label_values("attest_decision_records_written_total", text))
    dropped = sum(v for _, v in label_values("attest_decision_records_dropped_total", text))
    return written, dropped


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6, help="turns of each mode")
    parser.add_argument("--requests", type=int, default=2000, help="requests per turn")
    parser.add_argument("--concurrency", type=int, default=2, help="client connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--postgres", action="store_true", help="also record to PostgreSQL")
    parser.add_argument(
        "--sqlite-dir", help="directory of the SQLite database (default: a temporary one)"
    )
    args = parser.parse_args()

    bench = _load_admission_bench()
    from tests.admission import conftest as hooks
    from tests.admission.helpers import deployment, make_tls, review
    from tests.decisions.conftest import write_key_pair
    from tests.support.registry import RegistryServer
    from tests.web.server import start_serve, wait_for

    workdir = Path(tempfile.mkdtemp(prefix="attest-bench-recording-"))
    registry = RegistryServer().start()
    postgres = None
    servers: dict[str, Any] = {}
    try:
        world = hooks.World(registry, workdir)
        references = [world.signed(f"rec{i}") for i in range(3)]
        tls = make_tls(workdir / "tls")
        config = world.config(workdir / "config.yaml")
        private, _public = write_key_pair(workdir)
        common = ("--workers", str(args.workers), "--threads", "8", "--log-level", "warning")
        modes: dict[str, tuple[str | None, tuple[str, ...]]] = {
            "off": (None, ("--no-record", *common)),
            "sqlite": (
                str(Path(args.sqlite_dir or workdir) / f"decisions-{os.getpid()}.db"),
                ("--signing-key", str(private), *common),
            ),
        }
        if args.postgres:
            from tests.support.postgres import PostgresServer

            postgres = PostgresServer().start()
            url = postgres.create_database("bench_decisions")
            modes["postgres"] = (url, ("--signing-key", str(private), *common))
        for mode, (db, extra) in modes.items():
            servers[mode] = start_serve(config, tls, workdir, db=db, extra=extra)
        body = json.dumps(review(deployment(*references), uid="bench")).encode()
        for server in servers.values():  # fill every worker's caches
            bench.drive(server, requests=100, concurrency=args.concurrency, body=body)
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in servers}
        order = list(servers)
        for round_index in range(args.rounds):
            turn = order[round_index % len(order) :] + order[: round_index % len(order)]
            for mode in turn:
                runs[mode].append(
                    bench.drive(
                        servers[mode],
                        requests=args.requests,
                        concurrency=args.concurrency,
                        body=body,
                    )
                )
        sent = 100 + args.rounds * args.requests
        recorded = {}
        for mode in servers:
            if mode == "off":
                continue
            server = servers[mode]
            recorded[mode] = wait_for(
                lambda server=server: (r := _recorded(server))[0] + r[1] >= sent and r,
                timeout=60,
                what=f"{mode} records",
            )
    finally:
        for server in servers.values():
            server.stop()
        registry.stop()
        if postgres is not None:
            postgres.stop(remove=True)

    print(
        f"decision recording A/B: {args.workers} gunicorn workers x 8 threads, TLS, "
        f"{args.concurrency} client connections, warm Deployment with 3 signed images, "
        f"{args.rounds} rounds x {args.requests} requests per mode, {os.cpu_count()} CPUs"
    )
    print(f"{'mode':<9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8}   p99 of each round")
    medians: dict[str, dict[str, float]] = {}
    for mode, rows in runs.items():
        medians[mode] = {
            key: statistics.median(row[key] for row in rows)
            for key in ("p50_ms", "p95_ms", "p99_ms", "rps")
        }
        m = medians[mode]
        each = " ".join(f"{row['p99_ms']:.2f}" for row in rows)
        errors = sum(row["errors"] for row in rows)
        print(
            f"{mode:<9} {m['p50_ms']:>8.2f} {m['p95_ms']:>8.2f} {m['p99_ms']:>8.2f} "
            f"{m['rps']:>8.1f}   {each}" + (f"  ERRORS: {errors}" if errors else "")
        )
    for mode, (written, dropped) in recorded.items():
        print(f"{mode}: {written:.0f} records written, {dropped:.0f} dropped of {sent} sent")
    for mode in recorded:
        deltas = [
            on["p99_ms"] - off["p99_ms"] for on, off in zip(runs[mode], runs["off"], strict=True)
        ]
        delta = medians[mode]["p99_ms"] - medians["off"]["p99_ms"]
        verdict = "OK" if delta < 1.0 else "MISSED"
        print(
            f"recording ({mode}) adds {delta:+.2f} ms at p99 (median of rounds; per round "
            f"{' '.join(f'{d:+.2f}' for d in deltas)}) — target < 1 ms: {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
