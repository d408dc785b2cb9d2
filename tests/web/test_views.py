"""The ops application in-process: escaping, filters and their errors, missing records and
databases, the disabled view, read-only methods, and /metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from admission.decisions.store import record_now
from admission.testing.samples import decision, image
from admission.web.app import create_ops_app

TOKEN = "in-process-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOSTILE = '127.0.0.1:5000/shop/"><script>alert(1)</script>:1'


@pytest.fixture
def ops(tmp_path: Path):
    db = str(tmp_path / "decisions.db")
    denied = decision(
        result="denied", namespace="payments", images=[image(HOSTILE, verified=False)]
    )
    record_now(
        db, [decision(), denied, decision(result="warned", warnings=["<b>bold</b>"])], replica="t"
    )
    token = tmp_path / "token"
    token.write_text(TOKEN)
    app = create_ops_app(db, str(token))
    app.testing = True
    yield app.test_client(), denied
    app.extensions["attest_decisions_db"].close()


def test_everything_rendered_is_escaped(ops) -> None:
    client, denied = ops
    listing = client.get("/decisions", headers=AUTH)
    assert listing.status_code == 200
    html = listing.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    detail = client.get(f"/decisions/{denied['uid']}", headers=AUTH).get_data(as_text=True)
    assert "<script>" not in detail and "&#34;&gt;&lt;script&gt;" in detail
    assert "signature does not verify with key of authority ci-key" in detail  # every reason
    assert "builder id https://evil.example/builder is not allowed" in detail
    echoed = client.get("/decisions?image=<script>x</script>", headers=AUTH).get_data(as_text=True)
    assert "<script>x" not in echoed and 'value="&lt;script&gt;x&lt;/script&gt;"' in echoed


def test_filters_select_and_bad_filters_are_explained(ops) -> None:
    client, _denied = ops
    only = client.get("/decisions?namespace=payments&result=denied", headers=AUTH)
    assert only.get_data(as_text=True).count('class="decision"') == 1
    both = client.get("/decisions?namespace=payments,shop&limit=2", headers=AUTH)
    assert both.get_data(as_text=True).count('class="decision"') == 2
    for query, message in (
        ("limit=0", "limit"),
        ("digest=xyz", "digest"),
        ("result=maybe", "result"),
        ("until=yesterday-ish", "time"),
    ):
        response = client.get(f"/decisions?{query}", headers=AUTH)
        assert response.status_code == 400, query
        assert message in response.get_data(as_text=True), query


def test_missing_records_and_databases_and_methods(ops, tmp_path: Path) -> None:
    client, _denied = ops
    assert client.get("/decisions/999", headers=AUTH).status_code == 404
    assert client.get("/decisions/no-such-uid", headers=AUTH).status_code == 404
    assert client.post("/decisions", headers=AUTH).status_code == 405
    assert client.get("/nowhere", headers=AUTH).status_code == 404
    token = tmp_path / "t2"
    token.write_text(TOKEN)
    empty = create_ops_app(str(tmp_path / "missing" / "d.db"), str(token)).test_client()
    unavailable = empty.get("/decisions", headers=AUTH)
    assert unavailable.status_code == 503 and "missing" in unavailable.get_data(as_text=True)


def test_without_a_token_file_the_view_is_off_but_metrics_work(tmp_path: Path) -> None:
    client = create_ops_app(str(tmp_path / "d.db"), None).test_client()
    response = client.get("/decisions", headers={**AUTH, "Accept": "text/html"})
    assert response.status_code == 404 and "--web-token-file" in response.get_data(as_text=True)
    assert client.post("/login", data={"token": TOKEN}).status_code == 404
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "attest_decision_records_dropped_total" in metrics.get_data(as_text=True)
    assert metrics.headers["Content-Type"].startswith("text/plain")


def test_each_reason_is_shown_with_its_code(tmp_path: Path) -> None:
    db = str(tmp_path / "decisions.db")
    reason = "127.0.0.1:5000/shop/app:1.0: no verified SLSA provenance attestation"
    coded = {
        **decision(result="denied", messages=[reason], warnings=["no SBOM", "uncoded"]),
        "codes": {reason: "provenance-missing", "no SBOM": "sbom-missing"},
    }
    record_now(db, [coded], replica="t")
    token = tmp_path / "token"
    token.write_text(TOKEN)
    app = create_ops_app(db, str(token))
    try:
        html = app.test_client().get(f"/decisions/{coded['uid']}", headers=AUTH).get_data(True)
    finally:
        app.extensions["attest_decisions_db"].close()
    assert f'<code class="code">provenance-missing</code> {reason}</li>' in html
    assert '<code class="code">sbom-missing</code> no SBOM</li>' in html
    assert "<li>uncoded</li>" in html
