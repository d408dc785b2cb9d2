"""attest tree / download / copy / clean against real registries and oci: layouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.conftest import CYCLONEDX, ENV

SLSA = "https://slsa.dev/provenance/v1"
BOM = "https://cyclonedx.org/bom"


def _layers(tree: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return sorted(
        (layer["kind"], entry["storage"], layer["predicateType"])
        for entry in tree["attached"]
        for layer in entry["layers"]
    )


def test_tree_lists_signatures_attestations_by_type_and_sboms_in_both_formats(
    cli, signed_image
) -> None:
    ref, _ = signed_image()
    listed = cli("tree", ref, "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    tree = listed.json()
    assert tree["digest"] == ref.split("@")[1]
    assert _layers(tree) == sorted(
        [
            ("signature", "referrer", "https://sigstore.dev/cosign/sign/v1"),
            ("attestation", "referrer", BOM),
            ("attestation", "referrer", SLSA),
            ("signature", "tag", None),
            ("attestation", "tag", BOM),
            ("attestation", "tag", SLSA),
        ]
    )
    assert [layer["sbom"] for e in tree["attached"] for layer in e["layers"]].count(True) == 2
    text = cli("tree", ref).stdout
    assert text.startswith(f"Supply chain artifacts of {ref}\n")
    assert "├── Signatures (2)" in text and "├── Attestations (4)" in text
    assert f"│   ├── {BOM} (2)" in text and f"│   ├── {SLSA} (2)" in text
    assert "├── SBOMs (2)" in text
    assert ".sig  sha256:" in text and ".att  sha256:" in text


def test_tree_of_an_image_with_nothing_attached(cli, registry, repo, push_image) -> None:
    ref = f"{registry.address}/{repo.repository}:v1"
    push_image(repo, "v1")
    shown = cli("tree", ref)
    assert shown.exit_code == 0 and "└── nothing attached" in shown.stdout


def test_download_signatures_attestations_and_sboms(cli, signed_image, tmp_path: Path) -> None:
    ref, signer = signed_image()
    signatures = cli("download", "signature", ref)
    assert signatures.exit_code == 0, signatures.stderr
    lines = [json.loads(line) for line in signatures.stdout.splitlines()]
    assert len(lines) == 2
    assert {"mediaType", "dsseEnvelope"} <= set(lines[0]) or {"mediaType", "dsseEnvelope"} <= set(
        lines[1]
    )
    assert any("Base64Signature" in line and "Payload" in line for line in lines)
    provenance = cli("download", "attestation", ref, "--predicate-type", "slsaprovenance1")
    assert provenance.exit_code == 0, provenance.stderr
    assert len(provenance.stdout.splitlines()) == 2  # the bundle and the legacy envelope
    sboms = cli("download", "sbom", ref)
    assert sboms.exit_code == 0, sboms.stderr
    assert [json.loads(line) for line in sboms.stdout.splitlines()] == [CYCLONEDX, CYCLONEDX]
    assert "not verified" in sboms.stderr
    out = tmp_path / "sbom.json"
    verified = cli(
        "download", "sbom", ref, "--key", signer.public, "--insecure-ignore-tlog",
        "--output-file", str(out),
    )  # fmt: skip
    assert verified.exit_code == 0, verified.stderr
    assert [json.loads(line) for line in out.read_text().splitlines()] == [CYCLONEDX] * 2


def test_download_sbom_fails_closed_when_nothing_verifies(
    cli, signed_image, make_keys, tmp_path: Path
) -> None:
    ref, _ = signed_image(formats=("bundle",))
    stranger = make_keys("stranger")
    out = tmp_path / "sbom.json"
    refused = cli(
        "download", "sbom", ref, "--key", stranger.public, "--insecure-ignore-tlog",
        "--output-file", str(out),
    )  # fmt: skip
    assert refused.exit_code == 1, refused.stderr
    assert "no SBOM attestation verifies" in refused.stderr and refused.stdout == ""
    assert not out.exists()
    assert cli("download", "signature", ref, "--key", stranger.public).exit_code == 2
    missing = cli("download", "attestation", ref, "--predicate-type", "spdxjson")
    assert missing.exit_code == 1 and "no attestation found" in missing.stderr


def test_copy_across_registries_keeps_digest_and_everything_attached(
    cli, signed_image, second_registry, request
) -> None:
    ref, signer = signed_image()
    destination = f"{second_registry.address}/copied/{request.node.name.lower()[:40]}:release"
    copied = cli("copy", ref, destination, "-o", "json")
    assert copied.exit_code == 0, copied.stderr
    result = copied.json()
    digest = ref.split("@")[1]
    assert result["digest"] == digest and len(result["attached"]) == 5  # 3 referrers, .sig, .att
    assert _layers(cli("tree", destination, "-o", "json").json()) == _layers(
        cli("tree", ref, "-o", "json").json()
    )
    verify = ["--key", signer.public, "--insecure-ignore-tlog"]
    assert cli("verify", f"{destination.rsplit(':', 1)[0]}@{digest}", *verify).exit_code == 0
    checked = cli("verify-attestation", destination, *verify, "--type", "slsaprovenance1")
    assert checked.exit_code == 0, checked.stdout + checked.stderr
    again = cli("copy", "-f", ref, destination)  # idempotent: nothing duplicated
    assert again.exit_code == 0
    assert len(cli("tree", destination, "-o", "json").json()["attached"]) == 5


def test_copy_signatures_only_and_a_multi_platform_index(
    cli, registry, repo, push_image, make_keys, second_registry
) -> None:
    index = push_image(repo, "multi", platforms=("amd64", "arm64"))
    ref = f"{registry.address}/{repo.repository}@{index.digest}"
    signer = make_keys()
    assert cli("sign", ref, "--key", signer.private, "--tlog-upload=false", env=ENV).exit_code == 0
    destination = f"{second_registry.address}/copied/multi:v1"
    copied = cli("copy", ref, destination, "--only", "sig", "-o", "json")
    assert copied.exit_code == 0, copied.stderr
    assert copied.json()["digest"] == index.digest
    for arch in ("amd64", "arm64"):
        shown = cli("inspect", destination, "--platform", f"linux/{arch}", "-o", "json")
        assert shown.exit_code == 0, shown.stderr
    assert cli("copy", ref, destination, "--only", "bogus").exit_code == 2


def test_copy_to_and_from_oci_layouts(cli, signed_image, second_registry, tmp_path: Path) -> None:
    ref, signer = signed_image()
    layout = f"oci:{tmp_path / 'layout'}:v1"
    assert cli("copy", ref, f"oci:{tmp_path / 'untagged'}").exit_code == 2  # no tag to give it
    to_layout = cli("copy", ref, layout)
    assert to_layout.exit_code == 0, to_layout.stderr
    assert _layers(cli("tree", layout, "-o", "json").json()) == _layers(
        cli("tree", ref, "-o", "json").json()
    )
    verify = ["--key", signer.public, "--insecure-ignore-tlog"]
    assert cli("verify", layout, *verify).exit_code == 0
    back = f"{second_registry.address}/from-layout/app:v1"
    assert cli("copy", layout, back).exit_code == 0
    assert cli("verify-attestation", back, *verify, "--type", "cyclonedx").exit_code == 0
    # clean works on layouts too: referrers unlisted, the .att tag dropped from index.json
    assert cli("clean", layout, "--type", "attestation", "-f").exit_code == 0
    left = cli("tree", layout, "-o", "json").json()
    assert {layer["kind"] for e in left["attached"] for layer in e["layers"]} == {"signature"}
    assert cli("verify", layout, *verify).exit_code == 0


def test_clean_by_type(cli, signed_image) -> None:
    ref, _ = signed_image()
    refused = cli("clean", ref)  # not a terminal, no --force: nothing deleted
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert len(cli("tree", ref, "-o", "json").json()["attached"]) == 5
    cleaned = cli("clean", ref, "--type", "signature", "--force")
    assert cleaned.exit_code == 0, cleaned.stderr
    assert len(cleaned.stdout.splitlines()) == 2
    left = cli("tree", ref, "-o", "json").json()
    assert {layer["kind"] for e in left["attached"] for layer in e["layers"]} == {"attestation"}
    assert cli("clean", ref, "--type", "sbom", "-f").exit_code == 0
    left = _layers(cli("tree", ref, "-o", "json").json())
    assert left == [("attestation", "referrer", SLSA)]  # the .att tag held an SBOM: gone whole
    assert cli("clean", ref, "--type", "all", "-f").exit_code == 0
    assert cli("tree", ref, "-o", "json").json()["attached"] == []
    assert cli("clean", ref, "--type", "everything", "-f").exit_code == 2


def test_copy_refuses_a_tampered_blob_and_tags_nothing(
    cli, registry, repo, push_image, tmp_path: Path
) -> None:
    ref = f"{registry.address}/{repo.repository}:v1"
    push_image(repo, "v1")
    source = tmp_path / "source"
    assert cli("copy", ref, f"oci:{source}:v1").exit_code == 0
    manifest = cli("inspect", f"oci:{source}:v1", "-o", "json").json()
    layer = manifest["layers"][-1]["digest"].split(":")[1]
    blob = source / "blobs" / "sha256" / layer
    blob.write_bytes(blob.read_bytes()[:-1] + bytes([blob.read_bytes()[-1] ^ 1]))
    destination = tmp_path / "destination"
    copied = cli("copy", f"oci:{source}:v1", f"oci:{destination}:v1")
    assert copied.exit_code == 1, copied.stderr
    assert layer in copied.stderr and "Traceback" not in copied.stderr
    assert not (destination / "blobs" / "sha256" / layer).exists()
    shown = cli("inspect", f"oci:{destination}:v1")
    assert shown.exit_code != 0
