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
# evaluate.
#
# The shape follows the embedded engine's (rego-cpp's) cost model, measured with
# bench/policy_evaluate.py: every rule body, function body and comprehension it
# enters costs several microseconds, more when handed a whole image object; it
# does not memoise functions, but it evaluates a complete rule (`_judged`) once
# per query.  So each image is judged once, by one function call
# (`image_verdict`) that yields both its denials and its warnings, and `deny`
# and `warn` read them from `_judged`; an image's attestations are filtered
# once (`verified`) and its parameters read once.  The answers are those of the
# plain rule-per-check form for every input (admission_test.rego and the
# differential tests against OPA check that).
package attest.admission

import rego.v1

deny contains finding if {
	some verdict in _judged
	some finding in verdict.deny
}

warn contains finding if {
	some verdict in _judged
	some finding in verdict.warn
}

# Computed once per evaluation and shared by deny and warn (a function would
# be evaluated twice).  The document is passed to a function rather than
# iterated here: iterating `input.images` in a rule body costs the engine about
# ten times more.
_judged := judged(input)

denials(doc) := {finding | some verdict in judged(doc); some finding in verdict.deny}

warnings(doc) := {finding | some verdict in judged(doc); some finding in verdict.warn}

# {"deny": findings, "warn": findings} of each image under an image policy whose
# verification finished (timeouts, registry errors, invalid provenance, invalid
# and unmatched images are denied by the webhook itself).
judged(doc) := [image_verdict(img) |
	some img in doc.images
	img.policy != null
	img.outcome in {"verified", "unverified"}
]

# One finding about one image: "<reference>: <reason>", as every message starts.
finding(reference, code, reason) := {
	"image": reference,
	"code": code,
	"message": concat(": ", [reference, reason]),
}

slsa_provenance_types := {"https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2"}

sbom_types := {"https://cyclonedx.org/bom", "https://spdx.dev/Document"}

# Both verdicts of one image in one call.  Comprehensions are never undefined, so
# an image is judged however incomplete it is (a missing `attestations` is no
# attestation), and a finding whose parts are undefined is simply not made.
image_verdict(img) := {"deny": denied, "warn": warned} if {
	# Only verified attestations count; for provenance, verify_image already
	# checked that the Statement's subject is the image digest.
	verified := [att | some att in img.attestations; att.verified]
	denied := {finding(img.reference, problem.code, problem.reason) |
		params := img.policy.parameters
		object.get(params, "requireProvenance", true) != false
		found := [att.provenance | # verified SLSA provenance, in attestation order
			some att in verified
			att.predicateType in slsa_provenance_types
			att.provenance != null
		]
		builders := object.get(params, "allowedBuilders", [])
		sources := object.get(params, "allowedSources", [])
		not good_provenance(found, builders, sources)
		problem := provenance_problem(found, img.policy, builders, sources)
	}
	warned := {finding(img.reference, "sbom-missing", "no verified SBOM attestation (CycloneDX or SPDX)") |
		count({att.predicateType | some att in verified} & sbom_types) == 0
	}
}

# --- SLSA provenance from an allowed builder and source ------------------------

good_provenance(found, builders, sources) if {
	some prov in found
	builder_allowed(prov, builders)
	source_allowed(prov, sources)
}

# A provenance without a source (or builder) has null there: not allowed, not an error.
allowed(value, patterns) if {
	is_string(value)
	some pattern in patterns
	glob.match(pattern, null, value)
}

builder_allowed(prov, builders) if allowed(prov.builderId, builders)

source_allowed(prov, sources) if allowed(prov.sourceRepository, sources)

# Why the provenance is not good, judged on the first one (evaluated only then).
provenance_problem(found, _, _, _) := {
	"code": "provenance-missing",
	"reason": "no verified SLSA provenance attestation",
} if count(found) == 0

provenance_problem(found, policy, builders, _) := {
	"code": "provenance-builder",
	"reason": sprintf("SLSA provenance is not from an allowed builder (builder %s; policy %s allows %v)", [
		found[0].builderId,
		policy.name,
		builders,
	]),
} if {
	count(found) > 0
	first := found[0] # a variable, not found[0], under `not` (see policies/README.md)
	not builder_allowed(first, builders)
}

provenance_problem(found, policy, builders, sources) := {
	"code": "provenance-source",
	"reason": sprintf("SLSA provenance is not from an allowed source (source %v; policy %s allows %v)", [
		found[0].sourceRepository,
		policy.name,
		sources,
	]),
} if {
	count(found) > 0
	first := found[0]
	builder_allowed(first, builders)
	not source_allowed(first, sources)
}
