"""The webhook application: ``POST /validate``, ``POST /mutate``, ``GET /healthz``, ``GET /readyz``.

Every answer is JSON with a reason: a malformed AdmissionReview gets HTTP 400
(or, when its ``uid`` was readable, a denial with code 400 the API server can
show); an oversized body 413; an unexpected failure while deciding is a
denial naming the error, never an admission and never a bare 500.

Each decision is counted in the metrics, written as one JSON log line and, for
``/validate`` only, handed to the decision recorder (the route passes it to
:meth:`~admission.decide.Admission.decide`).  ``/mutate`` pins verified tags to
digests when the configuration enables it (see :mod:`admission.mutate`); it
never denies, and its decisions are not recorded: the validating webhook judges
the pinned object and that decision is the record.  ``/readyz`` reports the
recorder's state and says ``degraded`` when records are being dropped, still
with HTTP 200: taking every replica out of the Service over a database outage
would block all deploys (``failurePolicy: Fail``).  Metrics and the AppSec
view are served on the separate ops port (:mod:`admission.web`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from admission import jsonlog, metrics
from admission.decide import Admission, Verifier
from admission.errors import ReviewError
from admission.mutate import encode_patch, pin_patch
from admission.review import API_VERSIONS, AdmissionRequest, parse_review, review_response
from admission.verdict import Decision

if TYPE_CHECKING:
    from admission.decisions.process import RecorderProcess
    from admission.decisions.recorder import DecisionRecorder

    StatusRecorder = DecisionRecorder | RecorderProcess

Webhook = Literal["validate", "mutate"]
log = logging.getLogger(__name__)
decision_log = logging.getLogger("attest.admission")

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


def _mutation(decision: Decision | None, review: AdmissionRequest) -> dict[str, Any]:
    """Admit, with a JSONPatch pinning verified tags when there is one (never a denial)."""
    answer = review_response(review.uid, True, api_version=review.api_version)
    operations = pin_patch(review.kind.kind, review.object or {}, decision) if decision else []
    if operations:
        answer["response"]["patchType"] = "JSONPatch"
        answer["response"]["patch"] = encode_patch(operations)
    return answer


def _observe(decision: Decision, webhook: Webhook) -> None:
    """Metrics and the decision's log line; never lets a failure reach the answer."""
    try:
        metrics.observe_decision(decision, webhook)
        jsonlog.log_decision(decision_log, decision, webhook)
    except Exception:
        log.exception("observing decision %s failed", decision.uid)


def create_app(
    config_path: str | None = None,
    *,
    admission: Admission | None = None,
    verifier: Verifier | None = None,
    recorder: StatusRecorder | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Flask:
    """The webhook application for ``config_path`` (or an already built :class:`Admission`).

    With ``recorder``, every ``/validate`` decision is recorded and ``/readyz``
    reports the recorder's state.
    """
    service = admission or Admission(config_path, verifier=verifier)
    app = Flask("attest-admission")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["attest_admission"] = service
    app.extensions["attest_recorder"] = recorder

    def review_endpoint(webhook: Webhook) -> Any:
        body = _read_body(max_body_bytes)
        if body is None:
            return _bad_request(f"request body is larger than {max_body_bytes} bytes", 413)
        try:
            review = parse_review(body)
        except ReviewError as err:
            if err.uid:
                answer = review_response(
                    err.uid,
                    webhook == "mutate",
                    message=f"bad AdmissionReview: {err}",
                    code=400,
                    api_version=err.api_version or API_VERSIONS[0],
                )
                return jsonify(answer)
            return _bad_request(f"bad AdmissionReview: {err}", 400)
        if webhook == "mutate" and not service.config.pin_digests:
            return jsonify(_mutation(None, review))
        try:
            decision = service.decide(
                review,
                caller=request.environ.get("attest.caller", ""),
                recorder=recorder if webhook == "validate" else None,
            )
        except Exception as err:  # fail closed with the reason, keep the worker alive
            log.exception("admission %s: deciding failed", review.uid)
            if webhook == "mutate":
                return jsonify(_mutation(None, review))
            answer = review_response(
                review.uid,
                False,
                message=f"internal error while deciding: {type(err).__name__}: {err}",
                code=500,
                api_version=review.api_version,
            )
            return jsonify(answer)
        _observe(decision, webhook)
        if webhook == "mutate":
            return jsonify(_mutation(decision, review))
        return jsonify(_answer(decision, review.api_version))

    @app.post("/validate")
    def validate() -> Any:
        return review_endpoint("validate")

    @app.post("/mutate")
    def mutate() -> Any:
        return review_endpoint("mutate")

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Any:
        watcher = service.watcher
        loaded = watcher.current()
        records: dict[str, Any] = {"state": "disabled"}
        status = "ready"
        if recorder is not None:
            recorder_status = recorder.status()
            records = recorder_status.to_dict()
            if not recorder_status.healthy:
                status = "degraded"
        return jsonify(
            {
                "status": status,
                "config": loaded.config.path,
                "imagePolicies": [p.name for p in loaded.config.policies],
                "bundleHash": loaded.runtime.engine.bundle_hash,
                "engine": loaded.runtime.engine.name,
                "trustFingerprint": loaded.config.trust_fingerprint,
                "pinDigests": loaded.config.pin_digests,
                "reloads": watcher.reloads,
                "configError": watcher.last_error,
                "decisionRecords": records,
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
