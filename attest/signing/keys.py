"""cosign-compatible key files: generate, encrypt, decrypt and load signing keys.

A cosign private key file is a PEM block (``ENCRYPTED SIGSTORE PRIVATE KEY``,
or ``ENCRYPTED COSIGN PRIVATE KEY`` from older cosign) whose body is JSON: an
scrypt KDF (N, r, p, 32-byte salt) deriving the key for a nacl ``secretbox``
that seals the PKCS#8 DER private key.  Public keys are PKIX ``PUBLIC KEY``
PEM.  Like cosign we refuse decrypted keys that are not PKCS#8 (for example a
SEC1 EC key).  Signatures are made and checked the way cosign does: ECDSA and
RSA (PKCS#1 v1.5) over SHA-256 (or the hash a key authority names), Ed25519 over
the message itself.  This is the one place that loads a PEM public key and the one
signature verifier: signing keys, log keys, CT keys and certificate keys all go
through :func:`verify_signature`.  The crypto is ``cryptography``, ``hashlib.scrypt``
and PyNaCl; this module only handles formats.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import json
import os
import secrets
import sys
from dataclasses import dataclass
from typing import Any, Literal

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from attest.errors import KeyFileError

SIGSTORE_PRIVATE_LABEL = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PRIVATE_LABEL = "ENCRYPTED COSIGN PRIVATE KEY"
PUBLIC_LABEL = "PUBLIC KEY"
PASSWORD_VARIABLES = ("ATTEST_PASSWORD", "COSIGN_PASSWORD")

SCRYPT_N = 65536
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 32
_MAX_SCRYPT_N = 1 << 20
_MAX_KEY_FILE_BYTES = 64 * 1024

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class KeyPair:
    """A freshly generated key pair, already in cosign's file formats."""

    private_pem: bytes
    public_pem: bytes


# -- PEM -------------------------------------------------------------------------


def _pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """Every ``(label, body bytes)`` PEM block in ``data``."""
    blocks: list[tuple[str, bytes]] = []
    label: str | None = None
    body: list[str] = []
    for line in data.decode("ascii", errors="replace").splitlines():
        line = line.strip()
        if line.startswith("-----BEGIN ") and line.endswith("-----"):
            label, body = line[len("-----BEGIN ") : -5], []
        elif line.startswith("-----END ") and label is not None:
            try:
                blocks.append((label, base64.b64decode("".join(body), validate=True)))
            except binascii.Error:
                blocks.append((label, b""))
            label = None
        elif label is not None:
            body.append(line)
    return blocks


def _pem(label: str, der: bytes) -> bytes:
    text = base64.b64encode(der).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode()


# -- encryption --------------------------------------------------------------------


