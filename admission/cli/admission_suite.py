"""``attest admission test SUITE.yaml``: expected admission results for manifests, in CI."""

from __future__ import annotations

from pathlib import Path

import click

from attest.cli.common import output_option, print_json
from attest.errors import UsageError
from attest.files import atomic_write


@click.command("test")
@click.argument("suite", type=click.Path())
@click.option(
    "--config",
    "config_path",
    type=click.Path(),
    help="Admission config (YAML), instead of the suite's 'config'.",
)
@click.option(
    "--junit", "junit_path", type=click.Path(dir_okay=False), help="Write JUnit XML here."
)
@output_option
def test_command(
    suite: str, config_path: str | None, junit_path: str | None, output_format: str
) -> None:
    """Run the cases of SUITE: manifests with expected results (allowed, warn, denied) and
    message substrings, like kyverno test or gator verify.

    Exit 0 when every case matches, 1 on any mismatch, 2 when the suite is unusable.
    """
    from admission.suites import junit_xml, run_suite

    results = run_suite(suite, config_path=config_path)
    if junit_path:
        try:
            with atomic_write(junit_path, mode=0o644) as out:  # a CI never reads half a report
                out.write(junit_xml(Path(suite).stem, results))
        except OSError as err:
            raise UsageError(f"--junit {junit_path}: {err.strerror}") from None
    passed = sum(1 for r in results if r.passed)
    if output_format == "json":
        print_json(
            {
                "passed": passed,
                "total": len(results),
                "cases": [
                    {
                        "name": r.case.name,
                        "passed": r.passed,
                        "expect": r.case.expect,
                        "problems": r.problems,
                        "error": r.error,
                        "decisions": [d.to_dict() for d in r.decisions],
                    }
                    for r in results
                ],
            }
        )
    else:
        for result in results:
            click.echo(f"{'PASS' if result.passed else 'FAIL'}: {result.case.name}")
            for problem in [result.error] if result.error else result.problems:
                click.echo(f"  {problem}")
        click.echo("-" * 80)
        click.echo(f"PASS: {passed}/{len(results)}")
        if passed != len(results):
            click.echo(f"FAIL: {len(results) - passed}/{len(results)}")
    if passed != len(results):
        raise click.exceptions.Exit(1)
