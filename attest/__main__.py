"""``python -m attest``."""

from __future__ import annotations

import sys

from attest.cli.main import main

sys.exit(main())
