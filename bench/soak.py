"""Soak the admission webhook with generated AdmissionReviews: valid, mutated and hostile.

The real thing end to end: ``attest admission serve`` (gunicorn workers, TLS, decision
recording) in front of a real docker-registry holding signed images (signature, SLSA
provenance, SBOM, by the trusted key), unsigned ones, one signed by an untrusted key, one
whose provenance names a builder the policy does not allow, and an unsigned image under
another tag of the signed image's own repository.  A separate client process sends
``--requests`` reviews over ``--concurrency`` keep-alive HTTPS connections, each one
generated from ``--seed`` and its index (so any single case can be regenerated):

* valid (50 %): every workload kind (Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet,
  Job, CronJob, ReplicationController) and some that run nothing, containers, init and
  ephemeral containers, CREATE/UPDATE (with an old object)/DELETE/CONNECT, dry runs, both
  API versions, and images drawn from trusted, untrusted and odd references (tag and digest
  of different images, the signed image's repository under an unsigned tag, invalid,
  unreachable, unmatched, very long, control characters…);
* mutated (30 %): a valid review with one to three random nodes deleted, nulled, turned
  into another type, or made huge;
* hostile (20 %): not JSON, truncated, empty, invalid UTF-8, a BOM, JSON that is not an
  object, deeply nested documents, bodies over the size limit and just under it, 600
  containers, 150 distinct images, the wrong Content-Type, chunked bodies.

It reports what must be zero — worker crashes (workers gunicorn had to boot again),
answers that are not JSON, and untrusted images admitted (a review whose object, read the
way Kubernetes reads it, runs an image that is not the signed one, answered
``allowed: true``) — with the status codes, transport errors, p50/p99/max latency and
the decision records written (and whether their chain verifies).

    .venv/bin/python bench/soak.py [--requests 100000] [--concurrency 8] [--seed 1]
                                   [--workers 2] [--threads 8]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import http.client
import json
import os
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Where Kubernetes reads a pod spec in each workload kind (written here independently of
# admission/workloads.py: the oracle must not be the code under test).
POD_SPEC = {
    "Pod": ("", "v1", ("spec",)),
    "Deployment": ("apps", "v1", ("spec", "template", "spec")),
    "ReplicaSet": ("apps", "v1", ("spec", "template", "spec")),
    "StatefulSet": ("apps", "v1", ("spec", "template", "spec")),
    "DaemonSet": ("apps", "v1", ("spec", "template", "spec")),
    "Job": ("batch", "v1", ("spec", "template", "spec")),
    "ReplicationController": ("", "v1", ("spec", "template", "spec")),
    "CronJob": ("batch", "v1", ("spec", "jobTemplate", "spec", "template", "spec")),
}
OTHER_KINDS = {
    "ConfigMap": ("", "v1"),
    "Service": ("", "v1"),
    "Role": ("rbac.authorization.k8s.io", "v1"),
}
LISTS = ("containers", "initContainers", "ephemeralContainers")
API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")


# -- the generator (client side) ---------------------------------------------------------------


@dataclass(frozen=True)
class Images:
    """Image references by class; only ``trusted`` ones may ever be admitted."""

    trusted: tuple[str, ...]
    untrusted: dict[str, tuple[str, ...]]  # class -> references

    @classmethod
    def load(cls, path: str) -> Images:
        data = json.loads(Path(path).read_text())
        return cls(tuple(data["trusted"]), {k: tuple(v) for k, v in data["untrusted"].items()})

    def pick(self, rng: random.Random) -> str:
        if rng.random() < 0.45:
            return rng.choice(self.trusted)
        return rng.choice(self.untrusted[rng.choice(sorted(self.untrusted))])

    def untrusted_class(self, image: str) -> str | None:
        if image in self.trusted:
            return None
        for name, references in self.untrusted.items():
            if image in references:
                return name
        return "other"


@dataclass
class Case:
    """One request: its body, headers, category, and (for JSON bodies) the document."""

    category: str  # valid | mutated | hostile
    name: str
    body: bytes | Iterator[bytes]
    content_type: str = "application/json"
    document: Any = None  # what the server will parse (None: not JSON, or not checkable)


def _containers(rng: random.Random, images: Images, prefix: str) -> list[dict[str, Any]]:
    return [
        {"name": f"{prefix}{i}", "image": images.pick(rng)} for i in range(rng.choice((1, 1, 2, 3)))
    ]


def _pod_spec(rng: random.Random, images: Images) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": _containers(rng, images, "c")}
    if rng.random() < 0.3:
        spec["initContainers"] = _containers(rng, images, "i")
    if rng.random() < 0.1:
        spec["ephemeralContainers"] = _containers(rng, images, "e")
    if rng.random() < 0.2:
        spec["restartPolicy"] = "Never"
    return spec


def _workload(kind: str, spec: dict[str, Any], name: str, namespace: str) -> dict[str, Any]:
    group, version, path = POD_SPEC[kind]
    obj: dict[str, Any] = {
        "apiVersion": f"{group}/{version}" if group else version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
    }
    node = obj
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if key == "template":
            node["metadata"] = {"labels": {"app": name}}
    node[path[-1]] = spec
    return obj


def valid_review(rng: random.Random, images: Images, index: int) -> dict[str, Any]:
    namespace = rng.choice(("apps", "payments", "default", "kube-system", "team-a"))
    name = f"soak-{index}"
    operation = rng.choices(("CREATE", "UPDATE", "DELETE", "CONNECT"), (60, 30, 7, 3))[0]
    if rng.random() < 0.08:
        kind = rng.choice(sorted(OTHER_KINDS))
        group, version = OTHER_KINDS[kind]
        obj: dict[str, Any] | None = {
            "apiVersion": "v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace},
            "data": {"image": images.pick(rng)},
        }
    else:
        kind = rng.choice(sorted(POD_SPEC))
        group, version, _ = POD_SPEC[kind]
        obj = _workload(kind, _pod_spec(rng, images), name, namespace)
    request: dict[str, Any] = {
        "uid": f"soak-{index}",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
        "namespace": namespace,
        "name": name,
        "operation": operation,
        "userInfo": {"username": rng.choice(("system:serviceaccount:ci:deployer", "alice"))},
        "object": obj,
        "oldObject": None,
        "dryRun": rng.random() < 0.1,
    }
    if operation == "UPDATE" and kind in POD_SPEC:
        old = copy.deepcopy(obj)
        if rng.random() < 0.5:  # the update changes the images
            old = _workload(kind, _pod_spec(rng, images), name, namespace)
        request["oldObject"] = old
    if operation == "DELETE":
        request["oldObject"], request["object"] = obj, None
    return {"apiVersion": rng.choice(API_VERSIONS), "kind": "AdmissionReview", "request": request}


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _nodes(child, (*path, key))
    elif isinstance(value, list):
        for position, child in enumerate(value):
            yield from _nodes(child, (*path, position))


WRONG_VALUES: tuple[Any, ...] = (
    None,
    [],
    {},
    "",
    "x",
    0,
    -1,
    1.5,
    True,
    10**30,
    [None],
    {"": None},
)


def mutate(rng: random.Random, document: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The document with 1–3 random nodes deleted, replaced by another type, or made huge."""
    document = copy.deepcopy(document)
    done = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        nodes = [(path, value) for path, value in _nodes(document) if path]
        path, _value = rng.choice(nodes)
        parent: Any = document
        for key in path[:-1]:
            parent = parent[key]
        how = rng.choice(("delete", "wrong", "wrong", "huge", "list"))
        if how == "delete":
            del parent[path[-1]]
        elif how == "wrong":
            parent[path[-1]] = rng.choice(WRONG_VALUES)
        elif how == "huge":
            parent[path[-1]] = "A" * rng.choice((300, 70_000, 1_000_000))
        else:
            parent[path[-1]] = [parent[path[-1]]]
        done.append(f"{how}:{'.'.join(str(p) for p in path[-3:])}")
    return document, ",".join(done)


