"""Compose Sigstore trust material for a test instance made of several real services.

The @sigstore/mock server gives a Fulcio, a CT log and a Rekor v1 with their trusted
root; the real peers add a Rekor v2 (rekor-tiles) and an RFC 3161 TSA
(timestamp-server).  ``Trust`` writes one trusted root listing what a verifier
trusts, a signing config naming what a signer calls (cosign's ``--signing-config``),
and a client trust config holding both (attest's and sigstore-python's
``--trust-config``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIGNING_CONFIG = "application/vnd.dev.sigstore.signingconfig.v0.2+json"
TRUST_CONFIG = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"
SINCE = "2020-01-01T00:00:00Z"


def service(url: str, version: int = 1, operator: str = "attest tests") -> dict[str, Any]:
    return {
        "url": url,
        "majorApiVersion": version,
        "validFor": {"start": SINCE},
        "operator": operator,
    }


@dataclass(frozen=True)
class Trust:
    """Written trust material: ``root`` (trusted_root.json), ``signing`` and ``config`` paths."""

    root: Path
    signing: Path
    config: Path

    @property
    def root_json(self) -> dict[str, Any]:
        return json.loads(self.root.read_text())


def compose(
    directory: Path,
    base_root: dict[str, Any],
    *,
    fulcio_url: str | None,
    rekor: tuple[str, int] | None,
    tsa_url: str | None = None,
    tlogs: list[dict[str, Any]] | None = None,
    extra_tlogs: list[dict[str, Any]] = (),  # type: ignore[assignment]
    tsas: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> Trust:
    """Write a trusted root (``base_root`` with its tlogs replaced by ``tlogs`` when given,
    plus ``extra_tlogs`` and the ``tsas``) and a signing config for the given services."""
    root = copy.deepcopy(base_root)
    if tlogs is not None:
        root["tlogs"] = list(tlogs)
    root["tlogs"] = [*root.get("tlogs", []), *extra_tlogs]
    root["timestampAuthorities"] = list(tsas)
    signing: dict[str, Any] = {
        "mediaType": SIGNING_CONFIG,
        "caUrls": [service(fulcio_url)] if fulcio_url else [],
        "oidcUrls": [],
        "rekorTlogUrls": [service(rekor[0], rekor[1])] if rekor else [],
        "rekorTlogConfig": {"selector": "ANY"},
        "tsaUrls": [service(tsa_url)] if tsa_url else [],
        "tsaConfig": {"selector": "ANY"},
    }
    directory.mkdir(parents=True, exist_ok=True)
    paths = Trust(
        directory / "trusted_root.json",
        directory / "signing_config.json",
        directory / "trust_config.json",
    )
    paths.root.write_text(json.dumps(root, indent=1))
    paths.signing.write_text(json.dumps(signing, indent=1))
    paths.config.write_text(
        json.dumps(
            {"mediaType": TRUST_CONFIG, "trustedRoot": root, "signingConfig": signing}, indent=1
        )
    )
    return paths
