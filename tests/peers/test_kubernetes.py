"""The webhook behind a real kube-apiserver: the Helm chart's manifests applied, workloads
created with kubectl and with the Python client, users shown our reasons, warnings, dry
runs, exemptions, failurePolicy, and the /mutate patch stored by the API server.

Images live in the real docker-registry, signed (with provenance and SBOM) by a test
key; the webhook is ``attest admission serve`` under gunicorn/TLS on loopback, and
the chart's webhook configurations call it by URL with its CA bundle (the chart's own
Service routing, certificates and client certificate: tests/peers/test_chart_cluster.py).
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from admission.testing.helpers import TlsFiles, make_tls, new_key, sign_image, write_config
from admission.testing.webhook import Webhook, start_webhook
from attest.oci.registry import RegistryRepository
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.testing import free_port
from attest.testing.images import simple_image
from tests.conftest import ROOT
from tests.support.chart import NAMESPACE as EXEMPT
from tests.support.chart import RELEASE, render
from tests.support.faultproxy import FaultProxy
from tests.support.kubernetes import Cluster

REPO = "k8s-peers"
NAMESPACE = "apps"
# EXEMPT: the release namespace, excluded by the chart's namespaceSelector
VALIDATING = RELEASE
WEBHOOK_NAME = "validate.attest.dev"
MUTATING = f"{RELEASE}-pin"
CHART_VALUES = {
    "keys": {"files": {"cosign.pub": (ROOT / "keys-dev" / "cosign.pub").read_text()}},
    "mutatingWebhook": {"enabled": True},
}
DENIED = f'admission webhook "{WEBHOOK_NAME}" denied the request: '
KINDS = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd and kube-apiserver on loopback, started once (it takes seconds)."""
    started = Cluster(tmp_path_factory.mktemp("kubernetes")).start()
    yield started
    started.stop()


@dataclass
class Setup:
    cluster: Cluster
    webhook: Webhook
    tls: TlsFiles
    images: dict[str, str]
    digests: dict[str, str]
    applied: dict[str, subprocess.CompletedProcess[str]]
    webhook_documents: dict[str, dict[str, Any]]
    config: Path
    workdir: Path


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _point_at(document: dict[str, Any], url: str, ca: bytes) -> dict[str, Any]:
    """A webhook configuration of the chart calling ``url`` (path kept) with CA bundle ``ca``."""
    pointed = copy.deepcopy(document)
    for hook in pointed["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": f"{url}{path}", "caBundle": base64.b64encode(ca).decode()}
    return pointed


def _sign_images(registry: Any, workdir: Path) -> tuple[dict[str, str], dict[str, str], Path]:
    key = new_key()
    key_file = key.write(workdir / "release.pub")
    client = RegistryClient(registry.address, options=RegistryOptions(timeout=60))
    images, digests = {}, {}
    try:
        for name, signed, options in (
            ("good", True, {}),
            ("nosbom", True, {"sbom": False}),
            ("unsigned", False, {}),
            ("audit-unsigned", False, {}),
        ):
            store = RegistryRepository(client, f"{REPO}/{name}")
            descriptor = simple_image(workdir, marker=name).build(workdir / name).push(store, "v1")
            reference = f"{registry.address}/{REPO}/{name}:v1"
            if signed:
                sign_image(store, reference, key.signer, **options)
            images[name], digests[name] = reference, descriptor.digest
    finally:
        client.close()
    return images, digests, key_file


