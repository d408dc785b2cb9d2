# Unit tests of the default admission policy: `attest policy test policies/`.
# They call the policy's functions with documents (see admission.rego for why).
package attest.admission_test

import data.attest.admission
import rego.v1

hex := "0c3a2b1f0c3a2b1f0c3a2b1f0c3a2b1f0c3a2b1f0c3a2b1f0c3a2b1f0c3a2b1f"

policy := {
	"name": "apps",
	"mode": "enforce",
	"threshold": 1,
	"authorities": ["release"],
	"requiredAttestations": [],
	"parameters": {
		"allowedBuilders": ["https://ci.example.com/builder"],
		"allowedSources": ["github.com/acme/*"],
	},
}

provenance := {
	"verified": true,
	"predicateType": "https://slsa.dev/provenance/v1",
	"statement": {"subject": [{"name": "registry.example.com/app", "digest": {"sha256": hex}}]},
	"provenance": {
		"builderId": "https://ci.example.com/builder",
		"sourceRepository": "github.com/acme/app",
	},
}

sbom := {"verified": true, "predicateType": "https://cyclonedx.org/bom", "statement": {}}

good := {
	"reference": "registry.example.com/app:v1",
	"digest": concat(":", ["sha256", hex]),
	"policy": policy,
	"outcome": "verified",
	"thresholdMet": true,
	"satisfiedAuthorities": ["release"],
	"signatures": [{"verified": true, "reasons": []}],
	"attestations": [provenance, sbom],
}

doc(images) := {"images": images}

ref := "registry.example.com/app:v1"

# The finding the policy gives about `ref`.
about(code, reason) := {"image": ref, "code": code, "message": concat(": ", [ref, reason])}

no_provenance := about("provenance-missing", "no verified SLSA provenance attestation")

# obj with the keys of changes replaced. Not object.union: OPA merges nested objects
# and regopy replaces them, so the embedded engine refuses it (policies/README.md).
patch(obj, changes) := {key: pick(obj, changes, key) | some key in object.keys(obj) | object.keys(changes)}

pick(_, changes, key) := changes[key]

pick(obj, changes, key) := obj[key] if not key in object.keys(changes)

with_provenance(changes) := patch(good, {"attestations": [patch(provenance, changes), sbom]})

test_signed_image_with_provenance_and_sbom_passes if {
	count(admission.denials(doc([good]))) == 0
	count(admission.warnings(doc([good]))) == 0
}

# The threshold, required attestations and invalid provenance are the webhook's
# own denials (admission/verdict.py judge()); this policy does not repeat them.
test_signature_threshold_is_left_to_the_webhook if {
	img := patch(good, {"outcome": "unverified", "thresholdMet": false, "satisfiedAuthorities": [], "signatures": []})
	count(admission.denials(doc([img]))) == 0
}

test_unsigned_image_without_provenance_is_told_about_provenance if {
	img := patch(good, {"outcome": "unverified", "thresholdMet": false, "satisfiedAuthorities": [], "signatures": [], "attestations": []})
	admission.denials(doc([img])) == {no_provenance}
}

test_invalid_provenance_is_never_good_provenance if {
	img := patch(with_provenance({"provenance": null, "provenanceError": "SLSA v1 provenance: buildDefinition is required"}), {"outcome": "verified"})
	admission.denials(doc([img])) == {no_provenance}
}

test_missing_provenance_is_denied if {
	img := patch(good, {"attestations": [sbom]})
	admission.denials(doc([img])) == {no_provenance}
}

test_unverified_provenance_does_not_count if {
	img := with_provenance({"verified": false})
	admission.denials(doc([img])) == {no_provenance}
}

test_builder_not_allowed if {
	img := with_provenance({"provenance": {"builderId": "https://evil.example/b", "sourceRepository": "github.com/acme/app"}})
	some found in admission.denials(doc([img]))
	found.code == "provenance-builder"
	contains(found.message, "not from an allowed builder (builder https://evil.example/b")
}

test_source_not_allowed if {
	img := with_provenance({"provenance": {"builderId": "https://ci.example.com/builder", "sourceRepository": "github.com/evil/app"}})
	some found in admission.denials(doc([img]))
	found.code == "provenance-source"
	contains(found.message, "not from an allowed source (source github.com/evil/app")
}

test_provenance_without_a_source_is_denied_not_an_error if {
	img := with_provenance({"provenance": {"builderId": "https://ci.example.com/builder", "sourceRepository": null}})
	admission.denials(doc([img])) == {about("provenance-source", "SLSA provenance is not from an allowed source (source null; policy apps allows [\"github.com/acme/*\"])")}
}

test_builder_glob if {
	params := {"allowedBuilders": ["https://ci.example.com/*"], "allowedSources": ["github.com/acme/*"]}
	img := patch(with_provenance({"provenance": {"builderId": "https://ci.example.com/x@v2", "sourceRepository": "github.com/acme/app"}}), {"policy": patch(policy, {"parameters": params})})
	count(admission.denials(doc([img]))) == 0
}

test_no_allowed_builders_configured_denies if {
	img := patch(good, {"policy": patch(policy, {"parameters": {}})})
	some found in admission.denials(doc([img]))
	contains(found.message, "not from an allowed builder")
}

test_provenance_can_be_switched_off if {
	params := {"requireProvenance": false}
	img := patch(good, {"attestations": [sbom], "policy": patch(policy, {"parameters": params})})
	count(admission.denials(doc([img]))) == 0
}

test_required_attestations_are_left_to_the_webhook if {
	vuln := "https://cosign.sigstore.dev/attestation/vuln/v1"
	img := patch(good, {"policy": patch(policy, {"requiredAttestations": [vuln]})})
	count(admission.denials(doc([img]))) == 0
}

test_missing_sbom_warns if {
	img := patch(good, {"attestations": [provenance]})
	count(admission.denials(doc([img]))) == 0
	admission.warnings(doc([img])) == {about("sbom-missing", "no verified SBOM attestation (CycloneDX or SPDX)")}
}

test_images_without_policy_or_finished_verification_are_left_to_the_webhook if {
	unmatched := patch(good, {"policy": null, "thresholdMet": false})
	timed_out := patch(good, {"outcome": "timed_out", "thresholdMet": false})
	count(admission.denials(doc([unmatched, timed_out]))) == 0
}

test_every_image_is_judged if {
	bad := patch(good, {"reference": "registry.example.com/other:v2", "attestations": [sbom]})
	denied := admission.denials(doc([good, bad]))
	count(denied) == 1
	some found in denied
	found.image == "registry.example.com/other:v2"
	startswith(found.message, "registry.example.com/other:v2: ")
}
