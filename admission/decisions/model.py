"""The stored shape of one admission decision, and how it is derived from a ``Decision``.

A record keeps the decision exactly as ``Decision.to_dict()`` gave it, as
canonical JSON (RFC 8785) — those bytes are what the hash chain covers — plus
columns derived from it for filtering (time, request, result, policy hashes)
and one row per image (reference, digest, matched policy).  The derived columns
are recomputed by ``chain.verify`` so editing them is detected too.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import rfc8785

from admission.decisions.sbom import without_statement
from attest.errors import UsageError


@dataclass(frozen=True)
class ImageRow:
    """One image of a decision: what the workload named, what it resolved to, which policy."""

    position: int
    reference: str
    digest: str | None
    policy: str | None


@dataclass(frozen=True)
class RecordFields:
    """The filterable columns of a decision, all derived from its document."""

    time: str
    uid: str
    operation: str
    kind: str
    namespace: str
    name: str
    user: str
    result: str
    bundle_hash: str
    trust_fingerprint: str
    engine: str
    images: tuple[ImageRow, ...]

    def columns(self) -> dict[str, str]:
        """The scalar columns, keyed as in the ``decisions`` table."""
        return {
            "time": self.time,
            "uid": self.uid,
            "operation": self.operation,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "username": self.user,
            "result": self.result,
            "bundle_hash": self.bundle_hash,
            "trust_fingerprint": self.trust_fingerprint,
            "engine": self.engine,
        }


@dataclass(frozen=True)
class StoredDecision:
    """A decision as read back from the store, with its place in its replica's chain."""

    id: int
    replica: str
    seq: int
    prev_hash: str
    hash: str
    fields: RecordFields
    document: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The export form: chain position plus the decision as recorded."""
        return {
            "id": self.id,
            "replica": self.replica,
            "seq": self.seq,
            "hash": self.hash,
            "prevHash": self.prev_hash,
            "decision": self.document,
        }


def decision_document(decision: Any) -> dict[str, Any]:
    """The dict to record for a ``Decision`` (anything with ``to_dict()``) or a plain dict.

    Decoded in-toto Statements are left out of each image's signature and
    attestation checks: an SBOM can be megabytes, and recording it with every
    decision would make each record (and its canonical JSON) that large.  What
    was checked stays: predicate type, where it was found (the attestation's
    manifest digest, from which the Statement can be fetched), signer,
    outcome and every reason; the policy input keeps the provenance facts Rego
    saw (and Statements too when the configuration gives them to Rego).
    """
    if isinstance(decision, dict):
        return _without_statements(decision)
    to_dict = getattr(decision, "to_dict", None)
    if to_dict is None:
        raise TypeError(f"cannot record a {type(decision).__name__}: it has no to_dict()")
    document = to_dict()
    if not isinstance(document, dict):
        raise TypeError(f"{type(decision).__name__}.to_dict() did not return a dict")
    return _without_statements(document)


_CHECK_LISTS = ("signatures", "attestations")


def _without_statements(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with ``images[].verification.{signatures,attestations}[].statement``
    removed (copies only what changes; the caller's objects are not modified)."""
    images = document.get("images")
    if not isinstance(images, list):
        return document
    changed = False
    kept: list[Any] = []
    for image in images:
        verification = image.get("verification") if isinstance(image, dict) else None
        if isinstance(verification, dict) and any(
            isinstance(check, dict) and "statement" in check
            for key in _CHECK_LISTS
            for check in verification.get(key) or ()
        ):
            verification = dict(verification)
            for key in _CHECK_LISTS:
                if isinstance(verification.get(key), list):
                    verification[key] = [
                        without_statement(check) if isinstance(check, dict) else check
                        for check in verification[key]
                    ]
            image = {**image, "verification": verification}
            changed = True
        kept.append(image)
    return {**document, "images": kept} if changed else document


_FLOAT_PLAIN = (1e-4, 1e16)  # where Python's repr and ECMAScript's number format agree
_MAX_CODE_UNIT = "\uffff"  # keys up to here sort alike by code point and by UTF-16 code unit


class _NotFast(Exception):
    pass


def _plain_float(value: float) -> float | int:
    """``value`` as ``json.dumps`` must get it to print it as ECMAScript does, else ``_NotFast``:
    integral values as ints (``0``, not ``0.0`` or ``-0.0``), others only where Python's
    shortest repr is in the same fixed notation as ECMAScript's."""
    magnitude = abs(value)
    if value.is_integer() and magnitude < _FLOAT_PLAIN[1]:
        return int(value)
    if _FLOAT_PLAIN[0] <= magnitude < _FLOAT_PLAIN[1]:
        return value
    raise _NotFast  # NaN, infinities, and where the notations differ: rfc8785 decides


def _check_keys(value: dict[Any, Any]) -> None:
    """Raise ``_NotFast`` unless every key is a ``str`` that sorts the same by code point
    (``json.dumps``) and by UTF-16 code unit (RFC 8785): true up to U+FFFF."""
    try:
        keys = "".join(value)  # a TypeError for any key that is not a str
    except TypeError:
        raise _NotFast from None
    if not keys.isascii() and max(keys) > _MAX_CODE_UNIT:
        raise _NotFast


