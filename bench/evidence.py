"""Evidence and stats at scale: time and peak memory over N decision records, SQLite and PostgreSQL.

    .venv/bin/python bench/evidence.py [--records 1000000] [--replicas 4] [--no-postgres]
                                       [--no-sqlite] [--workdir DIR [--reuse]]

Generates N realistic decision records (one image each, with a verified
signature, SBOM and provenance attestation and the policy input Rego saw;
about 10% denied, 3% in warn mode, 1% admitted under an exception) spread over
90 days and ``--replicas`` hash chains, written in bulk (batches of 5,000 per
transaction, one signed checkpoint per batch) straight through the store, then
runs ``attest evidence`` (full chain verification + aggregation + HTML/CSV +
signature) and ``attest decisions stats`` over the whole period, each in its
own process, and prints wall time and the peak RSS of that process (from
``wait4``).  PostgreSQL is Debian's, a throw-away server on a loopback port.

Generating a million records takes minutes: with ``--workdir DIR --reuse`` the
databases (SQLite file and PostgreSQL cluster) stay in DIR and a later run with
the same ``--records`` and ``--replicas`` measures them again without
regenerating.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from admission.decisions.chain import ChainHead, load_head_signer
from admission.decisions.model import normalise_time
from admission.decisions.store import DecisionDatabase, PreparedRecord, prepare

ROOT = Path(__file__).resolve().parent.parent
ATTEST = str(Path(sys.executable).with_name("attest"))
KEY = ROOT / "keys-dev" / "cosign.key"
PUB = ROOT / "keys-dev" / "cosign.pub"
START = dt.datetime(2026, 7, 1, tzinfo=dt.UTC)
DAYS = 90
BATCH = 5000
VARIANTS = 1000  # distinct image variants
BUILDER = "https://github.com/acme/ci/.github/workflows/release.yml@refs/heads/main"


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def template_key(n: int, total: int) -> tuple[int, int, int]:
    """What decision ``n`` shares with others: its image variant, outcome class, policy bundle."""
    roll = n % 100
    outcome = 0 if roll < 10 else 1 if roll < 13 else 2 if roll == 50 else 3
    return n % VARIANTS, outcome, n * 4 // total


def document(key: tuple[int, int, int], n: int = 0) -> dict[str, Any]:
    """A decision of template ``key`` (``n`` only sets uid and time): ``Decision.to_dict()``'s shape."""
    variant, outcome, bundle = key
    service = variant % 250
    reference = f"ghcr.io/acme/service-{service}:1.{variant % 4}"
    digest = _digest(reference)
    result = ("denied", "warned", "allowed", "allowed")[outcome]
    verified = result != "denied"
    signer = {
        "type": "keyless",
        "subject": BUILDER,
        "issuer": "https://token.actions.githubusercontent.com",
    }
    check = {"verified": verified, "authority": "release", "signer": signer, "storage": "bundle"}
    moment = START
    doc: dict[str, Any] = {
        "uid": uid(n),
        "time": moment.isoformat(timespec="microseconds"),
        "operation": "CREATE",
        "kind": "Deployment",
        "namespace": f"team-{variant % 20}",
        "name": f"service-{service}",
        "user": "system:serviceaccount:argocd:argocd-application-controller",
        "caller": "",
        "result": result,
        "allowed": verified,
        "checked": True,
        "dryRun": False,
        "messages": [
            f"{reference}: no trusted signature: 0 of 1 required authorities of policy prod verified it"
        ]
        if not verified
        else [],
        "warnings": [f"{reference}: policy prod is in warn mode"] if result == "warned" else [],
        "images": [
            {
                "reference": reference,
                "name": f"ghcr.io/acme/service-{service}",
                "digest": digest,
                "policy": "prod",
                "outcome": "verified" if verified else "unverified",
                "error": None,
                "cached": False,
                "unchanged": False,
                "verification": {
                    "reference": f"{reference}@{digest}",
                    "digest": digest,
                    "signatures": [
                        {
                            **check,
                            "kind": "signature",
                            "location": f"ghcr.io/acme/service-{service}@{_digest('sig' + reference)}",
                        }
                    ],
                    "attestations": [
                        {
                            **check,
                            "kind": "attestation",
                            "predicateType": "https://cyclonedx.org/bom",
                            "location": f"ghcr.io/acme/service-{service}@{_digest('sbom' + reference)}",
                        },
                        {
                            **check,
                            "kind": "attestation",
                            "predicateType": "https://slsa.dev/provenance/v1",
                            "location": f"ghcr.io/acme/service-{service}@{_digest('prov' + reference)}",
                        },
                    ],
                    "satisfiedAuthorities": ["release"] if verified else [],
                    "verified": verified,
                    "errors": [],
                },
            }
        ],
        "input": {
            "images": [
                {
                    "reference": reference,
                    "digest": digest,
                    "policy": {"name": "prod", "mode": "warn" if result == "warned" else "enforce"},
                    "attestations": [
                        {
                            **check,
                            "predicateType": "https://slsa.dev/provenance/v1",
                            "provenance": {
                                "builderId": BUILDER,
                                "sourceRepository": f"github.com/acme/service-{service}",
                                "sourceRef": "refs/heads/main",
                                "sourceDigest": {
                                    "gitCommit": hashlib.sha1(reference.encode()).hexdigest()
                                },
                                "buildFinishedOn": (
                                    START - dt.timedelta(hours=service)
                                ).isoformat(),
                            }
                            if verified
                            else None,
                        }
                    ],
                }
            ]
        },
        "latency": {"resolve": 1.2, "verify": 14.5, "evaluate": 0.8, "total": 17.1},
        "bundleHash": _digest(f"bundle-{bundle}"),
        "trustFingerprint": _digest("trust"),
        "engine": "regopy 1.5.2",
    }
    if outcome == 2:
        doc["exception"] = {
            "id": f"exc-{variant % 7}",
            "signer": "appsec@acme.example",
            "reason": "hotfix",
            "expires": "2026-12-31T00:00:00Z",
        }
    return doc


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def prepared(
    n: int, total: int, templates: dict[tuple[int, int, int], PreparedRecord]
) -> PreparedRecord:
    """Record ``n``, from its template's canonical bytes with uid and time put in (the bytes are
    exactly the canonical JSON of that document: both values are fixed-width strings)."""
    key = template_key(n, total)
    template = templates.get(key)
    if template is None:
        template = templates[key] = prepare(document(key))
    moment = START + dt.timedelta(seconds=DAYS * 86400 * n / total)
    when = moment.isoformat(timespec="microseconds")
    canonical = template.canonical.replace(
        START.isoformat(timespec="microseconds").encode(), when.encode(), 1
    ).replace(uid(0).encode(), uid(n).encode(), 1)
    fields = replace(template.fields, time=normalise_time(when), uid=uid(n))
    return PreparedRecord(canonical, fields)


