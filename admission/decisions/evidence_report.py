"""Readable renderings of an evidence predicate: one self-contained HTML file and a CSV of images.

The HTML has no JavaScript and loads nothing (inline CSS only); every value is
escaped.  Both files are subjects of the signed Statement, so a reader can
check that what they read is what was signed.
"""

from __future__ import annotations

import csv
import io
from html import escape
from typing import Any

CSV_COLUMNS = (
    "digest",
    "references",
    "namespaces",
    "signers",
    "builder",
    "sourceRepository",
    "commit",
    "buildFinishedOn",
    "sbomAttestation",
    "decisions",
    "firstAdmitted",
    "lastAdmitted",
    "warnModeAdmissions",
    "unmatchedAllowedAdmissions",
    "withoutProvenance",
    "exceptions",
    "ciRuns",
)

_STATUS_TEXT = {
    "verified": "VERIFIED: every decision of the period is covered by a checkpoint signed with the "
    "trusted key, and the chain is intact.",
    "partial": "PARTLY VERIFIED: the chain is intact, but some decisions of the period are not "
    "covered by a signed checkpoint (listed below). They are NOT verified.",
    "broken": "BROKEN: the decision chain was modified, records were deleted or a checkpoint is "
    "forged (problems below). Decisions at and after the first problem are NOT verified.",
    "unverified": "NOT VERIFIED: no trusted checkpoint key was given; the chain was checked only "
    "against the keys stored with it.",
}


def _join(values: Any) -> str:
    return " ".join(str(v) for v in values or () if v)


def csv_text(images: list[dict[str, Any]]) -> str:
    """One row per admitted image digest; multi-valued cells are space-separated."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for image in images:
        provenance = image.get("provenance") or []
        gaps = image.get("gaps") or {}
        writer.writerow(
            [
                image["digest"],
                _join(image.get("references")),
                _join(image.get("namespaces")),
                "; ".join(image.get("signers") or ()),
                _join(p.get("builder") for p in provenance),
                _join(p.get("sourceRepository") for p in provenance),
                _join(p.get("commit") for p in provenance),
                _join(p.get("buildFinishedOn") or p.get("buildStartedOn") for p in provenance),
                _join(s.get("attestation") for s in image.get("sbom") or ()),
                image.get("decisions", 0),
                image.get("firstAdmitted", ""),
                image.get("lastAdmitted", ""),
                gaps.get("warnMode", 0),
                gaps.get("unmatchedAllowed", 0),
                "yes" if gaps.get("withoutProvenance") else "no",
                _join(gaps.get("exceptions")),
                _join(run.get("ciRun") or run.get("file") for run in image.get("ciRuns") or ()),
            ]
        )
    return out.getvalue()


def _table(headers: list[str], rows: list[list[Any]], empty: str = "none") -> str:
    if not rows:
        return f"<p class='muted'>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{escape(str(c) if c is not None else '')}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1b1b;max-width:1200px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top;word-break:break-all}
th{background:#f3f3f3}.muted{color:#666}
.status{padding:1rem;font-weight:bold;border-radius:4px}
.verified{background:#e3f5e1;border:2px solid #2e7d32}
.partial,.unverified{background:#fff4e0;border:2px solid #ef6c00}
.broken{background:#fde7e7;border:2px solid #c62828}
"""


