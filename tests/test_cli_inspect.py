from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from attest import __version__
from attest.oci.layout import LayoutStore
from tests.conftest import docker_config


def test_help_and_version(cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0 and "inspect" in result.stdout and "version" in result.stdout
    assert cli("version").stdout.strip() == f"attest {__version__}"


def test_inspect_registry_image_json(cli, registry, repo, push_image) -> None:
    digest = push_image(repo, "v1").digest
    result = cli("inspect", f"{registry.address}/{repo.repository}:v1", "--output", "json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["digest"] == digest
    assert data["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert data["config"]["labels"] == {"marker": "one"}
    assert data["config"]["entrypoint"] == ["/bin/app"]
    assert [layer["size"] for layer in data["layers"]] == [
        layer.size for layer in repo.fetch_manifest(digest).parsed.layers
    ]
    assert data["size"] == sum(layer["size"] for layer in data["layers"])
    assert all(layer["diffID"].startswith("sha256:") for layer in data["layers"])


def test_inspect_index_shows_platforms_and_selects(cli, registry, repo, push_image) -> None:
    push_image(repo, "multi", platforms=("amd64", "arm64"))
    ref = f"{registry.address}/{repo.repository}:multi"
    data = cli("inspect", ref, "-o", "json").json()
    assert data["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["platform"] for m in data["manifests"]] == ["linux/amd64", "linux/arm64"]
    assert data["platform"] == "linux/amd64"
    arm = cli("inspect", ref, "--platform", "linux/arm64", "-o", "json").json()
    assert arm["platform"] == "linux/arm64" and arm["config"]["architecture"] == "arm64"
    assert arm["manifestDigest"] == data["manifests"][1]["digest"]
    text = cli("inspect", ref).stdout
    assert "Platforms:" in text and "* linux/amd64" in text
    missing = cli("inspect", ref, "--platform", "windows/amd64")
    assert missing.exit_code == 1
    assert (
        "no image for platform windows/amd64; available: linux/amd64, linux/arm64" in missing.stderr
    )


def test_inspect_layout_text(cli, tmp_path: Path, push_image) -> None:
    with LayoutStore(str(tmp_path / "img"), create=True) as store:
        digest = push_image(store, "demo").digest
    result = cli("inspect", f"oci:{tmp_path / 'img'}:demo")
    assert result.exit_code == 0
    assert f"Digest:      {digest}" in result.stdout
    assert "Layers:      2" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment", "code"),
    [
        (["inspect", "UPPER/case"], "repository name must be lowercase", 2),
        (
            ["inspect", "oci:/definitely/not/here"],
            "oci:/definitely/not/here: no such OCI layout directory",
            1,
        ),
        (["inspect", "x", "--platform", "linux"], "platform 'linux' is not OS/ARCH[/VARIANT]", 2),
        (["inspect"], "Missing argument 'IMAGE'", 2),
        (["nosuchcommand"], "No such command 'nosuchcommand'", 2),
    ],
)
def test_bad_input_one_line_errors(cli, args: list[str], fragment: str, code: int) -> None:
    result = cli(*args)
    assert result.exit_code == code
    assert result.stderr.startswith("attest: error: ")
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_registry_error_cases_via_cli(
    cli, registry, htpasswd_registry, tmp_path: Path, push_image
) -> None:
    from attest.testing import free_port

    missing = cli("inspect", f"{registry.address}/nothing/here:v1")
    assert missing.exit_code == 4  # EXIT_REGISTRY: distinct from a failed verification (1)
    assert f"{registry.address}/nothing/here:v1: not found (HTTP 404" in missing.stderr
    refused = cli("inspect", f"127.0.0.1:{free_port()}/x:y", "--timeout", "5")
    assert refused.exit_code == 4 and "cannot reach registry" in refused.stderr
    server, user, password = htpasswd_registry
    unauthenticated = cli(
        "inspect", f"{server.address}/auth/app:v1", "--registry-auth", str(tmp_path / "empty.json")
    )
    assert unauthenticated.exit_code == 2 and "no such file" in unauthenticated.stderr
    (tmp_path / "empty.json").write_text("{}")
    denied = cli(
        "inspect", f"{server.address}/auth/app:v1", "--registry-auth", str(tmp_path / "empty.json")
    )
    assert denied.exit_code == 4 and "requires authentication" in denied.stderr
    config = docker_config(tmp_path / "docker", server.address, user, password)
    ok = cli(
        "inspect", f"{server.address}/auth/app:v1", "--registry-auth", str(config), "-o", "json"
    )
    # the image may or may not exist depending on test order; authentication must succeed either way
    assert "requires authentication" not in ok.stderr and "rejected" not in ok.stderr
    env_ok = cli(
        "inspect", f"{server.address}/auth/app:v1", env={"DOCKER_CONFIG": str(config.parent)}
    )
    assert "requires authentication" not in env_ok.stderr


def test_subprocess_error_has_no_traceback_unless_debug(tmp_path: Path) -> None:
    attest = str(Path(sys.executable).with_name("attest"))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    plain = subprocess.run(
        [attest, "inspect", f"oci:{tmp_path}/nope"], capture_output=True, text=True, env=env
    )
    assert plain.returncode == 1
    assert plain.stderr == f"attest: error: oci:{tmp_path}/nope: no such OCI layout directory\n"
    debug = subprocess.run(
        [attest, "--debug", "inspect", f"oci:{tmp_path}/nope"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr
