"""Aggregates over decision records, fed one record at a time (memory independent of their count).

``DecisionStats.add`` takes one stored record (``RecordView``) and updates
counters: results per namespace and per time bucket, the compliance rate,
deny reasons, the gaps (admitted in warn mode, through ``unmatchedImages:
allow``, without verified provenance), exceptions used, the policy bundle /
trust fingerprint pairs in force, and every admitted image with its signers,
provenance and SBOM attestation.  ``attest decisions stats``, ``attest
evidence`` and the web overview all read these, so the numbers agree.

Memory grows with the number of distinct images, namespaces, reasons,
exceptions and time buckets, never with the number of records; each of those
maps is capped (``Limits``), and what did not fit is counted and flagged
(``truncated``), never silently dropped.  ``stream_records`` reads records
oldest first through a server-side cursor.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa

from admission.decisions import BUCKETS
from admission.decisions.model import pick
from admission.decisions.query import RecordRow, record_rows
from admission.decisions.store import DecisionDatabase, decisions_table

ADMITTED = ("allowed", "warned")
SLSA_TYPES = ("https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2")
SBOM_TYPES = ("https://cyclonedx.org/bom", "https://spdx.dev/Document")
_DIGEST_TEXT = re.compile(r"sha256:[0-9a-f]{8,64}")
_STREAM_ROWS = 1000


@dataclass(frozen=True)
class Limits:
    """Caps on the distinct keys kept (beyond them records are counted as ``overflow``)."""

    images: int = 100_000
    reasons: int = 10_000
    namespaces: int = 10_000
    exceptions: int = 10_000
    buckets: int = 20_000
    ids_per_image: int = 10
    id_ranges: int = 100_000


class RecordView(NamedTuple):
    """What aggregation needs from one stored record (its columns and its parsed document);
    a tuple, made for every record read."""

    id: int
    replica: str
    seq: int
    time: str
    namespace: str
    result: str
    bundle_hash: str
    trust_fingerprint: str
    document: dict[str, Any]


def exceptions_of(document: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The break-glass exceptions a record names: (applied, considered but not applied).

    The webhook records the applied (else the most relevant) one as ``exception`` and
    every one it considered as ``exceptions``, each with ``applied`` and why; an entry
    without ``applied`` counts as applied (over-reporting an exception is the safe side
    for evidence).  A record without these fields used none.
    """
    seen: dict[tuple[Any, Any], dict[str, Any]] = {}
    _exceptions_in(document, seen)
    for image in document.get("images") or ():
        if isinstance(image, dict):
            _exceptions_in(image, seen)
    if not seen:
        return [], []
    applied = [e for e in seen.values() if e.get("applied", True) is not False]
    rejected = [e for e in seen.values() if e.get("applied", True) is False]
    return applied, rejected


def _exceptions_in(holder: dict[str, Any], seen: dict[tuple[Any, Any], dict[str, Any]]) -> None:
    for key in ("exception", "exceptions"):
        value = holder.get(key)
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and item.get("id"):
                seen.setdefault((item.get("id"), item.get("image")), item)


SignerKey = tuple[Any, Any, Any, Any, Any]  # authority, type, keyId, subject, issuer


def signer_key(check: dict[str, Any]) -> SignerKey:
    """Who signed a check, as a hashable key (cheap per record; labelled once at the end)."""
    signer = check.get("signer")
    if not isinstance(signer, dict):
        return (check.get("authority"), None, None, None, None)
    return (
        check.get("authority"),
        signer.get("type"),
        signer.get("keyId"),
        signer.get("subject"),
        signer.get("issuer"),
    )


def signer_label(key: SignerKey) -> str:
    """One readable line for who signed: ``authority: key <id>`` or ``authority: subject (issuer)``."""
    authority, kind, key_id, subject, issuer = key
    who = f"{subject or '?'} ({issuer or '?'})" if kind == "keyless" else f"key {key_id or '?'}"
    return f"{authority}: {who}" if authority else who


