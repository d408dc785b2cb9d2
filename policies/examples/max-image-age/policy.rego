# Maximum image age: the build recorded in verified SLSA v1 provenance must have
# started at most max_age_days before the admission request.
#
# Reads `runDetails.metadata.startedOn` from the provenance Statement, so the
# admission config must set `policy.includeStatements: true`. A provenance
# without a start time, or none at all, is a denial: an age that cannot be
# known is not young enough. Times ending in "Z" are rewritten to "+00:00"
# (the embedded engine parses only the latter).
package attest.admission

import rego.v1

max_age_days := 90

deny contains msg if {
	some img in input.images
	not built_recently(img)
	msg := sprintf("%s: no verified provenance of a build started in the last %d days", [img.reference, max_age_days])
}

built_recently(img) if {
	some att in img.attestations
	att.verified == true
	att.predicateType == "https://slsa.dev/provenance/v1"
	started := att.statement.predicate.runDetails.metadata.startedOn
	is_string(started)
	started_ns := time.parse_rfc3339_ns(utc_offset(started))
	age_ns := input.time.unixNs - started_ns
	age_ns <= ((max_age_days * 24) * 3600) * 1000000000
}

utc_offset(t) := concat("", [trim_suffix(t, "Z"), "+00:00"]) if endswith(t, "Z")

utc_offset(t) := t if not endswith(t, "Z")
