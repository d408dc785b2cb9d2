package attest.admission_test

import rego.v1

import data.attest.admission

# 2026-03-01T10:00:00Z
now_ns := 1772359200000000000

built(started) := {"time": {"unixNs": now_ns}, "images": [{"reference": "a:1", "attestations": [{
	"verified": true,
	"predicateType": "https://slsa.dev/provenance/v1",
	"statement": {"predicate": {"runDetails": {"metadata": {"startedOn": started}}}},
}]}]}

test_recent_build_passes if {
	count(admission.deny) == 0 with input as built("2026-02-20T08:30:00Z")
}

test_offset_time_passes if {
	count(admission.deny) == 0 with input as built("2026-02-20T10:30:00+02:00")
}

test_old_build_denied if {
	admission.deny == {"a:1: no verified provenance of a build started in the last 90 days"} with input as built("2025-10-01T00:00:00Z")
}

test_missing_start_time_denied if {
	count(admission.deny) == 1 with input as built(null)
}

test_limit_can_be_tightened if {
	count(admission.deny) == 1 with input as built("2026-02-20T08:30:00Z") with data.attest.admission.max_age_days as 7
}
