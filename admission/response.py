"""gunicorn's response, written as one TLS record: the head goes out with the first body bytes.

gunicorn writes the status line and headers with one ``sendall`` and the body with
another.  On a TLS socket each ``sendall`` is an ``SSL_write``: its own record, its
own encryption and its own system call.  A py-spy profile of ``bench/admission.py``
put TLS ``sendall`` at about 12% of the serving workers' samples, half of it for a
head of a few hundred bytes.  This response keeps the head until the body's first
bytes (or the end of the response) and sends both in one write; an AdmissionReview
answer, a few KiB, then leaves in one record.

Only the order of bytes on the wire is the same as gunicorn's: nothing is reordered,
the head is never sent after the body, and a response without body (``HEAD``, 204,
304) still sends its head when it is closed.
"""

from __future__ import annotations

from typing import Any

from gunicorn import util
from gunicorn.http import wsgi


class OneRecordResponse(wsgi.Response):
    """A :class:`gunicorn.http.wsgi.Response` whose head rides with the first body write."""

    _held_head: bytes = b""

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        head = self.default_headers()
        head.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        self._held_head = util.to_bytestring("{}\r\n".format("".join(head)), "latin-1")
        self.headers_sent = True  # gunicorn's bookkeeping: the head is committed

    def _emit_body(self, data: bytes) -> None:
        if self._held_head:
            if self.chunked:  # chunk framing is gunicorn's: keep its order, head first
                self._flush_head()
            else:
                data, self._held_head = self._held_head + data, b""
        util.write(self.sock, data, self.chunked)

    def _flush_head(self) -> None:
        head, self._held_head = self._held_head, b""
        if head:
            util.write(self.sock, head)

    def write_file(self, respiter: Any) -> None:
        self.send_headers()
        self._flush_head()  # sendfile writes the socket directly
        super().write_file(respiter)

    def close(self) -> None:
        self.send_headers()
        self._flush_head()  # no body, or a body that was all dropped (HEAD, 204, 304)
        super().close()


def install() -> None:
    """Make gunicorn build :class:`OneRecordResponse` for every request of this process.

    ``gunicorn.http.wsgi.create`` looks ``Response`` up in its module on each call,
    which is the one seam it offers; only the admission worker calls this, after the
    fork, so nothing else in the process serves HTTP through gunicorn.
    """
    wsgi.Response = OneRecordResponse  # type: ignore[misc]  # the seam is a module global
