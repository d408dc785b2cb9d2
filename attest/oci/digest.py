"""Content digests: computing them, and reading streams that must match one."""

from __future__ import annotations

import hashlib
from typing import Protocol

from attest.errors import DigestMismatch
from attest.oci.reference import validate_digest


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hasher_for(digest: str) -> hashlib._Hash:
    """A fresh hash object for the algorithm ``digest`` names."""
    algorithm = validate_digest(digest).split(":", 1)[0]
    return hashlib.new(algorithm)


def digest_hex(digest: str) -> str:
    """The hex part of ``algorithm:hex``."""
    return validate_digest(digest).split(":", 1)[1]


class Readable(Protocol):
    """A byte stream read through: ``read(n)`` (all of it when ``n`` < 0), then ``close()``."""

    def read(self, n: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class VerifyingReader:
    """A read-only stream that checks size and digest when the underlying stream ends.

    Reading past the end raises :class:`DigestMismatch` if the content did not
    match, so a consumer that reads to EOF can never mistake corrupt content for
    good.  ``size`` of ``None`` skips the size check.
    """

    def __init__(self, raw: Readable, digest: str, size: int | None, *, what: str) -> None:
        self._raw = raw
        self._digest = digest
        self._size = size
        self._what = what
        self._hasher = hasher_for(digest)
        self._read = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        if n is None or n < 0:
            chunks = []
            while chunk := self._raw.read(1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
        else:
            data = self._raw.read(n)
        self._read += len(data)
        if self._size is not None and self._read > self._size:
            raise DigestMismatch(
                f"{self._what}: content is longer than its declared size {self._size}"
            )
        self._hasher.update(data)
        if not data or (n is None or n < 0):
            self._finish()
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _finish(self) -> None:
        self._done = True
        if self._size is not None and self._read != self._size:
            raise DigestMismatch(
                f"{self._what}: content is {self._read} bytes, its descriptor says {self._size} (truncated?)"
            )
        actual = f"{self._digest.split(':', 1)[0]}:{self._hasher.hexdigest()}"
        if actual != self._digest:
            raise DigestMismatch(
                f"{self._what}: content hashes to {actual}, expected {self._digest}"
            )

    @property
    def bytes_read(self) -> int:
        return self._read

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
