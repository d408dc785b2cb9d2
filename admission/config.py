"""The webhook's configuration: image policies in the spirit of Sigstore's ClusterImagePolicy.

A YAML file (validated on load; unknown keys are errors, since a typo in a
security policy must not silently weaken it) maps image globs to authorities
(public keys, or keyless issuer/subject with exact or regex match and an
optional per-policy trusted root), a threshold, required attestations, a mode
(``enforce`` or ``warn``), namespace filters and free ``parameters`` for the
Rego policy.  Images no policy matches are denied unless ``unmatchedImages:
allow``.  Relative paths are relative to the file.

:class:`ConfigWatcher` reloads the file (and the policy bundle, keys and roots
it names) when they change, only once they are stable and fully read; an
invalid reload keeps the last good configuration and reports the error.  Files
are read through the paths given, so ConfigMap and Secret volumes work as the
kubelet lays them out (``..data`` symlinks, swapped atomically).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import yaml

from admission.bundled import default_bundle
from admission.cip import (
    ClusterPolicy,
    Mounts,
    ResourceInfo,
    cluster_fingerprint,
    is_cluster_image_policy,
    parse_cluster_image_policy,
    union_verification,
)
from attest.attestations.predicates import resolve_predicate_type
from attest.errors import AttestError, InvalidReference, KeyFileError, UsageError
from attest.oci.reference import (
    DOCKER_HUB,
    ImageReference,
    canonical_registry,
    is_registry_host,
)
from attest.policy.bundle import module_files
from attest.signing import keys
from attest.signing.authority import (
    TLOG_IF_PRESENT,
    TLOG_REQUIRED,
    KeyAuthority,
    KeylessAuthority,
    VerificationPolicy,
)
from attest.signing.fulcio import IdentityPolicy

if TYPE_CHECKING:
    from admission.exceptions.settings import ExceptionSet

log = logging.getLogger(__name__)

DEFAULT_BUNDLE = default_bundle()  # the repository's policies/, or the installed copy
DEFAULT_DEADLINE_SECONDS = 8.0
DEFAULT_TAG_TTL_SECONDS = 5.0  # see README "Tag resolution and freshness"
DEFAULT_MAX_CONCURRENT_PER_REGISTRY = 4  # see README "Deadline and hostile registries"
MAX_DEADLINE_SECONDS = 29.0
MODES = ("enforce", "warn")
MAX_CONFIG_BYTES = 1024 * 1024
T = TypeVar("T")


class ConfigError(UsageError):
    """The admission configuration is unusable (the message names the field)."""


@functools.lru_cache(maxsize=4096)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """``**`` matches anything, ``*`` anything but ``/``, ``?`` one character but ``/``.

    Cached: every admission request matches each image against the policies' globs."""
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            parts.append("[^/]")
            i += 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(parts) + r"\Z")


_WILDCARDS = ("*", "?")
_GLOB_PATH = re.compile(r"[a-z0-9._\-/*?]+\Z")


def canonical_image_glob(glob: str) -> str:
    """An image glob in the canonical form of the names it is matched against.

    Image names are canonical (:func:`attest.oci.reference.canonical_registry`), so a
    glob is normalised the same way: ``GHCR.IO/acme/**`` is ``ghcr.io/acme/**``,
    ``ghcr.io:443/acme/*`` is ``ghcr.io/acme/*``, ``docker.io/library/nginx`` and
    ``nginx`` are ``index.docker.io/library/nginx``, ``acme/*`` is
    ``index.docker.io/acme/*``.  A first part with wildcards is a pattern over the
    registry host (lower-cased; ``host:*`` also matches the host without a port),
    except ``**`` alone, which matches every image.  A glob that no canonical name
    could ever match is an error rather than a policy that silently applies to
    nothing: a capital letter, tag or digest in the repository part, or a wildcard
    host with an explicit default port (``*.corp:443``, whose names carry no port).
    """
    if glob == "**":
        return glob
    first, slash, rest = glob.partition("/")
    if not slash:  # one component: a Docker Hub library image, as in a reference
        host, path = DOCKER_HUB, f"library/{glob}"
    elif any(w in first for w in _WILDCARDS):
        host, path = first.lower(), rest
        port = host.rpartition(":")[2] if ":" in host and not host.endswith("]") else ""
        if port.isdigit() and int(port) in (80, 443):
            raise ConfigError(
                f"image glob {glob!r}: image names carry no default port (ghcr.io:443 is "
                f"ghcr.io), so a host pattern with :{port} misses them; leave the port out"
            )
    elif is_registry_host(first):
        try:
            host = canonical_registry(first)
        except InvalidReference as err:
            raise ConfigError(f"image glob {glob!r}: {err}") from None
        path = rest
        if host == DOCKER_HUB and "/" not in path and "**" not in path:
            path = f"library/{path}"
    else:
        host, path = DOCKER_HUB, glob
    if not path or not _GLOB_PATH.match(path):
        raise ConfigError(
            f"image glob {glob!r}: the repository part {path!r} can never match an image name "
            "(lower-case letters, digits, '.', '_', '-', '/' and the wildcards '*', '?', '**'; "
            "no tag or digest)"
        )
    return f"{host}/{path}"


