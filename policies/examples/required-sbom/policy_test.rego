package attest.admission_test

import rego.v1

import data.attest.admission

sbom(verified) := {"predicateType": "https://cyclonedx.org/bom", "verified": verified}

test_verified_sbom_passes if {
	count(admission.deny) == 0 with input as {"images": [{"reference": "a:1", "attestations": [sbom(true)]}]}
}

test_missing_sbom_denied if {
	admission.deny == {"a:1: no verified SBOM attestation (CycloneDX or SPDX)"} with input as {"images": [{"reference": "a:1", "attestations": []}]}
}

test_unverified_sbom_denied if {
	count(admission.deny) == 1 with input as {"images": [{"reference": "a:1", "attestations": [sbom(false)]}]}
}

test_provenance_is_not_an_sbom if {
	att := {"predicateType": "https://slsa.dev/provenance/v1", "verified": true}
	count(admission.deny) == 1 with input as {"images": [{"reference": "a:1", "attestations": [att]}]}
}
