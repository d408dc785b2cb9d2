"""The admission flow: images → resolve → verify (parallel, one deadline) → policy input → Rego → decision.

:class:`Admission` holds what outlives a request (the configuration watcher,
the verification cache, the thread pool, registry clients) and turns one
:class:`~admission.review.AdmissionRequest` into a :class:`Decision`, a plain
dataclass that the HTTP layer answers with and decision records store.

Fail-closed rules, whatever the Rego policy says: an invalid image reference,
an image no policy matches (unless ``unmatchedImages: allow``), a registry
error and a verification that ran out of time each deny in ``enforce`` mode
(in ``warn`` mode they become warnings); a policy that fails to evaluate
denies.  Rego ``deny`` messages are attributed to the images whose reference
they contain: a message that names only images of ``warn``-mode policies
becomes a warning, and on UPDATE a message naming an image that the update did
not change says so.
"""

from __future__ import annotations

import collections
import concurrent.futures
import copy
import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from admission.bounds import MAX_REFERENCE_CHARS, bounded_text, bounded_verification
from admission.cache import CacheKey, TagCache, VerificationCache
from admission.cip import ResourceInfo, cluster_outcomes, resource_info, verify_with_policies
from admission.config import AdmissionConfig, ConfigWatcher
from admission.exceptions.apply import apply_exceptions, exception_fields, image_facts
from admission.policy_input import ImageCheck, build_input, provenance_problem, rfc3339
from admission.review import AdmissionRequest
from admission.slots import RegistrySlots
from admission.workloads import ContainerImage, is_workload, workload_images
from attest.deadline import Deadline
from attest.errors import AttestError, BadAdmissionReview, DeadlineExceeded, PolicyError
from attest.oci.reference import ImageReference, parse_image_reference
from attest.oci.registry import RegistryRepository
from attest.oci.transport import RegistryClient, RegistryOptions
from attest.policy import PolicyEngine, load_bundle, make_engine
from attest.verify import ImageVerification

log = logging.getLogger(__name__)

RESULTS = ("allowed", "denied", "warned", "timed_out", "error")
Verifier = Callable[..., ImageVerification]
DecisionListener = Callable[["Decision"], None]
_REFERENCE_CHARS_BEFORE = r"(?<![\w./@:-])"
_REFERENCE_CHARS_AFTER = r"(?![\w.@/-]|:\w)"


@dataclass(frozen=True)
class ImageDecision:
    """One distinct image: what the workload named, what it resolved to, how it was judged.

    ``name`` is the canonical ``registry/repository`` (None for an invalid reference):
    the identity the policy was matched on, whatever spelling ``reference`` used."""

    reference: str
    digest: str | None
    policy: str | None
    outcome: str
    verification: dict[str, Any] | None
    error: str | None = None
    cached: bool = False
    unchanged: bool = False
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "name": self.name,
            "digest": self.digest,
            "policy": self.policy,
            "outcome": self.outcome,
            "error": self.error,
            "cached": self.cached,
            "unchanged": self.unchanged,
            "verification": self.verification,
        }


@dataclass(frozen=True)
class Decision:
    """The outcome of one admission request, with every reason and what produced it."""

    uid: str
    time: float
    operation: str
    kind: str
    namespace: str
    name: str
    user: str
    result: str
    messages: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    images: tuple[ImageDecision, ...] = ()
    input: dict[str, Any] | None = None
    latency: dict[str, float] = field(default_factory=dict)
    bundle_hash: str = ""
    trust_fingerprint: str = ""
    engine: str = ""
    checked: bool = True
    code: int = 200
    dry_run: bool = False
    caller: str = ""  # the client certificate subject the request came with ("" without one)
    exceptions: tuple[dict[str, Any], ...] = ()  # admission.exceptions.apply.exception_record

    @property
    def allowed(self) -> bool:
        return self.result in ("allowed", "warned")

    @property
    def message(self) -> str:
        """The one-line answer the API server shows the user."""
        return "; ".join(self.messages)

    def to_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "time": rfc3339(dt.datetime.fromtimestamp(self.time, dt.UTC)),
            "operation": self.operation,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "user": self.user,
            "caller": self.caller,
            "result": self.result,
            "allowed": self.allowed,
            "checked": self.checked,
            "dryRun": self.dry_run,
            "messages": list(self.messages),
            "warnings": list(self.warnings),
            "images": [image.to_dict() for image in self.images],
            "input": self.input,
            "latency": dict(self.latency),
            "bundleHash": self.bundle_hash,
            "trustFingerprint": self.trust_fingerprint,
            "engine": self.engine,
            **exception_fields(self.exceptions, self.namespace),
        }


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


