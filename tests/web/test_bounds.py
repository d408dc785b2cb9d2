"""Bounded growth (issue 10, finding 6), against the served webhook (gunicorn, TLS, both
ports, multiprocess metrics) and the real registry.

The attacks: 20,000 invented ``kind`` values made ``/metrics`` 6 MB and filled the
metrics directory (the label was copied from the request); a 2.5 MB label set was
stored whole in the decision record, and so were signature annotations pushed by
anyone who can write to the registry.  And whether dryRun requests are recorded:
they are, marked ``dryRun: true`` (a dry run is an attempt AppSec wants to see).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from admission.bounds import MAX_ENTRIES, TRUNCATED_KEY
from admission.decisions.model import canonical_bytes
from admission.metrics import label_values
from admission.testing.helpers import deployment, recorded_documents, review
from admission.testing.serve import wait_for
from attest.oci.access import resolve_image
from attest.oci.reference import parse_image_reference
from attest.signing.storage import attach_signature

KINDS = 20_000


def _directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.slow
def test_invented_kinds_keep_metrics_small(serve, world, tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"  # the server's temporary directories, metrics among them
    scratch.mkdir()
    server = serve(world.config(tmp_path / "c.yaml"), db=None, env={"TMPDIR": str(scratch)})
    local = threading.local()

    def send(index: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        kind = {"group": "x.example", "version": "v1", "kind": f"Invented{index}"}
        body = review({"metadata": {"name": "x"}}, uid=f"k{index}", kind=kind)
        response = session.post(
            f"{server.url}/validate", json=body, verify=str(server.ca), timeout=30
        )
        assert response.status_code == 200 and response.json()["response"]["allowed"] is True

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, range(KINDS)))
    server.post("/validate", review(deployment(world.images["unsigned"]), uid="deny"))

    def counted() -> str | None:
        text = server.ops("/metrics").text
        total = sum(v for _, v in label_values("attest_admission_requests_total", text))
        return text if total >= KINDS + 1 else None

    text = wait_for(counted, timeout=60, what="every request counted")
    kinds = {
        labels["kind"]: value
        for labels, value in label_values("attest_admission_requests_total", text)
    }
    assert kinds == {"other": KINDS, "Deployment": 1}
    assert len(text.encode()) < 64 * 1024, len(text)
    (metrics_dir,) = scratch.glob("attest-metrics-*")
    assert _directory_bytes(metrics_dir) < 16 * 1024 * 1024
    assert "Invented" not in text


def test_huge_labels_and_annotations_give_a_small_record(serve, world, tmp_path: Path) -> None:
    db = str(tmp_path / "decisions.db")
    name = "annotated"
    reference = world.push(name)
    store = world.store(name)
    image = resolve_image(store, parse_image_reference(reference))
    attach_signature(store, image, world.key.signer, annotations={"note": "n" * 600_000})
    server = serve(world.config(tmp_path / "c.yaml"), db=db)

    long_values = deployment(world.images["good"], name="long-values")
    long_values["metadata"]["labels"] = {f"big-{i}": "v" * 500_000 for i in range(5)}  # 2.5 MB
    many_labels = deployment(world.images["good"], name="many-labels")
    many_labels["metadata"]["labels"] = {f"l{i:05}": "x" * 110 for i in range(20_000)}
    annotated = deployment(reference, name="annotated")
    for uid, obj in (("long", long_values), ("many", many_labels), ("annotated", annotated)):
        assert len(str(obj)) > 500_000 or uid == "annotated"
        server.post("/validate", review(obj, uid=uid))

    records = {d["uid"]: d for d in recorded_documents(db, 3)}
    for uid, record in records.items():
        size = len(canonical_bytes(record))
        assert size < 64 * 1024, (uid, size)
    long_labels = records["long"]["input"]["request"]["labels"]
    assert set(long_labels) == {f"big-{i}" for i in range(5)}
    assert all(v.startswith("v" * 128 + "…[500000 chars, sha256:") for v in long_labels.values())
    many = records["many"]["input"]["request"]["labels"]
    assert len(many) == MAX_ENTRIES + 1
    assert many[TRUNCATED_KEY].startswith(f"{20_000 - MAX_ENTRIES} more of 20000 entries, sha256:")
    (signed,) = records["annotated"]["input"]["images"][0]["signatures"]
    assert signed["annotations"]["note"].startswith("n" * 128 + "…[600000 chars, sha256:")
    recorded = records["annotated"]["images"][0]["verification"]["signatures"][0]
    assert recorded["annotations"] == signed["annotations"]
    assert records["annotated"]["result"] == "denied"  # no provenance: judged as usual


def test_dry_run_requests_are_recorded_and_marked(serve, world, tmp_path: Path, cli) -> None:
    db = str(tmp_path / "decisions.db")
    server = serve(world.config(tmp_path / "c.yaml"), db=db)
    body = review(deployment(world.images["unsigned"]), uid="dry")
    body["request"]["dryRun"] = True
    assert server.post("/validate", body)["allowed"] is False  # judged like any request
    server.post("/validate", review(deployment(world.images["unsigned"]), uid="real"))
    records = {d["uid"]: d for d in recorded_documents(db, 2)}
    assert records["dry"]["dryRun"] is True and records["real"]["dryRun"] is False
    assert records["dry"]["input"]["request"]["dryRun"] is True
    shown = cli("decisions", "show", "--db", db, "1")
    assert shown.exit_code == 0 and "(dry run: nothing was created)" in shown.stdout


def test_bounds_keep_small_maps_as_they_are() -> None:
    from admission.bounds import bounded_map

    labels = {"app": "web", "tier": "front"}
    assert bounded_map(labels) == labels
