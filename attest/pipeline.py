"""The paved-road CI step: SBOM, attestations, signature and verification in one run.

``attest pipeline IMAGE`` runs these steps and times each one:

1. ``resolve``     — pin the image to its digest (a tag is never signed);
2. ``sbom``        — generate the CycloneDX SBOM of the image;
3. ``statements``  — build and validate both in-toto Statements (SBOM, SLSA v1 provenance)
   before anything is written, so bad input or a missing CI variable fails early;
4. ``attest_sbom`` — sign the SBOM Statement and store it (CycloneDX attestation);
5. ``provenance``  — sign the provenance Statement and store it;
6. ``sign``        — sign the image digest and store the signature;
7. ``verify``      — read everything back from the registry and verify it with the
   signer's own trust material.

**Nothing half-written.**  A verifier must never see an image that looks finished
but is not.  Two rules give that:

* *The signature is written last.*  It is the commit marker of the run: a signature
  produced by the pipeline exists only if both attestations were stored before it.
  If the run dies between writes (a killed job), the image has attestations but no
  signature, which every signature-requiring policy rejects; rerunning the pipeline
  completes it.
* *Rollback on failure.*  When a step after the first write fails — a Rekor outage
  while signing the provenance, a registry error while storing the signature, or a
  read-back that does not verify — everything this run stored is removed again (bundle
  referrers unlisted and deleted, legacy ``.sig``/``.att`` manifests restored to what
  they were), newest first.  The error names the failed step and what was rolled back;
  a rollback that itself fails is reported too, so nobody assumes a clean state.

Entries already written to a transparency log (keyless) stay there: the log is
append-only by design, and an entry without a stored artifact verifies nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from attest.attestations.predicates import CYCLONEDX_BOM
from attest.attestations.provenance import (
    ProvenanceOptions,
    detect_build_context,
    provenance_statement,
)
from attest.attestations.statement import Statement, build_statement, subject_for_image
from attest.deadline import Deadline
from attest.errors import AttestError, NotFound, PipelineError
from attest.oci.access import ResolvedImage, open_store, resolve_image
from attest.oci.manifest import FetchedManifest, Index, Platform
from attest.oci.reference import ImageReference, LayoutReference
from attest.oci.referrers import fallback_tag, remove_referrer
from attest.oci.store import ImageStore
from attest.oci.transport import RegistryOptions

if TYPE_CHECKING:  # the signing stack (sigstore-python) is imported only when a step needs it
    from attest.sbom import SbomDocument
    from attest.signing.authority import Authority
    from attest.signing.bundle import SignatureMaterial
    from attest.signing.result import Storage
    from attest.signing.signer import Signer

log = logging.getLogger(__name__)

STEPS = ("resolve", "sbom", "statements", "attest_sbom", "provenance", "sign", "verify")


SbomGenerator = Callable[[ImageStore, ResolvedImage, Deadline], "SbomDocument"]
"""What the SBOM step calls: the CycloneDX document of the resolved image."""


@dataclass(frozen=True)
class PipelineOptions:
    """How to run the pipeline; everything has a CI-friendly default."""

    platform: Platform | None = None
    legacy: bool = False
    provenance: ProvenanceOptions = field(default_factory=ProvenanceOptions)
    env: Mapping[str, str] = field(default_factory=dict)
    started_on: dt.datetime | None = None
    trusted_root: str | None = None  # keyless read-back against a private Sigstore instance


@dataclass(frozen=True)
class StoredArtifact:
    """One thing this run wrote: what it is and where verifiers will find it."""

    kind: Literal["attestation", "signature"]
    reference: str  # bundle: the referrer manifest; legacy: the .sig/.att manifest written
    predicate_type: str | None = None
    tag: str | None = None  # legacy storage: cosign's sha256-<hex>.sig/.att tag

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "reference": self.reference}
        if self.predicate_type:
            out["predicateType"] = self.predicate_type
        if self.tag:
            out["tag"] = self.tag
        return out


@dataclass(frozen=True)
class PipelineSummary:
    """The one JSON document ``attest pipeline`` prints."""

    image: str
    digest: str
    reference: str
    platform: str | None
    signer: str
    storage: Storage
    sbom: dict[str, Any]
    signature: StoredArtifact
    attestations: tuple[StoredArtifact, ...]
    verification: dict[str, Any]
    timings: dict[str, float]
    build: dict[str, Any] = field(default_factory=dict)  # what the provenance says: CI run, source

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "digest": self.digest,
            "reference": self.reference,
            "platform": self.platform,
            "signer": self.signer,
            "storage": self.storage,
            "sbom": dict(self.sbom),
            "signature": self.signature.to_dict(),
            "attestations": [a.to_dict() for a in self.attestations],
            "verification": dict(self.verification),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "build": dict(self.build),
        }


class _Undo:
    """What this run wrote, and how to take each write back (newest first)."""

    def __init__(self, store: ImageStore, digest: str) -> None:
        self.store = store
        self.digest = digest
        self._actions: list[tuple[str, Callable[[], None]]] = []
        self._had_referrers_tag = _exists(store, fallback_tag(digest))

    def referrer(self, reference: str) -> None:
        manifest_digest = reference.rsplit("@", 1)[-1]
        self._actions.append(
            (reference, lambda: remove_referrer(self.store, self.digest, manifest_digest))
        )

    def tag(self, reference: str, tag: str, before: FetchedManifest | None) -> None:
        def restore() -> None:
            if before is not None:
                self.store.push_manifest(before.raw, before.media_type, tag)
                return
            with suppress(NotFound):
                self.store.delete_manifest(self.store.resolve(tag).digest)

        self._actions.append((reference, restore))

    def rollback(self) -> tuple[list[str], list[str]]:
        """Undo everything; returns (rolled back, failed to roll back) references."""
        done, failed = [], []
        for reference, action in reversed(self._actions):
            try:
                action()
                done.append(reference)
            except Exception as err:  # keep undoing the rest; report every failure
                log.warning("rollback of %s failed: %s", reference, err)
                failed.append(f"{reference} ({err})")
        self._actions.clear()
        if done and not failed and not self._had_referrers_tag:
            self._drop_empty_referrers_tag()
        return done, failed

    def _drop_empty_referrers_tag(self) -> None:
        """Delete the ``sha256-<hex>`` referrers index this run created, once it lists nothing."""
        tag = fallback_tag(self.digest)
        try:
            fetched = self.store.fetch_manifest(tag)
            if isinstance(fetched.parsed, Index) and not fetched.parsed.manifests:
                self.store.delete_manifest(fetched.digest)
        except AttestError as err:  # an empty index is harmless: it lists nothing
            log.warning("could not delete the empty referrers index %s: %s", tag, err)


def _exists(store: ImageStore, tag: str) -> bool:
    try:
        store.resolve(tag)
    except NotFound:
        return False
    return True


class _RecordingSigner:
    """Delegates to a real signer and keeps what it produced (for the read-back authority)."""

    def __init__(self, inner: Signer) -> None:
        self.inner = inner
        self.materials: list[SignatureMaterial] = []

    @property
    def description(self) -> str:
        return self.inner.description

    def sign(self, data: bytes) -> SignatureMaterial:
        material = self.inner.sign(data)
        self.materials.append(material)
        return material

    def sign_dsse(self, payload_type: str, payload: bytes) -> SignatureMaterial:
        material = self.inner.sign_dsse(payload_type, payload)
        self.materials.append(material)
        return material


def read_back_authority(signer: _RecordingSigner, trusted_root: str | None) -> Authority:
    """The authority that must verify what ``signer`` stored: its key, or its certificates' identity."""
    from cryptography import x509

    from attest.signing.authority import (
        TLOG_IF_PRESENT,
        TLOG_REQUIRED,
        KeyAuthority,
        KeylessAuthority,
    )
    from attest.signing.fulcio import IdentityPolicy, certificate_identity
    from attest.signing.signer import KeySigner

    if isinstance(signer.inner, KeySigner):
        # What this run logged must be read back with its verified log entries; a run
        # told --tlog-upload=false has none to require.
        return KeyAuthority(
            name=signer.description,
            public_key_pem=signer.inner.public_key_pem,
            trusted_root=trusted_root,
            tlog=TLOG_REQUIRED if signer.inner.rekor is not None else TLOG_IF_PRESENT,
        )
    identities = set()
    for material in signer.materials:
        if material.certificate is None:
            raise PipelineError(f"{signer.description}: signed without a public key or certificate")
        identity = certificate_identity(x509.load_der_x509_certificate(material.certificate))
        identities.add((identity.subject, identity.issuer))
    if len(identities) != 1:
        raise PipelineError(
            f"{signer.description}: the certificates of this run name {len(identities)} identities"
        )
    subject, issuer = identities.pop()
    return KeylessAuthority(
        name=f"keyless {subject}",
        identity=IdentityPolicy(subject=subject, issuer=issuer),
        trusted_root=trusted_root,
    )


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - started


