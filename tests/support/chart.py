"""charts/attest with the real ``helm``, and its Deployment's pod run as a local process.

``render`` is ``helm template`` with values given as a dict.  ``PodOnHost`` does what
the kubelet would do for the chart's one container, as far as the webhook can tell:
every ConfigMap and Secret volume laid out under a local root as the kubelet lays it
out (``tests/support/kubelet.py``), the container's own ``args`` with the mount
paths (``/etc/attest/…``, ``/var/lib/attest``) moved under that root, its ``env``
resolved from the same objects, and the ports moved to free ones on ``host``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from attest.testing import free_port
from tests.support.kubelet import Volume
from tests.support.peers import peer_binary

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "attest"
RELEASE = "attest-admission"
NAMESPACE = "attest-system"
MOUNT_PREFIXES = ("/etc/attest", "/var/lib/attest")


def helm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real helm (output captured; never raises on failure), with a private home."""
    home = Path(tempfile.gettempdir()) / f"attest-helm-home-{os.getuid()}"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return subprocess.run(
        [peer_binary("helm"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def values_file(values: Mapping[str, Any], directory: Path) -> Path:
    handle, name = tempfile.mkstemp(prefix="values-", suffix=".yaml", dir=directory)
    with os.fdopen(handle, "w") as out:
        yaml.safe_dump(dict(values), out)
    return Path(name)


def template(
    values: Mapping[str, Any] | None = None,
    *,
    files: Sequence[Path] = (),
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart (values from ``files``, then ``values``)."""
    with tempfile.TemporaryDirectory(prefix="attest-values-") as work:
        args = [f"--values={f}" for f in files]
        if values:
            args.append(f"--values={values_file(values, Path(work))}")
        return helm("template", release, str(CHART), "--namespace", namespace, *args, *extra)


def render(
    values: Mapping[str, Any] | None = None,
    *,
    files: Sequence[Path] = (),
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    extra: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The documents ``helm template`` renders; fails the test with helm's error."""
    done = template(values, files=files, release=release, namespace=namespace, extra=extra)
    assert done.returncode == 0, f"helm template failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_name(documents: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``Kind/name`` → document."""
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in documents}


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's files, from ``data`` (base64) and ``stringData``."""
    found = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    found.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return found


def local_path(path: str, root: Path) -> str:
    """An in-container path under one of the chart's mounts, moved under ``root``."""
    for prefix in MOUNT_PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return str(root) + path
    return path


@dataclass
class PodOnHost:
    """The chart's webhook container as a local process (see the module docstring)."""

    objects: dict[str, dict[str, Any]]
    root: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    probe_port: int = field(default_factory=free_port)
    pod_name: str = "attest-admission-0"

    @property
    def deployment(self) -> dict[str, Any]:
        (found,) = [d for k, d in self.objects.items() if k.startswith("Deployment/")]
        return found

    @property
    def container(self) -> dict[str, Any]:
        (container,) = self.deployment["spec"]["template"]["spec"]["containers"]
        return container

    def _source(self, kind: str, name: str) -> dict[str, bytes]:
        document = self.objects.get(f"{kind}/{name}")
        assert document is not None, f"the pod mounts {kind} {name}, which is not there"
        if kind == "Secret":
            return secret_data(document)
        return {k: v.encode() for k, v in (document.get("data") or {}).items()}

    def lay_out(self) -> None:
        """Every volume at its mount path under ``root`` (ConfigMaps and Secrets as the
        kubelet writes them, emptyDirs as empty directories)."""
        volumes = {v["name"]: v for v in self.deployment["spec"]["template"]["spec"]["volumes"]}
        for mount in self.container["volumeMounts"]:
            volume = volumes[mount["name"]]
            target = Path(local_path(mount["mountPath"], self.root))
            if "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
                continue
            if "configMap" in volume:
                source = volume["configMap"]
                missing = f"ConfigMap/{source['name']}" not in self.objects
                # an optional ConfigMap that does not exist is an empty volume
                data = (
                    {}
                    if missing and source.get("optional")
                    else self._source("ConfigMap", source["name"])
                )
            else:
                source = volume["secret"]
                data = self._source("Secret", source["secretName"])
            if "items" in source:
                data = {item["path"]: data[item["key"]] for item in source["items"]}
            if volume["name"] == "config":  # the config names files by their in-container paths
                data = {k: self._localised_config(v.decode()).encode() for k, v in data.items()}
            Volume(target).write(dict(data))

    def _localised_config(self, text: str) -> str:
        for prefix in MOUNT_PREFIXES:
            text = text.replace(prefix + "/", str(self.root) + prefix + "/")
        return text

    def env(self) -> dict[str, str]:
        resolved = {}
        for variable in self.container.get("env", []):
            if "value" in variable:
                resolved[variable["name"]] = variable["value"]
                continue
            source = variable["valueFrom"]
            if "fieldRef" in source:
                assert source["fieldRef"]["fieldPath"] == "metadata.name"
                resolved[variable["name"]] = self.pod_name
            else:
                ref = source["secretKeyRef"]
                resolved[variable["name"]] = self._source("Secret", ref["name"])[
                    ref["key"]
                ].decode()
        resolved.setdefault("ATTEST_DB", local_path("/var/lib/attest/decisions.db", self.root))
        return resolved

    def command(self) -> list[str]:
        """``attest`` + the container's args, mount paths moved, ports moved to ours."""
        args = [local_path(a, self.root) for a in self.container["args"]]
        ports = {p["name"]: p["containerPort"] for p in self.container["ports"]}
        moved = {
            str(ports["probes"]): str(self.probe_port),
            str(ports.get("ops", -1)): str(self.web_port),
        }
        for flag in ("--probe-port", "--web-port"):
            if flag in args:
                at = args.index(flag) + 1
                args[at] = moved[args[at]]
        return [sys.executable, "-m", "attest", *args, "--bind", f"{self.host}:{self.port}"]

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        self.lay_out()
        return subprocess.Popen(
            self.command(),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env()},
        )


def stored_objects(kubectl: Any, namespace: str) -> dict[str, dict[str, Any]]:
    """The Deployment, ConfigMaps and Secrets of ``namespace`` as the API server stores them."""
    done = kubectl("get", "deployment,configmap,secret", "-n", namespace, "-o", "json")
    assert done.returncode == 0, done.stderr
    return by_name(json.loads(done.stdout)["items"])
