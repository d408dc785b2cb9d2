"""The Dockerfile really builds (buildah, no Docker engine) into a small non-root webhook image."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT
from tests.deploy.images import Buildah, base_image_layout

pytestmark = pytest.mark.slow


def _image() -> tuple[str, str]:
    """The one image value: `make image`'s IMAGE and the version it labels (the chart's
    image.repository and appVersion)."""
    variables = subprocess.run(
        ["make", "-s", "--eval=print-image: ; @echo $(IMAGE) $(IMAGE_VERSION)", "print-image"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    return variables[0], variables[1]


TAG, VERSION = _image()


@pytest.fixture(scope="module")
def built() -> Iterator[Buildah]:
    started = time.monotonic()
    base = base_image_layout()
    buildah = Buildah()
    try:
        buildah.bud(ROOT, TAG, f"BASE_IMAGE={buildah.local_base(base)}", f"VERSION={VERSION}")
        print(f"image built in {time.monotonic() - started:.0f}s (base {base})")
        yield buildah
    finally:
        buildah.remove()


def test_image_config_is_non_root_with_the_webhook_entrypoint(built: Buildah) -> None:
    config = built.image_config(TAG)["config"]
    user = config["User"]
    assert user.split(":")[0] not in ("", "0", "root")
    assert config["Entrypoint"] == ["attest"]
    assert config["Cmd"][:2] == ["admission", "serve"]
    assert "--tls-cert" in config["Cmd"] and "--config" in config["Cmd"]
    assert set(config["ExposedPorts"]) == {"8443/tcp", "8444/tcp", "8445/tcp"}  # + ops, probes
    assert config["Cmd"][config["Cmd"].index("--web-port") + 1] == "8444"
    assert config["Cmd"][config["Cmd"].index("--probe-port") + 1] == "8445"
    assert any(env.startswith("PATH=/opt/attest/venv/bin:") for env in config["Env"])
    assert config["Labels"]["org.opencontainers.image.version"] == VERSION
    assert TAG.endswith(f":{VERSION}") and VERSION != "dev"


def test_attest_runs_inside_the_image_as_the_unprivileged_user(built: Buildah) -> None:
    out = built.run_in(TAG, "attest", "--help")
    assert "Usage: attest" in out and "decisions" in out
    assert built.run_in(TAG, "id", "-u").strip() == "65532"
    # the webhook's server stack is installed, the build's leftovers are not
    modules = built.run_in(
        TAG,
        "python3",
        "-c",
        "import gunicorn, flask, prometheus_client, sqlalchemy, psycopg, admission.decisions.store;"
        "import importlib.util as u; print(u.find_spec('pip') is None)",
    )
    assert modules.strip() == "True"
    listing = built.run_in(
        TAG,
        "sh",
        "-c",
        "test -e /src || echo no-src; test -w /var/lib/attest && echo db-dir-writable",
    )
    assert "no-src" in listing and "db-dir-writable" in listing


def test_the_built_in_policies_work_from_the_installed_package(built: Buildah) -> None:
    """DEFAULT_BUNDLE resolves to the wheel's data files: no checkout, no extra copy."""
    where = built.run_in(
        TAG, "python3", "-c", "from admission.config import DEFAULT_BUNDLE; print(DEFAULT_BUNDLE)"
    ).strip()
    assert where == "/opt/attest/venv/share/attest/policies"
    tested = built.run_in(TAG, "attest", "policy", "test", where)
    assert "PASS:" in tested and "FAIL" not in tested
    manifest = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: apps}\n"
        "spec: {containers: [{name: c, image: registry.example.com/app:1}]}\n"
    )
    review = built.run_in(
        TAG,
        "sh",
        "-c",
        f"printf '{manifest}' > /tmp/pod.yaml; attest admission review /tmp/pod.yaml; echo exit=$?",
    )
    # denied (exit 1) by the built-in default: the policy bundle loaded and evaluated
    assert "exit=1" in review and "matches no image policy" in review, review


def test_the_image_uses_the_given_base(built: Buildah) -> None:
    base_layers = 1  # the mmdebstrap root filesystem
    layers = built.image_config(TAG)["rootfs"]["diff_ids"]
    assert len(layers) == base_layers + 1  # one layer of ours on top (--layers=false)
    os_release = built.run_in(TAG, "cat", "/etc/os-release")
    assert "VERSION_CODENAME=bookworm" in os_release