def _derive(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def encrypt_private_key(key: PrivateKey, password: bytes) -> bytes:
    """``key`` as an ``ENCRYPTED SIGSTORE PRIVATE KEY`` PEM sealed with ``password``."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt = secrets.token_bytes(SALT_BYTES)
    nonce = secrets.token_bytes(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(_derive(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    sealed = box.encrypt(der, nonce).ciphertext
    document = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    return _pem(SIGSTORE_PRIVATE_LABEL, json.dumps(document, separators=(",", ":")).encode())


def _field(document: dict[str, Any], *path: str, what: str) -> Any:
    value: Any = document
    for name in path:
        if not isinstance(value, dict) or name not in value:
            raise KeyFileError(f"{what}: encrypted key lacks {'.'.join(path)}")
        value = value[name]
    return value


def _b64_field(document: dict[str, Any], *path: str, what: str) -> bytes:
    value = _field(document, *path, what=what)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise KeyFileError(f"{what}: {'.'.join(path)} is not base64") from None


def _int_param(params: Any, name: str, limit: int, what: str) -> int:
    value = params.get(name) if isinstance(params, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
        raise KeyFileError(f"{what}: scrypt parameter {name}={value!r} is missing or out of range")
    return value


def _is_pkcs8(der: bytes) -> bool:
    """Whether DER is a PKCS#8 PrivateKeyInfo (SEQUENCE { INTEGER, SEQUENCE, ... })."""

    def skip_header(offset: int) -> int | None:
        if offset + 2 > len(der):
            return None
        length = der[offset + 1]
        if length < 0x80:
            return offset + 2
        count = length & 0x7F
        return offset + 2 + count if 0 < count <= 4 else None

    if not der or der[0] != 0x30:
        return False
    inner = skip_header(0)
    if inner is None or inner >= len(der) or der[inner] != 0x02:
        return False
    version_end = inner + 2 + der[inner + 1] if inner + 1 < len(der) else len(der)
    return version_end < len(der) and der[version_end] == 0x30


def decrypt_private_key(pem: bytes, password: bytes, *, what: str) -> PrivateKey:
    """Open a cosign/Sigstore encrypted private key file's contents."""
    blocks = [(label, body) for label, body in _pem_blocks(pem) if "PRIVATE KEY" in label]
    if not blocks:
        raise KeyFileError(f"{what}: not a PEM private key file")
    label, body = blocks[0]
    if label not in (SIGSTORE_PRIVATE_LABEL, COSIGN_PRIVATE_LABEL):
        raise KeyFileError(
            f"{what}: unsupported private key type {label!r}; expected an "
            f"{SIGSTORE_PRIVATE_LABEL!r} or {COSIGN_PRIVATE_LABEL!r} file (see 'attest keygen')"
        )
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyFileError(f"{what}: encrypted key body is not JSON (corrupt file?)") from None
    if not isinstance(document, dict):
        raise KeyFileError(f"{what}: encrypted key body is not a JSON object")
    kdf = _field(document, "kdf", "name", what=what)
    cipher = _field(document, "cipher", "name", what=what)
    if kdf != "scrypt" or cipher != "nacl/secretbox":
        raise KeyFileError(f"{what}: unsupported encryption {kdf}/{cipher}")
    params = _field(document, "kdf", "params", what=what)
    n = _int_param(params, "N", _MAX_SCRYPT_N, what)
    if n & (n - 1) or n < 2:
        raise KeyFileError(f"{what}: scrypt parameter N={n} is not a power of two")
    r = _int_param(params, "r", 32, what)
    p = _int_param(params, "p", 16, what)
    salt = _b64_field(document, "kdf", "salt", what=what)
    nonce = _b64_field(document, "cipher", "nonce", what=what)
    sealed = _b64_field(document, "ciphertext", what=what)
    if len(nonce) != nacl.secret.SecretBox.NONCE_SIZE:
        raise KeyFileError(f"{what}: secretbox nonce must be 24 bytes")
    try:
        der = nacl.secret.SecretBox(_derive(password, salt, n, r, p)).decrypt(sealed, nonce)
    except nacl.exceptions.CryptoError:
        raise KeyFileError(f"{what}: wrong password (or corrupt key file)") from None
    if not _is_pkcs8(der):
        raise KeyFileError(
            f"{what}: the decrypted key is not PKCS#8 (a SEC1 or PKCS#1 key?); cosign rejects it too"
        )
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, UnsupportedAlgorithm) as err:
        raise KeyFileError(f"{what}: the decrypted key is unreadable ({err})") from None
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise KeyFileError(f"{what}: unsupported key algorithm {type(key).__name__}")
    return key


# -- files and passwords -----------------------------------------------------------


ENV_KEY_PREFIX = "env://"


def read_key_file(path: str) -> bytes:
    """The bytes of a (small) key file, with one-line errors.

    ``env://VAR`` (cosign's form) reads the PEM from the environment variable ``VAR``
    instead, so CI can pass a key from a secret without writing it to disk.
    """
    if path.startswith(ENV_KEY_PREFIX):
        name = path[len(ENV_KEY_PREFIX) :]
        value = os.environ.get(name) if name else None
        if not value:
            raise KeyFileError(f"{path}: environment variable {name!r} is unset or empty")
        data = value.encode()
        if len(data) > _MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path}: too large for a key")
        return data
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as err:
        raise KeyFileError(f"{path}: cannot read key file ({err.strerror or err})") from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path}: too large for a key file")
    return data


def password_from_environment() -> bytes | None:
    """The password from ``ATTEST_PASSWORD`` or ``COSIGN_PASSWORD`` (set but empty counts)."""
    for name in PASSWORD_VARIABLES:
        value = os.environ.get(name)
        if value is not None:
            return value.encode()
    return None


def obtain_password(what: str, *, confirm: bool = False) -> bytes:
    """The key password: from the environment, else an unechoed prompt on the terminal."""
    password = password_from_environment()
    if password is not None:
        return password
    if not sys.stdin.isatty():
        raise KeyFileError(
            f"{what}: no password: set ATTEST_PASSWORD (or COSIGN_PASSWORD), or run on a terminal"
        )
    first = getpass.getpass(f"Enter password for {what}: ")
    if confirm and getpass.getpass("Enter password again: ") != first:
        raise KeyFileError(f"{what}: the passwords do not match")
    return first.encode()


def load_private_key_file(path: str, password: bytes | None = None) -> PrivateKey:
    """Decrypt the cosign key file at ``path`` (password from the environment or a prompt)."""
    data = read_key_file(path)
    return decrypt_private_key(
        data, password if password is not None else obtain_password(path), what=path
    )


def as_public_key(key: object) -> PublicKey | None:
    """``key`` when it is of a kind we verify with (ECDSA, RSA, Ed25519), else None."""
    if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return key
    return None


