"""The served webhook end to end: recording per worker, /readyz, metrics over all workers,
the two ports kept apart, the view's tokens, and bad serve arguments."""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from admission.metrics import label_values
from admission.testing.helpers import deployment, review
from admission.testing.samples import write_key_pair
from admission.testing.serve import TOKEN, serve_command, wait_for
from attest.testing import free_port


def metric_total(text: str, family: str, **labels: str) -> float:
    return sum(
        value
        for found, value in label_values(family, text)
        if all(found.get(k) == v for k, v in labels.items())
    )


def test_every_worker_records_and_metrics_add_up_over_workers(
    serve, world, tmp_path: Path, cli
) -> None:
    private, public = write_key_pair(tmp_path)
    db = str(tmp_path / "decisions.db")
    server = serve(
        world.config(tmp_path / "config.yaml"),
        db=db,
        workers=2,
        extra=("--signing-key", str(private)),
    )
    good, unsigned = world.images["good"], world.images["unsigned"]
    sent = {"allowed": 0, "denied": 0}
    lock = threading.Lock()

    def send(index: int) -> None:
        image = good if index % 3 else unsigned
        answer = server.post("/validate", review(deployment(image), uid=f"uid-{index}"))
        with lock:
            sent["allowed" if answer["allowed"] else "denied"] += 1

    def worker_pids() -> set[int]:
        lines = server.log_lines()
        return {line["pid"] for line in lines if line.get("event") == "admission_decision"}

    total = 0
    with ThreadPoolExecutor(4) as pool:  # new connections from 4 threads: both workers accept
        while total < 400 and (total < 24 or len(worker_pids()) < 2):
            list(pool.map(send, range(total, total + 12)))
            total += 12
    assert len(worker_pids()) == 2, "both workers answered requests"
    assert sent["allowed"] + sent["denied"] == total and sent["denied"] == total // 3

    def all_written() -> str | None:
        text = server.ops("/metrics").text
        written = metric_total(text, "attest_decision_records_written_total")
        return text if written >= total else None

    text = wait_for(all_written, what=f"{total} records written")
    # /metrics is answered by one worker but counts every worker's requests
    assert metric_total(text, "attest_admission_requests_total") == total
    assert (
        metric_total(text, "attest_admission_requests_total", kind="Deployment", result="denied")
        == (sent["denied"])
    )
    assert metric_total(text, "attest_admission_latency_seconds_count", stage="total") == total
    hits = metric_total(text, "attest_admission_verification_cache_total", result="hit")
    misses = metric_total(text, "attest_admission_verification_cache_total", result="miss")
    # unverified results are never cached; the good image is verified once per worker (more
    # only when concurrent first requests race), then served from the cache
    assert hits + misses == total and hits > 0
    assert sent["denied"] < misses <= sent["denied"] + 8
    assert metric_total(text, "attest_registry_requests_total", status="200") > 0
    assert metric_total(text, "attest_decision_records_dropped_total") == 0
    ready = wait_for(  # each writer process publishes its state every 0.2 s
        lambda: (r := server.get("/readyz").json())["decisionRecords"]["state"] == "ok" and r,
        what="/readyz to report recording ok",
    )
    assert ready["status"] == "ready"
    assert ready["decisionRecords"]["database"] == db

    assert server.stop() == 0  # workers close their recorders: flushed, heads signed
    listed = cli("decisions", "list", "--db", db, "--limit", "1000", "--output", "json")
    records = listed.json()
    assert len(records) == total
    assert {r["decision"]["uid"] for r in records} == {f"uid-{i}" for i in range(total)}
    assert len({r["replica"] for r in records}) == 2  # one hash chain per worker
    verified = cli("decisions", "verify", "--db", db, "--key", str(public), "--output", "json")
    assert verified.exit_code == 0, verified.stdout
    report = verified.json()
    assert report["ok"] is True
    assert all(replica["signedSeq"] == replica["headSeq"] for replica in report["replicas"])


def test_an_unusable_database_degrades_readyz_but_admission_keeps_answering(
    serve, world, tmp_path: Path
) -> None:
    db = str(tmp_path / "not-mounted" / "decisions.db")
    server = serve(world.config(tmp_path / "config.yaml"), db=db)
    answer = server.post("/validate", review(deployment(world.images["good"]), uid="still"))
    assert answer["allowed"] is True
    wait_for(  # the writer process reports its state once it has tried the database
        lambda: server.get("/readyz").json()["decisionRecords"]["state"] != "starting",
        what="the recorder's first attempt",
    )
    ready = server.get("/readyz")
    assert ready.status_code == 200  # never pulled out of the Service for a recording fault
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["decisionRecords"]["state"] == "degraded"
    assert "not-mounted" in body["decisionRecords"]["lastError"]
    text = wait_for(
        lambda: (
            (t := server.ops("/metrics").text)
            and metric_total(t, "attest_decision_records_dropped_total", reason="database") >= 1
            and t
        ),
        what="the dropped record counted",
    )
    assert metric_total(text, "attest_decision_records_written_total") == 0

    def alerts() -> list[dict]:
        return [
            line
            for line in server.log_lines()
            if line.get("event") in ("decision_records_dropped", "decision_records_unavailable")
        ]

    # the counter and the log line come from different processes: wait for the line too
    logged = wait_for(
        lambda: (
            (found := alerts())
            and any(line.get("reason") == "database" and "dropped" in line for line in found)
            and found
        ),
        what="the dropped record's alert in the log",
    )
    assert all(line["message"].startswith("ALERT") for line in logged)
    # the directory appears (the volume is mounted late): recording recovers on its own
    (tmp_path / "not-mounted").mkdir()

    def recovered() -> bool:
        server.post("/validate", review(deployment(world.images["good"]), uid="later"))
        return server.get("/readyz").json()["decisionRecords"]["written"] >= 1

    wait_for(recovered, timeout=30, what="recording to recover")
    assert server.get("/readyz").json()["status"] == "ready"