@functools.lru_cache(maxsize=4096)
def image_glob_regex(glob: str) -> re.Pattern[str]:
    """The matcher of a canonical image glob: :func:`glob_regex`, except that a host
    pattern ending in ``:*`` also matches the host without a port (its default port)."""
    host, slash, path = glob.partition("/")
    if slash and host.endswith(":*") and "**" not in host:
        optional_port = glob_regex(host[:-2]).pattern.removesuffix(r"\Z") + "(?::[^/]*)?/"
        return re.compile(optional_port + glob_regex(path).pattern)
    return glob_regex(glob)


@dataclass(frozen=True)
class NamespaceFilter:
    """Namespaces (globs) a policy or the whole webhook applies to."""

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()

    def applies(self, namespace: str) -> bool:
        def hit(patterns: tuple[str, ...]) -> bool:
            return any(glob_regex(p).match(namespace) for p in patterns)

        return hit(self.include) and not hit(self.exclude)

    def to_dict(self) -> dict[str, list[str]]:
        return {"include": list(self.include), "exclude": list(self.exclude)}


@dataclass(frozen=True)
class ImagePolicy:
    """Which images (canonical globs over ``registry/repository``) must be signed by whom."""

    name: str
    images: tuple[str, ...]
    verification: VerificationPolicy
    mode: str = "enforce"
    namespaces: NamespaceFilter = NamespaceFilter()
    attestations: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    # The ClusterImagePolicies that also govern the image (admission/cip.py); with
    # cluster_only, no policy of ours matched and ``verification`` is unused.
    cluster: tuple[ClusterPolicy, ...] = ()
    cluster_only: bool = False

    @functools.cached_property
    def fingerprint(self) -> str:
        """The trust material's fingerprint (computed once: it reads trusted roots)."""
        own = "" if self.cluster_only else self.verification.fingerprint()
        return own + (f"+{cluster_fingerprint(self.cluster)}" if self.cluster else "")

    def matches(self, image_name: str, namespace: str) -> bool:
        return self.namespaces.applies(namespace) and any(
            image_glob_regex(p).match(image_name) for p in self.images
        )

    def to_input(self) -> dict[str, Any]:
        """How the policy appears in the Rego input document."""
        return {
            "name": self.name,
            "mode": self.mode,
            "threshold": self.verification.threshold,
            "authorities": [a.name for a in self.verification.authorities],
            "requiredAttestations": list(self.attestations),
            "parameters": self.parameters,
        }