class Hostile:
    """Hostile bodies; the big ones built once."""

    def __init__(self, images: Images) -> None:
        self.images = images
        self._cache: dict[str, bytes] = {}

    def _cached(self, name: str, build: Any) -> bytes:
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]

    def case(self, rng: random.Random, index: int) -> Case:
        valid = valid_review(rng, self.images, index)
        raw = json.dumps(valid).encode()
        choice = rng.choice(
            (
                "empty", "not-json", "truncated", "invalid-utf8", "bom", "array", "null",
                "string", "deep-array", "deep-object", "deep-in-object", "over-limit",
                "under-limit", "many-containers", "many-images", "content-type", "chunked",
                "nan", "duplicate-keys",
            )
        )  # fmt: skip
        if choice == "empty":
            return Case("hostile", choice, b"")
        if choice == "not-json":
            return Case("hostile", choice, b"<AdmissionReview>no</AdmissionReview>")
        if choice == "truncated":
            return Case("hostile", choice, raw[: rng.randrange(1, max(2, len(raw) - 1))])
        if choice == "invalid-utf8":
            return Case("hostile", choice, raw.replace(b"soak", b"\xff\xfe", 1))
        if choice == "bom":
            return Case("hostile", choice, b"\xef\xbb\xbf" + raw, document=valid)
        if choice == "array":
            return Case("hostile", choice, json.dumps([valid]).encode())
        if choice == "null":
            return Case("hostile", choice, b"null")
        if choice == "string":
            return Case("hostile", choice, b'"AdmissionReview"')
        if choice == "deep-array":
            depth = rng.choice((1_000, 100_000))
            return Case("hostile", choice, b"[" * depth + b"]" * depth)
        if choice == "deep-object":
            body = self._cached("deep-object", lambda: b'{"a":' * 50_000 + b"1" + b"}" * 50_000)
            return Case("hostile", choice, body)
        if choice == "deep-in-object":
            depth = rng.choice((500, 5_000, 50_000))
            nested = b'{"x":' * depth + b"1" + b"}" * depth
            body = raw.replace(b'"labels": {', b'"deep": ' + nested + b', "labels": {', 1)
            return Case("hostile", choice, body, document=valid)  # the same images
        if choice == "over-limit":
            body = self._cached("over-limit", lambda: _padded(valid, 4 * 1024 * 1024))
            return Case("hostile", choice, body)
        if choice == "under-limit":
            body = self._cached("under-limit", lambda: _padded(valid, 3 * 1024 * 1024 - 4096))
            return Case("hostile", choice, body, document=json.loads(body))
        if choice == "many-containers":
            document = _with_images(valid, [self.images.trusted[0]] * 600)
            return Case("hostile", choice, json.dumps(document).encode(), document=document)
        if choice == "many-images":
            refs = [f"{self.images.untrusted['missing'][0]}-{i}:v{i}" for i in range(150)]
            document = _with_images(valid, refs)
            return Case("hostile", choice, json.dumps(document).encode(), document=document)
        if choice == "content-type":
            return Case("hostile", choice, raw, content_type="text/plain", document=valid)
        if choice == "chunked":
            pieces = [raw[i : i + 997] for i in range(0, len(raw), 997)]
            return Case("hostile", choice, iter(pieces), document=valid)
        if choice == "nan":
            body = raw.replace(b'"dryRun": false', b'"dryRun": NaN', 1)
            return Case("hostile", choice, body, document=valid)
        # duplicate keys: a JSON reader keeps the last one; Kubernetes would too
        body = raw.replace(b'"image": "', b'"image": "ignored", "image": "', 1)
        return Case("hostile", choice, body, document=json.loads(body))


