"""Benchmark: do healthy requests keep their latency while a hostile registry is being hit?

The real webhook (gunicorn + TLS on loopback, ``--workers`` x ``--threads``), a
real docker-registry with three signed images (signature, SLSA provenance and
SBOM each), and a drip-feeding registry on loopback (attest/testing/hostile.py:
it answers one byte a second).  The healthy load is bench/admission.py's load
generator in its own process: a Deployment of the three signed images with both
caches off, so every request resolves and verifies all three on the worker's
verification threads — the resource a hostile registry would take.

Each server configuration runs two phases, interleaved ``--repeat`` times (the
median of each figure is shown):

* ``quiet``: the healthy load alone;
* ``hostile``: the same while ``--hostile-clients`` connections keep sending a Pod
  of ``--hostile-images`` images on the drip-feeder (each waits for its answer,
  then ``--hostile-pause`` seconds), so hostile work is always in flight.

Configurations: the default ``maxConcurrentPerRegistry`` (4) and 64 (no useful
bound: sixteen hostile images then take all sixteen verification threads of a
worker), to show what the bound buys; without a bound every healthy request
waits for the deadline, so that configuration runs ``--unbounded-requests``
healthy requests per phase, once.  Also reported: ``/healthz`` under the
hostile load, and the hostile answers (all must be denials).

    .venv/bin/python bench/hostile_registry.py [--requests 150] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.admission import _start_server, drive, median_of  # noqa: E402


class HostileLoad:
    """Threads that keep hostile AdmissionReviews in flight; counts their answers."""

    def __init__(self, hook: Any, body: bytes, clients: int, pause: float) -> None:
        self.hook, self.body, self.clients, self.pause = hook, body, clients, pause
        self.answers: list[tuple[float, bool, str]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self) -> HostileLoad:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        time.sleep(1.0)  # hostile work in flight before the healthy load starts
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                answer = session.post(
                    f"{self.hook.url}/validate",
                    data=self.body,
                    headers={"Content-Type": "application/json"},
                    verify=str(self.hook.ca),
                    timeout=30,
                ).json()["response"]
                outcome = (answer["allowed"], answer.get("status", {}).get("message", ""))
            except (requests.RequestException, ValueError, KeyError) as err:
                outcome = (False, f"error: {err}")
            with self._lock:
                self.answers.append((time.monotonic() - began, *outcome))
            self._stop.wait(self.pause)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            answers = list(self.answers)
        seconds = [a[0] for a in answers]
        return {
            "answers": len(answers),
            "admitted": sum(1 for a in answers if a[1]),
            "timed_out": sum(1 for a in answers if "timed out" in a[2]),
            "refused_stalling": sum(1 for a in answers if "is stalling" in a[2]),
            "max_s": max(seconds, default=0.0),
        }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=150, help="healthy requests per phase")
    parser.add_argument("--concurrency", type=int, default=2, help="healthy client connections")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each phase")
    parser.add_argument("--hostile-clients", type=int, default=4)
    parser.add_argument("--hostile-images", type=int, default=16)
    parser.add_argument("--hostile-pause", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--bounds", default="4,64", help="maxConcurrentPerRegistry values to run")
    parser.add_argument(
        "--unbounded-requests",
        type=int,
        default=20,
        help="healthy requests per phase (one run) for bounds above 16, which starve them",
    )
    args = parser.parse_args()
    args.server_arg = ["--no-record"]

    from admission.testing import world as hooks
    from admission.testing.helpers import (
        POD_KIND,
        deployment,
        key_policy,
        make_tls,
        pod_spec,
        review,
        write_config,
    )
    from attest.testing import RegistryServer
    from attest.testing.hostile import HostileRegistry

    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="attest-bench-hostile-"))
    registry = RegistryServer().start()
    drip = HostileRegistry("drip").start()
    results: dict[str, dict[str, Any]] = {}
    hostile_figures: dict[str, dict[str, Any]] = {}
    try:
        world = hooks.World(registry, workdir)
        references = [world.signed(f"bench{i}") for i in range(3)]
        tls = make_tls(workdir / "tls")
        policy = key_policy("apps", [f"127.0.0.1:*/{hooks.REPO}/*"], world.key_file)
        healthy = json.dumps(review(deployment(*references), uid="healthy")).encode()
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "hostile", "namespace": "apps"},
            "spec": pod_spec(
                *(f"{drip.address}/{hooks.REPO}/app{i}:v1" for i in range(args.hostile_images))
            ),
        }
        hostile = json.dumps(review(pod, uid="hostile", kind=POD_KIND)).encode()
        for bound in (int(b) for b in args.bounds.split(",")):
            config = write_config(
                workdir / f"bound-{bound}.yaml",
                [policy],
                cache={"maxEntries": 0, "tagTtlSeconds": 0},
                maxConcurrentPerRegistry=bound,
            )
            hook = _start_server(config, tls, workdir, args)
            starved = bound > 16  # a worker has 16 verification threads
            count = args.unbounded_requests if starved else args.requests
            try:
                drive(hook, requests=20, concurrency=args.concurrency, body=healthy)
                runs: dict[str, list[dict[str, Any]]] = {}
                loads: list[HostileLoad] = []
                for _run in range(1 if starved else args.repeat):
                    runs.setdefault("quiet", []).append(
                        drive(hook, requests=count, concurrency=args.concurrency, body=healthy)
                    )
                    load = HostileLoad(hook, hostile, args.hostile_clients, args.hostile_pause)
                    with load:
                        runs.setdefault("hostile", []).append(
                            drive(hook, requests=count, concurrency=args.concurrency, body=healthy)
                        )
                        runs.setdefault("healthz-hostile", []).append(
                            drive(hook, requests=300, concurrency=args.concurrency)
                        )
                    loads.append(load)
                for phase, phase_runs in runs.items():
                    results[f"bound {bound}: {phase}"] = median_of(phase_runs)
                answers = [load.summary() for load in loads]
                hostile_figures[f"bound {bound}"] = {
                    key: sum(a[key] for a in answers) for key in answers[0] if key != "max_s"
                } | {"max_s": max(a["max_s"] for a in answers)}
            finally:
                hook.stop()
    finally:
        drip.stop()
        registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()

    print(
        f"hostile-registry benchmark: {args.workers} gunicorn workers x {args.threads} threads, "
        f"TLS, healthy load {args.concurrency} connections x {args.requests} requests (Deployment "
        "of 3 signed images, caches off: every request verifies all 3), hostile load "
        f"{args.hostile_clients} connections each sending a Pod of {args.hostile_images} images "
        f"on a drip-feeding registry (deadline 8 s), {os.cpu_count()} CPUs; "
        f"median of {args.repeat} runs (bounds above 16: {args.unbounded_requests} requests, "
        "one run)"
    )
    print(
        "load average before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f}".format(
            *load_before, *load_after
        )
    )
    print(f"{'phase':<28} {'requests':>8} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>7} {'errors':>7}")
    for phase, row in results.items():
        print(
            f"{phase:<28} {row['requests']:>8} {row['p50_ms']:>9.2f} {row['p99_ms']:>9.2f} "
            f"{row['rps']:>7.1f} {row['errors']:>7}"
        )
        for error in row["first_errors"][:2]:
            print(f"  error: {error[:160]}")
    print("hostile answers (all runs):")
    for name, figures in hostile_figures.items():
        print(
            f"  {name}: {figures['answers']} answers, {figures['admitted']} admitted, "
            f"{figures['timed_out']} timed out, {figures['refused_stalling']} refused at once "
            f"(registry stalling), slowest {figures['max_s']:.2f} s"
        )
    print("(errors: healthy requests not admitted, e.g. timed out behind hostile work)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
