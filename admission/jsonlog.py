"""Structured logs: one JSON object per line, with secrets scrubbed from every string.

``JsonFormatter`` writes ``time``, ``level``, ``logger`` and ``message`` plus the
structured ``extra`` fields the webhook sets (``event``, ``reason``,
``dropped`` from the decision recorder; the fields of a decision line).
:func:`decision_fields` is the one line per admission decision: request uid,
operation, kind, namespace/name, user, images with their digests, result,
messages, warnings and the latency split.  It is built from chosen fields only
(never the policy input, signatures or registry credentials), and every string
still goes through :func:`redact`, which removes bearer/basic credentials,
``password=``/``token=`` style values, JWTs and URL passwords.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import Any, Literal, get_args

EXTRA_FIELDS = ("event", "reason", "dropped", "webhook")
DECISION_EVENT = "admission_decision"
_CORE = {"time", "level", "logger", "message"}
_REDACTED = "[REDACTED]"
_PATTERNS = (
    # Authorization header values
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}"), rf"\1\2{_REDACTED}"),
    # key=value / "key": "value" for secret-looking keys
    (
        re.compile(
            r"(?i)(\"?\b(?:password|passwd|secret|token|access_token|refresh_token|"
            r"identitytoken|identity_token|registrytoken|auth|authorization)\"?\s*[:=]\s*\"?)"
            r"[^\s\",;&}]+"
        ),
        rf"\1{_REDACTED}",
    ),
    # JSON Web Tokens (registry bearer tokens, OIDC identity tokens)
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), _REDACTED),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/@\s:]+):[^/@\s]+@"), rf"\1:{_REDACTED}@"),
)


def redact(text: str) -> str:
    """``text`` with credentials replaced by ``[REDACTED]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra={"fields": {...}}`` adds top-level fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in EXTRA_FIELDS:
            if key in record.__dict__:
                entry[key] = _scrub(record.__dict__[key])
        fields = record.__dict__.get("fields")
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in _CORE:
                    entry[key] = _scrub(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        entry["pid"] = record.process
        return json.dumps(entry, separators=(",", ":"), ensure_ascii=False, default=str)


class RedactingFormatter(logging.Formatter):
    """The plain-text format, with the same scrubbing (``--log-format text``)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


LogFormat = Literal["json", "text"]  # json: one object per line; text: for people
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


def decision_fields(decision: Any, webhook: str) -> dict[str, Any]:
    """The structured fields of one decision's log line."""
    return {
        "event": DECISION_EVENT,
        "webhook": webhook,
        "uid": decision.uid,
        "operation": decision.operation,
        "kind": decision.kind,
        "namespace": decision.namespace,
        "name": decision.name,
        "user": decision.user,
        "caller": decision.caller,
        "result": decision.result,
        "allowed": decision.allowed,
        "dryRun": decision.dry_run,
        "images": [
            {
                "reference": image.reference,
                "digest": image.digest,
                "policy": image.policy,
                "outcome": image.outcome,
                "cached": image.cached,
            }
            for image in decision.images
        ],
        "messages": list(decision.messages),
        "warnings": list(decision.warnings),
        "codes": sorted(set(decision.codes.values())),  # of the messages and warnings
        "latencyMs": dict(decision.latency),
        **_exceptions(getattr(decision, "exceptions", ())),
    }


def _exceptions(records: Any) -> dict[str, Any]:
    """The exceptions that concerned the decision (admission.exceptions), briefly."""
    keys = ("id", "applied", "category", "signer", "ticket", "image")
    return {"exceptions": [{k: r.get(k) for k in keys} for r in records]} if records else {}


def log_decision(logger: logging.Logger, decision: Any, webhook: str = "validate") -> None:
    """Write the decision's one JSON line (a readable message for the text format)."""
    where = f"{decision.namespace}/{decision.name}" if decision.namespace else decision.name
    logger.info(
        "admission %s %s %s %s: %s%s",
        decision.uid,
        decision.operation,
        decision.kind,
        where,
        decision.result,
        f": {decision.message}" if decision.messages else "",
        extra={"fields": decision_fields(decision, webhook)},
    )


def logging_config(level: LogLevel, log_format: LogFormat) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server: every logger (gunicorn's too) to stderr."""
    formatter = (
        {"()": f"{__name__}.JsonFormatter"}
        if log_format == "json"
        else {"()": f"{__name__}.RedactingFormatter", "format": TEXT_FORMAT}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "attest",
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"attest": formatter},
        "handlers": {"stderr": handler},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
        },
    }
