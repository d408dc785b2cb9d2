"""``attest policy``: run Rego unit tests and evaluate a bundle against an input document."""

from __future__ import annotations

import json
from pathlib import Path

import click

from admission.decisions.text import coded
from attest.cli.common import output_option, print_json
from attest.errors import UsageError
from attest.policy import load_bundle, make_engine
from attest.policy.engine import DEFAULT_PACKAGE
from attest.policy.testing import report_text, run_tests


@click.group("policy")
def policy_group() -> None:
    """Rego policies: unit tests and ad-hoc evaluation."""


@policy_group.command("test")
@click.argument("path", type=click.Path())
@click.option("-v", "--verbose", is_flag=True, help="List every test, not only failures.")
@output_option
def test_command(path: str, verbose: bool, output_format: str) -> None:
    """Run the test_* rules of every *_test.rego under PATH, like ``opa test`` (exit 1 if any fails).

    Tests using ``with input as …`` / ``with data.… as …`` run too; one that cannot run
    (a function mock) is reported as an error.
    """
    outcomes = run_tests(path)
    passed = sum(1 for o in outcomes if o.status == "pass")
    if output_format == "json":
        print_json(
            {"passed": passed, "total": len(outcomes), "tests": [o.to_dict() for o in outcomes]}
        )
    else:
        click.echo(report_text(outcomes, verbose=verbose))
    if passed != len(outcomes):
        raise click.exceptions.Exit(1)


@policy_group.command("eval")
@click.argument("bundle_path", metavar="BUNDLE", type=click.Path())
@click.option(
    "--input", "input_file", required=True, type=click.Path(), help="Input document (JSON)."
)
@click.option("--package", default=DEFAULT_PACKAGE, show_default=True, help="Rego package to read.")
@click.option("--opa-url", help="Evaluate on this OPA server instead of the embedded engine.")
@output_option
def eval_command(
    bundle_path: str, input_file: str, package: str, opa_url: str | None, output_format: str
) -> None:
    """Evaluate deny/warn of BUNDLE for an input document (exit 1 when something is denied)."""
    try:
        document = json.loads(Path(input_file).read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"policy input {input_file}: cannot be read as JSON ({err})") from None
    if not isinstance(document, dict):
        raise UsageError(f"policy input {input_file}: must be a JSON object")
    engine = make_engine(None if opa_url else load_bundle(bundle_path), opa_url=opa_url)
    try:
        result = engine.evaluate(document, package)
    finally:
        engine.close()
    if output_format == "json":
        print_json(result.to_dict())
    else:
        for rule, findings in (("deny", result.denials), ("warn", result.warnings)):
            for finding in findings:
                click.echo(f"{rule}: {finding.message}{coded(finding.code)}")
        if not result.deny and not result.warn:
            click.echo("no deny or warn messages")
    if result.deny:
        raise click.exceptions.Exit(1)
