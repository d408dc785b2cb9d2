"""Scan progress on stderr (layers and bytes read), only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import IO


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


class Progress:
    """A single, redrawn status line; silent unless enabled."""

    def __init__(self, stream: IO[str] | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = (
            bool(getattr(self.stream, "isatty", lambda: False)()) if enabled is None else enabled
        )
        self._last = 0.0
        self._label = ""
        self._total = 0

    def layer(self, index: int, count: int, digest: str, size: int) -> None:
        self._label = f"layer {index + 1}/{count} {digest[:19]}"
        self._total = size
        self._draw(0, force=True)

    def advance(self, done: int) -> None:
        if self.enabled and time.monotonic() - self._last >= 0.1:
            self._draw(done)

    def _draw(self, done: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        self._last = time.monotonic()
        self.stream.write(f"\r\x1b[Kattest: sbom: {self._label} {_mib(done)}/{_mib(self._total)}")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