class RegistryPool:
    """One thread-safe registry client per host, shared by all requests of a configuration."""

    def __init__(self, options: RegistryOptions) -> None:
        self.options = options
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def store(self, reference: ImageReference, deadline: Deadline) -> RegistryRepository:
        with self._lock:
            client = self._clients.get(reference.registry)
            if client is None:
                client = RegistryClient(reference.registry, options=self.options)
                self._clients[reference.registry] = client
        return RegistryRepository(client, reference.repository, deadline=deadline)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


@dataclass
class Runtime:
    """What is built from one configuration: the compiled policy engine and registry clients."""

    engine: PolicyEngine
    registries: RegistryPool


def build_runtime(config: AdmissionConfig) -> Runtime:
    """Compile the configuration's policy bundle (or connect to its OPA) and set up registries."""
    bundle = None if config.opa_url else load_bundle(config.bundle)
    engine = make_engine(bundle, opa_url=config.opa_url)
    options = RegistryOptions(
        auth_files=config.registry_auth,
        timeout=config.deadline_seconds,
        host_concurrency=config.max_concurrent_per_registry,
    )
    return Runtime(engine=engine, registries=RegistryPool(options))


def mentions(message: str, reference: str) -> bool:
    """Whether ``message`` names ``reference`` as a whole reference (not a prefix of another)."""
    pattern = _REFERENCE_CHARS_BEFORE + re.escape(reference) + _REFERENCE_CHARS_AFTER
    return re.search(pattern, message) is not None


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
        listeners: list[DecisionListener] | None = None,
    ) -> None:
        if verifier is None:
            from attest.verify import verify_image as verifier
        self.verifier = verifier
        self.watcher: ConfigWatcher[Runtime] = ConfigWatcher(
            config_path, build_runtime, interval=reload_interval
        )
        config = self.watcher.current().config
        self.cache = VerificationCache(config.cache_max_entries, config.cache_ttl_seconds)
        self.tags = TagCache(config.tag_ttl_seconds)
        self._tags_loaded: Any = self.watcher.current()  # tag resolutions belong to one config
        self.listeners = list(listeners or [])
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="attest-verify"
        )
        self.slots = RegistrySlots(config.max_concurrent_per_registry)

    @property
    def config(self) -> AdmissionConfig:
        return self.watcher.current().config

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        loaded = self.watcher.current()
        loaded.runtime.engine.close()
        loaded.runtime.registries.close()

    # -- the flow ------------------------------------------------------------------

    def decide(self, request: AdmissionRequest, *, caller: str = "") -> Decision:
        """Judge one request; never raises: an internal error while deciding is a denial
        (result ``error``, code 500) that reaches the listeners, so it is recorded too.
        ``caller`` is who sent it (the verified client certificate subject), recorded with
        the decision."""
        try:
            return self._decide(request, caller)
        except Exception as err:
            log.exception("admission %s: deciding failed", request.uid)
            return self._emit(self._failed(request, caller, err))

    def _failed(self, request: AdmissionRequest, caller: str, err: Exception) -> Decision:
        """The denial for a request whose decision crashed (with what can still be said)."""
        try:
            loaded = self.watcher.current()
            hashes = {
                "bundle_hash": loaded.runtime.engine.bundle_hash,
                "trust_fingerprint": loaded.config.trust_fingerprint,
                "engine": loaded.runtime.engine.name,
            }
        except Exception:
            hashes = {}
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
            **hashes,
        )

    def _decide(self, request: AdmissionRequest, caller: str) -> Decision:
        started = time.monotonic()
        now = dt.datetime.now(dt.UTC)
        loaded = self.watcher.current()
        config, runtime = loaded.config, loaded.runtime
        self.cache.max_entries = config.cache_max_entries
        self.cache.ttl_seconds = config.cache_ttl_seconds
        self.tags.ttl_seconds = config.tag_ttl_seconds
        if loaded is not self._tags_loaded:  # reloaded (credentials may differ): resolve anew
            self._tags_loaded = loaded
            self.tags.clear()
        base = {
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
            return self._emit(Decision(**base, result="allowed", messages=(skip,), checked=False))
        try:
            containers = workload_images(request.kind.kind, request.object or {})
        except BadAdmissionReview as err:
            return self._emit(
                Decision(**base, result="error", messages=(f"bad request: {err}",), code=400)
            )
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
        rego_deny: tuple[str, ...] = ()
        rego_warn: tuple[str, ...] = ()
        try:
            result = runtime.engine.evaluate(document, config.package)
            rego_deny, rego_warn = result.deny, result.warn
        except PolicyError as err:
            policy_error = str(err)
        except Exception as err:  # an engine bug must still fail closed, with a reason
            log.exception("policy evaluation crashed")
            policy_error = f"policy evaluation failed: {type(err).__name__}: {err}"
        evaluated_at = time.monotonic()
        decision = self._combine(
            base, request, document["images"], config, rego_deny, rego_warn, policy_error
        )
        excepted = apply_exceptions(
            decision, image_facts(checks), request.namespace, config.exceptions, now, mentions
        )
        decision = {**excepted.answer(), "exceptions": excepted.records}
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
        return self._emit(
            Decision(**base, **decision, images=images, input=document, latency=latency)
        )

    def _emit(self, decision: Decision) -> Decision:
        for listener in self.listeners:
            try:
                listener(decision)
            except Exception:  # a recorder must never change or break the answer
                log.exception("decision listener failed")
        return decision

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
            check.digest = check.digest or self.tags.get(_tag_key(check))
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
            if just_resolved:
                check.digest = store.resolve(parsed.identifier).digest
                self.tags.put(_tag_key(check), check.digest)
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
                parsed.with_digest(check.digest),
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

    # -- the answer ----------------------------------------------------------------

    @staticmethod
    def _combine(
        base: dict[str, Any],
        request: AdmissionRequest,
        images: list[dict[str, Any]],
        config: AdmissionConfig,
        rego_deny: tuple[str, ...],
        rego_warn: tuple[str, ...],
        policy_error: str | None,
    ) -> dict[str, Any]:
        judgement = judge(
            [image_outcome(entry) for entry in images],
            operation=request.operation,
            unmatched_images=config.unmatched_images,
            deny=rego_deny,
            warn=rego_warn,
            policy_error=policy_error,
        )
        return {
            "result": judgement.result,
            "messages": judgement.messages,
            "warnings": judgement.warnings,
            "code": judgement.code,
        }


# Outcomes whose verification finished: the image policy's own requirements are judged.
FINISHED = ("verified", "unverified", "invalid_provenance")


@dataclass(frozen=True)
class ImageOutcome:
    """What the answer's rules need to know about one image (from a check or a record).

    ``findings`` are the denials the webhook itself owes this image, whatever Rego
    says: its policy's threshold not met, a required attestation missing, an
    invalid provenance (see :func:`image_outcome`)."""

    reference: str
    outcome: str  # see policy_input.OUTCOMES
    error: str | None = None
    unchanged: bool = False
    policy: str | None = None  # matched image policy name
    mode: str | None = None  # its mode: enforce | warn
    findings: tuple[str, ...] = ()
    cluster_denials: tuple[str, ...] = ()  # failed ClusterImagePolicies, by their own mode
    cluster_warnings: tuple[str, ...] = ()


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _untrusted(reference: str, entry: dict[str, Any], policy: dict[str, Any]) -> str:
    """Why the threshold was not met, in the words of the default policy's old rule."""
    signatures = _dicts(entry.get("signatures"))
    if not signatures:
        reason = "no signature found"
    else:
        reason = "; ".join(_strings(signatures[0].get("reasons"))) or (
            "signatures verified, but too few authorities"
        )
    return (
        f"{reference}: no trusted signature: {len(_strings(entry.get('satisfiedAuthorities')))} "
        f"of {policy.get('threshold')} required authorities of policy {policy.get('name')} "
        f"verified it ({reason})"
    )


def image_outcome(entry: dict[str, Any]) -> ImageOutcome:
    """One ``input.images`` entry (live, or from a record) as the webhook's rules see it.

    The image policy's requirements are checked here, in code, from the same facts
    Rego gets: for an image whose verification finished, a threshold not met
    (anything but ``thresholdMet: true``), each required attestation type without a
    verified attestation, and an invalid provenance are findings.
    """
    reference = str(entry.get("reference") or "")
    outcome = str(entry.get("outcome") or "")
    error = entry.get("error") if isinstance(entry.get("error"), str) else None
    policy = entry.get("policy") if isinstance(entry.get("policy"), dict) else None
    findings: list[str] = []
    if policy is not None and outcome in FINISHED:
        if entry.get("thresholdMet") is not True:
            findings.append(_untrusted(reference, entry, policy))
        verified_types = {
            a.get("predicateType")
            for a in _dicts(entry.get("attestations"))
            if a.get("verified") is True
        }
        findings.extend(
            f"{reference}: no verified attestation of type {wanted} "
            f"(required by policy {policy.get('name')})"
            for wanted in _strings(policy.get("requiredAttestations"))
            if wanted not in verified_types
        )
        if outcome == "invalid_provenance":
            findings.append(f"{reference}: {error or 'invalid provenance'}")
    cluster_denials, cluster_warnings = cluster_outcomes(reference, entry)
    return ImageOutcome(
        reference=reference,
        outcome=outcome,
        error=error,
        unchanged=bool(entry.get("unchanged")),
        policy=str(policy["name"]) if policy and policy.get("name") else None,
        mode=str(policy["mode"]) if policy and policy.get("mode") else None,
        findings=tuple(findings),
        cluster_denials=cluster_denials,
        cluster_warnings=cluster_warnings,
    )


@dataclass(frozen=True)
class Judgement:
    """The answer: result, the denial messages, the warnings, and the status code."""

    result: str
    messages: tuple[str, ...]
    warnings: tuple[str, ...]
    code: int


def judge(
    images: list[ImageOutcome],
    *,
    operation: str,
    unmatched_images: str,
    deny: tuple[str, ...],
    warn: tuple[str, ...],
    policy_error: str | None,
) -> Judgement:
    """The webhook's rules, as a pure function: image outcomes plus Rego's answer → the result.

    Fail closed in code, whatever the bundle says: invalid references, unmatched
    images (unless allowed), timeouts, registry errors and every finding of
    :func:`image_outcome` (threshold, required attestations, invalid provenance)
    deny; for images under a ``warn``-mode policy they are warnings.  Rego can only
    add denials: a ``deny`` that names only ``warn``-mode images is a warning, and
    one repeating a finding word for word is not said twice.  On UPDATE a denial
    naming an image the update did not change says so; a policy error is an error.
    ``decisions replay`` uses this too, so a replay follows the webhook exactly.
    """
    denials: list[str] = []
    warnings: list[str] = []
    timed_out = False

    def unchanged_note(message: str) -> str:
        if operation != "UPDATE":
            return message
        same = [i.reference for i in images if i.unchanged and mentions(message, i.reference)]
        return message + (" (image unchanged by this update)" if same else "")

    def refuse(image: ImageOutcome, message: str) -> None:
        if image.policy is not None and image.mode == "warn":
            warnings.append(f"warn mode ({image.policy}): {message}")
        else:
            denials.append(unchanged_note(message))

    findings: set[str] = set()
    for image in images:
        text = f"{image.reference}: "
        if image.outcome == "invalid":
            denials.append(unchanged_note(text + f"invalid image reference: {image.error}"))
        elif image.outcome == "unmatched" and unmatched_images == "deny":
            denials.append(
                unchanged_note(text + "matches no image policy (unmatched images are denied)")
            )
        elif image.outcome in ("timed_out", "error"):
            refuse(image, text + (image.error or image.outcome))
            if image.mode != "warn":
                timed_out = timed_out or image.outcome == "timed_out"
        for finding in image.findings:
            refuse(image, finding)
            findings.add(finding)
        denials.extend(unchanged_note(m) for m in image.cluster_denials)  # whatever our mode
        warnings.extend(image.cluster_warnings)
    for message in deny:
        if message in findings:
            continue
        named = [i for i in images if mentions(message, i.reference)]
        if named and all(i.policy is not None and i.mode == "warn" for i in named):
            warnings.append(f"warn mode ({named[0].policy}): {message}")
        else:
            denials.append(unchanged_note(message))
    warnings.extend(warn)
    if policy_error:
        return Judgement("error", (f"policy error: {policy_error}", *denials), tuple(warnings), 500)
    if denials:
        return Judgement(
            "timed_out" if timed_out else "denied", tuple(denials), tuple(warnings), 403
        )
    return Judgement("warned" if warnings else "allowed", (), tuple(warnings), 200)
