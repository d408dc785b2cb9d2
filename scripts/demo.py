"""The demo behind `make demo`: the main job end to end on the embedded default.

1. Build a small two-layer OCI image into an image layout on disk (no daemon) and inspect it.
2. Start a loopback registry (Debian's docker-registry) and push that image plus an unsigned one.
3. `attest pipeline`: SBOM -> sign -> attach SBOM attestation -> SLSA provenance -> verify,
   with the development key in keys-dev/ (NOT for production).
4. Verify the signature and the provenance back as a consumer would.
5. Admission, offline: a Deployment of the signed image is admitted, one of the unsigned image is
   denied, each with its reasons; both decisions are recorded (SQLite) and the record chain verified.
6. Audit evidence for those decisions: `attest evidence` writes a signed report (Statement, HTML,
   CSV) linking the admitted digest to its pipeline run, and `attest verify-blob-attestation`
   checks it.

Every step runs the real `attest` command and prints it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from attest.oci.builder import ImageBuilder

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("ATTEST_DEMO_DIR", ROOT / ".demo"))
ATTEST = str(Path(sys.executable).with_name("attest"))
KEY = ROOT / "keys-dev" / "cosign.key"
PUB = ROOT / "keys-dev" / "cosign.pub"
BUILDER_ID = "https://github.com/example/attest-demo/.github/workflows/release.yml@refs/heads/main"
CI_RUN = "https://github.com/example/attest-demo/actions/runs/1"
SOURCE_URI = "git+https://github.com/example/attest-demo@refs/heads/main"
ENV = {**os.environ, "ATTEST_PASSWORD": "attest-dev"}


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def run(*args: str, expect: int = 0) -> str:
    print("$ attest " + " ".join(args), flush=True)
    proc = subprocess.run([ATTEST, *args], text=True, capture_output=True, env=ENV)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    sys.stdout.flush()
    if proc.returncode != expect:
        sys.exit(f"demo: 'attest {' '.join(args)}' exited {proc.returncode}, expected {expect}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_registry(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's docker-registry on a free loopback port with storage under .demo/."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.path.exists(binary):
        sys.exit(
            "demo: docker-registry is missing; `make demo` installs it (scripts/system-deps.sh --demo)"
        )
    port = free_port()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {workdir / 'registry-data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}', secret: attest-demo}}\n"
    )
    log = open(workdir / "registry.log", "wb")  # noqa: SIM115 (lives as long as the registry)
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.terminate()
    sys.exit("demo: the loopback registry did not start; see .demo/registry.log")


def image_builder(marker: str) -> ImageBuilder:

    builder = ImageBuilder(
        config={"Entrypoint": ["/app/hello.sh"], "User": "1000"},
        labels={"org.opencontainers.image.title": f"attest demo ({marker})"},
    )
    base = builder.layer()
    base.dir("etc").file(
        "etc/os-release",
        'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
    )
    base.file("app/hello.sh", f"#!/bin/sh\necho hello from the {marker} attest demo\n", mode=0o755)
    base.file(
        "usr/lib/python3/dist-packages/demo_helper-1.2.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: demo-helper\nVersion: 1.2.0\nLicense: MIT\n",
    )
    base.file("tmp/build-cache.txt", "scratch file removed in the next layer\n")
    top = builder.layer()
    top.file("app/VERSION", "1.0.0\n").whiteout("tmp/build-cache.txt")
    return builder


def build_images(layout: Path, registry: str) -> None:
    from attest.oci.layout import LayoutStore
    from attest.oci.registry import RegistryRepository
    from attest.oci.transport import RegistryClient, RegistryOptions

    with tempfile.TemporaryDirectory() as work:
        signed = image_builder("signed").build(Path(work) / "signed")
        unsigned = image_builder("unsigned").build(Path(work) / "unsigned")
        with LayoutStore(str(layout), create=True) as store:
            signed.push(store, "demo")
        client = RegistryClient(registry, options=RegistryOptions(timeout=30))
        with RegistryRepository(client, "demo/app") as repo:
            signed.push(repo, "1.0")
        with RegistryRepository(RegistryClient(registry), "demo/unsigned") as repo:
            unsigned.push(repo, "1.0")
    print(
        f"built oci:{layout}:demo, pushed {registry}/demo/app:1.0 and {registry}/demo/unsigned:1.0"
    )


def write_admission_files(registry: str) -> tuple[Path, Path, Path]:
    config = DEMO / "admission.yaml"
    config.write_text(
        f"""# Admission config for the demo: images of the loopback registry must be signed with the
# development key and carry SLSA provenance from the demo builder and source.
unmatchedImages: deny
imagePolicies:
  - name: demo
    images: ["{registry}/demo/**"]
    mode: enforce
    authorities:
      - name: dev-key
        key: {{path: {PUB}}}   # no ctlog: signed offline, no transparency-log entry required
    attestations: [slsaprovenance1]
    parameters:
      allowedBuilders: ["https://github.com/example/attest-demo/*"]
      allowedSources: ["github.com/example/*"]