def default_sbom_generator(
    store: ImageStore, image: ResolvedImage, deadline: Deadline
) -> SbomDocument:
    """Generate the CycloneDX SBOM of the platform manifest with :mod:`attest.sbom`."""
    from attest.sbom import SbomOptions, generate_image_sbom_document

    options = SbomOptions(progress=False)
    return generate_image_sbom_document(store, image, deadline=deadline, options=options)


def run_pipeline(
    image: ImageReference | LayoutReference,
    signer: Signer,
    *,
    options: PipelineOptions | None = None,
    registry: RegistryOptions | None = None,
    deadline: Deadline | None = None,
    sbom_generator: SbomGenerator | None = None,
    progress: Callable[[str], None] | None = None,
) -> PipelineSummary:
    """Run every step on ``image``; raises :class:`PipelineError` naming the failed step.

    Everything is read back and verified with ``signer``'s own trust material: its
    public key, or the identity and issuer of the keyless certificates it was actually
    issued (checked against ``options.trusted_root``, default the Sigstore public-good
    root).
    """
    options = options or PipelineOptions()
    deadline = deadline or Deadline.after(registry.timeout if registry else None)
    sbom_generator = sbom_generator or default_sbom_generator
    say = progress or (lambda _message: None)
    timer = _Timer()
    recorder = _RecordingSigner(signer)
    started_on = options.started_on or dt.datetime.now(dt.UTC)
    with open_store(image, registry, create=False, deadline=deadline) as store:
        with _failing_step("resolve"), timer.step("resolve"):
            resolved = resolve_image(store, image, options.platform)
            # Sign what the reference names: the index for a multi-platform image.
        say(f"resolved {image} to {resolved.digest}")
        with _failing_step("sbom"), timer.step("sbom"):
            sbom = sbom_generator(store, resolved, deadline)
        say(f"SBOM: {sbom.components} components")
        with _failing_step("statements"), timer.step("statements"):
            statements = _statements(resolved, sbom, options, started_on)
        undo = _Undo(store, resolved.digest)
        try:
            stored = _publish(store, resolved, recorder, statements, options, undo, timer, say)
            with _failing_step("verify"), timer.step("verify"):
                authority = read_back_authority(recorder, options.trusted_root)
                verification = _verify_back(store, resolved, authority, statements, deadline)
            say("verified the signature and both attestations from the store")
        except BaseException as err:
            done, failed = undo.rollback()
            raise _rollback_error(err, done, failed) from None
    signature = stored[-1]
    return PipelineSummary(
        image=str(image),
        digest=resolved.digest,
        reference=resolved.pinned,
        platform=str(resolved.platform) if resolved.platform else None,
        signer=signer.description,
        storage="legacy" if options.legacy else "bundle",
        sbom={
            "format": "CycloneDX",
            "specVersion": sbom.spec_version,
            "components": sbom.components,
            "predicateType": CYCLONEDX_BOM,
        },
        signature=signature,
        attestations=tuple(stored[:-1]),
        verification=verification,
        timings={**timer.timings, "total": sum(timer.timings.values())},
        build=_build_facts(statements[1]),
    )


