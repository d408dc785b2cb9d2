# Exceptions by label: a workload labelled with an approved exception ticket is
# spared *this policy's* rule (here: no `latest`), and told so as a warning.
#
# Rego can only add denials: an exception label never admits an unsigned image or
# one without required attestations (the webhook denies those in code). For
# signed, time-limited break-glass exceptions see docs/runbooks/break-glass.md.
# The ticket must be on the approved list, so a developer cannot approve
# themselves by inventing a label value.
package attest.admission

import rego.v1

exception_label := "attest.dev/exception"

approved_exceptions := {"SEC-1042", "SEC-1077"}

deny contains msg if {
	not excepted
	some img in input.images
	img.tag == "latest"
	msg := sprintf("%s: uses the 'latest' tag", [img.reference])
}

warn contains msg if {
	excepted
	msg := sprintf("exception %s applies: 'latest' tags allowed for this workload", [input.request.labels[exception_label]])
}

deny contains msg if {
	ticket := input.request.labels[exception_label]
	not ticket in approved_exceptions
	msg := sprintf("exception label %s=%s is not an approved exception", [exception_label, ticket])
}

excepted if input.request.labels[exception_label] in approved_exceptions
