"""The admission flow: images → resolve → verify (parallel, one deadline) → policy input → Rego → decision.

:class:`Admission` holds what outlives a request (the configuration watcher
and the :class:`~admission.runtime.Runtime` built from each configuration, the
verification cache, the thread pool) and turns one
:class:`~admission.review.AdmissionRequest` into a
:class:`~admission.verdict.Decision`, judged by :func:`~admission.verdict.judge`.

Fail-closed rules, whatever the Rego policy says: an invalid image reference,
an image no policy matches (unless ``unmatchedImages: allow``), a registry
error and a verification that ran out of time each deny in ``enforce`` mode
(in ``warn`` mode they become warnings); a policy that fails to evaluate
denies.  Rego ``deny`` findings are attributed to the images they name (their
``image`` field): one about only images of ``warn``-mode policies becomes a
warning, and on UPDATE one about an image that the update did not change says
so (:func:`~admission.verdict.judge`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import copy
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from admission.bounds import MAX_REFERENCE_CHARS, bounded_text, bounded_verification
from admission.cache import CacheKey, VerificationCache
from admission.cip import ResourceInfo, resource_info, verify_with_policies
from admission.config import AdmissionConfig
from admission.errors import BadAdmissionReview
from admission.exceptions.apply import apply_exceptions, image_facts
from admission.policy_input import ImageCheck, build_input, provenance_problem
from admission.review import AdmissionRequest
from admission.runtime import Runtime, build_runtime
from admission.slots import RegistrySlots
from admission.verdict import Decision, ImageDecision, Recorder, image_outcome, judge
from admission.watcher import ConfigWatcher
from admission.workloads import ContainerImage, is_workload, workload_images
from attest.deadline import Deadline
from attest.errors import AttestError, DeadlineExceeded, PolicyError
from attest.oci.reference import parse_image_reference
from attest.policy import Finding
from attest.verify import ImageVerification

log = logging.getLogger(__name__)

Verifier = Callable[..., ImageVerification]


class _Lanes:
    """The results of one request's lanes; closed at its deadline, after which they are dropped."""

    def __init__(self, checks: list[ImageCheck]) -> None:
        self.checks = checks
        self._results: dict[int, ImageCheck] = {}
        self._closed = False
        self._lock = threading.Lock()

    def next(self, queue: collections.deque[int], deadline: Deadline) -> int | None:
        """The next image to verify, or ``None`` when there is none or no time is left."""
        with self._lock:
            if self._closed or not queue or deadline.expired:
                return None
            return queue.popleft()

    def put(self, index: int, result: ImageCheck) -> None:
        with self._lock:
            if not self._closed:
                self._results[index] = result

    def close(self) -> dict[int, ImageCheck]:
        """Stop taking results; the ones that came in time."""
        with self._lock:
            self._closed = True
            return dict(self._results)


def _tag_key(check: ImageCheck) -> str:
    """The tag cache key of an image named by tag (or by nothing: ``latest``)."""
    return f"{check.name}:{check.tag}"


def _cache_key(check: ImageCheck) -> CacheKey:
    """The verification cache key of a matched image whose digest is known."""
    assert check.parsed is not None and check.policy is not None and check.digest
    return (check.parsed.name, check.digest, check.policy.fingerprint)


def _distinct(containers: list[ContainerImage]) -> dict[str, list[ContainerImage]]:
    grouped: dict[str, list[ContainerImage]] = {}
    for container in containers:
        grouped.setdefault(container.image, []).append(container)
    return grouped


