"""Reading the configuration's YAML: typed fields named in every error, paths, authorities.

The admission configuration (:mod:`admission.config`) and the exception settings
(:mod:`admission.exceptions.settings`) read their mappings with these.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from admission.errors import ConfigError
from attest.errors import KeyFileError, UsageError
from attest.signing import keys
from attest.signing.authority import TLOG_IF_PRESENT, TLOG_REQUIRED, KeyAuthority, KeylessAuthority
from attest.signing.fulcio import IdentityPolicy


class Reader:
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


def resolve_path(base: Path, value: str) -> str:
    """``value`` made absolute against ``base``, symlinks kept: a file of a ConfigMap or
    Secret volume is read through ``..data``, never pinned to one ``..<timestamp>/``."""
    return os.path.abspath(os.path.join(base, os.path.expanduser(value)))


def regex_field(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    try:
        re.compile(value)
    except re.error as err:
        raise ConfigError(f"{where} is not a valid regular expression ({err})") from None
    return value


def parse_authority(
    data: Any, where: str, base: Path, files: list[str]
) -> KeyAuthority | KeylessAuthority:
    reader = Reader(data, where, {"name", "key", "keyless", "ctlog"})
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
        key = Reader(reader.data["key"], f"{where}.key", {"path", "pem"})
        pem_text = key.get("pem", str)
        key_path = key.get("path", str)
        if bool(pem_text) == bool(key_path):
            raise ConfigError(f"{where}.key: give exactly one of 'path' or 'pem'")
        if key_path:
            resolved = resolve_path(base, key_path)
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
        ctlog = Reader(reader.data["ctlog"] or {}, f"{where}.ctlog", {"trustedRoot"})
        log_root = ctlog.get("trustedRoot", str)
        if log_root:
            log_root = resolve_path(base, log_root)
            files.append(log_root)
            if not Path(log_root).is_file():
                raise ConfigError(f"{where}.ctlog.trustedRoot {log_root}: no such file")
        return KeyAuthority(
            name=name, public_key_pem=pem, trusted_root=log_root, tlog=TLOG_REQUIRED
        )
    keyless = Reader(
        reader.data["keyless"],
        f"{where}.keyless",
        {"issuer", "issuerRegExp", "subject", "subjectRegExp", "trustedRoot"},
    )
    root = keyless.get("trustedRoot", str)
    if root:
        root = resolve_path(base, root)
        files.append(root)
        if not Path(root).is_file():
            raise ConfigError(f"{where}.keyless.trustedRoot {root}: no such file")
    try:
        identity = IdentityPolicy(
            subject=keyless.get("subject", str),
            subject_regexp=regex_field(
                keyless.get("subjectRegExp", str), f"{where}.keyless.subjectRegExp"
            ),
            issuer=keyless.get("issuer", str),
            issuer_regexp=regex_field(
                keyless.get("issuerRegExp", str), f"{where}.keyless.issuerRegExp"
            ),
        )
        return KeylessAuthority(name=name, identity=identity, trusted_root=root)
    except UsageError as err:
        raise ConfigError(f"{where}.keyless: {err}") from None
