"""The webhook's configuration: image policies in the spirit of Sigstore's ClusterImagePolicy.

A YAML file (validated on load; unknown keys are errors, since a typo in a
security policy must not silently weaken it) maps image globs to authorities
(public keys, or keyless issuer/subject with exact or regex match and an
optional per-policy trusted root), a threshold, required attestations, a mode
(``enforce`` or ``warn``), namespace filters and free ``parameters`` for the
Rego policy.  Images no policy matches are denied unless ``unmatchedImages:
allow``.  Relative paths are relative to the file.  :mod:`admission.watcher`
reloads it when its files change.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from admission.bundled import default_bundle
from admission.errors import ConfigError
from admission.verdict import MODES, UNMATCHED_IMAGES, Mode, UnmatchedImages
from attest.attestations.predicates import resolve_predicate_type
from attest.errors import InvalidReference, UsageError
from attest.oci.reference import DOCKER_HUB, canonical_registry, is_registry_host
from attest.policy.bundle import module_files
from attest.signing.bundle import TLOG_IF_PRESENT, TLOG_REQUIRED
from attest.verify import KeyAuthority, KeylessAuthority, VerificationPolicy

DEFAULT_BUNDLE = default_bundle()  # the repository's policies/, or the installed copy
DEFAULT_DEADLINE_SECONDS = 8.0
DEFAULT_TAG_TTL_SECONDS = 5.0  # see README "Tag resolution and freshness"
DEFAULT_MAX_CONCURRENT_PER_REGISTRY = 4  # see README "Deadline and hostile registries"
MAX_DEADLINE_SECONDS = 29.0
MAX_CONFIG_BYTES = 1024 * 1024


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
    mode: Mode = "enforce"
    namespaces: NamespaceFilter = NamespaceFilter()
    attestations: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def fingerprint(self) -> str:
        """The trust material's fingerprint (computed once: it reads trusted roots)."""
        return self.verification.fingerprint()

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
    unmatched_images: UnmatchedImages = "deny"
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
    files: tuple[str, ...] = ()

    def policy_for(self, image_name: str, namespace: str) -> ImagePolicy | None:
        """The first policy (in file order) whose globs and namespaces match."""
        return next((p for p in self.policies if p.matches(image_name, namespace)), None)

    @functools.cached_property
    def trust_fingerprint(self) -> str:
        """SHA-256 over every policy's trust fingerprint: all keys, identities and roots."""
        digest = hashlib.sha256()
        for policy in self.policies:
            digest.update(f"{policy.name}\0{policy.fingerprint}\n".encode())
        return "sha256:" + digest.hexdigest()


def default_config() -> AdmissionConfig:
    """No image policies (every image is denied) and the built-in policy bundle."""
    return AdmissionConfig(path="<built-in default>", files=bundle_files(str(DEFAULT_BUNDLE)))


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
            load_pem_public_key(pem)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}.key is not a PEM public key ({err})") from None
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
        return KeylessAuthority(
            name=name,
            issuer=keyless.get("issuer", str),
            issuer_regexp=_regex(keyless.get("issuerRegExp", str), f"{where}.keyless.issuerRegExp"),
            subject=keyless.get("subject", str),
            subject_regexp=_regex(
                keyless.get("subjectRegExp", str), f"{where}.keyless.subjectRegExp"
            ),
            trusted_root=root,
        )
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


def bundle_files(bundle: str) -> tuple[str, ...]:
    """The module files of a policy bundle (a file, or a directory's ``.rego`` files)."""
    root = Path(bundle)
    if root.is_file():
        return (str(root),)
    return tuple(str(p) for p in module_files(root)) if root.is_dir() else ()


def parse_config(text: str, path: str) -> AdmissionConfig:
    """Validate a YAML configuration (``path`` anchors relative paths and names errors)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(
            f"admission config {path}: not valid YAML ({' '.join(str(err).split())})"
        ) from None
    data = {} if data is None else data
    base = Path(os.path.abspath(path)).parent
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
        },
    )
    files: list[str] = [os.path.abspath(path)]
    raw_policies = reader.get("imagePolicies", list, [])
    policies = tuple(
        _image_policy(p, f"imagePolicies[{i}]", base, files) for i, p in enumerate(raw_policies)
    )
    names = [p.name for p in policies]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise ConfigError(f"imagePolicies: name {duplicate!r} is used twice")
    unmatched = reader.get("unmatchedImages", str, "deny")
    if unmatched not in UNMATCHED_IMAGES:
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
    files.extend(bundle_files(bundle))
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
    return AdmissionConfig(
        path=path,
        policies=policies,
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
        files=tuple(dict.fromkeys(files)),
    )


def load_config(path: str) -> AdmissionConfig:
    """Read and validate the configuration file at ``path``."""
    try:
        size = os.path.getsize(path)
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"admission config {path}: larger than {MAX_CONFIG_BYTES} bytes")
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"admission config {path}: not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(f"admission config {path}: {err.strerror}") from None
    return parse_config(text, path)