class Admission:
    """The webhook's decision service; thread-safe, one per process."""

    def __init__(
        self,
        config_path: str | None = None,
        *,
        verifier: Verifier | None = None,
        max_workers: int = 16,
        reload_interval: float = 1.0,
    ) -> None:
        if verifier is None:
            from attest.verify import verify_image

            verifier = verify_image
        self.verifier: Verifier = verifier
        self.watcher: ConfigWatcher[Runtime] = ConfigWatcher(
            config_path, build_runtime, interval=reload_interval
        )
        config = self.watcher.current().config
        self.cache = VerificationCache(config.cache_max_entries, config.cache_ttl_seconds)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="attest-verify"
        )
        self.slots = RegistrySlots(config.max_concurrent_per_registry)

    @property
    def config(self) -> AdmissionConfig:
        return self.watcher.current().config

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.watcher.current().runtime.close()

    # -- the flow ------------------------------------------------------------------

    def decide(
        self, request: AdmissionRequest, *, caller: str = "", recorder: Recorder | None = None
    ) -> Decision:
        """Judge one request and hand the decision to ``recorder``; never raises: an internal
        error while deciding is a denial (result ``error``, code 500), recorded too.
        ``caller`` is who sent it (the verified client certificate subject), recorded with
        the decision."""
        try:
            decision = self._decide(request, caller)
        except Exception as err:
            log.exception("admission %s: deciding failed", request.uid)
            decision = self._failed(request, caller, err)
        if recorder is not None:
            try:
                recorder.record(decision)
            except Exception:  # a recorder must never change or break the answer
                log.exception("recording decision %s failed", decision.uid)
        return decision

    def _failed(self, request: AdmissionRequest, caller: str, err: Exception) -> Decision:
        """The denial for a request whose decision crashed (with what can still be said)."""
        bundle_hash = trust_fingerprint = engine = ""
        try:
            loaded = self.watcher.current()
            bundle_hash = loaded.runtime.engine.bundle_hash
            trust_fingerprint = loaded.config.trust_fingerprint
            engine = loaded.runtime.engine.name
        except Exception:
            pass
        return Decision(
            uid=request.uid,
            time=time.time(),
            operation=request.operation,
            kind=request.kind.kind,
            namespace=request.namespace,
            name=request.name,
            user=request.username,
            caller=caller,
            result="error",
            messages=(f"internal error while deciding: {type(err).__name__}: {err}",),
            code=500,
            dry_run=request.dry_run,
            bundle_hash=bundle_hash,
            trust_fingerprint=trust_fingerprint,
            engine=engine,
        )

    def _decide(self, request: AdmissionRequest, caller: str) -> Decision:
        started = time.monotonic()
        now = dt.datetime.now(dt.UTC)
        loaded = self.watcher.current()
        config, runtime = loaded.config, loaded.runtime
        self.cache.max_entries = config.cache_max_entries
        self.cache.ttl_seconds = config.cache_ttl_seconds
        base: dict[str, Any] = {
            "uid": request.uid,
            "time": now.timestamp(),
            "operation": request.operation,
            "kind": request.kind.kind,
            "namespace": request.namespace,
            "name": request.name,
            "user": request.username,
            "bundle_hash": runtime.engine.bundle_hash,
            "trust_fingerprint": config.trust_fingerprint,
            "engine": runtime.engine.name,
            "dry_run": request.dry_run,
            "caller": caller,
        }
        skip = self._not_checked(request, config)
        if skip:
            log.info(
                "admission %s %s %s/%s allowed: %s",
                request.uid,
                request.kind.kind,
                request.namespace,
                request.name,
                skip,
            )
            return Decision(**base, result="allowed", messages=(skip,), checked=False)
        try:
            containers = workload_images(request.kind.kind, request.object or {})
        except BadAdmissionReview as err:
            return Decision(**base, result="error", messages=(f"bad request: {err}",), code=400)
        old_images = set()
        if request.operation == "UPDATE" and request.old_object:
            try:
                old_images = {
                    c.image for c in workload_images(request.kind.kind, request.old_object)
                }
            except BadAdmissionReview:
                old_images = set()
        deadline = Deadline.after(config.deadline_seconds)
        resource = resource_info(request)
        checks = [
            self._classify(image, group, config, request.namespace, image in old_images, resource)
            for image, group in _distinct(containers).items()
        ]
        self._verify_all(checks, runtime, config, deadline)
        checked_at = time.monotonic()
        document = build_input(request, checks, now, statements=config.include_statements)
        policy_error = None
        rego_deny: tuple[Finding, ...] = ()
        rego_warn: tuple[Finding, ...] = ()
        policy_cache = "off"
        try:
            result, policy_cache = runtime.policy_cache.evaluate(
                runtime.engine, document, config.package, config.trust_fingerprint
            )
            rego_deny, rego_warn = result.denials, result.warnings
        except PolicyError as err:
            policy_error = str(err)
        except Exception as err:  # an engine bug must still fail closed, with a reason
            log.exception("policy evaluation crashed")
            policy_error = f"policy evaluation failed: {type(err).__name__}: {err}"
        evaluated_at = time.monotonic()
        judgement = judge(
            [image_outcome(entry) for entry in document["images"]],
            operation=request.operation,
            unmatched_images=config.unmatched_images,
            deny=rego_deny,
            warn=rego_warn,
            policy_error=policy_error,
        )
        answer = apply_exceptions(
            judgement, image_facts(checks), request.namespace, config.exceptions, now
        )
        latency = {
            "resolve": round(max((c.resolve_seconds for c in checks), default=0.0) * 1000, 3),
            "verify": round(max((c.verify_seconds for c in checks), default=0.0) * 1000, 3),
            "evaluate": round((evaluated_at - checked_at) * 1000, 3),
            "total": round((evaluated_at - started) * 1000, 3),
        }
        images = tuple(
            ImageDecision(
                reference=c.reference,
                name=c.name,
                digest=c.digest,
                policy=c.policy.name if c.policy else None,
                outcome=c.outcome,
                verification=bounded_verification(c.verification.to_dict())
                if c.verification
                else None,
                error=c.error,
                cached=c.cached,
                unchanged=c.unchanged,
            )
            for c in checks
        )
        return Decision(
            **base,
            result=answer.result,
            messages=answer.messages,
            warnings=answer.warnings,
            codes=answer.codes,
            code=answer.code,
            exceptions=answer.records,
            images=images,
            input=document,
            latency=latency,
            policy_cache=policy_cache,
        )

    @staticmethod
    def _not_checked(request: AdmissionRequest, config: AdmissionConfig) -> str | None:
        if request.operation in ("DELETE", "CONNECT"):
            return f"operation {request.operation} is not checked"
        if not is_workload(request.kind.kind):
            return f"kind {request.kind.kind} is out of scope (it runs no containers)"
        if request.namespace and not config.namespaces.applies(request.namespace):
            return f"namespace {request.namespace} is not enforced"
        if (
            request.operation == "UPDATE"
            and request.metadata.get("deletionTimestamp")
            and request.old_object is not None
        ):
            try:
                new = {c.image for c in workload_images(request.kind.kind, request.object or {})}
                old = {c.image for c in workload_images(request.kind.kind, request.old_object)}
            except BadAdmissionReview:
                return None
            if new <= old:
                return "object is being deleted and the update adds no image"
        return None

    @staticmethod
    def _classify(
        image: str,
        containers: list[ContainerImage],
        config: AdmissionConfig,
        namespace: str,
        unchanged: bool,
        resource: ResourceInfo = ("", "", "", {}),
    ) -> ImageCheck:
        check = ImageCheck(
            reference=bounded_text(image, MAX_REFERENCE_CHARS),
            containers=containers,
            unchanged=unchanged,
        )
        if len(image) > MAX_REFERENCE_CHARS:  # no reference is this long: say so, briefly
            check.outcome = "invalid"
            check.error = f"{len(image)} characters long (a reference has at most about 520)"
            return check
        try:
            parsed = parse_image_reference(image)
        except AttestError as err:
            check.outcome, check.error = "invalid", str(err)
            return check
        check.parsed, check.digest = parsed, parsed.digest
        check.policy = config.policy_for_image(parsed, image, namespace, resource)
        if check.policy is None:
            check.outcome = "unmatched"
        return check

    def _verify_all(
        self,
        checks: list[ImageCheck],
        runtime: Runtime,
        config: AdmissionConfig,
        deadline: Deadline,
    ) -> None:
        """Resolve and verify every image that needs it, in place, all under ``deadline``.

        The work runs on the pool, in lanes of at most ``maxConcurrentPerRegistry``
        per registry host (:mod:`admission.slots`); this thread only waits, and
        answers at the deadline whatever is still running.  What a lane finishes
        after that is dropped: an image without a result by then timed out (and the
        transport cuts its exchanges off, so the lane ends soon after)."""
        for check in checks:  # images already verified: no thread, no network
            if check.outcome != "unverified":  # invalid or unmatched: nothing to verify
                continue
            check.digest = check.digest or runtime.tags.get(_tag_key(check))
            if check.digest:
                hit = self.cache.get(_cache_key(check))
                if hit is not None:
                    self._record(check, hit, cached=True)
        pending = [
            i for i, c in enumerate(checks) if c.outcome == "unverified" and c.verification is None
        ]
        if not pending:
            return
        self.slots.limit = config.max_concurrent_per_registry
        by_host: dict[str, list[int]] = {}
        for index in pending:
            parsed = checks[index].parsed
            assert parsed is not None
            by_host.setdefault(parsed.registry, []).append(index)
        lanes = _Lanes(checks)
        futures: list[concurrent.futures.Future[None]] = []
        refused: dict[str, str] = {}
        waiting = []
        for host, indexes in by_host.items():  # free slots first, then wait for the rest
            taken = self.slots.take(host, len(indexes), deadline, wait=False)
            if taken:
                futures += self._start_lanes(host, indexes, taken, lanes, runtime, deadline)
            else:
                waiting.append((host, indexes))
        for host, indexes in waiting:
            taken = self.slots.take(host, len(indexes), deadline, wait=True)
            if taken:
                futures += self._start_lanes(host, indexes, taken, lanes, runtime, deadline)
            elif not deadline.expired:
                refused[host] = (
                    f"not verified: registry {host} is stalling (its last verification timed "
                    f"out) and already has {self.slots.limit} verifications running "
                    "(maxConcurrentPerRegistry)"
                )
        concurrent.futures.wait(futures, timeout=deadline.remaining())
        results = lanes.close()
        for index in pending:
            if index in results:
                checks[index] = results[index]
                continue
            parsed = checks[index].parsed
            assert parsed is not None
            checks[index].outcome = "timed_out"
            checks[index].error = refused.get(parsed.registry) or (
                f"verification timed out after {config.deadline_seconds:g}s"
            )

    def _start_lanes(
        self,
        host: str,
        indexes: list[int],
        count: int,
        lanes: _Lanes,
        runtime: Runtime,
        deadline: Deadline,
    ) -> list[concurrent.futures.Future[None]]:
        """``count`` pool tasks (one per slot taken) that verify ``indexes`` between them."""
        queue = collections.deque(indexes)
        return [
            self._pool.submit(self._lane, host, queue, lanes, runtime, deadline)
            for _ in range(count)
        ]

    def _lane(
        self,
        host: str,
        queue: collections.deque[int],
        lanes: _Lanes,
        runtime: Runtime,
        deadline: Deadline,
    ) -> None:
        """Verify images from ``queue`` one after another; give the slot back at the end (with
        whether its last verification timed out; a lane that verified nothing says nothing)."""
        timed_out: bool | None = None
        try:
            while (index := lanes.next(queue, deadline)) is not None:
                result = self._verify_one(lanes.checks[index], runtime, deadline)
                timed_out = result.outcome == "timed_out"
                lanes.put(index, result)
        finally:
            self.slots.give_back(host, timed_out=timed_out)

    def _verify_one(self, original: ImageCheck, runtime: Runtime, deadline: Deadline) -> ImageCheck:
        """A copy of ``original`` with its digest, verification and outcome filled in."""
        check = copy.copy(original)
        parsed, policy = check.parsed, check.policy
        assert parsed is not None and policy is not None
        began = time.monotonic()
        try:
            store = runtime.registries.store(parsed, deadline)
            just_resolved = not check.digest
            digest = check.digest or store.resolve(parsed.identifier).digest
            if just_resolved:
                check.digest = digest
                runtime.tags.put(_tag_key(check), digest)
            resolved = time.monotonic()
            check.resolve_seconds = resolved - began
            key = _cache_key(check)
            # a digest known before was looked up in the cache already (_verify_all)
            hit = self.cache.get(key) if just_resolved else None
            if hit is not None:
                self._record(check, hit, cached=True)
                return check
            verification = verify_with_policies(  # our policy, then any ClusterImagePolicy
                self.verifier,
                parsed.with_digest(digest),
                None if policy.cluster_only else policy.verification,
                policy.cluster,
                store=store,
                deadline=deadline,
                attestations=True,
                resolve=False,  # the digest was just resolved, or pinned in the workload
            )
            check.verify_seconds = time.monotonic() - resolved
            self.cache.put(key, verification)
            self._record(check, verification, cached=False)
        except DeadlineExceeded as err:
            check.outcome = "timed_out"
            check.error = f"verification timed out ({err})"
        except AttestError as err:
            check.outcome = "error"
            check.error = str(err)
        except Exception as err:  # a verifier bug: deny with the reason, keep serving
            log.exception("verification of %s crashed", check.reference)
            check.outcome = "error"
            check.error = f"internal error verifying the image: {type(err).__name__}: {err}"
        return check

    @staticmethod
    def _record(check: ImageCheck, verification: ImageVerification, *, cached: bool) -> None:
        check.verification = verification
        check.cached = cached
        check.digest = check.digest or verification.digest
        if not verification.verified and verification.errors:
            check.outcome = "error"
            check.error = "; ".join(verification.errors)
            return
        check.outcome = "verified" if verification.verified else "unverified"
        problem = provenance_problem(verification)
        if problem:  # trusted-signed, yet not provenance: its own outcome, denied by judge()
            check.outcome, check.error = "invalid_provenance", f"invalid provenance: {problem}"
