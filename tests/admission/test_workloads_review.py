"""AdmissionReview parsing and the images of every workload kind, including the shared vectors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from admission.errors import BadAdmissionReview, ReviewError
from admission.review import load_review_input, parse_review, review_response
from admission.testing.helpers import POD_KIND, deployment, pod_spec, review
from admission.workloads import workload_images
from tests.conftest import VECTORS, vector_files

REVIEWS = VECTORS / "admission-reviews"
REVIEW_FILES = vector_files("admission-reviews", "*.json")


def _all_images(node: Any) -> list[str]:
    """Every value of an ``image`` key anywhere in the object (the ground truth)."""
    if isinstance(node, dict):
        found = []
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_all_images(value))
        return found
    if isinstance(node, list):
        return [image for item in node for image in _all_images(item)]
    return []


@pytest.mark.parametrize("path", REVIEW_FILES, ids=lambda p: p.name)
def test_vector_images_are_exactly_those_in_the_object(path) -> None:
    try:
        request = parse_review(path.read_bytes())
    except ReviewError as err:
        assert path.name in ("21_broken_admission_request.json", "25_null_request.json"), err
        assert err.uid is None and str(err)
        return
    document = json.loads(path.read_text())
    expected = _all_images(document["request"].get("object"))
    try:
        found = [c.image for c in workload_images(request.kind.kind, request.object or {})]
    except BadAdmissionReview as err:
        assert path.name == "12_err_pod.json" and "Pod object has no spec" in str(err)
        assert expected == []
        return
    assert sorted(found) == sorted(expected)
    assert request.uid == document["request"]["uid"]


def test_every_workload_kind() -> None:
    spec = pod_spec("a:1", "b:2", init=("init:1",))
    template = {"template": {"spec": spec}}
    objects = {
        "Pod": {"spec": spec},
        "Deployment": {"spec": template},
        "ReplicaSet": {"spec": template},
        "StatefulSet": {"spec": template},
        "DaemonSet": {"spec": template},
        "Job": {"spec": template},
        "ReplicationController": {"spec": template},
        "CronJob": {"spec": {"jobTemplate": {"spec": template}}},
    }
    for kind, obj in objects.items():
        found = workload_images(kind, obj)
        assert [(c.image, c.type) for c in found] == [
            ("a:1", "container"),
            ("b:2", "container"),
            ("init:1", "initContainer"),
        ], kind
    cron = workload_images("CronJob", objects["CronJob"])
    assert cron[2].path == "spec.jobTemplate.spec.template.spec.initContainers[0].image"
    assert workload_images("ConfigMap", {"data": {}}) == []


def test_ephemeral_containers() -> None:
    pod = {
        "spec": {**pod_spec("app:1"), "ephemeralContainers": [{"name": "dbg", "image": "busybox"}]}
    }
    found = workload_images("Pod", pod)
    assert [(c.image, c.type, c.container) for c in found][-1] == (
        "busybox",
        "ephemeralContainer",
        "dbg",
    )


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({}, "Deployment object has no spec object"),
        ({"spec": {"template": {"spec": {"containers": "x"}}}}, "containers must be a list"),
        (
            {"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}},
            r"containers\[0\] has no image",
        ),
        ({"spec": {"template": {"spec": {"containers": []}}}}, "containers is missing or empty"),
        ({"spec": {"template": {"spec": {"containers": ["x"]}}}}, "must be an object"),
    ],
)
def test_bad_workload_shapes(obj, message) -> None:
    with pytest.raises(BadAdmissionReview, match=message):
        workload_images("Deployment", obj)


def test_parse_v1_and_v1beta1() -> None:
    for api in ("admission.k8s.io/v1", "admission.k8s.io/v1beta1"):
        request = parse_review(json.dumps(review(deployment("a:1"), api_version=api)))
        assert (request.api_version, request.uid, request.kind.kind) == (api, "uid-1", "Deployment")
        assert (request.namespace, request.name, request.username) == ("apps", "web", "alice")
        assert request.labels == {"app": "web"}


def _deep_review(depth: int) -> dict:
    """A Deployment review with a field nested ``depth`` objects below its spec."""
    value: object = "bottom"
    for _ in range(depth):
        value = {"x": value}
    obj = deployment("a")
    obj["spec"]["extra"] = value
    return review(obj)


@pytest.mark.parametrize(
    ("body", "message", "uid"),
    [
        (b"{not json", "not JSON", None),
        (b"[1, 2]", "must be a JSON object", None),
        (b"null", "must be a JSON object", None),
        (json.dumps({"kind": "Pod", "apiVersion": "v1"}), "expected 'AdmissionReview'", None),
        (
            json.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v2"}),
            "not supported",
            None,
        ),
        (
            json.dumps({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}),
            "request is missing",
            None,
        ),
        (json.dumps(review(deployment("a"), uid="")), "uid is missing", None),
        (json.dumps(review(None)), "object is missing for a CREATE", "uid-1"),
        (
            json.dumps(review(deployment("a"), operation="PATCH")),
            "operation 'PATCH' is unknown",
            "uid-1",
        ),
        (b"\xff\xfe", "not JSON", None),
        (b"[" * 100_000 + b"]" * 100_000, "nests deeper than 100 levels", None),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nests deeper than 100 levels", None),
        (
            json.dumps(_deep_review(150)),
            "nests deeper than 100 levels",
            "uid-1",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_reviews(body, message, uid) -> None:
    with pytest.raises(ReviewError, match=message) as caught:
        parse_review(body)
    assert caught.value.uid == uid


def test_deep_but_reasonable_objects_still_parse() -> None:
    """Depth is bounded, not forbidden: a real object nests a few dozen levels."""
    request = parse_review(json.dumps(_deep_review(60)))
    assert request.uid == "uid-1"


def test_delete_needs_no_object_and_response_shape() -> None:
    request = parse_review(json.dumps(review(None, operation="DELETE", kind=POD_KIND)))
    assert request.operation == "DELETE" and request.object is None
    denied = review_response("u", False, message="no", code=403, warnings=["w" * 300])
    assert denied["response"]["status"] == {"code": 403, "message": "no", "reason": "Forbidden"}
    assert len(denied["response"]["warnings"][0]) == 256
    allowed = review_response("u", True, api_version="admission.k8s.io/v1beta1")
    assert allowed == {
        "apiVersion": "admission.k8s.io/v1beta1",
        "kind": "AdmissionReview",
        "response": {"uid": "u", "allowed": True},
    }


def test_manifests_multi_document_and_lists() -> None:
    text = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: prod}
spec: {template: {spec: {containers: [{name: a, image: "a:1"}]}}}
---
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: b, image: "b:1"}]}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}
"""
    requests = load_review_input(text, "m.yaml")
    assert [(r.kind.kind, r.namespace, r.name, r.operation) for r in requests] == [
        ("Deployment", "prod", "web", "CREATE"),
        ("Pod", "default", "p", "CREATE"),
        ("ConfigMap", "default", "c", "CREATE"),
    ]
    assert requests[0].kind.group == "apps" and requests[1].kind.group == ""
    with pytest.raises(BadAdmissionReview, match="no kind or apiVersion"):
        load_review_input("metadata: {}\n", "m.yaml")
    with pytest.raises(BadAdmissionReview, match="not valid YAML"):
        load_review_input("a: [", "m.yaml")
    with pytest.raises(BadAdmissionReview, match="no documents"):
        load_review_input("", "m.yaml")
