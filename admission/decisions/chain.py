"""Tamper evidence: each replica's records form a hash chain whose head is signed now and then.

Record ``n`` of a replica stores ``hash_n = SHA-256("attest-decision/v1" ‖ replica ‖ n ‖
hash_{n-1} ‖ canonical JSON of the decision)``; the first record links to 64 zeros.
Changing, inserting or deleting a record breaks the link after it.  A checkpoint
signs ``(replica, seq, hash, signedAt)`` with the server's key (ECDSA, RSA or
Ed25519, cosign key files or PEM), so rewriting a whole chain tail also needs
that key, and truncating a chain below a checkpoint is detected.  Verification
itself lives in ``verify``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from attest.errors import KeyFileError, UsageError
from attest.signing import keys

GENESIS = "0" * 64
CHECKPOINT_TYPE = "https://attest.dev/decision-chain-head/v1"
_REPLICA_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")
_PEM_PRIVATE_LABELS = (
    b"BEGIN PRIVATE KEY",
    b"BEGIN EC PRIVATE KEY",
    b"BEGIN ENCRYPTED PRIVATE KEY",
)


@dataclass(frozen=True)
class ChainHead:
    """The last record of a replica's chain (``seq`` 0 and ``GENESIS`` for an empty chain)."""

    replica: str
    seq: int = 0
    hash: str = GENESIS


@dataclass(frozen=True)
class Checkpoint:
    """A signature over a replica's chain head."""

    replica: str
    seq: int
    hash: str
    signed_at: str
    key_id: str
    signature: str  # base64
    public_key: str  # PKIX PEM of the signing key, for reference; trust comes from --key

    def payload(self) -> bytes:
        return checkpoint_payload(self.replica, self.seq, self.hash, self.signed_at)


def check_replica(replica: str) -> str:
    """A replica name safe to hash and show: letters, digits and ``._:/@-``, at most 200."""
    if not _REPLICA_PATTERN.match(replica):
        raise UsageError(
            f"replica name {replica!r}: use letters, digits and ._:/@- (at most 200 characters)"
        )
    return replica


def record_hash(replica: str, seq: int, prev_hash: str, canonical: bytes) -> str:
    """The chain hash of one record (hex)."""
    digest = hashlib.sha256()
    digest.update(f"attest-decision/v1\n{replica}\n{seq}\n{prev_hash}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


def checkpoint_payload(replica: str, seq: int, head_hash: str, signed_at: str) -> bytes:
    """The canonical JSON that a checkpoint signature covers."""
    return rfc8785.dumps(
        {
            "_type": CHECKPOINT_TYPE,
            "replica": replica,
            "seq": seq,
            "hash": head_hash,
            "signedAt": signed_at,
        }
    )


class HeadSigner:
    """Signs chain heads with one private key."""

    def __init__(self, private_key: keys.PrivateKey) -> None:
        self._key = private_key
        public = private_key.public_key()
        self.key_id = keys.key_id(public)
        self.public_pem = keys.public_key_pem(public).decode()

    def sign(self, head: ChainHead, *, now: dt.datetime | None = None) -> Checkpoint:
        moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        signed_at = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        signature = keys.sign_bytes(
            self._key, checkpoint_payload(head.replica, head.seq, head.hash, signed_at)
        )
        return Checkpoint(
            replica=head.replica,
            seq=head.seq,
            hash=head.hash,
            signed_at=signed_at,
            key_id=self.key_id,
            signature=base64.b64encode(signature).decode(),
            public_key=self.public_pem,
        )


def load_head_signer(path: str, password: bytes | None = None) -> HeadSigner:
    """A signer from a cosign key file (password from ``ATTEST_PASSWORD``) or a PEM private key."""
    data = keys.read_key_file(path)
    if any(label in data for label in _PEM_PRIVATE_LABELS):
        if password is None and b"ENCRYPTED" in data:
            password = keys.password_from_environment()
        try:
            key = serialization.load_pem_private_key(data, password)
        except (ValueError, TypeError) as err:
            raise KeyFileError(f"{path}: unreadable PEM private key ({err})") from None
        supported = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
        if not isinstance(key, supported):
            raise KeyFileError(f"{path}: unsupported key algorithm {type(key).__name__}")
        return HeadSigner(key)
    return HeadSigner(keys.load_private_key_file(path, password))


def load_trusted_key(path: str) -> keys.PublicKey:
    """The public key that checkpoints must verify with."""
    return keys.load_public_key_file(path)


def checkpoint_signature_valid(checkpoint: Checkpoint, public_key: keys.PublicKey) -> bool:
    try:
        signature = base64.b64decode(checkpoint.signature, validate=True)
    except ValueError:
        return False
    return keys.verify_signature(public_key, signature, checkpoint.payload())


def stored_public_key(checkpoint: Checkpoint) -> keys.PublicKey | None:
    try:
        return keys.load_public_key(checkpoint.public_key.encode(), what="checkpoint key")
    except KeyFileError:
        return None


def default_replica() -> str:
    """``<$ATTEST_REPLICA or hostname>-<pid>``: one chain per writing process.

    Each gunicorn worker is its own writer, so the process id is always part of
    the name; in Kubernetes the hostname is the pod name.
    """
    base = os.environ.get("ATTEST_REPLICA") or os.uname().nodename or "host"
    base = re.sub(r"[^A-Za-z0-9._:/@-]", "-", base).lstrip("._:/@-")[:150] or "host"
    return check_replica(f"{base}-{os.getpid()}")
