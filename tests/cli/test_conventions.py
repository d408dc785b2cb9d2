"""CLI conventions (issue 12 item 6): --version, --debug anywhere, -o is a format,
--annotations, --key env://VAR, cosign's bool flags, exit codes, shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from attest import __version__
from attest.errors import EXIT_FAILED, EXIT_OK, EXIT_REGISTRY, EXIT_USAGE
from attest.testing import free_port
from tests.cli.conftest import ENV


def test_version_flag_and_command(cli) -> None:
    for args in (["--version"], ["version"]):
        shown = cli(*args)
        assert shown.exit_code == EXIT_OK and shown.stdout == f"attest {__version__}\n"


def test_debug_is_accepted_after_any_subcommand(cli, tmp_path: Path) -> None:
    quiet = cli("inspect", "Bad Reference")
    assert quiet.exit_code == EXIT_USAGE and "Traceback" not in quiet.stderr
    for args in (
        ["inspect", "Bad Reference", "--debug"],
        ["--debug", "inspect", "Bad Reference"],
        ["policy", "test", str(tmp_path / "missing"), "--debug"],
        ["admission", "review", str(tmp_path / "missing.yaml"), "--debug"],
    ):
        loud = cli(*args)
        assert loud.exit_code == EXIT_USAGE, (args, loud.stderr)
        assert "no such option" not in loud.stderr, args
    assert "Traceback" in cli("inspect", "Bad Reference", "--debug").stderr


def test_shell_completion_prints_a_script() -> None:
    for shell, marker in (("bash", "complete -o nosort -F"), ("zsh", "#compdef attest"),
                          ("fish", "complete --no-files --command attest")):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "attest"],
            env={**os.environ, "_ATTEST_COMPLETE": f"{shell}_source"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0 and marker in done.stdout, (shell, done.stdout[:300])
    words = subprocess.run(
        [sys.executable, "-m", "attest"],
        env={**os.environ, "_ATTEST_COMPLETE": "bash_complete", "COMP_WORDS": "attest tr",
             "COMP_CWORD": "1"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "plain,tree" in words.stdout.splitlines()


def test_exit_codes_tell_failed_verification_from_bad_input_from_registry_failure(
    cli, registry, repo, push_image, make_keys, tmp_path: Path
) -> None:
    ref = f"{registry.address}/{repo.repository}@{push_image(repo, 'v1').digest}"
    signer = make_keys()
    unsigned = cli("verify", ref, "--key", signer.public, "--insecure-ignore-tlog")
    assert unsigned.exit_code == EXIT_FAILED == 1, unsigned.stderr
    bad_reference = cli("verify", "UPPER/Case", "--key", signer.public)
    assert bad_reference.exit_code == EXIT_USAGE == 2
    (tmp_path / "garbage.pub").write_text("not a key")
    bad_key = cli("verify", ref, "--key", str(tmp_path / "garbage.pub"))
    assert bad_key.exit_code == EXIT_USAGE and "garbage.pub" in bad_key.stderr
    down = f"127.0.0.1:{free_port()}/app@{ref.split('@')[1]}"
    unreachable = cli("verify", down, "--key", signer.public, "--timeout", "5")
    assert unreachable.exit_code == EXIT_REGISTRY == 4, unreachable.stderr
    assert "cannot reach registry" in unreachable.stderr
    missing = cli("tree", f"{registry.address}/nothing/here:v1")
    assert missing.exit_code == EXIT_REGISTRY and "not found" in missing.stderr


def test_key_from_the_environment(cli, registry, repo, push_image, make_keys) -> None:
    ref = f"{registry.address}/{repo.repository}@{push_image(repo, 'v1').digest}"
    signer = make_keys()
    env = {
        **ENV,
        "SIGNING_KEY": Path(signer.private).read_text(),
        "VERIFY_KEY": Path(signer.public).read_text(),
    }
    signed = cli("sign", ref, "--key", "env://SIGNING_KEY", "--tlog-upload=false", env=env)
    assert signed.exit_code == 0, signed.stderr
    verified = cli("verify", ref, "--key", "env://VERIFY_KEY", "--insecure-ignore-tlog", env=env)
    assert verified.exit_code == 0, verified.stderr
    unset = cli("verify", ref, "--key", "env://NO_SUCH_VARIABLE_SET")
    assert unset.exit_code == EXIT_USAGE
    assert "env://NO_SUCH_VARIABLE_SET: environment variable 'NO_SUCH_VARIABLE_SET' is unset" in (
        unset.stderr
    )


def test_annotations_alias_and_bare_cosign_flags_before_the_image(
    cli, registry, repo, push_image, make_keys
) -> None:
    ref = f"{registry.address}/{repo.repository}@{push_image(repo, 'v1').digest}"
    signer = make_keys()
    signed = cli("sign", "--key", signer.private, "--annotations", "env=prod",
                 "--tlog-upload=false", ref, env=ENV)  # fmt: skip
    assert signed.exit_code == 0, signed.stderr
    # cosign's spelling: the bare flag right before the image does not take it as a value.
    checked = cli("verify", "--key", signer.public, "-a", "env=prod", "--insecure-ignore-tlog", ref)
    assert checked.exit_code == 0, checked.stderr
    wrong = cli("verify", "--key", signer.public, "--annotations", "env=dev",
                "--insecure-ignore-tlog", ref)  # fmt: skip
    assert wrong.exit_code == EXIT_FAILED
    off = cli("verify", "--key", signer.public, "--insecure-ignore-tlog=false", ref)
    assert off.exit_code == EXIT_FAILED  # unlogged: refused without the opt-out


def test_output_is_a_format_and_files_go_in_output_file(cli, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    as_spdx = cli("sbom", f"dir:{root}", "-o", "spdx-json")
    assert as_spdx.exit_code == 0 and json.loads(as_spdx.stdout)["spdxVersion"] == "SPDX-2.3"
    as_json = cli("sbom", f"dir:{root}", "-o", "json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["bomFormat"] == "CycloneDX"
    assert not (tmp_path / "json").exists() and not Path("json").exists()
    out = tmp_path / "sbom.cdx.json"
    written = cli("sbom", f"dir:{root}", "--output-file", str(out))
    assert written.exit_code == 0 and written.stdout == "" and "deprecated" not in written.stderr
    assert json.loads(out.read_text())["bomFormat"] == "CycloneDX"
    legacy = tmp_path / "legacy.json"
    old = cli("sbom", f"dir:{root}", "-o", str(legacy))
    assert old.exit_code == 0 and json.loads(legacy.read_text())["bomFormat"] == "CycloneDX"
    assert f"'attest sbom -o {legacy}' writing a file is deprecated" in old.stderr
    assert f"use --output-file {legacy}" in old.stderr
    clash = cli("sbom", f"dir:{root}", "-o", "spdx-json", "--format", "cyclonedx-json")
    assert clash.exit_code == EXIT_USAGE
    for command in (["inspect", "x"], ["verify", "x"], ["tree", "x"], ["copy", "x", "y"]):
        bad = cli(*command, "-o", str(tmp_path / "file.json"))
        assert bad.exit_code == EXIT_USAGE and "is not one of 'text', 'json'" in bad.stderr
