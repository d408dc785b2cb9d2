"""``attest admission review``: offline decisions for manifests and AdmissionReviews, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from admission.testing.helpers import deployment, review
from admission.testing.world import World


def write_manifests(path: Path, *documents: dict) -> Path:
    path.write_text(yaml.safe_dump_all(documents))
    return path


def test_review_manifests_with_config(cli, world: World, tmp_path: Path) -> None:
    images = world.images  # type: ignore[attr-defined]
    config = world.config(tmp_path / "c.yaml")
    good = write_manifests(
        tmp_path / "good.yaml",
        deployment(images["good"]),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
    )
    result = cli("admission", "review", str(good), "--config", str(config), "--output", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = result.json()
    assert report["admitted"] is True
    first, second = report["decisions"]
    (image,) = first["images"]
    assert image["reference"] == images["good"] and image["digest"].startswith("sha256:")
    assert image["verification"]["digest"] == image["digest"]  # the tag was checked by digest
    assert second["result"] == "allowed" and second["messages"] == [
        "kind ConfigMap is out of scope (it runs no containers)"
    ]

    text = cli("admission", "review", str(good), "--config", str(config))
    assert text.exit_code == 0
    assert text.stdout.startswith("ADMITTED: Deployment apps/web (CREATE)")
    assert "signature: verified by apps-key" in text.stdout
    assert "https://slsa.dev/provenance/v1: verified by apps-key" in text.stdout

    bad = write_manifests(tmp_path / "bad.yaml", deployment(images["good"], images["unsigned"]))
    denied = cli("admission", "review", str(bad), "--config", str(config))
    assert denied.exit_code == 1
    assert f"deny: {images['unsigned']}: no trusted signature" in denied.stdout


def test_review_without_config_denies_unmatched(cli, tmp_path: Path) -> None:
    manifest = write_manifests(tmp_path / "m.yaml", deployment("nginx:1.25"))
    result = cli("admission", "review", str(manifest))
    assert result.exit_code == 1
    assert (
        "deny: nginx:1.25: matches no image policy (unmatched images are denied)" in result.stdout
    )


def test_review_admission_review_files(cli, tmp_path: Path) -> None:
    path = tmp_path / "review.json"
    path.write_text(json.dumps(review(deployment("nginx"), operation="DELETE")))
    result = cli("admission", "review", str(path), "-o", "json")
    assert result.exit_code == 0 and result.json()["decisions"][0]["checked"] is False


def test_review_unusable_input_exits_2(cli, tmp_path: Path) -> None:
    cases = {
        "missing.yaml": None,
        "broken.yaml": "kind: [",
        "nokind.yaml": "metadata: {name: x}\n",
        "badshape.yaml": yaml.safe_dump(
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {}}
        ),
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        result = cli("admission", "review", str(path))
        assert result.exit_code == 2, (name, result.stdout, result.stderr)
        assert result.stderr.startswith("attest: error: ") or "bad request" in result.stdout, name
        assert "Traceback" not in result.stderr
    manifest = write_manifests(tmp_path / "m.yaml", deployment("nginx"))
    (tmp_path / "c.yaml").write_text("imagePolicies: [{name: a}]\n")
    result = cli("admission", "review", str(manifest), "--config", str(tmp_path / "c.yaml"))
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "attest: error: imagePolicies[a].images must list at least one image glob"
    )


def test_serve_checks_config_policy_and_tls_first(cli, tmp_path: Path) -> None:
    bundle = tmp_path / "bad"
    bundle.mkdir()
    (bundle / "p.rego").write_text("package attest.admission\ndeny contains x if { x := }\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"policy: {{bundle: {bundle}}}\n")
    args = [
        "admission",
        "serve",
        "--config",
        str(config),
        "--tls-cert",
        "nope.pem",
        "--tls-key",
        "nope.key",
    ]
    result = cli(*args)
    assert result.exit_code == 2
    assert "does not compile: p.rego:2:" in result.stderr
    config.write_text("unmatchedImages: deny\n")
    result = cli(*args)
    assert (
        result.exit_code == 2
        and result.stderr.strip() == "attest: error: --tls-cert nope.pem: No such file or directory"
    )
