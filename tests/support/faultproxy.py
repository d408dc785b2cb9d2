"""A loopback HTTP proxy in front of a real registry that injects faults on demand.

Tests script it (``fail_next(n, status, retry_after)``, ``hang_seconds`` before
answering, ``drip_seconds`` between the bytes of an answer) to exercise retries,
``Retry-After`` and deadlines against real registry (or OPA) behaviour for every
request it does not disturb.
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from attest.testing import QuietHTTPServer, free_port


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.faults: list[tuple[int, str | None]] = []
        self.hang_seconds = 0.0
        self.drip_seconds = 0.0
        self.seen: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def fail_next(self, count: int, status: int, retry_after: str | None = None) -> None:
        with self._lock:
            self.faults.extend([(status, retry_after)] * count)

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                return

            def _handle(self) -> None:
                if proxy.hang_seconds:
                    time.sleep(proxy.hang_seconds)
                with proxy._lock:
                    fault = proxy.faults.pop(0) if proxy.faults else None
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if fault:
                    status, retry_after = fault
                    proxy.seen.append((self.command, self.path, status))
                    payload = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
                    self.send_response(status)
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                }
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                proxy.seen.append((self.command, self.path, response.status))
                if proxy.drip_seconds:  # every byte on time for a read timeout, never done
                    head = f"HTTP/1.1 {response.status} OK\r\nContent-Length: {len(data)}\r\n\r\n"
                    for byte in head.encode() + data:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(proxy.drip_seconds)
                    upstream.close()
                    return
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() in ("transfer-encoding", "connection"):
                        continue
                    if key.lower() == "content-length" and self.command != "HEAD":
                        continue
                    if key.lower() == "location":
                        value = value.replace(f"127.0.0.1:{proxy.upstream_port}", proxy.address)
                    self.send_header(key, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _handle

        self._server = QuietHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
