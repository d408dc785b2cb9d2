"""deploy/: strict schema validation against a pinned Kubernetes version, plus what must hold."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from attest.testing import free_port
from tests.conftest import ROOT

KUBERNETES_VERSION = "1.30.0"  # pinned: the oldest release we support
DEPLOY = ROOT / "deploy"
CORE_FILES = sorted(DEPLOY.glob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources() -> dict[str, dict[str, Any]]:
    found = {}
    for path in CORE_FILES:
        for doc in documents(path):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def validate_strictly(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.path)
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {err.message}")
    except kubernetes_validate.SchemaNotFoundError as err:
        pytest.fail(err.message)


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_every_manifest_validates_strictly(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path.name} has no resources"
    for doc in docs:
        validate_strictly(doc)


def test_strict_validation_rejects_an_unknown_field() -> None:
    deployment = resources()["Deployment/attest-admission"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replica"] = 2  # a typo strict mode must catch
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_namespaced_resource_lives_in_attest_system() -> None:
    for name, doc in resources().items():
        if doc["kind"] in (
            "Namespace",
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ):
            continue
        assert doc["metadata"]["namespace"] == "attest-system", name


def test_deployment_is_replicated_probed_and_non_root() -> None:
    all_resources = resources()
    deployment = all_resources["Deployment/attest-admission"]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert pod["serviceAccountName"] == "attest-admission"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["args"][:2] == ["admission", "serve"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in (container["readinessProbe"], container["livenessProbe"]):
        assert probe["httpGet"]["scheme"] == "HTTPS"
        assert probe["httpGet"]["port"] in {p["name"] for p in container["ports"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == set(volumes)
    tls_dir = mounts["tls"]
    assert f"{tls_dir}/tls.crt" in container["args"] and f"{tls_dir}/tls.key" in container["args"]
    assert volumes["tls"]["secret"]["secretName"] == "attest-admission-tls"
    config_map = volumes["config"]["configMap"]["name"]
    assert f"ConfigMap/{config_map}" in all_resources
    config_arg = container["args"][container["args"].index("--config") + 1]
    assert config_arg == f"{mounts['config']}/config.yaml"
    assert "config.yaml" in all_resources[f"ConfigMap/{config_map}"]["data"]


def test_pdb_and_service_select_the_webhook_pods() -> None:
    all_resources = resources()
    labels = all_resources["Deployment/attest-admission"]["spec"]["template"]["metadata"]["labels"]
    pdb = all_resources["PodDisruptionBudget/attest-admission"]["spec"]
    assert pdb["minAvailable"] == 1
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    service = all_resources["Service/attest-admission"]["spec"]
    assert service["selector"].items() <= labels.items()
    (port,) = service["ports"]
    container = all_resources["Deployment/attest-admission"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    assert port["targetPort"] == "webhook"  # the API server's Service carries nothing else
    ops = all_resources["Service/attest-admission-ops"]["spec"]
    assert ops["selector"].items() <= labels.items()
    (ops_port,) = ops["ports"]
    assert ops_port["targetPort"] == "ops"


def _container() -> dict[str, Any]:
    return resources()["Deployment/attest-admission"]["spec"]["template"]["spec"]["containers"][0]


def _arg(container: dict[str, Any], flag: str) -> str:
    return container["args"][container["args"].index(flag) + 1]


def test_the_ops_port_is_separate_and_its_token_is_a_mounted_secret() -> None:
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert set(ports) == {"webhook", "ops", "probes"} and len(set(ports.values())) == 3
    assert int(_arg(container, "--web-port")) == ports["ops"]
    assert int(_arg(container, "--probe-port")) == ports["probes"]
    token_file = Path(_arg(container, "--web-token-file"))
    pod = resources()["Deployment/attest-admission"]["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (name,) = [n for n, path in mounts.items() if path == str(token_file.parent)]
    secret = volumes[name]["secret"]
    assert secret["secretName"] == "attest-web-token"
    assert {"key": "token", "path": token_file.name} in secret["items"]
    annotations = resources()["Deployment/attest-admission"]["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations["prometheus.io/port"] == str(ports["ops"])
    assert annotations["prometheus.io/scheme"] == "https"
    # the image exposes the same three ports
    exposed = next(
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("EXPOSE")
    )
    assert {int(p) for p in exposed.split()[1:]} == set(ports.values())


def test_the_webhook_port_requires_the_api_servers_client_certificate() -> None:
    """--client-ca is on, from the mounted client CA Secret, and the kubelet probes the probe
    port (it has no client certificate)."""
    container = _container()
    pod = resources()["Deployment/attest-admission"]["spec"]["template"]["spec"]
    client_ca = Path(_arg(container, "--client-ca"))
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (name,) = [n for n, path in mounts.items() if path == str(client_ca.parent)]
    secret = volumes[name]["secret"]
    assert secret["secretName"] == "attest-admission-client-ca"
    assert secret["items"] == [{"key": "ca.crt", "path": client_ca.name}]  # never the CA key
    for probe in (container["readinessProbe"], container["livenessProbe"]):
        assert probe["httpGet"]["port"] == "probes"


def test_the_network_policy_opens_only_the_webhook_port_to_everyone() -> None:
    policy = resources()["NetworkPolicy/attest-admission"]["spec"]
    labels = resources()["Deployment/attest-admission"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    open_ports = [
        port["port"] for rule in policy["ingress"] if "from" not in rule for port in rule["ports"]
    ]
    assert open_ports == ["webhook"]
    (restricted,) = [rule for rule in policy["ingress"] if "from" in rule]
    assert [p["port"] for p in restricted["ports"]] == ["ops"]
    assert all("namespaceSelector" in source for source in restricted["from"])


def test_the_optional_mutating_webhook_pins_without_enforcing() -> None:
    all_resources = resources()
    (validating,) = all_resources["ValidatingWebhookConfiguration/attest-admission"]["webhooks"]
    (mutating,) = all_resources["MutatingWebhookConfiguration/attest-admission-pin"]["webhooks"]
    assert "OPTIONAL" in (DEPLOY / "mutating-webhook.yaml").read_text().splitlines()[0]
    assert mutating["failurePolicy"] == "Ignore"  # enforcement stays with the validating one
    assert mutating["sideEffects"] == "None"
    assert mutating["reinvocationPolicy"] == "IfNeeded"
    assert mutating["matchPolicy"] == "Equivalent"
    assert mutating["clientConfig"]["service"]["path"] == "/mutate"
    for key in ("rules", "namespaceSelector", "admissionReviewVersions", "timeoutSeconds"):
        assert mutating[key] == validating[key], key
    same_service = {k: v for k, v in validating["clientConfig"]["service"].items() if k != "path"}
    assert {k: v for k, v in mutating["clientConfig"]["service"].items() if k != "path"} == (
        same_service
    )


def test_webhook_fails_closed_and_covers_every_workload_kind() -> None:
    all_resources = resources()
    (webhook,) = all_resources["ValidatingWebhookConfiguration/attest-admission"]["webhooks"]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["sideEffects"] == "None"
    assert webhook["matchPolicy"] == "Equivalent"
    assert 8 < webhook["timeoutSeconds"] <= 30  # above the server's 8 s deadline
    assert webhook["admissionReviewVersions"] == ["v1"]
    (expression,) = webhook["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name"
    assert expression["operator"] == "NotIn"
    assert set(expression["values"]) == {"kube-system", "attest-system"}
    covered = {
        (group, resource)
        for rule in webhook["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        if {"CREATE", "UPDATE"} <= set(rule["operations"])
    }
    assert covered == {
        ("", "pods"),
        ("", "pods/ephemeralcontainers"),
        ("", "replicationcontrollers"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
    }
    client = webhook["clientConfig"]["service"]
    service = all_resources[f"Service/{client['name']}"]
    assert service["metadata"]["namespace"] == client["namespace"]
    assert client["port"] in {p["port"] for p in service["spec"]["ports"]}
    assert client["path"] == "/validate"


def test_gen_certs_writes_a_valid_secret_and_ca_bundle(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    run = subprocess.run(
        [str(DEPLOY / "gen-certs.sh"), "--out", str(out), "--days", "30"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    (secret,) = documents(out / "tls-secret.yaml")
    (webhook_doc,) = documents(out / "webhook.yaml")
    (mutating_doc,) = documents(out / "mutating-webhook.yaml")
    validate_strictly(secret)
    validate_strictly(webhook_doc)
    validate_strictly(mutating_doc)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["name"] == "attest-admission-tls"
    assert (out / "tls.key").stat().st_mode & 0o077 == 0

    ca_pem = base64.b64decode(webhook_doc["webhooks"][0]["clientConfig"]["caBundle"])
    ca = x509.load_pem_x509_certificate(ca_pem)
    server = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "attest-admission.attest-system.svc" in names.get_values_for_type(x509.DNSName)
    assert "attest-admission-ops.attest-system.svc" in names.get_values_for_type(x509.DNSName)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(base64.b64decode(secret["data"]["tls.key"]), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == server.public_key().public_numbers()
    # everything else in the webhook configurations is unchanged
    original = resources()["ValidatingWebhookConfiguration/attest-admission"]
    del webhook_doc["webhooks"][0]["clientConfig"]["caBundle"]
    assert webhook_doc == original
    pinned = mutating_doc["webhooks"][0]["clientConfig"].pop("caBundle")
    assert base64.b64decode(pinned) == ca_pem
    assert mutating_doc == resources()["MutatingWebhookConfiguration/attest-admission-pin"]

    # the API server's client certificate, from a CA of its own, and its AdmissionConfiguration
    (client_secret,) = documents(out / "client-ca-secret.yaml")
    validate_strictly(client_secret)
    assert client_secret["metadata"]["name"] == "attest-admission-client-ca"
    assert set(client_secret["data"]) == {"ca.crt"}
    client_ca = x509.load_pem_x509_certificate(base64.b64decode(client_secret["data"]["ca.crt"]))
    assert client_ca != ca
    client = x509.load_pem_x509_certificate((out / "apiserver-client.crt").read_bytes())
    client.verify_directly_issued_by(client_ca)
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    assert (out / "apiserver-client.key").stat().st_mode & 0o077 == 0
    (admission,) = documents(out / "admission-configuration.yaml")
    assert admission["kind"] == "AdmissionConfiguration"
    plugins = {p["name"]: p["configuration"]["kubeConfigFile"] for p in admission["plugins"]}
    assert set(plugins) == {"ValidatingAdmissionWebhook", "MutatingAdmissionWebhook"}
    (kubeconfig,) = documents(out / "webhook-kubeconfig.yaml")
    assert all(
        path == "/etc/kubernetes/attest/webhook-kubeconfig.yaml" for path in plugins.values()
    )
    (user,) = kubeconfig["users"]
    assert user["name"] == "attest-admission.attest-system.svc"  # the webhook Service, port 443
    assert user["user"] == {
        "client-certificate": "/etc/kubernetes/attest/apiserver-client.crt",
        "client-key": "/etc/kubernetes/attest/apiserver-client.key",
    }


def test_the_generated_client_certificate_is_the_one_the_server_accepts(tmp_path: Path) -> None:
    """The real server with the generated client CA: gen-certs' API server certificate gets in,
    a certificate from gen-certs' other CA (the serving certificate) does not."""
    import requests

    from tests.admission.helpers import make_tls
    from tests.support.webhook import start_webhook

    out = tmp_path / "certs"
    subprocess.run(
        [str(DEPLOY / "gen-certs.sh"), "--out", str(out)], check=True, capture_output=True
    )
    tls = make_tls(tmp_path / "tls")  # serving certificate for 127.0.0.1
    config = tmp_path / "c.yaml"
    config.write_text("imagePolicies: []\n")
    probe_port = free_port()
    hook = start_webhook(
        config,
        tls,
        tmp_path,
        extra=("--client-ca", str(out / "client-ca.crt"), "--probe-port", str(probe_port)),
        ready_url=f"https://127.0.0.1:{probe_port}/healthz",
    )
    try:
        client = (str(out / "apiserver-client.crt"), str(out / "apiserver-client.key"))
        answer = requests.get(f"{hook.url}/readyz", verify=str(tls.ca), cert=client, timeout=10)
        assert answer.json()["status"] == "ready"
        stranger = (str(out / "tls.crt"), str(out / "tls.key"))
        for cert in (stranger, None):
            with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
                requests.get(f"{hook.url}/readyz", verify=str(tls.ca), cert=cert, timeout=10)
    finally:
        hook.stop()


