"""charts/attest with the real helm: lint, rendering across values, the values schema, and what
every rendering must guarantee (strict Kubernetes schemas, fail-closed webhook, non-root
pods, certificates that chain, a config the server loads)."""

from __future__ import annotations

import base64
import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

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
    template,
)

KUBERNETES_VERSION = "1.30.0"  # pinned: the oldest release we support (Chart.yaml kubeVersion)
PUBLIC_KEY = (ROOT / "keys-dev" / "cosign.pub").read_text()  # public on purpose; never trusted
KEY = {"keys": {"files": {"cosign.pub": PUBLIC_KEY}}}
# Kinds of CRDs (cert-manager, Prometheus Operator): no schema for them offline, so they are
# checked field by field below instead of by kubernetes-validate.
CRD_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
REGO = (
    'package attest.admission\nimport rego.v1\n\ndeny contains "no" if input.request.name == "x"\n'
)

CASES: dict[str, dict[str, Any]] = {
    "default": {},
    "postgres-url": {"decisions": {"database": {"url": "postgresql://attest:pw@db:5432/attest"}}},
    "postgres-secret": {"decisions": {"database": {"existingSecret": "my-db"}}},
    "cert-manager": {"tls": {"source": "certManager"}},
    "cert-manager-cluster-issuer": {
        "tls": {
            "source": "certManager",
            "certManager": {"issuerRef": {"kind": "ClusterIssuer", "name": "corp-ca"}},
        }
    },
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    },
    "mtls-off": {"clientAuth": {"enabled": False}},
    "existing-certificates": {
        "tls": {"source": "existing", "existingSecret": "my-tls", "caBundle": PUBLIC_KEY},
        "clientAuth": {"existingSecret": "my-client-ca"},
    },
    "extra-policies-and-config": {
        "policies": {"files": {"extra.rego": REGO}},
        "registryAuth": {"existingSecret": "regcred"},
        "trustedRoots": {"files": {"trusted_root.json": "{}"}},
        "config": {
            "unmatchedImages": "deny",
            "cache": {"tagTtlSeconds": 0},
            "imagePolicies": [
                {
                    "name": "corp",
                    "images": ["registry.example.com/**"],
                    "authorities": [
                        {
                            "name": "k",
                            "key": {"path": "/etc/attest/keys/cosign.pub"},
                            "ctlog": {"trustedRoot": "/etc/attest/roots/trusted_root.json"},
                        }
                    ],
                    "parameters": {"requireProvenance": False},
                },
            ],
        },
        "extraArgs": ["--read-timeout", "5"],
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
    },
    "one-replica-small": {
        "replicas": 1,
        "workers": 1,
        "threads": 4,
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        },
    },
    "many-replicas-pinning": {"replicas": 5, "mutatingWebhook": {"enabled": True}},
    "no-ops-no-netpol": {"ops": {"enabled": False}, "networkPolicy": {"enabled": False}},
    "own-signing-key": {
        "decisions": {
            "signingKey": {
                "existingSecret": "decisions-key",
                "key": "cosign.key",
                "passwordKey": "password",
            }
        }
    },
    "unsigned-records": {"decisions": {"signingKey": {"enabled": False}}},
    "no-records": {"decisions": {"record": False}},
    "image-digest": {"image": {"digest": "sha256:" + "ab" * 32}},
    "exceptions": {
        "exceptions": {"existingConfigMap": "attest-exceptions"},
        "keys": {"files": {"appsec.pub": PUBLIC_KEY}},
        "config": {
            "exceptions": {
                "directory": "/etc/attest/exceptions",
                "signers": [{"name": "appsec", "key": {"path": "/etc/attest/keys/appsec.pub"}}],
            }
        },
    },
}


def merged(case: str) -> dict[str, Any]:
    values = copy.deepcopy(CASES[case])
    if not (values.get("keys") or {}).get("existingSecret"):
        values.setdefault("keys", {}).setdefault("files", {})["cosign.pub"] = PUBLIC_KEY
    return values


_rendered: dict[str, list[dict[str, Any]]] = {}


def rendered(case: str) -> list[dict[str, Any]]:
    if case not in _rendered:
        _rendered[case] = render(merged(case))
    return _rendered[case]


