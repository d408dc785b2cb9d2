"""policy-controller's own ClusterImagePolicy test data (tests/vectors/policy-controller-cip/).

Every ``valid/`` and ``e2e/`` document loads, or is refused only for features attest
does not implement, each named by its field path; every ``invalid/`` document is
refused, naming every field its ``# ERROR:`` lines name (as policy-controller's
validation does).  The table below lists every file: a file missing from disk, or on
disk but not in the table, fails.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from admission.config import load_config
from admission.errors import ConfigError
from tests.conftest import VECTORS, vector

FOLDER = "policy-controller-cip"
LOADS = "loads"
# file -> LOADS, or the fields whose unsupported features it is refused for
EXPECTED: dict[str, str | tuple[str, ...]] = {
    "e2e/cip-config-file-policy-fails.yaml": ("spec.policy.fetchConfigFile", "spec.policy.type"),
    "e2e/cip-config-file-policy.yaml": ("spec.policy.fetchConfigFile", "spec.policy.type"),
    "e2e/cip-include-objectmeta.yaml": ("spec.policy.includeObjectMeta",),
    "e2e/cip-include-spec.yaml": ("spec.policy.includeSpec",),
    "e2e/cip-key-and-keyless-ignore-sct.yaml": ("spec.authorities[1].keyless.insecureIgnoreSCT",),
    "e2e/cip-key-hash-algorithm.yaml": LOADS,
    "e2e/cip-key-secret.yaml": LOADS,
    "e2e/cip-key-with-attestations-no-rekor.yaml": (
        "spec.authorities[0].attestations[0].policy.type",
    ),
    "e2e/cip-key-with-attestations.yaml": ("spec.authorities[0].attestations[0].policy.type",),
    "e2e/cip-keyless-warn.yaml": LOADS,
    "e2e/cip-keyless-with-attestations.yaml": ("spec.authorities[0].attestations[0].policy.type",),
    "e2e/cip-keyless-with-identities.yaml": LOADS,
    "e2e/cip-keyless-with-source.yaml": ("spec.authorities[0].source",),
    "e2e/cip-keyless-with-trustroot-repository-with-attestations.yaml": (
        "spec.authorities[0].attestations[0].policy.type",
    ),
    "e2e/cip-keyless.yaml": LOADS,
    "e2e/cip-policy-from-url.yaml": ("spec.policy.remote",),
    "e2e/cip-requires-two-signatures-and-two-attestations.yaml": ("spec.policy.type",),
    "e2e/cip-static-pass.yaml": LOADS,
    "valid/v1beta1-valid-keyref-awskms.yaml": ("spec.authorities[0].key.kms",),
    "valid/v1beta1-valid-policy.yaml": (
        "spec.authorities[0].keyless.ca-cert",
        "spec.authorities[6].key.kms",
    ),
    "valid/valid-keylessref-awskms.yaml": ("spec.authorities[0].keyless.ca-cert.kms",),
    "valid/valid-policy-glob.yaml": (
        "spec.authorities[0].keyless.ca-cert",
        "spec.authorities[4].key.kms",
    ),
    "valid/valid-policy-hash-algo.yaml": ("spec.authorities[6].key.kms",),
    "valid/valid-policy-match-resource-label.yaml": ("spec.authorities[6].key.kms",),
    "valid/valid-policy.yaml": ("spec.authorities[6].key.kms",),
}
INVALID = [
    "empty-keyref-and-keylessref.yaml",
    "invalid-authority.yaml",
    "invalid-keyref-awskms.yaml",
    "invalid-pubkey.yaml",
    "keylessref-with-malformed-issuer.yaml",
    "keylessref-with-multiple-properties.yaml",
    "missing-identity.yaml",
    "missing-subject.yaml",
    "v1beta1-empty-keyref.yaml",
    "v1beta1-invalid-hash-algo.yaml",
    "v1beta1-invalid-match-resource.yaml",
    "v1beta1-invalid-pubkey.yaml",
    "v1beta1-keylessref-with-malformed-issuer.yaml",
    "v1beta1-keylessref-with-multiple-properties.yaml",
    "v1beta1-missing-identity.yaml",
    "v1beta1-missing-subject.yaml",
    "valid-keyref-and-keylessref.yaml",
]
_FIELD = re.compile(r"[A-Za-z-]+(?:\[\d+\])?(?:\.[A-Za-z-]+(?:\[\d+\])?)+")
PUBLIC_KEY = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZxAfzrQG1EbWyCI8LiSB7YgSFXoI
FNGTyQGKHFc6/H8TQumT9VLS78pUwtv3w7EfKoyFZoP32KrO7nzUy2q6Cw==
-----END PUBLIC KEY-----
"""


def test_the_table_lists_every_vector_file() -> None:
    on_disk = {str(p.relative_to(VECTORS / FOLDER)) for p in (VECTORS / FOLDER).rglob("*.yaml")}
    listed = set(EXPECTED) | {f"invalid/{name}" for name in INVALID}
    assert on_disk == listed


def _mounted(tmp_path: Path, relative: str) -> Path:
    """The document beside the Secrets and TrustRoots it names, mounted as documented."""
    source = vector(FOLDER, relative)
    for secret in ("cip-secret", "secret-name"):
        (tmp_path / "secrets" / secret).mkdir(parents=True)
        (tmp_path / "secrets" / secret / "cosign.pub").write_text(PUBLIC_KEY)
    (tmp_path / "trustroots").mkdir()
    shutil.copy(
        vector("cosign-bundle", "trusted_root_pgi.json"),
        tmp_path / "trustroots" / "my-repository-serialized.json",
    )
    return Path(shutil.copy(source, tmp_path / source.name))


@pytest.mark.parametrize("relative", sorted(EXPECTED))
def test_valid_document_loads_or_is_refused_naming_the_unsupported_field(
    tmp_path: Path, relative: str
) -> None:
    path = _mounted(tmp_path, relative)
    expected = EXPECTED[relative]
    if expected == LOADS:
        config = load_config(str(path))
        assert len(config.cluster_policies) == 1
        assert config.cluster_policies[0].authorities
        return
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    message = str(caught.value)
    assert "\n" not in message
    for field in expected:
        assert f"{field}:" in message
    # a valid document is refused only for what attest does not implement
    problems = message.split(": ", 1)[1].split("; ")
    assert all("is not supported by attest" in p for p in problems), problems


@pytest.mark.parametrize("name", INVALID)
def test_invalid_document_is_refused_naming_the_fields(tmp_path: Path, name: str) -> None:
    path = _mounted(tmp_path, f"invalid/{name}")
    errors = [
        line.split("ERROR:", 1)[1]
        for line in path.read_text().splitlines()
        if line.startswith("# ERROR:")
    ]
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    message = str(caught.value).lower()
    assert "\n" not in message
    fields = [f for error in errors for f in _FIELD.findall(error)]
    assert fields or not errors, errors
    for field in fields:
        assert field.lower() in message, (field, message)
