"""Decision records: every admission decision stored durably, hash-chained and signed.

``model`` turns an admission ``Decision`` into a stored record (canonical JSON
plus the columns AppSec filters on); ``store`` owns the database (SQLite in WAL
mode by default, PostgreSQL for several replicas, one schema); ``recorder``
writes from a bounded queue on a background thread so recording never blocks
or fails an admission response; ``chain`` hash-chains each replica's records,
signs chain heads and verifies everything; ``query`` filters and reads records
back; ``text`` prints one decision readably.
"""

from __future__ import annotations

# The environment variable naming the decision database, and the webhook's default one.
DB_VARIABLE = "ATTEST_DB"
DEFAULT_DB = "/var/lib/attest/decisions.db"
# The time buckets of the statistics' timeline (stats.py; the CLI's --bucket choices).
BUCKETS = ("hour", "day", "month")
