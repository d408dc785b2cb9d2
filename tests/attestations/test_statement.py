"""In-toto Statement building, parsing and validation (with in-toto-attestation), predicate types."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2

from attest.attestations.predicates import (
    CYCLONEDX_BOM,
    SLSA_PROVENANCE_V02,
    SLSA_PROVENANCE_V1,
    load_predicate,
    parse_predicate,
    resolve_predicate_type,
)
from attest.attestations.statement import (
    STATEMENT_V1,
    build_statement,
    parse_statement,
    require_subject_digest,
    subject_for_image,
)
from attest.errors import AttestationError, UsageError

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def test_built_statement_keeps_integers_and_validates() -> None:
    predicate = {"count": 3, "nested": {"size": 1024, "ratio": 0.5, "flag": True}, "list": [1, 2]}
    statement = build_statement([subject_for_image("reg/app", DIGEST)], CYCLONEDX_BOM, predicate)
    data = json.loads(statement.raw)
    assert data["_type"] == STATEMENT_V1
    assert data["subject"] == [{"name": "reg/app", "digest": {"sha256": "ab" * 32}}]
    assert data["predicate"] == predicate
    assert isinstance(data["predicate"]["count"], int)
    assert b'"count":3,' in statement.raw and b"3.0" not in statement.raw
    # What in-toto-attestation's protobuf would have produced: floats. We never sign that.
    round_trip = json_format.MessageToDict(json_format.ParseDict(data, statement_pb2.Statement()))
    assert isinstance(round_trip["predicate"]["count"], float)
    assert statement.matches_digest(DIGEST) and not statement.matches_digest(OTHER)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"_type": "https://in-toto.io/Statement/v2"}, "_type"),
        ({"subject": []}, "no subject"),
        ({"subject": [{"name": "x"}]}, "no digest"),
        ({"subject": [{"name": "x", "digest": {"sha256": "ABC"}}]}, "lowercase hex"),
        ({"subject": [{"name": "x", "digest": {"sha256": 5}}]}, "not a string"),
        ({"predicateType": ""}, "no predicateType"),
        ({"predicate": [1]}, "must be a JSON object"),
        ({"subject": [{"digest": {}}]}, "no digest set"),
        ({"subject": [{"name": "a", "uri": 5, "digest": {"sha256": "ab" * 32}}]}, "in-toto"),
    ],
)
def test_parse_rejects_malformed_statements(document: dict, message: str) -> None:
    base = {
        "_type": STATEMENT_V1,
        "subject": [{"name": "a", "digest": {"sha256": "ab" * 32}}],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {"a": 1},
    }
    base.update(document)
    with pytest.raises(AttestationError, match=message):
        parse_statement(json.dumps(base).encode())


def test_parse_rejects_non_json_and_non_objects() -> None:
    with pytest.raises(AttestationError, match="not valid JSON"):
        parse_statement(b"{not json")
    with pytest.raises(AttestationError, match="not a JSON object"):
        parse_statement(b"[1, 2]")


def test_parse_accepts_v01_statements_and_unknown_fields() -> None:
    raw = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "subject": [{"name": "a", "digest": {"sha256": "ab" * 32}}],
            "predicateType": CYCLONEDX_BOM,
            "predicate": {"bomFormat": "CycloneDX"},
            "futureField": {"x": 1},
        }
    ).encode()
    statement = parse_statement(raw)
    assert statement.statement_type.endswith("v0.1")
    assert statement.raw == raw


def test_subject_digest_must_match_the_image() -> None:
    statement = build_statement([subject_for_image("r/a", DIGEST)], CYCLONEDX_BOM, {"a": 1})
    require_subject_digest(statement, DIGEST, what="sbom")
    with pytest.raises(
        AttestationError, match=f"no subject digest equals the image digest {OTHER}"
    ):
        require_subject_digest(statement, OTHER, what="sbom")


def test_github_attest_vector_parses_as_statement_v1(vectors: Path) -> None:
    raw = (vectors / "slsa-statement-github-attest.json").read_bytes()
    statement = parse_statement(raw)
    assert statement.statement_type == STATEMENT_V1
    assert statement.predicate_type == SLSA_PROVENANCE_V1
    assert statement.subjects[0].name == "a.txt"
    assert statement.matches_digest(
        "sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"
    )


@pytest.mark.parametrize(
    ("alias", "uri"),
    [
        ("slsaprovenance1", SLSA_PROVENANCE_V1),
        ("slsaprovenance", SLSA_PROVENANCE_V02),
        ("cyclonedx", CYCLONEDX_BOM),
        ("spdxjson", "https://spdx.dev/Document"),
        ("vuln", "https://cosign.sigstore.dev/attestation/vuln/v1"),
        ("custom", "https://cosign.sigstore.dev/attestation/v1"),
        ("https://example.com/my/predicate/v1", "https://example.com/my/predicate/v1"),
        ("urn:example:thing:v1", "urn:example:thing:v1"),
    ],
)
def test_predicate_type_aliases_match_cosign(alias: str, uri: str) -> None:
    assert resolve_predicate_type(alias) == uri


@pytest.mark.parametrize("bad", ["sbom", "cyclone", "example.com/x", "", "http://"])
def test_unknown_predicate_type_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError, match="neither a known alias"):
        resolve_predicate_type(bad)


def test_predicate_files_must_be_json_objects(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"a": 1}')
    assert load_predicate(good) == {"a": 1}
    cases = {
        "array.json": ("[1]", "must be a JSON object, not an array"),
        "string.json": ('"x"', "not a string"),
        "broken.json": ("{", "not valid JSON"),
        "binary.json": (b"{\xc3\x28}", "not UTF-8"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        with pytest.raises(UsageError, match=message):
            load_predicate(path)
    with pytest.raises(UsageError, match="no such file"):
        load_predicate(tmp_path / "missing.json")
    with pytest.raises(UsageError, match="is a directory"):
        load_predicate(tmp_path)
    with pytest.raises(UsageError, match="not a number"):
        parse_predicate(b"3", what="p")
