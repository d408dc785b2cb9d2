"""``attest admission review`` over files, directories, stdin and multi-document YAML, and
``attest admission test`` suites with --junit, on the real registry with signed images."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from admission.testing.helpers import deployment, key_policy, write_config
from admission.testing.world import REPO, World


def _config(world: World, path: Path) -> Path:
    """unsigned:* under a warn-mode policy, everything else of the repository enforced."""
    warn = key_policy("trial", [f"127.0.0.1:*/{REPO}/unsigned*"], world.key_file, mode="warn")
    apps = key_policy("apps", [f"127.0.0.1:*/{REPO}/*"], world.key_file)
    return write_config(path, [warn, apps])


def test_review_takes_files_directories_and_stdin(
    cli, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    images = world.images  # type: ignore[attr-defined]
    config = _config(world, tmp_path / "config.yaml")
    folder = tmp_path / "manifests"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.yaml").write_text(yaml.safe_dump_all(
        [deployment(images["good"], name="one"), deployment(images["other"], name="two")]
    ))  # fmt: skip
    (folder / "nested" / "b.yml").write_text(
        yaml.safe_dump(deployment(images["good"], name="three"))
    )
    (folder / "notes.txt").write_text("not a manifest")
    (folder / ".hidden.yaml").write_text("kind: [")
    single = tmp_path / "single.json"
    single.write_text(yaml.safe_dump(deployment(images["unsigned"], name="four")))
    monkeypatch.setattr(
        "sys.stdin", io.StringIO(yaml.safe_dump(deployment(images["good"], name="five")))
    )
    result = cli(
        "admission", "review", str(folder), str(single), "-", "--config", str(config), "-o", "json"
    )
    assert result.exit_code == 1, result.stderr  # "two" is signed by another key
    decisions = {d["name"]: d["result"] for d in result.json()["decisions"]}
    assert decisions == {
        "one": "allowed",
        "two": "denied",
        "three": "allowed",
        "four": "warned",
        "five": "allowed",
    }

    empty = tmp_path / "empty"
    empty.mkdir()
    refused = cli("admission", "review", str(empty))
    assert refused.exit_code == 2 and "no .yaml, .yml or .json files" in refused.stderr
    assert refused.stderr.count("\n") == 1


def _suite(world: World, tmp_path: Path, extra_cases: list[dict] | None = None) -> Path:
    images = world.images  # type: ignore[attr-defined]
    _config(world, tmp_path / "config.yaml")
    (tmp_path / "deploy").mkdir(exist_ok=True)
    (tmp_path / "deploy" / "web.yaml").write_text(yaml.safe_dump(deployment(images["good"])))
    cases = [
        {"name": "signed image admitted", "manifests": ["deploy/web.yaml"], "expect": "allowed"},
        {"name": "unsigned image warned under the trial policy", "expect": "warn",
         "manifest": deployment(images["unsigned"]), "messages": ["no trusted signature"]},
        {"name": "foreign signer denied", "expect": "denied",
         "manifest": [deployment(images["other"]), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}],
         "messages": ["no trusted signature", "of policy apps"]},
        *(extra_cases or []),
    ]  # fmt: skip
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"config": "config.yaml", "cases": cases}, sort_keys=False))
    return suite


def test_admission_test_suite_passes_and_writes_junit(cli, world: World, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = _suite(world, tmp_path)
    junit = tmp_path / "report.xml"
    result = cli("admission", "test", str(suite), "--junit", str(junit))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "PASS: 3/3"
    root = ET.parse(junit).getroot()
    (testsuite,) = root.findall("testsuite")
    assert (testsuite.get("tests"), testsuite.get("failures"), testsuite.get("errors")) == (
        "3",
        "0",
        "0",
    )
    names = [c.get("name") for c in testsuite.findall("testcase")]
    assert names[0] == "signed image admitted" and len(names) == 3
    assert not testsuite.findall("testcase/failure")


def test_admission_test_suite_mismatches_fail(cli, world: World, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    images = world.images  # type: ignore[attr-defined]
    suite = _suite(world, tmp_path, [
        {"name": "wrong expectation", "manifest": deployment(images["other"]), "expect": "allowed"},
        {"name": "wrong message", "manifests": ["deploy"], "expect": "allowed", "messages": ["nothing says this"]},
        {"name": "no workload", "manifest": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}, "expect": "allowed"},
    ])  # fmt: skip
    junit = tmp_path / "report.xml"
    result = cli("admission", "test", str(suite), "--junit", str(junit), "-o", "json")
    assert result.exit_code == 1, result.stderr
    report = result.json()
    assert (report["passed"], report["total"]) == (3, 6)
    problems = {c["name"]: c["problems"] for c in report["cases"] if not c["passed"]}
    assert problems["wrong expectation"][0].startswith(
        "Deployment web: expected allowed, got denied ("
    )
    assert problems["wrong message"] == ["no message contains 'nothing says this'"]
    assert problems["no workload"] == ["no workload in the manifests (nothing was judged)"]
    testsuite = ET.parse(junit).getroot().find("testsuite")
    assert testsuite is not None
    assert (testsuite.get("tests"), testsuite.get("failures")) == ("6", "3")
    failed = {c.get("name"): c.find("failure") for c in testsuite.findall("testcase")}
    assert failed["signed image admitted"] is None
    assert failed["wrong message"].get("message") == "no message contains 'nothing says this'"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("cases: []", "'cases' must list at least one case"),
        (
            "cases: [{name: a, expect: maybe, manifests: [x.yaml]}]",
            "case 'a': 'expect' must be one of allowed, warn, denied",
        ),
        (
            "cases: [{name: a, expect: denied}]",
            "case 'a': give either 'manifests' (files) or 'manifest' (inline)",
        ),
        ("cases: [{name: a, expect: denied, manifests: [missing.yaml]}]", "case 'a': "),
        (
            "cases: [{name: a, expect: denied, manifests: [x.yaml], colour: red}]",
            "unknown field 'colour'",
        ),
        ("config: c.yaml\ncasez: []", "unknown field 'casez'"),
        ("[", "not valid YAML"),
    ],
)
def test_unusable_suite_exits_2(cli, tmp_path: Path, document: str, message: str) -> None:  # type: ignore[no-untyped-def]
    suite = tmp_path / "suite.yaml"
    suite.write_text(document)
    result = cli("admission", "test", str(suite))
    assert result.exit_code == 2, result.stdout + result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
