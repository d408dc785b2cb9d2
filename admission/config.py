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

import dataclasses
import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from admission.errors import ConfigError
from admission.exceptions.settings import ExceptionSet, parse_exceptions
from admission.fields import Reader, parse_authority, resolve_path
from admission.globs import canonical_image_glob, glob_regex, image_glob_regex
from admission.policy_cache import DEFAULT_POLICY_CACHE_ENTRIES
from admission.verdict import MODES, UNMATCHED_IMAGES, Mode, UnmatchedImages
from attest.attestations.predicates import resolve_predicate_type
from attest.errors import UsageError
from attest.oci.reference import (
    ImageReference,
)
from attest.policy.bundle import module_files
from attest.signing.authority import (
    VerificationPolicy,
)

DEFAULT_BUNDLE = default_bundle()  # the repository's policies/, or the installed copy
DEFAULT_DEADLINE_SECONDS = 8.0
DEFAULT_TAG_TTL_SECONDS = 5.0  # see README "Tag resolution and freshness"
DEFAULT_MAX_CONCURRENT_PER_REGISTRY = 4  # see README "Deadline and hostile registries"
MAX_DEADLINE_SECONDS = 29.0
MAX_CONFIG_BYTES = 1024 * 1024


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
    unmatched_images: UnmatchedImages = "deny"
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
    bundle: str = str(DEFAULT_BUNDLE)
    package: str = "attest.admission"
    opa_url: str | None = None
    include_statements: bool = False
    registry_auth: tuple[str, ...] = ()
    cache_max_entries: int = 10_000
    cache_ttl_seconds: float = 300.0
    policy_cache_max_entries: int = DEFAULT_POLICY_CACHE_ENTRIES
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
    return AdmissionConfig(path="<built-in default>", files=bundle_files(str(DEFAULT_BUNDLE)))


def _namespaces(data: Any, where: str) -> NamespaceFilter:
    if data is None:
        return NamespaceFilter()
    reader = Reader(data, where, {"include", "exclude"})
    return NamespaceFilter(reader.strings("include", ("*",)), reader.strings("exclude"))


def _image_policy(data: Any, where: str, base: Path, files: list[str]) -> ImagePolicy:
    reader = Reader(
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
        parse_authority(a, f"{where}.authorities[{i}]", base, files)
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
    reader = Reader(
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
    if unmatched not in UNMATCHED_IMAGES:
        raise ConfigError(f"unmatchedImages must be 'deny' or 'allow', not {unmatched!r}")
    deadline = float(reader.get("deadlineSeconds", (int, float), DEFAULT_DEADLINE_SECONDS))
    if not 0.1 <= deadline <= MAX_DEADLINE_SECONDS:
        raise ConfigError(
            f"deadlineSeconds must be between 0.1 and {MAX_DEADLINE_SECONDS:.0f} "
            "(below the API server's webhook timeout)"
        )
    policy = Reader(
        reader.data.get("policy") or {},
        "policy",
        {"bundle", "package", "opaUrl", "includeStatements"},
    )
    bundle = policy.get("bundle", str)
    bundle = resolve_path(base, bundle) if bundle else str(DEFAULT_BUNDLE)
    if not Path(bundle).exists():
        raise ConfigError(f"policy.bundle {bundle}: no such file or directory")
    files.extend(bundle_files(bundle))
    auth = tuple(resolve_path(base, p) for p in reader.strings("registryAuth"))
    for auth_file in auth:
        if not Path(auth_file).is_file():
            raise ConfigError(f"registryAuth {auth_file}: no such file")
    files.extend(auth)
    cache = Reader(
        reader.data.get("cache") or {},
        "cache",
        {"maxEntries", "ttlSeconds", "tagTtlSeconds", "policyMaxEntries"},
    )
    max_entries = cache.get("maxEntries", int, 10_000)
    ttl = float(cache.get("ttlSeconds", (int, float), 300.0))
    tag_ttl = float(cache.get("tagTtlSeconds", (int, float), DEFAULT_TAG_TTL_SECONDS))
    policy_entries = cache.get("policyMaxEntries", int, DEFAULT_POLICY_CACHE_ENTRIES)
    if max_entries < 0 or ttl < 0 or tag_ttl < 0 or policy_entries < 0:
        raise ConfigError(
            "cache.maxEntries, ttlSeconds, tagTtlSeconds and policyMaxEntries must not be negative"
        )
    per_registry = reader.get("maxConcurrentPerRegistry", int, DEFAULT_MAX_CONCURRENT_PER_REGISTRY)
    if not 1 <= per_registry <= 64:
        raise ConfigError(f"maxConcurrentPerRegistry must be between 1 and 64, not {per_registry}")
    exceptions = parse_exceptions(reader.data.get("exceptions"), base, files)
    mounts_reader = Reader(
        reader.data.get("clusterImagePolicy") or {},
        "clusterImagePolicy",
        {"secretsDir", "trustRootsDir"},
    )
    mounts = Mounts(
        secrets=resolve_path(base, mounts_reader.get("secretsDir", str, "secrets")),
        trust_roots=resolve_path(base, mounts_reader.get("trustRootsDir", str, "trustroots")),
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
        policy_cache_max_entries=policy_entries,
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
