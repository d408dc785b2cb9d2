"""Serve the webhook with gunicorn over TLS: threaded workers, each building its own Admission.

The application is created in each worker after the fork (no preloading), so
every worker compiles the policy bundle itself and keeps its own regopy
interpreters, threads and registry connections.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from admission.app import create_app
from admission.config import load_config
from admission.decide import build_runtime
from attest.errors import UsageError


class _Gunicorn(BaseApplication):
    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._factory()


def serve(
    config_path: str,
    *,
    tls_cert: str,
    tls_key: str,
    bind: str = "0.0.0.0:8443",
    workers: int = 2,
    threads: int = 8,
    log_level: str = "info",
) -> None:
    """Run gunicorn until stopped; configuration and policy bundle are checked first, so a
    mistake is one line here instead of workers failing to boot."""
    runtime = build_runtime(load_config(config_path))
    runtime.engine.close()
    runtime.registries.close()
    for label, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as err:
            raise UsageError(f"{label} {path}: {err.strerror}") from None

    def factory() -> Flask:
        logging.basicConfig(
            level=log_level.upper(),
            format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
        )
        return create_app(config_path)

    options = {
        "bind": [bind],
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "certfile": tls_cert,
        "keyfile": tls_key,
        "timeout": 60,
        "graceful_timeout": 10,
        "keepalive": 30,
        "loglevel": log_level,
        "errorlog": "-",
        "accesslog": None,
        "preload_app": False,
        "proc_name": "attest-admission",
    }
    _Gunicorn(factory, options).run()
