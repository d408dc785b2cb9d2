"""In-toto Statements (v1): build them, parse them, check them against an image.

This is the one home of the Statement: its type URIs, the DSSE payload type that
carries it, cosign's image-signature Statement, the strict parse of a Statement
about to be judged, and the lenient checks a verifier makes on signed bytes
before trusting them (type, subject digest, predicate type) — it knows nothing of
signatures.  We build the Statement as plain JSON ourselves and sign exactly those
bytes.  ``in-toto-attestation`` is used to *validate* what we build or read (its
protobuf model and ``Statement.validate()``), never to serialise: its
``google.protobuf.Struct`` turns every integer in the predicate into a float,
so a round-trip would change the signed content (``"size": 3`` → ``3.0``).

Reading accepts ``https://in-toto.io/Statement/v1`` and the older ``v0.1``
(what cosign's legacy ``attest`` still writes); writing is always v1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement as InTotoStatement

from attest.attestations.predicates import SIGN_PREDICATE_TYPE
from attest.errors import AttestationError

STATEMENT_V1 = "https://in-toto.io/Statement/v1"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
STATEMENT_TYPES = frozenset({STATEMENT_V1, STATEMENT_V01})
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
"""The DSSE payload type (and media type) of an in-toto Statement."""

_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128, "sha1": 40, "gitCommit": 40}


@dataclass(frozen=True)
class Subject:
    """One subject of a Statement: a name and a digest set (``{"sha256": "<hex>"}``)."""

    name: str
    digest: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": dict(self.digest)}


@dataclass(frozen=True)
class Statement:
    """A parsed or built in-toto Statement; ``raw`` is the exact JSON that is (to be) signed."""

    statement_type: str
    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: dict[str, Any]
    raw: bytes

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.raw)  # parse_statement checked it is an object
        return data

    def matches_digest(self, digest: str) -> bool:
        """Whether a subject carries ``digest`` (``algorithm:hex``)."""
        algorithm, _, hex_value = digest.partition(":")
        return any(s.digest.get(algorithm) == hex_value for s in self.subjects)


def subject_for_image(name: str, digest: str) -> Subject:
    """The subject naming an image: its repository name and its manifest digest."""
    algorithm, sep, hex_value = digest.partition(":")
    if not sep or not hex_value:
        raise AttestationError(f"image digest {digest!r} is not of the form algorithm:hex")
    return Subject(name=name, digest={algorithm: hex_value})


def build_statement(
    subjects: Iterable[Subject], predicate_type: str, predicate: Mapping[str, Any]
) -> Statement:
    """A v1 Statement as compact JSON bytes, validated with ``in-toto-attestation``."""
    document = {
        "_type": STATEMENT_V1,
        "subject": [s.to_dict() for s in subjects],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }
    try:
        raw = json.dumps(
            document, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (TypeError, ValueError) as err:
        raise AttestationError(f"predicate cannot be serialised as JSON: {err}") from None
    return parse_statement(raw, what="built statement")


def parse_statement(raw: bytes, *, what: str = "statement") -> Statement:
    """Parse and validate a Statement from the exact bytes that were signed."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AttestationError(f"{what} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise AttestationError(f"{what} is not a JSON object")
    statement_type = data.get("_type")
    if not _is_statement_type(statement_type):
        raise AttestationError(
            f"{what} has _type {statement_type!r}, expected {STATEMENT_V1!r} (or v0.1)"
        )
    predicate_type = data.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise AttestationError(f"{what} has no predicateType")
    predicate = data.get("predicate", {})
    if not isinstance(predicate, dict):
        raise AttestationError(f"{what} predicate must be a JSON object")
    subjects = _parse_subjects(data.get("subject"), what)
    validate_with_in_toto(data, what=what)
    return Statement(statement_type, subjects, predicate_type, predicate, bytes(raw))


def _parse_subjects(value: Any, what: str) -> tuple[Subject, ...]:
    if not isinstance(value, list) or not value:
        raise AttestationError(f"{what} has no subject (a non-empty list is required)")
    subjects = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise AttestationError(f"{what} subject[{i}] is not an object")
        name = entry.get("name", "")
        digest = entry.get("digest")
        if not isinstance(name, str):
            raise AttestationError(f"{what} subject[{i}] name is not a string")
        if not isinstance(digest, dict) or not digest:
            raise AttestationError(f"{what} subject[{i}] has no digest set")
        for algorithm, hex_value in digest.items():
            if not isinstance(hex_value, str):
                raise AttestationError(f"{what} subject[{i}] digest {algorithm!r} is not a string")
            expected = _HEX_LENGTHS.get(algorithm)
            if expected and not re.fullmatch(rf"[0-9a-f]{{{expected}}}", hex_value):
                raise AttestationError(
                    f"{what} subject[{i}] digest {algorithm}:{hex_value!r} is not "
                    f"{expected} lowercase hex characters"
                )
        subjects.append(Subject(name=name, digest=dict(digest)))
    return tuple(subjects)


