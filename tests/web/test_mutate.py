"""POST /mutate: verified tags pinned to digests as a JSONPatch for every workload kind,
never a denial, never recorded, and nothing at all unless the config asks for it."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from admission.app import create_app
from admission.decisions.recorder import DecisionRecorder
from admission.mutate import json_pointer
from admission.testing.helpers import key_policy, review, write_config
from admission.workloads import POD_SPEC_PATHS

KINDS = {
    "Pod": ("", "v1"),
    "Deployment": ("apps", "v1"),
    "ReplicaSet": ("apps", "v1"),
    "StatefulSet": ("apps", "v1"),
    "DaemonSet": ("apps", "v1"),
    "Job": ("batch", "v1"),
    "CronJob": ("batch", "v1"),
    "ReplicationController": ("", "v1"),
}


def workload(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A ``kind`` object whose pod spec (at the kind's own path) is ``spec``."""
    group, version = KINDS[kind]
    obj: dict[str, Any] = {
        "apiVersion": f"{group}/{version}" if group else version,
        "kind": kind,
        "metadata": {"name": "w", "namespace": "apps"},
    }
    node = obj
    path = POD_SPEC_PATHS[kind]
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = spec
    return obj


def apply_patch(obj: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply JSONPatch ``replace`` operations (all /mutate emits) to a copy of ``obj``."""
    patched = copy.deepcopy(obj)
    for operation in operations:
        assert operation["op"] == "replace"
        *parents, leaf = [
            p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]
        ]
        node: Any = patched
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert leaf in node, operation["path"]  # replace needs an existing member
        node[leaf] = operation["value"]
    return patched


def decode(answer: dict[str, Any]) -> list[dict[str, Any]]:
    response = answer["response"]
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    return json.loads(base64.b64decode(response["patch"]))


@pytest.fixture
def pinning(world, tmp_path: Path):
    """The webhook app (real verification against the local registry) with pinning on."""
    db = str(tmp_path / "decisions.db")
    recorder = DecisionRecorder(db, replica="mutate-test").start()
    policies = [
        key_policy("apps", ["127.0.0.1:*/admission-e2e/good*"], world.key_file),
        key_policy("audit", ["127.0.0.1:*/admission-e2e/unsigned"], world.key_file, mode="warn"),
    ]
    config = write_config(tmp_path / "pin.yaml", policies, pinDigests=True)
    app = create_app(str(config), recorder=recorder)
    app.testing = True
    yield app.test_client(), recorder, world
    app.extensions["attest_admission"].close()
    recorder.close()


def digest_of(world, reference: str) -> str:
    name = reference.rsplit("/", 1)[1].split(":")[0]
    return world.store(name).resolve("v1").digest


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_gets_its_verified_tags_pinned(pinning, kind: str) -> None:
    client, _recorder, world = pinning
    good, good2 = world.images["good"], world.images["good2"]
    already = f"{good2.rsplit(':', 1)[0]}@{digest_of(world, good2)}"
    spec: dict[str, Any] = {
        "initContainers": [{"name": "init", "image": good2}],
        "containers": [{"name": "a", "image": good}, {"name": "b", "image": already}],
    }
    if kind == "Pod":
        spec["ephemeralContainers"] = [{"name": "debug", "image": good}]
    obj = workload(kind, spec)
    group, version = KINDS[kind]
    body = review(obj, uid=f"pin-{kind}", kind={"group": group, "version": version, "kind": kind})
    answer = client.post("/mutate", json=body).get_json()
    assert answer["response"]["uid"] == f"pin-{kind}" and answer["response"]["allowed"] is True
    operations = decode(answer)
    base = "/" + "/".join(POD_SPEC_PATHS[kind])
    expected_paths = {f"{base}/initContainers/0/image", f"{base}/containers/0/image"}
    if kind == "Pod":
        expected_paths.add(f"{base}/ephemeralContainers/0/image")
    assert {op["path"] for op in operations} == expected_paths  # the pinned one is left alone
    patched = apply_patch(obj, operations)
    pinned = {op["path"]: op["value"] for op in operations}
    assert pinned[f"{base}/containers/0/image"] == f"{good}@{digest_of(world, good)}"
    assert pinned[f"{base}/initContainers/0/image"] == f"{good2}@{digest_of(world, good2)}"
    # the validating webhook admits the pinned object: tag and verified digest
    checked = client.post(
        "/validate",
        json=review(
            patched, uid=f"val-{kind}", kind={"group": group, "version": version, "kind": kind}
        ),
    ).get_json()
    assert checked["response"]["allowed"] is True, checked


def test_denied_and_unverified_images_are_never_pinned_and_mutate_never_denies(pinning) -> None:
    client, recorder, world = pinning
    good, unsigned = world.images["good"], world.images["unsigned"]
    # unsigned under a warn-mode policy: admitted with a warning, but not verified → not pinned
    warned = workload(
        "Deployment",
        {"containers": [{"name": "a", "image": good}, {"name": "u", "image": unsigned}]},
    )
    answer = client.post("/mutate", json=review(warned, uid="warned")).get_json()
    operations = decode(answer)
    assert [op["value"] for op in operations] == [f"{good}@{digest_of(world, good)}"]
    assert answer["response"]["allowed"] is True and "warnings" not in answer["response"]
    # an image no policy matches: the decision is a denial, /mutate still admits, unpatched
    stranger = workload("Pod", {"containers": [{"name": "a", "image": "registry.example.org/x:1"}]})
    answer = client.post(
        "/mutate",
        json=review(stranger, uid="denied", kind={"group": "", "version": "v1", "kind": "Pod"}),
    ).get_json()
    assert answer["response"]["allowed"] is True and "patch" not in answer["response"]
    denied = client.post(
        "/validate",
        json=review(stranger, uid="denied", kind={"group": "", "version": "v1", "kind": "Pod"}),
    ).get_json()
    assert denied["response"]["allowed"] is False  # the validating webhook is the judge
    # only /validate decisions are recorded
    assert recorder.flush(30)
    assert recorder.status().written == 1


def test_mutate_changes_nothing_unless_the_config_enables_pinning(world, tmp_path: Path) -> None:
    config = world.config(tmp_path / "nopin.yaml")
    app = create_app(str(config))
    app.testing = True
    client = app.test_client()
    try:
        obj = workload("Deployment", {"containers": [{"name": "a", "image": world.images["good"]}]})
        answer = client.post("/mutate", json=review(obj, uid="off")).get_json()
        assert answer["response"] == {"uid": "off", "allowed": True}
        assert client.get("/readyz").get_json()["pinDigests"] is False
        v1beta1 = review(obj, uid="old", api_version="admission.k8s.io/v1beta1")
        assert client.post("/mutate", json=v1beta1).get_json()["apiVersion"] == (
            "admission.k8s.io/v1beta1"
        )
        broken = client.post("/mutate", data=b"{", content_type="application/json")
        assert broken.status_code == 400
    finally:
        app.extensions["attest_admission"].close()


def test_served_mutate_answers_over_https(serve, world, tmp_path: Path) -> None:
    config = world.config(tmp_path / "served.yaml", pinDigests=True)
    server = serve(config, db=str(tmp_path / "d.db"))
    obj = workload("Deployment", {"containers": [{"name": "a", "image": world.images["good"]}]})
    answer = server.post("/mutate", review(obj, uid="served"))
    operations = json.loads(base64.b64decode(answer["patch"]))
    assert operations == [
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/0/image",
            "value": f"{world.images['good']}@{digest_of(world, world.images['good'])}",
        }
    ]
    assert server.get("/readyz").json()["pinDigests"] is True


def test_json_pointers_escape_and_index() -> None:
    assert json_pointer("spec.template.spec.containers[12].image") == (
        "/spec/template/spec/containers/12/image"
    )
    assert json_pointer("a~b.c/d[0].e") == "/a~0b/c~1d/0/e"