def _padded(valid: dict[str, Any], size: int) -> bytes:
    document = copy.deepcopy(valid)
    body = json.dumps(document).encode()
    obj = document["request"].get("object") or {}
    obj.setdefault("metadata", {})["annotations"] = {"pad": "p" * max(0, size - len(body) - 40)}
    document["request"]["object"] = obj
    return json.dumps(document).encode()


def _with_images(valid: dict[str, Any], references: list[str]) -> dict[str, Any]:
    document = copy.deepcopy(valid)
    request = document["request"]
    request["operation"] = "CREATE"
    request["kind"] = {"group": "", "version": "v1", "kind": "Pod"}
    request["object"] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "many", "namespace": "apps"},
        "spec": {"containers": [{"name": f"c{i}", "image": r} for i, r in enumerate(references)]},
    }
    return document


def generate(seed: int, index: int, images: Images, hostile: Hostile) -> Case:
    rng = random.Random(seed * 1_000_003 + index)
    roll = rng.random()
    if roll < 0.5:
        document = valid_review(rng, images, index)
        return Case("valid", "valid", json.dumps(document).encode(), document=document)
    if roll < 0.8:
        document, how = mutate(rng, valid_review(rng, images, index))
        return Case("mutated", how.split(":")[0], json.dumps(document).encode(), document=document)
    return hostile.case(rng, index)


