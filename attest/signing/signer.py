"""The one signing abstraction every command uses, and the key-based implementation.

A :class:`Signer` signs raw bytes (cosign's simple-signing payload of a legacy
signature) or a DSSE payload (in-toto statements: v3 image signatures and
attestations) and returns :class:`~attest.signing.bundle.SignatureMaterial`: the
signature, what it covers, and what a verifier needs — a key hint (key-based) or
a certificate and transparency-log entries (keyless).  :class:`KeySigner` signs
with a cosign key file; the keyless Sigstore signer lives in
:mod:`attest.signing.keyless`.  Storage code turns the material into a Sigstore
bundle or cosign annotations.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from attest.signing import keys
from attest.signing.bundle import SignatureMaterial
from attest.signing.dsse import pae
from attest.signing.rekor import DEFAULT_TIMEOUT_SECONDS, RekorTarget, log_material
from attest.signing.tlog import TlogEntry

__all__ = ["KeySigner", "SignatureMaterial", "Signer", "TlogEntry"]


@runtime_checkable
class Signer(Protocol):
    """Anything that can sign for ``attest sign``/``attest attest``/``attest pipeline``."""

    @property
    def description(self) -> str:
        """A short human description (``key cosign.key``, ``keyless alice@example.com``)."""
        ...

    def sign(self, data: bytes) -> SignatureMaterial:
        """Sign ``data`` itself (a message signature, e.g. a simple-signing payload)."""
        ...

    def sign_dsse(self, payload_type: str, payload: bytes) -> SignatureMaterial:
        """Sign the DSSE PAE of ``payload``; the material's ``payload_type`` is set."""
        ...


class KeySigner:
    """Signs with a private key (normally decrypted from a cosign key file).

    With ``rekor`` set, every signature is logged there before it is returned (cosign's
    default for ``--key``); ``None`` signs without a log (``--tlog-upload=false``).
    """

    def __init__(
        self,
        private_key: keys.PrivateKey,
        *,
        source: str = "key",
        rekor: RekorTarget | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.public_key_pem = keys.public_key_pem(self.public_key)
        self.key_id = keys.key_id(self.public_key)
        self.source = source
        self.rekor = rekor
        self.timeout = timeout

    @classmethod
    def from_file(
        cls,
        path: str,
        password: bytes | None = None,
        *,
        rekor: RekorTarget | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> KeySigner:
        """Load a cosign key file (password from the argument, the environment or a prompt)."""
        private_key = keys.load_private_key_file(path, password)
        return cls(private_key, source=path, rekor=rekor, timeout=timeout)

    @property
    def description(self) -> str:
        logged = f", logged in {self.rekor.description}" if self.rekor else ""
        return f"key {self.source}{logged}"

    def _logged(self, material: SignatureMaterial) -> SignatureMaterial:
        if self.rekor is None:
            return material
        return log_material(material, self.rekor, self.public_key, timeout=self.timeout)

    def sign(self, data: bytes) -> SignatureMaterial:
        return self._logged(
            SignatureMaterial(
                signature=keys.sign_bytes(self._key, data),
                payload=data,
                public_key_hint=self.key_id,
            )
        )

    def sign_dsse(self, payload_type: str, payload: bytes) -> SignatureMaterial:
        return self._logged(
            SignatureMaterial(
                signature=keys.sign_bytes(self._key, pae(payload_type, payload)),
                payload=payload,
                payload_type=payload_type,
                public_key_hint=self.key_id,
            )
        )
