"""What the overview and per-image pages show, as plain data (the same data is their JSON)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import request
from markupsafe import Markup

from admission.decisions.model import pick
from admission.decisions.store import DecisionDatabase
from admission.errors import DecisionStoreError
from admission.exceptions.settings import ExceptionSet, describe
from admission.web import overview, svg, views
from attest.errors import UsageError

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
IMAGE_PAGE = 100


def wants_json() -> bool:
    """``Accept: application/json`` (preferred over HTML) asks for the page's data as JSON."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def before_id(text: str) -> int | None:
    """The ``before`` page cursor: a record id."""
    value = text.strip()
    if not value:
        return None
    if not value.isdigit():
        raise UsageError(f"before {text!r}: a record id")
    return int(value)


def query_args(values: dict[str, str], before: int) -> dict[str, Any]:
    """The filters of the current page plus the cursor of the next (older) one."""
    args = {k: v for k, v in values.items() if v}
    args["before"] = str(before)
    return args


def overview_data(
    database: DecisionDatabase, args: Any, now: dt.datetime, exceptions: ExceptionSet | None
) -> dict[str, Any]:
    """Every aggregate of the overview for the period in ``since``/``until`` (default 14 days)."""
    since, until, hourly = overview.period(
        (args.get("since") or "").strip(), (args.get("until") or "").strip(), now
    )
    rows = describe(exceptions, now) if exceptions is not None else []
    return {
        "since": since,
        "until": until,
        "bucket": "hour" if hourly else "day",
        "admissions": overview.admissions_over_time(database, since, until, hourly=hourly),
        "compliance": overview.compliance(database, since, until),
        "denyReasons": overview.top_deny_reasons(database, since, until),
        "withoutProvenance": overview.admitted_without_provenance(database, since, until),
        "exceptions": {
            "configured": exceptions is not None,
            "inForce": [r for r in rows if r["status"] in ("in-force", "expiring")],
            "expiringSoon": [r for r in rows if r["status"] == "expiring"],
            "rejected": [r for r in rows if r["status"] in ("rejected", "expired")],
        },
        "chains": overview.chain_status(database),
    }


def charts(data: dict[str, Any]) -> dict[str, Markup]:
    """The overview's SVG charts."""
    compliance = data["compliance"]
    rates = [(compliance["overall"]["namespace"], compliance["overall"]["rate"])] + [
        (n["namespace"], n["rate"]) for n in compliance["namespaces"]
    ]
    return {
        "admissions": svg.stacked_bars(
            data["admissions"]["buckets"],
            data["admissions"]["series"],
            title=f"Admission decisions per {data['bucket']} by result",
        ),
        "compliance": svg.rate_bars(rates, title="Policy compliance rate"),
    }


def _signers(document: dict[str, Any], digest: str) -> list[dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for image in pick(document, "images", default=[]) or []:
        if not isinstance(image, dict) or image.get("digest") != digest:
            continue
        shown = views._image(image)
        for check in shown["signatures"] + shown["attestations"]:
            if check["verified"]:
                key = (check["authority"], check["signer"])
                found.setdefault(
                    key, {"authority": check["authority"], "signer": check["signer"], "what": []}
                )["what"].append(check["what"])
    return list(found.values())


def _provenance(document: dict[str, Any], digest: str) -> dict[str, Any] | None:
    """The provenance facts Rego saw (``input.images[].attestations[].provenance``)."""
    policy_input = pick(document, "input", default={}) or {}
    for image in pick(policy_input, "images", default=[]) or []:
        if not isinstance(image, dict) or image.get("digest") != digest:
            continue
        for attestation in image.get("attestations") or []:
            provenance = attestation.get("provenance") if isinstance(attestation, dict) else None
            if isinstance(provenance, dict):
                return provenance
    return None


def _sbom(document: dict[str, Any], digest: str) -> dict[str, Any] | None:
    for image in pick(document, "images", default=[]) or []:
        if not isinstance(image, dict) or image.get("digest") != digest:
            continue
        verification = image.get("verification") or {}
        for check in (
            verification.get("attestations") or [] if isinstance(verification, dict) else []
        ):
            sbom = check.get("sbom") if isinstance(check, dict) and check.get("verified") else None
            if isinstance(sbom, dict):
                return sbom
    return None


def image_data(database: DecisionDatabase, digest: str, args: Any) -> dict[str, Any]:
    """One image (by digest): every decision that involved it (paged), its verified signers,
    provenance and SBOM summary as the newest decision that verified them recorded."""
    value = digest.strip().lower()
    if not _DIGEST.match(value):
        raise UsageError(f"digest {digest!r}: expected sha256:<64 hex digits>")
    if not overview.digests_known(database, value):
        raise DecisionStoreError(f"image {value}: not found in the decisions")
    before = before_id(args.get("before", "") or "")
    records = overview.image_decisions(database, value, IMAGE_PAGE, before)
    references = sorted(
        {i.reference for r in records for i in r.fields.images if i.digest == value}
    )
    signers: list[dict[str, Any]] = []
    provenance = sbom = None
    for record in records:  # newest first: the newest facts win
        signers = signers or _signers(record.document, value)
        provenance = provenance or _provenance(record.document, value)
        sbom = sbom or _sbom(record.document, value)
    older = None
    if len(records) == IMAGE_PAGE:
        older = f"/images/{value}?before={records[-1].id}"
    return {
        "digest": value,
        "references": references,
        "signers": signers,
        "provenance": provenance,
        "sbom": sbom,
        "decisions": [views.summary(r) for r in records],
        "older": older,
    }