def _plain(value: Any) -> Any:
    """``value`` ready for ``json.dumps`` to print exactly as RFC 8785, else ``_NotFast``."""
    if isinstance(value, str | int) or value is None:  # bool is an int
        return value
    if isinstance(value, float):
        return _plain_float(value)
    if isinstance(value, dict):
        _check_keys(value)
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    raise _NotFast


_SCALARS = frozenset({str, int, bool, type(None)})


def _plain_fast(value: Any) -> Any:
    """``_plain`` for the exact built-in types, copy on write: ``value`` itself when it is
    ready as it is (the usual case: no copy), else a copy with what differs converted.
    Type checks instead of ``isinstance`` chains (twice as fast on a decision); anything
    else goes to ``_plain``, so the result is always the same."""
    kind = type(value)
    if kind is dict:
        _check_keys(value)
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            if type(item) in _SCALARS:
                continue
            new = _plain_fast(item)
            if new is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
        return value if changed is None else changed
    if kind is list or kind is tuple:
        copied: list[Any] | None = None
        for index, item in enumerate(value):
            if type(item) in _SCALARS:
                continue
            new = _plain_fast(item)
            if new is not item:
                if copied is None:
                    copied = list(value)
                copied[index] = new
        return value if copied is None else copied
    if kind is float:
        return _plain_float(value)
    if kind in _SCALARS:
        return value
    return _plain(value)


# Only for values ``_plain_fast`` passed: finite, acyclic (a cycle ends its recursion first).
_FAST_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
)


def _dumps(document: Any) -> bytes:
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """Canonical JSON of a decision document (the bytes the chain hashes): RFC 8785.

    The common case is one pass that only checks (``_plain_fast``: exact built-in
    types, keys up to U+FFFF, floats where Python and ECMAScript print them alike,
    integral floats as ints) and the C JSON encoder (sorted keys, no spaces,
    UTF-8); anything where that could differ from RFC 8785 (huge or tiny floats,
    keys beyond U+FFFF) uses ``rfc8785``.  One extension: integers beyond
    ±(2**53 − 1), which RFC 8785 cannot express (the policy input's
    ``time.unixNs`` is one), are written exactly.
    """
    try:
        return _FAST_ENCODER.encode(_plain_fast(document)).encode("utf-8")
    except (_NotFast, ValueError, UnicodeEncodeError):
        pass
    try:
        return rfc8785.dumps(document)
    except rfc8785.IntegerDomainError:
        return _dumps(document)  # deterministic still; verify rehashes the stored text


def load_document(text: str | bytes) -> dict[str, Any]:
    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError(f"a decision record is a JSON object, not {type(document).__name__}")
    return document


def pick(data: Any, *names: str, default: Any = None) -> Any:
    """The first present, non-None value among ``names`` (snake_case and camelCase spellings)."""
    if not isinstance(data, dict):
        return default
    for name in names:
        value = data.get(name)
        if value is not None:
            return value
    return default


def normalise_time(value: Any) -> str:
    """A fixed-width UTC timestamp (``YYYY-MM-DDTHH:MM:SS.ffffffZ``) that sorts as text."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = dt.datetime.fromtimestamp(value, tz=dt.UTC)
    elif isinstance(value, str) and value:
        text = value.strip()
        try:
            moment = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise UsageError(f"time {value!r}: not an ISO 8601 timestamp") from None
    else:
        raise UsageError(f"time {value!r}: not a timestamp")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _user(value: Any) -> str:
    if isinstance(value, dict):
        return _text(pick(value, "username", "name"))
    return _text(value)


def _images(document: dict[str, Any]) -> tuple[ImageRow, ...]:
    rows = []
    for position, image in enumerate(pick(document, "images", default=[]) or []):
        if isinstance(image, str):
            rows.append(ImageRow(position, image, None, None))
            continue
        if not isinstance(image, dict):
            continue
        verification = pick(image, "verification", default={})
        digest = pick(image, "digest") or pick(verification, "digest")
        policy = pick(image, "policy", "matched_policy", "matchedPolicy")
        if isinstance(policy, dict):
            policy = pick(policy, "name")
        rows.append(
            ImageRow(
                position,
                _text(pick(image, "reference", "image")),
                _text(digest) or None,
                _text(policy) or None,
            )
        )
    return tuple(rows)


def record_fields(document: dict[str, Any]) -> RecordFields:
    """Derive the filterable columns from a decision document (tolerant of missing keys)."""
    result = _text(pick(document, "result")).lower()
    return RecordFields(
        time=normalise_time(pick(document, "time", "timestamp")),
        uid=_text(pick(document, "uid")),
        operation=_text(pick(document, "operation")).upper(),
        kind=_text(pick(document, "kind")),
        namespace=_text(pick(document, "namespace")),
        name=_text(pick(document, "name")),
        user=_user(pick(document, "user", "userInfo", "user_info")),
        result=result,
        bundle_hash=_text(pick(document, "bundle_hash", "bundleHash")),
        trust_fingerprint=_text(pick(document, "trust_fingerprint", "trustFingerprint")),
        engine=_text(pick(document, "engine")),
        images=_images(document),
    )
