"""Sigstore trust material: trusted roots, signing configs and client trust configs.

A *trusted root* (``trusted_root.json``) lists what a verifier trusts: Fulcio
certificate authorities, Rekor transparency logs, certificate-transparency logs
and timestamp authorities, each with the time range it is valid for.  A
*signing config* lists the services a signer talks to (Fulcio, Rekor, TSA, OIDC).
A *client trust config* (``--trust-config``, the format sigstore-python reads)
holds both.  This module loads them once into plain dataclasses for our own
checks (key-based bundles, Rekor entries sigstore-python does not accept) and
into sigstore-python objects for its verifier and signer.  With no path the
Sigstore public-good root shipped inside sigstore-python is used, offline.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError
from sigstore.models import ClientTrustConfig, TrustedRoot
from sigstore_models.common.v1 import TimeRange as ModelTimeRange
from sigstore_models.trustroot import v1 as trustroot_v1

from attest.errors import UsageError
from attest.signing.keys import PublicKey, as_public_key

PUBLIC_GOOD = "sigstore-public-good"
_MAX_TRUST_FILE_BYTES = 4 * 1024 * 1024


class TrustMaterialError(UsageError):
    """A trusted root, signing config or trust config file is unreadable or malformed."""

    exit_code = 2


@dataclass(frozen=True)
class TimeRange:
    """A closed validity interval; ``end`` None means still valid."""

    start: datetime | None
    end: datetime | None

    def contains(self, moment: datetime) -> bool:
        if self.start is not None and moment < self.start:
            return False
        return self.end is None or moment <= self.end


@dataclass(frozen=True)
class LogKey:
    """A transparency or certificate-transparency log's public key."""

    base_url: str
    log_id: bytes
    key: PublicKey
    key_details: str
    valid: TimeRange
    checkpoint_key_id: bytes | None = None


@dataclass(frozen=True)
class Authority:
    """A certificate authority (Fulcio) or timestamp authority: its chain, leaf first."""

    uri: str
    certificates: tuple[x509.Certificate, ...]
    valid: TimeRange


@dataclass(frozen=True, eq=False)
class TrustRoot:
    """A parsed trusted root plus the sigstore-python object built from the same JSON.

    Compared and hashed by identity, so verifiers can be cached per loaded root.
    """

    name: str
    tlogs: tuple[LogKey, ...]
    ctlogs: tuple[LogKey, ...]
    certificate_authorities: tuple[Authority, ...]
    timestamp_authorities: tuple[Authority, ...]
    sigstore: TrustedRoot = field(repr=False, compare=False)
    fingerprint: str = ""

    def tlog_for(self, log_id: bytes) -> LogKey | None:
        """The transparency log whose id (SHA-256 of its key) is ``log_id``."""
        return next((log for log in self.tlogs if log.log_id == log_id), None)

    def ctlog_for(self, log_id: bytes) -> LogKey | None:
        return next((log for log in self.ctlogs if log.log_id == log_id), None)

    def fulcio_certificates(self) -> list[x509.Certificate]:
        return [cert for ca in self.certificate_authorities for cert in ca.certificates]