def _build_facts(provenance: Statement) -> dict[str, Any]:
    """The CI run behind the image, from the provenance this run signed (``attest evidence
    --pipeline-summaries`` links admitted digests to it)."""
    from attest.attestations.slsa import predicate_facts

    facts = predicate_facts(provenance.predicate_type, provenance.predicate)
    metadata = provenance.predicate.get("runDetails", {}).get("metadata") or {}
    return {
        "builderId": facts.builder_id,
        "buildType": facts.build_type,
        "invocationId": metadata.get("invocationId"),
        "sourceUri": facts.source_uri,
        "sourceRef": facts.source_ref,
        "sourceDigest": dict(facts.source_digest),
        "startedOn": facts.started_on,
        "finishedOn": facts.finished_on,
    }


@contextmanager
def _failing_step(step: str) -> Iterator[None]:
    """Turn any expected failure inside ``step`` into a PipelineError naming it."""
    try:
        yield
    except PipelineError:
        raise
    except AttestError as err:
        error = PipelineError(f"pipeline step '{step}' failed: {err}")
        error.exit_code = err.exit_code
        raise error from None


def _statements(
    resolved: ResolvedImage, sbom: SbomDocument, options: PipelineOptions, started_on: dt.datetime
) -> tuple[Statement, Statement]:
    subject = subject_for_image(resolved.name, resolved.digest)
    sbom_statement = build_statement([subject], CYCLONEDX_BOM, sbom.document)
    context = detect_build_context(options.env, options.provenance)
    provenance = provenance_statement(
        resolved.name,
        resolved.digest,
        context,
        started_on=options.provenance.started_on or started_on,
        finished_on=options.provenance.finished_on,
    )
    return sbom_statement, provenance


