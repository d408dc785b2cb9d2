"""A small summary of a verified SBOM attestation, kept in the decision record.

Records leave the decoded Statements out (an SBOM can be megabytes, see
:func:`admission.decisions.model.decision_document`); what the AppSec view's
per-image page shows is kept instead: the component count, the top-level
packages (first :data:`TOP` by name) and the licences with their counts
(the :data:`TOP` most frequent), for CycloneDX and SPDX predicates.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from attest.attestations.predicates import CYCLONEDX_BOM, SPDX_DOCUMENT

TOP = 20


def _cyclonedx(bom: dict[str, Any]) -> dict[str, Any]:
    components = [c for c in bom.get("components") or [] if isinstance(c, dict)]
    licences: Counter[str] = Counter()
    for component in components:
        for entry in component.get("licenses") or []:
            if not isinstance(entry, dict):
                continue
            found = entry.get("license")
            licence: dict[str, Any] = found if isinstance(found, dict) else {}
            name = entry.get("expression") or licence.get("id") or licence.get("name")
            if isinstance(name, str):
                licences[name] += 1
    top = sorted(
        f"{c.get('name')}@{c.get('version')}" if c.get("version") else str(c.get("name"))
        for c in components
        if isinstance(c.get("name"), str)
    )
    return {
        "format": "CycloneDX",
        "components": len(components),
        "packages": top[:TOP],
        "licences": dict(licences.most_common(TOP)),
    }


def _spdx(document: dict[str, Any]) -> dict[str, Any]:
    packages = [p for p in document.get("packages") or [] if isinstance(p, dict)]
    licences: Counter[str] = Counter()
    for package in packages:
        for key in ("licenseConcluded", "licenseDeclared"):
            value = package.get(key)
            if isinstance(value, str) and value not in ("NOASSERTION", "NONE"):
                licences[value] += 1
                break
    top = sorted(
        f"{p.get('name')}@{p.get('versionInfo')}" if p.get("versionInfo") else str(p.get("name"))
        for p in packages
        if isinstance(p.get("name"), str)
    )
    return {
        "format": "SPDX",
        "components": len(packages),
        "packages": top[:TOP],
        "licences": dict(licences.most_common(TOP)),
    }


def summarise(check: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a verified SBOM attestation check (with its ``statement``), else None."""
    statement = check.get("statement")
    if check.get("verified") is not True or not isinstance(statement, dict):
        return None
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        return None
    kind = statement.get("predicateType")
    try:
        if kind == CYCLONEDX_BOM:
            return _cyclonedx(predicate)
        if kind == SPDX_DOCUMENT:
            return _spdx(predicate)
    except (TypeError, AttributeError):
        return None
    return None


def without_statement(check: dict[str, Any]) -> dict[str, Any]:
    """``check`` without its decoded Statement, with an SBOM summary when it had one."""
    kept = {k: v for k, v in check.items() if k != "statement"}
    summary = summarise(check)
    if summary is not None:
        kept["sbom"] = summary
    return kept
