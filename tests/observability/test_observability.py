"""charts/attest/observability: the alert and recording rules under the real promtool, and the
Grafana dashboard's queries against what a real running webhook exports on /metrics."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from admission.testing.helpers import (
    deployment,
    make_tls,
    new_key,
    review,
    sign_image,
    write_config,
)
from admission.testing.webhook import start_webhook
from attest.oci.registry import RegistryRepository
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.testing import free_port
from attest.testing.images import simple_image
from tests.conftest import ROOT
from tests.support.peers import peer_binary

OBSERVABILITY = ROOT / "charts" / "attest" / "observability"
RULES = OBSERVABILITY / "prometheus-rules.yaml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
UNIT_TESTS = Path(__file__).parent / "prometheus-rules.test.yaml"
METRIC = re.compile(r"\b(attest(?::[a-z0-9_]+)+|attest_[a-z0-9_]+)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [peer_binary("promtool"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return queries


# --- the rules ------------------------------------------------------------------------


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    done = promtool("test", "rules", str(UNIT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_unit_tests_fail_when_an_alert_is_broken(tmp_path: Path) -> None:
    """The unit tests can fail: with the chain-not-signed alert's `unless` removed, its quiet
    case fires and promtool says so."""
    broken = RULES.read_text().replace(
        "unless (sum by (job) (increase(attest_decision_checkpoints_total[15m])) > 0)", ""
    )
    assert broken != RULES.read_text()
    (tmp_path / "rules.yaml").write_text(broken)
    tests = UNIT_TESTS.read_text().replace(
        "../../charts/attest/observability/prometheus-rules.yaml", "rules.yaml"
    )
    (tmp_path / "rules.test.yaml").write_text(tests)
    done = promtool("test", "rules", str(tmp_path / "rules.test.yaml"))
    assert done.returncode != 0
    assert "signed while written, and idle without records" in done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts == {
        "AttestAdmissionWebhookDown",
        "AttestAdmissionWebhookErrors",
        "AttestAdmissionDenyRateSpike",
        "AttestAdmissionLatencyOverBudget",
        "AttestRegistryErrors",
        "AttestDecisionRecordsDropped",
        "AttestDecisionChainNotSigned",
    }
    fired, quiet = set(), set()
    for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    assert fired == alerts and quiet == alerts
    for rule in rules():
        if "alert" in rule:
            path, _, anchor = (
                rule["annotations"]["runbook_url"].split("/blob/main/")[1].partition("#")
            )
            assert (ROOT / path).is_file(), path
            headings = {
                re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                for line in (ROOT / path).read_text().splitlines()
                if line.startswith("#")
            }
            assert not anchor or anchor in headings, f"{path}#{anchor}"


def test_the_dashboard_queries_parse(tmp_path: Path) -> None:
    """Each dashboard query, with its variables filled in, is valid PromQL to promtool."""
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    expressions = [
        q.replace("$__rate_interval", "2m").replace("$job", "attest-admission-ops")
        for q in dashboard_queries()
        if not q.startswith("label_values(")
    ]
    group = {"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(expressions)
    ]}  # fmt: skip
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump({"groups": [group]}))
    done = promtool("check", "rules", str(tmp_path / "queries.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr


# --- against a real server's /metrics ------------------------------------------------------------


@pytest.fixture(scope="module")
def scraped(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/metrics of a real server (gunicorn, TLS, two workers) after it judged a signed and an
    unsigned image of a real registry, dropped records while its database directory was
    missing, then wrote and signed them once it appeared."""
    workdir = tmp_path_factory.mktemp("metrics")
    key = new_key()
    key_file = key.write(workdir / "release.pub")
    client = RegistryClient(registry.address, options=RegistryOptions(timeout=60))
    images = {}
    try:
        for name in ("signed", "unsigned"):
            store = RegistryRepository(client, f"observability/{name}")
            simple_image(workdir, marker=name).build(workdir / name).push(store, "v1")
            images[name] = f"{registry.address}/observability/{name}:v1"
            if name == "signed":
                sign_image(store, images[name], key.signer)
    finally:
        client.close()
    config = write_config(
        workdir / "admission.yaml",
        [{"name": "apps", "images": [f"{registry.address}/observability/*"],
          "authorities": [{"name": "k", "key": {"path": str(key_file)}}],
          "parameters": {"allowedBuilders": ["https://ci.example.com/*"],
                         "allowedSources": ["github.com/acme/*"]}}],
    )  # fmt: skip
    signing = workdir / "signing.key"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    signing.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    database = workdir / "later" / "decisions.db"  # its directory does not exist yet
    web_port = free_port()
    hook = start_webhook(
        config, make_tls(workdir / "tls"), workdir, workers=2,
        extra=["--web-port", str(web_port), "--db", str(database),
               "--signing-key", str(signing), "--checkpoint-interval", "0.2"],
    )  # fmt: skip
    try:
        metrics_url = f"https://127.0.0.1:{web_port}/metrics"

        def scrape() -> str:
            return requests.get(metrics_url, verify=str(hook.ca), timeout=10).text

        def until(pattern: str) -> str:
            deadline = time.monotonic() + 60
            while True:  # each worker's writer retries its database every 2 s
                for n, image in enumerate(images.values()):
                    status, _ = hook.validate(review(deployment(image), uid=f"uid-{n}"))
                    assert status == 200
                text = scrape()
                if re.search(pattern, text, re.M):
                    return text
                assert time.monotonic() < deadline, text
                time.sleep(0.3)

        until(r'^attest_decision_records_dropped_total\{reason="database"\} [1-9]')
        database.parent.mkdir()
        yield until(r"^attest_decision_checkpoints_total [1-9]")
    finally:
        hook.stop()


def exported_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("attest_"):
            name = line.split("{")[0].split(" ")[0]
            names.add(name)
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix):
                    names.add(name.removesuffix(suffix))
    return names


def referenced(queries: list[str]) -> set[str]:
    return {m for q in queries for m in METRIC.findall(q)}


def test_the_server_exports_every_metric_the_rules_and_dashboard_use(scraped: str) -> None:
    exported = exported_names(scraped)
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    rule_queries = [rule["expr"] for rule in rules()]
    for name in referenced(rule_queries) | referenced(dashboard_queries()):
        assert name in exported or name in recorded, f"{name} is not exported by the server"
    # and the dashboard shows every metric the server exports
    families = {n for n in exported if not n.endswith(HISTOGRAM_SUFFIXES)}
    shown = {n.removesuffix("_bucket") for n in referenced(dashboard_queries())}
    assert families <= shown, families - shown


def test_the_scrape_saw_each_kind_of_event(scraped: str) -> None:
    """Decisions by result, stage latencies, cache, registry, dropped, written and signed:
    the series the alerts watch really move."""
    from admission.metrics import label_values

    results = {
        s["result"] for s, v in label_values("attest_admission_requests_total", scraped) if v
    }
    assert {"allowed", "denied"} <= results
    stages = {
        s["stage"] for s, _ in label_values("attest_admission_latency_seconds_count", scraped)
    }
    assert stages == {"resolve", "verify", "evaluate", "total"}
    dropped = dict(
        (s["reason"], v) for s, v in label_values("attest_decision_records_dropped_total", scraped)
    )
    assert dropped.get("database", 0) >= 1
    for family in ("attest_decision_records_written_total", "attest_decision_checkpoints_total"):
        assert sum(v for _, v in label_values(family, scraped)) >= 1, family
    statuses = {s["status"] for s, _ in label_values("attest_registry_requests_total", scraped)}
    assert "200" in statuses
