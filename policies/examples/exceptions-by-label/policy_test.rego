package attest.admission_test

import rego.v1

import data.attest.admission

workload(labels) := {"request": {"labels": labels}, "images": [{"reference": "web:latest", "tag": "latest"}]}

test_latest_denied_without_exception if {
	admission.deny == {"web:latest: uses the 'latest' tag"} with input as workload({})
}

test_approved_exception_warns_instead if {
	inp := workload({"attest.dev/exception": "SEC-1042"})
	count(admission.deny) == 0 with input as inp
	admission.warn == {"exception SEC-1042 applies: 'latest' tags allowed for this workload"} with input as inp
}

test_invented_ticket_denied if {
	admission.deny == {
		"web:latest: uses the 'latest' tag",
		"exception label attest.dev/exception=SEC-9999 is not an approved exception",
	} with input as workload({"attest.dev/exception": "SEC-9999"})
}

test_approved_list_can_change if {
	inp := workload({"attest.dev/exception": "SEC-1042"})
	count(admission.deny) == 2 with input as inp with data.attest.admission.approved_exceptions as set()
}
