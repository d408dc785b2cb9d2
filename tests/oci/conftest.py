"""Fixtures for the registry client tests: TLS material and a real registry serving HTTPS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from admission.testing.helpers import TlsFiles, make_tls
from attest.testing import RegistryServer


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("registry-tls"))


@pytest.fixture(scope="module")
def tls_registry(tls: TlsFiles) -> Iterator[RegistryServer]:
    server = RegistryServer(tls=(str(tls.cert), str(tls.key))).start()
    yield server
    server.stop()
