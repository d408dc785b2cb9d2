"""Sigstore policy-controller ``ClusterImagePolicy`` documents, translated to our policy objects.

A ``ClusterImagePolicy`` (``policy.sigstore.dev/v1alpha1`` or ``v1beta1``) in the
admission configuration is validated here (every problem of a document is named
with its field path, like policy-controller's own validation) and becomes a
:class:`ClusterPolicy`: its key and keyless authorities are our
:class:`~attest.signing.authority.KeyAuthority` /
:class:`~attest.signing.authority.KeylessAuthority`,
checked by :func:`attest.verify.verify_image` like every other signature.

Semantics are policy-controller's: every ClusterImagePolicy that matches an image
must pass, and within one, any authority may satisfy it (then its ``spec.policy``,
if any, must pass too).  They only add requirements to our own first-match image
policies (see "ClusterImagePolicy compatibility" in policies/README.md).  What we do
not implement (KMS keys, CUE, remote policies, custom CAs, fetching the image
config...) is refused with a one-line error naming the field, never ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from admission.globs import glob_regex as wildcards
from attest.attestations.predicates import resolve_predicate_type
from attest.errors import AttestError, InvalidReference, KeyFileError, PolicyError, UsageError
from attest.oci.reference import DOCKER_HUB, ImageReference, canonical_registry, is_registry_host
from attest.policy import Finding
from attest.policy.bundle import PolicyBundle, bundle_hash, package_of
from attest.signing import keys
from attest.signing.authority import (
    TLOG_IF_PRESENT,
    TLOG_IGNORED,
    TLOG_REQUIRED,
    Authority,
    KeyAuthority,
    KeylessAuthority,
    TlogMode,
    VerificationPolicy,
)
from attest.signing.fulcio import IdentityPolicy
from attest.signing.result import CheckResult
from attest.signing.trust import load_trusted_root
from attest.verify import ImageVerification

API_VERSIONS = ("policy.sigstore.dev/v1alpha1", "policy.sigstore.dev/v1beta1")
KIND = "ClusterImagePolicy"
CLUSTER_CODE = "cluster-image-policy"  # the code of its denials and warnings (verdict.CODES)
# policy-controller's validResourceNames (pkg/apis/policy/v1beta1 validation)
RESOURCES = ("pods", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs")
HASH_ALGORITHMS: tuple[keys.HashName, ...] = get_args(keys.HashName)
REGO_PACKAGE = "sigstore"  # policy-controller evaluates data.sigstore.isCompliant
_CHECK_PACKAGE = "attest.cip.check"
_VALID_GLOB = re.compile(r"[a-zA-Z0-9\-_:/*.]+\Z")  # policy-controller's validGlob


def is_cluster_image_policy(document: Any) -> bool:
    """Whether a YAML document is a ClusterImagePolicy (by ``kind``)."""
    return isinstance(document, dict) and document.get("kind") == KIND


# -- the translated policy -----------------------------------------------------------------


@dataclass(frozen=True)
class Attestation:
    """``authorities[].attestations[]``: a verified attestation of this type must exist
    (and, with a Rego ``policy``, one of them must make ``isCompliant`` true)."""

    name: str
    predicate_type: str
    rego: str | None = None


@dataclass(frozen=True)
class CipAuthority:
    """One authority: ``static`` (``pass``/``fail``), or signers checked by ``verifiers``
    (our authorities' names: one per keyless identity, any of which suffices)."""

    name: str
    static: str | None = None  # "pass" | "fail"
    message: str = ""
    verifiers: tuple[Authority, ...] = ()
    attestations: tuple[Attestation, ...] = ()


@dataclass(frozen=True)
class MatchResource:
    """``spec.match[]``: group/version/resource (empty: any) and a label selector."""

    group: str = ""
    version: str = ""
    resource: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def applies(self, group: str, version: str, resource: str, labels: dict[str, str]) -> bool:
        if self.resource and self.resource != resource:
            return False
        if self.group and self.group != group:
            return False
        if self.version and self.version != version:
            return False
        if any(labels.get(k) != v for k, v in self.labels):
            return False
        for key, operator, values in self.expressions:
            present = key in labels
            if operator == "In" and not (present and labels[key] in values):
                return False
            if operator == "NotIn" and present and labels[key] in values:
                return False
            if operator == "Exists" and not present:
                return False
            if operator == "DoesNotExist" and present:
                return False
        return True


@dataclass(frozen=True)
class ClusterPolicy:
    """A validated ClusterImagePolicy in our terms."""

    name: str
    globs: tuple[str, ...]
    authorities: tuple[CipAuthority, ...]
    mode: str = "enforce"
    rego: str | None = None
    match: tuple[MatchResource, ...] = ()
    source: str = ""

    def applies(self, image: ImageReference, written: str, resource: ResourceInfo) -> bool:
        """Whether this policy governs ``image`` in this request (glob and ``match``)."""
        if self.match and not any(m.applies(*resource) for m in self.match):
            return False
        names = image_names(image, written)
        return any(glob_regex(g).match(n) for g in self.globs for n in names)

    @functools.cached_property
    def verification(self) -> VerificationPolicy | None:
        """Every signer of every authority, checked in one pass (None: static only)."""
        verifiers = tuple(v for a in self.authorities for v in a.verifiers)
        return VerificationPolicy(authorities=verifiers) if verifiers else None

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 over the trust material and rules (a cache key and audit value)."""
        trust = self.verification.fingerprint() if self.verification else ""
        rules = json.dumps(
            {
                "name": self.name,
                "globs": self.globs,
                "mode": self.mode,
                "rego": self.rego,
                "authorities": [
                    [a.name, a.static, a.message, [dataclasses.astuple(t) for t in a.attestations]]
                    for a in self.authorities
                ],
            },
            sort_keys=True,
        )
        return "sha256:" + hashlib.sha256(f"{trust}\0{rules}".encode()).hexdigest()


ResourceInfo = tuple[str, str, str, dict[str, str]]  # group, version, resource, labels


# -- image globs (policy-controller's rules, closed against other spellings) --------------


@functools.lru_cache(maxsize=4096)
def glob_regex(glob: str) -> re.Pattern[str]:
    """policy-controller's glob (``*`` any run but ``/``, ``**`` anything, whole string),
    with a literal registry host put in canonical form (``GHCR.IO:443`` is ``ghcr.io``,
    ``docker.io`` is ``index.docker.io``) so no other spelling of the host evades it."""
    if glob == "*/*":
        glob = f"{DOCKER_HUB}/*/*"
    elif glob == "*":
        glob = f"{DOCKER_HUB}/library/*"
    first, slash, rest = glob.partition("/")
    if slash and "*" not in first and is_registry_host(first):
        glob = f"{canonical_registry(first)}/{rest}"
    elif slash and "*" in first:
        glob = f"{first.lower()}/{rest}"
    # the wildcards are our image globs' (no "?": _VALID_GLOB keeps it out)
    return wildcards(glob)


def image_names(image: ImageReference, written: str) -> tuple[str, ...]:
    """Every spelling a glob is tried on: the canonical name alone, with its tag (``latest``
    when none) and with its digest, as written, and the short Docker Hub forms.

    policy-controller matches its full name (with tag or digest) and the reference as
    written; the bare repository and the extra spellings are added so a glob applies to
    every way of naming the same image (a policy can only add requirements)."""
    name = image.name
    names = {name, written}
    if image.digest:
        names.add(f"{name}@{image.digest}")
    if image.tag or not image.digest:
        names.add(f"{name}:{image.tag or 'latest'}")
    if image.registry == DOCKER_HUB:
        for full in list(names):
            if full.startswith(f"{DOCKER_HUB}/"):
                short = full[len(DOCKER_HUB) + 1 :]
                names.update({f"docker.io/{short}", short, short.removeprefix("library/")})
    return tuple(sorted(names))


# -- reading documents ---------------------------------------------------------------------


@dataclass(frozen=True)
class Mounts:
    """Where Kubernetes references are mounted: ``secretRef`` name N is the directory
    ``secrets/N`` holding exactly one key file; ``trustRootRef`` name N is the file
    ``trustroots/N.json`` (a Sigstore ``trusted_root.json``)."""

    secrets: str
    trust_roots: str


class _Problems:
    """Every problem of one document, each naming its field path."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)


def _mapping(value: Any, where: str, allowed: set[str], problems: _Problems) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(f"{where}: must be a mapping")
        return {}
    for key in sorted(set(value) - allowed, key=str):
        problems.add(f"{where}.{key}: unknown field")
    return value


def _text(data: dict[str, Any], key: str, where: str, problems: _Problems) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.add(f"{where}.{key}: must be a string")
        return ""
    return value


def _refused(where: str, what: str, problems: _Problems) -> None:
    problems.add(f"{where}: {what} is not supported by attest (refused, not ignored)")


def _regex(value: str, where: str, problems: _Problems) -> str | None:
    if not value:
        return None
    try:
        re.compile(value)
    except re.error as err:
        problems.add(f"{where}: invalid value: {value}: not a regular expression ({err})")
        return None
    return value


def _secret_key(
    ref: Any, where: str, mounts: Mounts, files: list[str], problems: _Problems
) -> bytes | None:
    """The one key file of the Secret mounted for ``secretRef`` (policy-controller also
    requires a Secret with exactly one entry)."""
    data = _mapping(ref, where, {"name", "namespace"}, problems)
    name = _text(data, "name", where, problems)
    if not name or "/" in name or name.startswith("."):
        problems.add(f"{where}.name: a Secret name is required")
        return None
    directory = os.path.join(mounts.secrets, name)
    try:
        entries = sorted(e for e in os.listdir(directory) if not e.startswith("."))
    except OSError as err:
        problems.add(f"{where}: Secret {name} is not mounted at {directory} ({err.strerror})")
        return None
    if len(entries) != 1:
        problems.add(
            f"{where}: Secret {name} at {directory} must hold exactly one key, not {len(entries)}"
        )
        return None
    path = os.path.join(directory, entries[0])
    files.append(path)
    try:
        return Path(path).read_bytes()
    except OSError as err:
        problems.add(f"{where}: {path}: {err.strerror}")
        return None


def _trust_root(
    name: str, where: str, mounts: Mounts, files: list[str], problems: _Problems
) -> str | None:
    if not name:
        return None
    if "/" in name or name.startswith("."):
        problems.add(f"{where}: invalid value: {name}: not a TrustRoot name")
        return None
    path = os.path.join(mounts.trust_roots, f"{name}.json")
    files.append(path)
    if not os.path.isfile(path):
        problems.add(f"{where}: TrustRoot {name} is not mounted at {path}")
        return None
    try:
        load_trusted_root(path)  # a broken root is a configuration error, not a denial later
    except AttestError as err:
        problems.add(f"{where}: TrustRoot {name} at {path}: {err}")
        return None
    return path


def _rego(value: Any, where: str, problems: _Problems) -> str | None:
    """A ``policy`` block: only inline Rego (``package sigstore``, ``isCompliant``)."""
    data = _mapping(
        value,
        where,
        {"type", "data", "remote", "configMapRef", "fetchConfigFile", "includeSpec",
         "includeObjectMeta", "includeTypeMeta"},
        problems,
    )  # fmt: skip
    if not data:
        return None
    for key in ("remote", "configMapRef"):
        if data.get(key) is not None:
            _refused(f"{where}.{key}", f"a policy from {key}", problems)
    for key in ("fetchConfigFile", "includeSpec", "includeObjectMeta", "includeTypeMeta"):
        if data.get(key):
            _refused(f"{where}.{key}", key, problems)
    kind = _text(data, "type", where, problems)
    if kind == "cue":
        _refused(f"{where}.type", "a CUE policy", problems)
        return None
    if kind != "rego":
        problems.add(f"{where}.type: invalid value: {kind!r}: must be rego or cue")
        return None
    text = _text(data, "data", where, problems)
    if not text:
        if data.get("remote") is None and data.get("configMapRef") is None:
            problems.add(f"{where}.data: missing field (an inline Rego policy)")
        return None
    try:
        if package_of(where, text) != REGO_PACKAGE:
            problems.add(f"{where}.data: a Rego policy must be 'package {REGO_PACKAGE}'")
            return None
        rego_engine(text)
    except PolicyError as err:
        problems.add(f"{where}.data: {err}")
        return None
    return text


def _identities(
    value: Any, where: str, base: str, root: str | None, problems: _Problems
) -> tuple[Authority, ...]:
    if not isinstance(value, list) or not value:
        problems.add(f"{where}: Invalid value: at least one identity is required")
        return ()
    found: list[Authority] = []
    for index, raw in enumerate(value):
        at = f"{where}[{index}]"
        data = _mapping(raw, at, {"issuer", "subject", "issuerRegExp", "subjectRegExp"}, problems)
        issuer, subject = _text(data, "issuer", at, problems), _text(data, "subject", at, problems)
        issuer_re = _regex(
            _text(data, "issuerRegExp", at, problems), f"{at}.issuerRegExp", problems
        )
        subject_re = _regex(
            _text(data, "subjectRegExp", at, problems), f"{at}.subjectRegExp", problems
        )
        bad = len(problems.items)
        if not (issuer or data.get("issuerRegExp")):
            problems.add(f"missing field(s): {at}.issuer, {at}.issuerRegExp")
        if not (subject or data.get("subjectRegExp")):
            problems.add(f"missing field(s): {at}.subject, {at}.subjectRegExp")
        for field_name in ("issuer", "subject"):
            if data.get(field_name) and data.get(f"{field_name}RegExp"):
                problems.add(
                    f"expected exactly one, got both: {at}.{field_name}, {at}.{field_name}RegExp"
                )
        if len(problems.items) == bad and (issuer or issuer_re) and (subject or subject_re):
            found.append(
                KeylessAuthority(
                    name=f"{base}#{index}",
                    identity=IdentityPolicy(
                        issuer=issuer or None,
                        issuer_regexp=issuer_re,
                        subject=subject or None,
                        subject_regexp=subject_re,
                    ),
                    trusted_root=root,
                )
            )
    return tuple(found)


def _one_root(
    refs: dict[str, str], where: str, mounts: Mounts, files: list[str], problems: _Problems
) -> str | None:
    """The authority's trust root: its ``trustRootRef`` fields must name the same one."""
    named = {field: ref for field, ref in refs.items() if ref}
    if len(set(named.values())) > 1:
        fields = ", ".join(f"{where}.{f}" for f in named)
        problems.add(f"{fields}: different TrustRoots in one authority are not supported")
        return None
    if not named:
        return None
    field, ref = next(iter(named.items()))
    return _trust_root(ref, f"{where}.{field}", mounts, files, problems)


def _authority(
    raw: Any, where: str, policy: str, index: int, mounts: Mounts, files: list[str],
    problems: _Problems,
) -> CipAuthority | None:  # fmt: skip
    data = _mapping(
        raw,
        where,
        {"name", "key", "keyless", "static", "source", "ctlog", "attestations",
         "rfc3161timestamp", "signatureFormat"},
        problems,
    )  # fmt: skip
    name = _text(data, "name", where, problems) or f"authority-{index}"
    base = f"{policy}/{name}"
    kinds = [k for k in ("key", "keyless", "static") if k in data]
    if len(kinds) != 1:
        got = "neither" if not kinds else "both"
        problems.add(
            f"expected exactly one, got {got}: {where}.key, {where}.keyless, {where}.static"
        )
    if data.get("source"):
        _refused(
            f"{where}.source", "a signature source (signatures are read beside the image)", problems
        )
    signature_format = _text(data, "signatureFormat", where, problems)
    if signature_format not in ("", "legacy", "bundle"):
        problems.add(f"{where}.signatureFormat: invalid value: {signature_format}")
    ctlog = _mapping(data.get("ctlog"), f"{where}.ctlog", {"url", "trustRootRef"}, problems)
    timestamp = _mapping(
        data.get("rfc3161timestamp"), f"{where}.rfc3161timestamp", {"trustRootRef"}, problems
    )
    ctlog_ref = _text(ctlog, "trustRootRef", f"{where}.ctlog", problems)
    tsa_ref = _text(timestamp, "trustRootRef", f"{where}.rfc3161timestamp", problems)
    verifiers: tuple[Authority, ...] = ()
    static, message = None, ""
    if "static" in data:
        block = _mapping(data["static"], f"{where}.static", {"action", "message"}, problems)
        static = _text(block, "action", f"{where}.static", problems)
        message = _text(block, "message", f"{where}.static", problems)
        if static not in ("pass", "fail"):
            problems.add(f"{where}.static.action: invalid value: {static!r}: must be pass or fail")
        for other in ("ctlog", "attestations", "rfc3161timestamp"):
            if data.get(other):
                problems.add(f"expected exactly one, got both: {where}.static, {where}.{other}")
    if "key" in data:
        verifiers = _key(data["key"], f"{where}.key", base, ctlog, "ctlog" in data, ctlog_ref, tsa_ref, where,
                         mounts, files, problems)  # fmt: skip
    if "keyless" in data:
        keyless = _mapping(
            data["keyless"],
            f"{where}.keyless",
            {"url", "identities", "ca-cert", "trustRootRef", "insecureIgnoreSCT"},
            problems,
        )
        at = f"{where}.keyless"
        if keyless.get("ca-cert") is not None and keyless.get("url") is not None:
            problems.add(f"expected exactly one, got both: {at}.ca-cert, {at}.url")
        if keyless.get("ca-cert") is not None:
            ca = _mapping(
                keyless["ca-cert"], f"{at}.ca-cert", {"data", "secretRef", "kms"}, problems
            )
            if ca.get("kms"):
                _refused(f"{at}.ca-cert.kms", "a KMS reference", problems)
            _refused(f"{at}.ca-cert", "a custom Fulcio CA (use trustRootRef)", problems)
        if keyless.get("insecureIgnoreSCT"):
            _refused(f"{at}.insecureIgnoreSCT", "skipping the certificate's SCT", problems)
        if "ctlog" in data and not ctlog:
            _refused(
                f"{where}.ctlog", "disabling the transparency log of keyless signatures", problems
            )
        root = _one_root(
            {"keyless.trustRootRef": _text(keyless, "trustRootRef", at, problems),
             "ctlog.trustRootRef": ctlog_ref, "rfc3161timestamp.trustRootRef": tsa_ref},
            where, mounts, files, problems,
        )  # fmt: skip
        verifiers = _identities(keyless.get("identities"), f"{at}.identities", base, root, problems)
    attestations: list[Attestation] = []
    raw_attestations = data.get("attestations") or []
    if not isinstance(raw_attestations, list):
        problems.add(f"{where}.attestations: must be a list")
        raw_attestations = []
    for position, item in enumerate(raw_attestations):
        at = f"{where}.attestations[{position}]"
        block = _mapping(item, at, {"name", "predicateType", "policy"}, problems)
        att_name = _text(block, "name", at, problems)
        if not att_name:
            problems.add(f"{at}.name: missing field")
        try:
            predicate = resolve_predicate_type(_text(block, "predicateType", at, problems))
        except UsageError as err:
            problems.add(f"{at}.predicateType: invalid value: {err}")
            continue
        attestations.append(
            Attestation(att_name, predicate, _rego(block.get("policy"), f"{at}.policy", problems))
        )
    return CipAuthority(name, static, message, verifiers, tuple(attestations))


def _key(
    raw: Any, at: str, base: str, ctlog: dict[str, Any], has_ctlog: bool, ctlog_ref: str,
    tsa_ref: str, where: str, mounts: Mounts, files: list[str], problems: _Problems,
) -> tuple[Authority, ...]:  # fmt: skip
    key = _mapping(raw, at, {"data", "secretRef", "kms", "hashAlgorithm"}, problems)
    given = [k for k in ("data", "secretRef", "kms") if key.get(k)]
    if len(given) != 1:
        got = "neither" if not given else "both"
        problems.add(f"expected exactly one, got {got}: {at}.data, {at}.kms, {at}.secretRef")
    algorithm = _text(key, "hashAlgorithm", at, problems) or "sha256"
    if algorithm not in HASH_ALGORITHMS:
        problems.add(f"validation failed: invalid value: {algorithm}: {at}.hashAlgorithm")
    elif algorithm != "sha256" and has_ctlog and _tlog_mode(ctlog) == TLOG_REQUIRED:
        _refused(
            f"{at}.hashAlgorithm",
            f"{algorithm} with ctlog (log entries are checked over SHA-256)",
            problems,
        )
    if key.get("kms"):
        _refused(f"{at}.kms", f"a KMS key reference ({key['kms']})", problems)
        return ()
    pem: bytes | None = None
    if key.get("data"):
        pem = _text(key, "data", at, problems).encode()
    elif key.get("secretRef") is not None:
        pem = _secret_key(key["secretRef"], f"{at}.secretRef", mounts, files, problems)
    hash_algorithm = next((h for h in HASH_ALGORITHMS if h == algorithm), None)
    if pem is None or len(given) != 1 or hash_algorithm is None:
        return ()
    try:
        keys.load_public_key(pem, what=f"{at}.data")
    except KeyFileError:
        shown = pem.decode(errors="replace").strip().splitlines()[0][:40] if pem.strip() else ""
        problems.add(f"validation failed: invalid value: {shown}: {at}.data (not a PEM public key)")
        return ()
    root = _one_root(
        {"ctlog.trustRootRef": ctlog_ref, "rfc3161timestamp.trustRootRef": tsa_ref},
        where, mounts, files, problems,
    )  # fmt: skip
    mode = _tlog_mode(ctlog if has_ctlog else None)
    if algorithm != "sha256":  # policy-controller's meaning without ctlog: the log is not read
        mode = TLOG_IGNORED
    return (
        KeyAuthority(
            name=base,
            public_key_pem=pem,
            trusted_root=root,
            tlog=mode,
            hash_algorithm=hash_algorithm,
        ),
    )


def _tlog_mode(ctlog: dict[str, Any] | None) -> TlogMode:
    """policy-controller's meaning of ``ctlog`` on a key authority: absent, an entry is
    checked when present; ``url`` or ``trustRootRef``, one is required; ``{}``, none is
    looked at."""
    if ctlog is None:
        return TLOG_IF_PRESENT
    return TLOG_REQUIRED if ctlog.get("url") or ctlog.get("trustRootRef") else TLOG_IGNORED


def parse_cluster_image_policy(
    document: dict[str, Any], source: str, mounts: Mounts, files: list[str]
) -> ClusterPolicy:
    """Validate one ClusterImagePolicy document; :class:`UsageError` naming every problem."""
    problems = _Problems()
    where = f"ClusterImagePolicy in {source}"
    _mapping(document, "", {"apiVersion", "kind", "metadata", "spec", "status"}, problems)
    problems.items = [p.lstrip(".") for p in problems.items]
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    name = metadata.get("name")
    name = name if isinstance(name, str) else ""
    if name:
        where = f"ClusterImagePolicy {name} ({source})"
    else:
        problems.add("metadata.name: missing field")
    if document.get("apiVersion") not in API_VERSIONS:
        problems.add(
            f"apiVersion: invalid value: {document.get('apiVersion')!r}: must be one of "
            f"{', '.join(API_VERSIONS)}"
        )
    spec = _mapping(
        document.get("spec"), "spec", {"images", "authorities", "policy", "mode", "match"}, problems
    )
    globs: list[str] = []
    images = spec.get("images")
    if not isinstance(images, list) or not images:
        problems.add("spec.images: missing field (at least one glob)")
        images = []
    for index, item in enumerate(images):
        at = f"spec.images[{index}]"
        block = _mapping(item, at, {"glob"}, problems)
        glob = _text(block, "glob", at, problems)
        if not glob:
            problems.add(f"{at}.glob: missing field")
        elif not _VALID_GLOB.match(glob):
            problems.add(f"{at}.glob: invalid value: {glob}: not a glob")
        else:
            try:
                glob_regex(glob)
            except InvalidReference as err:
                problems.add(f"{at}.glob: invalid value: {glob}: {err}")
                continue
            globs.append(glob)
    authorities: list[CipAuthority] = []
    raw_authorities = spec.get("authorities")
    if not isinstance(raw_authorities, list) or not raw_authorities:
        problems.add("spec.authorities: missing field (at least one authority)")
        raw_authorities = []
    for index, raw in enumerate(raw_authorities):
        found = _authority(raw, f"spec.authorities[{index}]", name, index, mounts, files, problems)
        if found is not None:
            authorities.append(found)
    names = [a.name for a in authorities]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        problems.add(f"spec.authorities: name {duplicate!r} is used twice")
    mode = _text(spec, "mode", "spec", problems) or "enforce"
    if mode not in ("enforce", "warn"):
        problems.add(f"spec.mode: invalid value: {mode}: must be enforce or warn")
    match = _matches(spec.get("match"), problems)
    rego = _rego(spec.get("policy"), "spec.policy", problems)
    if problems.items:
        raise UsageError(f"{where}: {'; '.join(problems.items)}")
    return ClusterPolicy(
        name=name,
        globs=tuple(globs),
        authorities=tuple(authorities),
        mode=mode,
        rego=rego,
        match=match,
        source=source,
    )


def _matches(value: Any, problems: _Problems) -> tuple[MatchResource, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add("spec.match: must be a list")
        return ()
    found = []
    for index, raw in enumerate(value):
        at = f"spec.match[{index}]"
        data = _mapping(raw, at, {"group", "version", "resource", "selector"}, problems)
        resource = _text(data, "resource", at, problems)
        if resource and resource not in RESOURCES:
            problems.add(f"validation failed: invalid value: {resource}: {at}.resource")
        selector = _mapping(
            data.get("selector"), f"{at}.selector", {"matchLabels", "matchExpressions"}, problems
        )
        labels = selector.get("matchLabels") or {}
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            problems.add(f"{at}.selector.matchLabels: must map strings to strings")
            labels = {}
        expressions = []
        for position, raw_expression in enumerate(selector.get("matchExpressions") or []):
            ex_at = f"{at}.selector.matchExpressions[{position}]"
            expression = _mapping(raw_expression, ex_at, {"key", "operator", "values"}, problems)
            operator = _text(expression, "operator", ex_at, problems)
            if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
                problems.add(f"{ex_at}.operator: invalid value: {operator}")
            values = expression.get("values") or []
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                problems.add(f"{ex_at}.values: must be a list of strings")
                values = []
            expressions.append((_text(expression, "key", ex_at, problems), operator, tuple(values)))
        found.append(
            MatchResource(
                group=_text(data, "group", at, problems),
                version=_text(data, "version", at, problems),
                resource=resource,
                labels=tuple(sorted(labels.items())),
                expressions=tuple(expressions),
            )
        )
    return tuple(found)


# -- judging ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def rego_engine(text: str) -> Any:
    """A compiled engine for one policy text with our ``deny`` wrapper (cached by text)."""
    from attest.policy.regopy import RegopyEngine

    check = f"""package {_CHECK_PACKAGE}
import rego.v1
deny contains "isCompliant is not true" if not data.{REGO_PACKAGE}.isCompliant == true
"""  # anything but true (false, undefined, another value) is a failure
    modules = {"policy.rego": text, "attest-cip-check.rego": check}
    return RegopyEngine(
        PolicyBundle("ClusterImagePolicy policy", modules, bundle_hash(list(modules.values())))
    )


def rego_problems(text: str, document: dict[str, Any]) -> list[str]:
    """Why ``document`` does not satisfy the policy (empty: ``isCompliant`` is true).
    An evaluation error is a reason too: it never passes."""
    try:
        return list(rego_engine(text).evaluate(document, _CHECK_PACKAGE).deny)
    except AttestError as err:
        return [f"policy error: {err}"]
    except Exception as err:  # an engine bug must fail closed, with a reason
        return [f"policy error: {type(err).__name__}: {err}"]


def _by(check: CheckResult, verifiers: tuple[Authority, ...]) -> bool:
    names = {v.name for v in verifiers}
    return check.verified and bool(names.intersection(check.authorities or (check.authority,)))


def _why(checks: tuple[CheckResult, ...], verifiers: tuple[Authority, ...]) -> str:
    """`` (<first reason>)`` an authority gave for a signature it did not verify."""
    if not checks:
        return " (no signature found)"
    prefixes = tuple(f"{v.name}: " for v in verifiers)
    for check in checks:
        for reason in check.reasons:
            if reason.startswith(prefixes):
                return f" ({reason.split(': ', 1)[1]})"
    first = next((r for c in checks for r in c.reasons), "")
    return f" ({first})" if first else ""


def _authority_result(
    authority: CipAuthority, verification: ImageVerification | None
) -> tuple[dict[str, Any] | None, str]:
    """(what matched, for ``authorityMatches``) or (None, why it did not)."""
    if authority.static == "pass":
        return {"static": True}, ""
    if authority.static == "fail":
        return None, authority.message or "static fail"
    if verification is None:
        return None, "not verified"
    if not authority.attestations:
        signatures = [s for s in verification.signatures if _by(s, authority.verifiers)]
        if not signatures:
            return None, "no signature verified by this authority" + _why(
                verification.signatures, authority.verifiers
            )
        return {"signatures": [s.signer.to_dict() for s in signatures]}, ""
    matched: dict[str, list[dict[str, Any]]] = {}
    for wanted in authority.attestations:
        found = [
            a
            for a in verification.attestations
            if _by(a, authority.verifiers) and a.predicate_type == wanted.predicate_type
        ]
        if not found:
            return (
                None,
                f"no attestation of type {wanted.predicate_type} verified by this authority",
            )
        if wanted.rego is not None:
            reasons: list[str] = []
            passing = []
            for attestation in found:
                problems = rego_problems(wanted.rego, attestation.statement or {})
                (reasons.extend(problems) if problems else passing.append(attestation))
            if not passing:
                return None, f"attestation {wanted.name}: {'; '.join(sorted(set(reasons)))}"
            found = passing
        matched[wanted.name] = [a.signer.to_dict() for a in found]
    return {"attestations": matched}, ""


def judge_policy(policy: ClusterPolicy, verification: ImageVerification | None) -> dict[str, Any]:
    """One policy's verdict as plain data (kept in decision records, so replays agree)."""
    matches: dict[str, Any] = {}
    reasons: list[str] = []
    for authority in policy.authorities:
        matched, why = _authority_result(authority, verification)
        if matched is None:
            reasons.append(f"authority {authority.name}: {why}")
        else:
            matches[authority.name] = matched
    if matches and policy.rego is not None:
        problems = rego_problems(policy.rego, {"authorityMatches": matches})
        if problems:
            reasons = [f"policy: {'; '.join(problems)}"]
            matches = {}
    return {
        "name": policy.name,
        "mode": policy.mode,
        "passed": bool(matches),
        "reasons": [] if matches else reasons,
    }


def union_verification(policies: tuple[ClusterPolicy, ...]) -> VerificationPolicy | None:
    """All signers of the matched policies in one pass (names are ``policy/authority``)."""
    verifiers = tuple(
        {v.name: v for p in policies for a in p.authorities for v in a.verifiers}.values()
    )
    return VerificationPolicy(authorities=verifiers) if verifiers else None


@dataclass(frozen=True)
class ClusterVerification(ImageVerification):
    """An image's verification with the verdict of each matching ClusterImagePolicy."""

    cluster: tuple[dict[str, Any], ...] = ()


def verify_with_policies(
    verifier: Callable[..., ImageVerification],
    reference: ImageReference,
    own: VerificationPolicy | None,
    policies: tuple[ClusterPolicy, ...],
    **options: Any,
) -> ImageVerification:
    """Our policy's verification (``own``; None for an image only ClusterImagePolicies
    govern, which is then verified when every one of them passed) plus their verdicts.

    The two are separate passes on purpose: a ClusterImagePolicy's signer must never
    count towards our policy's threshold."""
    ours = verifier(reference, own, **options) if own is not None else None
    if not policies:
        assert ours is not None
        return ours
    union = union_verification(policies)
    theirs = verifier(reference, union, **options) if union is not None else None
    verdicts = tuple(judge_policy(p, theirs) for p in policies)
    base = ours or theirs
    if base is None:  # static authorities only: nothing was looked up
        base = ImageVerification(str(reference), reference.digest or "", (), (), (), True, ())
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(ImageVerification)}
    if ours is None:
        fields["verified"] = all(v["passed"] for v in verdicts)
    return ClusterVerification(**fields, cluster=verdicts)


def cluster_fingerprint(policies: tuple[ClusterPolicy, ...]) -> str:
    return "+".join(p.fingerprint for p in policies)


def cluster_verdicts(
    policies: tuple[ClusterPolicy, ...], verification: ImageVerification | None, error: str | None
) -> list[dict[str, Any]]:
    """The verdicts for ``input.images[].clusterImagePolicies``: from the verification, or,
    when it did not finish (timeout, registry error), each policy unmet with that reason."""
    if isinstance(verification, ClusterVerification):
        return [dict(v) for v in verification.cluster]
    reason = error or "not verified"
    return [
        {"name": p.name, "mode": p.mode, "passed": False, "reasons": [reason]} for p in policies
    ]


def cluster_outcomes(
    reference: str, entry: dict[str, Any]
) -> tuple[tuple[Finding, ...], tuple[Finding, ...]]:
    """(denials, warnings) owed to the ClusterImagePolicies of one ``input.images`` entry:
    each one not passed, by its own mode, whatever the mode of our image policy."""
    denials: list[Finding] = []
    warnings: list[Finding] = []
    verdicts = entry.get("clusterImagePolicies")
    for verdict in verdicts if isinstance(verdicts, list) else []:
        if not isinstance(verdict, dict) or verdict.get("passed") is True:
            continue
        reasons = verdict.get("reasons")
        reasons = reasons if isinstance(reasons, list) else []
        text = "; ".join(str(r) for r in reasons) or "not satisfied"
        message = f"{reference}: ClusterImagePolicy {verdict.get('name')}: {text}"
        if verdict.get("mode") == "warn":
            warned = f"warn mode (ClusterImagePolicy {verdict.get('name')}): {message}"
            warnings.append(Finding(warned, reference, CLUSTER_CODE))
        else:
            denials.append(Finding(message, reference, CLUSTER_CODE))
    return tuple(denials), tuple(warnings)


def resource_info(request: Any) -> ResourceInfo:
    """What ``spec.match`` selects on: group, version, resource (the request's, else the
    kind's plural) and the object's labels."""
    resource = request.resource or f"{request.kind.kind.lower()}s"
    return (request.kind.group, request.kind.version, resource, request.labels)
