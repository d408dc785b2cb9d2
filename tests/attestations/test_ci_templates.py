"""The CI templates: their shell really runs `attest pipeline` (keyless by default).

The GitHub composite action's pipeline step and the GitLab job's scripts are taken
from the YAML files and run with bash in a simulated CI environment (GitHub's or
GitLab's variables, the local Sigstore for keyless signing, the real registry).
Only the install steps (setup-python, pip from the network) are replaced: the venv
they would create is a link to this checkout's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from attest.testing import DEFAULT_ISSUER, SigstoreMock
from tests.attestations.test_cli_attestations import GITHUB_ENV, KEY, PUB
from tests.conftest import ROOT

ACTION = ROOT / "action.yml"
GITLAB = ROOT / "ci" / "gitlab" / "attest.gitlab-ci.yml"
VENV_BIN = ROOT / ".venv" / "bin"


def _base_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no variables of the CI this suite may itself run in."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env["HOME"] = str(tmp_path)
    return env


def _fake_venv(path: Path) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "attest").symlink_to(VENV_BIN / "attest")
    (path / "bin" / "python").symlink_to(VENV_BIN / "python")
    return path


def _bash(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_action_metadata_is_a_consistent_composite_action() -> None:
    action = yaml.safe_load(ACTION.read_text())
    assert action["runs"]["using"] == "composite"
    declared = set(action["inputs"])
    assert action["inputs"]["image"]["required"] is True
    assert action["inputs"]["key"]["default"] == ""  # keyless unless a key is given
    text = ACTION.read_text()
    used = set(re.findall(r"inputs\.([a-z-]+)", text))
    assert used <= declared, used - declared
    for step in action["runs"]["steps"]:
        if "run" in step:
            assert step["shell"] == "bash"
            # Inputs reach the shell through env, never spliced into the script.
            assert "${{" not in step["run"], step["name"]
    outputs = {name: spec["value"] for name, spec in action["outputs"].items()}
    assert outputs["digest"] == "${{ steps.pipeline.outputs.digest }}"


def _action_step(name: str) -> dict:
    steps = yaml.safe_load(ACTION.read_text())["runs"]["steps"]
    return next(step for step in steps if step.get("id") == name)


def test_github_action_runs_keyless_pipeline(  # type: ignore[no-untyped-def]
    registry, repo, push_image, sigstore_mock: SigstoreMock, tmp_path: Path
) -> None:
    digest = push_image(repo, "v1").digest
    ref = f"{registry.address}/{repo.repository}:v1"
    runner_temp = tmp_path / "runner"
    _fake_venv(runner_temp / "attest-venv")
    outputs = tmp_path / "github_output"
    outputs.touch()
    workflow = "https://github.com/acme/shop/.github/workflows/build.yml@refs/heads/main"
    env = {
        **_base_env(tmp_path),
        **{k: v for k, v in GITHUB_ENV.items() if k != "ATTEST_PASSWORD"},
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_OUTPUT": str(outputs),
        "SIGSTORE_ID_TOKEN": sigstore_mock.token(subject=workflow),
        # The action's inputs, as the runner passes them (defaults for the rest).
        "ATTEST_IMAGE": ref,
        "ATTEST_KEY": "",
        "ATTEST_LEGACY": "false",
        "ATTEST_TLOG_UPLOAD": "true",
        "ATTEST_REKOR_URL": "",
        "ATTEST_ARGS": f"--trust-config {sigstore_mock.trust_config}",
        "ATTEST_SUMMARY": "attest-summary.json",
    }
    proc = _bash(_action_step("pipeline")["run"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert written == {"digest": digest, "summary-file": "attest-summary.json"}
    summary = json.loads((tmp_path / "attest-summary.json").read_text())
    assert summary["digest"] == digest and summary["verification"]["verified"]
    assert summary["signer"].startswith(f"keyless {workflow}")
    verify = subprocess.run(
        [str(VENV_BIN / "attest"), "verify", ref, "--certificate-identity", workflow,
         "--certificate-oidc-issuer", DEFAULT_ISSUER, "--trusted-root", sigstore_mock.trusted_root],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_github_action_with_a_key_and_legacy_storage(  # type: ignore[no-untyped-def]
    registry, repo, push_image, sigstore_mock: SigstoreMock, tmp_path: Path
) -> None:
    """A key-based run logs in the Rekor named by ``rekor-url`` (as cosign does)."""
    digest = push_image(repo, "v1").digest
    runner_temp = tmp_path / "runner"
    _fake_venv(runner_temp / "attest-venv")
    outputs = tmp_path / "github_output"
    ref = f"{registry.address}/{repo.repository}:v1"
    env = {
        **_base_env(tmp_path),
        **GITHUB_ENV,
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_OUTPUT": str(outputs),
        "ATTEST_IMAGE": ref,
        "ATTEST_KEY": KEY,
        "ATTEST_LEGACY": "true",
        "ATTEST_TLOG_UPLOAD": "true",
        "ATTEST_REKOR_URL": sigstore_mock.url,
        "ATTEST_ARGS": f"--trusted-root {sigstore_mock.trusted_root}",
        "ATTEST_SUMMARY": "out/summary.json",
    }
    (tmp_path / "out").mkdir()
    proc = _bash(_action_step("pipeline")["run"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["storage"] == "legacy" and summary["digest"] == digest
    assert f"logged in Rekor v1 at {sigstore_mock.url}" in summary["signer"]
    assert f"digest={digest}" in outputs.read_text()
    verify = subprocess.run(
        [str(VENV_BIN / "attest"), "verify", ref, "--key", PUB,
         "--trusted-root", sigstore_mock.trusted_root, "--output", "json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["signatures"][0]["tlog"]["kind"] == "hashedrekord/0.0.1"


def _gitlab_job() -> dict:
    return yaml.safe_load(GITLAB.read_text())[".attest-pipeline"]


def test_gitlab_template_shape() -> None:
    job = _gitlab_job()
    assert job["id_tokens"] == {"SIGSTORE_ID_TOKEN": {"aud": "sigstore"}}
    assert job["variables"]["ATTEST_KEY"] == ""  # keyless by default
    assert "$ATTEST_SUMMARY" in job["artifacts"]["paths"]


def test_gitlab_template_refuses_to_run_without_an_image(tmp_path: Path) -> None:
    job = _gitlab_job()
    env = {**_base_env(tmp_path), **{k: str(v) for k, v in job["variables"].items()}}
    proc = _bash(job["before_script"][0], env, tmp_path)
    assert proc.returncode == 2
    assert "set ATTEST_IMAGE" in proc.stderr


def test_gitlab_job_runs_keyless_pipeline(  # type: ignore[no-untyped-def]
    registry, repo, push_image, sigstore_mock: SigstoreMock, tmp_path: Path
) -> None:
    digest = push_image(repo, "v1").digest
    ref = f"{registry.address}/{repo.repository}:v1"
    job = _gitlab_job()
    venv = _fake_venv(tmp_path / "venv")
    identity = "https://gitlab.example.com/group/shop//.gitlab-ci.yml@refs/heads/main"
    env = {
        **_base_env(tmp_path),
        **{k: str(v) for k, v in job["variables"].items()},
        "GITLAB_CI": "true",
        "CI_SERVER_URL": "https://gitlab.example.com",
        "CI_PROJECT_PATH": "group/shop",
        "CI_PROJECT_URL": "https://gitlab.example.com/group/shop",
        "CI_COMMIT_SHA": "b" * 40,
        "CI_COMMIT_BRANCH": "main",
        "CI_COMMIT_REF_NAME": "main",
        "CI_JOB_URL": "https://gitlab.example.com/group/shop/-/jobs/7",
        "SIGSTORE_ID_TOKEN": sigstore_mock.token(subject=identity),
        "ATTEST_IMAGE": ref,
        "ATTEST_PIP_SPEC": str(ROOT),
        "ATTEST_VENV": str(venv),
        "ATTEST_ARGS": f"--trust-config {sigstore_mock.trust_config}",
    }
    # before_script[1] installs with pip from the network; the venv link stands in for it.
    script = "\n".join([job["before_script"][0], job["before_script"][2], *job["script"]])
    proc = _bash(script, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "attest-summary.json").read_text())
    assert summary["digest"] == digest and summary["verification"]["verified"]
    verify = subprocess.run(
        [str(VENV_BIN / "attest"), "verify-attestation", ref, "--type", "slsaprovenance1",
         "--certificate-identity", identity, "--certificate-oidc-issuer", DEFAULT_ISSUER,
         "--trusted-root", sigstore_mock.trusted_root, "--builder-id", identity,
         "--source-uri", "gitlab.example.com/group/shop", "--source-branch", "main"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_gitlab_job_with_a_key(registry, repo, push_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    push_image(repo, "v1")
    job = _gitlab_job()
    venv = _fake_venv(tmp_path / "venv")
    env = {
        **_base_env(tmp_path),
        **{k: str(v) for k, v in job["variables"].items()},
        "ATTEST_IMAGE": f"{registry.address}/{repo.repository}:v1",
        "ATTEST_PIP_SPEC": str(ROOT),
        "ATTEST_VENV": str(venv),
        "ATTEST_KEY": KEY,
        "ATTEST_PASSWORD": "attest-dev",
        "ATTEST_TLOG_UPLOAD": "false",
        "ATTEST_ARGS": "--builder-id https://ci.example.com/b",
    }
    proc = _bash("\n".join(job["script"]), env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "attest-summary.json").read_text())["signer"] == f"key {KEY}"

    def verify(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(VENV_BIN / "attest"), "verify", env["ATTEST_IMAGE"], "--key", PUB, *extra],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip

    # Signed without a log: cosign's default verification refuses it, the opt-out accepts it.
    refused = verify()
    assert refused.returncode == 1 and "no transparency-log entry" in refused.stdout
    accepted = verify("--insecure-ignore-tlog")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


@pytest.mark.parametrize("path", [ACTION, GITLAB])
def test_templates_are_documented_in_the_readme(path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    assert str(path.relative_to(ROOT)) in readme