def _publish(
    store: ImageStore,
    resolved: ResolvedImage,
    signer: Signer,
    statements: tuple[Statement, Statement],
    options: PipelineOptions,
    undo: _Undo,
    timer: _Timer,
    say: Callable[[str], None],
) -> list[StoredArtifact]:
    from attest.signing import legacy as cosign_tags
    from attest.signing.storage import attach_attestation, attach_signature

    def remember(reference: str, suffix: str, before: FetchedManifest | None) -> str | None:
        if not options.legacy:
            undo.referrer(reference)
            return None
        tag = cosign_tags.signature_tag(resolved.digest, suffix)
        undo.tag(reference, tag, before)
        return f"{store.display}:{tag}"

    def snapshot(suffix: str) -> FetchedManifest | None:
        if not options.legacy:
            return None
        try:
            return store.fetch_manifest(cosign_tags.signature_tag(resolved.digest, suffix))
        except NotFound:
            return None

    stored: list[StoredArtifact] = []
    for step, statement in zip(("attest_sbom", "provenance"), statements, strict=True):
        with _failing_step(step), timer.step(step):
            before = snapshot("att")
            reference = attach_attestation(
                store, resolved, statement.raw, signer, legacy=options.legacy
            )
            tag = remember(reference, "att", before)
        stored.append(StoredArtifact("attestation", reference, statement.predicate_type, tag))
        say(f"stored {statement.predicate_type} attestation: {reference}")
    with _failing_step("sign"), timer.step("sign"):
        before = snapshot("sig")
        reference = attach_signature(store, resolved, signer, legacy=options.legacy)
        tag = remember(reference, "sig", before)
    stored.append(StoredArtifact("signature", reference, tag=tag))
    say(f"stored signature: {reference}")
    return stored


def _verify_back(
    store: ImageStore,
    resolved: ResolvedImage,
    authority: Authority,
    statements: tuple[Statement, Statement],
    deadline: Deadline,
) -> dict[str, Any]:
    from attest.signing.authority import VerificationPolicy
    from attest.verify import verify_image

    policy = VerificationPolicy(authorities=(authority,))
    result = verify_image(resolved.target, policy, store=store, deadline=deadline)
    problems: list[str] = []
    if result.digest != resolved.digest:
        problems.append(f"read back digest {result.digest}, expected {resolved.digest}")
    if not result.verified:
        reasons = [r for s in result.signatures for r in s.reasons] or ["no signature found"]
        problems.append(f"signature does not verify: {'; '.join(reasons)}")
    verified_attestations = [a for a in result.attestations if a.verified]
    for statement in statements:
        expected = statement.to_dict()
        if not any(a.statement == expected for a in verified_attestations):
            problems.append(
                f"no verified {statement.predicate_type} attestation with our statement"
            )
    problems.extend(result.errors)
    if problems:
        raise PipelineError(f"pipeline step 'verify' failed: {'; '.join(problems)}")
    return {
        "verified": True,
        "verifiedSignatures": sum(1 for s in result.signatures if s.verified),
        "verifiedAttestations": len(verified_attestations),
        "predicateTypes": sorted(
            {str(a.predicate_type) for a in verified_attestations if a.predicate_type}
        ),
        "authority": policy.authorities[0].name,
    }


def _rollback_error(err: BaseException, done: list[str], failed: list[str]) -> BaseException:
    """The error to raise after a rollback: the step's own, plus what was undone."""
    note = f"rolled back {len(done)} stored artifact(s)" if done else ""
    if failed:
        note += ("; " if note else "") + (
            f"COULD NOT roll back: {', '.join(failed)} (remove them by hand)"
        )
    if not isinstance(err, AttestError):
        if note:  # a bug or an interrupt: keep the original exception, but say what happened
            log.error("attest pipeline: %s", note)
        return err
    if not note:
        return err
    error = PipelineError(f"{err}; {note}")
    error.exit_code = err.exit_code
    return error
