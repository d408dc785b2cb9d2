"""The bearer token guarding the decisions view: read from a file, compared in constant time.

Scripts send ``Authorization: Bearer <token>``.  People sign in once with the
token in a form; the browser then holds a cookie (HttpOnly, Secure,
SameSite=Strict) carrying an HMAC of the token, not the token itself, so
rotating the token (the file is re-read when it changes, as a mounted Secret
is) ends every session.  An unreadable or emptied token file rejects everyone.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from pathlib import Path

from attest.errors import UsageError

COOKIE = "attest_session"
MIN_TOKEN_CHARS = 16
_SESSION_CONTEXT = b"attest-web-session/v1"


def read_token(path: str) -> bytes:
    """The token in ``path`` (surrounding whitespace removed); one-line error when unusable."""
    try:
        token = Path(path).read_bytes().strip()
    except OSError as err:
        raise UsageError(f"--web-token-file {path}: {err.strerror}") from None
    if len(token) < MIN_TOKEN_CHARS:
        raise UsageError(
            f"--web-token-file {path}: the token must have at least {MIN_TOKEN_CHARS} characters"
        )
    if any(byte < 0x21 or byte > 0x7E for byte in token):
        raise UsageError(f"--web-token-file {path}: the token must be printable ASCII, one word")
    return token


class TokenGate:
    """Checks credentials against the token file's current content."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._token: bytes | None = read_token(path)
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def _current(self) -> bytes | None:
        stamp = self._stat()
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._token = read_token(self.path)
                except UsageError:
                    self._token = None  # fail closed until the file is usable again
            return self._token

    def session_value(self) -> str | None:
        """The cookie value for the current token (None when the token is unusable)."""
        token = self._current()
        if token is None:
            return None
        return hmac.new(token, _SESSION_CONTEXT, hashlib.sha256).hexdigest()

    def check_token(self, presented: str) -> bool:
        token = self._current()
        if token is None or not presented:
            return False
        return hmac.compare_digest(presented.strip().encode("utf-8", "replace"), token)

    def check_session(self, cookie: str) -> bool:
        expected = self.session_value()
        if expected is None or not cookie:
            return False
        return hmac.compare_digest(cookie.encode("utf-8", "replace"), expected.encode())

    def allows(self, authorization: str, cookie: str) -> bool:
        """Whether a request with these ``Authorization`` header and cookie values may read."""
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return self.check_token(credentials)
        return self.check_session(cookie)