@dataclass(frozen=True)
class AdmissionConfig:
    """A validated configuration; ``files`` are every file it was built from (for reloads)."""

    path: str
    policies: tuple[ImagePolicy, ...] = ()
    unmatched_images: str = "deny"
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    bundle: str = str(DEFAULT_BUNDLE)
    package: str = "attest.admission"
    opa_url: str | None = None
    include_statements: bool = False
    registry_auth: tuple[str, ...] = ()
    cache_max_entries: int = 10_000
    cache_ttl_seconds: float = 300.0
    tag_ttl_seconds: float = DEFAULT_TAG_TTL_SECONDS
    namespaces: NamespaceFilter = NamespaceFilter()
    pin_digests: bool = False
    max_concurrent_per_registry: int = DEFAULT_MAX_CONCURRENT_PER_REGISTRY
    exceptions: ExceptionSet | None = None  # signed break-glass exceptions (admission.exceptions)
    files: tuple[str, ...] = ()
    cluster_policies: tuple[ClusterPolicy, ...] = ()

    def policy_for(self, image_name: str, namespace: str) -> ImagePolicy | None:
        """The first policy (in file order) whose globs and namespaces match."""
        return next((p for p in self.policies if p.matches(image_name, namespace)), None)

    def policy_for_image(
        self, image: ImageReference, written: str, namespace: str, resource: ResourceInfo
    ) -> ImagePolicy | None:
        """:meth:`policy_for`, with every matching ClusterImagePolicy added to it (or, when
        none of ours matches, a policy of theirs alone): they only add requirements."""
        own = self.policy_for(image.name, namespace)
        cluster = tuple(p for p in self.cluster_policies if p.applies(image, written, resource))
        if not cluster:
            return own
        if own is not None:
            return dataclasses.replace(own, cluster=cluster)
        union = union_verification(cluster)
        return ImagePolicy(
            name="ClusterImagePolicy " + ", ".join(p.name for p in cluster),
            images=(),
            verification=union,  # type: ignore[arg-type]  # None: static authorities only
            mode="warn" if all(p.mode == "warn" for p in cluster) else "enforce",
            cluster=cluster,
            cluster_only=True,
        )

    @functools.cached_property
    def trust_fingerprint(self) -> str:
        """SHA-256 over every policy's trust fingerprint: all keys, identities and roots."""
        digest = hashlib.sha256()
        for policy in self.policies:
            digest.update(f"{policy.name}\0{policy.fingerprint}\n".encode())
        for cluster in self.cluster_policies:
            digest.update(f"cip:{cluster.name}\0{cluster.fingerprint}\n".encode())
        return "sha256:" + digest.hexdigest()


def default_config() -> AdmissionConfig:
    """No image policies (every image is denied) and the built-in policy bundle."""
    return AdmissionConfig(path="<built-in default>", files=_bundle_files(str(DEFAULT_BUNDLE)))


class _Reader:
    """Typed access to one mapping of the YAML file, naming the field in every error."""

    def __init__(self, data: Any, where: str, allowed: set[str]) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a mapping")
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(
                f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
            )
        self.data = data
        self.where = where

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = self.data.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise ConfigError(f"{self.where}.{key} must not be a boolean")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise ConfigError(f"{self.where}.{key} must be a {names}")
        return value

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key, list, list(default))
        if not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{self.where}.{key} must be a list of non-empty strings")
        return tuple(value)


def _path(base: Path, value: str) -> str:
    """``value`` made absolute against ``base``, symlinks kept: a file of a ConfigMap or
    Secret volume is read through ``..data``, never pinned to one ``..<timestamp>/``."""
    return os.path.abspath(os.path.join(base, os.path.expanduser(value)))


