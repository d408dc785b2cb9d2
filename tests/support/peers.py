"""The real peers (cosign, OPA, kube-apiserver, …) that scripts/peers.sh builds into .peers/bin/.

A peer that is missing is a test failure that shows why (the last lines of its
build log), never a skip: ``make test`` builds them all before the suite runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(os.environ.get("ATTEST_PEERS", ROOT / ".peers"))
VERSIONS = ROOT / "peers" / "versions.tsv"


@dataclass(frozen=True)
class Peer:
    name: str
    binary: str
    package: str
    version: str


def pinned() -> dict[str, Peer]:
    """Every peer in peers/versions.tsv, by name."""
    peers = {}
    for line in VERSIONS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, binary, package, version = line.split("\t")
        peers[name] = Peer(name, binary, package, version)
    return peers


def peer_binary(name: str) -> str:
    """The path of peer ``name``'s binary; fails the test with the build's last lines if absent."""
    peer = pinned()[name]
    path = PEERS / "bin" / peer.binary
    stamp = PEERS / "stamps" / name
    if (
        path.is_file()
        and os.access(path, os.X_OK)
        and stamp.is_file()
        and stamp.read_text().strip() == f"{peer.package}@{peer.version}"
    ):
        return str(path)
    log = PEERS / "logs" / f"{name}.log"
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.is_file() else ""
    pytest.fail(
        f"peer {name} ({peer.package}@{peer.version}) is not built at {path}; "
        f"run scripts/peers.sh {name}" + (f"\nlast lines of {log}:\n{tail}" if tail else "")
    )