def test_gen_certs_follows_another_namespace(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    subprocess.run(
        [str(DEPLOY / "gen-certs.sh"), "--out", str(out), "--namespace", "sec-tools"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for name in ("webhook.yaml", "mutating-webhook.yaml"):
        (webhook,) = documents(out / name)[0]["webhooks"]
        assert webhook["clientConfig"]["service"]["namespace"] == "sec-tools"
        assert "sec-tools" in webhook["namespaceSelector"]["matchExpressions"][0]["values"]
    cert = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "attest-admission.sec-tools.svc" in names.get_values_for_type(x509.DNSName)


def test_gen_certs_rejects_bad_arguments(tmp_path: Path) -> None:
    for args in (["--days", "soon"], ["--namespace", "Bad_NS"], ["--bogus"]):
        run = subprocess.run(
            [str(DEPLOY / "gen-certs.sh"), "--out", str(tmp_path / "x"), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2
        assert run.stderr.startswith("gen-certs.sh: error: ")
        assert not (tmp_path / "x" / "tls.key").exists()


def test_cert_manager_alternative_matches_the_deployment() -> None:
    docs = documents(DEPLOY / "cert-manager" / "certificate.yaml")
    certificates = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Certificate"}
    serving = certificates["attest-admission-tls"]
    assert serving["spec"]["secretName"] == "attest-admission-tls"
    assert "attest-admission.attest-system.svc" in serving["spec"]["dnsNames"]
    assert "server auth" in serving["spec"]["usages"]
    assert "attest-admission-ops.attest-system.svc" in serving["spec"]["dnsNames"]
    issuers = {d["metadata"]["name"] for d in docs if d["kind"] == "Issuer"}
    assert serving["spec"]["issuerRef"]["name"] in issuers
    client_ca = certificates["attest-admission-client-ca"]["spec"]  # the Secret --client-ca reads
    assert client_ca["isCA"] is True and client_ca["secretName"] == "attest-admission-client-ca"
    client = certificates["attest-apiserver-client"]["spec"]
    assert "client auth" in client["usages"] and "server auth" not in client["usages"]
    assert client["issuerRef"]["name"] in issuers
    annotation = "cert-manager.io/inject-ca-from=attest-system/attest-admission-tls"
    assert annotation in (DEPLOY / "cert-manager" / "certificate.yaml").read_text()
    assert annotation in (DEPLOY / "README.md").read_text().replace("\n", " ")


def test_the_shipped_admission_config_is_valid(tmp_path: Path) -> None:
    """The ConfigMap's config.yaml loads, with its in-container paths mapped to local files."""
    from admission.config import parse_config
    from attest.signing import keys

    config_map = resources()["ConfigMap/attest-admission-config"]
    text = config_map["data"]["config.yaml"]
    key = tmp_path / "cosign.pub"
    key.write_bytes(keys.generate_key_pair(b"pw").public_pem)
    text = text.replace("/etc/attest/keys/cosign.pub", str(key))
    config = parse_config(text, str(tmp_path / "config.yaml"))
    (policy,) = config.policies
    assert policy.mode == "enforce" and config.unmatched_images == "deny"
    deployment = resources()["Deployment/attest-admission"]["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in deployment["containers"][0]["volumeMounts"]}
    assert mounts["trust"] == "/etc/attest/keys"
    trust = resources()["ConfigMap/attest-trust"]["data"]
    assert "cosign.pub" in trust
