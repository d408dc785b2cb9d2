"""Serve the webhook with gunicorn over TLS: threaded workers, each with its own Admission.

gunicorn listens on up to three ports: the webhook port (``--bind``:
``/validate``, ``/mutate``, ``/healthz``, ``/readyz``), the ops port
(``--web-port``: ``/metrics`` and the AppSec decisions view) and the probe port
(``--probe-port``: ``GET /healthz`` and ``/readyz`` only).  Each worker serves
them through a dispatcher that picks the application by the port of the
listening socket (``SERVER_PORT`` comes from the socket, not from the client's
Host header), so no decisions page can ever be reached on the webhook port and
nothing but the probes on the probe port.  TLS, the client-certificate
requirement of the webhook port, request read limits and the probes' own
threads are the worker's (:mod:`admission.worker`).

The applications are created in each worker after the fork (no preloading), so
every worker compiles the policy bundle itself, keeps its own regopy
interpreters and registry connections, and starts its own decision recorder —
a lower-priority child process with its own hash chain (see
:mod:`admission.decisions.process`) — which it closes (flushing it and signing
the head) when it exits.
Metrics use prometheus-client's multiprocess mode in a temporary directory
this function owns, so ``/metrics`` adds up every worker.
"""

from __future__ import annotations

import logging
import logging.config
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gunicorn.app.base import BaseApplication

from admission.errors import DecisionStoreError
from admission.jsonlog import LogFormat, LogLevel
from attest.errors import UsageError

log = logging.getLogger(__name__)
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Gunicorn(BaseApplication):
    def __init__(self, factory: Callable[[], WSGIApp], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25.1
            self.cfg.set("control_socket_disable", True)  # no management socket in $HOME

    # gunicorn's stubs type environ as any MutableMapping, Flask's as the dict gunicorn passes
    def load(self) -> WSGIApp:  # type: ignore[override]
        return self._factory()


class PortDispatcher:
    """A WSGI application handing each request to the application bound to its listening port.

    It also puts the request's caller — the verified client certificate subject, from
    the worker — into ``environ["attest.caller"]`` (empty without one), and marks the
    request as HTTPS (the worker, not gunicorn, does TLS)."""

    def __init__(self, apps: dict[int, WSGIApp]) -> None:
        self.apps = {str(port): app for port, app in apps.items()}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        from admission.worker import current_caller

        environ["wsgi.url_scheme"] = "https"
        environ["attest.caller"] = current_caller() or ""
        app = self.apps.get(str(environ.get("SERVER_PORT", "")))
        if app is None:
            return _not_found(start_response, b"no application on this port\n")
        return app(environ, start_response)


def probes_only(app: WSGIApp) -> WSGIApp:
    """``app`` for ``GET /healthz`` and ``GET /readyz``; 404 for anything else (the probe port
    needs no client certificate, so it must not reach ``/validate``)."""

    def probes(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD") and environ.get("PATH_INFO") in (
            "/healthz",
            "/readyz",
        ):
            return app(environ, start_response)
        return _not_found(start_response, b"the probe port serves GET /healthz and /readyz\n")

    return probes


def _not_found(start_response: Callable[..., Any], text: bytes) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [text]


@dataclass
class _Worker:
    """What one worker process must close when it exits."""

    admission: Any
    recorder: Any
    ops_database: Any

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
        self.admission.close()
        self.ops_database.close()


_worker: _Worker | None = None


def _worker_exit(_server: Any, _worker_process: Any) -> None:
    global _worker
    if _worker is not None:
        try:
            _worker.close()
        finally:
            _worker = None


def _child_exit(_server: Any, worker_process: Any) -> None:
    from admission.metrics import worker_exited

    worker_exited(worker_process.pid)


def split_bind(bind: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) → host and a non-zero port; one-line error otherwise."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--bind {bind!r}: expected HOST:PORT with a port from 1 to 65535")
    return host, int(port)


def _check_database(db: str | None) -> tuple[str, str | None]:
    """The decision database target and, when it cannot be opened yet, why.

    A malformed target is an error here; an SQLite file that cannot be opened
    (its directory missing) is not: admission must keep answering, so the
    recorder starts degraded and keeps trying.
    """
    from admission.decisions.store import DecisionDatabase, resolve_target

    target = resolve_target(db)
    try:
        DecisionDatabase(target, create=True).close()
    except DecisionStoreError as err:
        return target, str(err)
    return target, None


def _listeners(
    tls_cert: str,
    tls_key: str,
    client_ca: str | None,
    **limits: Any,
) -> Any:
    """The workers' TLS and read-limit settings, the TLS files checked (one line if not)."""
    import ssl

    from admission.app import MAX_BODY_BYTES
    from admission.worker import Listeners, server_context

    for label, path in (
        ("--tls-cert", tls_cert),
        ("--tls-key", tls_key),
        ("--client-ca", client_ca),
    ):
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as err:
            raise UsageError(f"{label} {path}: {err.strerror}") from None
    settings = Listeners(
        tls_cert=tls_cert,
        tls_key=tls_key,
        client_ca=client_ca,
        max_body_bytes=MAX_BODY_BYTES,
        **limits,
    )
    try:
        server_context(settings, client_certificates=False)
    except ssl.SSLError as err:
        raise UsageError(
            f"--tls-cert {tls_cert}, --tls-key {tls_key}: not a usable certificate and key "
            f"({err.reason or err})"
        ) from None
    if client_ca:
        try:
            server_context(settings, client_certificates=True)
        except ssl.SSLError as err:
            raise UsageError(
                f"--client-ca {client_ca}: not a usable CA certificate ({err.reason or err})"
            ) from None
    return settings


