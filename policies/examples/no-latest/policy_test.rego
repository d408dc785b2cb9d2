package attest.admission_test

import rego.v1

import data.attest.admission

test_version_tag_passes if {
	count(admission.deny) == 0 with input as {"images": [{"reference": "ghcr.io/acme/web:1.4", "tag": "1.4"}]}
}

test_latest_denied if {
	admission.deny == {"ghcr.io/acme/web:latest: uses the 'latest' tag; pin a version tag or a digest"} with input as {"images": [{"reference": "ghcr.io/acme/web:latest", "tag": "latest"}]}
}

test_no_tag_means_latest if {
	count(admission.deny) == 1 with input as {"images": [{"reference": "nginx", "tag": null}]}
}

test_digest_pins_even_latest if {
	ref := "ghcr.io/acme/web:latest@sha256:0000000000000000000000000000000000000000000000000000000000000000"
	count(admission.deny) == 0 with input as {"images": [{"reference": ref, "tag": "latest"}]}
}