def _regex(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    try:
        re.compile(value)
    except re.error as err:
        raise ConfigError(f"{where} is not a valid regular expression ({err})") from None
    return value


def _authority(
    data: Any, where: str, base: Path, files: list[str]
) -> KeyAuthority | KeylessAuthority:
    reader = _Reader(data, where, {"name", "key", "keyless", "ctlog"})
    name = reader.get("name", str)
    if not name:
        raise ConfigError(f"{where}.name is missing")
    if ("key" in reader.data) == ("keyless" in reader.data):
        raise ConfigError(f"{where}: give exactly one of 'key' or 'keyless'")
    if "ctlog" in reader.data and "keyless" in reader.data:
        raise ConfigError(
            f"{where}.ctlog is for key authorities; keyless ones take the log from "
            "keyless.trustedRoot"
        )
    if "key" in reader.data:
        key = _Reader(reader.data["key"], f"{where}.key", {"path", "pem"})
        pem_text = key.get("pem", str)
        key_path = key.get("path", str)
        if bool(pem_text) == bool(key_path):
            raise ConfigError(f"{where}.key: give exactly one of 'path' or 'pem'")
        if key_path:
            resolved = _path(base, key_path)
            files.append(resolved)
            try:
                pem = Path(resolved).read_bytes()
            except OSError as err:
                raise ConfigError(f"{where}.key.path {resolved}: {err.strerror}") from None
        else:
            pem = pem_text.encode()
        try:
            keys.load_public_key(pem, what=f"{where}.key")
        except KeyFileError as err:
            raise ConfigError(str(err)) from None
        if "ctlog" not in reader.data:
            # policy-controller's meaning of a key authority without ctlog: no log entry
            # is required (one that is present must still verify, against public good).
            return KeyAuthority(name=name, public_key_pem=pem, tlog=TLOG_IF_PRESENT)
        ctlog = _Reader(reader.data["ctlog"] or {}, f"{where}.ctlog", {"trustedRoot"})
        log_root = ctlog.get("trustedRoot", str)
        if log_root:
            log_root = _path(base, log_root)
            files.append(log_root)
            if not Path(log_root).is_file():
                raise ConfigError(f"{where}.ctlog.trustedRoot {log_root}: no such file")
        return KeyAuthority(
            name=name, public_key_pem=pem, trusted_root=log_root, tlog=TLOG_REQUIRED
        )
    keyless = _Reader(
        reader.data["keyless"],
        f"{where}.keyless",
        {"issuer", "issuerRegExp", "subject", "subjectRegExp", "trustedRoot"},
    )
    root = keyless.get("trustedRoot", str)
    if root:
        root = _path(base, root)
        files.append(root)
        if not Path(root).is_file():
            raise ConfigError(f"{where}.keyless.trustedRoot {root}: no such file")
    try:
        identity = IdentityPolicy(
            subject=keyless.get("subject", str),
            subject_regexp=_regex(
                keyless.get("subjectRegExp", str), f"{where}.keyless.subjectRegExp"
            ),
            issuer=keyless.get("issuer", str),
            issuer_regexp=_regex(keyless.get("issuerRegExp", str), f"{where}.keyless.issuerRegExp"),
        )
        return KeylessAuthority(name=name, identity=identity, trusted_root=root)
    except UsageError as err:
        raise ConfigError(f"{where}.keyless: {err}") from None


def _namespaces(data: Any, where: str) -> NamespaceFilter:
    if data is None:
        return NamespaceFilter()
    reader = _Reader(data, where, {"include", "exclude"})
    return NamespaceFilter(reader.strings("include", ("*",)), reader.strings("exclude"))


def _image_policy(data: Any, where: str, base: Path, files: list[str]) -> ImagePolicy:
    reader = _Reader(
        data,
        where,
        {
            "name",
            "images",
            "authorities",
            "threshold",
            "requiredAnnotations",
            "attestations",
            "mode",
            "namespaces",
            "parameters",
        },
    )
    name = reader.get("name", str)
    if not name:
        raise ConfigError(f"{where}.name is missing")
    where = f"imagePolicies[{name}]"
    globs = reader.strings("images")
    try:
        images = tuple(dict.fromkeys(canonical_image_glob(g) for g in globs))
    except ConfigError as err:
        raise ConfigError(f"{where}.images: {err}") from None
    if not images:
        raise ConfigError(f"{where}.images must list at least one image glob")
    mode = reader.get("mode", str, "enforce")
    if mode not in MODES:
        raise ConfigError(f"{where}.mode must be one of {', '.join(MODES)}, not {mode!r}")
    raw_authorities = reader.get("authorities", list, [])
    authorities = tuple(
        _authority(a, f"{where}.authorities[{i}]", base, files)
        for i, a in enumerate(raw_authorities)
    )
    annotations = reader.get("requiredAnnotations", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
        raise ConfigError(f"{where}.requiredAnnotations must map strings to strings")
    try:
        verification = VerificationPolicy(
            authorities=authorities,
            threshold=reader.get("threshold", int, 1),
            required_annotations=dict(annotations),
        )
        attestations = tuple(resolve_predicate_type(t) for t in reader.strings("attestations"))
    except UsageError as err:
        raise ConfigError(f"{where}: {err}") from None
    return ImagePolicy(
        name=name,
        images=images,
        verification=verification,
        mode=mode,
        namespaces=_namespaces(reader.data.get("namespaces"), f"{where}.namespaces"),
        attestations=attestations,
        parameters=dict(reader.get("parameters", dict, {})),
    )


def _bundle_files(bundle: str) -> tuple[str, ...]:
    root = Path(bundle)
    if root.is_file():
        return (str(root),)
    return tuple(str(p) for p in module_files(root)) if root.is_dir() else ()


def _yaml_documents(text: str, path: str) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise ConfigError(
            f"admission config {path}: not valid YAML ({' '.join(str(err).split())})"
        ) from None


def parse_config(text: str, path: str) -> AdmissionConfig:
    """Validate a YAML configuration (``path`` anchors relative paths and names errors):
    our configuration document, ClusterImagePolicy documents, or both (multi-document)."""
    documents = [(d, path) for d in _yaml_documents(text, path)]
    return _parse(documents, path, Path(os.path.abspath(path)).parent, [os.path.abspath(path)])


def _parse(
    documents: list[tuple[Any, str]], path: str, base: Path, files: list[str]
) -> AdmissionConfig:
    """At most one document of ours (no ``kind``), any number of ClusterImagePolicies."""
    cluster_documents = [(d, src) for d, src in documents if is_cluster_image_policy(d)]
    own = [(d, src) for d, src in documents if not is_cluster_image_policy(d)]
    for document, source in own:
        if isinstance(document, dict) and "kind" in document:
            raise ConfigError(
                f"admission config {source}: kind {document['kind']!r} is not supported "
                "(ClusterImagePolicy documents and attest's own configuration are)"
            )
    if len(own) > 1:
        raise ConfigError(
            f"admission config {path}: more than one attest configuration document "
            f"({own[0][1]} and {own[1][1]}); merge them into one"
        )
    data = own[0][0] if own else {}
    reader = _Reader(
        data,
        f"admission config {path}",
        {
            "imagePolicies",
            "unmatchedImages",
            "deadlineSeconds",
            "policy",
            "registryAuth",
            "cache",
            "namespaces",
            "pinDigests",
            "maxConcurrentPerRegistry",
            "exceptions",
            "clusterImagePolicy",
        },
    )
    raw_policies = reader.get("imagePolicies", list, [])
    policies = tuple(
        _image_policy(p, f"imagePolicies[{i}]", base, files) for i, p in enumerate(raw_policies)
    )
    names = [p.name for p in policies]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"imagePolicies: name {duplicate!r} is used twice")
    unmatched = reader.get("unmatchedImages", str, "deny")
    if unmatched not in ("deny", "allow"):
        raise ConfigError(f"unmatchedImages must be 'deny' or 'allow', not {unmatched!r}")
    deadline = float(reader.get("deadlineSeconds", (int, float), DEFAULT_DEADLINE_SECONDS))
    if not 0.1 <= deadline <= MAX_DEADLINE_SECONDS:
        raise ConfigError(
            f"deadlineSeconds must be between 0.1 and {MAX_DEADLINE_SECONDS:.0f} "
            "(below the API server's webhook timeout)"
        )
    policy = _Reader(
        reader.data.get("policy") or {},
        "policy",
        {"bundle", "package", "opaUrl", "includeStatements"},
    )
    bundle = policy.get("bundle", str)
    bundle = _path(base, bundle) if bundle else str(DEFAULT_BUNDLE)
    if not Path(bundle).exists():
        raise ConfigError(f"policy.bundle {bundle}: no such file or directory")
    files.extend(_bundle_files(bundle))
    auth = tuple(_path(base, p) for p in reader.strings("registryAuth"))
    for auth_file in auth:
        if not Path(auth_file).is_file():
            raise ConfigError(f"registryAuth {auth_file}: no such file")
    files.extend(auth)
    cache = _Reader(
        reader.data.get("cache") or {}, "cache", {"maxEntries", "ttlSeconds", "tagTtlSeconds"}
    )
    max_entries = cache.get("maxEntries", int, 10_000)
    ttl = float(cache.get("ttlSeconds", (int, float), 300.0))
    tag_ttl = float(cache.get("tagTtlSeconds", (int, float), DEFAULT_TAG_TTL_SECONDS))
    if max_entries < 0 or ttl < 0 or tag_ttl < 0:
        raise ConfigError("cache.maxEntries, ttlSeconds and tagTtlSeconds must not be negative")
    per_registry = reader.get("maxConcurrentPerRegistry", int, DEFAULT_MAX_CONCURRENT_PER_REGISTRY)
    if not 1 <= per_registry <= 64:
        raise ConfigError(f"maxConcurrentPerRegistry must be between 1 and 64, not {per_registry}")
    from admission.exceptions.settings import parse_exceptions  # it builds on this module

    exceptions = parse_exceptions(reader.data.get("exceptions"), base, files)
    mounts_reader = _Reader(
        reader.data.get("clusterImagePolicy") or {},
        "clusterImagePolicy",
        {"secretsDir", "trustRootsDir"},
    )
    mounts = Mounts(
        secrets=_path(base, mounts_reader.get("secretsDir", str, "secrets")),
        trust_roots=_path(base, mounts_reader.get("trustRootsDir", str, "trustroots")),
    )
    cluster: list[ClusterPolicy] = []
    for document, source in cluster_documents:
        try:
            cluster.append(parse_cluster_image_policy(document, source, mounts, files))
        except UsageError as err:
            raise ConfigError(str(err)) from None
    cluster_names = [c.name for c in cluster]
    twice = next((n for n in cluster_names if cluster_names.count(n) > 1), None)
    if twice:
        raise ConfigError(f"ClusterImagePolicy name {twice!r} is used twice")
    return AdmissionConfig(
        path=path,
        policies=policies,
        cluster_policies=tuple(cluster),
        unmatched_images=unmatched,
        deadline_seconds=deadline,
        bundle=bundle,
        package=policy.get("package", str, "attest.admission"),
        opa_url=policy.get("opaUrl", str),
        include_statements=policy.get("includeStatements", bool, False),
        registry_auth=auth,
        cache_max_entries=max_entries,
        cache_ttl_seconds=ttl,
        tag_ttl_seconds=tag_ttl,
        namespaces=_namespaces(reader.data.get("namespaces"), "namespaces"),
        pin_digests=reader.get("pinDigests", bool, False),
        max_concurrent_per_registry=per_registry,
        exceptions=exceptions,
        files=tuple(dict.fromkeys(files)),
    )


CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def config_files(directory: str) -> list[str]:
    """The configuration files of a directory, in name order: ``*.yaml``, ``*.yml`` and
    ``*.json``, not hidden ones (a mounted ConfigMap's ``..data`` and its kin)."""
    return [
        os.path.join(directory, name)
        for name in sorted(os.listdir(directory))
        if name.endswith(CONFIG_SUFFIXES)
        and not name.startswith(".")
        and os.path.isfile(os.path.join(directory, name))
    ]


def _read_text(path: str) -> str:
    try:
        size = os.path.getsize(path)
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"admission config {path}: larger than {MAX_CONFIG_BYTES} bytes")
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"admission config {path}: not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(f"admission config {path}: {err.strerror}") from None