def _time(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _range(valid_for: ModelTimeRange | None) -> TimeRange:
    if valid_for is None:
        return TimeRange(None, None)
    return TimeRange(_time(valid_for.start), _time(valid_for.end))


def _log_key(log: trustroot_v1.TransparencyLogInstance, what: str) -> LogKey | None:
    raw = log.public_key.raw_bytes
    if not raw:
        return None
    try:
        key = as_public_key(serialization.load_der_public_key(raw))
    except ValueError as err:
        raise TrustMaterialError(
            f"{what}: log {log.base_url} has an unreadable key ({err})"
        ) from None
    if key is None:
        raise TrustMaterialError(f"{what}: log {log.base_url} has an unsupported key type")
    checkpoint_id = log.checkpoint_key_id.key_id if log.checkpoint_key_id else None
    return LogKey(
        base_url=log.base_url,
        log_id=log.log_id.key_id,
        key=key,
        key_details=log.public_key.key_details.value,
        valid=_range(log.public_key.valid_for),
        checkpoint_key_id=checkpoint_id,
    )


def _authority(ca: trustroot_v1.CertificateAuthority, what: str) -> Authority:
    try:
        certs = tuple(
            x509.load_der_x509_certificate(c.raw_bytes) for c in ca.cert_chain.certificates
        )
    except ValueError as err:
        raise TrustMaterialError(
            f"{what}: authority {ca.uri} has an unreadable certificate ({err})"
        ) from None
    return Authority(uri=ca.uri or "", certificates=certs, valid=_range(ca.valid_for))


def _closed_tsa_ranges(model: trustroot_v1.TrustedRoot) -> trustroot_v1.TrustedRoot:
    """The root as sigstore-python must see it for timestamp authorities' ends to count.

    A trusted root's ``validFor`` is a closed range (protobuf-specs' TimeRange; sigstore-go
    and cosign accept a timestamp exactly at its end), but sigstore-python checks
    ``gen_time < end``.  Its copy of the root gets each TSA end one microsecond later —
    the finest time it compares — so that exactly-at-the-end counts, and nothing else.
    """
    if not any(ca.valid_for and ca.valid_for.end for ca in model.timestamp_authorities):
        return model
    copy = model.model_copy(deep=True)
    for authority in copy.timestamp_authorities:
        if authority.valid_for is not None and authority.valid_for.end is not None:
            authority.valid_for.end = authority.valid_for.end + timedelta(microseconds=1)
    return copy


def _from_model(model: trustroot_v1.TrustedRoot, name: str, raw: bytes) -> TrustRoot:
    what = f"trusted root {name}"
    tlogs = tuple(k for log in model.tlogs if (k := _log_key(log, what)))
    ctlogs = tuple(k for log in model.ctlogs if (k := _log_key(log, what)))
    try:
        sigstore_root = TrustedRoot(_closed_tsa_ranges(model))
    except Exception as err:  # sigstore.errors.Error: unsupported media type
        raise TrustMaterialError(f"{what}: {err}") from None
    return TrustRoot(
        name=name,
        tlogs=tlogs,
        ctlogs=ctlogs,
        certificate_authorities=tuple(_authority(ca, what) for ca in model.certificate_authorities),
        timestamp_authorities=tuple(_authority(ca, what) for ca in model.timestamp_authorities),
        sigstore=sigstore_root,
        fingerprint="sha256:" + hashlib.sha256(raw).hexdigest(),
    )


def _read(path: str, what: str) -> bytes:
    file = Path(path)
    try:
        if file.stat().st_size > _MAX_TRUST_FILE_BYTES:
            raise TrustMaterialError(f"{what} {path} is too large to be trust material")
        return file.read_bytes()
    except FileNotFoundError:
        raise TrustMaterialError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise TrustMaterialError(f"{what} {path} is a directory, not a file") from None
    except OSError as err:
        raise TrustMaterialError(f"{what} {path} cannot be read: {err.strerror}") from None


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    if first.get("type") == "json_invalid":
        return "not JSON"
    where = ".".join(str(part) for part in first.get("loc", ())) or "document"
    return f"{where}: {first.get('msg', 'invalid')}"


def parse_trusted_root(raw: bytes, *, name: str = "<memory>") -> TrustRoot:
    """Parse trusted-root JSON (``application/vnd.dev.sigstore.trustedroot…``)."""
    try:
        model = trustroot_v1.TrustedRoot.from_json(raw)
    except ValidationError as err:
        raise TrustMaterialError(f"trusted root {name} is unusable ({_first_error(err)})") from None
    except ValueError as err:
        raise TrustMaterialError(f"trusted root {name} is not JSON ({err})") from None
    return _from_model(model, name, raw)


@lru_cache(maxsize=32)
def _load_trusted_root_cached(path: str, mtime_ns: int, size: int) -> TrustRoot:
    return parse_trusted_root(_read(path, "trusted root"), name=path)


def load_trusted_root(path: str | None = None) -> TrustRoot:
    """The trusted root in ``path``, or the Sigstore public-good root (offline) when None."""
    if path is None:
        return public_good_root()
    try:
        stat = Path(path).stat()
    except OSError:
        _read(path, "trusted root")  # raises the one-line error
        raise
    return _load_trusted_root_cached(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=1)
def _public_good_config() -> ClientTrustConfig:
    logger = logging.getLogger("sigstore._internal.tuf")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "TUF repository is loaded in offline mode" is expected
    try:
        return ClientTrustConfig.production(offline=True)
    finally:
        logger.setLevel(level)


@lru_cache(maxsize=1)
def public_good_root() -> TrustRoot:
    """The Sigstore public-good trusted root embedded in sigstore-python (no network)."""
    config = _public_good_config()
    # sigstore-python exposes the parsed protobuf model only as ``_inner``.
    model: trustroot_v1.TrustedRoot = config.trusted_root._inner
    raw = model.to_json().encode()
    return _from_model(model, PUBLIC_GOOD, raw)


@dataclass(frozen=True)
class TrustConfig:
    """What a keyless signer needs: services to call and the root to check their answers."""

    name: str
    sigstore: ClientTrustConfig = field(repr=False)
    root: TrustRoot = field(repr=False)


def _config_from_model(model: trustroot_v1.ClientTrustConfig, name: str, raw: bytes) -> TrustConfig:
    config = ClientTrustConfig(model)
    try:
        config.signing_config  # noqa: B018 - validates the services eagerly
    except Exception as err:  # sigstore.errors.Error: no usable Fulcio/Rekor
        raise TrustMaterialError(f"signing config in {name}: {err}") from None
    root = _from_model(model.trusted_root, name, json.dumps(_json(raw).get("trustedRoot")).encode())
    return TrustConfig(name=name, sigstore=config, root=root)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def load_trust_config(path: str | None = None) -> TrustConfig:
    """A client trust config file (``--trust-config``), or the public-good one when None."""
    if path is None:
        config = _public_good_config()
        return TrustConfig(name=PUBLIC_GOOD, sigstore=config, root=public_good_root())
    raw = _read(path, "trust config")
    try:
        model = trustroot_v1.ClientTrustConfig.from_json(raw)
    except ValidationError as err:
        raise TrustMaterialError(f"trust config {path} is unusable ({_first_error(err)})") from None
    except ValueError as err:
        raise TrustMaterialError(f"trust config {path} is not JSON ({err})") from None
    return _config_from_model(model, path, raw)


def trust_config_from_parts(trusted_root: str, signing_config: str) -> TrustConfig:
    """Combine a trusted root file and a signing config file into one trust config."""
    root_raw = _read(trusted_root, "trusted root")
    config_raw = _read(signing_config, "signing config")
    document = {
        "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        "trustedRoot": _json(root_raw),
        "signingConfig": _json(config_raw),
    }
    raw = json.dumps(document).encode()
    try:
        model = trustroot_v1.ClientTrustConfig.from_json(raw)
    except ValidationError as err:
        raise TrustMaterialError(
            f"trusted root {trusted_root} / signing config {signing_config} are unusable "
            f"({_first_error(err)})"
        ) from None
    return _config_from_model(model, f"{trusted_root}+{signing_config}", raw)
