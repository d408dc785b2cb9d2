"""Fixtures for the tests against real peers: cosign, Rekor v2 (rekor-tiles) and the TSA.

Every peer is the binary scripts/peers.sh built from its pinned Go module
(``peer_binary`` fails the test with the build log when one is missing).  The
local Sigstore is @sigstore/mock's Fulcio, CT log and Rekor v1 (the shared
``sigstore_mock``), joined here by the real Rekor v2 and timestamp-server:

* ``trust_v1``: Fulcio + Rekor v1 (the mock), no TSA — what cosign's older flows use;
* ``trust_v2``: Fulcio + Rekor v2 (rekor-tiles) + the TSA — today's public-good shape,
  where signing times come from the TSA since Rekor v2 has no integrated time.

Both trusted roots list every log, so either verifies what the other logged.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from attest.signing import keys
from attest.testing import SigstoreMock
from tests.support.peers import peer_binary
from tests.support.rekor import RekorTiles
from tests.support.trust import Trust, compose
from tests.support.tsa import TimestampAuthority, make_chain

PASSWORD = "peers-test-password"


@dataclass(frozen=True)
class Cosign:
    """The real cosign binary, run with its own HOME (no TUF cache, no network)."""

    binary: str
    home: Path

    def __call__(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "COSIGN_PASSWORD": PASSWORD,
            **(env or {}),
        }
        return subprocess.run(
            [self.binary, *args],
            env=environment,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run cosign and fail the test with its output unless it exits 0."""
        done = self(*args, **kwargs)  # type: ignore[arg-type]
        assert done.returncode == 0, f"cosign {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done


@pytest.fixture
def cosign(tmp_path: Path) -> Cosign:
    home = tmp_path / "cosign-home"
    home.mkdir()
    return Cosign(peer_binary("cosign"), home)


@pytest.fixture(scope="session")
def rekor_v2() -> Iterator[RekorTiles]:
    log = RekorTiles(peer_binary("rekor")).start()
    yield log
    log.stop()


@pytest.fixture(scope="session")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TimestampAuthority]:
    authority = TimestampAuthority(
        peer_binary("tsa"), make_chain(tmp_path_factory.mktemp("tsa-chain"))
    ).start()
    yield authority
    authority.stop()


def _mock_root(mock: SigstoreMock) -> dict:
    return json.loads(Path(mock.trusted_root).read_text())


@pytest.fixture(scope="session")
def trust_v1(
    sigstore_mock: SigstoreMock, rekor_v2: RekorTiles, tsa: TimestampAuthority,
    tmp_path_factory: pytest.TempPathFactory,
) -> Trust:  # fmt: skip
    """Sign with the mock's Fulcio and Rekor v1; the root also trusts Rekor v2 and the TSA."""
    return compose(
        tmp_path_factory.mktemp("trust-v1"),
        _mock_root(sigstore_mock),
        fulcio_url=sigstore_mock.url,
        rekor=(sigstore_mock.url, 1),
        extra_tlogs=[rekor_v2.tlog_entry()],
        tsas=[tsa.authority_entry()],
    )


@pytest.fixture(scope="session")
def trust_v2(
    sigstore_mock: SigstoreMock, rekor_v2: RekorTiles, tsa: TimestampAuthority,
    tmp_path_factory: pytest.TempPathFactory,
) -> Trust:  # fmt: skip
    """Sign with the mock's Fulcio, the real Rekor v2 and the real TSA."""
    return compose(
        tmp_path_factory.mktemp("trust-v2"),
        _mock_root(sigstore_mock),
        fulcio_url=sigstore_mock.url,
        rekor=(rekor_v2.url, 2),
        tsa_url=tsa.url,
        extra_tlogs=[rekor_v2.tlog_entry()],
        tsas=[tsa.authority_entry()],
    )


@dataclass(frozen=True)
class KeyPair:
    private: str
    public: str


@pytest.fixture
def attest_keys(tmp_path: Path) -> Callable[[str], KeyPair]:
    """Key pairs in cosign's file format, written by attest (password ``PASSWORD``)."""

    def make(name: str = "attest") -> KeyPair:
        pair = keys.generate_key_pair(PASSWORD.encode())
        (tmp_path / f"{name}.key").write_bytes(pair.private_pem)
        (tmp_path / f"{name}.pub").write_bytes(pair.public_pem)
        return KeyPair(str(tmp_path / f"{name}.key"), str(tmp_path / f"{name}.pub"))

    return make


@pytest.fixture
def cosign_keys(cosign: Cosign) -> KeyPair:
    """A key pair written by ``cosign generate-key-pair``."""
    cosign.ok("generate-key-pair", "--output-key-prefix", "cosign")
    return KeyPair(str(cosign.home / "cosign.key"), str(cosign.home / "cosign.pub"))


ENV = {"COSIGN_PASSWORD": PASSWORD}