def html_text(predicate: dict[str, Any]) -> str:
    """The evidence as one HTML page (no scripts, no external resources)."""
    chain, summary = predicate["chain"], predicate["summary"]
    period = predicate["period"]
    status = chain["status"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>attest evidence {escape(str(period['since']))} – {escape(str(period['until']))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Admission evidence</h1>",
        f"<p>Period <b>{escape(str(period['since'] or 'beginning'))}</b> to "
        f"<b>{escape(str(period['until'] or 'now'))}</b>; database {escape(predicate['database'])}; "
        f"generated {escape(predicate['generatedAt'])} by attest {escape(predicate['generator']['version'])}.</p>",
        f"<p>Filters: namespaces {escape(', '.join(predicate['filters']['namespaces']) or 'all')}, "
        f"image {escape(predicate['filters']['image'] or 'any')}.</p>",
        f"<div class='status {escape(status)}' id='chain-status'>{escape(_STATUS_TEXT[status])}</div>",
        f"<p>{chain['verifiedRecords']} of {summary['records']} decisions of the period verified; "
        f"signatures checked with {escape(chain['keySource'])}.</p>",
        "<h2>Decision chain</h2>",
        _table(
            [
                "replica",
                "head",
                "head hash",
                "signed through",
                "verified through",
                "period records",
                "covering checkpoint",
            ],
            [
                [
                    r["replica"],
                    r["headSeq"],
                    r["headHash"],
                    r["signedSeq"],
                    r["verifiedThroughSeq"],
                    (r["period"] or {}).get("records", 0),
                    _checkpoint_text((r["period"] or {}).get("coveringCheckpoint")),
                ]
                for r in chain["replicas"]
            ],
        ),
        "<h2 id='unverified'>Not verified</h2>",
        _table(
            ["replica", "records", "seq", "from", "until", "reason"],
            [
                [
                    u["replica"],
                    u["records"],
                    f"{u['fromSeq']}..{u['toSeq']}",
                    u["from"],
                    u["until"],
                    u["reason"],
                ]
                for u in chain["unverified"]
            ],
            "every decision of the period is verified",
        ),
        "<h2 id='problems'>Chain problems</h2>",
        _table(
            ["replica", "seq", "record", "problem"],
            [[p["replica"], p["seq"], p["id"], p["problem"]] for p in chain["problems"]],
            "none found",
        ),
        "<h2>Results</h2>",
        _table(["result", "decisions"], [[k, v] for k, v in summary["results"].items()]),
        f"<p>Compliance rate (admitted, every gate met, no warn mode, no exception): "
        f"{_percent(summary['compliance']['rate'])} of {summary['compliance']['admitted']} admissions.</p>",
        _table(
            ["namespace", "decisions", "admitted", "compliant", "compliance"],
            [
                [ns, c["total"], c["admitted"], c["compliant"], _percent(c["complianceRate"])]
                for ns, c in summary["namespaces"].items()
            ],
        ),
        "<h2 id='images'>Admitted images</h2>",
        _table(
            [
                "digest",
                "references",
                "signers",
                "provenance",
                "SBOM attestation",
                "decisions",
                "CI run",
            ],
            [
                [
                    i["digest"],
                    _join(i["references"]),
                    "; ".join(i["signers"]) or "NONE",
                    "; ".join(_provenance_text(p) for p in i["provenance"]) or "NONE",
                    _join(s.get("attestation") for s in i["sbom"]) or "-",
                    f"{i['decisions']} ({i['firstAdmitted']} – {i['lastAdmitted']})",
                    _join(r.get("ciRun") or r.get("file") for r in i["ciRuns"]) or "-",
                ]
                for i in predicate["admittedImages"]
            ],
        ),
        "<h2 id='gaps'>Gaps</h2>",
        _table(
            ["gap", "admissions", "images"],
            [
                [name, gap["admissions"], _join(gap["images"])]
                for name, gap in summary["gaps"].items()
            ],
        ),
        "<h2 id='exceptions'>Exceptions used</h2>",
        _table(
            [
                "id",
                "signer",
                "reason",
                "ticket",
                "expires",
                "uses",
                "first used",
                "last used",
                "namespaces",
            ],
            [
                [
                    e["id"],
                    e["signer"],
                    e["reason"],
                    e.get("ticket"),
                    e["expires"],
                    e["uses"],
                    e["firstUsed"],
                    e["lastUsed"],
                    _join(e["namespaces"]),
                ]
                for e in summary["exceptions"]
            ],
        ),
        "<h2 id='denials'>Denials by reason</h2>",
        _table(
            ["reason", "count", "namespaces"],
            [[d["reason"], d["count"], _join(d["namespaces"])] for d in summary["denyReasons"]],
        ),
        "<h2>Policy bundles and trust in force</h2>",
        _table(
            ["bundle hash", "trust fingerprint", "first seen", "last seen", "decisions"],
            [
                [p["bundleHash"], p["trustFingerprint"], p["first"], p["last"], p["records"]]
                for p in summary["policies"]
            ],
        ),
    ]
    if summary["truncated"]:
        parts.append(
            "<p class='status partial'>Some lists were truncated (records beyond the caps "
            f"are counted, not listed): {escape(str(summary['truncated']))}</p>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _percent(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f}%"


def _checkpoint_text(checkpoint: dict[str, Any] | None) -> str:
    if not checkpoint:
        return "NONE"
    return f"#{checkpoint['seq']} signed {checkpoint['signedAt']} by {checkpoint['keyId']}"


def _provenance_text(facts: dict[str, Any]) -> str:
    when = facts.get("buildFinishedOn") or facts.get("buildStartedOn") or "?"
    return (
        f"{facts.get('builder')} from {facts.get('sourceRepository')}@"
        f"{(facts.get('commit') or '?')[:12]} built {when}"
    )
