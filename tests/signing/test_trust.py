"""Trusted roots and trust configs: the embedded public-good root, files, and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attest.signing.trust import (
    PUBLIC_GOOD,
    TrustMaterialError,
    load_trust_config,
    load_trusted_root,
    trust_config_from_parts,
)
from attest.testing import SigstoreMock


def test_public_good_root_is_offline_and_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    root = load_trusted_root(None)
    assert root.name == PUBLIC_GOOD
    assert root.tlogs and root.ctlogs and root.certificate_authorities
    assert any("rekor.sigstore.dev" in log.base_url for log in root.tlogs)
    assert load_trusted_root(None) is root  # loaded once
    assert "TUF" not in capfd.readouterr().err


def test_local_instance_files(sigstore_mock: SigstoreMock) -> None:
    root = load_trusted_root(sigstore_mock.trusted_root)
    assert root.tlogs[0].base_url == sigstore_mock.url
    assert root.fingerprint.startswith("sha256:")
    config = load_trust_config(sigstore_mock.trust_config)
    assert config.root.tlogs[0].log_id == root.tlogs[0].log_id
    combined = trust_config_from_parts(sigstore_mock.trusted_root, sigstore_mock.signing_config)
    assert (
        combined.root.certificate_authorities[0].certificates
        == root.certificate_authorities[0].certificates
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "does not exist"),
        ("not json", "not JSON"),
        ('{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=9"}', "unusable"),
        ("[]", "unusable"),
    ],
)
def test_bad_trusted_root_files(tmp_path: Path, content: str | None, reason: str) -> None:
    path = tmp_path / "root.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TrustMaterialError) as err:
        load_trusted_root(str(path))
    assert reason in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_trust_config_without_usable_services(sigstore_mock: SigstoreMock, tmp_path: Path) -> None:
    config = json.loads(Path(sigstore_mock.trust_config).read_text())
    config["signingConfig"]["caUrls"] = []
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(TrustMaterialError, match="Fulcio"):
        load_trust_config(str(path))
    with pytest.raises(TrustMaterialError, match="is a directory"):
        load_trust_config(str(tmp_path))
