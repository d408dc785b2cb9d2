package attest.admission_test

import rego.v1

import data.attest.admission

cyclonedx(components) := {"verified": true, "predicateType": "https://cyclonedx.org/bom", "statement": {"predicate": {"components": components}}}

image(atts) := {"images": [{"reference": "a:1", "attestations": atts}]}

test_clean_sbom_passes if {
	bom := cyclonedx([{"name": "openssl", "licenses": [{"license": {"id": "Apache-2.0"}}]}])
	count(admission.deny) == 0 with input as image([bom])
}

test_denied_package if {
	bom := cyclonedx([{"name": "log4j-core", "licenses": []}])
	admission.deny == {"a:1: SBOM lists denied package log4j-core"} with input as image([bom])
}

test_denied_license_by_id_and_expression if {
	bom := cyclonedx([
		{"name": "x", "licenses": [{"license": {"id": "AGPL-3.0-only"}}]},
		{"name": "y", "licenses": [{"expression": "SSPL-1.0"}]},
	])
	admission.deny == {"a:1: SBOM lists denied licence AGPL-3.0-only", "a:1: SBOM lists denied licence SSPL-1.0"} with input as image([bom])
}

test_spdx_packages if {
	doc := {"verified": true, "statement": {"predicate": {"packages": [{"name": "event-stream", "licenseConcluded": "MIT"}]}}}
	admission.deny == {"a:1: SBOM lists denied package event-stream"} with input as image([doc])
}

test_unverified_sbom_is_ignored if {
	bom := object.remove(cyclonedx([{"name": "log4j-core"}]), ["verified"])
	count(admission.deny) == 0 with input as image([bom])
}

test_denylist_can_be_replaced if {
	bom := cyclonedx([{"name": "openssl"}])
	count(admission.deny) == 1 with input as image([bom]) with data.attest.admission.denied_packages as {"openssl"}
}
