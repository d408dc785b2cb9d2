"""charts/attest installed into a real kube-apiserver with the real helm, its webhook pod run on
this host, and an image made by `attest pipeline` admitted through it.

Nothing of the chart's output is rewritten: the webhook configurations call the chart's
Service with the chart's caBundle; the API server (``--enable-aggregator-routing``) reaches
the Service at an EndpointSlice address, which is this host's own non-loopback address
(Kubernetes refuses loopback endpoints), where the pod's container runs as a local
process (tests/support/chart.py: its volumes laid out from the Secrets and ConfigMaps the
API server stores, its args as the Deployment gives them). The API server presents the
client certificate the chart made (Secret <release>-apiserver-client), as the chart's
NOTES tell an operator to configure it.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from attest.testing.images import simple_image
from tests.conftest import ROOT
from tests.support.chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    PodOnHost,
    by_name,
    helm,
    render,
    secret_data,
    stored_objects,
    values_file,
)
from tests.support.kubernetes import Cluster

APPS = "shop"
HOOK = "validate.attest.dev"
DENIED = f'admission webhook "{HOOK}" denied the request: '
DEV_KEY = ROOT / "keys-dev" / "cosign.key"  # public on purpose: a throw-away cluster trusts it
DEV_PUB = ROOT / "keys-dev" / "cosign.pub"
GITHUB = {  # what GitHub Actions sets, so `attest pipeline` records a hosted GitHub builder
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "example-org/shop",
    "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_WORKFLOW_REF": "example-org/shop/.github/workflows/release.yml@refs/heads/main",
    "GITHUB_RUN_ID": "42",
    "ATTEST_PASSWORD": "attest-dev",
}


def host_address() -> str:
    """This host's first non-loopback IPv4 address (an EndpointSlice may not be loopback)."""
    names = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout
    for address in names.split():
        if "." in address and not address.startswith("127."):
            return address
    pytest.fail(f"no non-loopback IPv4 address on this host (hostname -I: {names!r})")


def pipeline(image: str, workdir: Path) -> dict[str, Any]:
    """`attest pipeline --key` as CI runs it (no transparency log: an offline test)."""
    summary = workdir / "summary.json"
    done = subprocess.run(
        [sys.executable, "-m", "attest", "pipeline", image, "--key", str(DEV_KEY),
         "--tlog-upload=false", "--output-file", str(summary)],
        capture_output=True, text=True, timeout=300, env={**os.environ, **GITHUB},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(summary.read_text())


def pod_manifest(kind: str, name: str, image: str) -> dict[str, Any]:
    container = {
        "name": "app",
        "image": image,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    spec = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }  # fmt: skip
    metadata = {"name": name, "namespace": APPS, "labels": {"app": name}}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
    }  # fmt: skip


@dataclass
class Installed:
    cluster: Cluster
    pod: PodOnHost
    process: subprocess.Popen[bytes]
    log: Path
    images: dict[str, str]
    values: Path
    dry_run: dict[str, subprocess.CompletedProcess[str]]
    install: subprocess.CompletedProcess[str]
    workdir: Path

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return helm(*args, f"--kubeconfig={self.cluster.kubeconfig}", "--namespace", NAMESPACE)

    def objects(self) -> dict[str, dict[str, Any]]:
        return stored_objects(self.cluster.kubectl, NAMESPACE)


