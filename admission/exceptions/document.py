"""One break-glass exception: its scope, how it is signed, and how a copy of it is checked.

An exception is an in-toto Statement (predicate type :data:`EXCEPTION_PREDICATE_TYPE`)
in a DSSE envelope, stored as a Sigstore bundle — signed by the same code as every
attestation, so ``attest verify-blob-attestation`` reads it too.  Its one subject is
``exception/<id>`` with the SHA-256 of the predicate's canonical JSON (RFC 8785).

A copy is trusted only when its envelope verifies with a configured signer: anything
else (no envelope, another key, a payload edited after signing, a subject that does
not match the predicate) is kept as a *rejected* exception with the reason, so a
decision it would have concerned can say why it did not apply.  Its content is still
read (unverified) for that: to tell which decisions it concerns, never to admit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785

from admission.errors import ConfigError
from admission.globs import canonical_image_glob, image_glob_regex
from attest.attestations.statement import IN_TOTO_PAYLOAD_TYPE as IN_TOTO
from attest.attestations.statement import Subject, build_statement
from attest.errors import SignatureFormatError, UsageError
from attest.signing.authority import Authority
from attest.signing.bundle import make_bundle, parse_bundle
from attest.signing.bundle_verify import verify_bundle
from attest.signing.signer import Signer

EXCEPTION_PREDICATE_TYPE = "https://attest.dev/admission-exception/v1"
COVERS = ("timeout", "error")  # failures an exception admits only when it names them
MAX_EXCEPTION_BYTES = 256 * 1024
MAX_TEXT_CHARS = 1000
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


class ExceptionFormatError(UsageError):
    """An exception document (or a value for one) is not what it must be."""


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_moment(text: str, what: str) -> dt.datetime:
    """An RFC 3339 timestamp with a zone (``2026-12-24T18:00:00Z``)."""
    value = text.strip()
    try:
        moment = dt.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        raise ExceptionFormatError(f"{what} {text!r}: not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        raise ExceptionFormatError(f"{what} {text!r}: give a time zone (…Z)")
    return moment.astimezone(dt.UTC)


@dataclass(frozen=True)
class ImageScope:
    """Which images an exception is for: a canonical image glob, a digest, or both."""

    glob: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> ImageScope:
        """``GLOB``, ``sha256:<hex>`` or ``GLOB@sha256:<hex>``; the glob in canonical form
        (the same rules as image policies: ``GHCR.IO:443/acme/app`` is ``ghcr.io/acme/app``)."""
        value = text.strip()
        glob, at, digest = value.rpartition("@") if "@" in value else (value, "", "")
        if not at and _DIGEST.match(value.lower()):
            return cls(None, value.lower())
        if at and not _DIGEST.match(digest.lower()):
            raise ExceptionFormatError(f"image {text!r}: the digest is not sha256:<64 hex digits>")
        if at and not glob:
            raise ExceptionFormatError(f"image {text!r}: nothing before '@'")
        try:
            canonical = canonical_image_glob(glob)
        except ConfigError as err:
            raise ExceptionFormatError(str(err)) from None
        return cls(canonical, digest.lower() if at else None)

    def text(self) -> str:
        if self.glob and self.digest:
            return f"{self.glob}@{self.digest}"
        return self.glob or self.digest or ""

    def mismatch(self, name: str | None, digest: str | None) -> str | None:
        """Why an image (canonical name, resolved digest) is outside the scope, or None."""
        if self.glob is not None and (name is None or not image_glob_regex(self.glob).match(name)):
            return f"it is for images {self.glob}, not {name or 'an unparsable reference'}"
        if self.digest is not None and digest != self.digest:
            shown = digest or "an unresolved digest"
            return f"it is for digest {self.digest}, not {shown}"
        return None

    def concerns(self, name: str | None, digest: str | None) -> bool:
        """Whether the image is what the exception names in some part (to report why not)."""
        return (self.glob is not None and self.mismatch(name, None) is None) or (
            self.digest is not None and digest == self.digest
        )


@dataclass(frozen=True)
class ExceptionDocument:
    """The predicate of an exception: who may run what, where, until when, and why."""

    id: str
    namespace: str
    image: ImageScope
    reason: str
    ticket: str
    expires: str  # RFC 3339, UTC
    created: str
    covers: tuple[str, ...] = ()

    @property
    def expires_at(self) -> dt.datetime:
        return parse_moment(self.expires, "expires")

    def to_predicate(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "image": self.image.text(),
            "reason": self.reason,
            "ticket": self.ticket,
            "expires": self.expires,
            "created": self.created,
            "covers": list(self.covers),
        }

    def digest(self) -> str:
        """SHA-256 (hex) of the predicate's canonical JSON: the Statement's subject digest."""
        return hashlib.sha256(rfc8785.dumps(self.to_predicate())).hexdigest()

    @classmethod
    def from_predicate(cls, data: Any) -> ExceptionDocument:
        if not isinstance(data, dict):
            raise ExceptionFormatError("the exception predicate is not a JSON object")
        allowed = {"id", "namespace", "image", "reason", "ticket", "expires", "created", "covers"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ExceptionFormatError(f"the exception has an unknown field {unknown[0]!r}")

        def text(key: str) -> str:
            value = data.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ExceptionFormatError(f"the exception's {key!r} is missing or not text")
            return value

        covers = data.get("covers", [])
        if not isinstance(covers, list) or any(c not in COVERS for c in covers):
            raise ExceptionFormatError(f"the exception's 'covers' must list some of {COVERS}")
        return new_document(
            ident=text("id"),
            namespace=text("namespace"),
            image=text("image"),
            reason=text("reason"),
            ticket=text("ticket"),
            expires=parse_moment(text("expires"), "expires"),
            created=parse_moment(text("created"), "created"),
            covers=tuple(covers),
        )


def new_document(
    *,
    namespace: str,
    image: str,
    reason: str,
    ticket: str,
    expires: dt.datetime,
    covers: Sequence[str] = (),
    ident: str | None = None,
    created: dt.datetime | None = None,
) -> ExceptionDocument:
    """A validated exception (a fresh random id unless ``ident`` is given)."""
    ident = ident or f"exc-{secrets.token_hex(6)}"
    if not _ID.match(ident):
        raise ExceptionFormatError(
            f"exception id {ident!r}: letters, digits, '.', '_', '-' (at most 63)"
        )
    if not _NAMESPACE.match(namespace):
        raise ExceptionFormatError(f"namespace {namespace!r} is not a Kubernetes namespace name")
    for what, value in (("reason", reason), ("ticket", ticket)):
        if not value.strip() or len(value) > MAX_TEXT_CHARS:
            raise ExceptionFormatError(f"{what}: give 1 to {MAX_TEXT_CHARS} characters")
    unknown = [c for c in covers if c not in COVERS]
    if unknown:
        raise ExceptionFormatError(f"covers {unknown[0]!r}: one of {', '.join(COVERS)}")
    return ExceptionDocument(
        id=ident,
        namespace=namespace,
        image=ImageScope.parse(image),
        reason=reason.strip(),
        ticket=ticket.strip(),
        expires=_rfc3339(expires),
        created=_rfc3339(created or dt.datetime.now(dt.UTC)),
        covers=tuple(dict.fromkeys(covers)),
    )


def sign_exception(document: ExceptionDocument, signer: Signer) -> bytes:
    """The exception as a signed Sigstore bundle (DSSE, in-toto Statement)."""
    statement = build_statement(
        [Subject(name=f"exception/{document.id}", digest={"sha256": document.digest()})],
        EXCEPTION_PREDICATE_TYPE,
        document.to_predicate(),
    )
    return make_bundle(signer.sign_dsse(IN_TOTO, statement.raw))


@dataclass(frozen=True)
class LoadedException:
    """One exception file as the webhook sees it: the document (None when unreadable),
    the trusted signer that verified it, or why it is not trusted (``problem``)."""

    source: str
    document: ExceptionDocument | None
    signer: str = ""
    problem: str | None = None

    @property
    def trusted(self) -> bool:
        return self.document is not None and self.problem is None and bool(self.signer)

    @property
    def ident(self) -> str:
        return self.document.id if self.document else self.source


def _statement_document(payload: bytes) -> tuple[ExceptionDocument | None, str | None]:
    """The exception in a (not yet trusted) Statement, or why there is none."""
    try:
        statement = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, "its payload is not JSON"
    if not isinstance(statement, dict):
        return None, "its payload is not an in-toto Statement"
    if statement.get("predicateType") != EXCEPTION_PREDICATE_TYPE:
        return None, f"its predicate type is not {EXCEPTION_PREDICATE_TYPE}"
    try:
        document = ExceptionDocument.from_predicate(statement.get("predicate"))
    except UsageError as err:
        return None, str(err)
    subjects = statement.get("subject")
    expected = {"name": f"exception/{document.id}", "digest": {"sha256": document.digest()}}
    if subjects != [expected]:
        return document, "its subject does not match its predicate (edited after signing?)"
    return document, None


def read_exception(raw: bytes, source: str, signers: Sequence[Authority]) -> LoadedException:
    """Check one exception file against the trusted ``signers``; never raises."""
    if len(raw) > MAX_EXCEPTION_BYTES:
        return LoadedException(source, None, problem=f"larger than {MAX_EXCEPTION_BYTES} bytes")
    try:
        parsed = parse_bundle(raw, what="exception bundle")
    except SignatureFormatError as err:
        return _unsigned(raw, source, str(err))
    if parsed.envelope is None:
        return LoadedException(source, None, problem="not signed as a DSSE envelope")
    document, problem = _statement_document(parsed.envelope.payload)
    if parsed.envelope.payload_type != IN_TOTO:
        problem = f"its DSSE payload type is not {IN_TOTO}"
    if problem is not None:
        return LoadedException(source, document, problem=problem)
    if not signers:
        return LoadedException(source, document, problem="no exception signer is trusted")
    reasons: list[str] = []
    for authority in signers:
        outcome = verify_bundle(parsed, authority, payload_type=IN_TOTO)
        if outcome.verified:
            return LoadedException(source, document, signer=authority.name)
        reasons.append(f"{authority.name}: {'; '.join(outcome.reasons)}")
    return LoadedException(
        source,
        document,
        problem="not signed by a trusted exception signer (" + "; ".join(reasons) + ")",
    )


def _unsigned(raw: bytes, source: str, why: str) -> LoadedException:
    """A file that is no bundle: an unsigned Statement or predicate is read for reporting."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return LoadedException(source, None, problem=f"not a signed exception ({why})")
    predicate = data.get("predicate", data) if isinstance(data, dict) else data
    try:
        document = ExceptionDocument.from_predicate(predicate)
    except UsageError:
        return LoadedException(source, None, problem=f"not a signed exception ({why})")
    return LoadedException(source, document, problem="unsigned (not a Sigstore bundle)")