def _provenance(input_image: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The verified SLSA provenance facts the policy input recorded for one image, as
    ``PROVENANCE_FIELDS`` tuples."""
    out = []
    for check in input_image.get("attestations") or ():
        if not isinstance(check, dict) or check.get("verified") is not True:
            continue
        facts = check.get("provenance")
        if isinstance(facts, dict) and check.get("predicateType") in SLSA_TYPES:
            digest = facts.get("sourceDigest")
            commit = (
                (digest.get("gitCommit") or digest.get("sha1"))
                if isinstance(digest, dict)
                else None
            )
            out.append(
                (
                    facts.get("builderId"),
                    facts.get("sourceRepository"),
                    facts.get("sourceRef"),
                    commit,
                    facts.get("buildStartedOn"),
                    facts.get("buildFinishedOn"),
                )
            )
    return out


PROVENANCE_FIELDS = (
    "builder",
    "sourceRepository",
    "sourceRef",
    "commit",
    "buildStartedOn",
    "buildFinishedOn",
)


def _location_digest(location: Any) -> str | None:
    text = str(location or "")
    return text.rsplit("@", 1)[1] if "@sha256:" in text else None


_DETAILS_CAP = 16  # signers, provenance and SBOM variants kept per image


@dataclass
class ImageStats:
    """One admitted image (by digest): who signed it, what built it, where it ran."""

    digest: str
    references: set[str] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)
    signers: set[SignerKey] = field(default_factory=set)
    provenance: set[tuple[Any, ...]] = field(default_factory=set)
    sbom: set[tuple[Any, ...]] = field(default_factory=set)  # predicate type, location, signer
    policies: set[str] = field(default_factory=set)
    decisions: int = 0
    decision_ids: list[int] = field(default_factory=list)
    first: str = ""
    last: str = ""
    warn_mode: int = 0
    unmatched: int = 0
    exceptions: set[str] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "references": sorted(self.references),
            "namespaces": sorted(self.namespaces),
            "signers": sorted(signer_label(key) for key in self.signers),
            "provenance": [
                dict(zip(PROVENANCE_FIELDS, facts, strict=True))
                for facts in sorted(self.provenance, key=repr)
            ],
            "sbom": [
                {
                    "predicateType": kind,
                    "attestation": _location_digest(location),
                    "signer": signer_label(signer),
                }
                for kind, location, signer in sorted(self.sbom, key=repr)
            ],
            "policies": sorted(self.policies),
            "decisions": self.decisions,
            "decisionIds": self.decision_ids,
            "decisionIdsTruncated": self.decisions > len(self.decision_ids),
            "firstAdmitted": self.first,
            "lastAdmitted": self.last,
            "gaps": {
                "warnMode": self.warn_mode,
                "unmatchedAllowed": self.unmatched,
                "withoutProvenance": not self.provenance,
                "exceptions": sorted(self.exceptions),
            },
        }


_BUCKET_LENGTH = {"hour": 13, "day": 10, "month": 7}  # of the time text; an hour gets ":00Z"


def _bucket(time: str, size: str) -> str:
    return time[:13] + ":00Z" if size == "hour" else time[: _BUCKET_LENGTH[size]]


def _reason_key(message: str, references: list[str]) -> str:
    """A deny message with the image it names taken out, so the same reason groups together."""
    text = message
    for reference in sorted(references, key=len, reverse=True):
        if reference:
            text = text.replace(reference, "<image>")
    return _DIGEST_TEXT.sub("sha256:…", text)


class DecisionStats:
    """Streaming aggregates over decision records; ``add`` each, then ``to_dict``."""

    def __init__(self, *, bucket: str = "day", limits: Limits | None = None) -> None:
        if bucket not in BUCKETS:
            raise ValueError(f"bucket {bucket!r}: expected one of {', '.join(BUCKETS)}")
        self.bucket = bucket
        self.limits = limits or Limits()
        self.total = 0
        self.first = ""
        self.last = ""
        self.results: dict[str, int] = {}
        self.namespaces: dict[str, dict[str, int]] = {}
        self.timeline: dict[str, dict[str, int]] = {}
        self.reasons: dict[str, list[Any]] = {}  # key -> [count, example, namespaces set]
        self.images: dict[str, ImageStats] = {}
        self.exceptions: dict[str, dict[str, Any]] = {}
        self.not_applied: dict[str, int] = {}  # exceptions considered but not applied, by why
        self.policies: dict[tuple[str, str], dict[str, Any]] = {}
        self.gaps = {"warnMode": 0, "unmatchedAllowed": 0, "withoutProvenance": 0}
        self.gap_images: dict[str, set[str]] = {k: set() for k in self.gaps}
        self.compliant = 0
        self.admitted = 0
        self.overflow: dict[str, int] = {}

    def _room(self, mapping: dict[Any, Any], key: Any, cap: int, what: str) -> bool:
        if key in mapping or len(mapping) < cap:
            return True
        self.overflow[what] = self.overflow.get(what, 0) + 1
        return False

    def add(self, record: RecordView) -> None:
        """Count one record (this runs for every record of a period: kept lean)."""
        document, result, time = record.document, record.result, record.time
        self.total += 1
        if not self.first or time < self.first:
            self.first = time
        if time > self.last:
            self.last = time
        self.results[result] = self.results.get(result, 0) + 1
        limits = self.limits
        per_ns = self.namespaces.get(record.namespace)
        if per_ns is None and self._room(
            self.namespaces, record.namespace, limits.namespaces, "namespaces"
        ):
            per_ns = self.namespaces[record.namespace] = {"total": 0, "admitted": 0, "compliant": 0}
        if per_ns is not None:
            per_ns["total"] += 1
            per_ns[result] = per_ns.get(result, 0) + 1
        bucket = _bucket(time, self.bucket)
        slot = self.timeline.get(bucket)
        if slot is None and self._room(self.timeline, bucket, limits.buckets, "buckets"):
            slot = self.timeline[bucket] = {}
        if slot is not None:
            slot[result] = slot.get(result, 0) + 1
        key = (record.bundle_hash, record.trust_fingerprint)
        seen = self.policies.get(key)
        if seen is None and self._room(self.policies, key, limits.buckets, "policies"):
            seen = self.policies[key] = {"first": time, "last": time, "records": 0}
        if seen is not None:
            seen["records"] += 1
            if time < seen["first"]:
                seen["first"] = time
            if time > seen["last"]:
                seen["last"] = time
        used, rejected = exceptions_of(document)
        for exception in used:
            self._exception(exception, record)
        for exception in rejected:
            category = str(exception.get("category") or exception.get("why") or "not applied")
            if self._room(self.not_applied, category, self.limits.reasons, "exceptionsNotApplied"):
                self.not_applied[category] = self.not_applied.get(category, 0) + 1
        images = [i for i in document.get("images") or () if isinstance(i, dict)]
        if result in ADMITTED:
            self.admitted += 1
            compliant = self._admitted(record, images, [str(e.get("id")) for e in used])
            if per_ns is not None:
                per_ns["admitted"] += 1
                per_ns["compliant"] += compliant
            self.compliant += compliant
        else:
            self._denied(record, images)

    def _admitted(
        self, record: RecordView, images: list[dict[str, Any]], exceptions: list[str]
    ) -> int:
        """Account the images of an admitted record; 1 when it met every gate as such."""
        inputs = record.document.get("input")
        facts_by_reference = {}
        if isinstance(inputs, dict):
            for fact in inputs.get("images") or ():
                if isinstance(fact, dict):
                    facts_by_reference[fact.get("reference")] = fact
        compliant = not exceptions
        for image in images:
            reference = str(image.get("reference") or "")
            digest = str(image.get("digest") or "") or f"(unresolved) {reference}"
            fact = facts_by_reference.get(reference) or {}
            policy = fact.get("policy")
            warn = isinstance(policy, dict) and policy.get("mode") == "warn"
            outcome = image.get("outcome", "verified")
            unmatched = outcome == "unmatched"
            provenance = _provenance(fact)
            compliant = compliant and not warn and outcome == "verified"
            if warn:
                self._gap("warnMode", digest)
            if unmatched:
                self._gap("unmatchedAllowed", digest)
            if not provenance:
                self._gap("withoutProvenance", digest)
            stats = self.images.get(digest)
            if stats is None:
                if not self._room(self.images, digest, self.limits.images, "images"):
                    continue
                stats = self.images[digest] = ImageStats(digest, first=record.time)
            self._image_details(stats, image, reference, provenance)
            stats.namespaces.add(record.namespace)
            stats.decisions += 1
            if len(stats.decision_ids) < self.limits.ids_per_image:
                stats.decision_ids.append(record.id)
            if record.time < stats.first:
                stats.first = record.time
            if record.time > stats.last:
                stats.last = record.time
            stats.warn_mode += warn
            stats.unmatched += unmatched
            stats.exceptions.update(exceptions)
        return int(compliant)

    def _gap(self, gap: str, digest: str) -> None:
        self.gaps[gap] += 1
        if len(self.gap_images[gap]) < self.limits.images:
            self.gap_images[gap].add(digest)

    @staticmethod
    def _image_details(
        stats: ImageStats, image: dict[str, Any], reference: str, provenance: list[tuple[Any, ...]]
    ) -> None:
        stats.references.add(reference)
        if image.get("policy"):
            stats.policies.add(str(image["policy"]))
        if len(stats.provenance) < _DETAILS_CAP:
            stats.provenance.update(provenance)
        verification = image.get("verification")
        if not isinstance(verification, dict):
            return
        for check in verification.get("signatures") or ():
            verified = isinstance(check, dict) and check.get("verified") is True
            if verified and len(stats.signers) < _DETAILS_CAP:
                stats.signers.add(signer_key(check))
        for check in verification.get("attestations") or ():
            if not isinstance(check, dict) or check.get("verified") is not True:
                continue
            kind = check.get("predicateType") or check.get("predicate_type")
            if kind in SBOM_TYPES and len(stats.sbom) < _DETAILS_CAP:
                stats.sbom.add((kind, check.get("location"), signer_key(check)))

    def _denied(self, record: RecordView, images: list[dict[str, Any]]) -> None:
        references = [str(pick(i, "reference", default="")) for i in images]
        messages = record.document.get("messages") or [f"({record.result})"]
        for message in messages:
            key = _reason_key(str(message), references)
            if not self._room(self.reasons, key, self.limits.reasons, "reasons"):
                continue
            entry = self.reasons.setdefault(key, [0, str(message), set()])
            entry[0] += 1
            if str(message) < entry[1]:  # the same example whatever order records come in
                entry[1] = str(message)
            if len(entry[2]) < 50:
                entry[2].add(record.namespace)

    def _exception(self, exception: dict[str, Any], record: RecordView) -> None:
        ident = str(exception.get("id"))
        if not self._room(self.exceptions, ident, self.limits.exceptions, "exceptions"):
            return
        entry = self.exceptions.setdefault(
            ident,
            {
                "id": ident,
                "signer": exception.get("signer"),
                "reason": exception.get("reason"),
                "ticket": exception.get("ticket"),
                "expires": exception.get("expires"),
                "uses": 0,
                "firstUsed": record.time,
                "lastUsed": record.time,
                "namespaces": set(),
                "decisionIds": [],
            },
        )
        entry["uses"] += 1
        entry["firstUsed"] = min(entry["firstUsed"], record.time)
        entry["lastUsed"] = max(entry["lastUsed"], record.time)
        entry["namespaces"].add(record.namespace)
        if len(entry["decisionIds"]) < self.limits.ids_per_image:
            entry["decisionIds"].append(record.id)

    def merge(self, other: DecisionStats) -> None:
        """Add ``other``'s counts (of other records) to these: the same result as if every
        record had been added here, whatever the order (records split across processes)."""
        ids = self.limits.ids_per_image
        self.total += other.total
        self.first = min(filter(None, (self.first, other.first)), default="")
        self.last = max(self.last, other.last)
        _add_counts(self.results, other.results)
        for name, counts in other.namespaces.items():
            _add_counts(self.namespaces.setdefault(name, dict.fromkeys(counts, 0)), counts)
        for bucket, counts in other.timeline.items():
            _add_counts(self.timeline.setdefault(bucket, {}), counts)
        for reason, (count, example, namespaces) in other.reasons.items():
            said = self.reasons.setdefault(reason, [0, example, set()])
            said[0] += count
            said[1] = min(said[1], example)
            said[2] |= namespaces
        for digest, theirs in other.images.items():
            mine = self.images.get(digest)
            if mine is None:
                self.images[digest] = theirs
                continue
            for name in ("references", "namespaces", "signers", "provenance", "sbom", "policies"):
                getattr(mine, name).update(getattr(theirs, name))
            mine.exceptions |= theirs.exceptions
            mine.decisions += theirs.decisions
            mine.decision_ids = sorted(mine.decision_ids + theirs.decision_ids)[:ids]
            mine.first = min(mine.first, theirs.first)
            mine.last = max(mine.last, theirs.last)
            mine.warn_mode += theirs.warn_mode
            mine.unmatched += theirs.unmatched
        for ident, theirs_entry in other.exceptions.items():
            entry = self.exceptions.get(ident)
            if entry is None:
                self.exceptions[ident] = theirs_entry
                continue
            entry["uses"] += theirs_entry["uses"]
            entry["firstUsed"] = min(entry["firstUsed"], theirs_entry["firstUsed"])
            entry["lastUsed"] = max(entry["lastUsed"], theirs_entry["lastUsed"])
            entry["namespaces"] |= theirs_entry["namespaces"]
            entry["decisionIds"] = sorted(entry["decisionIds"] + theirs_entry["decisionIds"])[:ids]
        _add_counts(self.not_applied, other.not_applied)
        for key, seen in other.policies.items():
            policy = self.policies.setdefault(key, {**seen, "records": 0})
            policy["records"] += seen["records"]
            policy["first"] = min(policy["first"], seen["first"])
            policy["last"] = max(policy["last"], seen["last"])
        _add_counts(self.gaps, other.gaps)
        for gap, digests in other.gap_images.items():
            self.gap_images[gap] |= digests
        self.compliant += other.compliant
        self.admitted += other.admitted
        _add_counts(self.overflow, other.overflow)

    def to_dict(self, *, top: int = 20) -> dict[str, Any]:
        """Plain data (JSON-ready); ``top`` bounds the deny reasons listed."""
        reasons = sorted(self.reasons.items(), key=lambda item: (-item[1][0], item[0]))
        return {
            "records": self.total,
            "first": self.first or None,
            "last": self.last or None,
            "results": dict(sorted(self.results.items())),
            "compliance": _rate(self.admitted, self.compliant),
            "namespaces": {
                name: {
                    **counts,
                    "complianceRate": _rate(counts["admitted"], counts["compliant"])["rate"],
                }
                for name, counts in sorted(self.namespaces.items())
            },
            "timeline": {"bucket": self.bucket, "counts": dict(sorted(self.timeline.items()))},
            "denyReasons": [
                {"reason": key, "count": count, "example": example, "namespaces": sorted(ns)}
                for key, (count, example, ns) in reasons[:top]
            ],
            "denyReasonsTotal": len(reasons),
            "gaps": {
                gap: {"admissions": count, "images": sorted(self.gap_images[gap])}
                for gap, count in self.gaps.items()
            },
            "exceptions": [
                {**entry, "namespaces": sorted(entry["namespaces"])}
                for _, entry in sorted(self.exceptions.items())
            ],
            "exceptionsNotApplied": dict(sorted(self.not_applied.items())),
            "policies": [
                {"bundleHash": bundle, "trustFingerprint": trust, **seen}
                for (bundle, trust), seen in sorted(
                    self.policies.items(), key=lambda item: (item[1]["first"], item[0])
                )
            ],
            "admittedImages": len(self.images),
            "truncated": dict(sorted(self.overflow.items())),
        }

    def image_list(self) -> list[dict[str, Any]]:
        """Every admitted image, most recently admitted first."""
        ordered = sorted(self.images.values(), key=lambda s: (s.last, s.digest), reverse=True)
        return [image.to_dict() for image in ordered]


def _add_counts(into: dict[str, int], counts: dict[str, int]) -> None:
    for key, count in counts.items():
        into[key] = into.get(key, 0) + count


def _rate(admitted: int, compliant: int) -> dict[str, Any]:
    return {
        "admitted": admitted,
        "compliant": compliant,
        "rate": round(compliant / admitted, 6) if admitted else None,
    }


def record_view(row: Any, document: dict[str, Any]) -> RecordView:
    """A ``RecordView`` from a ``decisions`` table row and its parsed document."""
    return RecordView(
        id=row.id,
        replica=row.replica,
        seq=row.seq,
        time=row.time,
        namespace=row.namespace,
        result=row.result,
        bundle_hash=row.bundle_hash,
        trust_fingerprint=row.trust_fingerprint,
        document=document,
    )


def stream_records(
    database: DecisionDatabase, conditions: list[sa.ColumnElement[bool]]
) -> Iterator[RecordView]:
    """Records meeting ``conditions``, oldest first, through a server-side cursor (bounded memory).

    An unreadable document is counted with an empty one rather than stopping the
    aggregation (``attest decisions verify`` is where it is reported).
    """
    table = decisions_table
    statement = record_rows().where(*conditions).order_by(table.c.id)
    make = RecordRow._make
    with database.reading() as conn:
        result = conn.execution_options(stream_results=True, yield_per=_STREAM_ROWS).execute(
            statement
        )
        for row in result:
            record = make(row)
            try:
                document = json.loads(record.document)
            except ValueError:
                document = {}
            yield record_view(record, document if isinstance(document, dict) else {})
