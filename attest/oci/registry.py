"""The OCI distribution API of one repository: resolve, pull, push, list, delete, referrers.

:class:`RegistryRepository` is the :class:`~attest.oci.store.ImageStore` for registries:
it knows the ``/v2/`` paths and what each answer must be (digests checked, manifests
bounded); :mod:`attest.oci.transport` carries the requests.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import urlencode, urljoin

from attest.deadline import Deadline
from attest.errors import DigestMismatch, RegistryError
from attest.oci import mediatypes as mt
from attest.oci.digest import VerifyingReader, sha256_digest
from attest.oci.manifest import Descriptor, FetchedManifest, parse_manifest
from attest.oci.transport import Body, RegistryClient, ResponseStream, read_limited

MAX_MANIFEST_BYTES = 4 * 1024 * 1024


class RegistryRepository:
    """One repository on a registry: the :class:`~attest.oci.store.ImageStore` for registries.

    Reads are safe from several threads at once (``parallel_reads``): the client is shared.
    """

    parallel_reads = True

    def __init__(
        self, client: RegistryClient, repository: str, *, deadline: Deadline | None = None
    ) -> None:
        self.client = client
        self.repository = repository
        self.deadline = deadline or Deadline.after(client.options.timeout)
        self.last_push_subject_header: str | None = None

    @property
    def display(self) -> str:
        return f"{self.client.registry}/{self.repository}"

    @property
    def read_slots(self) -> threading.Semaphore | None:
        """The host's bound on parallel reads (shared by every repository on it), if any."""
        return self.client.read_slots

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RegistryRepository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _path(self, kind: str, identifier: str = "") -> str:
        return (
            f"/v2/{self.repository}/{kind}/{identifier}"
            if identifier
            else f"/v2/{self.repository}/{kind}/"
        )

    def _what(self, identifier: str) -> str:
        sep = "@" if ":" in identifier else ":"
        return f"{self.display}{sep}{identifier}"

    # -- manifests ----------------------------------------------------------------

    def resolve(self, identifier: str) -> Descriptor:
        """Resolve a tag or digest to a descriptor: HEAD first, GET when HEAD is not conclusive."""
        what = self._what(identifier)
        response = self.client.request(
            "HEAD",
            self._path("manifests", identifier),
            repository=self.repository,
            what=what,
            deadline=self.deadline,
            headers={"Accept": mt.ACCEPT_MANIFESTS},
            ok=(200,),
            allow_status=(400, 405, 501),
        )
        digest = response.headers.get("Docker-Content-Digest", "")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        length = response.headers.get("Content-Length", "")
        response.close()
        if (
            response.status_code == 200
            and digest.startswith("sha256:")
            and media_type in mt.ALL_MANIFESTS
            and length.isdigit()
        ):
            if ":" in identifier and identifier != digest:
                raise DigestMismatch(f"{what}: registry reports digest {digest} for it")
            return Descriptor(media_type, digest, int(length))
        return self.fetch_manifest(identifier).descriptor

    def fetch_manifest(self, identifier: str) -> FetchedManifest:
        """GET a manifest or index by tag or digest, verifying its digest."""
        what = self._what(identifier)
        response = self.client.request(
            "GET",
            self._path("manifests", identifier),
            repository=self.repository,
            what=what,
            deadline=self.deadline,
            headers={"Accept": mt.ACCEPT_MANIFESTS},
            stream=True,
        )
        raw = read_limited(response, MAX_MANIFEST_BYTES, what)
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        computed = sha256_digest(raw)
        if ":" in identifier:
            if identifier.startswith("sha256:") and computed != identifier:
                raise DigestMismatch(f"{what}: manifest content hashes to {computed}")
        else:
            header = response.headers.get("Docker-Content-Digest", "")
            if header.startswith("sha256:") and header != computed:
                raise DigestMismatch(
                    f"{what}: registry says digest {header} but content hashes to {computed}"
                )
        parsed = parse_manifest(raw, media_type, what=f"manifest {what}")
        return FetchedManifest(computed, parsed.media_type, raw, parsed)

    def push_manifest(self, raw: bytes, media_type: str, tag: str | None = None) -> Descriptor:
        """PUT manifest bytes by tag (or by digest when ``tag`` is None); returns its descriptor."""
        digest = sha256_digest(raw)
        identifier = tag or digest
        what = f"push manifest {self._what(identifier)}"
        response = self.client.request(
            "PUT",
            self._path("manifests", identifier),
            repository=self.repository,
            what=what,
            deadline=self.deadline,
            headers={"Content-Type": media_type},
            body=Body(data=raw),
            ok=(200, 201, 202),
            push=True,
        )
        returned = response.headers.get("Docker-Content-Digest")
        self.last_push_subject_header = response.headers.get("OCI-Subject")
        response.close()
        if returned and returned != digest:
            raise DigestMismatch(f"{what}: registry stored digest {returned}, expected {digest}")
        return Descriptor(media_type, digest, len(raw))

    def delete_manifest(self, identifier: str) -> str:
        """Delete a manifest (a tag is resolved first; every tag on that manifest goes)."""
        digest = identifier if identifier.startswith("sha256:") else self.resolve(identifier).digest
        response = self.client.request(
            "DELETE",
            self._path("manifests", digest),
            repository=self.repository,
            what=f"delete {self._what(identifier)}",
            deadline=self.deadline,
            ok=(200, 202),
        )
        response.close()
        return digest

    def list_tags(self) -> list[str]:
        """Every tag in the repository, following ``Link`` pagination."""
        tags: list[str] = []
        url: str | None = self.client.url(self._path("tags", "list") + "?" + urlencode({"n": 1000}))
        pages = 0
        while url and pages < 10_000:
            pages += 1
            response = self.client.request(
                "GET",
                "",
                absolute_url=url,
                repository=self.repository,
                what=f"list tags of {self.display}",
                deadline=self.deadline,
            )
            try:
                page = response.json()
            except ValueError:
                raise RegistryError(
                    f"list tags of {self.display}: registry returned invalid JSON"
                ) from None
            tags.extend(page.get("tags") or [])
            link = response.headers.get("Link", "")
            match = re.search(r"<([^>]+)>", link)
            url = urljoin(url, match.group(1)) if match else None
        return tags

    # -- blobs --------------------------------------------------------------------

    def blob_exists(self, digest: str) -> bool:
        response = self.client.request(
            "HEAD",
            self._path("blobs", digest),
            repository=self.repository,
            what=f"blob {digest} in {self.display}",
            deadline=self.deadline,
            allow_status=(404,),
        )
        response.close()
        return response.status_code == 200

    def open_blob(self, descriptor: Descriptor) -> VerifyingReader:
        """Stream a blob; the reader raises :class:`DigestMismatch` at EOF if it is corrupt."""
        what = f"blob {descriptor.digest} of {self.display}"
        response = self.client.request(
            "GET",
            self._path("blobs", descriptor.digest),
            repository=self.repository,
            what=what,
            deadline=self.deadline,
            stream=True,
        )
        response.raw.decode_content = False
        return VerifyingReader(
            ResponseStream(response, what), descriptor.digest, descriptor.size, what=what
        )

    def push_blob(
        self, descriptor: Descriptor, *, data: bytes | None = None, path: str | None = None
    ) -> None:
        """Upload a blob (monolithic POST+PUT) unless the registry already has it."""
        if self.blob_exists(descriptor.digest):
            return
        what = f"push blob {descriptor.digest} to {self.display}"
        start = self.client.request(
            "POST",
            f"/v2/{self.repository}/blobs/uploads/",
            repository=self.repository,
            what=what,
            deadline=self.deadline,
            ok=(202,),
            push=True,
        )
        location = start.headers.get("Location")
        start.close()
        if not location:
            raise RegistryError(f"{what}: registry gave no upload location")
        upload = urljoin(self.client.url("/"), location)
        upload += ("&" if "?" in upload else "?") + urlencode({"digest": descriptor.digest})
        if data is not None:
            body = Body(data=data)
        elif path is not None:
            body = Body(opener=lambda: open(path, "rb"))  # noqa: SIM115
        else:
            raise ValueError("push_blob needs data or a path")
        response = self.client.request(
            "PUT",
            "",
            absolute_url=upload,
            repository=self.repository,
            what=what,
            deadline=self.deadline,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(descriptor.size),
            },
            body=body,
            ok=(201, 204),
            push=True,
        )
        response.close()

    # -- referrers ----------------------------------------------------------------

    def referrers_api(
        self, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor] | None:
        """The referrers API listing, or ``None`` when the registry has no referrers API."""
        if self.client.has_referrers_api(self.repository) is False:
            return None
        query = "?" + urlencode({"artifactType": artifact_type}) if artifact_type else ""
        response = self.client.request(
            "GET",
            self._path("referrers", digest) + query,
            repository=self.repository,
            what=f"referrers of {self.display}@{digest}",
            deadline=self.deadline,
            headers={"Accept": mt.OCI_INDEX},
            allow_status=(404, 405, 400),
        )
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if response.status_code != 200 or content_type != mt.OCI_INDEX:
            response.close()
            self.client.note_referrers_api(self.repository, False)
            return None
        self.client.note_referrers_api(self.repository, True)
        raw = response.content
        index = parse_manifest(raw, mt.OCI_INDEX, what=f"referrers of {self.display}@{digest}")
        manifests = getattr(index, "manifests", ())
        if artifact_type and not response.headers.get("OCI-Filters-Applied"):
            manifests = tuple(m for m in manifests if m.artifact_type == artifact_type)
        return list(manifests)
