"""Building blocks for admission tests: AdmissionReviews, configs, signed images, TLS material."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attest.attestations.provenance import GENERIC_BUILD_TYPE, BuildContext, provenance_statement
from attest.oci.access import resolve_image
from attest.oci.reference import parse_image_reference
from attest.oci.store import ImageStore
from attest.signing import keys
from attest.signing.result import CheckResult, SignerIdentity
from attest.signing.signer import KeySigner
from attest.signing.storage import attach_attestation, attach_signature
from attest.verify import ImageVerification

BUILDER = "https://ci.example.com/builder"
SOURCE = "git+https://github.com/acme/app"
PARAMETERS = {"allowedBuilders": [BUILDER], "allowedSources": ["github.com/acme/*"]}
DEPLOYMENT_KIND = {"group": "apps", "version": "v1", "kind": "Deployment"}
POD_KIND = {"group": "", "version": "v1", "kind": "Pod"}


def pod_spec(*images: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    }
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": image} for i, image in enumerate(init)]
    return spec


def deployment(*images: str, name: str = "web", namespace: str = "apps") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"template": {"metadata": {}, "spec": pod_spec(*images)}},
    }


def review(
    obj: dict[str, Any] | None,
    *,
    uid: str = "uid-1",
    kind: dict[str, str] = DEPLOYMENT_KIND,
    operation: str = "CREATE",
    namespace: str = "apps",
    old: dict[str, Any] | None = None,
    sub_resource: str | None = None,
    api_version: str = "admission.k8s.io/v1",
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": kind,
        "resource": {"group": kind["group"], "version": kind["version"], "resource": "x"},
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "alice", "groups": ["dev"]},
        "object": obj,
        "oldObject": old,
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}


@dataclass
class Key:
    signer: KeySigner
    public_pem: bytes

    def write(self, path: Path) -> Path:
        path.write_bytes(self.public_pem)
        return path


def new_key() -> Key:
    signer = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    return Key(signer, keys.public_key_pem(signer.public_key))


def write_config(path: Path, policies: list[dict[str, Any]], **top: Any) -> Path:
    path.write_text(yaml.safe_dump({"imagePolicies": policies, **top}, sort_keys=False))
    return path


def key_policy(name: str, images: list[str], key_file: Path, **extra: Any) -> dict[str, Any]:
    policy = {
        "name": name,
        "images": images,
        "authorities": [{"name": f"{name}-key", "key": {"path": str(key_file)}}],
        "parameters": dict(PARAMETERS),
    }
    policy.update(extra)
    return policy


def sbom_statement(digest: str) -> bytes:
    algorithm, hex_value = digest.split(":")
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "image", "digest": {algorithm: hex_value}}],
            "predicateType": "https://cyclonedx.org/bom",
            "predicate": {"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []},
        }
    ).encode()


def provenance_json(
    name: str, digest: str, *, builder: str = BUILDER, source: str = SOURCE
) -> bytes:
    context = BuildContext(
        system="generic",
        builder_id=builder,
        build_type=GENERIC_BUILD_TYPE,
        source_uri=source,
        source_ref="refs/heads/main",
        source_digest={"gitCommit": "a" * 40},
    )
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    return provenance_statement(name, digest, context, started_on=started).raw


def sign_image(
    store: ImageStore,
    reference: str,
    signer: Any,
    *,
    provenance: bool = True,
    sbom: bool = True,
    builder: str = BUILDER,
) -> str:
    """Sign the image at ``reference`` (and attest provenance/SBOM); returns its digest."""
    image = resolve_image(store, parse_image_reference(reference))
    attach_signature(store, image, signer)
    if provenance:
        statement = provenance_json(image.name, image.digest, builder=builder)
        attach_attestation(store, image, statement, signer)
    if sbom:
        attach_attestation(store, image, sbom_statement(image.digest), signer)
    return image.digest


def fake_verification(
    reference: str,
    digest: str,
    *,
    verified: bool = True,
    authority: str = "k",
    errors: tuple[str, ...] = (),
) -> ImageVerification:
    """A verification result as verify_image would return it, for flow tests."""
    signature = CheckResult(
        kind="signature",
        storage="bundle",
        location=f"{reference}@sha256:{'e' * 64}",
        verified=verified,
        reasons=() if verified else ("signature does not verify with key k",),
        authority=authority if verified else None,
        signer=SignerIdentity.key("k"),
    )
    hex_value = digest.split(":")[1]
    statement = json.loads(provenance_json(reference, digest))
    provenance = CheckResult(
        kind="attestation",
        storage="bundle",
        location=f"{reference}@sha256:{'f' * 64}",
        verified=verified,
        reasons=(),
        authority=authority if verified else None,
        signer=SignerIdentity.key("k"),
        predicate_type="https://slsa.dev/provenance/v1",
        statement=statement,
    )
    sbom = CheckResult(
        kind="attestation",
        storage="bundle",
        location=f"{reference}@sha256:{'d' * 64}",
        verified=verified,
        reasons=(),
        authority=authority if verified else None,
        signer=SignerIdentity.key("k"),
        predicate_type="https://cyclonedx.org/bom",
        statement=json.loads(sbom_statement(digest)),
    )
    assert hex_value
    return ImageVerification(
        reference=reference,
        digest=digest,
        signatures=(signature,),
        attestations=(provenance, sbom),
        satisfied_authorities=(authority,) if verified else (),
        verified=verified,
        errors=errors,
    )


@dataclass
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def _new_ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ca, ca_key


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class ClientCa:
    """A CA for client certificates (the API server's, in a cluster) that issues them."""

    directory: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def ca(self) -> Path:
        return self.directory / "client-ca.pem"

    def issue(self, common_name: str, organization: str | None = None) -> tuple[str, str]:
        """A client certificate and its key (PEM files), as ``requests``' ``cert=`` takes them."""
        now = dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(names))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_file = self.directory / f"{common_name}.pem"
        key_file = self.directory / f"{common_name}.key"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(_pem_key(key))
        return str(cert_file), str(key_file)


def make_client_ca(directory: Path, name: str = "attest test client CA") -> ClientCa:
    directory.mkdir(parents=True, exist_ok=True)
    certificate, key = _new_ca(name)
    authority = ClientCa(directory, certificate, key)
    authority.ca.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return authority


def make_tls(directory: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca, ca_key = _new_ca("attest test CA")
    ca_name = ca.subject
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attest-admission")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(_pem_key(server_key))
    return files


def attach_statement(
    store: ImageStore, reference: str, signer: Any, statement: dict[str, Any]
) -> str:
    """Sign and store any Statement about the image at ``reference`` (subject filled in)."""
    image = resolve_image(store, parse_image_reference(reference))
    algorithm, hex_value = image.digest.split(":")
    document = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": image.name, "digest": {algorithm: hex_value}}],
        **statement,
    }
    return attach_attestation(store, image, json.dumps(document).encode(), signer)


def recorded_documents(db: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The first ``count`` decision documents a server recorded in ``db``, oldest first
    (waits for the recorder's writer, bounded)."""
    import time

    from admission.decisions import query
    from admission.decisions.store import open_database
    from admission.errors import DecisionStoreError

    end = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < end:
        try:
            database = open_database(db)
        except DecisionStoreError:
            time.sleep(0.1)
            continue
        try:
            stored = query.list_decisions(database, query.DecisionFilter(limit=None))
        finally:
            database.close()
        found = [record.document for record in reversed(stored)]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{len(found)} of {count} decisions recorded in {db}")
