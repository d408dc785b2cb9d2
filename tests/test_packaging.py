"""`pip install attest` is the CI side alone: a fresh virtualenv without the `admission` extra
signs, verifies, writes SBOMs, attests and runs the pipeline against the real registry, and
the webhook's commands say which extra they need instead of failing with a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.attestations.test_cli_attestations import KEY, PASSWORD, PUB
from tests.conftest import ROOT

# The extra's import names (admission/cli/__init__.py has the same list; it is checked here
# against a real install, not read from there).
WEBHOOK_MODULES = ("flask", "gunicorn", "sqlalchemy", "psycopg", "prometheus_client", "yaml")
CI_VARIABLES = ("GITHUB_ACTIONS", "GITLAB_CI", "SIGSTORE_ID_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL")
PROVENANCE = ["--builder-id", "https://ci.example.com/builders/linux", "--source-uri",
              "git+https://git.example.com/team/app@refs/heads/main", "--source-digest", "a" * 40]  # fmt: skip


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with `pip install attest` from a copy of this tree (as the Dockerfile
    copies it, so the build leaves nothing in the worktree), without any extra."""
    base = tmp_path_factory.mktemp("plain")
    source = base / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("attest", "admission", "policies"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", str(source)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    return venv


def attest(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES and k != "PYTHONPATH"}
    return subprocess.run(
        [str(venv / "bin" / "attest"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,  # not the worktree: only the installed package can be imported
        env={**env, **PASSWORD},
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_plain_install_has_no_webhook_libraries(plain_venv: Path) -> None:
    probe = "import importlib.util as u, json, sys; print(json.dumps([m for m in sys.argv[1:] if u.find_spec(m)]))"
    found = subprocess.run(
        [plain_venv / "bin" / "python", "-c", probe, *WEBHOOK_MODULES],
        capture_output=True, text=True, check=True, cwd=plain_venv,
    )  # fmt: skip
    assert json.loads(found.stdout) == []


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_ci_side_runs_without_the_admission_extra(
    plain_venv: Path, registry, repo, push_image, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    digest = push_image(repo, "v1").digest
    push_image(repo, "v2", marker="two")
    ref = f"{registry.address}/{repo.repository}"

    sbom = attest(plain_venv, "sbom", f"{ref}:v1", "-o", str(tmp_path / "bom.json"), cwd=tmp_path)
    assert sbom.returncode == 0, sbom.stderr
    bom = json.loads((tmp_path / "bom.json").read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["components"]

    signed = attest(
        plain_venv, "sign", f"{ref}:v1", "--key", KEY, "--tlog-upload=false", cwd=tmp_path
    )
    assert signed.returncode == 0, signed.stderr
    verified = attest(plain_venv, "verify", f"{ref}:v1", "--key", PUB, "--insecure-ignore-tlog", cwd=tmp_path)  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert digest in verified.stdout + verified.stderr

    attested = attest(
        plain_venv, "attest", f"{ref}:v1", "--key", KEY, "--tlog-upload=false",
        "--predicate", str(tmp_path / "bom.json"), "--type", "cyclonedx", cwd=tmp_path,
    )  # fmt: skip
    assert attested.returncode == 0, attested.stderr

    summary_file = tmp_path / "summary.json"
    pipeline = attest(
        plain_venv, "pipeline", f"{ref}:v2", "--key", KEY, "--tlog-upload=false", *PROVENANCE,
        "--output-file", str(summary_file), cwd=tmp_path,
    )  # fmt: skip
    assert pipeline.returncode == 0, pipeline.stderr
    summary = json.loads(summary_file.read_text())
    assert summary["verification"]["verified"] is True
    assert [a["predicateType"] for a in summary["attestations"]] == [
        "https://cyclonedx.org/bom",
        "https://slsa.dev/provenance/v1",
    ]
    # an unsigned image fails here too: the installed verifier really checks
    push_image(repo, "v3", marker="three")
    unsigned = attest(plain_venv, "verify", f"{ref}:v3", "--key", PUB, "--insecure-ignore-tlog", cwd=tmp_path)  # fmt: skip
    assert unsigned.returncode == 1 and "Traceback" not in unsigned.stderr, unsigned.stderr


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_webhook_commands_name_the_extra_they_need(plain_venv: Path, tmp_path: Path) -> None:
    listed = attest(plain_venv, "--help", cwd=tmp_path)
    assert listed.returncode == 0 and "admission" in listed.stdout and "decisions" in listed.stdout
    assert "exception" in listed.stdout and "evidence" in listed.stdout
    for command in (["admission", "serve", "--config", "c.yaml", "--tls-cert", "c", "--tls-key", "k"],
                    ["admission", "review", "manifest.yaml"], ["decisions", "list"],
                    ["decisions", "stats"], ["admission", "test", "suite.yaml"],
                    ["exception", "list", "exceptions"], ["evidence", "--since", "7d", "-f", "e"]):  # fmt: skip
        result = attest(plain_venv, *command, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith(f"attest: error: attest {command[0]} needs the admission extra")
        assert "pip install 'attest[admission]'" in lines[0] and "flask" in lines[0]
    # Rego needs no extra: the default bundle's own tests pass in the plain install
    tested = attest(plain_venv, "policy", "test", str(ROOT / "policies"), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
