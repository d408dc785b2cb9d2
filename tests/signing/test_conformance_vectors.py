"""Every sigstore-conformance bundle case through ``attest-conformance verify-bundle``.

Cases are folders of ``../shared/vectors/sigstore-conformance``; a name ending in
``_fail`` must be rejected, every other must verify.  Defaults per the vectors'
README: identity/issuer of the conformance beacon, artifact ``a.txt``, the
production root.  A rejection must be a verification failure (exit 1) for the
reason the case is about, not a crash.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from attest.cli.conformance import main as conformance_main
from tests.signing.conftest import CONFORMANCE, needs_vectors

DEFAULT_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"

# What each failing case must be rejected for (a fragment of the reason).
EXPECTED_REASON = {
    "bundle-empty-certificate-chain_fail": "empty certificate chain",
    "bundle-invalid-base64-signature_fail": "base64",
    "bundle-negative-log-index_fail": "logIndex",
    "bundle-with-root-cert_fail": "root CA",
    "checkpoint-bad-keyhint_fail": "checkpoint",
    "dsse-invalid-sig_fail": "invalid signature",
    "dsse-mismatch-sig_fail": "signatures do not match",
    "inclusion-proof-corrupted-hash_fail": "inclusion proof",
    "integrated-time-in-future_fail": "not valid at validation time",
    "intoto-log-entry-mismatch_fail": "records different DSSE signatures",
    "intoto-set-outside-signing-cert-validity_fail": "not valid at the signing time",
    "invalid-ct-key_fail": "SCT",
    "managed-key-no-key_fail": "not keylessly",
    "message-digest-mismatch_fail": "message digest does not match",
    "rekor2-checkpoint-missing-log-signature_fail": "signature",
    "rekor2-checkpoint-missing-root-hash_fail": "LogCheckpoint",
    "rekor2-dsse-invalid-sig_fail": "invalid signature",
    "rekor2-dsse-mismatch-sig_fail": "inconsistent",
    "rekor2-no-inclusion-proof_fail": "inclusionProof",
    "rekor2-timestamp-outside-trust-root-tsa-validity_fail": "verified time",
    "rekor2-timestamp-payload-mismatch_fail": "verified time",
    "rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail": "verified time",
    "signature-mismatch_fail": "Signature is invalid",
    "wrong-hashedrekord-artifact_fail": "inconsistent",
    "wrong-hashedrekord-entry_fail": "inconsistent",
}


def _cases() -> list[str]:
    found = sorted(p.name for p in CONFORMANCE.iterdir() if (p / "bundle.sigstore.json").is_file())
    if not found:
        raise FileNotFoundError(f"no conformance cases under {CONFORMANCE}")
    return found


def protocol_args(case: Path) -> list[str]:
    """The verify-bundle command line the conformance suite would pass for ``case``."""
    args = ["verify-bundle", "--bundle", str(case / "bundle.sigstore.json")]
    if (case / "key.pub").is_file():
        args += ["--key", str(case / "key.pub")]
    else:
        identity = (
            (case / "identity").read_text().strip()
            if (case / "identity").is_file()
            else DEFAULT_IDENTITY
        )
        issuer = (
            (case / "issuer").read_text().strip() if (case / "issuer").is_file() else DEFAULT_ISSUER
        )
        args += ["--certificate-identity", identity, "--certificate-oidc-issuer", issuer]
    if (case / "trusted_root.json").is_file():
        args += ["--trusted-root", str(case / "trusted_root.json")]
    artifact = case / "artifact" if (case / "artifact").is_file() else CONFORMANCE / "a.txt"
    return [*args, str(artifact)]


@needs_vectors("sigstore-conformance")
@pytest.mark.parametrize("name", _cases())
def test_conformance_case(name: str, capfd: pytest.CaptureFixture[str]) -> None:
    case = CONFORMANCE / name
    code = conformance_main(protocol_args(case))
    err = capfd.readouterr().err
    if name.endswith("_fail"):
        assert code == 1, f"{name} must be rejected as a verification failure, got {code}: {err}"
        assert err.startswith("attest-conformance: error: verification failed:"), err
        assert len(err.strip().splitlines()) == 1, err
        fragment = EXPECTED_REASON.get(name)
        if fragment is not None:
            assert fragment in err, f"{name} rejected for another reason: {err}"
    else:
        assert code == 0, f"{name} must verify: {err}"


@needs_vectors("sigstore-conformance")
def test_digest_argument_instead_of_file(capfd: pytest.CaptureFixture[str]) -> None:
    """``sha256:<hex>`` (not a path) is accepted as the artifact; a wrong digest fails."""
    import hashlib

    case = CONFORMANCE / "happy-path-v0.3-new-mediaType"
    args = protocol_args(case)[:-1]
    digest = "sha256:" + hashlib.sha256((CONFORMANCE / "a.txt").read_bytes()).hexdigest()
    assert conformance_main([*args, digest]) == 0
    wrong = "sha256:" + "0" * 64
    assert conformance_main([*args, wrong]) == 1
    assert "verification failed" in capfd.readouterr().err


@needs_vectors("sigstore-conformance")
def test_console_command_is_installed() -> None:
    """The ``attest-conformance`` console script runs the protocol as a separate process."""
    script = Path(sys.executable).with_name("attest-conformance")
    case = CONFORMANCE / "managed-key-and-trusted-root"
    ok = subprocess.run(
        [str(script), *protocol_args(case)], capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [str(script), *protocol_args(CONFORMANCE / "signature-mismatch_fail")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr


def test_usage_errors_are_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    artifact = tmp_path / "a.txt"
    artifact.write_text("x")
    code = conformance_main(
        ["verify-bundle", "--bundle", str(tmp_path / "missing.json"), "--key", "k", str(artifact)]
    )
    err = capfd.readouterr().err
    assert code == 2 and "missing.json" in err and len(err.strip().splitlines()) == 1
    bundle = tmp_path / "b.json"
    bundle.write_text("{}")
    code = conformance_main(["verify-bundle", "--bundle", str(bundle), str(artifact)])
    err = capfd.readouterr().err
    assert code == 2 and "--key" in err
