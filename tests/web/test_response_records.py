"""Each answer of the real server leaves in one TLS record (issue 15, the HTTP path).

gunicorn writes a response's head and body with two ``sendall`` calls, so two TLS
records, two encryptions and two system calls per answer.  The admission worker's
response (:mod:`admission.response`) sends them together.  The client here does TLS
over memory buffers so it can see record boundaries: OpenSSL's ``SSL_read`` returns
the plaintext of at most one record per call, so each non-empty read is one record.
"""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path
from typing import Any

from admission.testing.helpers import deployment, review


class RecordClient:
    """One keep-alive TLS connection whose reads keep the server's record boundaries."""

    def __init__(self, server: Any) -> None:
        context = ssl.create_default_context(cafile=str(server.ca))
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._pump()
        self._send_pending()

    def _send_pending(self) -> None:
        if pending := self.outgoing.read():
            self.sock.sendall(pending)

    def _pump(self) -> None:
        self._send_pending()
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.incoming.write(data)

    def exchange(self, request: bytes) -> list[bytes]:
        """Send one request; the plaintext of each record of the answer, in order."""
        self.tls.write(request)
        self._send_pending()
        records: list[bytes] = []
        while not _complete(b"".join(records), request):
            try:
                records.append(self.tls.read(1 << 20))
            except ssl.SSLWantReadError:
                self._pump()
        return records

    def close(self) -> None:
        self.sock.close()


def _complete(answer: bytes, request: bytes) -> bool:
    head, separator, body = answer.partition(b"\r\n\r\n")
    if not separator:
        return False
    if request.startswith(b"HEAD "):
        return True
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return len(body) >= length


def _request(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: attest\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def test_every_answer_is_one_record_and_keep_alive_still_works(
    serve, world, tmp_path: Path
) -> None:
    """A decision, a probe and a refusal, on one connection: each answer is one whole record
    (head and body together), bodiless HEAD answers still arrive, and the decision is right."""
    server = serve(world.config(tmp_path / "c.yaml"), db=None)
    client = RecordClient(server)
    try:
        for image, allowed in ((world.images["good"], True), (world.images["unsigned"], False)):
            body = json.dumps(review(deployment(image))).encode()
            records = client.exchange(_request("POST", "/validate", body))
            assert len(records) == 1, [record[:60] for record in records]
            head, _, answer = records[0].partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            assert json.loads(answer)["response"]["allowed"] is allowed

        records = client.exchange(_request("GET", "/healthz"))
        assert len(records) == 1 and records[0].startswith(b"HTTP/1.1 200 ")

        records = client.exchange(_request("HEAD", "/healthz"))  # a head and no body
        assert len(records) == 1 and records[0].startswith(b"HTTP/1.1 200 ")
        assert records[0].endswith(b"\r\n\r\n")

        records = client.exchange(_request("POST", "/validate", b"not json"))
        assert len(records) == 1 and records[0].startswith(b"HTTP/1.1 400 ")

        records = client.exchange(_request("GET", "/healthz"))  # still in step afterwards
        assert len(records) == 1 and records[0].startswith(b"HTTP/1.1 200 ")
    finally:
        client.close()
