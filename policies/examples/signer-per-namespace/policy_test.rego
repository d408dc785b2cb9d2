package attest.admission_test

import rego.v1

import data.attest.admission

keyless(subject) := {"verified": true, "signer": {"type": "keyless", "subject": subject, "issuer": "https://token.actions.githubusercontent.com"}}

request(namespace, sigs) := {"request": {"namespace": namespace}, "images": [{"reference": "a:1", "signatures": sigs}]}

test_team_signer_passes if {
	sig := keyless("https://github.com/acme/shop/.github/workflows/release.yml@refs/heads/main")
	count(admission.deny) == 0 with input as request("shop", [sig])
}

test_other_team_denied if {
	sig := keyless("https://github.com/acme/blog/.github/workflows/release.yml@refs/heads/main")
	admission.deny == {"a:1: not signed by the signer of namespace shop"} with input as request("shop", [sig])
}

test_key_signer if {
	sig := {"verified": true, "signer": {"type": "key", "keyId": "payments-release-key"}}
	count(admission.deny) == 0 with input as request("payments", [sig])
	count(admission.deny) == 1 with input as request("shop", [sig])
}

test_unverified_signature_does_not_count if {
	sig := {"verified": false, "signer": keyless("https://github.com/acme/shop/x").signer}
	count(admission.deny) == 1 with input as request("shop", [sig])
}

test_unlisted_namespace_left_to_image_policy if {
	count(admission.deny) == 0 with input as request("sandbox", [])
}
