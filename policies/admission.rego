# The default admission policy of attest (package attest.admission).
#
# The webhook reads two rules: `deny` and `warn`, sets of findings, each
# {"image": <the image's reference>, "code": <a stable rule id>, "message": <text>}.
# Any deny refuses the workload (in enforce mode; a deny about an image under a
# warn-mode image policy is a warning); warnings are shown to the user.  The input
# document and the answer are described in policies/README.md.
#
# The webhook itself denies, whatever this bundle says, an image whose policy's
# threshold of trusted signatures was not met, that lacks a required
# attestation, or whose trusted provenance is not valid provenance (see
# "Fail closed in code" in policies/README.md).  This policy adds what only
# policy knows: which builders and sources are allowed, and the SBOM warning.
#
# Every check is a function of the input document (`denials(doc)`,
# `warnings(doc)`) or of one image, so the unit tests call the functions with
# a document instead of `with input as …`, which the embedded engine cannot
# evaluate.  Each image is looked at once (the engine does not memoise
# functions), which keeps an evaluation well under a millisecond.
package attest.admission

import rego.v1

deny contains finding if some finding in denials(input)

warn contains finding if some finding in warnings(input)

denials(doc) := {finding |
	some img in doc.images
	judged(img)
	some finding in image_denials(img)
}

warnings(doc) := {finding |
	some img in doc.images
	judged(img)
	some finding in image_warnings(img)
}

# One finding about one image: "<reference>: <reason>", as every message starts.
finding(img, code, reason) := {
	"image": img.reference,
	"code": code,
	"message": concat(": ", [img.reference, reason]),
}

slsa_provenance_types := {"https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2"}

sbom_types := {"https://cyclonedx.org/bom", "https://spdx.dev/Document"}

# Images under an image policy whose verification finished (timeouts, registry
# errors, invalid provenance, invalid and unmatched images are denied by the
# webhook itself).
judged(img) if {
	img.policy != null
	img.outcome in {"verified", "unverified"}
}

image_denials(img) := provenance_problems(img)

image_warnings(img) := {finding(img, "sbom-missing", "no verified SBOM attestation (CycloneDX or SPDX)") |
	not has_sbom(img)
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

# A provenance without a source (or builder) has null there: not allowed, not an error.
allowed(value, patterns) if {
	is_string(value)
	some pattern in patterns
	glob.match(pattern, null, value)
}

builder_allowed(prov, img) if allowed(prov.builderId, object.get(img.policy.parameters, "allowedBuilders", []))

source_allowed(prov, img) if allowed(prov.sourceRepository, object.get(img.policy.parameters, "allowedSources", []))

provenance_problems(img) := {finding(img, problem.code, problem.reason) |
	requires_provenance(img)
	found := provenances(img)
	not good_provenance(found, img)
	problem := provenance_problem(found, img)
}

good_provenance(found, img) if {
	some prov in found
	builder_allowed(prov, img)
	source_allowed(prov, img)
}

provenance_problem(found, _) := {
	"code": "provenance-missing",
	"reason": "no verified SLSA provenance attestation",
} if count(found) == 0

provenance_problem(found, img) := {
	"code": "provenance-builder",
	"reason": sprintf("SLSA provenance is not from an allowed builder (builder %s; policy %s allows %v)", [
		found[0].builderId,
		img.policy.name,
		object.get(img.policy.parameters, "allowedBuilders", []),
	]),
} if {
	count(found) > 0
	first := found[0] # a variable, not found[0], under `not` (see policies/README.md)
	not builder_allowed(first, img)
}

provenance_problem(found, img) := {
	"code": "provenance-source",
	"reason": sprintf("SLSA provenance is not from an allowed source (source %v; policy %s allows %v)", [
		found[0].sourceRepository,
		img.policy.name,
		object.get(img.policy.parameters, "allowedSources", []),
	]),
} if {
	count(found) > 0
	first := found[0]
	builder_allowed(first, img)
	not source_allowed(first, img)
}

has_sbom(img) if {
	some att in img.attestations
	att.verified
	att.predicateType in sbom_types
}