def load_config(path: str) -> AdmissionConfig:
    """Read and validate the configuration at ``path``: a file (multi-document YAML), or a
    directory whose files (:func:`config_files`) are read as one multi-document file."""
    if not os.path.isdir(path):
        return parse_config(_read_text(path), path)
    try:
        names = config_files(path)
    except OSError as err:
        raise ConfigError(f"admission config {path}: {err.strerror}") from None
    if not names:
        raise ConfigError(f"admission config {path}: no *.yaml, *.yml or *.json file in it")
    documents = [(d, name) for name in names for d in _yaml_documents(_read_text(name), name)]
    files = [os.path.abspath(name) for name in names]
    return _parse(documents, path, Path(os.path.abspath(path)), files)


def _signature(files: tuple[str, ...], directories: tuple[str, ...]) -> tuple[Any, ...]:
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
        state.append((directory, _bundle_files(directory)))
    return tuple(state)


def _watched(config: AdmissionConfig) -> tuple[Any, ...]:
    directories = (config.bundle,) if Path(config.bundle).is_dir() else ()
    listing: tuple[Any, ...] = ()
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


class Unstable(ConfigError):
    """The configuration's files changed while they were being loaded."""


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
        self._pending: tuple[tuple[Any, ...], float] | None = None  # (signature, first seen)
        self._retry_at = float("inf")
        if path:
            config, runtime, self._signature = self._load_stable(path)
        else:
            config = default_config()
            runtime, self._signature = build(config), _watched(config)
        self._loaded = Loaded(config, runtime, time.time())

    def _load_once(self, path: str) -> tuple[AdmissionConfig, T, tuple[Any, ...]]:
        """Load and build once; :class:`Unstable` if the files moved meanwhile."""
        config = load_config(path)
        before = _watched(config)
        runtime = self.build(config)
        again = load_config(path)
        if again != config or _watched(again) != before:
            raise Unstable(f"admission config {path}: its files changed while it was being loaded")
        return config, runtime, before

    def _load_stable(self, path: str) -> tuple[AdmissionConfig, T, tuple[Any, ...]]:
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
