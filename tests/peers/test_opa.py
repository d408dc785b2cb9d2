"""attest's remote-OPA engine (``opaUrl``) against the real OPA server, and ``opa test``.

OPA runs with the default bundle (``policies/``, test modules left out so the
hash it reports is the bundle's); faults come from a real proxy in front of it
(hanging, dripping) or from loopback sockets that answer garbage or nothing.
Every fault must end in a :class:`PolicyError` (a denial) within the timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from attest.errors import PolicyError
from attest.policy import load_bundle, make_engine
from attest.policy.testing import run_tests
from attest.testing import free_port
from tests.conftest import ROOT
from tests.support.faultproxy import FaultProxy
from tests.support.opa import OpaServer, opa

POLICIES = ROOT / "policies"
TIMEOUT = 1.0
# Generous bound for "failed within the timeout" on a loaded 2-core machine.
WITHIN = TIMEOUT + 2.0
UNSIGNED = {
    "images": [
        {
            "reference": "r.example/app:v1",
            "policy": {
                "name": "apps",
                "threshold": 1,
                "requiredAttestations": [],
                "parameters": {},
            },
            "outcome": "unverified",
            "thresholdMet": False,
            "satisfiedAuthorities": [],
            "signatures": [],
            "attestations": [],
        }
    ]
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    files = sorted(p for p in POLICIES.glob("*.rego") if not p.name.endswith("_test.rego"))
    started = OpaServer(tmp_path_factory.mktemp("opa"), files).start()
    yield started
    started.stop()


def test_opa_test_and_attest_policy_test_agree_on_the_default_bundle() -> None:
    # the bundle's own files: policies/examples/ holds separate bundles (tested on their own)
    done = opa("test", "--verbose", *sorted(map(str, POLICIES.glob("*.rego"))))
    assert done.returncode == 0, done.stdout + done.stderr
    opa_passed = {
        line.split(":")[0]
        for line in done.stdout.splitlines()
        if line.endswith(")") and ": PASS" in line
    }
    ours = run_tests(str(POLICIES))
    assert {o.name for o in ours if o.status == "pass"} == opa_passed
    assert len(opa_passed) == len(ours) >= 10


def test_remote_engine_gives_the_embedded_answers_and_the_bundle_hash(server: OpaServer) -> None:
    bundle = load_bundle(str(POLICIES))
    remote = make_engine(bundle, opa_url=server.url, opa_timeout=5)
    local = make_engine(bundle)
    try:
        for document in (UNSIGNED, {"images": []}):
            got, want = remote.evaluate(document), local.evaluate(document)
            assert (got.denials, got.warnings) == (want.denials, want.warnings)
        assert got.bundle_hash == bundle.hash
        # the threshold is the webhook's own denial (judge()); the bundle adds provenance
        assert remote.evaluate(UNSIGNED).deny == (
            "r.example/app:v1: no verified SLSA provenance attestation",
        )
        assert got.engine == f"opa {server.url}"
    finally:
        remote.close()


def test_builtin_error_wrong_rule_type_and_missing_package_fail_closed(
    server: OpaServer, tmp_path: Path
) -> None:
    policy = "package errors.div\nimport rego.v1\ndeny contains x if { x := 1 / input.n }\n"
    assert server.put_policy("errors-div", policy).status_code == 200
    assert (
        server.put_policy("errors-type", "package errors.type\ndeny := true\n").status_code == 200
    )
    remote = make_engine(None, opa_url=server.url, opa_timeout=5)
    try:
        assert remote.evaluate({"n": 2}, "errors.div").deny == ("0.5",)
        with pytest.raises(PolicyError, match=r"data.errors.div: HTTP 500: .*divide by zero"):
            remote.evaluate({"n": 0}, "errors.div")
        with pytest.raises(PolicyError, match="errors.type.deny must be a set of messages"):
            remote.evaluate({}, "errors.type")
        with pytest.raises(PolicyError, match="data.no.such.pkg: package is undefined"):
            remote.evaluate({}, "no.such.pkg")
    finally:
        remote.close()
        for policy_id in ("errors-div", "errors-type"):
            server.session.delete(f"{server.url}/v1/policies/{policy_id}", timeout=10)


def test_down_server_fails_closed_at_once() -> None:
    remote = make_engine(None, opa_url=f"http://127.0.0.1:{free_port()}", opa_timeout=TIMEOUT)
    began = time.monotonic()
    with pytest.raises(PolicyError, match="OPA unreachable: ConnectionError"):
        remote.evaluate(UNSIGNED)
    assert time.monotonic() - began < WITHIN
    assert remote.bundle_hash == "remote:unknown"


@pytest.mark.timeout(30)  # unbounded, the drip takes a minute: fail sooner
@pytest.mark.parametrize("fault", ["hang", "drip"])
def test_slow_server_fails_closed_within_the_timeout(server: OpaServer, fault: str) -> None:
    """A hang trips the read timeout; a drip (a byte every 0.2 s) never does, so only a
    wall-clock bound on the whole request keeps the webhook inside its deadline."""
    proxy = FaultProxy(server.port).start()
    remote = make_engine(None, opa_url=f"http://{proxy.address}", opa_timeout=TIMEOUT)
    try:
        assert remote.evaluate(UNSIGNED).deny  # through the proxy, undisturbed
        if fault == "hang":
            proxy.hang_seconds = 5
        else:
            proxy.drip_seconds = 0.2
        began = time.monotonic()
        with pytest.raises(PolicyError, match=r"OPA (unreachable: ReadTimeout|did not answer)"):
            remote.evaluate(UNSIGNED)
        assert time.monotonic() - began < WITHIN
    finally:
        proxy.hang_seconds = proxy.drip_seconds = 0
        remote.close()
        proxy.stop()


class Garbage:
    """A loopback socket server answering every request with ``answer`` (bytes), then closing."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(self.answer)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # Connection: close, as the server closes after answering: a client that reused the
        # connection would race the close and see "unreachable" instead of the garbage
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 9\r\n\r\nnot json!", "not JSON"),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 10\r\n\r\n[1, 2, 3]\n",
            "package is undefined",
        ),
        (
            b'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 13\r\n\r\n{"result": 7}',
            "evaluated to a int",
        ),
        (
            b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 4\r\n\r\noops",
            "HTTP 502",
        ),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "OPA unreachable"),
        (b"", "OPA unreachable"),
    ],
)
def test_garbage_answers_fail_closed(answer: bytes, expected: str) -> None:
    garbage = Garbage(answer)
    remote = make_engine(None, opa_url=f"http://127.0.0.1:{garbage.port}", opa_timeout=TIMEOUT)
    try:
        began = time.monotonic()
        with pytest.raises(PolicyError, match=expected) as caught:
            remote.evaluate(UNSIGNED)
        assert "\n" not in str(caught.value)
        assert time.monotonic() - began < WITHIN
    finally:
        remote.close()
        garbage.close()


