"""Keyless (Sigstore) signing: an OIDC identity token becomes a short-lived Fulcio certificate.

``KeylessSigner`` implements the :class:`~attest.signing.signer.Signer` protocol
with sigstore-python: it sends the identity token and a fresh key to Fulcio,
signs, logs the signature in Rekor and returns the certificate, its chain and
the log entry as :class:`~attest.signing.bundle.SignatureMaterial`.  The token
comes from ``--identity-token`` (a token or a file holding one), the
``SIGSTORE_ID_TOKEN`` variable, or GitHub Actions' ambient OIDC endpoint
(``ACTIONS_ID_TOKEN_REQUEST_URL``/``_TOKEN``, audience ``sigstore``); there is
no interactive browser flow.  Services and roots come from a client trust config
(``--trust-config``, for a private Sigstore instance) or the public-good instance.
sigstore-python signs DSSE only for in-toto statements, which is all we sign as DSSE.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sigstore import dsse as sigstore_dsse
from sigstore.oidc import IdentityToken
from sigstore.sign import Signer as SigstoreSigner
from sigstore.sign import SigningContext

from attest.attestations.statement import IN_TOTO_PAYLOAD_TYPE
from attest.errors import SigningError
from attest.signing.bundle import SignatureMaterial, material_from_sigstore
from attest.signing.fulcio import certificate_identity
from attest.signing.trust import TrustConfig, TrustRoot, load_trust_config

_log = logging.getLogger(__name__)

TOKEN_VARIABLE = "SIGSTORE_ID_TOKEN"
GITHUB_URL_VARIABLE = "ACTIONS_ID_TOKEN_REQUEST_URL"
GITHUB_TOKEN_VARIABLE = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
AUDIENCE = "sigstore"
_MAX_TOKEN_BYTES = 64 * 1024
_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\Z")


def _github_actions_token(timeout: float) -> str | None:
    url = os.environ.get(GITHUB_URL_VARIABLE)
    bearer = os.environ.get(GITHUB_TOKEN_VARIABLE)
    if not url and not bearer:
        return None
    if not url or not bearer:
        missing = GITHUB_URL_VARIABLE if not url else GITHUB_TOKEN_VARIABLE
        raise SigningError(
            f"GitHub Actions OIDC: {missing} is not set (does the job have id-token: write?)"
        )
    separator = "&" if "?" in url else "?"
    try:
        response = requests.get(
            f"{url}{separator}audience={AUDIENCE}",
            headers={"Authorization": f"bearer {bearer}", "Accept": "application/json"},
            timeout=timeout,
        )
    except requests.RequestException as err:
        raise SigningError(
            f"GitHub Actions OIDC endpoint is unreachable ({type(err).__name__})"
        ) from None
    if response.status_code != 200:
        raise SigningError(
            f"GitHub Actions OIDC endpoint refused the token request: HTTP {response.status_code}"
        )
    try:
        value = response.json().get("value")
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str) or not value:
        raise SigningError("GitHub Actions OIDC endpoint answered without a token value")
    return value


def resolve_identity_token(
    explicit: str | None = None, *, timeout: float = 30.0
) -> tuple[str, str]:
    """The raw OIDC token and where it came from: flag (or file), environment, GitHub Actions."""
    if explicit:
        explicit = explicit.strip()
        if _JWT.match(explicit):
            return explicit, "--identity-token"
        try:
            data = Path(explicit).read_bytes()[:_MAX_TOKEN_BYTES]
        except OSError as err:
            raise SigningError(
                f"--identity-token is neither a JWT nor a readable file ({err.strerror})"
            ) from None
        return data.decode("ascii", "replace").strip(), f"--identity-token file {explicit}"
    from_env = os.environ.get(TOKEN_VARIABLE)
    if from_env:
        return from_env.strip(), TOKEN_VARIABLE
    ambient = _github_actions_token(timeout)
    if ambient:
        return ambient, "GitHub Actions OIDC"
    raise SigningError(
        "keyless signing needs an OIDC identity token: pass --identity-token, set "
        f"{TOKEN_VARIABLE}, or run in GitHub Actions with 'id-token: write' (or sign with --key)"
    )


def parse_identity_token(raw: str, source: str) -> IdentityToken:
    """Check the token's shape, audience and validity period (Fulcio checks its signature)."""
    try:
        return IdentityToken(raw)
    except Exception as err:  # sigstore.oidc.IdentityError
        raise SigningError(f"identity token from {source} is unusable: {err}") from None


def _issuer_chain(cert: x509.Certificate, root: TrustRoot) -> tuple[bytes, ...]:
    """DER certificates of the Fulcio CA chain (from the trusted root) that issued ``cert``."""
    for authority in root.certificate_authorities:
        if authority.certificates and authority.certificates[0].subject == cert.issuer:
            return tuple(c.public_bytes(serialization.Encoding.DER) for c in authority.certificates)
    return ()