def validate_with_in_toto(data: Mapping[str, Any], *, what: str = "statement") -> None:
    """Run ``in-toto-attestation``'s own model and validator over a Statement document."""
    try:
        message = json_format.ParseDict(
            dict(data), statement_pb2.Statement(), ignore_unknown_fields=True
        )
        model = InTotoStatement.copy_from_pb(message)
        if data.get("_type") == STATEMENT_V01:
            model.pb.type = STATEMENT_V1  # same shape; the library only knows the v1 URI
        model.validate()
    except (json_format.ParseError, ValueError, TypeError) as err:
        raise AttestationError(f"{what} fails in-toto validation: {err}") from None


def require_subject_digest(statement: Statement, digest: str, *, what: str) -> None:
    """Raise unless a subject of ``statement`` carries the image digest."""
    if not statement.matches_digest(digest):
        found = ", ".join(
            f"{alg}:{value}" for s in statement.subjects for alg, value in s.digest.items()
        )
        raise AttestationError(
            f"{what}: no subject digest equals the image digest {digest} (subjects: {found})"
        )


# -- cosign's image signature -----------------------------------------------------------


def signature_statement(
    digest: str, annotations: dict[str, str] | None = None, *, name: str = ""
) -> bytes:
    """The in-toto Statement cosign v3 signs for an image signature (``name``: the repository)."""
    algorithm, hex_part = digest.split(":", 1)
    subject: dict[str, Any] = {"digest": {algorithm: hex_part}}
    if name:  # optional in in-toto v1, but sigstore-python insists on it
        subject = {"name": name, **subject}
    subject["annotations"] = dict(annotations or {})
    statement = {
        "_type": STATEMENT_V1,
        "subject": [subject],
        "predicateType": SIGN_PREDICATE_TYPE,
        "predicate": {},
    }
    return json.dumps(statement, separators=(",", ":")).encode()


# -- signed bytes, before they are trusted ------------------------------------------------


def decode_statement(payload: bytes | None) -> dict[str, Any] | None:
    """Signed bytes as a JSON object (a Statement to check), or None when they are not one."""
    if payload is None:
        return None
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _is_statement_type(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and value in STATEMENT_TYPES  # signed yet hostile: any JSON


def predicate_type_of(document: Mapping[str, Any]) -> str | None:
    """The document's ``predicateType`` when it is a non-empty string."""
    value = document.get("predicateType")
    return value if isinstance(value, str) and value else None


def subject_matches(statement: Mapping[str, Any], digest: str) -> bool:
    """Whether any subject of the Statement carries ``digest`` (``algorithm:hex``)."""
    algorithm, _, hex_part = digest.partition(":")
    subjects = statement.get("subject")
    if not isinstance(subjects, list):
        return False
    return any(
        isinstance(s, dict)
        and isinstance(s.get("digest"), dict)
        and str(s["digest"].get(algorithm, "")).lower() == hex_part
        for s in subjects
    )


def subject_annotations(statement: Mapping[str, Any], digest: str) -> dict[str, Any]:
    """Annotations of the subject naming ``digest`` (cosign v3 puts ``-a`` values there)."""
    algorithm, _, hex_part = digest.partition(":")
    for subject in statement.get("subject") or []:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if isinstance(digests, dict) and str(digests.get(algorithm, "")).lower() == hex_part:
            annotations = subject.get("annotations")
            return dict(annotations) if isinstance(annotations, dict) else {}
    return {}


def statement_problems(statement: Mapping[str, Any] | None, digest: str) -> list[str]:
    """Why signed content is not an in-toto Statement about the image ``digest`` (empty: it is)."""
    if statement is None:
        return ["payload is not an in-toto Statement (not a JSON object)"]
    problems = []
    if not _is_statement_type(statement.get("_type")):
        problems.append(f"statement _type {statement.get('_type')!r} is not an in-toto Statement")
    if not subject_matches(statement, digest):
        problems.append(f"statement has no subject with the image digest {digest}")
    if predicate_type_of(statement) is None:
        problems.append("statement has no predicateType")
    return problems


def check_statement_for(statement_json: bytes, digest: str) -> dict[str, Any]:
    """Before signing: parse a Statement and require a subject naming ``digest``; returns it."""
    try:
        document = json.loads(statement_json)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AttestationError(f"statement is not JSON ({err})") from None
    if not isinstance(document, dict):
        raise AttestationError("statement is not a JSON object")
    if not _is_statement_type(document.get("_type")):
        raise AttestationError(
            f"statement _type {document.get('_type')!r} is not an in-toto Statement"
        )
    if predicate_type_of(document) is None:
        raise AttestationError("statement has no predicateType")
    if not subject_matches(document, digest):
        raise AttestationError(f"statement has no subject with digest {digest}")
    return document