def _wait_until_judged(cluster: Cluster, unsigned: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        done = cluster.apply(pod_manifest("Pod", "probe", unsigned), extra=["--dry-run=server"])
        if DENIED in done.stderr:
            return done.stderr
        assert time.monotonic() < deadline, f"the chart's webhook never judged: {done.stderr}"
        time.sleep(0.5)


def _start_pod(
    installed_objects: dict[str, dict[str, Any]], root: Path, host: str
) -> tuple[PodOnHost, subprocess.Popen[bytes], Path]:
    pod = PodOnHost(installed_objects, root, host=host, pod_name=f"{RELEASE}-7d9f-x1")
    log = root.parent / f"pod-{pod.port}.log"
    return pod, pod.start(log), log


@pytest.fixture(scope="module")
def images(registry: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``pipeline``: an image `attest pipeline` signed and attested; ``unsigned``: one it did
    not touch (both under example-org/ of the real registry)."""
    from attest.oci.registry import RegistryRepository
    from attest.oci.transport import RegistryClient, RegistryOptions

    workdir = tmp_path_factory.mktemp("pipeline")
    made = {}
    for name in ("pipeline", "unsigned"):
        client = RegistryClient(registry.address, options=RegistryOptions(timeout=60))
        with RegistryRepository(client, f"example-org/{name}") as store:
            simple_image(workdir, marker=name).build(workdir / name).push(store, "v1")
        made[name] = f"{registry.address}/example-org/{name}:v1"
    pipeline(made["pipeline"], workdir)
    return made


@pytest.fixture(scope="module")
def installed(
    images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    workdir = tmp_path_factory.mktemp("chart-cluster")

    cluster = Cluster(workdir / "kubernetes", extra_args=("--enable-aggregator-routing=true",))
    (workdir / "kubernetes").mkdir()
    cluster.start()
    process = None
    try:
        restricted = {"pod-security.kubernetes.io/enforce": "restricted"}
        cluster.namespace(NAMESPACE, restricted)
        cluster.namespace(APPS, restricted)
        values = values_file({"keys": {"files": {"cosign.pub": DEV_PUB.read_text()}}}, workdir)
        dry_run = {}
        for doc in render(files=[values]):
            dry_run[f"{doc['kind']}/{doc['metadata']['name']}"] = cluster.apply(
                doc, extra=["--dry-run=server"]
            )
        install = helm("install", RELEASE, str(CHART), f"--values={values}", "--namespace",
                       NAMESPACE, f"--kubeconfig={cluster.kubeconfig}")  # fmt: skip
        assert install.returncode == 0, install.stderr
        objects = stored_objects(cluster.kubectl, NAMESPACE)
        pod, process, log = _start_pod(objects, workdir / "pod", host_address())
        # the operator's step from NOTES: the API server presents the chart's client certificate
        client = secret_data(objects[f"Secret/{RELEASE}-apiserver-client"])
        cluster.webhook_client_cert.cert.write_bytes(client["tls.crt"])
        cluster.webhook_client_cert.key.write_bytes(client["tls.key"])
        endpoints = {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{RELEASE}-on-host", "namespace": NAMESPACE,
                         "labels": {"kubernetes.io/service-name": RELEASE}},
            "addressType": "IPv4",
            "ports": [{"name": "webhook", "port": pod.port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [pod.host], "conditions": {"ready": True}}],
        }  # fmt: skip
        done = cluster.apply(endpoints)
        assert done.returncode == 0, done.stderr
        setup = Installed(cluster, pod, process, log, images, values, dry_run, install, workdir)
        _wait_until_judged(cluster, images["unsigned"])
        yield setup
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
        cluster.stop()


def test_every_document_passes_a_server_side_dry_run_then_helm_installs(
    installed: Installed,
) -> None:
    rendered = by_name(render(files=[installed.values]))
    assert set(installed.dry_run) == set(rendered)
    for name, done in installed.dry_run.items():
        assert done.returncode == 0, f"{name}: {done.stderr}"
        assert "(server dry run)" in done.stdout, done.stdout
        assert "would violate PodSecurity" not in done.stderr, done.stderr  # restricted namespace
    assert "STATUS: deployed" in installed.install.stdout
    stored = installed.objects()
    for kind in ("Deployment", "ConfigMap", "Secret"):
        made = {k for k in rendered if k.startswith(f"{kind}/")}
        assert made and made <= set(stored), made - set(stored)
    hooks = json.loads(
        installed.cluster.kubectl(
            "get", "validatingwebhookconfiguration", RELEASE, "-o", "json"
        ).stdout
    )
    (hook,) = hooks["webhooks"]
    assert hook["clientConfig"]["service"]["name"] == RELEASE  # by Service, as rendered
    assert (
        base64.b64decode(hook["clientConfig"]["caBundle"])
        == secret_data(stored[f"Secret/{RELEASE}-tls"])["ca.crt"]
    )


@pytest.mark.parametrize("kind", ["Deployment", "Pod"])
def test_an_image_from_attest_pipeline_is_admitted_by_the_default_config(
    installed: Installed, kind: str
) -> None:
    name = f"pipeline-{kind.lower()}"
    admitted = installed.cluster.apply(pod_manifest(kind, name, installed.images["pipeline"]))
    assert admitted.returncode == 0, admitted.stderr
    assert f"{name} created" in admitted.stdout and "Warning" not in admitted.stderr
    unsigned = installed.images["unsigned"]
    refused = installed.cluster.apply(pod_manifest(kind, f"{name}-unsigned", unsigned))
    assert refused.returncode == 1
    assert DENIED + f"{unsigned}: no trusted signature" in refused.stderr


def _decisions(installed: Installed) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "attest", "decisions", "list", "--db", installed.pod.env()["ATTEST_DB"],
         "--output", "json", "--limit", "500"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_decisions_record_the_api_server_as_caller_and_verify_with_the_chart_key(
    installed: Installed,
) -> None:
    """The webhook port took the chart's client certificate (mTLS), each decision names it, and
    the chain is signed by the chart's key: `attest decisions verify --key` exits 0 with the
    public key NOTES tells how to extract (openssl ec -pubout)."""
    decisions = _decisions(installed)
    assert decisions and {d["decision"]["caller"] for d in decisions} == {"CN=kube-apiserver"}
    key = secret_data(installed.objects()[f"Secret/{RELEASE}-signing-key"])["signing.key"]
    public = installed.workdir / "decisions.pub"
    extracted = subprocess.run(
        ["openssl", "ec", "-pubout"], input=key, capture_output=True, timeout=30, check=True
    )
    public.write_bytes(extracted.stdout)
    deadline = time.monotonic() + 60
    while True:  # checkpoints every 10 s (the chart's checkpointIntervalSeconds)
        verify = subprocess.run(
            [sys.executable, "-m", "attest", "decisions", "verify", "--db",
             installed.pod.env()["ATTEST_DB"], "--key", str(public)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if verify.returncode == 0:
            break
        assert verify.returncode == 3, verify.stdout + verify.stderr  # not yet signed, not broken
        assert time.monotonic() < deadline, verify.stdout
        time.sleep(1)
    assert "chain intact" in verify.stdout


def test_the_notes_commands_work_as_written(installed: Installed, tmp_path: Path) -> None:
    """The kubectl lines of the chart's NOTES, run by bash as printed: the API server's
    client certificate and admission files, and the decision key's public half."""
    from tests.support.peers import peer_binary

    notes = installed.helm("get", "notes", RELEASE)
    assert notes.returncode == 0, notes.stderr
    lines = [ln.strip() for ln in notes.stdout.splitlines() if ln.strip().startswith("kubectl -n")]
    lines = [ln for ln in lines if "port-forward" not in ln]
    assert len(lines) == 5, notes.stdout
    kubectl = f"{peer_binary('kubectl')} --kubeconfig={installed.cluster.kubeconfig}"
    script = f'kubectl() {{ {kubectl} "$@"; }}\nset -eo pipefail\n' + "\n".join(lines)
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    objects = installed.objects()
    client = secret_data(objects[f"Secret/{RELEASE}-apiserver-client"])
    assert (tmp_path / "apiserver-client.crt").read_bytes() == client["tls.crt"]
    assert (tmp_path / "apiserver-client.key").read_bytes() == client["tls.key"]
    admission = yaml.safe_load((tmp_path / "admission-configuration.yaml").read_text())
    assert admission["kind"] == "AdmissionConfiguration"
    kubeconfig = yaml.safe_load((tmp_path / "webhook-kubeconfig.yaml").read_text())
    assert kubeconfig["users"][0]["name"] == f"{RELEASE}.{NAMESPACE}.svc"
    from attest.signing import keys

    public = keys.load_public_key_file(str(tmp_path / "decisions.pub"))
    private = serialization.load_pem_private_key(
        secret_data(objects[f"Secret/{RELEASE}-signing-key"])["signing.key"], None
    )
    assert public.public_numbers() == private.public_key().public_numbers()  # type: ignore[union-attr]


class _NamedHTTPS(http.client.HTTPSConnection):
    """HTTPS to an address, verifying the certificate for a Service's DNS name (as Prometheus
    does with the ServiceMonitor's serverName)."""

    def __init__(self, address: str, port: int, name: str, ca: bytes) -> None:
        super().__init__(name, port, timeout=10)
        self._address = address
        self._context = ssl.create_default_context(cadata=ca.decode())

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), timeout=10)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def test_the_ops_port_serves_metrics_and_the_token_guarded_view(installed: Installed) -> None:
    objects = installed.objects()
    ca = secret_data(objects[f"Secret/{RELEASE}-tls"])["ca.crt"]
    token = secret_data(objects[f"Secret/{RELEASE}-ops-token"])["token"].decode()

    def get(path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        connection = _NamedHTTPS(installed.pod.host, installed.pod.web_port,
                                 f"{RELEASE}-ops.{NAMESPACE}.svc", ca)  # fmt: skip
        try:
            connection.request("GET", path, headers=headers or {})
            answer = connection.getresponse()
            return answer.status, answer.read().decode(errors="replace")
        finally:
            connection.close()

    status, metrics = get("/metrics")
    assert status == 200 and 'attest_admission_requests_total{kind="' in metrics
    assert get("/decisions")[0] in (302, 401)
    status, page = get("/decisions", {"Authorization": f"Bearer {token}"})
    assert status == 200 and "pipeline" in page


def _hook(installed: Installed) -> dict[str, Any]:
    done = installed.cluster.kubectl("get", "validatingwebhookconfiguration", RELEASE, "-o", "json")
    (hook,) = json.loads(done.stdout)["webhooks"]
    return hook


def _runbook_command(runbook: str, starts: str) -> list[str]:
    """The shell command in ``docs/runbooks/<runbook>`` that starts with ``starts``, as argv."""
    import shlex

    text = (ROOT / "docs" / "runbooks" / runbook).read_text().replace("\\\n", " ")
    (line,) = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(starts)][:1]
    return shlex.split(line)


