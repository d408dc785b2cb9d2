"""The gunicorn worker of ``attest admission serve``: no thread for a request until it has arrived.

gunicorn's threaded worker hands every connection to a thread that then reads
the TLS handshake, the headers and the body with blocking reads and no time
limit.  Measured against gunicorn 27 with four threads: four connections that
send headers and part of a body (or part of the headers) hold all four threads
for good — ``/healthz`` stops answering and the held connections were still open
40 s later.  Sixteen such connections do the same to the default two workers of
eight threads.

This worker reads requests in its event loop instead, without blocking: the TLS
handshake, then the request head and its ``Content-Length`` body, into a
buffer.  Only a request that has arrived in full goes to a thread, which parses
it from that buffer and never reads the socket.  A connection still reading
when its limits pass is answered ``408`` and closed: the TLS handshake and the
head must arrive within ``read_header_timeout``, the whole request within
``read_timeout``, both wall-clock from the first byte.  A head above 64 KiB is
refused with ``431``, a declared body above ``max_body_bytes`` with ``413``
before any of it is read, a chunked body with ``411`` (the API server always
sends a length).  A slowloris client then holds a socket and a small buffer,
never a thread.

Each listener has its own TLS context, so the webhook port can require a client
certificate (``client_ca``: the API server's, see deploy/) while the ops port and
the probe port do not.  A connection without a valid certificate fails in the
TLS handshake; the certificate subject of an accepted one is the request's
caller (:func:`current_caller`), recorded with every decision.  The probe port
serves only ``GET /healthz`` and ``GET /readyz`` (the kubelet has no client
certificate), and probe requests on any port run on a small thread pool of
their own, so webhook traffic — however slow its decisions — cannot starve them.
Certificate, key and CA files are re-read when they change (cert-manager
rotation), for new connections.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import socket
import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cryptography import x509
from gunicorn import http
from gunicorn.workers.gthread import TConn, ThreadWorker

from admission import response

PROBE_PATHS = (b"/healthz", b"/readyz")
MAX_HEAD_BYTES = 64 * 1024
DRAIN_BYTES = 16 * 1024 * 1024  # read and drop this much of a refused body: the client sees why
DRAIN_SECONDS = 2.0
_READ_CHUNK = 256 * 1024
_PROBE_REQUEST = re.compile(rb"GET (/healthz|/readyz)(\?[^ ]*)? HTTP/1\.[01]\r\n")


@dataclass(frozen=True)
class Listeners:
    """What the worker needs to know beyond gunicorn's settings (set by ``serve``)."""

    tls_cert: str
    tls_key: str
    webhook_port: int
    client_ca: str | None = None
    probe_port: int = 0
    read_header_timeout: float = 5.0
    read_timeout: float = 10.0
    max_body_bytes: int = 3 * 1024 * 1024 + 64 * 1024
    probe_threads: int = 2


SETTINGS: Listeners | None = None  # set by serve() in the arbiter; workers fork with it
_request = threading.local()


def current_caller() -> str | None:
    """The verified client certificate subject of the request this thread serves (RFC 4514),
    or ``None`` when its listener asks for no client certificate."""
    caller: str | None = getattr(_request, "caller", None)
    return caller


