"""The canonical form's fast path (the C JSON encoder) prints exactly RFC 8785's bytes.

Proven three ways: over generated documents against ``rfc8785`` (hypothesis), over
random floats and tricky strings and keys against ECMAScript itself (Node's
``JSON.stringify`` and its UTF-16 key sort, which RFC 8785 is defined by), and end to end:
records that need the fallback (floats printed differently, keys beyond U+FFFF) chain,
verify and stay tamper-evident on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
from typing import Any

import pytest
import rfc8785
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from admission.decisions.chain import load_head_signer
from admission.decisions.model import canonical_bytes, decision_document
from admission.decisions.recorder import DecisionRecorder
from admission.decisions.store import DecisionDatabase
from admission.testing.samples import decision
from tests.decisions.test_chain import execute, report_for

# Characters where JSON encoders and the two key orders disagree if anyone does.
SPECIAL = [
    "\x00", "\x08", "\t", "\n", "\x0b", "\x0c", "\r", "\x1f", " ", '"', "/", "\\", "\x7f",
    "\x80", "\xa0", "é", "\u2028", "\u2029", "\ud7ff", "\ue000", "\ufeff", "\uffff",
    "\U00010000", "😀", "\U0010ffff", "a", "z", "A", "0",
]  # fmt: skip
EDGE_FLOATS = [
    0.0, -0.0, 1e-4, -1e-4, 9.999999999999999e-05, 1e-7, 1e-6, 5e-324, 2.2250738585072014e-308,
    0.1, 1.5, 3.0, -3.0, 1e15, 9999999999999998.0, 1e16, 1.0000000000000002e16, 2.0**53,
    2.0**53 + 2, 1e21, 1e22, 1.7976931348623157e308, 123456789.125, 0.30000000000000004,
]  # fmt: skip
SAFE_INT = 2**53 - 1  # RFC 8785 (I-JSON) integers

characters = st.sampled_from(SPECIAL) | st.characters(exclude_categories=("Cs",))
texts = st.text(characters, max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-SAFE_INT, SAFE_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(EDGE_FLOATS)
    | texts
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(texts, inner, max_size=5)
    ),
    max_leaves=24,
)
documents = st.dictionaries(texts, values, max_size=6)


@settings(max_examples=600, deadline=None, database=None)
@given(document=documents)
def test_canonical_bytes_are_rfc8785_for_generated_documents(document: dict[str, Any]) -> None:
    assert canonical_bytes(document) == rfc8785.dumps(document)


@pytest.mark.parametrize("value", EDGE_FLOATS, ids=repr)
def test_floats_python_and_ecmascript_print_differently_are_rfc8785(value: float) -> None:
    document = {"latency": {"total": value}, "list": [value, -value]}
    assert canonical_bytes(document) == rfc8785.dumps(document)


def test_keys_beyond_the_bmp_sort_by_utf16_code_units() -> None:
    # By code point U+E000 < U+1F600; by UTF-16 code unit 0xD83D (the high surrogate) < 0xE000.
    document = {"\ue000": 1, "😀": 2, "\uffff": {"\U00010000": 3, "\ufb01": 4}, "a": 5}
    expected = rfc8785.dumps(document)
    assert expected.index("😀".encode()) < expected.index("\ue000".encode())
    assert canonical_bytes(document) == expected
    assert canonical_bytes({"\ue000": 1, "é": 2}) == rfc8785.dumps({"\ue000": 1, "é": 2})


def test_escaping_is_rfc8785s_only_the_required_characters() -> None:
    text = "".join(SPECIAL)
    encoded = canonical_bytes({"s": text})
    assert encoded == rfc8785.dumps({"s": text})
    # U+007F, U+2028/9, '/' and everything beyond ASCII are written as they are, in UTF-8
    for raw in ("\x7f", "\u2028", "\u2029", "/", "😀", "\uffff"):
        assert raw.encode() in encoded
    assert b'\\u0000\\b\\t\\n\\u000b\\f\\r\\u001f \\"/\\\\' in encoded


def test_what_rfc8785_refuses_is_not_written_by_the_fast_path() -> None:
    for bad in ({"s": "\ud800"}, {"\udfff": 1}, {1: "int key"}, {"f": float("nan")}):
        refused = (rfc8785.CanonicalizationError, ValueError)  # UnicodeEncodeError for surrogates
        with pytest.raises(refused):
            rfc8785.dumps(bad)
        with pytest.raises(refused):
            canonical_bytes(bad)
    # beyond ±(2**53 − 1) RFC 8785 has no integers; the record keeps them exactly
    big = {"time": {"unixNs": 1796608123940144896, "rfc3339": "x"}, "f": 1.5}
    assert canonical_bytes(big) == b'{"f":1.5,"time":{"rfc3339":"x","unixNs":1796608123940144896}}'


def test_the_callers_document_is_never_changed() -> None:
    document = {"latency": {"resolve": 0.0, "total": 3.0}, "tuple": (1, 2.0)}
    assert canonical_bytes(document) == b'{"latency":{"resolve":0,"total":3},"tuple":[1,2]}'
    assert document == {"latency": {"resolve": 0.0, "total": 3.0}, "tuple": (1, 2.0)}
    assert type(document["latency"]["resolve"]) is float


_JCS_JS = r"""
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
function canon(v) {
  if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
  if (v !== null && typeof v === 'object')
    return '{' + Object.keys(v).sort().map(k => JSON.stringify(k) + ':' + canon(v[k])).join(',') + '}';
  return JSON.stringify(v);
}
process.stdout.write(JSON.stringify(input.map(canon)));
"""


def _random_float(rng: random.Random) -> float:
    while True:
        (value,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if value == value and abs(value) != float("inf"):
            return float(value)


def test_canonical_bytes_equal_ecmascripts_own_output() -> None:
    """RFC 8785 is ECMAScript's JSON.stringify with keys sorted by UTF-16 code units: ask V8."""
    node = shutil.which("node")
    assert node, "node (scripts/system-deps.sh) is needed: it is the reference for RFC 8785"
    rng = random.Random(8785)
    documents: list[dict[str, Any]] = [{"f": _random_float(rng)} for _ in range(3000)]
    documents += [{"f": rng.uniform(-1e6, 1e6)} for _ in range(500)]
    documents += [{"f": value, "n": [value, -value]} for value in EDGE_FLOATS]
    for _ in range(300):
        keys = ["".join(rng.choices(SPECIAL, k=rng.randint(0, 3))) for _ in range(4)]
        documents.append({key: {"s": key, "i": rng.randint(-SAFE_INT, SAFE_INT)} for key in keys})
    # the documents travel to Node as ASCII JSON (floats as shortest repr, exact either way)
    done = subprocess.run(
        [node, "-e", _JCS_JS],
        input=json.dumps(documents, ensure_ascii=True),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    expected = json.loads(done.stdout)
    assert len(expected) == len(documents)
    mismatches = [
        (document, want)
        for document, want in zip(documents, expected, strict=True)
        if canonical_bytes(document) != want.encode("utf-8")
    ]
    assert not mismatches, mismatches[:5]


def _fill(db_url: str, signer_key: Any, documents: list[dict[str, Any]]) -> None:
    signer = load_head_signer(str(signer_key))
    recorder = DecisionRecorder(db_url, replica="pod-a", signer=signer, batch_size=1).start()
    for document in documents:
        assert recorder.record(document)
    assert recorder.flush(30)
    recorder.close()


def _stored_documents(db_url: str) -> list[str]:
    database = DecisionDatabase(db_url)
    with database.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT document FROM attest_decisions ORDER BY seq"))
        stored = [row.document for row in rows]
    database.close()
    return stored


def test_records_on_the_fallback_chain_verify_and_stay_tamper_evident(
    db_url: str, key_pair
) -> None:
    private, public = key_pair
    tricky = decision(result="denied")
    tricky["latency"] = {"evaluate": 1e-7, "resolve": -0.0, "total": 1e21, "verify": 3.0}
    tricky["input"] = {"labels": {"😀": "smile", "\ue000": "private use", "z": 0.5}}
    plain = decision()
    _fill(db_url, private, [plain, tricky, decision()])
    stored = _stored_documents(db_url)
    assert [text.encode() for text in stored[:2]] == [
        rfc8785.dumps(decision_document(plain)),
        rfc8785.dumps(decision_document(tricky)),
    ]
    assert '"evaluate":1e-7' in stored[1] and '"total":1e+21' in stored[1]
    report = report_for(db_url, public)
    assert report.ok, report.problems
    execute(
        db_url,
        "UPDATE attest_decisions SET document = replace(document, '1e-7', '2e-7') WHERE seq = 2",
    )
    assert _stored_documents(db_url)[1] != stored[1]
    report = report_for(db_url, public)
    assert not report.ok
    (first,) = report.first_broken()
    assert first.seq == 2 and "modified" in first.what
