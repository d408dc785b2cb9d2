# The default admission policy of attest (package attest.admission).
#
# The webhook reads two rules: `deny` and `warn`, sets of messages.  Any deny
# refuses the workload (in enforce mode); warnings are shown to the user.
# The input document is described in policies/README.md.
#
# Every check is a function of the input document (`denials(doc)`,
# `warnings(doc)`) or of one image, so the unit tests call the functions with
# a document instead of `with input as …`, which the embedded engine cannot
# evaluate.  Each image is looked at once (the engine does not memoise
# functions), which keeps an evaluation well under a millisecond.
package attest.admission

import rego.v1

deny contains msg if some msg in denials(input)

warn contains msg if some msg in warnings(input)

denials(doc) := {msg |
	some img in doc.images
	judged(img)
	some msg in image_denials(img)
}

warnings(doc) := {msg |
	some img in doc.images
	judged(img)
	some msg in image_warnings(img)
}

slsa_provenance_types := {"https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2"}

sbom_types := {"https://cyclonedx.org/bom", "https://spdx.dev/Document"}

# Images under an image policy whose verification finished (timeouts, registry
# errors, invalid and unmatched images are denied by the webhook itself).
judged(img) if {
	img.policy != null
	img.outcome in {"verified", "unverified"}
}

# Every reason at once: an unsigned image without provenance is told about both.
image_denials(img) := (signature_problems(img) | provenance_problems(img)) | missing_attestations(img)

signature_problems(img) := {untrusted_message(img)} if not img.thresholdMet

signature_problems(img) := set() if img.thresholdMet

image_warnings(img) := {msg |
	not has_sbom(img)
	msg := sprintf("%s: no verified SBOM attestation (CycloneDX or SPDX)", [img.reference])
}

# --- a trusted signature -----------------------------------------------------

untrusted_message(img) := concat("", [head, " (", signature_reason(img), ")"]) if {
	# concat, not sprintf: regopy's sprintf quotes strings that concat produced
	head := sprintf("%s: no trusted signature: %d of %d required authorities of policy %s verified it", [
		img.reference,
		count(img.satisfiedAuthorities),
		img.policy.threshold,
		img.policy.name,
	])
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

# Verified SLSA provenance about this image (verify_image already checked that
# the Statement's subject is the image digest).
provenances(img) := [att.provenance |
	some att in img.attestations
	att.verified
	att.predicateType in slsa_provenance_types
	att.provenance != null
]

requires_provenance(img) if object.get(img.policy.parameters, "requireProvenance", true) != false

allowed(value, patterns) if {
	some pattern in patterns
	glob.match(pattern, null, value)
}

builder_allowed(prov, img) if allowed(prov.builderId, object.get(img.policy.parameters, "allowedBuilders", []))

source_allowed(prov, img) if allowed(prov.sourceRepository, object.get(img.policy.parameters, "allowedSources", []))

provenance_problems(img) := {msg |
	requires_provenance(img)
	found := provenances(img)
	not good_provenance(found, img)
	msg := sprintf("%s: %s", [img.reference, provenance_reason(found, img)])
}

good_provenance(found, img) if {
	some prov in found
	builder_allowed(prov, img)
	source_allowed(prov, img)
}

provenance_reason(found, _) := "no verified SLSA provenance attestation" if count(found) == 0

provenance_reason(found, img) := sprintf("SLSA provenance is not from an allowed builder (builder %s; policy %s allows %v)", [
	found[0].builderId,
	img.policy.name,
	object.get(img.policy.parameters, "allowedBuilders", []),
]) if {
	count(found) > 0
	first := found[0] # a variable, not found[0], under `not` (see policies/README.md)
	not builder_allowed(first, img)
}

provenance_reason(found, img) := sprintf("SLSA provenance is not from an allowed source (source %v; policy %s allows %v)", [
	found[0].sourceRepository,
	img.policy.name,
	object.get(img.policy.parameters, "allowedSources", []),
]) if {
	count(found) > 0
	first := found[0]
	builder_allowed(first, img)
	not source_allowed(first, img)
}

# --- attestations the image policy requires ------------------------------------

missing_attestations(img) := {msg |
	some wanted in img.policy.requiredAttestations
	not has_verified(img, wanted)
	msg := sprintf("%s: no verified attestation of type %s (required by policy %s)", [img.reference, wanted, img.policy.name])
}

has_verified(img, predicate_type) if {
	some att in img.attestations
	att.verified
	att.predicateType == predicate_type
}

has_sbom(img) if {
	some att in img.attestations
	att.verified
	att.predicateType in sbom_types
}
