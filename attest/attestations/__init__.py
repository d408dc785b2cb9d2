"""In-toto attestations: Statements, SLSA provenance, predicate types and SLSA checks."""
