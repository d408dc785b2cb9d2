"""Verification's fast derivation of the columns is ``record_fields`` exactly, or steps aside.

``verify.plain_derive`` derives a record's filter columns and image rows for the
shape the webhook records; for anything else it returns None and ``record_fields``
decides.  If it ever returned something different from ``record_fields``, a forged
column could match it and pass the chain check: every document here, common and
odd, must give either None or exactly what ``record_fields`` gives.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from admission.decisions.model import decision_document, record_fields
from admission.decisions.verify import derive, plain_derive
from admission.testing.samples import decision
from admission.verdict import Decision, ImageDecision

ODD = [
    None,
    "",
    0,
    1.5,
    True,
    {},
    [],
    {"username": "alice", "name": "bob"},
    {"name": "carol"},
    "MiXeD",
    "2026-07-01T00:00:00.000000Z",
    "2026-07-01T00:00:00.000000+00:00",
    "2026-07-01T00:00:00.000000+01:00",
    "2026-07-01T00:00:00Z",
    "2026-07-01T00:00:00.000000",
    " 2026-07-01T00:00:00.000000Z",
    "2026-02-30T00:00:00.000000Z",
    "2026-07-01T24:00:00.000000Z",
    "2026-07-01T23:59:60.000000Z",
    "0999-01-01T00:00:00.000000Z",
    "2026-07-01T00:00:00.000000z",
    1_780_000_000,
]
TOP_KEYS = [
    "time",
    "timestamp",
    "uid",
    "operation",
    "kind",
    "namespace",
    "name",
    "user",
    "userInfo",
    "user_info",
    "result",
    "bundleHash",
    "bundle_hash",
    "trustFingerprint",
    "trust_fingerprint",
    "engine",
    "images",
]
IMAGE_KEYS = [
    "reference",
    "image",
    "digest",
    "policy",
    "matched_policy",
    "matchedPolicy",
    "verification",
]


def webhook_document() -> dict[str, Any]:
    """What the webhook records: ``Decision.to_dict()`` as ``decision_document`` keeps it."""
    verified = ImageDecision(
        reference="reg.example/shop/app:1.0",
        digest="sha256:" + "a" * 64,
        policy="prod",
        outcome="verified",
        verification={"digest": "sha256:" + "a" * 64, "verified": True},
        name="reg.example/shop/app",
    )
    unresolved = ImageDecision(
        reference="reg.example/shop/gone:1",
        digest=None,
        policy=None,
        outcome="error",
        verification=None,
    )
    moment = dt.datetime(2026, 7, 1, 12, 30, 5, 250_000, tzinfo=dt.UTC).timestamp()
    return decision_document(
        Decision(
            uid="0f1e2d3c-0000-4000-8000-000000000001",
            time=moment,
            operation="CREATE",
            kind="Deployment",
            namespace="shop",
            name="app",
            user="system:serviceaccount:argocd:argocd-application-controller",
            result="denied",
            messages=("reg.example/shop/gone:1: not found",),
            images=(verified, unresolved),
            input={"images": []},
            bundle_hash="sha256:" + "b" * 64,
            trust_fingerprint="sha256:" + "f" * 64,
            engine="regopy 1.5.2",
        )
    )


def variants() -> Iterator[dict[str, Any]]:
    """The webhook's document and a sample one, then each with one field made odd."""
    bases = [
        webhook_document(),
        decision(),
        {**decision(result="denied"), "images": ["plain:ref", *decision()["images"]]},
    ]
    yield from bases
    for base in bases:
        for key in TOP_KEYS:
            for value in [*ODD, "__missing__"]:
                document = copy.deepcopy(base)
                if value == "__missing__":
                    document.pop(key, None)
                else:
                    document[key] = value
                yield document
        for position in range(len(base["images"])):
            for key in IMAGE_KEYS:
                for value in [*ODD, {"digest": "sha256:" + "c" * 64}, "__missing__"]:
                    document = copy.deepcopy(base)
                    entry = document["images"][position]
                    if not isinstance(entry, dict):
                        continue
                    if value == "__missing__":
                        entry.pop(key, None)
                    else:
                        entry[key] = value
                    yield document
            for value in ODD:
                document = copy.deepcopy(base)
                document["images"][position] = value
                yield document


def slow(document: dict[str, Any]) -> tuple[Any, ...] | None:
    """What ``record_fields`` derives, as ``verify.Derived`` holds it (None when it raises)."""
    try:
        fields = record_fields(document)
    except Exception:
        return None
    images = tuple((i.position, i.reference, i.digest, i.policy) for i in fields.images)
    return (tuple(fields.columns().values()), images)


def test_the_fast_derivation_is_record_fields_or_nothing() -> None:
    used = 0
    for document in variants():
        fast = plain_derive(document)
        if slow(document) is not None:
            assert tuple(derive(document)) == slow(document)
        if fast is None:
            continue
        used += 1
        assert tuple(fast) == slow(document), document
    assert used > 100  # it does take the common shapes


@pytest.mark.parametrize("document", [webhook_document(), decision(time=dt.datetime.now(dt.UTC))])
def test_the_webhook_shape_takes_the_fast_derivation(document: dict[str, Any]) -> None:
    if "bundle_hash" in document:  # the samples' snake_case spelling: record_fields decides
        assert plain_derive(document) is None
        document["bundleHash"] = document.pop("bundle_hash")
        document["trustFingerprint"] = document.pop("trust_fingerprint")
    document["time"] = "2026-07-01T12:30:05.250000+00:00"
    fast = plain_derive(document)
    assert fast is not None and tuple(fast) == slow(document)
