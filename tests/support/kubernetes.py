"""A real Kubernetes control plane for tests: etcd and kube-apiserver on free loopback ports.

No kubelets and no controllers: admission happens in the API server, which is all
the webhook tests need. The fixture makes its own PKI (cluster CA, the API
server's serving certificate, an admin client certificate for ``kubectl`` and the
Python client, a service-account signing key) and an admission configuration
whose kubeconfig gives the API server a client certificate for every webhook it
calls (:attr:`Cluster.webhook_client_cert`, issued by :attr:`Cluster.webhook_client_ca`),
so a webhook that requires mTLS can verify the API server.

Namespaces made with :meth:`Cluster.namespace` get their ``default``
ServiceAccount, which the ServiceAccount admission plugin requires for Pods and
which only the (absent) controller manager would otherwise create.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from attest.testing import free_port, stop_process
from tests.support.peers import peer_binary

START_TIMEOUT = 120.0
KUBECTL_TIMEOUT = 60.0


@dataclass(frozen=True)
class Issued:
    """A certificate and its key (PEM files)."""

    cert: Path
    key: Path


class Authority:
    """A throwaway CA that issues server and client certificates into ``directory``."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            self._builder(self.name, self.key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.cert = directory / f"{name}-ca.pem"
        self.cert.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def _builder(
        self, subject: x509.Name, public: Any, now: dt.datetime
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )

    def issue(
        self,
        stem: str,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        server: bool = False,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        subject += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        builder = self._builder(x509.Name(subject), key.public_key(), dt.datetime.now(dt.UTC))
        if server:
            names: list[x509.GeneralName] = [
                x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default.svc")
            ]
            names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        certificate = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(
            self.key, hashes.SHA256()
        )
        issued = Issued(self.directory / f"{stem}.pem", self.directory / f"{stem}.key")
        issued.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return issued


def _launch(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    stop_process(process, timeout=20)


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-20:])


@dataclass
class Cluster:
    """etcd + kube-apiserver in ``workdir``; ``start()`` returns once ``/readyz`` is ok."""

    workdir: Path
    port: int = field(default_factory=free_port)
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    etcd: subprocess.Popen[bytes] | None = None
    apiserver: subprocess.Popen[bytes] | None = None
    started_seconds: float = 0.0
    # e.g. --enable-aggregator-routing=true: webhooks referenced by Service are then called
    # at the Service's EndpointSlice addresses (a process on this host) instead of its
    # cluster IP, which nothing serves here
    extra_args: tuple[str, ...] = ()

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    def _pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)
        self.ca = Authority(pki, "cluster")
        self.serving = self.ca.issue("apiserver", "kube-apiserver", server=True)
        self.admin = self.ca.issue("admin", "attest-test-admin", organizations=["system:masters"])
        # The API server's identity towards webhooks, from a CA of its own (a webhook
        # trusts this CA only, not every client certificate of the cluster).
        self.webhook_client_ca = Authority(pki, "webhook-clients")
        self.webhook_client_cert = self.webhook_client_ca.issue(
            "apiserver-webhook-client", "kube-apiserver-webhook-client"
        )
        account_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.service_account_key = pki / "service-account.key"
        self.service_account_key.write_bytes(
            account_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self.service_account_pub = pki / "service-account.pub"
        self.service_account_pub.write_bytes(
            account_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def _admission_config(self) -> Path:
        """The API server's client certificate for every webhook (users name ``*``)."""
        kubeconfig = self.workdir / "webhook-client.kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "users": [
                        {
                            "name": "*",
                            "user": {
                                "client-certificate": str(self.webhook_client_cert.cert),
                                "client-key": str(self.webhook_client_cert.key),
                            },
                        }
                    ],
                }
            )
        )
        webhook = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": str(kubeconfig),
        }
        config = self.workdir / "admission-configuration.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "apiserver.config.k8s.io/v1",
                    "kind": "AdmissionConfiguration",
                    "plugins": [
                        {"name": "ValidatingAdmissionWebhook", "configuration": webhook},
                        {"name": "MutatingAdmissionWebhook", "configuration": webhook},
                    ],
                }
            )
        )
        return config

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "test",
                            "cluster": {
                                "server": self.server,
                                "certificate-authority": str(self.ca.cert),
                            },
                        }
                    ],
                    "users": [
                        {
                            "name": "admin",
                            "user": {
                                "client-certificate": str(self.admin.cert),
                                "client-key": str(self.admin.key),
                            },
                        }
                    ],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
                    "current-context": "test",
                }
            )
        )

    def start(self) -> Cluster:
        began = time.monotonic()
        self._pki()
        self._write_kubeconfig()
        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{self.etcd_peer_port}"
        self.etcd = _launch(
            [
                peer_binary("etcd"),
                "--name=test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=test={peer_url}",
                "--unsafe-no-fsync",  # throwaway data: do not wait for the disk
                "--log-level=error",
            ],
            self.workdir / "etcd.log",
        )
        self.apiserver = _launch(
            [
                peer_binary("kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--tls-cert-file={self.serving.cert}",
                f"--tls-private-key-file={self.serving.key}",
                f"--client-ca-file={self.ca.cert}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={self.service_account_pub}",
                f"--service-account-signing-key-file={self.service_account_key}",
                f"--admission-control-config-file={self._admission_config()}",
                "--endpoint-reconciler-type=none",  # loopback: no kubernetes Endpoints
                "--profiling=false",
                "--v=1",
                *self.extra_args,
            ],
            self.workdir / "kube-apiserver.log",
        )
        self._wait_ready(began)
        self.started_seconds = time.monotonic() - began
        return self

    def _wait_ready(self, began: float) -> None:
        # per request: a session's verify loses to REQUESTS_CA_BUNDLE from the environment
        tls = {"cert": (str(self.admin.cert), str(self.admin.key)), "verify": str(self.ca.cert)}
        last = ""
        while time.monotonic() - began < START_TIMEOUT:
            for name, process in (("etcd", self.etcd), ("kube-apiserver", self.apiserver)):
                if process is not None and process.poll() is not None:
                    log = self.workdir / f"{name}.log"
                    self.stop()
                    raise RuntimeError(f"{name} exited ({process.returncode}):\n{_tail(log)}")
            try:
                response = requests.get(f"{self.server}/readyz", timeout=5, **tls)
                if response.status_code == 200:
                    return
                last = response.text[-500:]
            except requests.RequestException as err:
                last = str(err)
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"kube-apiserver not ready within {START_TIMEOUT:.0f}s ({last}):\n"
            f"{_tail(self.workdir / 'kube-apiserver.log')}"
        )

    def stop(self) -> None:
        _stop(self.apiserver)
        _stop(self.etcd)

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = KUBECTL_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl`` as the admin (output captured, never raises on failure)."""
        return subprocess.run(
            [peer_binary("kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "KUBECACHEDIR": str(self.workdir / "kubectl-cache")},
        )

    def apply(
        self, *documents: dict[str, Any], extra: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` of ``documents`` (a List), with ``extra`` flags."""
        listing = {"apiVersion": "v1", "kind": "List", "items": list(documents)}
        return self.kubectl("apply", *extra, "-f", "-", input=json.dumps(listing))

    def api_client(self) -> Any:
        """A ``kubernetes`` Python client ApiClient logged in as the admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig), context="test")

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        """Create namespace ``name`` (if absent) and its ``default`` ServiceAccount."""
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels or {}},
        }
        account = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": name},
        }
        done = self.apply(namespace)
        assert done.returncode == 0, done.stderr
        done = self.apply(account)
        assert done.returncode == 0, done.stderr
