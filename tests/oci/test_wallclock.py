"""The registry transport against hostile registries: every exchange ends at the caller's deadline.

Real socket servers on loopback (attest/testing/hostile.py) drip their answer a
byte a second, never answer, or stall mid-body; each attack would hold the
reading thread far past the deadline if the limit applied per ``recv``.  Each
test asserts both sides: the caller gets ``DeadlineExceeded`` within the
deadline and a margin, and the server sees the client let go of the connection
(the transport cut it off, no thread left reading).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from attest.deadline import Deadline
from attest.errors import DeadlineExceeded
from attest.oci.manifest import Descriptor
from attest.oci.registry import RegistryRepository
from attest.oci.store import read_blob
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.signing.storage import fetch_all
from attest.testing.hostile import MANIFEST_TYPE, HostileRegistry
from tests.oci.test_transport import _Redirector

DEADLINE = 2.0  # above the drip interval (1 s): a per-recv timeout alone never trips
MARGIN = 1.5  # generous: the bound proves the deadline holds, it does not measure speed
BLOB = Descriptor("application/octet-stream", "sha256:" + "1" * 64, 200)


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileRegistry]]:
    started: list[HostileRegistry] = []

    def start(behaviour: str, **kwargs: Any) -> HostileRegistry:
        server = HostileRegistry(behaviour, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _store(address: str, *, scheme: str = "http", **options: Any) -> RegistryRepository:
    client = RegistryClient(address, options=RegistryOptions(timeout=30, **options))
    client.scheme = scheme
    return RegistryRepository(client, "hostile/app", deadline=Deadline.after(DEADLINE))


def _bounded(call: Callable[[], object], seconds: float = DEADLINE + MARGIN) -> BaseException:
    """Run ``call`` in a thread; the exception it ended with.  Fails (without waiting for it)
    if it is still running after ``seconds``: the deadline did not hold."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as err:  # handed to the test
            outcome.append(err)
        else:
            outcome.append(AssertionError("the call returned instead of timing out"))

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running {time.monotonic() - started:.1f}s after start"
    return outcome[0]


def _assert_cut_off(server: HostileRegistry, error: BaseException) -> None:
    assert isinstance(error, DeadlineExceeded), repr(error)
    assert "deadline" in str(error)
    held = server.wait_released(MARGIN)
    assert max(held) < DEADLINE + MARGIN, held


def test_drip_fed_answer_is_cut_at_the_deadline(hostile) -> None:
    server = hostile("drip")
    store = _store(server.address)
    _assert_cut_off(server, _bounded(lambda: store.resolve("v1")))
    assert server.requests and server.requests[0].startswith("HEAD /v2/hostile/app/manifests/v1")


def test_drip_fed_answer_over_tls_is_cut_at_the_deadline(hostile, tls) -> None:
    """One byte per TLS record: the thread is inside the TLS read when the cut comes."""
    server = hostile("drip", tls=(str(tls.cert), str(tls.key)))
    store = _store(server.address, scheme="https", ca_bundle=str(tls.ca))
    _assert_cut_off(server, _bounded(lambda: store.resolve("v1")))


def test_drip_fed_tls_handshake_is_cut_at_the_deadline(hostile, tls, tls_registry) -> None:
    """The TLS handshake of a new connection drips: cut there too, before any request."""
    server = hostile("drip", upstream=tls_registry.port)
    store = _store(server.address, scheme="https", ca_bundle=str(tls.ca))
    _assert_cut_off(server, _bounded(lambda: store.resolve("v1")))


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_black_hole_is_cut_at_the_deadline(hostile, tls, scheme: str) -> None:
    """Over HTTPS the client is stuck in the TLS handshake: cut there too."""
    server = hostile("blackhole")
    store = _store(server.address, scheme=scheme, ca_bundle=str(tls.ca))
    _assert_cut_off(server, _bounded(lambda: store.resolve("v1")))


def test_manifest_stalled_mid_body_is_cut_at_the_deadline(hostile) -> None:
    server = hostile("stall")
    store = _store(server.address)
    _assert_cut_off(server, _bounded(lambda: store.fetch_manifest("v1")))
    assert server.requests == ["GET /v2/hostile/app/manifests/v1 HTTP/1.1"]


def test_streamed_blob_stalled_mid_body_is_cut_at_the_deadline(hostile) -> None:
    server = hostile("stall")
    store = _store(server.address)

    def read() -> None:
        with store.open_blob(BLOB) as reader:
            while reader.read(65536):
                pass

    _assert_cut_off(server, _bounded(read))


def test_redirected_blob_stalled_mid_body_is_cut_at_the_deadline(hostile) -> None:
    """A redirect (storage backends) goes through the requests session: same limit."""
    server = hostile("stall")
    redirector = _Redirector(f"http://{server.address}")
    try:
        store = _store(f"127.0.0.1:{redirector.port}")
        _assert_cut_off(server, _bounded(lambda: read_blob(store, BLOB)))
    finally:
        redirector.stop()


def test_drip_fed_answer_to_an_upload_is_cut_at_the_deadline(hostile) -> None:
    server = hostile("drip")
    store = _store(server.address)
    _assert_cut_off(server, _bounded(lambda: store.push_manifest(b"{}", MANIFEST_TYPE, "v1")))


def test_a_stalling_host_holds_only_its_read_slots(hostile) -> None:
    """Parallel reads (every referrer of an image at once) against a host that stalls hold
    at most ``host_concurrency`` threads of the shared fetch pool, not one per read."""
    server = hostile("stall")
    store = _store(server.address, host_concurrency=2)
    calls = [functools.partial(read_blob, store, BLOB) for _ in range(8)]
    started = time.monotonic()
    results = fetch_all(store, calls)
    assert time.monotonic() - started < DEADLINE + MARGIN
    assert all(isinstance(r, DeadlineExceeded) for r in results), results
    assert server.held_count() == 2
    server.wait_released(MARGIN)
