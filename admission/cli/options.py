"""Options the ``attest decisions`` commands and ``attest evidence`` share.

Loading this module imports none of the ``admission`` extra's libraries (``attest
--help`` lists the commands without them)."""

from __future__ import annotations

import click

from admission.decisions import DB_VARIABLE
from admission.verdict import RESULTS
from attest.cli.common import option_group

db_option = click.option(
    "--db",
    "db",
    metavar="PATH|URL",
    help=f"Decision database: an SQLite file or a postgresql:// URL (default ${DB_VARIABLE}).",
)


filter_options = option_group(
    click.option("--since", metavar="TIME", help="From this time (2024-05-14, 24h, 7d …)."),
    click.option("--until", metavar="TIME", help="Before this time."),
    click.option("--namespace", "-n", "namespaces", multiple=True, help="Namespace (repeatable)."),
    click.option("--image", metavar="GLOB", help="Image reference glob, e.g. 'ghcr.io/org/*'."),
    click.option("--digest", metavar="DIGEST", help="Image digest (or a prefix of it)."),
    click.option(
        "--result",
        "results",
        multiple=True,
        type=click.Choice(list(RESULTS)),
        help="Result (repeatable).",
    ),
    click.option("--policy", metavar="NAME", help="Matched image policy name."),
)
"""The AppSec filters shared by ``list``, ``export`` and ``replay``."""
