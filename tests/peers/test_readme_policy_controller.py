"""The README's "I use policy-controller" quick path runs as written.

The shell block is taken from README.md itself and run by bash, with the real
cosign (which made ``release.pub`` and signed ``IMAGE`` in the real registry), the
real kubectl (``create deployment --dry-run=client``) and the ``attest`` command of
this checkout on ``PATH``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attest.oci.registry import RegistryRepository
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.testing.images import simple_image
from tests.conftest import ROOT
from tests.peers.conftest import Cosign
from tests.support.peers import peer_binary

HEADING = "## I use policy-controller"


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    assert HEADING in text, "the README lost its policy-controller quick path"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "no ```sh block in the policy-controller quick path"
    return match.group(1)


def run_block(workdir: Path, image: str) -> subprocess.CompletedProcess[str]:
    tools = [os.path.dirname(peer_binary("kubectl")), os.path.dirname(sys.executable)]
    env = {"PATH": os.pathsep.join([*tools, "/usr/bin", "/bin"]), "HOME": str(workdir),
           "IMAGE": image}  # fmt: skip
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_block()],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_policy_controller_quick_path_runs_as_written(registry, tmp_path: Path) -> None:
    home = tmp_path / "signer"
    home.mkdir()
    cosign = Cosign(peer_binary("cosign"), home)
    cosign.ok("generate-key-pair", "--output-key-prefix", "release")
    client = RegistryClient(registry.address, options=RegistryOptions(timeout=60))
    try:
        pushed = {}
        for name in ("signed", "unsigned"):
            store = RegistryRepository(client, f"readme-cip/{name}")
            simple_image(tmp_path, marker=name).build(tmp_path / f"b-{name}").push(store, "1.0")
            pushed[name] = f"{registry.address}/readme-cip/{name}:1.0"
    finally:
        client.close()
    cosign.ok("sign", "--key", "release.key", "--use-signing-config=false",
              "--tlog-upload=false", "-y", pushed["signed"])  # fmt: skip

    results = {}
    for name, image in pushed.items():
        workdir = tmp_path / f"user-{name}"
        workdir.mkdir()
        shutil.copy(home / "release.pub", workdir / "release.pub")
        results[name] = run_block(workdir, image)
    admitted, denied = results["signed"], results["unsigned"]
    assert admitted.returncode == 0, admitted.stdout + admitted.stderr
    assert admitted.stdout.startswith("ADMITTED: Deployment default/app (CREATE)")
    assert "[ClusterImagePolicy release: verified]" in admitted.stdout
    assert denied.returncode == 1, denied.stdout + denied.stderr
    assert "ClusterImagePolicy release: authority authority-0: no signature verified" in (
        denied.stdout
    )
    assert not denied.stderr


@pytest.mark.parametrize("field", ["kind: ClusterImagePolicy", "secretRef", "--config config/"])
def test_the_block_is_the_documented_path(field: str) -> None:
    assert field in readme_block()
