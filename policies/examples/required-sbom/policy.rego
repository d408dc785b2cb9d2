# Required SBOM: every image needs a verified CycloneDX or SPDX attestation.
#
# Only *verified* attestations count (signed by an authority of the image's
# policy); an unsigned SBOM pushed next to the image proves nothing. To make
# this a built-in denial instead, list the type in the image policy's
# `requiredAttestations`.
package attest.admission

import rego.v1

sbom_types := {
	"https://cyclonedx.org/bom",
	"https://spdx.dev/Document",
}

deny contains msg if {
	some img in input.images
	not has_sbom(img)
	msg := sprintf("%s: no verified SBOM attestation (CycloneDX or SPDX)", [img.reference])
}

has_sbom(img) if {
	some att in img.attestations
	att.verified == true
	att.predicateType in sbom_types
}
