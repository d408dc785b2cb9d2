"""Reloading the webhook's configuration when its files change, only once they are stable.

:class:`ConfigWatcher` reloads the file (and the policy bundle, keys and roots
it names) when they change, only once they are stable and fully read; an
invalid reload keeps the last good configuration and reports the error.  Files
are read through the paths given, so ConfigMap and Secret volumes work as the
kubelet lays them out (``..data`` symlinks, swapped atomically).  What is built
from each configuration (for the webhook: :class:`~admission.runtime.Runtime`)
is the caller's ``build`` function, so this module knows nothing about it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from admission.config import (
    AdmissionConfig,
    bundle_files,
    config_files,
    default_config,
    load_config,
)
from admission.errors import Unstable
from attest.errors import AttestError

log = logging.getLogger(__name__)
T = TypeVar("T")
Signature = tuple[Any, ...]


def _signature(files: tuple[str, ...], directories: tuple[str, ...]) -> Signature:
    """What changes when any watched file (or a bundle directory's set of files) changes.

    ``os.stat`` follows symlinks, so a file of a ConfigMap or Secret volume (a symlink
    through ``..data``) changes identity (device, inode) when the kubelet swaps ``..data``.
    """
    state: list[Any] = []
    for name in files:
        try:
            info = os.stat(name)
            state.append((name, info.st_mtime_ns, info.st_size, info.st_ino, info.st_dev))
        except OSError:
            state.append((name, None))
    for directory in directories:
        state.append((directory, bundle_files(directory)))
    return tuple(state)


def _watched(config: AdmissionConfig) -> Signature:
    directories = (config.bundle,) if Path(config.bundle).is_dir() else ()
    listing: Signature = ()
    if os.path.isdir(config.path):  # a configuration directory: a new file is a change too
        try:
            listing = (tuple(config_files(config.path)),)
        except OSError:
            listing = (None,)
    return _signature(config.files, directories) + listing


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """A configuration and what was built from it (the compiled policy engine…)."""

    config: AdmissionConfig
    runtime: T
    loaded_at: float


LOAD_ATTEMPTS = 3
DEFAULT_SETTLE_SECONDS = 2.0  # a writer pausing longer than this mid-file is read half-way
ERROR_RETRY_SECONDS = 30.0


class ConfigWatcher(Generic[T]):
    """Keeps the last good configuration, reloading when its files change (checked at most
    every ``interval`` seconds, on access).

    Only a stable, fully loaded set of files is ever put in force:

    * a change is acted on once the watched files have stayed the same for ``settle``
      seconds (default :data:`DEFAULT_SETTLE_SECONDS`; 0 with ``interval=0``, for
      tests), so a writer still writing the file postpones the reload instead of
      having its first half loaded;
    * a load reads the configuration, builds from it, then reads the configuration
      again: if the two readings differ or any watched file changed meanwhile (a
      writer, or the kubelet swapping a ConfigMap's ``..data``), the load is thrown
      away, reported (:attr:`last_error`) and tried again at the next check (at
      start-up, up to :data:`LOAD_ATTEMPTS` times);
    * what is remembered is the state of the files *before* the load, so a change
      that lands during or after it is always seen by the next check.

    A failed reload keeps the last good configuration, sets :attr:`last_error` (shown
    by ``/readyz``) and is retried when the files change, or after
    :data:`ERROR_RETRY_SECONDS` (a Secret with a new key may land after the ConfigMap
    naming it).
    """

    def __init__(
        self,
        path: str | None,
        build: Callable[[AdmissionConfig], T],
        *,
        interval: float = 1.0,
        settle: float | None = None,
    ) -> None:
        self.path = path
        self.build = build
        self.interval = interval
        if settle is None:
            settle = DEFAULT_SETTLE_SECONDS if interval > 0 else 0.0
        self.settle = settle
        self.last_error: str | None = None
        self.reloads = 0
        self._lock = threading.Lock()
        self._checked = 0.0
        self._pending: tuple[Signature, float] | None = None  # (signature, first seen)
        self._retry_at = float("inf")
        if path:
            config, runtime, self._signature = self._load_stable(path)
        else:
            config = default_config()
            runtime, self._signature = build(config), _watched(config)
        self._loaded = Loaded(config, runtime, time.time())

    def _load_once(self, path: str) -> tuple[AdmissionConfig, T, Signature]:
        """Load and build once; :class:`Unstable` if the files moved meanwhile."""
        config = load_config(path)
        before = _watched(config)
        runtime = self.build(config)
        again = load_config(path)
        if again != config or _watched(again) != before:
            raise Unstable(f"admission config {path}: its files changed while it was being loaded")
        return config, runtime, before

    def _load_stable(self, path: str) -> tuple[AdmissionConfig, T, Signature]:
        for attempt in range(LOAD_ATTEMPTS):
            try:
                return self._load_once(path)
            except Unstable:
                if attempt == LOAD_ATTEMPTS - 1:
                    raise
                time.sleep(min(self.settle, 1.0) or 0.01)
        raise AssertionError("unreachable")

    def current(self) -> Loaded[T]:
        """The configuration in force (reloaded first if its files changed)."""
        now = time.monotonic()
        if (
            self.path
            and now - self._checked >= self.interval
            and self._lock.acquire(blocking=False)
        ):
            try:
                self._checked = now
                self._maybe_reload(now)
            finally:
                self._lock.release()
        return self._loaded

    def _maybe_reload(self, now: float) -> None:
        assert self.path is not None
        signature = _watched(self._loaded.config)
        if signature == self._signature and now < self._retry_at:
            self._pending = None
            return
        if signature != self._signature:
            if self._pending is None or self._pending[0] != signature:
                self._pending = (signature, now)  # changed (again): wait until it settles
                if self.settle > 0:
                    return
            if now - self._pending[1] < self.settle:
                return
        try:  # once: a request thread is waiting (an unstable load is retried next check)
            config, runtime, loaded_signature = self._load_once(self.path)
        except Exception as err:  # a bug in building must not take the webhook down either
            message = str(err) if isinstance(err, AttestError) else f"{type(err).__name__}: {err}"
            if self.last_error != message:
                log.error(
                    "admission config reload failed, keeping the last good config: %s", message
                )
            self.last_error = message
            self._retry_at = now + ERROR_RETRY_SECONDS
            if not isinstance(err, Unstable):  # unstable: look again at the next check
                self._signature = signature
            self._pending = None
            return
        self._loaded = Loaded(config, runtime, time.time())
        self._signature = loaded_signature
        self._pending = None
        self._retry_at = float("inf")
        self.last_error = None
        self.reloads += 1
        log.warning(
            "admission config %s reloaded (%d image policies)", self.path, len(config.policies)
        )
