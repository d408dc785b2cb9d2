"""Prometheus metrics of the webhook, aggregated over every gunicorn worker.

``attest admission serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory it owns before any metric exists, so each worker writes its values
to memory-mapped files there and ``/metrics`` (served by whichever worker gets
the scrape) adds them up.  Without that variable (tests, ``attest admission
review``) the metrics live in the process's default registry.  Metrics are
created on first use, after the variable is set, never at import.

Labels are bounded, whatever a request or a registry sends: webhook (validate,
mutate), kind (the workload kinds the webhook judges, anything else ``other``),
result (``admission.verdict.RESULTS``), stage, cache outcome, registry HTTP status
(registered status codes, else ``other``), drop reason — never a namespace, name or
image.  A label copied from a request (20,000 invented kinds made ``/metrics`` 6 MB)
would grow the exposition and the multiprocess files without end.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from admission.workloads import POD_SPEC_PATHS

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
STAGES = ("resolve", "verify", "evaluate", "total")
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_NOT_VERIFIED = ("invalid", "unmatched")
POLICY_CACHE_RESULTS = ("hit", "miss", "off")
EXCEPTION_REASONS = (
    "applied",
    "untrusted",
    "expired",
    "namespace",
    "image",
    "not_covered",
    "other_denials",
    "taken",
)


@dataclass(frozen=True)
class AdmissionMetrics:
    """Every metric the webhook exports."""

    requests: Any
    latency: Any
    cache: Any
    registry_requests: Any
    records_written: Any
    records_dropped: Any
    checkpoints: Any
    exceptions: Any
    policy_cache: Any


_created: list[AdmissionMetrics] = []
_create_lock = threading.Lock()


def metrics() -> AdmissionMetrics:
    """The metrics, created once per process (after ``PROMETHEUS_MULTIPROC_DIR`` is set).

    Request threads and the recorder's writer thread may ask at the same moment;
    registering a metric twice would raise, hence the lock.
    """
    if _created:
        return _created[0]
    with _create_lock:
        if not _created:
            _created.append(_create())
        return _created[0]


def _create() -> AdmissionMetrics:
    from prometheus_client import Counter, Histogram

    return AdmissionMetrics(
        requests=Counter(
            "attest_admission_requests_total",
            "AdmissionReviews answered, by webhook, workload kind and result",
            ["webhook", "kind", "result"],
        ),
        latency=Histogram(
            "attest_admission_latency_seconds",
            "Time spent per stage of a decision (resolve, verify, evaluate) and in total",
            ["stage"],
            buckets=LATENCY_BUCKETS,
        ),
        cache=Counter(
            "attest_admission_verification_cache_total",
            "Verification cache lookups per image, by result (hit or miss)",
            ["result"],
        ),
        registry_requests=Counter(
            "attest_registry_requests_total",
            "Registry API answers, by HTTP status code (or unreachable, tls_error)",
            ["status"],
        ),
        records_written=Counter(
            "attest_decision_records_written_total",
            "Decision records written to the decision database",
        ),
        records_dropped=Counter(
            "attest_decision_records_dropped_total",
            "Decision records dropped (queue full, database unavailable or full, "
            "unusable decision)",
            ["reason"],
        ),
        checkpoints=Counter(
            "attest_decision_checkpoints_total",
            "Signed checkpoints of decision chain heads (none while records are written "
            "means the newest records are not covered by a signature)",
        ),
        exceptions=Counter(
            "attest_admission_exceptions_total",
            "Signed break-glass exceptions that concerned a denied request: applied (the "
            "request was admitted) or rejected, by reason",
            ["outcome", "reason"],
        ),
        policy_cache=Counter(
            "attest_admission_policy_cache_total",
            "Policy evaluations by result: hit (answer from the policy result cache), miss "
            "(evaluated and cached), off (evaluated; cache disabled or bundle not cacheable)",
            ["result"],
        ),
    )


OTHER = "other"
_WEBHOOKS = ("validate", "mutate")
_REGISTRY_STATUSES = frozenset({"unreachable", "tls_error"} | {str(s.value) for s in HTTPStatus})


def kind_label(kind: str) -> str:
    """The ``kind`` label: a workload kind the webhook judges, else ``other``."""
    return kind if kind in POD_SPEC_PATHS else OTHER


def observe_decision(decision: Any, webhook: str = "validate") -> None:
    """Count one answered decision: result by kind, stage latencies, cache hits and misses."""
    from admission.verdict import RESULTS

    current = metrics()
    current.requests.labels(
        webhook=webhook if webhook in _WEBHOOKS else OTHER,
        kind=kind_label(decision.kind),
        result=decision.result if decision.result in RESULTS else OTHER,
    ).inc()
    latency = decision.latency or {}
    for stage in STAGES:
        value = latency.get(stage)
        if isinstance(value, int | float):
            current.latency.labels(stage=stage).observe(value / 1000.0)
    for image in decision.images:
        if image.policy is None or image.outcome in _NOT_VERIFIED:
            continue
        current.cache.labels(result="hit" if image.cached else "miss").inc()
    policy_cache = getattr(decision, "policy_cache", "")
    if policy_cache in POLICY_CACHE_RESULTS:
        current.policy_cache.labels(result=policy_cache).inc()
    for record in getattr(decision, "exceptions", ()):
        category = record.get("category")
        current.exceptions.labels(
            outcome="applied" if record.get("applied") else "rejected",
            reason=category if category in EXCEPTION_REASONS else OTHER,
        ).inc()


def observe_registry_status(status: str) -> None:
    """Count one registry answer (``attest.oci.transport.observe_responses`` callback); a
    hostile registry can answer any three digits, so unregistered codes count as ``other``."""
    metrics().registry_requests.labels(
        status=status if status in _REGISTRY_STATUSES else OTHER
    ).inc()


def multiprocess_directory() -> str | None:
    return os.environ.get(MULTIPROC_VARIABLE) or None


def render() -> tuple[bytes, str]:
    """The text exposition of every metric (all workers' when in multiprocess mode)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    metrics()  # exist (at zero) even before the first request
    if multiprocess_directory():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def prepare_multiprocess(directory: str) -> None:
    """Switch this process to multiprocess metrics in ``directory`` (before any metric exists).

    ``prometheus_client`` picks its value storage when it is first imported; if
    something imported it earlier in this process, the choice is made again.
    """
    os.environ[MULTIPROC_VARIABLE] = directory
    if "prometheus_client.values" in sys.modules:
        from prometheus_client import values

        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def worker_exited(pid: int) -> None:
    """Tell the multiprocess collector a worker is gone (gunicorn ``child_exit``)."""
    if multiprocess_directory():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def label_values(family: str, text: str) -> Iterable[tuple[dict[str, str], float]]:
    """Samples of ``family`` in an exposition ``text`` (for tests and the benchmark)."""
    from prometheus_client.parser import text_string_to_metric_families

    for parsed in text_string_to_metric_families(text):
        for sample in parsed.samples:
            if sample.name == family:
                yield dict(sample.labels), sample.value