def server_context(settings: Listeners, *, client_certificates: bool) -> ssl.SSLContext:
    """A TLS server context; with ``client_certificates``, one that requires a client
    certificate issued by ``settings.client_ca``.  Raises ``OSError``/``ssl.SSLError``
    for unreadable or mismatching files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if client_certificates and settings.client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=settings.client_ca)
    return context


class _Contexts:
    """One TLS context per listener kind, rebuilt when a certificate, key or CA file changes."""

    def __init__(self, settings: Listeners) -> None:
        self.settings = settings
        self._files = [f for f in (settings.tls_cert, settings.tls_key, settings.client_ca) if f]
        self._signature: tuple[tuple[int, int], ...] = ()
        self._contexts: dict[bool, ssl.SSLContext] = {}

    def _current(self) -> tuple[tuple[int, int], ...]:
        signature = []
        for path in self._files:
            try:
                stat = os.stat(path)
                signature.append((stat.st_mtime_ns, stat.st_size))
            except OSError:
                signature.append((0, 0))
        return tuple(signature)

    def for_port(self, port: int) -> ssl.SSLContext:
        signature = self._current()
        if signature != self._signature:
            try:
                self._contexts = {
                    mtls: server_context(self.settings, client_certificates=mtls)
                    for mtls in (False, True)
                }
                self._signature = signature
            except (OSError, ssl.SSLError):  # mid-rotation: keep serving with the last good
                if not self._contexts:
                    raise
        return self._contexts[port == self.settings.webhook_port]


class _Conn(TConn):
    """gunicorn's connection, with what this worker learns about it while reading."""

    attest_caller: str | None = None  # the client certificate subject, once the handshake is done
    attest_leftover: bytes = b""  # what followed the request: a pipelined next request
    attest_probe: bool = False  # a probe: served by the probe pool, never waits for webhook threads
    attest_dropped: bool = False


def _own(conn: TConn) -> _Conn:
    """A connection gunicorn hands back: one of this worker's (accept() made it)."""
    if not isinstance(conn, _Conn):
        raise TypeError(f"not a connection of this worker: {type(conn).__name__}")
    return conn


@dataclass
class _Reading:
    """A connection whose request is still arriving, with its two wall-clock limits."""

    conn: _Conn
    header_end: float
    read_end: float
    buffer: bytearray = field(default_factory=bytearray)
    handshaking: bool = False
    head_done: bool = False
    continued: bool = False
    draining: int = 0  # refused: bytes of the rest of the request still to read and drop


def _caller(sock: ssl.SSLSocket) -> str | None:
    der = sock.getpeercert(binary_form=True)
    if not der:
        return None
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def _body_length(head: bytes) -> tuple[int, tuple[int, str] | None]:
    """The declared body length of a request head, or the status and reason to refuse it."""
    lengths = re.findall(rb"(?im)^content-length[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", head)
    if re.search(rb"(?im)^transfer-encoding[ \t]*:", head):
        return 0, (411, "a chunked request body is not accepted: send Content-Length")
    if not lengths:
        return 0, None
    if len(set(lengths)) > 1 or not lengths[0].isdigit():
        return 0, (400, "invalid Content-Length")
    return int(lengths[0]), None


def error_response(status: int, reason: str, message: str) -> bytes:
    """A small JSON error answer (an AdmissionReview the API server can show) that closes."""
    body = json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {
                "uid": "",
                "allowed": False,
                "status": {"code": status, "message": message},
            },
            "error": message,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
}