"""
    )
    manifests = []
    for name, image in (
        ("signed", f"{registry}/demo/app:1.0"),
        ("unsigned", f"{registry}/demo/unsigned:1.0"),
    ):
        path = DEMO / f"deploy-{name}.yaml"
        path.write_text(
            f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: shop-{name}, namespace: shop}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: shop-{name}}}}}
  template:
    metadata: {{labels: {{app: shop-{name}}}}}
    spec:
      containers:
        - name: app
          image: {image}
"""
        )
        manifests.append(path)
    return config, manifests[0], manifests[1]


def audit_evidence(summaries: Path) -> None:
    """Signed evidence for the demo's own decisions, then verified as an auditor would."""
    step("Audit evidence: a signed report of the decisions recorded today, verified")
    report = DEMO / "evidence"
    run(
        "evidence",
        "--db",
        str(DEMO / "decisions.db"),
        "--since",
        "1d",
        "--checkpoint-key",
        str(PUB),
        "--pipeline-summaries",
        str(summaries),
        "--key",
        str(KEY),
        "--tlog-upload=false",
        "--output-file",
        str(report),
    )
    run("decisions", "stats", "--db", str(DEMO / "decisions.db"), "--since", "1d")
    run(
        "verify-blob-attestation",
        f"{report}.html",
        "--bundle",
        f"{report}.sigstore.json",
        "--type",
        "https://attest.dev/evidence/v1",
        "--key",
        str(PUB),
        "--insecure-ignore-tlog",
    )
    print(f"open {report}.html in a browser; {report}.csv lists the admitted images")


def supports(command: list[str], option: str) -> bool:
    proc = subprocess.run([ATTEST, *command, "--help"], text=True, capture_output=True)
    return option in proc.stdout


def main() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    layout = DEMO / "image"
    registry_process, registry = start_registry(DEMO)
    try:
        step(
            "Build a two-layer OCI image into an image layout on disk (no daemon) and a loopback registry"
        )
        build_images(layout, registry)
        run("inspect", f"oci:{layout}:demo")

        image = f"{registry}/demo/app:1.0"
        step(
            "attest pipeline: SBOM -> sign -> attest SBOM -> SLSA provenance -> verify (dev key, NOT for production)"
        )
        source_digest = (
            subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "HEAD"], text=True, capture_output=True
            ).stdout.strip()
            or "0" * 40
        )
        # cosign (and attest) log key-based signatures in Sigstore's public Rekor by default;
        # the demo is offline, so it opts out and its verifiers opt out too.
        summaries = DEMO / "pipeline-runs"
        summaries.mkdir()
        run(
            "pipeline",
            image,
            "--key",
            str(KEY),
            "--tlog-upload=false",
            "--invocation-id",
            CI_RUN,
            "--output-file",
            str(summaries / "app.json"),
            "--builder-id",
            BUILDER_ID,
            "--source-uri",
            SOURCE_URI,
            "--source-digest",
            source_digest,
        )

        step(
            "Verify as a consumer: the signature, then the provenance with slsa-verifier-style checks"
        )
        run("verify", image, "--key", str(PUB), "--insecure-ignore-tlog")
        run(
            "verify-attestation",
            image,
            "--key",
            str(PUB),
            "--insecure-ignore-tlog",
            "--type",
            "slsaprovenance1",
            "--builder-id",
            BUILDER_ID,
            "--source-uri",
            "git+https://github.com/example/attest-demo",
            "--source-branch",
            "main",
        )

        step(
            "Admission (offline, same decision as the webhook): signed image admitted, unsigned denied"
        )
        config, signed_manifest, unsigned_manifest = write_admission_files(registry)
        record = (
            ["--record", "--db", str(DEMO / "decisions.db"), "--signing-key", str(KEY)]
            if supports(["admission", "review"], "--record")
            else []
        )
        run("admission", "review", str(signed_manifest), "--config", str(config), *record, expect=0)
        run(
            "admission",
            "review",
            str(unsigned_manifest),
            "--config",
            str(config),
            *record,
            expect=1,
        )

        if record:
            step("AppSec: the recorded decisions and their tamper-evident chain")
            run("decisions", "list", "--db", str(DEMO / "decisions.db"))
            run("decisions", "verify", "--db", str(DEMO / "decisions.db"), "--key", str(PUB))
            audit_evidence(summaries)
    finally:
        registry_process.terminate()
        registry_process.wait(timeout=10)
    print(
        "\ndemo: done — everything above ran against .demo/ (image layout, loopback registry, SQLite)"
    )


if __name__ == "__main__":
    main()