def test_the_runbooks_namespace_exemption_admits_there_and_nowhere_else(
    installed: Installed,
) -> None:
    """webhook-down.md's kubectl patch, as written (namespace substituted), exempts exactly
    that namespace from the running webhook."""
    command = _runbook_command("webhook-down.md", "kubectl patch validatingwebhookconfiguration")
    command = [part.replace('"ingress-nginx"', '"hotfix-4711"') for part in command]
    installed.cluster.namespace("hotfix-4711")
    done = installed.cluster.kubectl(*command[1:])
    assert done.returncode == 0, done.stderr
    unsigned = installed.images["unsigned"]
    exempted = dict(pod_manifest("Pod", "hotfix", unsigned))
    exempted["metadata"] = {"name": "hotfix", "namespace": "hotfix-4711"}
    deadline = time.monotonic() + 30
    while True:  # the API server picks up the change asynchronously
        admitted = installed.cluster.apply(exempted, extra=["--dry-run=server"])
        if admitted.returncode == 0:
            break
        assert time.monotonic() < deadline, admitted.stderr
        time.sleep(0.5)
    refused = installed.cluster.apply(
        pod_manifest("Pod", "hotfix", unsigned), extra=["--dry-run=server"]
    )
    assert refused.returncode == 1 and DENIED in refused.stderr