def generate(target: str, total: int, replicas: int) -> float:
    """Write ``total`` records over ``replicas`` chains; returns seconds taken."""
    database = DecisionDatabase(target)
    database.ensure_schema()
    signer = load_head_signer(str(KEY), password=b"attest-dev")
    heads = {f"bench-{r}": ChainHead(f"bench-{r}") for r in range(replicas)}
    names = list(heads)
    templates: dict[tuple[int, int, int], PreparedRecord] = {}
    started = time.perf_counter()
    for offset in range(0, total, BATCH):
        replica = names[(offset // BATCH) % replicas]
        batch = [prepared(n, total, templates) for n in range(offset, min(total, offset + BATCH))]
        heads[replica] = database.append(replica, batch, head=heads[replica], signer=signer)
        if offset and offset % (BATCH * 40) == 0:
            rate = offset / (time.perf_counter() - started)
            print(f"    … {offset:,} records ({rate:,.0f}/s)", flush=True)
    database.close()
    return time.perf_counter() - started


def measure(*args: str) -> tuple[float, float, float, int]:
    """Run ``attest ARGS`` in its own process: (wall seconds, CPU seconds, peak RSS in MiB,
    exit code).  CPU time is what the run costs; wall time also shows the machine's load."""
    started = time.perf_counter()
    env = {**os.environ, "ATTEST_PASSWORD": "attest-dev"}
    proc = subprocess.Popen(
        [ATTEST, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 3):
        print(f"    attest {args[0]} exited {proc.returncode}: {stderr.strip()[-300:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode


def generated(target: str, total: int, replicas: int) -> bool:
    """Whether ``target`` already holds exactly what ``generate`` would write (for ``--reuse``)."""
    import sqlalchemy as sa

    from admission.decisions.store import decisions_table

    database = DecisionDatabase(target)
    try:
        if not sa.inspect(database.engine).has_table(decisions_table.name):
            return False
        with database.reading() as conn:
            count, chains = conn.execute(
                sa.select(sa.func.count(), sa.func.count(decisions_table.c.replica.distinct()))
            ).one()
        return bool(count == total and chains == min(replicas, -(-total // BATCH)))
    finally:
        database.close()


def run(name: str, target: str, total: int, replicas: int, workdir: Path, reuse: bool) -> None:
    if reuse and generated(target, total, replicas):
        print(f"{name}: reusing {total:,} records over {replicas} chains", flush=True)
    else:
        print(f"{name}: generating {total:,} records over {replicas} chains", flush=True)
        seconds = generate(target, total, replicas)
        print(f"  generated in {seconds:.1f} s ({total / seconds:,.0f} records/s)", flush=True)
    until = (START + dt.timedelta(days=DAYS + 1)).strftime("%Y-%m-%d")
    period = ["--db", target, "--since", "2026-07-01", "--until", until]
    load = os.getloadavg()[0]
    wall, cpu, rss, code = measure(
        *("evidence", *period, "--checkpoint-key", str(PUB), "--key", str(KEY)),
        *("--tlog-upload=false", "-f", str(workdir / f"evidence-{name}")),
    )
    size = (workdir / f"evidence-{name}.sigstore.json").stat().st_size // 1024
    print(
        f"  attest evidence: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {rss:.0f} MiB, "
        f"exit {code} (bundle {size} KiB; load average {load:.1f})",
        flush=True,
    )
    load = os.getloadavg()[0]
    wall, cpu, rss, code = measure("decisions", "stats", *period, "-o", "json")
    print(
        f"  attest decisions stats: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {rss:.0f} MiB, "
        f"exit {code} (load average {load:.1f})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--workdir", help="Keep databases and reports here (default: a temporary one)."
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Keep the databases in --workdir and measure again without regenerating them.",
    )
    args = parser.parse_args()
    if args.reuse and not args.workdir:
        parser.error("--reuse needs --workdir")
    with tempfile.TemporaryDirectory(prefix="attest-bench-evidence-") as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        if not args.no_sqlite:
            database = workdir / "decisions.db"
            if not (args.reuse and generated(str(database), args.records, args.replicas)):
                for stale in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
                    stale.unlink(missing_ok=True)  # a fresh database
            run("sqlite", str(database), args.records, args.replicas, workdir, args.reuse)
        if args.no_postgres:
            return
        from attest.testing.postgres import PostgresServer

        cluster = workdir / "postgresql"
        if args.reuse:
            cluster.mkdir(exist_ok=True)
            server = PostgresServer(workdir=cluster).start()
        else:
            server = PostgresServer().start()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the server
        try:
            target = server.url("bench_evidence")
            if not (
                args.reuse
                and fresh_database(server, "bench_evidence", keep=True)
                and generated(target, args.records, args.replicas)
            ):
                fresh_database(server, "bench_evidence", keep=False)
                target = server.create_database("bench_evidence")
            run("postgresql", target, args.records, args.replicas, workdir, args.reuse)
        finally:
            server.stop(remove=not args.reuse)


def fresh_database(server: Any, name: str, *, keep: bool) -> bool:
    """Whether database ``name`` exists in ``server``'s cluster; unless ``keep``, drop it."""
    import psycopg

    with psycopg.connect(server.url(), autocommit=True, connect_timeout=10) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if found and not keep:
            conn.execute(f'DROP DATABASE "{name}"')
    return found is not None


if __name__ == "__main__":
    main()
