"""Our Rekor entry checks on their own: Merkle inclusion, checkpoints and SETs."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace

import pytest

from attest.signing.tlog import (
    TlogEntry,
    TlogError,
    merkle_root_from_proof,
    parse_checkpoint,
    verify_entry,
)
from attest.signing.trust import load_trusted_root
from tests.signing.conftest import CONFORMANCE, needs_vectors


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH, straight from the definition."""
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _node(_root(leaves[:split]), _root(leaves[split:]))


def _path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]), leaf to root."""
    if len(leaves) == 1:
        return []
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < split:
        return [*_path(index, leaves[:split]), _root(leaves[split:])]
    return [*_path(index - split, leaves[split:]), _root(leaves[:split])]


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31])
def test_inclusion_proofs_for_every_leaf_of_small_trees(size: int) -> None:
    leaves = [_leaf(f"entry {i}".encode()) for i in range(size)]
    root = _root(leaves)
    for index in range(size):
        path = tuple(_path(index, leaves))
        assert merkle_root_from_proof(index, size, leaves[index], path) == root
        if path:
            broken = (bytes(32), *path[1:])
            assert merkle_root_from_proof(index, size, leaves[index], broken) != root
            with pytest.raises(TlogError):
                merkle_root_from_proof(index, size, leaves[index], path[:-1])
        with pytest.raises(TlogError):
            merkle_root_from_proof(index, size, leaves[index], (*path, bytes(32)))


def test_proof_index_outside_tree() -> None:
    with pytest.raises(TlogError, match="outside"):
        merkle_root_from_proof(5, 5, bytes(32), ())


def _production_entry() -> TlogEntry:
    bundle = json.loads(
        (CONFORMANCE / "happy-path-v0.3-new-mediaType" / "bundle.sigstore.json").read_text()
    )
    return TlogEntry.from_bundle_dict(bundle["verificationMaterial"]["tlogEntries"][0])


@needs_vectors("sigstore-conformance")
def test_real_rekor_entry_verifies_with_our_code() -> None:
    entry = _production_entry()
    assert entry.inclusion_proof is not None and len(entry.inclusion_proof.hashes) > 10
    when = verify_entry(entry, load_trusted_root(None))
    assert when is not None and when.year >= 2023


@needs_vectors("sigstore-conformance")
@pytest.mark.parametrize("part", ["proof-hash", "body", "set", "checkpoint-root"])
def test_real_rekor_entry_tampering(part: str) -> None:
    entry = _production_entry()
    proof = entry.inclusion_proof
    assert proof is not None and proof.checkpoint is not None
    if part == "proof-hash":
        entry = replace(
            entry, inclusion_proof=replace(proof, hashes=(bytes(32), *proof.hashes[1:]))
        )
    elif part == "body":
        entry = replace(entry, body=entry.body.replace(b"sha256", b"sha257"))
    elif part == "set":
        assert entry.signed_entry_timestamp is not None
        entry = replace(entry, signed_entry_timestamp=entry.signed_entry_timestamp[:-1] + b"\x00")
    else:
        fake = base64.b64encode(bytes(32)).decode()
        lines = proof.checkpoint.split("\n")
        lines[2] = fake
        entry = replace(
            entry, inclusion_proof=replace(proof, root_hash=bytes(32), checkpoint="\n".join(lines))
        )
    with pytest.raises(TlogError):
        verify_entry(entry, load_trusted_root(None))


def test_checkpoint_parsing_rejects_malformed_notes() -> None:
    good = (
        "origin - 1\n5\n"
        + base64.b64encode(bytes(32)).decode()
        + "\n\n\u2014 origin "
        + base64.b64encode(b"abcdsig").decode()
        + "\n"
    )
    parsed = parse_checkpoint(good)
    assert parsed.tree_size == 5 and parsed.signatures[0][1] == b"abcd"
    for bad in (
        good.replace("\n\n", "\n"),
        good.rstrip("\n"),
        good.replace("\n5\n", "\nfive\n"),
        good.split("\u2014")[0],
    ):
        with pytest.raises(TlogError):
            parse_checkpoint(bad)
