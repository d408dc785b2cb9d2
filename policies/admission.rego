# The default admission policy of attest (package attest.admission).
#
# The webhook reads two rules: `deny` and `warn`, sets of messages.  Any deny
# refuses the workload (in enforce mode); warnings are shown to the user.
# The input document is described in policies/README.md.
#
# Every check is a function of the input document (`denials(doc)`,
# `warnings(doc)`), so the unit tests call the functions with a document
# instead of `with input as …`, which the embedded engine cannot evaluate.
package attest.admission

import rego.v1

deny contains msg if some msg in denials(input)

warn contains msg if some msg in warnings(input)

denials(doc) := ((untrusted(doc) | provenance_problems(doc)) | missing_attestations(doc))

warnings(doc) := missing_sbom(doc)

slsa_provenance_types := {"https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2"}

sbom_types := {"https://cyclonedx.org/bom", "https://spdx.dev/Document"}

# Images under an image policy whose verification finished (timeouts, registry
# errors, invalid and unmatched images are denied by the webhook itself).
judged(doc) := [img |
	some img in doc.images
	img.policy != null
	img.outcome in {"verified", "unverified"}
]

# --- a trusted signature -----------------------------------------------------

untrusted(doc) := {msg |
	some img in judged(doc)
	not img.thresholdMet
	head := sprintf("%s: no trusted signature: %d of %d required authorities of policy %s verified it", [
		img.reference,
		count(img.satisfiedAuthorities),
		img.policy.threshold,
		img.policy.name,
	])

	# concat, not sprintf: regopy's sprintf quotes strings that concat produced
	msg := concat("", [head, " (", signature_reason(img), ")"])
}

signature_reason(img) := "no signature found" if count(img.signatures) == 0

signature_reason(img) := concat("; ", img.signatures[0].reasons) if {
	count(img.signatures) > 0
	count(img.signatures[0].reasons) > 0
}

signature_reason(img) := "signatures verified, but too few authorities" if {
	count(img.signatures) > 0
	count(img.signatures[0].reasons) == 0
}

# --- SLSA provenance from an allowed builder and source ------------------------

# A verified SLSA provenance attestation about this very image digest.
provenances(img) := [att.provenance |
	some att in img.attestations
	att.verified
	att.predicateType in slsa_provenance_types
	about_image(att.statement, img.digest)
	att.provenance != null
]

about_image(statement, digest) if {
	some subject in statement.subject
	sprintf("sha256:%s", [subject.digest.sha256]) == digest
}

requires_provenance(img) if object.get(img.policy.parameters, "requireProvenance", true) != false

allowed(value, patterns) if {
	some pattern in patterns
	glob.match(pattern, null, value)
}

builder_allowed(prov, img) if allowed(prov.builderId, object.get(img.policy.parameters, "allowedBuilders", []))

source_allowed(prov, img) if allowed(prov.sourceRepository, object.get(img.policy.parameters, "allowedSources", []))

good_provenance(img) if {
	some prov in provenances(img)
	builder_allowed(prov, img)
	source_allowed(prov, img)
}

provenance_problems(doc) := {msg |
	some img in judged(doc)
	img.thresholdMet
	requires_provenance(img)
	not good_provenance(img)
	msg := sprintf("%s: %s", [img.reference, provenance_reason(img)])
}

provenance_reason(img) := "no verified SLSA provenance attestation" if count(provenances(img)) == 0

provenance_reason(img) := sprintf("SLSA provenance is not from an allowed builder (builder %s; policy %s allows %v)", [
	provenances(img)[0].builderId,
	img.policy.name,
	object.get(img.policy.parameters, "allowedBuilders", []),
]) if {
	count(provenances(img)) > 0
	not builder_allowed(provenances(img)[0], img)
}

provenance_reason(img) := sprintf("SLSA provenance is not from an allowed source (source %v; policy %s allows %v)", [
	provenances(img)[0].sourceRepository,
	img.policy.name,
	object.get(img.policy.parameters, "allowedSources", []),
]) if {
	count(provenances(img)) > 0
	builder_allowed(provenances(img)[0], img)
	not source_allowed(provenances(img)[0], img)
}

# --- attestations the image policy requires ------------------------------------

missing_attestations(doc) := {msg |
	some img in judged(doc)
	img.thresholdMet
	some wanted in img.policy.requiredAttestations
	not has_verified(img, wanted)
	msg := sprintf("%s: no verified attestation of type %s (required by policy %s)", [img.reference, wanted, img.policy.name])
}

has_verified(img, predicate_type) if {
	some att in img.attestations
	att.verified
	att.predicateType == predicate_type
}

# --- warnings -------------------------------------------------------------------

missing_sbom(doc) := {msg |
	some img in judged(doc)
	not has_sbom(img)
	msg := sprintf("%s: no verified SBOM attestation (CycloneDX or SPDX)", [img.reference])
}

has_sbom(img) if {
	some att in img.attestations
	att.verified
	att.predicateType in sbom_types
}