def validate_strictly(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in err.path)
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {err.message}")
    except kubernetes_validate.SchemaNotFoundError as err:
        pytest.fail(f"{doc['kind']}: {err.message}")


def pod_of(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = by_name(docs)[f"Deployment/{RELEASE}"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def arg(container: dict[str, Any], flag: str) -> str | None:
    args = container["args"]
    return args[args.index(flag) + 1] if flag in args else None


# --- helm lint and the matrix ------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["default", "monitoring", "cert-manager", "extra-policies-and-config"]
)
def test_helm_lint_strict(case: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(merged(case)))
    done = helm("lint", "--strict", str(CHART), f"--values={values}", "--namespace", NAMESPACE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_rendered_document_validates_strictly(case: str) -> None:
    docs = rendered(case)
    kinds = set()
    for doc in docs:
        kinds.add(doc["kind"])
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        validate_strictly(doc)
        if doc["kind"] not in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert {"Deployment", "Service", "ConfigMap", "ValidatingWebhookConfiguration"} <= kinds


def test_strict_validation_rejects_an_unknown_field() -> None:
    deployment = copy.deepcopy(by_name(rendered("default"))[f"Deployment/{RELEASE}"])
    deployment["spec"]["replica"] = 2  # a typo strict mode must catch
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_mounted_file_the_args_name_is_provided(case: str) -> None:
    """Each in-container path in the args lies under a mount whose volume provides it."""
    pod, container = pod_of(rendered(case))
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts.values()) == set(volumes)
    objects = by_name(rendered(case))
    for value in container["args"]:
        if not value.startswith("/etc/attest/"):
            continue
        directory, name = value.rsplit("/", 1)
        volume = volumes[mounts[directory]]
        source = volume.get("secret") or volume.get("configMap")
        if "items" in source:
            assert name in [i["path"] for i in source["items"]], value
            name = next(i["key"] for i in source["items"] if i["path"] == name)
        kind, object_name = (
            ("Secret", source["secretName"])
            if "secret" in volume
            else ("ConfigMap", source["name"])
        )
        made = objects.get(f"{kind}/{object_name}")
        if made is not None:  # else the user's own Secret, named by a value
            provided = secret_data(made) if kind == "Secret" else made.get("data") or {}
            assert name in provided, value


def _with_stand_ins(objects: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Objects plus a stand-in for every Secret the pod mounts that others make (cert-manager,
    the user): the files its items name, with placeholder content."""
    pod, _container = pod_of(list(objects.values()))
    found = dict(objects)
    for volume in pod["volumes"]:
        source = volume.get("secret")
        if source and f"Secret/{source['secretName']}" not in found:
            files = {i["key"]: "{}" for i in source.get("items", [])} or {"placeholder": "{}"}
            found[f"Secret/{source['secretName']}"] = {"kind": "Secret", "stringData": files}
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_rendered_config_loads_in_the_server(case: str, tmp_path: Path) -> None:
    """config.yaml, with every volume laid out as the kubelet would, passes the server's own
    validation (admission.config, the one definition of the config)."""
    from admission.config import load_config

    pod = PodOnHost(_with_stand_ins(by_name(rendered(case))), tmp_path)
    pod.lay_out()
    config_path = arg(pod.container, "--config")
    assert config_path is not None
    config = load_config(str(tmp_path) + config_path)
    assert config.policies and config.unmatched_images == "deny"
    if case == "extra-policies-and-config":
        assert config.bundle == str(tmp_path) + "/etc/attest/policies"
        assert config.registry_auth == (str(tmp_path) + "/etc/attest/registry/.dockerconfigjson",)
    if case == "many-replicas-pinning":
        assert config.pin_digests is True
    if case == "exceptions":  # the optional ConfigMap, not made yet: an empty directory
        assert config.exceptions is not None and config.exceptions.exceptions == ()
        assert [s.name for s in config.exceptions.signers] == ["appsec"]


# --- what every rendering guarantees -----------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_deployment_is_non_root_probed_and_fail_closed(case: str) -> None:
    docs = rendered(case)
    values = merged(case)
    objects = by_name(docs)
    deployment = objects[f"Deployment/{RELEASE}"]
    pod, container = pod_of(docs)
    assert deployment["spec"]["replicas"] == values.get("replicas", 2)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pod["automountServiceAccountToken"] is False
    assert (
        pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    )
    assert container["args"][:2] == ["admission", "serve"]
    security = container["securityContext"]
    assert (
        security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    )
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "probes", "scheme": "HTTPS"}
    assert int(arg(container, "--probe-port") or 0) == ports["probes"]
    # the PDB keeps one replica (never blocking drains of a single one)
    pdb = objects.get(f"PodDisruptionBudget/{RELEASE}")
    assert (pdb is not None) == (values.get("replicas", 2) > 1)
    if pdb:
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # the webhook Service carries the webhook port only
    service = objects[f"Service/{RELEASE}"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(443, "webhook")]
    (webhook,) = objects[f"ValidatingWebhookConfiguration/{RELEASE}"]["webhooks"]
    assert webhook["failurePolicy"] == "Fail" and webhook["sideEffects"] == "None"
    assert webhook["matchPolicy"] == "Equivalent" and webhook["admissionReviewVersions"] == ["v1"]
    assert 8 < webhook["timeoutSeconds"] <= 30  # above the server's 8 s deadline
    assert webhook["clientConfig"]["service"] == {
        "name": RELEASE, "namespace": NAMESPACE, "path": "/validate", "port": 443,
    }  # fmt: skip
    (expression,) = webhook["namespaceSelector"]["matchExpressions"]
    assert expression == {
        "key": "kubernetes.io/metadata.name", "operator": "NotIn",
        "values": ["kube-system", NAMESPACE],
    }  # fmt: skip
    covered = {
        (group, resource)
        for rule in webhook["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        if {"CREATE", "UPDATE"} <= set(rule["operations"])
    }
    assert covered == {
        ("", "pods"), ("", "pods/ephemeralcontainers"), ("", "replicationcontrollers"),
        ("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets"),
        ("apps", "daemonsets"), ("batch", "jobs"), ("batch", "cronjobs"),
    }  # fmt: skip


def test_the_image_exposes_the_ports_the_chart_uses() -> None:
    _pod, container = pod_of(rendered("default"))
    ports = {p["containerPort"] for p in container["ports"]}
    exposed = next(
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("EXPOSE")
    )
    assert {int(p) for p in exposed.split()[1:]} == ports == {8443, 8444, 8445}


def test_the_ops_port_is_separate_with_its_token_secret_and_network_policy() -> None:
    objects = by_name(rendered("default"))
    pod, container = pod_of(rendered("default"))
    assert arg(container, "--web-port") == "8444"
    token_file = Path(arg(container, "--web-token-file") or "")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = {v["name"]: v for v in pod["volumes"]}[mounts[str(token_file.parent)]]
    assert volume["secret"]["items"] == [{"key": "token", "path": token_file.name}]
    token = secret_data(objects[f"Secret/{volume['secret']['secretName']}"])["token"]
    assert re.fullmatch(rb"[A-Za-z0-9]{64}", token)
    assert (
        render(KEY)
        and secret_data(by_name(render(KEY))[f"Secret/{RELEASE}-ops-token"])["token"] != token
    )  # random per install (upgrades keep it: tests/peers/test_chart_cluster.py)
    ops = objects[f"Service/{RELEASE}-ops"]["spec"]
    assert [(p["port"], p["targetPort"]) for p in ops["ports"]] == [(8444, "ops")]
    annotations = objects[f"Deployment/{RELEASE}"]["spec"]["template"]["metadata"]["annotations"]
    assert (
        annotations["prometheus.io/port"] == "8444"
        and annotations["prometheus.io/scheme"] == "https"
    )
    policy = objects[f"NetworkPolicy/{RELEASE}"]["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    open_ports = [
        p["port"] for rule in policy["ingress"] if "from" not in rule for p in rule["ports"]
    ]
    assert open_ports == ["webhook"]
    (restricted,) = [rule for rule in policy["ingress"] if "from" in rule]
    assert [p["port"] for p in restricted["ports"]] == ["ops"]
    assert restricted["from"] == [
        {"namespaceSelector": {"matchLabels": {"attest.dev/ops-access": "true"}}}
    ]
    off = by_name(rendered("no-ops-no-netpol"))
    _pod, bare = pod_of(rendered("no-ops-no-netpol"))
    assert "--web-port" not in bare["args"] and f"Service/{RELEASE}-ops" not in off
    assert f"NetworkPolicy/{RELEASE}" not in off


def _certificate(data: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data)


def test_generated_certificates_chain_and_name_the_services() -> None:
    """tls.source helm: the serving certificate chains to the webhooks' caBundle and names both
    Services; the API server's client certificate chains to the --client-ca CA (another CA)."""
    objects = by_name(rendered("many-replicas-pinning"))
    tls = secret_data(objects[f"Secret/{RELEASE}-tls"])
    assert objects[f"Secret/{RELEASE}-tls"]["type"] == "kubernetes.io/tls"
    ca, server = _certificate(tls["ca.crt"]), _certificate(tls["tls.crt"])
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    for service in (RELEASE, f"{RELEASE}-ops"):
        assert f"{service}.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage
    key = serialization.load_pem_private_key(tls["tls.key"], None)
    assert key.public_key().public_numbers() == server.public_key().public_numbers()  # type: ignore[union-attr]
    for name in (
        f"ValidatingWebhookConfiguration/{RELEASE}",
        f"MutatingWebhookConfiguration/{RELEASE}-pin",
    ):
        (hook,) = objects[name]["webhooks"]
        assert base64.b64decode(hook["clientConfig"]["caBundle"]) == tls["ca.crt"]
    client_ca = _certificate(secret_data(objects[f"Secret/{RELEASE}-client-ca"])["ca.crt"])
    assert set(secret_data(objects[f"Secret/{RELEASE}-client-ca"])) == {"ca.crt"}  # never a key
    client = secret_data(objects[f"Secret/{RELEASE}-apiserver-client"])
    _certificate(client["tls.crt"]).verify_directly_issued_by(client_ca)
    assert client_ca != ca
    with pytest.raises(ValueError):
        _certificate(client["tls.crt"]).verify_directly_issued_by(ca)
    usage = _certificate(client["tls.crt"]).extensions.get_extension_for_class(
        x509.ExtendedKeyUsage
    )
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usage.value
    _pod, container = pod_of(rendered("many-replicas-pinning"))
    assert arg(container, "--client-ca") == "/etc/attest/client-ca/ca.crt"
    admission = objects[f"ConfigMap/{RELEASE}-apiserver-admission"]["data"]
    (user,) = yaml.safe_load(admission["webhook-kubeconfig.yaml"])["users"]
    assert user["name"] == f"{RELEASE}.{NAMESPACE}.svc"  # the API server's key for this Service
    plugins = yaml.safe_load(admission["admission-configuration.yaml"])["plugins"]
    assert {p["name"] for p in plugins} == {
        "ValidatingAdmissionWebhook",
        "MutatingAdmissionWebhook",
    }


def test_mtls_off_drops_the_client_ca_and_its_secrets() -> None:
    objects = by_name(rendered("mtls-off"))
    _pod, container = pod_of(rendered("mtls-off"))
    assert "--client-ca" not in container["args"]
    assert not [k for k in objects if "client" in k or "apiserver" in k]


def test_the_optional_mutating_webhook_pins_without_enforcing() -> None:
    objects = by_name(rendered("many-replicas-pinning"))
    (validating,) = objects[f"ValidatingWebhookConfiguration/{RELEASE}"]["webhooks"]
    (mutating,) = objects[f"MutatingWebhookConfiguration/{RELEASE}-pin"]["webhooks"]
    assert mutating["failurePolicy"] == "Ignore"  # enforcement stays with the validating one
    assert mutating["reinvocationPolicy"] == "IfNeeded" and mutating["sideEffects"] == "None"
    assert mutating["clientConfig"]["service"]["path"] == "/mutate"
    for key in (
        "rules",
        "namespaceSelector",
        "admissionReviewVersions",
        "timeoutSeconds",
        "matchPolicy",
    ):
        assert mutating[key] == validating[key], key
    assert f"MutatingWebhookConfiguration/{RELEASE}-pin" not in by_name(rendered("default"))


def test_cert_manager_issues_both_certificates_and_injects_the_ca() -> None:
    objects = by_name(rendered("cert-manager"))
    assert f"Secret/{RELEASE}-tls" not in objects  # cert-manager writes it
    serving = objects[f"Certificate/{RELEASE}-tls"]["spec"]
    assert serving["secretName"] == f"{RELEASE}-tls" and "server auth" in serving["usages"]
    for service in (RELEASE, f"{RELEASE}-ops"):
        assert f"{service}.{NAMESPACE}.svc" in serving["dnsNames"]
    issuers = {k.split("/")[1] for k in objects if k.startswith("Issuer/")}
    assert serving["issuerRef"]["name"] in issuers
    client_ca = objects[f"Certificate/{RELEASE}-client-ca"]["spec"]
    assert client_ca["isCA"] is True and client_ca["secretName"] == f"{RELEASE}-client-ca"
    client = objects[f"Certificate/{RELEASE}-apiserver-client"]["spec"]
    assert client["usages"] == ["client auth", "digital signature"]
    assert client["issuerRef"]["name"] in issuers
    (hook,) = objects[f"ValidatingWebhookConfiguration/{RELEASE}"]["webhooks"]
    assert "caBundle" not in hook["clientConfig"]
    annotation = objects[f"ValidatingWebhookConfiguration/{RELEASE}"]["metadata"]["annotations"]
    assert annotation == {"cert-manager.io/inject-ca-from": f"{NAMESPACE}/{RELEASE}-tls"}
    corp = by_name(rendered("cert-manager-cluster-issuer"))
    assert corp[f"Certificate/{RELEASE}-tls"]["spec"]["issuerRef"] == {
        "kind": "ClusterIssuer",
        "name": "corp-ca",
    }
    assert f"Certificate/{RELEASE}-ca" not in corp  # no CA of its own for the serving side
    # the client side keeps a CA of the release's own: a shared issuer's every certificate
    # would otherwise be accepted as the API server
    assert (
        corp[f"Certificate/{RELEASE}-apiserver-client"]["spec"]["issuerRef"]["name"]
        == f"{RELEASE}-client-ca"
    )


def test_existing_certificates_are_used_as_given() -> None:
    objects = by_name(rendered("existing-certificates"))
    pod, _container = pod_of(rendered("existing-certificates"))
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "my-tls"
    assert volumes["client-ca"]["secret"]["secretName"] == "my-client-ca"
    assert not [k for k in objects if k.startswith("Secret/") and ("tls" in k or "client" in k)]
    (hook,) = objects[f"ValidatingWebhookConfiguration/{RELEASE}"]["webhooks"]
    assert base64.b64decode(hook["clientConfig"]["caBundle"]).decode() == PUBLIC_KEY


def test_decision_records_are_signed_by_default_with_a_generated_key(tmp_path: Path) -> None:
    from admission.decisions.chain import load_head_signer

    objects = by_name(rendered("default"))
    _pod, container = pod_of(rendered("default"))
    signing = arg(container, "--signing-key")
    assert signing == "/etc/attest/signing/signing.key"
    pem = secret_data(objects[f"Secret/{RELEASE}-signing-key"])["signing.key"]
    key = serialization.load_pem_private_key(pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    (tmp_path / "signing.key").write_bytes(pem)
    load_head_signer(str(tmp_path / "signing.key"))  # the server's own loader takes it
    own = pod_of(rendered("own-signing-key"))[1]
    assert arg(own, "--signing-key") == "/etc/attest/signing/cosign.key"
    env = {e["name"]: e for e in own["env"]}
    assert env["ATTEST_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "decisions-key",
        "key": "password",
    }
    assert f"Secret/{RELEASE}-signing-key" not in by_name(rendered("own-signing-key"))
    for case in ("unsigned-records", "no-records"):
        assert "--signing-key" not in pod_of(rendered(case))[1]["args"]
    assert "--no-record" in pod_of(rendered("no-records"))[1]["args"]


def test_postgres_url_comes_from_a_secret() -> None:
    objects = by_name(rendered("postgres-url"))
    env = {e["name"]: e for e in pod_of(rendered("postgres-url"))[1]["env"]}
    ref = env["ATTEST_DB"]["valueFrom"]["secretKeyRef"]
    assert secret_data(objects[f"Secret/{ref['name']}"])[ref["key"]].startswith(b"postgresql://")
    own = {e["name"]: e for e in pod_of(rendered("postgres-secret"))[1]["env"]}
    assert own["ATTEST_DB"]["valueFrom"]["secretKeyRef"] == {"name": "my-db", "key": "url"}
    assert "ATTEST_DB" not in {e["name"] for e in pod_of(rendered("default"))[1]["env"]}


def test_monitoring_objects_scrape_the_ops_port_over_verified_tls() -> None:
    objects = by_name(rendered("monitoring"))
    monitor = objects[f"ServiceMonitor/{RELEASE}"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "ops" and endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {
        "serverName": f"{RELEASE}-ops.{NAMESPACE}.svc",
        "ca": {"secret": {"name": f"{RELEASE}-tls", "key": "ca.crt"}},
    }
    selected = [
        k for k, d in objects.items()
        if d["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()
    ]  # fmt: skip
    assert selected == [f"Service/{RELEASE}-ops"]
    rules = yaml.safe_load((CHART / "observability" / "prometheus-rules.yaml").read_text())
    assert objects[f"PrometheusRule/{RELEASE}"]["spec"] == rules
    dashboard = objects[f"ConfigMap/{RELEASE}-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["data"]["attest-admission.json"].strip() == (
        (CHART / "observability" / "grafana-dashboard.json").read_text().strip()
    )
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert not [k for k in by_name(rendered("default")) if k.startswith(kind)]


def test_extra_values_reach_the_pod() -> None:
    objects = by_name(rendered("extra-policies-and-config"))
    pod, container = pod_of(rendered("extra-policies-and-config"))
    assert container["args"][-2:] == ["--read-timeout", "5"]
    assert {"name": "TZ", "value": "UTC"} in container["env"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["policies"]["configMap"]["name"] == f"{RELEASE}-policies"
    assert objects[f"ConfigMap/{RELEASE}-policies"]["data"]["extra.rego"] == REGO
    assert volumes["registry-auth"]["secret"]["items"] == [
        {"key": ".dockerconfigjson", "path": ".dockerconfigjson"}
    ]
    small = pod_of(rendered("one-replica-small"))[1]
    assert small["resources"]["limits"] == {"memory": "512Mi"}
    assert arg(small, "--workers") == "1" and arg(small, "--threads") == "4"
    digest = pod_of(rendered("image-digest"))[1]["image"]
    assert digest == "ghcr.io/attest-dev/attest@sha256:" + "ab" * 32


# --- the values schema and the chart's own checks ----------------------------------------------

BAD_VALUES = [
    ({"replica": 3}, "replica"),
    ({"tls": {"sorce": "helm"}}, "sorce"),
    ({"webhook": {"failurePolicy": "Maybe"}}, "failurePolicy"),
    ({"webhook": {"timeoutSeconds": 31}}, "timeoutSeconds"),
    ({"replicas": "two"}, "replicas"),
    ({"image": {"digest": "sha256:abc"}}, "digest"),
    ({"decisions": {"database": {"url": "mysql://db/attest"}}}, "url"),
    ({"decisions": {"signingKey": {"passwrodKey": "password"}}}, "passwrodKey"),
    ({"tls": {"source": "vault"}}, "source"),
    ({"serviceMonitor": {"enabled": "yes"}}, "enabled"),
    ({"keys": {"files": {"../escape": "x"}}}, "escape"),
]


@pytest.mark.parametrize(("values", "named"), BAD_VALUES, ids=[n for _, n in BAD_VALUES])
def test_the_values_schema_rejects_typos_and_bad_values(values: dict[str, Any], named: str) -> None:
    done = template({**KEY, **values})
    assert done.returncode != 0 and not done.stdout
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
    assert named in done.stderr, done.stderr


CHART_REFUSALS = [
    ({}, "config.imagePolicies[0].authorities[0].key.path /etc/attest/keys/cosign.pub: no such file in keys.files"),
    ({**KEY, "config": {"imagePolicies": [{"name": "p", "images": ["**"], "authorities": [
        {"name": "k", "key": {"path": "/etc/attest/keys/cosgn.pub"}}]}]}},
     "key.path /etc/attest/keys/cosgn.pub: no such file in keys.files"),
    ({**KEY, "config": {"imagePolicies": [{"name": "p", "images": ["**"], "authorities": [
        {"name": "k", "keyless": {"issuer": "i", "subject": "s", "trustedRoot": "/etc/attest/roots/r.json"}}]}]}},
     "keyless.trustedRoot /etc/attest/roots/r.json: no such file in trustedRoots.files"),
    ({**KEY, "tls": {"source": "existing"}}, "tls.source existing needs tls.existingSecret"),
    ({**KEY, "tls": {"source": "existing", "existingSecret": "t", "caBundle": "x"}},
     "needs clientAuth.existingSecret"),
    ({**KEY, "decisions": {"database": {"url": "postgresql://x/y", "existingSecret": "s"}}},
     "give url or existingSecret, not both"),
]  # fmt: skip


@pytest.mark.parametrize(("values", "message"), CHART_REFUSALS, ids=range(len(CHART_REFUSALS)))
def test_the_chart_refuses_a_config_naming_files_it_does_not_mount(
    values: dict[str, Any], message: str
) -> None:
    done = template(values)
    assert done.returncode != 0 and not done.stdout
    first = done.stderr.splitlines()[0]  # helm adds only its --debug hint after it
    assert first.startswith("Error: execution error at") and message in first, done.stderr


def test_an_existing_keys_secret_needs_no_files() -> None:
    objects = by_name(render({"keys": {"existingSecret": "ci-keys"}}))
    volumes = {v["name"]: v for v in pod_of(list(objects.values()))[0]["volumes"]}
    assert volumes["keys"]["secret"]["secretName"] == "ci-keys"


# --- one image value ------------------------------------------------------------------------------


def test_the_image_is_one_value_for_build_chart_and_readme() -> None:
    """pyproject's version is the chart's appVersion and the image tag; values.yaml's
    repository is what `make image` tags and what the README names."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    repository = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["repository"]
    assert chart["appVersion"] == version
    _pod, container = pod_of(rendered("default"))
    assert container["image"] == f"{repository}:{version}"
    make = ROOT / "Makefile"
    dry = __import__("subprocess").run(
        ["make", "-s", "-n", "image"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert f"-t {repository}:{version}" in dry.stdout, dry.stdout
    assert "image" in make.read_text()
    readme = (ROOT / "README.md").read_text()
    assert f"{repository}:{version}" in readme
    assert "example-org/attest" not in readme + (ROOT / "Dockerfile").read_text()


EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_lint_and_validate(example: Path, tmp_path: Path) -> None:
    """The example values files render and strictly validate (their admission of an image made
    by attest pipeline: tests/peers/test_chart_cluster.py)."""
    key = tmp_path / "key.yaml"
    key.write_text(yaml.safe_dump(KEY))
    done = helm("lint", "--strict", str(CHART), f"--values={example}", f"--values={key}")
    assert done.returncode == 0, done.stdout + done.stderr
    for doc in render(files=[example, key]):
        if (doc["apiVersion"], doc["kind"]) not in CRD_KINDS:
            validate_strictly(doc)
    assert "helm install" in example.read_text()  # each says how it is used


def test_the_runbooks_helm_exemption_keeps_the_release_namespace_exempt() -> None:
    """webhook-down.md's `--set 'webhook.excludeNamespaces={…}'`, as written."""
    text = (ROOT / "docs" / "runbooks" / "webhook-down.md").read_text()
    setting = re.search(r"--set '(webhook\.excludeNamespaces=\{[^}]*\})'", text)
    assert setting is not None
    docs = render(KEY, extra=["--set", setting.group(1)])
    (hook,) = by_name(docs)[f"ValidatingWebhookConfiguration/{RELEASE}"]["webhooks"]
    values = hook["namespaceSelector"]["matchExpressions"][0]["values"]
    assert values == ["kube-system", "ingress-nginx", NAMESPACE]