def images_run(document: Any) -> list[str]:
    """The images Kubernetes would run for this review, read as the API server stores them:
    a CREATE/UPDATE of a workload kind whose object has the kind's pod spec, each container
    list a list of objects with a string image.  Empty when the review could not run one."""
    if not isinstance(document, dict) or document.get("kind") != "AdmissionReview":
        return []
    request = document.get("request")
    if not isinstance(request, dict) or request.get("operation") not in ("CREATE", "UPDATE"):
        return []
    kind = request.get("kind")
    kind = kind.get("kind") if isinstance(kind, dict) else None
    if not isinstance(kind, str) or kind not in POD_SPEC:
        return []
    node = request.get("object")
    for key in POD_SPEC[kind][2]:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return []
    found = []
    for name in LISTS:
        containers = node.get(name)
        if isinstance(containers, list):
            for container in containers:
                if isinstance(container, dict) and isinstance(container.get("image"), str):
                    found.append(container["image"])
    return found


# -- the client process ------------------------------------------------------------------------


@dataclass
class Tally:
    """What the client saw (one per client process, filled under a lock)."""

    sent: int = 0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    categories: collections.Counter[str] = field(default_factory=collections.Counter)
    allowed: collections.Counter[str] = field(default_factory=collections.Counter)
    non_json: list[str] = field(default_factory=list)
    transport: list[str] = field(default_factory=list)  # no answer at all
    client_errors: list[str] = field(default_factory=list)  # bugs in the soak itself
    admitted: list[str] = field(default_factory=list)  # untrusted images admitted
    admitted_classes: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    by_name: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    unreachable: list[float] = field(default_factory=list)  # reviews naming a dead registry
    reachable: list[float] = field(default_factory=list)


