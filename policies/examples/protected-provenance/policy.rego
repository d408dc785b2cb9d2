# Provenance from protected branches or tags only: each image needs verified SLSA
# provenance whose source ref is a protected branch or a release tag.
#
# `provenance.sourceRef` is filled only for a *verified* provenance attestation
# that is valid SLSA provenance; a missing one is a denial here.
package attest.admission

import rego.v1

protected_branches := {"refs/heads/main", "refs/heads/release"}

# release tags: refs/tags/v<digits>...
release_tag_pattern := `^refs/tags/v[0-9]+(\.[0-9]+)*$`

deny contains msg if {
	some img in input.images
	not from_protected_ref(img)

	# concat, not sprintf("%s", [concat(...)]): the embedded engine mangles the latter
	msg := concat("", [img.reference, ": no verified provenance from a protected branch or release tag (refs: ", concat(", ", sort(refs(img))), ")"])
}

refs(img) := {att.provenance.sourceRef |
	some att in img.attestations
	att.verified == true
	is_string(att.provenance.sourceRef)
}

from_protected_ref(img) if {
	some ref in refs(img)
	ref in protected_branches
}

from_protected_ref(img) if {
	some ref in refs(img)
	regex.match(release_tag_pattern, ref)
}