def test_upgrades_keep_certificates_tokens_and_keys_and_a_deleted_certificate_is_renewed(
    installed: Installed,
) -> None:
    """helm upgrade looks up what the cluster holds: nothing generated changes. With the TLS
    Secret deleted, the upgrade makes a new certificate and caBundle; the pod picks it up from
    its volume (as the kubelet updates it) and the API server keeps calling it."""
    kept = (f"Secret/{RELEASE}-tls", f"Secret/{RELEASE}-client-ca", f"Secret/{RELEASE}-apiserver-client",
            f"Secret/{RELEASE}-ops-token", f"Secret/{RELEASE}-signing-key")  # fmt: skip
    before = {name: secret_data(installed.objects()[name]) for name in kept}
    upgraded = installed.helm("upgrade", RELEASE, str(CHART), f"--values={installed.values}")
    if "hotfix-4711" in _hook(installed)["namespaceSelector"]["matchExpressions"][0]["values"]:
        # the runbook's kubectl patch owns that field now: a plain upgrade stops, as
        # webhook-down.md says, and --force-conflicts puts the chart's list back
        assert upgraded.returncode == 1 and 'conflict with "kubectl-patch"' in upgraded.stderr
        upgraded = installed.helm(
            "upgrade", RELEASE, str(CHART), f"--values={installed.values}", "--force-conflicts"
        )
    assert upgraded.returncode == 0, upgraded.stderr
    assert _hook(installed)["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "kube-system",
        NAMESPACE,
    ]
    after = {name: secret_data(installed.objects()[name]) for name in kept}
    assert after == before
    assert (
        installed.cluster.kubectl("delete", "secret", f"{RELEASE}-tls", "-n", NAMESPACE).returncode
        == 0
    )
    renewed = installed.helm("upgrade", RELEASE, str(CHART), f"--values={installed.values}")
    assert renewed.returncode == 0, renewed.stderr
    objects = installed.objects()
    tls = secret_data(objects[f"Secret/{RELEASE}-tls"])
    assert tls["tls.crt"] != before[f"Secret/{RELEASE}-tls"]["tls.crt"]
    for name in kept[1:]:
        assert secret_data(objects[name]) == before[name], name
    hooks = json.loads(
        installed.cluster.kubectl(
            "get", "validatingwebhookconfiguration", RELEASE, "-o", "json"
        ).stdout
    )
    assert base64.b64decode(hooks["webhooks"][0]["clientConfig"]["caBundle"]) == tls["ca.crt"]
    installed.pod.objects = objects
    installed.pod.lay_out()  # the kubelet's atomic update of the volumes; the server re-reads
    deadline = time.monotonic() + 60
    while True:
        done = installed.cluster.apply(
            pod_manifest("Pod", "after-renewal", installed.images["pipeline"]),
            extra=["--dry-run=server"],
        )
        if done.returncode == 0:
            break
        assert time.monotonic() < deadline, done.stderr
        time.sleep(1)
    assert yaml.safe_load(installed.helm("get", "values", RELEASE, "-o", "yaml").stdout)["keys"]


