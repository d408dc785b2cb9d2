"""attest's cosign-parity commands next to the real cosign, on the real registry.

``attest tree`` must show the manifests and layers ``cosign tree`` shows, for what
either tool stored; the README's "I use cosign" quick path must run as written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import CYCLONEDX, PROVENANCE
from tests.peers.conftest import ENV, PASSWORD, Cosign, KeyPair
from tests.support.peers import peer_binary

README = Path(__file__).resolve().parents[2] / "README.md"
UNLOGGED = ("--use-signing-config=false", "--tlog-upload=false", "-y")


def _cosign_tree(output: str) -> dict[str, list[str]]:
    """cosign tree's text: each manifest location (``repo:tag`` or ``repo@digest``) with
    its layer digests, and the header naming it."""
    entries: dict[str, list[str]] = {}
    current = ""
    for line in output.splitlines():
        if "for an image tag: " in line or "via OCI referrer: " in line:
            current = line.rsplit(": ", 1)[1].strip()
            entries[current] = []
        elif match := re.search(r"🍒 (sha256:[0-9a-f]{64})", line):
            entries[current].append(match.group(1))
    return {location: sorted(layers) for location, layers in entries.items()}


def test_attest_tree_shows_what_cosign_tree_shows(
    cli, cosign: Cosign, cosign_keys: KeyPair, registry, repo, push_image, attest_keys, tmp_path
) -> None:
    digest = push_image(repo, "v1").digest
    ref = f"{registry.address}/{repo.repository}@{digest}"
    sbom, provenance = tmp_path / "sbom.json", tmp_path / "provenance.json"
    sbom.write_text(json.dumps(CYCLONEDX))
    provenance.write_text(json.dumps(PROVENANCE))
    # cosign stores bundles (referrers) and an attached SBOM; attest the legacy tags.
    cosign.ok("sign", "--key", cosign_keys.private, *UNLOGGED, ref)
    cosign.ok("attest", "--key", cosign_keys.private, "--type", "cyclonedx",
              "--predicate", str(sbom), *UNLOGGED, ref)  # fmt: skip
    cosign.ok("attach", "sbom", "--sbom", str(sbom), "--type", "cyclonedx", ref)
    mine = attest_keys()
    legacy = ["--key", mine.private, "--tlog-upload=false", "--legacy"]
    assert cli("sign", ref, *legacy, env=ENV).exit_code == 0
    assert cli("attest", ref, *legacy, "--predicate", str(provenance),
               "--type", "slsaprovenance1", env=ENV).exit_code == 0  # fmt: skip

    theirs = _cosign_tree(cosign.ok("tree", ref).stdout)
    listed = cli("tree", ref, "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    ours = {
        entry["location"]: sorted(layer["digest"] for layer in entry["layers"])
        for entry in listed.json()["attached"]
    }
    assert ours == theirs
    assert len(ours) == 5  # two referrers, .sig, .att, .sbom
    kinds = {
        (layer["kind"], layer["predicateType"], layer["sbom"])
        for entry in listed.json()["attached"]
        for layer in entry["layers"]
    }
    assert kinds == {
        ("signature", "https://sigstore.dev/cosign/sign/v1", False),
        ("attestation", "https://cyclonedx.org/bom", True),
        ("signature", None, False),
        ("attestation", "https://slsa.dev/provenance/v1", False),
        ("sbom", None, True),
    }
    text = cli("tree", ref).stdout
    assert "├── SBOMs (2)" in text and "attached application/vnd.cyclonedx+json, unsigned" in text
    # download sbom: the attached one and the attested one; only the latter verifies.
    downloaded = cli("download", "sbom", ref)
    assert [json.loads(line) for line in downloaded.stdout.splitlines()] == [CYCLONEDX] * 2
    verified = cli("download", "sbom", ref, "--key", cosign_keys.public, "--insecure-ignore-tlog")
    assert verified.exit_code == 0, verified.stderr
    assert [json.loads(line) for line in verified.stdout.splitlines()] == [CYCLONEDX]


def test_cosign_verifies_what_attest_copied_and_promoted(
    cli, cosign: Cosign, cosign_keys: KeyPair, registry, repo, push_image, attest_keys
) -> None:
    digest = push_image(repo, "v1").digest
    ref = f"{registry.address}/{repo.repository}@{digest}"
    cosign.ok("sign", "--key", cosign_keys.private, *UNLOGGED, ref)
    promoter = attest_keys("promoter")
    destination = f"{registry.address}/{repo.repository}-prod:v1"
    promoted = cli(
        "promote", ref, destination, "--key", cosign_keys.public, "--insecure-ignore-tlog",
        "--signing-key", promoter.private, "--tlog-upload=false", env=ENV,
    )  # fmt: skip
    assert promoted.exit_code == 0, promoted.stderr
    cosign.ok("verify", "--key", cosign_keys.public, "--insecure-ignore-tlog", destination)
    cosign.ok("verify-attestation", "--key", promoter.public, "--insecure-ignore-tlog",
              "--type", "https://attest.dev/promotion/v1", destination)  # fmt: skip


def _readme_block(marker: str) -> str:
    text = README.read_text()
    start = text.index(f"<!-- quickpath:{marker} -->")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.DOTALL)
    assert block, f"README: no sh block after the {marker} marker"
    return block.group(1)


def test_readme_cosign_quick_path_runs_as_written(
    registry, repo, push_image, tmp_path: Path
) -> None:
    digest = push_image(repo, "v1").digest
    image = f"{registry.address}/{repo.repository}:v1"
    destination = f"{registry.address}/{repo.repository}-copy:v1"
    script = _readme_block("cosign")
    bin_dir = Path(sys.executable).parent
    cosign_dir = Path(peer_binary("cosign")).parent
    env = {
        "PATH": f"{bin_dir}:{cosign_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "COSIGN_PASSWORD": PASSWORD,
        "IMAGE": image,
        "DEST": destination,
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Supply chain artifacts of {registry.address}/{repo.repository}@{digest}" in done.stdout
    assert json.loads((tmp_path / "verified.cdx.json").read_text())["bomFormat"] == "CycloneDX"
    assert (tmp_path / "cosign.key").exists() and os.path.getsize(tmp_path / "cosign.pub") > 0
    # The last step cleaned the copy's signatures: attest finds none there now, the
    # SBOM attestation stays. (cosign verify would still pass: cosign v3 counts any
    # bundle referrer the key signed, attestations included, as a signature.)
    left = subprocess.run(
        [sys.executable, "-m", "attest", "verify", "--key", str(tmp_path / "cosign.pub"),
         "--insecure-ignore-tlog", destination, "-o", "json"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert left.returncode == 1 and json.loads(left.stdout)["signatures"] == [], left.stderr
    tree = subprocess.run(
        [sys.executable, "-m", "attest", "tree", destination, "-o", "json"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    kinds = {layer["kind"] for e in json.loads(tree.stdout)["attached"] for layer in e["layers"]}
    assert kinds == {"attestation"}
