package attest.admission_test

import rego.v1

import data.attest.admission

built_from(ref) := {"images": [{"reference": "a:1", "attestations": [{"verified": true, "predicateType": "https://slsa.dev/provenance/v1", "provenance": {"sourceRef": ref}}]}]}

test_main_branch_passes if {
	count(admission.deny) == 0 with input as built_from("refs/heads/main")
}

test_release_tag_passes if {
	count(admission.deny) == 0 with input as built_from("refs/tags/v1.4.2")
}

test_feature_branch_denied if {
	admission.deny == {"a:1: no verified provenance from a protected branch or release tag (refs: refs/heads/feature-x)"} with input as built_from("refs/heads/feature-x")
}

test_tag_lookalike_denied if {
	count(admission.deny) == 1 with input as built_from("refs/tags/v1.4-rc1")
}

test_no_provenance_denied if {
	count(admission.deny) == 1 with input as {"images": [{"reference": "a:1", "attestations": []}]}
}

test_unverified_provenance_denied if {
	att := {"verified": false, "provenance": {"sourceRef": "refs/heads/main"}}
	count(admission.deny) == 1 with input.images as [{"reference": "a:1", "attestations": [att]}]
}