def serve(
    config_path: str,
    *,
    tls_cert: str,
    tls_key: str,
    bind: str = "0.0.0.0:8443",
    web_port: int = 0,
    web_token_file: str | None = None,
    db: str | None = None,
    record: bool = True,
    signing_key: str | None = None,
    client_ca: str | None = None,
    probe_port: int = 0,
    read_header_timeout: float = 5.0,
    read_timeout: float = 10.0,
    workers: int = 2,
    threads: int = 8,
    log_level: LogLevel = "info",
    log_format: LogFormat = "json",
    checkpoint_seconds: float | None = None,
    checkpoint_records: int | None = None,
) -> None:
    """Run gunicorn until stopped.  Configuration, policy bundle, TLS files, web token and
    signing key are checked first, so a mistake is one line here instead of workers failing
    to boot.  ``web_port=0`` turns the ops port (metrics and decisions view) off,
    ``probe_port=0`` the probe port."""
    host, webhook_port = split_bind(bind)
    for flag, port in (("--web-port", web_port), ("--probe-port", probe_port)):
        if not 0 <= port < 65536:
            raise UsageError(f"{flag} {port}: expected 1 to 65535 (0 turns it off)")
        if port and port == webhook_port:
            raise UsageError(f"{flag} {port} must differ from the webhook port")
    if probe_port and probe_port == web_port:
        raise UsageError(f"--probe-port {probe_port} must differ from --web-port")
    if read_timeout < read_header_timeout:
        raise UsageError("--read-timeout must not be shorter than --read-header-timeout")
    from admission.config import load_config
    from admission.runtime import build_runtime

    build_runtime(load_config(config_path)).close()
    listeners = _listeners(
        tls_cert,
        tls_key,
        client_ca,
        webhook_port=webhook_port,
        probe_port=probe_port,
        read_header_timeout=read_header_timeout,
        read_timeout=read_timeout,
    )
    if web_token_file:
        from admission.web.auth import read_token

        read_token(web_token_file)
    if signing_key:
        if not record:
            raise UsageError(
                "--signing-key signs decision records; it makes no sense with --no-record"
            )
        from admission.decisions.chain import load_head_signer

        load_head_signer(signing_key)  # a bad key or password is one line here, not in workers
    target, problem = _check_database(db) if record or web_token_file else (None, None)

    from admission.jsonlog import logging_config

    logging.config.dictConfig(logging_config(log_level, log_format))
    if problem and record:
        log.error(
            "ALERT decision records will be dropped until this is fixed: %s",
            problem,
            extra={"event": "decision_records_unavailable", "reason": "database"},
        )
    metrics_dir = tempfile.mkdtemp(prefix="attest-metrics-")
    from admission.metrics import prepare_multiprocess

    prepare_multiprocess(metrics_dir)

    def factory() -> WSGIApp:
        global _worker
        from admission.app import create_app
        from admission.decide import Admission
        from admission.metrics import observe_registry_status
        from admission.web.app import create_ops_app
        from attest.oci.transport import observe_responses

        observe_responses(observe_registry_status)
        recorder = None
        if record:
            from admission.decisions.process import RecorderProcess
            from admission.decisions.recorder import (
                DEFAULT_CHECKPOINT_RECORDS,
                DEFAULT_CHECKPOINT_SECONDS,
            )

            recorder = RecorderProcess(
                target,
                signing_key=signing_key,
                checkpoint_seconds=checkpoint_seconds or DEFAULT_CHECKPOINT_SECONDS,
                checkpoint_records=checkpoint_records or DEFAULT_CHECKPOINT_RECORDS,
                log_level=log_level,
                log_format=log_format,
            ).start()
        admission = Admission(config_path)
        webhook_app = create_app(admission=admission, recorder=recorder)
        apps: dict[int, WSGIApp] = {webhook_port: webhook_app}
        ops_app = create_ops_app(
            target, web_token_file, exceptions=lambda: admission.config.exceptions
        )
        if web_port:
            apps[web_port] = ops_app
        if probe_port:
            apps[probe_port] = probes_only(webhook_app)
        _worker = _Worker(admission, recorder, ops_app.extensions["attest_decisions_db"])
        return PortDispatcher(apps)

    binds = [bind] + [f"{host}:{port}" for port in (web_port, probe_port) if port]
    from admission import worker

    worker.SETTINGS = listeners  # the workers fork from this process with it
    options = {
        "bind": binds,
        "workers": workers,
        "threads": threads,
        "worker_class": "admission.worker.AdmissionWorker",  # TLS, read limits, probe threads
        "timeout": 60,
        "graceful_timeout": 10,
        "keepalive": 30,
        "loglevel": log_level,
        "logconfig_dict": logging_config(log_level, log_format),
        "accesslog": None,
        "preload_app": False,
        "proc_name": "attest-admission",
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
    }
    arbiter_pid = os.getpid()
    try:
        _Gunicorn(factory, options).run()
    finally:
        # a worker's exit unwinds through here too (gunicorn forks without exec):
        # only the arbiter removes the directory the other workers still write to
        if os.getpid() == arbiter_pid:
            shutil.rmtree(metrics_dir, ignore_errors=True)
