"""cosign key files: attest keygen output, cosign's own encrypted keys, and bad key input."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from attest.errors import KeyFileError
from attest.signing import keys
from attest.signing.signer import KeySigner

PASSWORD = "correct horse"


def _pem_body(path: Path) -> dict:
    lines = path.read_text().strip().splitlines()
    return json.loads(base64.b64decode("".join(lines[1:-1])))


def test_keygen_writes_cosign_format(cli, tmp_path: Path) -> None:
    prefix = tmp_path / "team"
    result = cli("keygen", "--output-key-prefix", str(prefix), env={"ATTEST_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.stderr
    private, public = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    assert private.read_text().startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    document = _pem_body(private)
    assert document["kdf"]["name"] == "scrypt"
    assert document["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}
    assert len(base64.b64decode(document["kdf"]["salt"])) == 32
    assert document["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(document["cipher"]["nonce"])) == 24
    # The sealed content is PKCS#8 DER of a P-256 key matching the public key file.
    key = keys.load_private_key_file(str(private), PASSWORD.encode())
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    loaded_public = keys.load_public_key_file(str(public))
    assert keys.public_key_pem(loaded_public) == keys.public_key_pem(key)
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    # The password never appears in anything we print.
    assert PASSWORD not in result.stdout + result.stderr


def test_keygen_refuses_to_overwrite(cli, tmp_path: Path) -> None:
    prefix = tmp_path / "k"
    env = {"ATTEST_PASSWORD": PASSWORD}
    assert cli("keygen", "--output-key-prefix", str(prefix), env=env).exit_code == 0
    before = Path(f"{prefix}.key").read_bytes()
    again = cli("keygen", "--output-key-prefix", str(prefix), env=env)
    assert again.exit_code != 0
    assert "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    assert Path(f"{prefix}.key").read_bytes() == before
    assert cli("keygen", "--output-key-prefix", str(prefix), "--force", env=env).exit_code == 0
    assert Path(f"{prefix}.key").read_bytes() != before


def test_cosign_password_variable_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = keys.generate_key_pair(b"from-cosign-var")
    monkeypatch.delenv("ATTEST_PASSWORD", raising=False)
    monkeypatch.setenv("COSIGN_PASSWORD", "from-cosign-var")
    assert keys.obtain_password("k") == b"from-cosign-var"
    assert keys.decrypt_private_key(pair.private_pem, keys.obtain_password("k"), what="k")


def test_no_password_and_no_terminal_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTEST_PASSWORD", raising=False)
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    with pytest.raises(KeyFileError, match="no password: set ATTEST_PASSWORD"):
        keys.obtain_password("cosign.key")


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("pemcosignkey.key", "ENCRYPTED COSIGN PRIVATE KEY"),
        ("pemsigstorekey.key", "ENCRYPTED SIGSTORE PRIVATE KEY"),
    ],
)
def test_cosign_written_keys_decrypt_with_hello(vectors: Path, name: str, label: str) -> None:
    path = vectors / "cosign-keys" / name
    assert label in path.read_text()
    key = keys.load_private_key_file(str(path), b"hello")
    signer = KeySigner(key)
    material = signer.sign(b"payload")
    assert keys.verify_signature(signer.public_key, material.signature, b"payload")


def test_cosign_sec1_key_is_rejected_like_cosign(vectors: Path) -> None:
    path = vectors / "cosign-keys" / "pemcosigneckey.key"
    with pytest.raises(KeyFileError, match="not PKCS#8"):
        keys.load_private_key_file(str(path), b"hello")


def test_wrong_password_is_one_line(vectors: Path) -> None:
    path = vectors / "cosign-keys" / "pemsigstorekey.key"
    with pytest.raises(KeyFileError) as caught:
        keys.load_private_key_file(str(path), b"not-hello")
    assert str(caught.value) == f"{path}: wrong password (or corrupt key file)"


def _sealed(document: dict) -> bytes:
    body = base64.b64encode(json.dumps(document).encode()).decode()
    return f"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{body}\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n".encode()


def _good_document() -> dict:
    pair = keys.generate_key_pair(b"pw")
    lines = pair.private_pem.decode().strip().splitlines()
    return json.loads(base64.b64decode("".join(lines[1:-1])))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("ciphertext"), "lacks ciphertext"),
        (lambda d: d["kdf"].update(name="argon2"), "unsupported encryption argon2"),
        (lambda d: d["kdf"]["params"].update(N=3), "not a power of two"),
        (lambda d: d["kdf"]["params"].update(N=1 << 30), "out of range"),
        (lambda d: d["cipher"].update(nonce="AAAA"), "nonce must be 24 bytes"),
        (lambda d: d.update(ciphertext="!!notbase64!!"), "ciphertext is not base64"),
        (lambda d: d.update(ciphertext=base64.b64encode(b"x" * 80).decode()), "wrong password"),
    ],
)
def test_corrupt_key_documents_give_one_line_errors(mutate, message: str) -> None:
    document = _good_document()
    mutate(document)
    with pytest.raises(KeyFileError, match=message) as caught:
        keys.decrypt_private_key(_sealed(document), b"pw", what="bad.key")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("bad.key: ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a PEM private key"),
        (b"garbage\n", "not a PEM private key"),
        (
            b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nbm90IGpzb24=\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
            "not JSON",
        ),
        (
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "unsupported private key type 'PRIVATE KEY'",
        ),
    ],
)
def test_unusable_private_key_files(cli, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match=message):
        keys.load_private_key_file(str(path), b"pw")


def test_sign_with_corrupt_key_is_one_line_cli_error(cli, tmp_path: Path) -> None:
    path = tmp_path / "bad.key"
    path.write_text(
        "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    )
    result = cli("sign", "oci:/nonexistent:v1", "--key", str(path), env={"ATTEST_PASSWORD": "pw"})
    assert result.exit_code == 2  # EXIT_USAGE: an unusable key is bad input
    assert result.stderr.startswith(f"attest: error: {path}: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_missing_key_file_and_public_key_mixups(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read key file"):
        keys.load_private_key_file(str(tmp_path / "absent.key"), b"pw")
    pair = keys.generate_key_pair(b"pw")
    private = tmp_path / "cosign.key"
    private.write_bytes(pair.private_pem)
    with pytest.raises(KeyFileError, match="is a private key; pass the public key"):
        keys.load_public_key_file(str(private))
    public = tmp_path / "cosign.pub"
    public.write_bytes(pair.public_pem)
    with pytest.raises(KeyFileError, match="not a PEM private key file"):
        keys.load_private_key_file(str(public), b"pw")
    broken = tmp_path / "broken.pub"
    broken.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(KeyFileError, match="unreadable public key"):
        keys.load_public_key_file(str(broken))


def test_dev_key_pair_matches_its_documented_password() -> None:
    root = Path(__file__).resolve().parents[2] / "keys-dev"
    key = keys.load_private_key_file(str(root / "cosign.key"), b"attest-dev")
    assert keys.public_key_pem(key) == keys.public_key_pem(
        keys.load_public_key_file(str(root / "cosign.pub"))
    )
    assert os.path.exists(root / "README.md")


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=["p256", "p384"])
def test_a_named_hash_is_the_only_one_a_signature_may_be_over(curve: ec.EllipticCurve) -> None:
    """policy-controller's key.hashAlgorithm: a key authority saying sha512 accepts signatures
    over SHA-512 and nothing else (not cosign's SHA-256, not the curve's own hash)."""
    private = ec.generate_private_key(curve)
    data = b"payload"
    over_512 = private.sign(data, ec.ECDSA(hashes.SHA512()))
    over_256 = private.sign(data, ec.ECDSA(hashes.SHA256()))
    public = private.public_key()
    assert keys.verify_signature(public, over_512, data, hash_algorithm="sha512")
    assert not keys.verify_signature(public, over_512, data)
    assert not keys.verify_signature(public, over_256, data, hash_algorithm="sha512")
    assert not keys.verify_signature(public, over_512, data + b"!", hash_algorithm="sha512")
    # a message known only by its SHA-256 cannot carry a signature over another hash
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    assert not keys.verify_signature(
        public, over_256, sha256=digest.finalize(), hash_algorithm="sha512"
    )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_384 = rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA384())
    assert keys.verify_signature(rsa_key.public_key(), rsa_384, data, hash_algorithm="sha384")
    assert not keys.verify_signature(rsa_key.public_key(), rsa_384, data)