def load_public_key(pem: bytes, *, what: str) -> PublicKey:
    """A PKIX ``PUBLIC KEY`` PEM (ECDSA, RSA or Ed25519)."""
    labels = [label for label, _ in _pem_blocks(pem)]
    if any("PRIVATE KEY" in label for label in labels):
        raise KeyFileError(f"{what}: is a private key; pass the public key (cosign.pub)")
    if PUBLIC_LABEL not in labels:
        raise KeyFileError(f"{what}: not a PEM public key (no 'BEGIN PUBLIC KEY' block)")
    try:
        loaded = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as err:
        raise KeyFileError(f"{what}: unreadable public key ({err})") from None
    key = as_public_key(loaded)
    if key is None:
        raise KeyFileError(f"{what}: unsupported public key algorithm {type(loaded).__name__}")
    return key


def load_public_key_file(path: str) -> PublicKey:
    return load_public_key(read_key_file(path), what=path)


def public_key_pem(key: PublicKey | PrivateKey) -> bytes:
    """PKIX PEM of a public key (or of a private key's public half)."""
    public = (
        key.public_key()
        if isinstance(
            key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
        )
        else key
    )
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_der(key: PublicKey) -> bytes:
    """The PKIX (SubjectPublicKeyInfo) DER of ``key``: how logs record and name keys."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: PublicKey) -> str:
    """The key hint cosign writes into bundles: base64 of SHA-256 over the PKIX DER."""
    return base64.b64encode(hashlib.sha256(public_key_der(key)).digest()).decode()


def generate_key_pair(password: bytes) -> KeyPair:
    """A new ECDSA P-256 key pair, the private half sealed with ``password``."""
    key = ec.generate_private_key(ec.SECP256R1())
    return KeyPair(encrypt_private_key(key, password), public_key_pem(key))


# -- signatures ----------------------------------------------------------------------


def sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    """Sign ``data`` as cosign does (ECDSA/RSA over SHA-256, Ed25519 directly)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def _ecdsa_hashes(curve: ec.EllipticCurve) -> tuple[hashes.HashAlgorithm, ...]:
    """The hashes an ECDSA signature on ``curve`` may use: the curve's own (P-384 SHA-384,
    P-521 SHA-512), and SHA-256, which cosign signs with on every curve."""
    if isinstance(curve, ec.SECP384R1):
        return hashes.SHA384(), hashes.SHA256()
    if isinstance(curve, ec.SECP521R1):
        return hashes.SHA512(), hashes.SHA256()
    return (hashes.SHA256(),)


HashName = Literal["sha224", "sha256", "sha384", "sha512"]
"""The hash a key's signatures are made over: cosign always uses SHA-256; policy-controller's
``key.hashAlgorithm`` names another for keys (a KMS key, say) that sign over it."""
HASH_ALGORITHMS: dict[HashName, type[hashes.HashAlgorithm]] = {
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _signature_hashes(
    key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, hash_algorithm: HashName
) -> tuple[hashes.HashAlgorithm, ...]:
    """The hashes a signature by ``key`` may be over: ``hash_algorithm`` alone when it is not
    SHA-256; else SHA-256 (and, for ECDSA, the curve's own: :func:`_ecdsa_hashes`)."""
    if hash_algorithm != "sha256":
        return (HASH_ALGORITHMS[hash_algorithm](),)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _ecdsa_hashes(key.curve)
    return (hashes.SHA256(),)


def verify_signature(
    key: PublicKey,
    signature: bytes,
    data: bytes | None = None,
    *,
    sha256: bytes | None = None,
    hash_algorithm: HashName = "sha256",
) -> bool:
    """Whether ``signature`` verifies with ``key`` over ``data``, or over a message known only
    by its SHA-256 (``sha256``: a prehashed ECDSA or RSA signature; Ed25519 signs the message
    itself, so it needs ``data``).  ECDSA and RSA PKCS#1 v1.5 signatures are over
    :func:`_signature_hashes`: another ``hash_algorithm`` than SHA-256 is the only one
    accepted, and then a message known only by its SHA-256 cannot verify.
    """
    try:
        if data is None:
            if sha256 is None or isinstance(key, ed25519.Ed25519PublicKey):
                return False
            if hash_algorithm != "sha256":
                return False
            prehashed = utils.Prehashed(hashes.SHA256())
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, sha256, ec.ECDSA(prehashed))
            else:
                key.verify(signature, sha256, padding.PKCS1v15(), prehashed)
            return True
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
            return True
        for algorithm in _signature_hashes(key, hash_algorithm):
            try:
                if isinstance(key, ec.EllipticCurvePublicKey):
                    key.verify(signature, data, ec.ECDSA(algorithm))
                else:
                    key.verify(signature, data, padding.PKCS1v15(), algorithm)
                return True
            except InvalidSignature:
                continue
        return False
    except (InvalidSignature, ValueError):
        return False
