"""The AppSec overview's aggregates over many records (SQLite): time and peak memory.

    .venv/bin/python bench/overview.py [--records N] [--db PATH]

Writes N synthetic decisions (a quarter denied, one image each, 20 namespaces, 10 s
apart) into a fresh SQLite database, then computes every aggregate of ``/overview``
for the last 30 days once and prints the time and the peak RSS of the query phase.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # not bench/admission.py

from admission.decisions.store import open_database, prepare
from admission.web import pages


def document(i: int, now: dt.datetime) -> dict[str, Any]:
    result = ("allowed", "allowed", "warned", "denied")[i % 4]
    image = f"reg.example/app{i % 50}:v1"
    return {
        "uid": f"u{i}",
        "time": (now - dt.timedelta(seconds=i * 10)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "operation": "CREATE",
        "kind": "Pod",
        "namespace": f"ns{i % 20}",
        "name": f"p{i}",
        "user": "u",
        "result": result,
        "checked": True,
        "messages": [f"{image}: no trusted signature ({i % 7})"] if result == "denied" else [],
        "images": [
            {
                "reference": image,
                "digest": "sha256:" + f"{i % 500:064x}",
                "policy": "apps",
                "outcome": "verified",
                "verification": {"attestations": []},
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--db", default=os.path.join(tempfile.mkdtemp(), "overview.db"))
    options = parser.parse_args()
    database = open_database(options.db, create=True)
    now = dt.datetime.now(dt.UTC)
    began = time.monotonic()
    for start in range(0, options.records, 5000):
        stop = min(start + 5000, options.records)
        database.append("bench", [prepare(document(i, now)) for i in range(start, stop)])
    print(f"wrote {options.records} records in {time.monotonic() - began:.1f}s")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.monotonic()
    data = pages.overview_data(database, {"since": "30d"}, now, None)
    took = time.monotonic() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"overview: {took:.2f}s, peak RSS {peak // 1024} MiB (+{(peak - before) // 1024} MiB "
        f"while querying); {data['compliance']['overall']['admitted']} admitted, "
        f"{len(data['denyReasons'])} deny reasons"
    )
    database.close()


if __name__ == "__main__":
    main()
