"""Wall-clock limits on whole HTTP exchanges: connect, TLS handshake, headers and the whole body.

A socket timeout bounds one ``recv``: a registry that drips one byte a second, or
sends headers and then stalls in the body between bytes, never trips it, and the
thread reading stays pinned long after its caller's deadline.  Here every
exchange has an end (the caller's :class:`~attest.deadline.Deadline`) and
registers the sockets it uses; one watchdog thread per process shuts those
sockets down when the end passes.  That wakes whatever thread is blocked on them
— in the TLS handshake, reading the status line and headers, or reading the
body, plain or TLS, through requests or straight through urllib3 — with an
error at once, so the work is cut off and reported as a deadline, never counted
as a result.

The sockets are registered by the connection classes urllib3 builds connections
from (:data:`POOL_CLASSES`, used by the registry client's pools and its requests
session) when the request is sent on them, and by a plain-HTTP connection as
soon as it connects.  The exchange is found through a thread-local set by
:func:`sending` around the call that sends the request.  What comes before the
request needs no watchdog: the TCP connect and the whole TLS handshake are
bounded by the connect timeout (CPython's handshake keeps one deadline across
its reads), which never exceeds what is left.  DNS resolution is bounded only
by the resolver's own timeouts.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# One lock for every exchange's sockets and every connection's owner: a connection
# handed from one exchange to the next must never be cut by the first one's end.
_LOCK = threading.Lock()
_current = threading.local()


class Exchange:
    """One HTTP exchange that must be over by ``end`` (``time.monotonic()``)."""

    def __init__(self, end: float) -> None:
        self.end = end
        self._watched: list[tuple[_Watched, socket.socket]] = []
        self._cut = False
        self._finished = False

    @property
    def cut_off(self) -> bool:
        """Whether the limit passed while the exchange was running (its sockets were shut)."""
        return self._cut

    def watch(self, connection: _Watched, sock: socket.socket) -> None:
        """Shut ``sock`` down at the end, unless ``connection`` has moved on to another
        exchange by then (a keep-alive connection serves one exchange after another)."""
        with _LOCK:
            connection.exchange = self
            if self._cut:
                _shut(sock)
            elif not self._finished:
                self._watched.append((connection, sock))

    def cut(self) -> None:
        """The end passed: shut down every socket still serving this exchange."""
        with _LOCK:
            if self._finished or self._cut:
                return
            self._cut = True
            for connection, sock in self._watched:
                if connection.exchange is self:
                    _shut(sock)
            self._watched.clear()

    def finish(self) -> None:
        """The exchange is over (body read or response closed): nothing left to cut."""
        with _LOCK:
            if self._finished:
                return
            self._finished = True
            self._watched.clear()


def _shut(sock: socket.socket) -> None:
    """Shut a socket down for both directions without touching its TLS state (another
    thread may be inside it); a socket already closed is fine."""
    with suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that cuts exchanges off at their ends, earliest first."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """No thread and no exchanges yet (also what a forked child starts from: it has
        none of the parent's threads)."""
        self._heap: list[tuple[float, int, Exchange]] = []
        self._condition = threading.Condition()
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, exchange: Exchange) -> None:
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="attest-exchange-watchdog", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, (exchange.end, next(self._sequence), exchange))
            if self._heap[0][2] is exchange:
                self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    if not self._heap:
                        self._condition.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait > 0:
                        self._condition.wait(wait)
                        continue
                    exchange = heapq.heappop(self._heap)[2]
                    break
            exchange.cut()


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG.reset)


def start(end: float) -> Exchange:
    """A new exchange that the watchdog cuts off at ``end``."""
    exchange = Exchange(end)
    _WATCHDOG.add(exchange)
    return exchange


@contextmanager
def sending(exchange: Exchange) -> Iterator[None]:
    """Make ``exchange`` the one that connections used by this thread register with."""
    previous = getattr(_current, "exchange", None)
    _current.exchange = exchange
    try:
        yield
    finally:
        _current.exchange = previous


def _sending_now() -> Exchange | None:
    exchange: Exchange | None = getattr(_current, "exchange", None)
    return exchange


class _Watched:
    """Mixin for urllib3 connections: register sockets with the exchange being sent."""

    exchange: Exchange | None = None
    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        """Plain HTTP connects inside ``request``: watch the new socket at once.  (A TLS
        connection is wrapped after this, detaching this socket; ``request`` then
        watches the TLS socket, and shutting this one down is a harmless no-op.)"""
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        exchange = _sending_now()
        if exchange is not None:
            exchange.watch(self, sock)
        return sock

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        exchange = _sending_now()
        if exchange is not None and self.sock is not None:  # connected: TLS, or kept alive
            exchange.watch(self, self.sock)
        super().request(method, url, *args, **kwargs)  # type: ignore[misc]


class WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {
    "http": WatchedHTTPConnectionPool,
    "https": WatchedHTTPSConnectionPool,
}


def watched(manager: urllib3.PoolManager) -> urllib3.PoolManager:
    """``manager``, building its connections from the watched classes (proxies too)."""
    manager.pool_classes_by_scheme = dict(POOL_CLASSES)
    return manager
