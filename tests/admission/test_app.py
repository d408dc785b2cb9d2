"""The Flask routes: every vector gets a well-formed answer, bad input a clear 4xx, never a bare 500."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admission.app import create_app
from admission.testing.helpers import (
    deployment,
    fake_verification,
    key_policy,
    new_key,
    review,
    write_config,
)
from tests.admission.test_workloads_review import REVIEW_FILES

GOOD = f"registry.example.com/apps/good@sha256:{'1' * 64}"


@pytest.fixture
def client(tmp_path: Path):
    key_file = new_key().write(tmp_path / "k.pub")
    config = write_config(
        tmp_path / "c.yaml", [key_policy("apps", ["registry.example.com/apps/*"], key_file)]
    )

    def verifier(target, policy, **_kwargs):
        if "crash" in target.name:
            raise ZeroDivisionError("boom")
        return fake_verification(str(target), target.digest)

    app = create_app(str(config), verifier=verifier, max_body_bytes=64 * 1024)
    app.testing = True
    yield app.test_client()
    app.extensions["attest_admission"].close()


@pytest.mark.parametrize("path", REVIEW_FILES, ids=lambda p: p.name)
def test_every_vector_gets_a_well_formed_answer(client, path) -> None:
    response = client.post("/validate", data=path.read_bytes(), content_type="application/json")
    body = response.get_json()
    assert body["kind"] == "AdmissionReview" and "response" in body
    if path.name in ("21_broken_admission_request.json", "25_null_request.json"):
        assert response.status_code == 400
        assert body["response"]["allowed"] is False
        assert body["error"] in (
            "bad AdmissionReview: AdmissionReview request.uid is missing",
            "bad AdmissionReview: AdmissionReview body must be a JSON object, not null",
        )
        return
    sent = json.loads(path.read_text())
    assert response.status_code == 200
    assert body["apiVersion"] == sent["apiVersion"]
    assert body["response"]["uid"] == sent["request"]["uid"]
    answer = body["response"]
    if answer["allowed"]:
        assert path.name in ("11_role.json", "28_deleted_deployment_updated.json")
    else:
        assert answer["status"]["code"] in (400, 403) and answer["status"]["message"]


def test_admits_and_denies_over_http(client) -> None:
    ok = client.post("/validate", json=review(deployment(GOOD))).get_json()
    assert ok["response"] == {"uid": "uid-1", "allowed": True}
    denied = client.post("/validate", json=review(deployment("nginx"), uid="u2")).get_json()[
        "response"
    ]
    assert denied["allowed"] is False and denied["uid"] == "u2"
    assert (
        denied["status"]["message"]
        == "nginx: matches no image policy (unmatched images are denied)"
    )
    assert denied["status"]["code"] == 403


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"not json", 400, "bad AdmissionReview: AdmissionReview body is not JSON"),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "v1"}',
            400,
            "apiVersion 'v1' is not supported",
        ),
        (json.dumps(review(deployment("a"), uid="")).encode(), 400, "request.uid is missing"),
        (b"x" * (65 * 1024), 413, "larger than 65536 bytes"),
        (b"[" * 30_000 + b"]" * 30_000, 400, "nests deeper than 100 levels"),
    ],
)
def test_bad_bodies(client, data, status, message) -> None:
    response = client.post("/validate", data=data, content_type="application/json")
    assert response.status_code == status
    assert message in response.get_json()["error"]


def test_uid_known_but_object_missing_is_a_400_denial(client) -> None:
    response = client.post("/validate", json=review(None, uid="u9"))
    answer = response.get_json()["response"]
    assert response.status_code == 200
    assert answer["uid"] == "u9" and answer["allowed"] is False and answer["status"]["code"] == 400
    assert "object is missing" in answer["status"]["message"]


def test_verifier_crash_denies_with_reason(client) -> None:
    crash = f"registry.example.com/apps/crash@sha256:{'9' * 64}"
    answer = client.post("/validate", json=review(deployment(crash))).get_json()["response"]
    assert answer["allowed"] is False
    assert (
        "internal error verifying the image: ZeroDivisionError: boom" in answer["status"]["message"]
    )


def test_health_ready_and_unknown_routes(client) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready" and ready["imagePolicies"] == ["apps"]
    assert ready["bundleHash"].startswith("sha256:") and ready["configError"] is None
    missing = client.get("/nope")
    assert missing.status_code == 404 and "404 Not Found" in missing.get_json()["error"]
    wrong = client.get("/validate")
    assert wrong.status_code == 405 and "Method Not Allowed" in wrong.get_json()["error"]
