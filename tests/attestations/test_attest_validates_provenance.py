"""``attest attest --type slsaprovenance*`` checks the predicate before signing: what the
admission webhook would deny as invalid provenance is never signed or stored (issue 10,
finding 3).  Against the real registry: nothing is written on failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attest.oci.referrers import list_referrers
from tests.admission.test_fail_closed import GOOD_V02
from tests.conftest import ROOT

KEY = str(ROOT / "keys-dev" / "cosign.key")
PASSWORD = {"ATTEST_PASSWORD": "attest-dev"}


@pytest.mark.parametrize(
    ("kind", "predicate", "why"),
    [
        ("slsaprovenance1", {"foo": "bar"}, "buildDefinition is required"),
        (
            "slsaprovenance1",
            {"buildDefinition": {"buildType": "x", "externalParameters": {}}, "runDetails": {}},
            "runDetails: builder is required",
        ),
        (
            "slsaprovenance",
            {"builder": "https://ci.example/b", "buildType": "x"},
            "builder must be",
        ),
        (
            "slsaprovenance02",
            {"builder": {"id": "b"}, "buildType": 3},
            "buildType must be a string",
        ),
        (
            "https://slsa.dev/provenance/v0.2",
            {**GOOD_V02, "materials": [{"uri": 1}]},
            "materials[0].uri must be a string",
        ),
    ],
    ids=["v1-foo", "v1-no-builder", "v02-string-builder", "v02-number-type", "v02-materials"],
)
def test_invalid_provenance_is_refused_before_signing(
    cli: Any,
    registry: Any,
    repo: Any,
    push_image: Any,
    tmp_path: Path,
    kind: str,
    predicate: Any,
    why: str,
) -> None:
    descriptor = push_image(repo, "v1")
    path = tmp_path / "predicate.json"
    path.write_text(json.dumps(predicate))
    image = f"{registry.address}/{repo.repository}:v1"
    result = cli(
        "attest", image, "--predicate", str(path), "--type", kind, "--key", KEY, env=PASSWORD
    )
    assert result.exit_code == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"attest: error: predicate {path} is not valid https://slsa.dev/provenance/"
    )
    assert why in line and "Traceback" not in result.stderr
    assert list_referrers(repo, descriptor.digest) == []
    assert sorted(repo.list_tags()) == ["v1"]


def test_valid_provenance_of_both_versions_is_signed(
    cli: Any, registry: Any, repo: Any, push_image: Any, tmp_path: Path
) -> None:
    descriptor = push_image(repo, "v1")
    image = f"{registry.address}/{repo.repository}:v1"
    path = tmp_path / "v02.json"
    path.write_text(json.dumps(GOOD_V02))
    result = cli(
        "attest",
        image,
        "--predicate",
        str(path),
        "--type",
        "slsaprovenance",
        "--key",
        KEY,
        "--tlog-upload=false",
        env=PASSWORD,
    )
    assert result.exit_code == 0, result.stderr
    assert len(list_referrers(repo, descriptor.digest)) == 1
