"""The webhook port under attack: slowloris, oversized and endless bodies, callers without a certificate.

Against the real server (gunicorn, TLS, the admission worker): connections that
send part of a request must not take the threads that answer the API server
and the kubelet, and must be cut off at the read limits; bodies above the limit
or without end are refused; with ``--client-ca`` only a client holding a
certificate from that CA reaches ``/validate``, its subject is recorded as the
decision's caller, and the kubelet's probes still work on the probe port.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509

from admission.testing import webhook
from admission.testing.helpers import deployment, make_client_ca, review
from admission.testing.serve import TOKEN, Serve, serve_command, wait_for
from admission.testing.world import REPO
from attest.testing import free_port
from attest.testing.hostile import HostileRegistry

HEADER_TIMEOUT, READ_TIMEOUT = 1.5, 3.0
LIMITS = ("--read-header-timeout", str(HEADER_TIMEOUT), "--read-timeout", str(READ_TIMEOUT))
MARGIN = 2.0  # generous: the worker checks its limits about once a second
PARTIAL_BODY = (
    b"POST /validate HTTP/1.1\r\nHost: attest\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n" + b'{"apiVersion":'
)
PARTIAL_HEAD = b"POST /validate HTTP/1.1\r\nHost: attest\r\n"


def _connect(server: Any, port: int | None = None, cert: tuple[str, str] | None = None) -> Any:
    context = ssl.create_default_context(cafile=str(server.ca))
    if cert:
        context.load_cert_chain(*cert)
    raw = socket.create_connection(("127.0.0.1", port or server.port), timeout=30)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _until_closed(sock: Any, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when that was."""
    began = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ssl.SSLError, OSError):
        pass
    sock.close()
    return data, time.monotonic() - began