@pytest.fixture(scope="module")
def setup(
    cluster: Cluster, registry: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("k8s-webhook")
    images, digests, key_file = _sign_images(registry, workdir)
    tls = make_tls(workdir / "tls")
    authority = [{"name": "release", "key": {"path": str(key_file)}}]
    parameters = {
        "allowedBuilders": ["https://ci.example.com/*"],
        "allowedSources": ["github.com/acme/*"],
    }
    config = write_config(
        workdir / "admission.yaml",
        [
            {"name": "audit", "images": [f"127.0.0.1:*/{REPO}/audit-*"], "mode": "warn",
             "authorities": authority, "parameters": parameters},
            {"name": "apps", "images": [f"127.0.0.1:*/{REPO}/*"], "authorities": authority,
             "parameters": parameters},
        ],
        deadlineSeconds=5,
        pinDigests=True,
        cache={"tagTtlSeconds": 0},
    )  # fmt: skip
    webhook = start_webhook(config, tls, workdir, workers=1, threads=8, extra=["--no-record"])
    applied = {}
    try:
        applied, pointed = _apply_deploy(cluster, webhook.url, tls.ca.read_bytes(), workdir)
        cluster.namespace(NAMESPACE)
        _wait_until_judged(cluster, images["unsigned"])
        yield Setup(cluster, webhook, tls, images, digests, applied, pointed, config, workdir)
    finally:
        for kind, name in (
            ("validatingwebhookconfiguration", VALIDATING),
            ("mutatingwebhookconfiguration", MUTATING),
        ):
            cluster.kubectl("delete", kind, name, "--ignore-not-found")
        webhook.stop()


def _apply_deploy(
    cluster: Cluster, url: str, ca: bytes, workdir: Path
) -> tuple[dict[str, subprocess.CompletedProcess[str]], dict[str, dict[str, Any]]]:
    """Every document ``helm template`` renders for the chart (digest pinning on), into the
    release namespace (PodSecurity restricted), each first as a server-side dry run, then
    for real; the webhook configurations pointed at ``url`` and applied last."""
    cluster.namespace(EXEMPT, {"pod-security.kubernetes.io/enforce": "restricted"})
    documents = render(CHART_VALUES)
    documents.sort(key=lambda doc: "WebhookConfiguration" in doc["kind"])
    applied: dict[str, subprocess.CompletedProcess[str]] = {}
    pointed: dict[str, dict[str, Any]] = {}
    for document in documents:
        name = f"{document['kind']}/{document['metadata']['name']}"
        if "WebhookConfiguration" in document["kind"]:
            document = _point_at(document, url, ca)
            pointed[document["metadata"]["name"]] = document
        applied[f"dry-run {name}"] = cluster.apply(document, extra=["--dry-run=server"])
        applied[f"apply {name}"] = cluster.apply(document)
    return applied, pointed


def _wait_until_judged(cluster: Cluster, unsigned: str, timeout: float = 30) -> None:
    """The API server picks up webhook configurations asynchronously: wait until it calls us."""
    deadline = time.monotonic() + timeout
    while True:
        probe = cluster.apply(pod("probe", unsigned), extra=["--dry-run=server"])
        if probe.returncode != 0 and WEBHOOK_NAME in probe.stderr:
            return
        assert time.monotonic() < deadline, f"webhook never called: {probe.stdout}{probe.stderr}"
        time.sleep(0.3)


def pod_spec(image: str, restart: str = "Always") -> dict[str, Any]:
    """A pod spec that passes PodSecurity ``restricted`` (the README's level for the release
    namespace)."""
    container = {
        "name": "app",
        "image": image,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "restartPolicy": restart,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }  # fmt: skip


def pod(name: str, image: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    return workload("Pod", name, image, namespace)


def workload(kind: str, name: str, image: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    """A minimal, valid object of ``kind`` running ``image``."""
    metadata = {"name": name, "namespace": namespace, "labels": {"app": name}}
    template = {"metadata": {"labels": {"app": name}}, "spec": pod_spec(image)}
    selector = {"matchLabels": {"app": name}}
    job = {"template": {"spec": pod_spec(image, "Never")}, "backoffLimit": 0}
    spec: dict[str, Any] = {
        "Pod": pod_spec(image),
        "Deployment": {"selector": selector, "template": template},
        "StatefulSet": {"selector": selector, "template": template, "serviceName": name},
        "DaemonSet": {"selector": selector, "template": template},
        "Job": job,
        "CronJob": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": job}},
    }[kind]
    api = {"Pod": "v1", "Job": "batch/v1", "CronJob": "batch/v1"}.get(kind, "apps/v1")
    return {"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec}


def untrusted(image: str, policy: str = "apps") -> str:
    """What the webhook says about an unsigned image (the default policy's first reason)."""
    return (
        f"{image}: no trusted signature: 0 of 1 required authorities of policy {policy} "
        "verified it (no signature found)"
    )


def decisions(webhook: Webhook, name: str, path: str = "validate") -> list[dict[str, Any]]:
    """The webhook's decision log lines about objects named ``name`` (``/validate``'s, or
    ``path="mutate"``: /mutate runs the same decision first)."""
    found = []
    for line in webhook.log.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            try:
                record = json.loads(line)
            except ValueError:  # the line being written right now
                continue
            if (record.get("event"), record.get("name")) == ("admission_decision", name) and (
                record.get("webhook") == path
            ):
                found.append(record)
    return found


# --- the chart ---------------------------------------------------------------------


def test_every_chart_document_applies_dry_run_then_for_real(setup: Setup) -> None:
    names = {f"{d['kind']}/{d['metadata']['name']}" for d in render(CHART_VALUES)}
    for name in names:
        for mode in ("dry-run", "apply"):
            done = setup.applied[f"{mode} {name}"]
            assert done.returncode == 0, f"{mode} {name}: {done.stderr}"
            assert ("(server dry run)" in done.stdout) == (mode == "dry-run"), done.stdout
            assert "would violate PodSecurity" not in done.stderr, done.stderr
    stored = setup.cluster.kubectl("get", "deployment,service,pdb,networkpolicy,configmap,secret",
                                   "-n", EXEMPT, "-o", "name")  # fmt: skip
    for expected in (
        f"deployment.apps/{RELEASE}",
        f"service/{RELEASE}",
        f"service/{RELEASE}-ops",
        f"poddisruptionbudget.policy/{RELEASE}",
        f"networkpolicy.networking.k8s.io/{RELEASE}",
        f"configmap/{RELEASE}-config",
        f"secret/{RELEASE}-tls",
        f"secret/{RELEASE}-ops-token",
        f"secret/{RELEASE}-signing-key",
    ):
        assert expected in stored.stdout.split(), stored.stdout + stored.stderr
    hooks = setup.cluster.kubectl("get", "validatingwebhookconfiguration", VALIDATING, "-o", "json")
    stored_hook = json.loads(hooks.stdout)["webhooks"][0]
    assert stored_hook["clientConfig"]["url"] == f"{setup.webhook.url}/validate"
    assert stored_hook["failurePolicy"] == "Fail" and stored_hook["timeoutSeconds"] == 10


# --- workloads: signed admitted, unsigned refused with our reason ----------------------


@pytest.mark.parametrize("kind", KINDS)
def test_kubectl_signed_admitted_unsigned_refused_with_our_reason(setup: Setup, kind: str) -> None:
    name = f"kubectl-{kind.lower()}"
    admitted = setup.cluster.apply(workload(kind, name, setup.images["good"]))
    assert admitted.returncode == 0, admitted.stderr
    assert f"{name} created" in admitted.stdout
    unsigned = setup.images["unsigned"]
    refused = setup.cluster.apply(workload(kind, f"{name}-unsigned", unsigned))
    assert refused.returncode == 1
    assert "Error from server (Forbidden)" in refused.stderr
    assert DENIED + untrusted(unsigned) in refused.stderr
    assert "no verified SLSA provenance attestation" in refused.stderr
    missing = setup.cluster.kubectl("get", kind.lower(), f"{name}-unsigned", "-n", NAMESPACE)
    assert missing.returncode == 1 and "NotFound" in missing.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_python_client_signed_admitted_unsigned_refused(setup: Setup, kind: str) -> None:
    from kubernetes import utils
    from kubernetes.client.exceptions import ApiException

    api = setup.cluster.api_client()
    name = f"python-{kind.lower()}"
    try:
        created = utils.create_from_dict(api, workload(kind, name, setup.images["good"]))
        assert created[0].metadata.name == name
        unsigned = setup.images["unsigned"]
        with pytest.raises(utils.FailToCreateError) as failed:
            utils.create_from_dict(api, workload(kind, f"{name}-unsigned", unsigned))
        error = failed.value.api_exceptions[0]
        assert isinstance(error, ApiException) and error.status == 403
        status = json.loads(error.body)
        assert status["reason"] == "Forbidden"
        assert status["message"].startswith(DENIED + untrusted(unsigned))
    finally:
        api.close()


def test_ephemeral_container_is_judged(setup: Setup) -> None:
    """kubectl debug adds an ephemeral container through pods/ephemeralcontainers."""
    assert setup.cluster.apply(pod("debug-target", setup.images["good"])).returncode == 0
    unsigned = setup.images["unsigned"]
    refused = setup.cluster.kubectl(
        "debug", "pod/debug-target", "-n", NAMESPACE, f"--image={unsigned}", "-c", "dbg",
        "--attach=false",
    )  # fmt: skip
    assert refused.returncode != 0
    assert DENIED + untrusted(unsigned) in refused.stderr
    admitted = setup.cluster.kubectl(
        "debug", "pod/debug-target", "-n", NAMESPACE, f"--image={setup.images['good']}",
        "-c", "dbg2", "--attach=false",
    )  # fmt: skip
    assert admitted.returncode == 0, admitted.stderr
    stored = json.loads(
        setup.cluster.kubectl("get", "pod", "debug-target", "-n", NAMESPACE, "-o", "json").stdout
    )
    assert [c["name"] for c in stored["spec"]["ephemeralContainers"]] == ["dbg2"]
    calls = [d for d in decisions(setup.webhook, "debug-target") if d["operation"] == "UPDATE"]
    assert {d["result"] for d in calls} == {"denied", "allowed"}

    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = setup.cluster.api_client()
    try:
        body = {"spec": {"ephemeralContainers": [
            *stored["spec"]["ephemeralContainers"],
            {"name": "dbg3", "image": unsigned},
        ]}}  # fmt: skip
        with pytest.raises(ApiException) as refused_py:
            client.CoreV1Api(api).patch_namespaced_pod_ephemeralcontainers(
                "debug-target", NAMESPACE, body
            )
        assert refused_py.value.status == 403 and untrusted(unsigned) in refused_py.value.body
    finally:
        api.close()


# --- warnings and dry runs -------------------------------------------------------------


def test_warn_mode_and_policy_warnings_show_as_kubectl_warnings(setup: Setup) -> None:
    audit = setup.images["audit-unsigned"]
    warned = setup.cluster.apply(pod("audit-warned", audit))
    assert warned.returncode == 0, warned.stderr
    assert f"Warning: warn mode (audit): {untrusted(audit, 'audit')}" in warned.stderr
    nosbom = setup.images["nosbom"]
    warned = setup.cluster.apply(pod("nosbom-warned", nosbom))
    assert warned.returncode == 0, warned.stderr
    pinned = f"{nosbom}@{setup.digests['nosbom']}"  # /mutate pinned it before /validate judged it
    assert f"Warning: {pinned}: no verified SBOM attestation (CycloneDX or SPDX)" in warned.stderr


def test_server_dry_run_is_judged_like_a_real_request_and_stores_nothing(setup: Setup) -> None:
    unsigned = setup.images["unsigned"]
    refused = setup.cluster.apply(pod("dry-unsigned", unsigned), extra=["--dry-run=server"])
    assert refused.returncode == 1
    assert DENIED + untrusted(unsigned) in refused.stderr
    admitted = setup.cluster.apply(
        pod("dry-good", setup.images["good"]), extra=["--dry-run=server"]
    )
    assert admitted.returncode == 0 and "pod/dry-good created (server dry run)" in admitted.stdout
    assert setup.cluster.kubectl("get", "pod", "dry-good", "-n", NAMESPACE).returncode == 1
    judged = decisions(setup.webhook, "dry-unsigned") + decisions(setup.webhook, "dry-good")
    assert {(d["name"], d["result"], d["dryRun"]) for d in judged} == {
        ("dry-unsigned", "denied", True),
        ("dry-good", "allowed", True),
    }


# --- exemptions and failurePolicy --------------------------------------------------------


def test_exempt_namespace_admits_unsigned_without_calling_the_webhook(setup: Setup) -> None:
    admitted = setup.cluster.apply(pod("exempt-unsigned", setup.images["unsigned"], EXEMPT))
    assert admitted.returncode == 0, admitted.stderr
    assert decisions(setup.webhook, "exempt-unsigned") == []
    assert decisions(setup.webhook, "exempt-unsigned", "mutate") == []
    # the same pod elsewhere is refused, so the webhook is on
    refused = setup.cluster.apply(pod("exempt-unsigned", setup.images["unsigned"]))
    assert refused.returncode == 1 and len(decisions(setup.webhook, "exempt-unsigned")) == 1


def _with_webhook(setup: Setup, url: str, timeout_seconds: int) -> None:
    document = copy.deepcopy(setup.webhook_documents[VALIDATING])
    for hook in document["webhooks"]:
        hook["clientConfig"]["url"] = f"{url}/validate"
        hook["timeoutSeconds"] = timeout_seconds
    done = setup.cluster.apply(document)
    assert done.returncode == 0, done.stderr


def _refused_eventually(
    setup: Setup, name: str, image: str, expected: Callable[[str], bool], timeout: float = 30
) -> tuple[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        began = time.monotonic()
        done = setup.cluster.apply(pod(name, image), extra=["--dry-run=server"])
        took = time.monotonic() - began
        if done.returncode != 0 and expected(done.stderr):
            return done.stderr, took
        assert time.monotonic() < deadline, f"never refused as expected: {done.stdout}{done.stderr}"
        time.sleep(0.3)


@pytest.fixture
def restore_webhook(setup: Setup) -> Iterator[None]:
    yield
    assert setup.cluster.apply(*setup.webhook_documents.values()).returncode == 0
    _wait_until_judged(setup.cluster, setup.images["unsigned"])


def test_failure_policy_fail_refuses_while_the_webhook_is_down(
    setup: Setup, restore_webhook: None
) -> None:
    _with_webhook(setup, f"https://127.0.0.1:{free_port()}", 10)
    stderr, _took = _refused_eventually(
        setup, "while-down", setup.images["good"], lambda err: "connection refused" in err
    )
    assert f'failed calling webhook "{WEBHOOK_NAME}"' in stderr


def test_failure_policy_fail_refuses_when_the_webhook_is_slower_than_timeout_seconds(
    setup: Setup, registry: Any, restore_webhook: None
) -> None:
    """The webhook itself is slow (its registry hangs past the API server's 2 s)."""
    proxy = FaultProxy(registry.port).start()
    try:  # without /mutate, which would first spend the webhook's own 5 s deadline
        assert (
            setup.cluster.kubectl("delete", "mutatingwebhookconfiguration", MUTATING).returncode
            == 0
        )
        _with_webhook(setup, setup.webhook.url, 2)
        image = setup.images["good"].replace(registry.address, proxy.address)
        proxy.hang_seconds = 10
        stderr, took = _refused_eventually(
            setup, "while-slow", image, lambda err: "deadline" in err or "timeout" in err
        )
        assert f'failed calling webhook "{WEBHOOK_NAME}"' in stderr
        assert took < 2 + 5  # the API server's timeoutSeconds, not the webhook's deadline
    finally:
        proxy.hang_seconds = 0
        proxy.stop()


# --- /mutate ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Pod", "Deployment", "CronJob"])
def test_mutate_pins_the_verified_digest_in_the_stored_object(setup: Setup, kind: str) -> None:
    name = f"pinned-{kind.lower()}"
    good = setup.images["good"]
    created = setup.cluster.apply(workload(kind, name, good))
    assert created.returncode == 0, created.stderr
    stored = json.loads(
        setup.cluster.kubectl("get", kind.lower(), name, "-n", NAMESPACE, "-o", "json").stdout
    )
    spec = stored["spec"]
    if kind == "Deployment":
        spec = spec["template"]["spec"]
    elif kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["containers"][0]["image"] == f"{good}@{setup.digests['good']}"


# --- the API server's client certificate (for a webhook that requires mTLS) --------------


def test_api_server_client_certificate_authenticates_to_the_webhook(setup: Setup) -> None:
    """The webhook started with ``--client-ca`` (the CA of the client certificate the
    fixture's AdmissionConfiguration gives the API server) is called by the API server,
    judges, and records the API server's certificate subject as the caller; a client
    without that certificate is refused in the TLS handshake."""
    import requests

    probe_port = free_port()
    hook = start_webhook(
        setup.config,
        setup.tls,
        setup.workdir,
        workers=1,
        threads=4,
        extra=[
            "--no-record",
            "--client-ca", str(setup.cluster.webhook_client_ca.cert),
            "--probe-port", str(probe_port),
        ],
        ready_url=f"https://127.0.0.1:{probe_port}/healthz",
    )  # fmt: skip
    name = "attest-mtls"
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "mtls.attest.dev",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": f"{hook.url}/validate",
                             "caBundle": base64.b64encode(setup.tls.ca.read_bytes()).decode()},
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mtls-probe"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["pods"]}],
        }],
    }  # fmt: skip
    unsigned = setup.images["unsigned"]
    try:
        with pytest.raises(requests.exceptions.SSLError):  # no client certificate: no TLS
            requests.post(f"{hook.url}/validate", json={}, verify=str(setup.tls.ca), timeout=10)
        setup.cluster.namespace("mtls-probe")
        assert setup.cluster.apply(configuration).returncode == 0
        deadline = time.monotonic() + 30
        while True:  # the API server picks the configuration up asynchronously
            done = setup.cluster.apply(
                pod("mtls", unsigned, "mtls-probe"), extra=["--dry-run=server"]
            )
            if 'admission webhook "mtls.attest.dev" denied the request' in done.stderr:
                break
            assert time.monotonic() < deadline, f"never judged by the mTLS webhook: {done.stderr}"
            time.sleep(0.3)
        assert untrusted(unsigned) in done.stderr
        (record,) = decisions(hook, "mtls")[-1:]
        assert record["caller"] == "CN=kube-apiserver-webhook-client"
    finally:
        setup.cluster.kubectl(
            "delete", "validatingwebhookconfiguration", name, "--ignore-not-found"
        )
        hook.stop()