class AdmissionWorker(ThreadWorker):
    """gunicorn's threaded worker, reading every request in full before a thread runs it."""

    def init_process(self) -> None:
        if SETTINGS is None:
            raise RuntimeError("admission.worker.SETTINGS is not set (use attest admission serve)")
        self.listeners = SETTINGS
        self.contexts = _Contexts(SETTINGS)
        self.readings: dict[_Conn, _Reading] = {}
        self.probe_pool = ThreadPoolExecutor(
            max_workers=SETTINGS.probe_threads, thread_name_prefix="attest-probe"
        )
        response.install()  # each response in one TLS record
        super().init_process()

    # -- reading requests in the event loop -------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            client, address = listener.accept()
        except OSError:
            return  # another worker took it, or the client went away
        self.nr_conns += 1
        server = listener.getsockname()
        conn = _Conn(self.cfg, client, address, server)
        try:
            context = self.contexts.for_port(server[1])
            conn.sock = context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        except (OSError, ssl.SSLError):
            self.log.exception("TLS setup failed")
            self._drop(conn)
            return
        self._start_reading(conn, handshaking=True, leftover=b"")

    def _start_reading(self, conn: _Conn, *, handshaking: bool, leftover: bytes) -> None:
        now = time.monotonic()
        reading = _Reading(
            conn,
            header_end=now + self.listeners.read_header_timeout,
            read_end=now + self.listeners.read_timeout,
            buffer=bytearray(leftover),
            handshaking=handshaking,
        )
        conn.sock.setblocking(False)
        self.readings[conn] = reading
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, reading))
        if leftover:
            self._on_readable(reading)  # maybe all there: dispatch or refuse it now

    def _on_readable(self, reading: _Reading, _fileobj: object = None) -> None:
        """Read what arrived (event loop: must never raise, or the worker dies)."""
        try:
            self._read_more(reading)
        except Exception:
            self.log.exception("reading a request failed")
            self._drop(reading.conn)

    def _read_more(self, reading: _Reading) -> None:
        sock = reading.conn.sock
        if reading.draining:
            self._drain(reading)
            return
        try:
            if reading.handshaking:
                if not isinstance(sock, ssl.SSLSocket):  # accept() wrapped it: never plain
                    raise RuntimeError("a connection to hand-shake is not a TLS socket")
                try:
                    sock.do_handshake()
                except ssl.SSLWantReadError:
                    return
                except ssl.SSLWantWriteError:
                    self.poller.modify(
                        sock,
                        selectors.EVENT_READ | selectors.EVENT_WRITE,
                        partial(self._on_readable, reading),
                    )
                    return
                reading.handshaking = False
                reading.conn.attest_caller = _caller(sock)
                self.poller.modify(sock, selectors.EVENT_READ, partial(self._on_readable, reading))
            limit = MAX_HEAD_BYTES + 4 + self.listeners.max_body_bytes  # then _check decides
            while len(reading.buffer) <= limit:
                try:
                    data = sock.recv(_READ_CHUNK)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    break
                if not data:  # the client went away
                    self._drop(reading.conn)
                    return
                reading.buffer += data
        except OSError:  # ssl.SSLError included: a refused client certificate ends here
            self._drop(reading.conn)
            return
        self._check(reading)

    def _check(self, reading: _Reading) -> None:
        """Dispatch the request if it is complete; refuse it if it breaks a limit."""
        buffer = reading.buffer
        head_end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
        if head_end < 0:
            if len(buffer) >= MAX_HEAD_BYTES + 4:
                self._refuse(reading, 431, f"request head is larger than {MAX_HEAD_BYTES} bytes")
            return
        reading.head_done = True
        head = bytes(buffer[:head_end])
        length, problem = _body_length(head)
        if problem is not None:
            self._refuse(reading, *problem)
            return
        if length > self.listeners.max_body_bytes:
            self._refuse(
                reading,
                413,
                f"request body is larger than {self.listeners.max_body_bytes} bytes",
            )
            return
        needed = head_end + 4 + length
        if len(buffer) < needed:
            if not reading.continued and re.search(rb"(?im)^expect[ \t]*:[ \t]*100-continue", head):
                reading.continued = True
                self._send_quietly(reading.conn, b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        self._dispatch(reading, needed)

    def _dispatch(self, reading: _Reading, size: int) -> None:
        conn = reading.conn
        self._forget(conn)
        request = bytes(reading.buffer[:size])
        if reading.continued:  # answered already: gunicorn must not send a second 100
            head, _, body = request.partition(b"\r\n\r\n")
            head = re.sub(rb"(?im)^expect[ \t]*:[^\r\n]*(\r\n|\Z)", b"", head)
            request = head.rstrip(b"\r\n") + b"\r\n\r\n" + body
        conn.attest_leftover = bytes(reading.buffer[size:])
        conn.attest_probe = _PROBE_REQUEST.match(request) is not None
        conn.parser = http.get_parser(self.cfg, [request], conn.client)
        conn.initialized = True
        conn.data_ready = True
        self.enqueue_req(conn)

    def murder_pending(self) -> None:
        """Also refuse requests still arriving after their limits (``408``)."""
        super().murder_pending()
        now = time.monotonic()
        for reading in list(self.readings.values()):
            if reading.draining:
                if now >= reading.read_end:
                    self._drop(reading.conn)
                continue
            late_head = not reading.head_done and now >= reading.header_end
            if late_head or now >= reading.read_end:
                what = "the request head" if late_head else "the whole request"
                limit = (
                    self.listeners.read_header_timeout if late_head else self.listeners.read_timeout
                )
                if reading.handshaking:
                    self._drop(reading.conn)
                else:
                    self._send_quietly(
                        reading.conn,
                        error_response(
                            408, _REASONS[408], f"{what} did not arrive within {limit:g}s"
                        ),
                    )
                    self._drop(reading.conn)

    def _refuse(self, reading: _Reading, status: int, message: str) -> None:
        """Answer ``status`` and close; first read and drop what the client is still sending
        (bounded), or it would fail writing the body and never see the answer."""
        self._send_quietly(reading.conn, error_response(status, _REASONS[status], message))
        reading.draining = DRAIN_BYTES
        reading.read_end = min(reading.read_end, time.monotonic() + DRAIN_SECONDS)
        self._drain(reading)

    def _drain(self, reading: _Reading) -> None:
        while reading.draining > 0:
            try:
                data = reading.conn.sock.recv(min(_READ_CHUNK, reading.draining))
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            except OSError:
                break
            if not data:
                break
            reading.draining -= len(data)
        self._drop(reading.conn)

    @staticmethod
    def _send_quietly(conn: TConn, data: bytes) -> None:
        """Best effort, never blocking: a client that does not read gets nothing."""
        with contextlib.suppress(OSError, ValueError):
            conn.sock.send(data)

    def _forget(self, conn: _Conn) -> None:
        self.readings.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _drop(self, conn: _Conn) -> None:
        if getattr(conn, "attest_dropped", False):
            return
        conn.attest_dropped = True
        self._forget(conn)
        self.nr_conns -= 1
        conn.close()

    # -- threads, keep-alive ------------------------------------------------------------

    def enqueue_req(self, conn: TConn) -> None:
        pool = self.probe_pool if getattr(conn, "attest_probe", False) else self.tpool
        future = pool.submit(self.handle, conn)
        future.add_done_callback(
            lambda done: self.method_queue.defer(self.finish_request, conn, done)
        )

    def handle(self, conn: TConn) -> Any:
        _request.caller = getattr(conn, "attest_caller", None)
        try:
            return super().handle(conn)
        finally:
            _request.caller = None

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A kept-alive connection's next request begins: read it here, not in a thread."""
        conn = _own(conn)
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._start_reading(conn, handshaking=False, leftover=b"")
        self._on_readable(self.readings[conn])

    def finish_request(self, conn: TConn, future: Future[Any]) -> None:
        conn = _own(conn)
        try:
            keep = bool(future.result()) if not future.cancelled() else False
        except Exception:
            keep = False
        if not keep:
            self.nr_conns -= 1
            conn.close()
            return
        try:
            parser = conn.parser
            if not isinstance(parser, http.RequestParser):  # _dispatch gave it an HTTP/1 parser
                raise TypeError(f"unexpected parser {type(parser).__name__}")
            leftover = conn.attest_leftover + parser.unreader.take_buffered()
            if leftover:  # the client pipelined its next request
                self._start_reading(conn, handshaking=False, leftover=leftover)
                return
            conn.sock.setblocking(False)
            conn.set_timeout()
            if not self.alive:  # stopping: keep it only briefly, as gunicorn does
                soon = time.monotonic() + 2.0
                conn.timeout = soon if conn.timeout is None else min(conn.timeout, soon)
            self.keepalived_conns.append(conn)
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
            )
        except Exception:
            self._drop(conn)
