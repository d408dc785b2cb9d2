"""The registry client's transport: pooled keep-alive GET/HEAD over HTTPS with certificate
checks, and redirects handed to requests (which drops credentials when the host changes)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from admission.testing.helpers import make_tls
from attest.errors import RegistryError
from attest.oci.registry import RegistryRepository
from attest.oci.store import read_blob
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.testing import QuietHTTPServer, RegistryServer, free_port


def _https_store(server: RegistryServer, **options: object) -> RegistryRepository:
    client = RegistryClient(server.address, options=RegistryOptions(timeout=30, **options))  # type: ignore[arg-type]
    client.scheme = "https"  # loopback registries are plain HTTP by default
    return RegistryRepository(client, "transport/app")


def test_https_round_trip_with_a_ca_bundle(tls_registry, tls, push_image) -> None:
    store = _https_store(tls_registry, ca_bundle=str(tls.ca))
    pushed = push_image(store, "v1")
    for _ in range(3):  # the same pooled connection serves repeated requests
        assert store.resolve("v1") == pushed
    fetched = store.fetch_manifest("v1")
    assert fetched.digest == pushed.digest
    config = fetched.parsed.config  # type: ignore[union-attr]
    assert read_blob(store, config).startswith(b"{")
    assert "v1" in store.list_tags()
    store.close()


def test_https_with_an_unknown_ca_is_a_tls_error(tls_registry, tmp_path: Path) -> None:
    other = make_tls(tmp_path / "other")
    store = _https_store(tls_registry, ca_bundle=str(other.ca))
    with pytest.raises(RegistryError, match=r"TLS error talking to 127\.0\.0\.1:\d+"):
        store.resolve("v1")
    system = _https_store(tls_registry)  # the system roots do not know the test CA either
    with pytest.raises(RegistryError, match="TLS error"):
        system.resolve("v1")


def test_insecure_skips_certificate_checks(tls_registry, tls, push_image) -> None:
    pushed = push_image(_https_store(tls_registry, ca_bundle=str(tls.ca)), "v2")
    assert _https_store(tls_registry, insecure=True).resolve("v2") == pushed


class _Redirector:
    """Answers every request with 307 to the same path on the real registry."""

    def __init__(self, target: str) -> None:
        self.port = free_port()
        self.seen: list[str] = []
        redirector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                return

            def _redirect(self) -> None:
                redirector.seen.append(f"{self.command} {self.path}")
                self.send_response(307)
                self.send_header("Location", f"{target}{self.path}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = _redirect

        self.server = QuietHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_redirects_are_followed(registry, repo, push_image) -> None:
    pushed = push_image(repo, "v1")
    redirector = _Redirector(registry.url)
    try:
        client = RegistryClient(f"127.0.0.1:{redirector.port}", options=RegistryOptions(timeout=30))
        store = RegistryRepository(client, repo.repository)
        assert store.resolve("v1") == pushed
        manifest = store.fetch_manifest(pushed.digest)
        assert manifest.digest == pushed.digest
        assert read_blob(store, manifest.parsed.config).startswith(b"{")  # type: ignore[union-attr]
        assert any(line.startswith("HEAD ") for line in redirector.seen)
        assert any("/blobs/" in line for line in redirector.seen)
    finally:
        redirector.stop()
