"""The Flask application: routes only (``POST /validate``, ``GET /healthz``, ``GET /readyz``).

Every answer is JSON with a reason: a malformed AdmissionReview gets HTTP 400
(or, when its ``uid`` was readable, a denial with code 400 the API server can
show); an oversized body 413; an unexpected failure while deciding is a
denial naming the error, never an admission and never a bare 500.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from admission.decide import Admission, Decision, DecisionListener, Verifier
from admission.review import API_VERSIONS, ReviewError, parse_review, review_response

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 3 * 1024 * 1024 + 64 * 1024  # the API server's own request limit is 3 MiB
DRAIN_BYTES = (
    16 * 1024 * 1024
)  # read (and drop) this much of an oversized body so the client gets its 413


def _read_body(max_bytes: int) -> bytes | None:
    """The request body, or ``None`` when it is larger than ``max_bytes`` (drained, bounded)."""
    stream = request.environ["wsgi.input"]
    length = request.content_length
    if length is not None and length > max_bytes:
        remaining = min(length, DRAIN_BYTES)
        while remaining > 0:
            chunk = stream.read(min(65536, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
        return None
    body = stream.read(max_bytes + 1) if length is None else stream.read(length)
    return None if len(body) > max_bytes else body


def _answer(decision: Decision, api_version: str) -> dict[str, Any]:
    return review_response(
        decision.uid,
        decision.allowed,
        message=decision.message,
        code=None if decision.allowed else decision.code,
        warnings=decision.warnings,
        api_version=api_version,
    )


def create_app(
    config_path: str | None = None,
    *,
    admission: Admission | None = None,
    verifier: Verifier | None = None,
    listeners: list[DecisionListener] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Flask:
    """The webhook application for ``config_path`` (or an already built :class:`Admission`)."""
    service = admission or Admission(config_path, verifier=verifier, listeners=listeners)
    app = Flask("attest-admission")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["attest_admission"] = service

    @app.post("/validate")
    def validate() -> Any:
        body = _read_body(max_body_bytes)
        if body is None:
            return _bad_request(f"request body is larger than {max_body_bytes} bytes", 413)
        try:
            review = parse_review(body)
        except ReviewError as err:
            if err.uid:
                answer = review_response(
                    err.uid,
                    False,
                    message=f"bad AdmissionReview: {err}",
                    code=400,
                    api_version=err.api_version or API_VERSIONS[0],
                )
                return jsonify(answer)
            return _bad_request(f"bad AdmissionReview: {err}", 400)
        try:
            decision = service.decide(review)
        except Exception as err:  # fail closed with the reason, keep the worker alive
            log.exception("admission %s: deciding failed", review.uid)
            answer = review_response(
                review.uid,
                False,
                message=f"internal error while deciding: {type(err).__name__}: {err}",
                code=500,
                api_version=review.api_version,
            )
            return jsonify(answer)
        log.info(
            "admission %s %s %s %s/%s: %s%s",
            decision.uid,
            decision.operation,
            decision.kind,
            decision.namespace,
            decision.name,
            decision.result,
            f": {decision.message}" if decision.messages else "",
        )
        return jsonify(_answer(decision, review.api_version))

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Any:
        watcher = service.watcher
        loaded = watcher.current()
        return jsonify(
            {
                "status": "ready",
                "config": loaded.config.path,
                "imagePolicies": [p.name for p in loaded.config.policies],
                "bundleHash": loaded.runtime.engine.bundle_hash,
                "engine": loaded.runtime.engine.name,
                "trustFingerprint": loaded.config.trust_fingerprint,
                "reloads": watcher.reloads,
                "configError": watcher.last_error,
            }
        )

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Any:
        if isinstance(err, RequestEntityTooLarge):
            return _bad_request(f"request body is larger than {max_body_bytes} bytes", 413)
        return _bad_request(f"{err.code} {err.name}: {err.description}", err.code or 500)

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> Any:
        log.exception("unexpected error")
        return _bad_request(f"internal error: {type(err).__name__}: {err}", 500)

    return app


def _bad_request(message: str, status: int) -> Any:
    body = {
        "apiVersion": API_VERSIONS[0],
        "kind": "AdmissionReview",
        "response": {
            "uid": "",
            "allowed": False,
            "status": {"code": status, "message": message},
        },
        "error": message,
    }
    return jsonify(body), status