def test_remote_engine_asks_for_strict_builtin_errors(server: OpaServer) -> None:
    proxy = FaultProxy(server.port).start()
    remote = make_engine(None, opa_url=f"http://{proxy.address}", opa_timeout=5)
    try:
        remote.evaluate(UNSIGNED)
        method, path, status = proxy.seen[-1]
        assert (method, path.split("?")[0], status) == ("POST", "/v1/data/attest/admission", 200)
        assert "strict-builtin-errors=true" in path
    finally:
        remote.close()
        proxy.stop()


def test_admission_decisions_through_the_real_opa_and_fail_closed_when_it_goes(
    server: OpaServer, tmp_path: Path
) -> None:
    from admission.decide import Admission
    from admission.review import parse_review
    from admission.testing.helpers import (
        PARAMETERS,
        deployment,
        key_policy,
        new_key,
        review,
        write_config,
    )
    from tests.admission.test_decide import BAD, GOOD, REGISTRY, FakeVerifier

    proxy = FaultProxy(server.port).start()
    key_file = new_key().write(tmp_path / "k.pub")
    policies = [key_policy("apps", [f"{REGISTRY}/apps/*"], key_file, parameters=PARAMETERS)]
    url = f"http://{proxy.address}"
    config = write_config(tmp_path / "c.yaml", policies, policy={"opaUrl": url})
    service = Admission(str(config), verifier=FakeVerifier())
    try:
        good = service.decide(parse_review(review(deployment(GOOD))))
        bad = service.decide(parse_review(review(deployment(BAD))))
        assert good.result == "allowed" and good.engine == f"opa {url}"
        assert good.bundle_hash == load_bundle(str(POLICIES)).hash
        assert bad.result == "denied" and bad.messages[0].startswith(f"{BAD}: no trusted signature")
        proxy.hang_seconds = 30
        began = time.monotonic()
        hung = service.decide(parse_review(review(deployment(GOOD))))
        assert time.monotonic() - began < 2.0 + WITHIN  # opa timeout defaults to 2 s
        proxy.hang_seconds = 0
        proxy.stop()
        down = service.decide(parse_review(review(deployment(GOOD))))
    finally:
        service.close()
        proxy.stop()
    for decision in (hung, down):
        assert decision.result == "error" and not decision.allowed
        assert f"OPA {url} data.attest.admission: OPA " in decision.message
