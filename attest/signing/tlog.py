"""Rekor transparency-log entries: parse, upload, and verify them without sigstore-python.

sigstore-python verifies log entries only inside its keyless flow and only for
``hashedrekord``/``dsse`` entries, so key-based bundles, cosign's legacy Rekor
bundle annotation and ``intoto/0.0.2`` entries are checked here: the RFC 9162
Merkle inclusion proof up to the root hash, the signed checkpoint (a signed
note) naming that root, the signed entry timestamp (SET: the log's signature
over the RFC 8785 canonical JSON of body, integrated time, log id and index),
and that the entry body records the same signature, key and digest as the
bundle.  Signatures are checked with :func:`attest.signing.keys.verify_signature`;
the Merkle path is plain SHA-256 hashing.  Submitting entries is
:mod:`attest.signing.rekor`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from attest.errors import KeyFileError
from attest.signing.keys import PublicKey, load_public_key, public_key_der, verify_signature
from attest.signing.trust import LogKey, TrustRoot

MAX_PROOF_HASHES = 64


class TlogError(Exception):
    """A log entry failed a check; ``str()`` says which and why (one line)."""


@dataclass(frozen=True)
class InclusionProof:
    """A Merkle inclusion proof of an entry, with the checkpoint that signs its root."""

    log_index: int
    root_hash: bytes
    tree_size: int
    hashes: tuple[bytes, ...]
    checkpoint: str | None


@dataclass(frozen=True)
class TlogEntry:
    """One Rekor entry as a Sigstore bundle records it."""

    log_index: int
    log_id: bytes
    kind: str
    version: str
    integrated_time: int | None
    body: bytes
    signed_entry_timestamp: bytes | None = None
    inclusion_proof: InclusionProof | None = None

    def summary(self) -> dict[str, Any]:
        """``{"logIndex", "integratedTime", "logId", "kind"}`` for reports."""
        return {
            "logIndex": self.log_index,
            "integratedTime": self.integrated_time,
            "logId": self.log_id.hex(),
            "kind": f"{self.kind}/{self.version}",
        }

    def to_bundle_dict(self) -> dict[str, Any]:
        """The entry as a bundle's ``verificationMaterial.tlogEntries[]`` item."""
        out: dict[str, Any] = {
            "logIndex": str(self.log_index),
            "logId": {"keyId": _b64(self.log_id)},
            "kindVersion": {"kind": self.kind, "version": self.version},
        }
        if self.integrated_time is not None:
            out["integratedTime"] = str(self.integrated_time)
        if self.signed_entry_timestamp is not None:
            out["inclusionPromise"] = {"signedEntryTimestamp": _b64(self.signed_entry_timestamp)}
        if self.inclusion_proof is not None:
            proof = self.inclusion_proof
            out["inclusionProof"] = {
                "logIndex": str(proof.log_index),
                "rootHash": _b64(proof.root_hash),
                "treeSize": str(proof.tree_size),
                "hashes": [_b64(h) for h in proof.hashes],
            }
            if proof.checkpoint is not None:
                out["inclusionProof"]["checkpoint"] = {"envelope": proof.checkpoint}
        out["canonicalizedBody"] = _b64(self.body)
        return out

    @classmethod
    def from_bundle_dict(cls, data: dict[str, Any]) -> TlogEntry:
        """Parse a bundle's tlog entry (already schema-checked by the bundle parser)."""
        proof_data = data.get("inclusionProof")
        proof = None
        if proof_data:
            checkpoint = (proof_data.get("checkpoint") or {}).get("envelope")
            proof = InclusionProof(
                log_index=int(proof_data["logIndex"]),
                root_hash=_unb64(proof_data["rootHash"]),
                tree_size=int(proof_data["treeSize"]),
                hashes=tuple(_unb64(h) for h in proof_data.get("hashes") or ()),
                checkpoint=checkpoint,
            )
        promise = data.get("inclusionPromise") or {}
        integrated = data.get("integratedTime")
        return cls(
            log_index=int(data["logIndex"]),
            log_id=_unb64(data["logId"]["keyId"]),
            kind=data["kindVersion"]["kind"],
            version=data["kindVersion"]["version"],
            integrated_time=int(integrated) if integrated not in (None, "", "0", 0) else None,
            body=_unb64(data.get("canonicalizedBody") or ""),
            signed_entry_timestamp=(
                _unb64(promise["signedEntryTimestamp"])
                if promise.get("signedEntryTimestamp")
                else None
            ),
            inclusion_proof=proof,
        )

    @classmethod
    def from_rekor_response(cls, response: Any) -> TlogEntry:
        """Parse Rekor v1's ``POST /api/v1/log/entries`` answer (``{uuid: entry}``)."""
        if not isinstance(response, dict) or len(response) != 1:
            raise TlogError("Rekor answered with something other than one log entry")
        (entry,) = response.values()
        try:
            body = base64.b64decode(entry["body"], validate=True)
            kind = json.loads(body)
            verification = entry.get("verification") or {}
            raw_proof = verification.get("inclusionProof")
            proof = None
            if raw_proof:
                proof = InclusionProof(
                    log_index=int(raw_proof["logIndex"]),
                    root_hash=bytes.fromhex(raw_proof["rootHash"]),
                    tree_size=int(raw_proof["treeSize"]),
                    hashes=tuple(bytes.fromhex(h) for h in raw_proof.get("hashes") or ()),
                    checkpoint=raw_proof.get("checkpoint"),
                )
            set_b64 = verification.get("signedEntryTimestamp")
            return cls(
                log_index=int(entry["logIndex"]),
                log_id=bytes.fromhex(entry["logID"]),
                kind=str(kind["kind"]),
                version=str(kind["apiVersion"]),
                integrated_time=int(entry["integratedTime"]),
                body=body,
                signed_entry_timestamp=base64.b64decode(set_b64) if set_b64 else None,
                inclusion_proof=proof,
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as err:
            raise TlogError(
                f"Rekor's log entry is malformed ({type(err).__name__}: {err})"
            ) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


# -- Merkle inclusion (RFC 9162 section 2.1.3.2) ---------------------------------------


def _leaf_hash(body: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + body).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root_from_proof(
    leaf_index: int, tree_size: int, leaf: bytes, path: tuple[bytes, ...]
) -> bytes:
    """The root hash that an inclusion ``path`` for ``leaf`` (a leaf hash) implies."""
    if leaf_index < 0 or tree_size <= 0 or leaf_index >= tree_size:
        raise TlogError(f"inclusion proof index {leaf_index} is outside a tree of size {tree_size}")
    if len(path) > MAX_PROOF_HASHES or any(len(h) != 32 for h in path):
        raise TlogError("inclusion proof hashes are malformed")
    index, last, node = leaf_index, tree_size - 1, leaf
    for sibling in path:
        if last == 0:
            raise TlogError("inclusion proof has more hashes than the tree is deep")
        if index % 2 == 1 or index == last:
            node = _node_hash(sibling, node)
            if index % 2 == 0:
                while index % 2 == 0 and index != 0:
                    index >>= 1
                    last >>= 1
        else:
            node = _node_hash(node, sibling)
        index >>= 1
        last >>= 1
    if last != 0:
        raise TlogError("inclusion proof has fewer hashes than the tree is deep")
    return node


def verify_inclusion(entry: TlogEntry) -> None:
    """Check that the entry's body hashes up the proof to the proof's root hash."""
    proof = entry.inclusion_proof
    if proof is None:
        raise TlogError("log entry has no inclusion proof")
    root = merkle_root_from_proof(
        proof.log_index, proof.tree_size, _leaf_hash(entry.body), proof.hashes
    )
    if root != proof.root_hash:
        raise TlogError("inclusion proof does not lead to the recorded root hash")


# -- checkpoints (signed notes) ------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    signed_text: bytes
    signatures: tuple[tuple[str, bytes, bytes], ...]  # (name, key hint, signature)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a signed note: ``origin\\nsize\\nroot\\n[extra…]\\n\\n— name base64(hint+sig)\\n``."""
    if text.count("\n\n") != 1:
        raise TlogError("checkpoint is not a signed note (needs exactly one blank line)")
    head, _, tail = text.partition("\n\n")
    lines = head.split("\n")
    if len(lines) < 3 or not lines[0]:
        raise TlogError("checkpoint lacks an origin, tree size or root hash")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except (ValueError, binascii.Error):
        raise TlogError("checkpoint tree size or root hash is malformed") from None
    if not tail.endswith("\n"):
        raise TlogError("checkpoint signature block does not end with a newline")
    signatures: list[tuple[str, bytes, bytes]] = []
    for line in tail[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014":
            raise TlogError("checkpoint has a malformed signature line")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            raise TlogError("checkpoint signature is not base64") from None
        if len(blob) < 5:
            raise TlogError("checkpoint signature is too short")
        signatures.append((parts[1], blob[:4], blob[4:]))
    if not signatures:
        raise TlogError("checkpoint carries no signature")
    return Checkpoint(lines[0], size, root, (head + "\n").encode(), tuple(signatures))


def _key_hints(log: LogKey, name: str) -> set[bytes]:
    hints = {log.log_id[:4]}
    if log.checkpoint_key_id:
        hints.add(log.checkpoint_key_id[:4])
    if isinstance(log.key, ed25519.Ed25519PublicKey):  # C2SP signed-note key id
        raw = log.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        hints.add(hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4])
    return hints


def verify_checkpoint(entry: TlogEntry, log: LogKey) -> None:
    """The proof's checkpoint is signed by ``log`` and names the proof's size and root."""
    proof = entry.inclusion_proof
    if proof is None or not proof.checkpoint:
        raise TlogError("inclusion proof has no checkpoint")
    checkpoint = parse_checkpoint(proof.checkpoint)
    if checkpoint.tree_size != proof.tree_size or checkpoint.root_hash != proof.root_hash:
        raise TlogError("checkpoint names another tree size or root hash than the inclusion proof")
    for name, hint, signature in checkpoint.signatures:
        if hint in _key_hints(log, name) and verify_signature(
            log.key, signature, checkpoint.signed_text
        ):
            return
    raise TlogError("checkpoint is not signed by the transparency log's key")


# -- signed entry timestamps -------------------------------------------------------------------


def set_payload(entry: TlogEntry) -> bytes:
    """The canonical JSON that a signed entry timestamp signs."""
    return rfc8785.dumps(
        {
            "body": _b64(entry.body),
            "integratedTime": entry.integrated_time,
            "logID": entry.log_id.hex(),
            "logIndex": entry.log_index,
        }
    )


def verify_set(entry: TlogEntry, log: LogKey) -> None:
    """The signed entry timestamp (inclusion promise) is the log's signature over the entry."""
    if entry.signed_entry_timestamp is None or entry.integrated_time is None:
        raise TlogError("log entry has no signed entry timestamp")
    if not verify_signature(log.key, entry.signed_entry_timestamp, set_payload(entry)):
        raise TlogError("signed entry timestamp does not verify with the transparency log's key")


def integrated_datetime(entry: TlogEntry) -> datetime | None:
    if entry.integrated_time is None:
        return None
    return datetime.fromtimestamp(entry.integrated_time, tz=UTC)


def verify_entry(
    entry: TlogEntry, root: TrustRoot, *, require_proof: bool = True
) -> datetime | None:
    """Check an entry against the trusted logs; returns its integrated time when a SET vouches for it.

    The log must be in ``root`` (and its key valid at the integrated time). A present
    inclusion proof, checkpoint or SET must verify; ``require_proof`` demands the proof
    (bundles v0.2+), otherwise a verified SET suffices (bundle v0.1, legacy annotations).
    """
    if entry.log_index < 0:
        raise TlogError("log entry has a negative log index")
    log = root.tlog_for(entry.log_id)
    if log is None:
        raise TlogError(f"log entry is from a transparency log not in trusted root {root.name}")
    when = integrated_datetime(entry)
    if when is not None and not log.valid.contains(when):
        raise TlogError("log entry was integrated outside the transparency log key's validity")
    if entry.inclusion_proof is not None:
        verify_inclusion(entry)
        verify_checkpoint(entry, log)
    elif require_proof:
        raise TlogError("log entry has no inclusion proof")
    if entry.signed_entry_timestamp is not None:
        verify_set(entry, log)
        return when
    if entry.inclusion_proof is None:
        raise TlogError("log entry has neither an inclusion proof nor a signed entry timestamp")
    return None


# -- entry bodies ---------------------------------------------------------------------------


def _same_verifier(encoded_pem: Any, verifier: PublicKey | x509.Certificate) -> bool:
    if not isinstance(encoded_pem, str):
        return False
    try:
        pem = base64.b64decode(encoded_pem, validate=True)
    except binascii.Error:
        return False
    if isinstance(verifier, x509.Certificate):
        try:
            return x509.load_pem_x509_certificate(pem) == verifier
        except ValueError:
            return False
    try:
        key = load_public_key(pem, what="log entry key")
    except KeyFileError:
        return False
    return public_key_der(key) == public_key_der(verifier)


def _body(entry: TlogEntry) -> dict[str, Any]:
    try:
        body = json.loads(entry.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TlogError("log entry body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
        raise TlogError("log entry body has no spec")
    if body.get("kind") != entry.kind or body.get("apiVersion") != entry.version:
        raise TlogError("log entry body's kind/version differ from the bundle's")
    spec: dict[str, Any] = body["spec"]
    return spec


def _hash_field(spec: Any, what: str) -> str:
    if (
        not isinstance(spec, dict)
        or spec.get("algorithm") != "sha256"
        or not isinstance(spec.get("value"), str)
    ):
        raise TlogError(f"log entry {what} is not a sha256 digest")
    return str(spec["value"]).lower()


def _same_raw_verifier(recorded: Any, verifier: PublicKey | x509.Certificate) -> bool:
    """Rekor v2's verifier: ``{"publicKey": {"rawBytes"}}`` (PKIX DER) or ``{"x509Certificate"}``."""
    if not isinstance(recorded, dict):
        return False
    field = "x509Certificate" if isinstance(verifier, x509.Certificate) else "publicKey"
    raw = _safe_b64((recorded.get(field) or {}).get("rawBytes"))
    if raw is None:
        return False
    if isinstance(verifier, x509.Certificate):
        return raw == verifier.public_bytes(serialization.Encoding.DER)
    return raw == public_key_der(verifier)


def _check_hashedrekord_v002(
    entry: TlogEntry, *, signature: bytes, digest: bytes, verifier: PublicKey | x509.Certificate
) -> None:
    """Rekor v2's ``hashedrekord/0.0.2``: the digest of what was signed, the signature, the verifier."""
    spec = _body(entry).get("hashedRekordV002")
    if not isinstance(spec, dict):
        raise TlogError("log entry body has no hashedRekordV002 spec")
    data = spec.get("data") or {}
    if not isinstance(data, dict) or data.get("algorithm") != "SHA2_256":
        raise TlogError("log entry artifact hash is not a SHA2_256 digest")
    if _safe_b64(data.get("digest")) != digest:
        raise TlogError("log entry records a different artifact digest")
    sig = spec.get("signature") or {}
    if not isinstance(sig, dict) or _safe_b64(sig.get("content")) != signature:
        raise TlogError("log entry records a different signature")
    if not _same_raw_verifier(sig.get("verifier"), verifier):
        raise TlogError("log entry records a different public key or certificate")


def check_hashedrekord(
    entry: TlogEntry, *, signature: bytes, digest: bytes, verifier: PublicKey | x509.Certificate
) -> None:
    """A ``hashedrekord`` entry (v1's 0.0.1, v2's 0.0.2) records this signature, digest and key."""
    if (entry.kind, entry.version) == ("hashedrekord", "0.0.2"):
        _check_hashedrekord_v002(entry, signature=signature, digest=digest, verifier=verifier)
        return
    if (entry.kind, entry.version) != ("hashedrekord", "0.0.1"):
        raise TlogError(f"log entry is {entry.kind}/{entry.version}, not hashedrekord")
    spec = _body(entry)
    data = spec.get("data") or {}
    if _hash_field(data.get("hash"), "artifact hash") != digest.hex():
        raise TlogError("log entry records a different artifact digest")
    sig = spec.get("signature") or {}
    content = sig.get("content")
    if not isinstance(content, str) or _safe_b64(content) != signature:
        raise TlogError("log entry records a different signature")
    if not _same_verifier((sig.get("publicKey") or {}).get("content"), verifier):
        raise TlogError("log entry records a different public key or certificate")


def check_dsse(
    entry: TlogEntry,
    *,
    payload: bytes,
    signatures: tuple[bytes, ...],
    verifier: PublicKey | x509.Certificate,
    pae: bytes | None = None,
) -> None:
    """A ``dsse/0.0.1``, ``intoto/0.0.2`` or (Rekor v2) ``hashedrekord/0.0.2`` entry records this
    envelope: its payload, signatures and key.  Rekor v2 logs a DSSE envelope as a
    hashedrekord over SHA-256 of its ``pae`` (pre-authentication encoding), as
    sigstore-go and sigstore-python submit it.
    """
    if (entry.kind, entry.version) == ("hashedrekord", "0.0.2"):
        if pae is None or len(signatures) != 1:
            raise TlogError("log entry records a single signature over a DSSE PAE")
        _check_hashedrekord_v002(
            entry,
            signature=signatures[0],
            digest=hashlib.sha256(pae).digest(),
            verifier=verifier,
        )
        return
    spec = _body(entry)
    payload_hash = hashlib.sha256(payload).hexdigest()
    if (entry.kind, entry.version) == ("dsse", "0.0.1"):
        if "proposedContent" in spec and "payloadHash" not in spec:
            raise TlogError("log entry is an uncanonicalised DSSE proposal, not a logged entry")
        if _hash_field(spec.get("payloadHash"), "payload hash") != payload_hash:
            raise TlogError("log entry records a different DSSE payload")
        recorded = spec.get("signatures")
        if not isinstance(recorded, list) or len(recorded) != len(signatures):
            raise TlogError("log entry records different DSSE signatures")
        for item, sig in zip(recorded, signatures, strict=True):
            if not isinstance(item, dict) or _safe_b64(item.get("signature")) != sig:
                raise TlogError("log entry records different DSSE signatures")
            if not _same_verifier(item.get("verifier"), verifier):
                raise TlogError("log entry records a different public key or certificate")
        return
    if (entry.kind, entry.version) == ("intoto", "0.0.2"):
        content = spec.get("content") or {}
        if _hash_field(content.get("payloadHash"), "payload hash") != payload_hash:
            raise TlogError("log entry records a different DSSE payload")
        envelope = content.get("envelope") or {}
        recorded = envelope.get("signatures")
        if not isinstance(recorded, list) or len(recorded) != len(signatures):
            raise TlogError("log entry records different DSSE signatures")
        for item, sig in zip(recorded, signatures, strict=True):
            # intoto/0.0.2 stores each signature base64-encoded twice.
            inner = _safe_b64(item.get("sig")) if isinstance(item, dict) else None
            if inner is None or _safe_b64(inner.decode("ascii", "replace")) != sig:
                raise TlogError("log entry records different DSSE signatures")
            if not _same_verifier(item.get("publicKey"), verifier):
                raise TlogError("log entry records a different public key or certificate")
        return
    raise TlogError(f"log entry kind {entry.kind}/{entry.version} cannot record a DSSE envelope")


def _safe_b64(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        return None