@pytest.mark.parametrize("example", sorted(p.name for p in (CHART / "examples").glob("*.yaml")))
def test_the_example_configs_admit_an_image_from_attest_pipeline(
    images: dict[str, str], registry: Any, example: str, tmp_path: Path
) -> None:
    """Each example's config (its ghcr.io globs pointed at the test registry), laid out as the
    pod would see it, admits the pipeline's image without warnings and denies the unsigned
    one: `attest admission review` decides as the webhook does."""
    values = values_file({"keys": {"files": {"cosign.pub": DEV_PUB.read_text()}}}, tmp_path)
    objects = by_name(render(files=[CHART / "examples" / example, values]))
    config = objects[f"ConfigMap/{RELEASE}-config"]
    assert "ghcr.io/example-org/**" in config["data"]["config.yaml"]
    config["data"]["config.yaml"] = config["data"]["config.yaml"].replace(
        "ghcr.io/", f"{registry.address}/"
    )
    for volume in objects[f"Deployment/{RELEASE}"]["spec"]["template"]["spec"]["volumes"]:
        source = volume.get("secret")  # Secrets the user makes (cert-manager's, the database's)
        if source and f"Secret/{source['secretName']}" not in objects:
            stand_in = {i["key"]: "x" for i in source.get("items", [])} or {"x": "x"}
            objects[f"Secret/{source['secretName']}"] = {"kind": "Secret", "stringData": stand_in}
    pod = PodOnHost(objects, tmp_path / "pod")
    pod.lay_out()
    config_path = str(tmp_path / "pod") + "/etc/attest/config/config.yaml"
    for image, expected in ((images["pipeline"], 0), (images["unsigned"], 1)):
        manifest = tmp_path / "deployment.yaml"
        manifest.write_text(yaml.safe_dump(pod_manifest("Deployment", "web", image)))
        done = subprocess.run(
            [sys.executable, "-m", "attest", "admission", "review", str(manifest), "--config", config_path],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == expected, done.stdout + done.stderr
        if expected == 0:
            assert "ADMITTED: Deployment" in done.stdout and "warn" not in done.stdout, done.stdout
            assert "[example-org: verified]" in done.stdout, done.stdout