class KeylessSigner:
    """Signs with an ephemeral key certified by Fulcio for an OIDC identity (Signer protocol)."""

    def __init__(
        self,
        *,
        identity_token: str | None = None,
        trust: TrustConfig | None = None,
        trust_config: str | None = None,
    ) -> None:
        raw, source = resolve_identity_token(identity_token)
        self._token = parse_identity_token(raw, source)
        self._trust = trust or load_trust_config(trust_config)
        self._signer: SigstoreSigner | None = None
        self._context: Any = None

    @property
    def identity(self) -> str:
        return self._token.identity

    @property
    def issuer(self) -> str:
        return self._token.issuer

    @property
    def description(self) -> str:
        return f"keyless {self._token.identity} ({self._token.issuer}) via {self._trust.name}"

    @property
    def trust(self) -> TrustConfig:
        return self._trust

    def __enter__(self) -> KeylessSigner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
        self._context = None
        self._signer = None

    def _sigstore_signer(self) -> SigstoreSigner:
        if self._signer is None:
            try:
                signing = SigningContext.from_trust_config(self._trust.sigstore)
                self._context = signing.signer(self._token, cache=True)
                self._signer = self._context.__enter__()
            except Exception as err:  # Fulcio/CT errors are not one hierarchy in sigstore-python
                self._context = None
                raise SigningError(
                    f"Fulcio ({self._trust.name}) did not issue a signing certificate: {_describe(err)}"
                ) from None
        return self._signer

    def _signed(self, sign: Callable[[SigstoreSigner], Any], payload: bytes) -> SignatureMaterial:
        """Run one sigstore-python signing call; its bundle becomes material with the CA chain.

        sigstore-python only logs a warning when a timestamp authority of the signing
        config fails, and signs on without its timestamp; with a Rekor v2 log that
        bundle has no signing time at all.  Here a missing timestamp fails the signing.
        """
        signer = self._sigstore_signer()
        with _warnings_of("sigstore.sign") as warnings:
            try:
                bundle = sign(signer)
            except Exception as err:
                raise SigningError(
                    f"keyless signing via {self._trust.name} failed: {_describe(err)}"
                ) from None
        material = material_from_sigstore(bundle, payload)
        wanted = self._signing_context_tsas()
        if wanted and not material.timestamps:
            cause = " ".join(" ".join(warnings).split())[:300] or "no timestamp in the bundle"
            raise SigningError(
                f"the timestamp authority of {self._trust.name} gave no timestamp: {cause}"
            )
        cert = x509.load_der_x509_certificate(material.certificate or b"")
        identity = certificate_identity(cert)
        _log.debug("keyless certificate for %s from %s", identity.subject, identity.issuer)
        return dataclasses.replace(material, chain=_issuer_chain(cert, self._trust.root))

    def _signing_context_tsas(self) -> int:
        """How many timestamp authorities the signing context asks (0: none configured)."""
        try:
            return len(self._trust.sigstore.signing_config.get_tsas())
        except Exception:  # sigstore.errors.Error: no valid TSA in the config
            return 0

    def sign(self, data: bytes) -> SignatureMaterial:
        """A message signature over SHA-256(``data``), logged as a ``hashedrekord`` entry."""
        return self._signed(lambda signer: signer.sign_artifact(data), data)

    def sign_dsse(self, payload_type: str, payload: bytes) -> SignatureMaterial:
        """A DSSE envelope over an in-toto statement, logged as a ``dsse`` entry."""
        if payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise SigningError(
                f"keyless DSSE signing supports {IN_TOTO_PAYLOAD_TYPE} payloads only, not {payload_type!r}"
            )
        try:
            statement = sigstore_dsse.Statement(payload)
        except Exception as err:  # sigstore.errors.Error: not an in-toto statement
            raise SigningError(f"payload is not an in-toto statement: {_describe(err)}") from None
        return self._signed(lambda signer: signer.sign_dsse(statement), payload)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _warnings_of(name: str) -> Iterator[list[str]]:
    """The warnings logger ``name`` emits inside the block, kept for the one-line error
    instead of printed (``--debug`` still shows them)."""
    handler = _Collect()
    logger = logging.getLogger(name)
    saved = (logger.level, logger.propagate)
    debug = logger.isEnabledFor(logging.DEBUG)
    logger.addHandler(handler)
    logger.setLevel(min(logger.getEffectiveLevel(), logging.WARNING))
    logger.propagate = debug
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _describe(err: BaseException) -> str:
    text = " ".join(str(err).split())[:300]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
