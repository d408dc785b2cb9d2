"""Loopback helpers for test servers."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer


class QuietHTTPServer(ThreadingHTTPServer):
    """A loopback test server whose handler errors print nothing.

    The CLI under test runs in the test process and its stderr is captured: a handler's
    broken pipe or refused upstream (the client gave up, as it should, or a fixture was
    stopped under a straggling request) must not land in another test's captured output.
    """

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(
    url: str,
    *,
    timeout: float = 20.0,
    ok_statuses: tuple[int, ...] = (200, 401),
    context: ssl.SSLContext | None = None,
) -> None:
    """Poll ``url`` until it answers with one of ``ok_statuses`` (bounded by ``timeout``)."""
    end = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status in ok_statuses:
                    return
        except urllib.error.HTTPError as err:
            if err.code in ok_statuses:
                return
            last = err
        except OSError as err:
            last = err
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout}s: {last}")