class Channel:
    """One keep-alive HTTPS connection to the webhook, reopened whenever it breaks."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.port, self.context = port, context
        self.connection = self._open()

    def _open(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=120
        )

    def post(self, case: Case) -> tuple[int, bytes]:
        headers = {"Content-Type": case.content_type}
        chunked = not isinstance(case.body, bytes)
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        try:
            self.connection.request("POST", "/validate", case.body, headers, encode_chunked=chunked)
            response = self.connection.getresponse()
            payload = response.read()
        except BaseException:
            self.reopen()
            raise
        if response.will_close:
            self.reopen()
        return response.status, payload

    def reopen(self) -> None:
        self.connection.close()
        self.connection = self._open()


def run_client(args: argparse.Namespace) -> None:
    images = Images.load(args.images)
    hostile = Hostile(images)
    context = ssl.create_default_context(cafile=args.ca)
    tally = Tally()
    lock = threading.Lock()
    counter = iter(range(args.requests))

    def one(channel: Channel, index: int) -> None:
        case = generate(args.seed, index, images, hostile)
        began = time.perf_counter()
        try:
            status, payload = channel.post(case)
        except (OSError, http.client.HTTPException) as err:
            with lock:
                tally.sent += 1
                tally.categories[case.category] += 1
                tally.transport.append(f"#{index} {case.name}: {type(err).__name__}: {err}")
                tally.latencies[case.category].append(time.perf_counter() - began)
            return
        elapsed = time.perf_counter() - began
        verdict = _judge(index, case, status, payload, images)
        run = images_run(case.document)
        unreachable = any(images.untrusted_class(image) == "unreachable" for image in run)
        with lock:
            tally.sent += 1
            if tally.sent % max(1, args.requests // 10) == 0:
                print(f"soak: {tally.sent} sent", file=sys.stderr, flush=True)
            tally.categories[case.category] += 1
            tally.statuses[str(status)] += 1
            tally.latencies[case.category].append(elapsed)
            tally.by_name[f"{case.category}/{case.name}"].append(elapsed)
            (tally.unreachable if unreachable else tally.reachable).append(elapsed)
            if verdict.non_json:
                tally.non_json.append(verdict.non_json)
            if verdict.allowed:
                tally.allowed[case.category] += 1
            for image, image_class in verdict.admitted:
                tally.admitted.append(f"#{index} {case.category}/{case.name}: {image[:120]!r}")
                tally.admitted_classes[image_class] += 1

    def worker() -> None:
        channel = Channel(args.port, context)
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                break
            try:
                one(channel, index)
            except Exception as err:  # a bug in the soak itself: counted, never silent
                with lock:
                    tally.sent += 1
                    tally.client_errors.append(f"#{index}: {type(err).__name__}: {err}")
        channel.connection.close()

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    document = {name: getattr(tally, name) for name in Tally.__dataclass_fields__}
    print(json.dumps({"elapsed": time.perf_counter() - started, **document}))


@dataclass
class Verdict:
    non_json: str | None = None
    allowed: bool = False
    admitted: list[tuple[str, str]] = field(default_factory=list)


def _judge(index: int, case: Case, status: int, payload: bytes, images: Images) -> Verdict:
    try:
        answer = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return Verdict(non_json=f"#{index} {case.name}: HTTP {status}: {payload[:160]!r}")
    response = answer.get("response") if isinstance(answer, dict) else None
    allowed = isinstance(response, dict) and response.get("allowed") is True
    verdict = Verdict(allowed=allowed)
    if allowed:
        for image in images_run(case.document):
            image_class = images.untrusted_class(image)
            if image_class is not None:
                verdict.admitted.append((image, image_class))
    return verdict


# -- the orchestrator ---------------------------------------------------------------------------


def _world(workdir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """Registry, signed/unsigned images, and the image classes the client draws from."""
    from admission.testing import world as hooks
    from attest.testing import RegistryServer
    from attest.testing.images import simple_image

    registry = RegistryServer().start()
    world = hooks.World(registry, workdir)
    good = world.signed("good")
    good2 = world.signed("good2")
    unsigned = world.push("unsigned")
    other = world.signed("other", key=world.other_key)
    evil = world.signed("evil", builder="https://evil.example/builder")
    twin = simple_image(workdir, marker="twin").build(workdir / "build-twin")
    twin.push(world.store("good"), "unsigned")  # an unsigned image in the signed repository

    name = good.rsplit(":", 1)[0]
    good_digest = world.store("good").resolve("v1").digest
    twin_digest = world.store("good").resolve("unsigned").digest
    host = registry.address
    classes = {
        "trusted": [good, good2, f"{name}@{good_digest}", f"{name}:v1@{good_digest}"],
        "untrusted": {
            "unsigned": [unsigned, f"{name}:unsigned", f"{name}@{twin_digest}"],
            "tag-of-signed-digest-of-unsigned": [f"{name}:v1@{twin_digest}"],
            "untrusted-key": [other],
            "bad-provenance": [evil],
            "missing": [
                f"{host}/{hooks.REPO}/missing",
                f"{name}:nope",
                f"{name}@sha256:{'0' * 64}",
            ],
            "unmatched": ["docker.io/library/nginx:1.27", "ghcr.io/acme/app@sha256:" + "a" * 64],
            "unreachable": [f"127.0.0.1:1/{hooks.REPO}/good:v1"],
            "alias-host": [f"localhost:{host.rsplit(':', 1)[1]}/{hooks.REPO}/unsigned:v1"],
            "invalid": [
                "",
                " ",
                f"{name.upper()}:v1",
                f"{good} ",
                f"{good}:v2",
                "a" * 5000,
                "ｇｏｏｄ",
                "../../etc/passwd",
                "x\u0000y",
                "@sha256:" + "b" * 64,
            ],
        },
    }
    return registry, world, classes


def _gunicorn_events(log: Path) -> dict[str, int]:
    counts = collections.Counter()
    for line in log.read_text(errors="replace").splitlines():
        for needle in (
            "Booting worker",
            "WORKER TIMEOUT",
            "was sent SIGKILL",
            "was sent SIG",
            "exited with code",
            "Traceback",
            "ALERT",
            "decision writer",
        ):
            if needle in line:
                counts[needle] += 1
    return dict(counts)


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=100_000, help="reviews to send (100000)")
    parser.add_argument("--concurrency", type=int, default=8, help="client connections (8)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (1)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (8)")
    parser.add_argument(
        "--server-arg", action="append", default=[], metavar="ARG", help="extra serve argument"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--policy-mode",
        choices=("enforce", "warn"),
        default="enforce",
        help="warn: a control run in which untrusted images are admitted (the count must not be 0)",
    )
    args = parser.parse_args()
    if args.client:
        run_client(args)
        return 0

    from admission.testing import world as hooks
    from admission.testing.helpers import key_policy, make_tls, write_config
    from admission.testing.samples import write_key_pair
    from admission.testing.webhook import start_webhook
    from attest.testing import free_port

    workdir = Path(tempfile.mkdtemp(prefix="attest-soak-"))
    registry = None
    hook = None
    load_before = os.getloadavg()
    try:
        registry, world, classes = _world(workdir)
        images_file = workdir / "images.json"
        images_file.write_text(json.dumps(classes))
        tls = make_tls(workdir / "tls")
        policy = key_policy(
            "apps", [f"127.0.0.1:*/{hooks.REPO}/*"], world.key_file, mode=args.policy_mode
        )
        config = write_config(workdir / "config.yaml", [policy])
        db = workdir / "decisions.db"
        private, public = write_key_pair(workdir, "decisions")
        hook = start_webhook(
            config,
            tls,
            workdir,
            port=free_port(),
            workers=args.workers,
            threads=args.threads,
            extra=(
                "--log-level",
                "warning",
                "--db",
                str(db),
                "--signing-key",
                str(private),
                *args.server_arg,
            ),
            ready_path="/readyz",
        )
        arbiter = hook.process.pid
        command = [
            sys.executable,
            __file__,
            "--client",
            "--port",
            str(hook.port),
            "--ca",
            str(hook.ca),
            "--images",
            str(images_file),
            "--requests",
            str(args.requests),
            "--concurrency",
            str(args.concurrency),
            "--seed",
            str(args.seed),
        ]
        print(f"soak: {args.requests} reviews, seed {args.seed}, work directory {workdir}")
        output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
        data = json.loads(output)
        healthy = hook.get("/healthz").status_code == 200
        alive = hook.process.poll() is None
        writers = {}  # each worker's decision writer, as /readyz reports it
        for _ in range(20):
            state = hook.get("/readyz").json().get("decisionRecords") or {}
            writers[state.get("replica")] = state
        hook.stop()
        events = _gunicorn_events(hook.log)
        records = subprocess.run(
            [
                *(sys.executable, "-m", "attest", "decisions", "verify", "--db", str(db)),
                *("--key", str(public), "-o", "json"),
            ],
            capture_output=True,
            text=True,
        )
    finally:
        if hook is not None:
            hook.stop()
        if registry is not None:
            registry.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()

    crashes = max(0, events.get("Booting worker", 0) - args.workers)
    everything = [v for values in data["latencies"].values() for v in values]
    print(
        f"soak: {data['sent']} reviews in {data['elapsed']:.0f} s ({data['sent'] / data['elapsed']:.0f}"
        f" req/s), {args.concurrency} connections, {args.workers} workers x {args.threads} threads, "
        f"{os.cpu_count()} CPUs; load average {load_before[0]:.1f} -> {load_after[0]:.1f}"
    )
    print(f"  categories: {dict(data['categories'])}; admitted: {dict(data['allowed'])}")
    print(f"  HTTP statuses: {dict(sorted(data['statuses'].items()))}")
    for category, values in sorted(data["latencies"].items()):
        print(
            f"  latency {category:<8} p50 {_percentile(values, 50):8.2f} ms  "
            f"p99 {_percentile(values, 99):8.2f} ms  max {max(values) * 1000:9.1f} ms"
        )
    print(
        f"  latency all      p50 {_percentile(everything, 50):8.2f} ms  "
        f"p99 {_percentile(everything, 99):8.2f} ms  max {max(everything) * 1000:9.1f} ms"
    )
    slowest = sorted(data["by_name"].items(), key=lambda item: sum(item[1]), reverse=True)[:6]
    print(
        "  most server time: "
        + "; ".join(
            f"{name} x{len(values)} {sum(values):.0f}s p99 {_percentile(values, 99):.0f}ms"
            for name, values in slowest
        )
    )
    print(
        f"  gunicorn events: {events}; arbiter {arbiter} alive at the end: {alive}, /healthz: {healthy}"
    )
    report: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        report = json.loads(records.stdout)
    written = sum(replica["records"] for replica in report.get("replicas", []))
    print(
        f"  decision records: {written} in {len(report.get('replicas', []))} chains, "
        f"verify status {report.get('status', records.stderr.strip()[:200])!r}"
    )
    for replica, state in writers.items():
        print(
            f"  writer {replica}: {state.get('state')}, written {state.get('written')}, "
            f"dropped {state.get('dropped')}, queued {state.get('queued')}"
        )
    print(f"  soak client errors: {len(data['client_errors'])} {data['client_errors'][:3]}")
    print(f"  transport errors (no answer): {len(data['transport'])}")
    for line in data["transport"][:5]:
        print(f"    {line}")
    print("targets:")
    print(f"  worker crashes:          {crashes}")
    print(f"  non-JSON answers:        {len(data['non_json'])}")
    for line in data["non_json"][:5]:
        print(f"    {line}")
    print(f"  untrusted images admitted: {len(data['admitted'])} {dict(data['admitted_classes'])}")
    for line in data["admitted"][:10]:
        print(f"    {line}")
    print(f"  p99 (all reviews):       {_percentile(everything, 99):.2f} ms")
    print(
        f"    of the {len(data['unreachable'])} reviews naming a registry that refuses connections "
        f"(retried within the deadline): p50 {_percentile(data['unreachable'], 50):.0f} ms; "
        f"of the other {len(data['reachable'])}: p99 {_percentile(data['reachable'], 99):.2f} ms"
    )
    failed = crashes or data["non_json"] or data["admitted"] or data["client_errors"] or not alive
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
