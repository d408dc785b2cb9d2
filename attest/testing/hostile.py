"""Hostile registries on loopback: real socket servers that hold a client as long as it lets them.

- ``drip``: reads the request, then sends a well-formed answer one byte a second.
  With ``upstream`` it is a TCP relay to that port (a TLS registry, say) that
  passes the client's bytes on at once and the server's back one a second: the
  TLS handshake itself drips.
- ``blackhole``: accepts the connection and never answers.
- ``stall``: answers ``200`` with a ``Content-Length`` and half the body, then stalls.
  With ``upstream`` (a real registry's port) it relays every request there and
  stalls only the answers whose request line matches ``stall`` (e.g. manifest
  or blob GETs), so a client gets a real image up to the stalled read.

With ``tls`` (certificate and key files) the server speaks TLS: the handshake
completes at once and the misbehaviour happens inside the TLS stream.

Every connection is held until the *client* gives up; the server records when that
happened (EOF or a reset seen while holding it), so a test can prove the client's
transport cut the exchange off, not just that its caller stopped waiting.
"""

from __future__ import annotations

import http.client
import re
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

from attest.testing import free_port

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
FAKE_MANIFEST = (
    b'{"schemaVersion":2,"mediaType":"' + MANIFEST_TYPE.encode() + b'","config":'
    b'{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'
    + b"0" * 64
    + b'","size":2},"layers":[]}'
)


@dataclass
class Held:
    """One connection the server held: when it was accepted and when the client let go."""

    opened: float
    closed: float | None = None


@dataclass
class HostileRegistry:
    behaviour: str  # drip | blackhole | stall
    upstream: int | None = None
    stall: str = r"^GET "  # request lines (``GET /v2/... HTTP/1.1``) whose answers stall
    tls: tuple[str, str] | None = None
    port: int = field(default_factory=free_port)
    held: list[Held] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    _listener: socket.socket | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> HostileRegistry:
        if self.behaviour not in ("drip", "blackhole", "stall"):
            raise ValueError(f"unknown behaviour {self.behaviour!r}")
        listener = socket.create_server(("127.0.0.1", self.port), backlog=128)
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()

    def held_count(self) -> int:
        with self._lock:
            return len(self.held)

    def wait_released(self, timeout: float) -> list[float]:
        """Wait until every held connection was let go by the client; the seconds each was
        held.  Raises if one is still held after ``timeout``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if self.held and all(h.closed is not None for h in self.held):
                    return [h.closed - h.opened for h in self.held if h.closed is not None]
            time.sleep(0.05)
        with self._lock:
            open_ones = sum(1 for h in self.held if h.closed is None)
        raise AssertionError(f"{open_ones} of {len(self.held)} connections still held")

    # -- serving ---------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            try:
                conn.settimeout(10)
                conn = context.wrap_socket(conn, server_side=True)
                conn.settimeout(None)
            except OSError:
                conn.close()
                return
        with conn:
            try:
                while not self._stopped.is_set():
                    if self.behaviour == "blackhole":
                        self._hold(conn, b"")
                        return
                    if self.behaviour == "drip" and self.upstream is not None:
                        self._drip_relay(conn, self.upstream)
                        return
                    request = _read_request(conn)
                    if request is None:
                        return
                    line = request.split(b"\r\n", 1)[0].decode("latin-1")
                    with self._lock:
                        self.requests.append(line)
                    if self.behaviour == "drip":
                        self._hold(conn, _answer(line, FAKE_MANIFEST), drip=True)
                        return
                    if self.upstream is None:
                        answer = _answer(line, FAKE_MANIFEST)
                        self._hold(conn, answer[: len(answer) - len(FAKE_MANIFEST) // 2])
                        return
                    answer = _relay(request, self.upstream)
                    if re.search(self.stall, line):
                        head, _, body = answer.partition(b"\r\n\r\n")
                        self._hold(conn, head + b"\r\n\r\n" + body[: len(body) // 2])
                        return
                    conn.sendall(answer)
            except OSError:
                return

    def _hold(self, conn: socket.socket, data: bytes, *, drip: bool = False) -> None:
        """Send ``data`` (a byte a second when ``drip``), then hold until the client lets go."""
        held = Held(time.monotonic())
        with self._lock:
            self.held.append(held)
        try:
            if not drip:
                conn.sendall(data)
            pending = data if drip else b""
            while not self._stopped.is_set():
                if pending:
                    conn.sendall(pending[:1])
                    pending = pending[1:]
                readable, _, _ = select.select([conn], [], [], 1.0)
                if readable and not conn.recv(65536):
                    break
        except OSError:
            pass
        held.closed = time.monotonic()

    def _drip_relay(self, conn: socket.socket, upstream: int) -> None:
        """Relay to ``upstream``: the client's bytes at once, the answer a byte a second."""
        held = Held(time.monotonic())
        with self._lock:
            self.held.append(held)
        pending = b""
        try:
            with socket.create_connection(("127.0.0.1", upstream), timeout=30) as server:
                while not self._stopped.is_set():
                    readable, _, _ = select.select([conn, server], [], [], 1.0)
                    if conn in readable:
                        data = conn.recv(65536)
                        if not data:
                            break
                        server.sendall(data)
                    if server in readable:
                        pending += server.recv(65536)
                    if pending:
                        conn.sendall(pending[:1])
                        pending = pending[1:]
        except OSError:
            pass
        held.closed = time.monotonic()


def _read_request(conn: socket.socket) -> bytes | None:
    """One request: the head and a ``Content-Length`` body; ``None`` at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n" + body


def _answer(line: str, body: bytes) -> bytes:
    """A 200 that looks like a manifest answer; a HEAD gets no digest, so the client GETs."""
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: {MANIFEST_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head if line.startswith("HEAD ") else head + body


def _relay(request: bytes, upstream: int) -> bytes:
    """Send ``request`` to the real registry; its whole answer with a ``Content-Length``."""
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.lower() not in ("host", "connection"):
            headers[key] = value.strip()
    client = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30)
    try:
        client.request(method, path, body=body or None, headers=headers)
        response = client.getresponse()
        data = response.read()
        out = [f"HTTP/1.1 {response.status} {response.reason}"]
        for key, value in response.getheaders():
            if key.lower() in ("transfer-encoding", "connection", "content-length"):
                continue
            out.append(f"{key}: {value}")
        length = response.getheader("Content-Length") if method == "HEAD" else str(len(data))
        out.append(f"Content-Length: {length or 0}")
        return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + (
            b"" if method == "HEAD" else data
        )
    finally:
        client.close()