def _answer(sock: Any, timeout: float) -> bytes:
    """One whole answer (head and its Content-Length body), without waiting for the close."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
        data.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0]
    ):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_slowloris_leaves_probes_and_validate_answering(serve, world, tmp_path: Path) -> None:
    """Sixteen connections with part of a head or a body (four threads): all threads used
    to be taken for good.  Now nothing waits on them, and each is cut at its limit."""
    server = serve(world.config(tmp_path / "c.yaml"), db=None, extra=LIMITS)
    held_bodies, held_heads = [], []
    for _ in range(8):
        held_bodies.append(_connect(server))
        held_bodies[-1].sendall(PARTIAL_BODY)
        held_heads.append(_connect(server))
        held_heads[-1].sendall(PARTIAL_HEAD)
    began = time.monotonic()
    assert server.get("/healthz").status_code == 200
    assert server.get("/readyz").json()["status"] == "ready"
    answer = server.post("/validate", review(deployment(world.images["good"])), timeout=10)
    assert answer["allowed"] is True
    assert time.monotonic() - began < HEADER_TIMEOUT  # answered while all sixteen still hold
    for sock in held_heads:
        data, _ = _until_closed(sock, HEADER_TIMEOUT + MARGIN)
        assert data.startswith(b"HTTP/1.1 408 "), data[:80]
        assert b"the request head did not arrive within 1.5s" in data
    for sock in held_bodies:
        data, _ = _until_closed(sock, READ_TIMEOUT + MARGIN)
        assert data.startswith(b"HTTP/1.1 408 "), data[:80]
        assert b"the whole request did not arrive within 3s" in data
    assert time.monotonic() - began < READ_TIMEOUT + MARGIN


def test_oversized_and_endless_bodies_are_cut_off(serve, world, tmp_path: Path) -> None:
    server = serve(world.config(tmp_path / "c.yaml"), db=None, extra=LIMITS)
    cases = [
        (  # declared above the limit: refused before any of it is read
            b"POST /validate HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n{",
            b"413 ",
            b"request body is larger than",
        ),
        (  # chunked, without end
            b"POST /validate HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"4000\r\n"
            + b"x" * 0x4000
            + b"\r\n",
            b"411 ",
            b"chunked request body is not accepted",
        ),
        (  # a head without end
            b"POST /validate HTTP/1.1\r\nHost: a\r\n" + b"X-Padding: " + b"y" * 70_000,
            b"431 ",
            b"request head is larger than 65536 bytes",
        ),
    ]
    for request, status, message in cases:
        sock = _connect(server)
        began = time.monotonic()
        sock.sendall(request)
        data = _answer(sock, MARGIN)
        assert data.startswith(b"HTTP/1.1 " + status), data[:80]
        assert message in data
        assert time.monotonic() - began < 1.0  # at once, not at a read limit
        _, held = _until_closed(sock, MARGIN + 1)  # then closed, after a bounded drain
        assert held < MARGIN + 0.5
        body = json.loads(data.split(b"\r\n\r\n", 1)[1])
        assert body["response"]["allowed"] is False
    sock = _connect(server)  # a declared body that keeps coming, slowly: cut at the limit
    sock.sendall(PARTIAL_BODY)
    began = time.monotonic()
    for _ in range(int(READ_TIMEOUT) + 2):
        try:
            sock.sendall(b"x")
        except OSError:
            break
        time.sleep(1)
    data, _ = _until_closed(sock, MARGIN)
    assert data.startswith(b"HTTP/1.1 408 "), data[:80]
    assert time.monotonic() - began < READ_TIMEOUT + MARGIN + 1


def test_probes_are_answered_while_every_webhook_thread_is_busy(
    serve, world, tmp_path: Path
) -> None:
    """Slow but complete webhook requests (a registry that drips, until the deadline) fill
    every request thread; probes run on threads of their own."""
    drip = HostileRegistry("drip").start()
    try:
        config = world.config(
            tmp_path / "c.yaml", deadlineSeconds=3, cache={"ttlSeconds": 0, "tagTtlSeconds": 0}
        )
        server = serve(config, db=None, extra=("--threads", "2"))
        slow = review(deployment(f"{drip.address}/{REPO}/app:v1"))
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            answers = [pool.submit(server.post, "/validate", slow) for _ in range(4)]
            time.sleep(0.5)
            for path in ("/healthz", "/readyz"):
                began = time.monotonic()
                assert server.get(path).status_code == 200
                assert time.monotonic() - began < 1.0, path  # not after the busy threads
            assert not any(answer.done() for answer in answers)
            assert all(answer.result()["allowed"] is False for answer in answers)
    finally:
        drip.stop()


def _start_mtls(config: Path, tls: Any, workdir: Path, client_ca: Path) -> tuple[Serve, int]:
    port, web_port, probe_port = free_port(), free_port(), free_port()
    token_file = workdir / "token"
    token_file.write_text(TOKEN)
    extra = ("--client-ca", str(client_ca), "--probe-port", str(probe_port), *LIMITS)
    command = serve_command(
        config,
        tls,
        port=port,
        web_port=web_port,
        db=str(workdir / "decisions.db"),
        token_file=token_file,
        extra=extra,
    )
    server = Serve(
        webhook.launch(command, workdir / "serve.log"), port, tls.ca, workdir / "serve.log"
    )
    server.web_port, server.args = web_port, command
    probe = f"https://127.0.0.1:{probe_port}"
    webhook.wait_until_ready(
        server,
        lambda: (
            requests.get(f"{probe}/readyz", verify=str(tls.ca), timeout=5).ok
            and server.ops("/healthz").ok
        ),
    )
    return server, probe_port


def test_the_webhook_port_requires_the_api_servers_client_certificate(
    world, tls, tmp_path: Path, cli
) -> None:
    api_server_ca = make_client_ca(tmp_path / "api-server-ca")
    stranger_ca = make_client_ca(tmp_path / "stranger-ca", "some other CA")
    config = world.config(tmp_path / "c.yaml")
    server, probe_port = _start_mtls(config, tls, tmp_path, api_server_ca.ca)
    try:
        body = review(deployment(world.images["good"]), uid="from-api-server")
        url, ca = f"{server.url}/validate", str(tls.ca)
        for cert in (None, stranger_ca.issue("kube-apiserver")):  # refused in the TLS handshake
            with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
                requests.post(url, json=body, verify=ca, cert=cert, timeout=10)
        for cert in (None, stranger_ca.issue("pod")):
            with pytest.raises((ssl.SSLError, OSError)):
                sock = _connect(server, cert=cert)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
                if not sock.recv(100):
                    raise ConnectionResetError("closed without an answer")
        client = api_server_ca.issue("kube-apiserver", "system:masters")
        caller = x509.load_pem_x509_certificate(Path(client[0]).read_bytes()).subject
        expected = caller.rfc4514_string()
        answer = requests.post(url, json=body, verify=ca, cert=client, timeout=10)
        assert answer.status_code == 200 and answer.json()["response"]["allowed"] is True
        probe = f"https://127.0.0.1:{probe_port}"  # the kubelet has no client certificate
        assert requests.get(f"{probe}/healthz", verify=ca, timeout=5).json() == {"status": "ok"}
        assert requests.get(f"{probe}/readyz", verify=ca, timeout=5).json()["status"] == "ready"
        for method, path in (("POST", "/validate"), ("POST", "/mutate"), ("GET", "/decisions")):
            refused = requests.request(method, f"{probe}{path}", json=body, verify=ca, timeout=5)
            assert refused.status_code == 404, (method, path)
        assert server.ops("/healthz").ok  # the ops port asks for no client certificate
        decision_lines = [
            line for line in server.log_lines() if line.get("event") == "admission_decision"
        ]
        assert [line["caller"] for line in decision_lines] == [expected]
        page = wait_for(
            lambda: (r := server.ops("/decisions/1", token=TOKEN)).ok and r, what="the record"
        )
        assert expected in page.text
    finally:
        assert server.stop() == 0
    records = cli("decisions", "list", "--db", str(tmp_path / "decisions.db"), "--output", "json")
    assert [r["decision"]["caller"] for r in records.json()] == [expected]


def test_an_unusable_client_ca_is_a_one_line_error(world, tls, tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    for path, expected in (
        (not_pem, "not a usable CA certificate"),
        (tmp_path / "nope", "No such"),
    ):
        command = serve_command(
            world.config(tmp_path / "c.yaml"),
            tls,
            port=free_port(),
            web_port=0,
            db=None,
            token_file=None,
            extra=("--client-ca", str(path)),
        )
        run = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, run.stderr
        assert run.stderr.strip().splitlines() == [
            run.stderr.strip().splitlines()[0]
        ] and run.stderr.startswith(f"attest: error: --client-ca {path}")
        assert expected in run.stderr