def test_the_ports_never_serve_each_others_routes(serve, world, tmp_path: Path) -> None:
    server = serve(world.config(tmp_path / "config.yaml"), db=str(tmp_path / "d.db"))
    server.post("/validate", review(deployment(world.images["good"]), uid="one"))
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/decisions", "/decisions/1", "/metrics", "/login", "/"):
        for host in (None, f"127.0.0.1:{server.web_port}"):  # a Host header cannot re-route
            headers = {**bearer, **({"Host": host} if host else {})}
            response = server.get(path, headers=headers)
            assert response.status_code == 404, (path, host)
            assert "decision" not in response.text.lower() or path.startswith("/decisions")
            assert "attest_admission" not in response.text
    body = review(deployment(world.images["good"]), uid="wrong-port")
    for path in ("/validate", "/mutate"):
        response = requests.post(
            f"{server.ops_url}{path}", json=body, verify=str(server.ca), timeout=10
        )
        assert response.status_code in (404, 405), path
        assert "AdmissionReview" not in response.text
    assert server.ops("/readyz").status_code == 404


def test_the_view_needs_the_token_and_follows_its_rotation(serve, world, tmp_path: Path) -> None:
    server = serve(world.config(tmp_path / "config.yaml"), db=str(tmp_path / "d.db"))
    server.post("/validate", review(deployment(world.images["unsigned"]), uid="seen"))
    wait_for(lambda: server.ops("/decisions", token=TOKEN).text.count('class="decision"'))
    for token in (None, "", "wrong-token-0123456789", TOKEN[:-1], TOKEN + "x", TOKEN.upper()):
        response = server.ops("/decisions", token=token)
        assert response.status_code == 401, token
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "seen" not in response.text
        assert server.ops("/decisions/1", token=token).status_code == 401
    assert server.ops("/decisions", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    cookie_only = server.ops("/decisions", cookies={"attest_session": "0" * 64})
    assert cookie_only.status_code == 401
    assert server.ops("/metrics").status_code == 200  # Prometheus needs no token
    shown = server.ops("/decisions/1", token=TOKEN)
    assert shown.status_code == 200 and "seen" in shown.text
    for name, value in (
        ("Content-Security-Policy", "default-src 'none'"),
        ("X-Frame-Options", "DENY"),
        ("Cache-Control", "no-store"),
    ):
        assert value in shown.headers[name]

    session = requests.Session()
    ca = str(server.ca)  # per request: a Session's verify loses to $REQUESTS_CA_BUNDLE
    wrong = session.post(
        f"{server.ops_url}/login", data={"token": "nope"}, allow_redirects=False, verify=ca
    )
    assert wrong.status_code == 401 and "attest_session" not in wrong.cookies
    right = session.post(
        f"{server.ops_url}/login", data={"token": TOKEN}, allow_redirects=False, verify=ca
    )
    assert right.status_code == 303
    set_cookie = right.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict"):
        assert attribute in set_cookie
    assert TOKEN not in set_cookie  # the cookie is derived from the token, not the token
    assert session.get(f"{server.ops_url}/decisions", verify=ca).status_code == 200

    token_file = Path(server.args[server.args.index("--web-token-file") + 1])
    rotated = "rotated-token-abcdefghijklmnop"
    token_file.write_text(rotated)
    assert server.ops("/decisions", token=TOKEN).status_code == 401
    assert session.get(f"{server.ops_url}/decisions", verify=ca).status_code == 401  # sessions end
    assert server.ops("/decisions", token=rotated).status_code == 200
    token_file.write_text("")  # an unusable token file locks everyone out
    assert server.ops("/decisions", token=rotated).status_code == 401


def test_bad_serve_arguments_are_one_line_errors(world, tls, tmp_path: Path) -> None:
    config = world.config(tmp_path / "config.yaml")
    short = tmp_path / "short-token"
    short.write_text("abc")
    port = free_port()
    cases = [
        (["--web-token-file", str(short)], "at least 16 characters"),
        (["--web-token-file", str(tmp_path / "missing")], "No such file"),
        (["--web-port", str(port)], "must differ from the webhook port"),
        (["--signing-key", str(tmp_path / "nokey")], "nokey"),
        (["--no-record", "--signing-key", str(short)], "--no-record"),
        (["--db", "postgresql://bad url:x"], "not a valid URL"),
    ]
    for args, expected in cases:
        command = serve_command(
            config, tls, port=port, web_port=0, db=None, token_file=None, extra=tuple(args)
        )
        run = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert run.returncode == 2 or (run.returncode == 1 and "nokey" in expected), args
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("attest: error: "), run.stderr
        assert expected in lines[0], (args, lines[0])
        assert "Traceback" not in run.stderr
